import Foundation
import Models
import NN
import Optim
import Tokenizers
import Torch

public struct CheckpointError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "checkpoint \(path): \(reason)" }
}

/// A training checkpoint folder in Hugging Face layout:
///
///     config.json            the model's config (what `from_pretrained` reads)
///     model.safetensors      weights (or shards + model.safetensors.index.json)
///     optimizer.safetensors  optimizer state by parameter name
///     trainer_state.json     step, epoch, loader position, RNG states, best metric, early stopping
///
/// A LoRA run's (`adapter` given) holds PEFT's `adapter_config.json` and
/// `adapter_model.safetensors` instead of config.json and the weights — the base model stays in
/// its own folder — with the same training state, tokenizer and preprocessor files beside them.
public enum Checkpoint {
    public static let optimizerFile = "optimizer.safetensors"
    public static let stateFile = "trainer_state.json"
    public static let configFile = "config.json"
    public static let trainingHeadsFile = "training_heads.safetensors"

    /// Writes the whole folder atomically (see `CheckpointDirectory`).
    /// `files` are written beside the weights (config.json, tokenizer…); `trainingHeads`
    /// (modules trained beside the model, such as distillation projections) go to
    /// `training_heads.safetensors`.
    public static func save(to path: String, model: Module, adapter: LoRAAdapterConfig? = nil, trainingHeads: Module? = nil, optimizer: Optimizer?,
                            state: TrainerState, files: [String: Data] = [:]) throws {
        var files = files
        if let adapter {
            // No config.json (nor remote code, sentence-transformers modules): this folder is no whole model.
            files = files.filter { Pretrained.tokenizerFiles.contains($0.key) || $0.key == "preprocessor_config.json" }
            files[PeftAdapter.configFile] = try adapter.data()
        }
        try CheckpointDirectory.write(to: path) { folder in
            if let adapter {
                try SafeTensors.save(PeftAdapter.state(of: model, modulesToSave: adapter.modulesToSave), metadata: ["format": "pt"],
                                     to: "\(folder)/\(PeftAdapter.weightsFile)")
            } else {
                try ShardedSafeTensors.save(model.stateDict(), to: folder)
            }
            if let trainingHeads {
                try SafeTensors.save(trainingHeads.stateDict(), metadata: ["format": "pt"], to: "\(folder)/\(trainingHeadsFile)")
            }
            if let optimizer {
                try SafeTensors.save(optimizer.stateDict(), metadata: ["format": "pt"], to: "\(folder)/\(optimizerFile)")
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(state).write(to: URL(fileURLWithPath: "\(folder)/\(stateFile)"))
            for (name, data) in files {
                let url = URL(fileURLWithPath: "\(folder)/\(name)")
                try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                try data.write(to: url)
            }
        }
    }

    /// The tokenizer files found in `folder`, to copy into a checkpoint; for open_clip's merges
    /// file (`….txt.gz`), the vocab.json and merges.txt that transformers' CLIPTokenizer reads.
    public static func tokenizerFiles(from folder: String?) throws -> [String: Data] {
        guard let folder else { return [:] }
        if folder.hasSuffix(".gz") {
            let temporary = FileManager.default.temporaryDirectory.appendingPathComponent("cliptune-tokenizer-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
            try FileManager.default.createDirectory(at: temporary, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: temporary) }
            try CLIPTokenizer.writeHuggingFaceFiles(fromOpenCLIPMerges: URL(fileURLWithPath: folder), to: temporary)
            return try tokenizerFiles(from: temporary.path)
        }
        var files: [String: Data] = [:]
        for file in Pretrained.tokenizerFiles {
            if let data = FileManager.default.contents(atPath: "\(folder)/\(file)") { files[file] = data }
        }
        return files
    }

    /// Reads the trainer state of a checkpoint folder.
    public static func readState(_ path: String) throws -> TrainerState {
        try CheckpointDirectory.recover(path)
        let file = "\(path)/\(stateFile)"
        guard let data = FileManager.default.contents(atPath: file) else {
            throw CheckpointError(path: path, reason: "has no \(stateFile); it is not a training checkpoint (or was not written by this tool)")
        }
        do {
            return try JSONDecoder().decode(TrainerState.self, from: data)
        } catch {
            throw CheckpointError(path: file, reason: "cannot be read (\(error))")
        }
    }

    /// Loads weights into `model` and moments into `optimizer`, and returns the trainer state.
    /// Everything is checked before the model is touched.
    public static func load(from path: String, into model: Module, adapter: LoRAAdapterConfig? = nil, trainingHeads: Module? = nil,
                            optimizer: Optimizer?) throws -> TrainerState {
        let state = try readState(path)
        if adapter == nil, PeftAdapter.isAdapterFolder(path) {
            throw CheckpointError(path: path, reason: "holds a LoRA adapter, and this run has no model.lora section; continue it with the recipe it was trained with")
        }
        if adapter != nil, !PeftAdapter.isAdapterFolder(path) {
            throw CheckpointError(path: path, reason: "holds whole model weights, not a LoRA adapter, and this run has a model.lora section; continue it with the recipe it was trained with")
        }
        let weights = adapter == nil ? try ShardedSafeTensors.load(path) : [:]
        var headWeights: [String: Tensor]?
        if let trainingHeads {
            let file = "\(path)/\(trainingHeadsFile)"
            guard FileManager.default.fileExists(atPath: file) else {
                throw CheckpointError(path: path, reason: "has no \(trainingHeadsFile) (the distillation projections), so training cannot resume exactly")
            }
            headWeights = try SafeTensors.load(file)
            try trainingHeads.load(headWeights!, source: file, dryRun: true)
        }
        let optimizerState: [String: Tensor]?
        if optimizer != nil {
            let file = "\(path)/\(optimizerFile)"
            guard FileManager.default.fileExists(atPath: file) else {
                throw CheckpointError(path: path, reason: "has no \(optimizerFile), so training cannot resume exactly")
            }
            optimizerState = try SafeTensors.load(file)
        } else {
            optimizerState = nil
        }
        if let adapter {
            try PeftAdapter.loadWeights(from: path, into: model, modulesToSave: adapter.modulesToSave, dryRun: true)
        } else {
            try model.load(weights, source: path, dryRun: true)
        }
        if let optimizer, let optimizerState { try optimizer.loadStateDict(optimizerState) }
        if let adapter {
            try PeftAdapter.loadWeights(from: path, into: model, modulesToSave: adapter.modulesToSave)
        } else {
            try model.load(weights, source: path)
        }
        if let trainingHeads, let headWeights { try trainingHeads.load(headWeights, source: "\(path)/\(trainingHeadsFile)") }
        return state
    }
}
