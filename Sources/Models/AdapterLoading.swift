import Foundation
import NN
import Torch

/// A LoRA adapter folder as `Pretrained.load` applied it.
public struct LoadedAdapter: Sendable {
    /// The adapter folder.
    public let folder: String
    public let config: LoRAAdapterConfig
    /// The base model's folder the adapter was applied to.
    public let base: String
    /// Layers that carry an adapter.
    public let adaptedLayers: Int
    /// Whether the adapters were merged into the weights (the model has no adapter layers left).
    public let merged: Bool
}

extension Pretrained {
    /// Loads the base model of a PEFT adapter folder and applies the adapter (keys and shapes
    /// checked against the base first), merged unless `merge` is false. The checkpoint's
    /// `directory` is the base's: config, tokenizer and preprocessing are the base model's.
    static func loadAdapter(_ folder: String, base: String?, merge: Bool) throws -> PretrainedCheckpoint {
        let configPath = "\(folder)/\(PeftAdapter.configFile)"
        let config = try LoRAAdapterConfig.read(configPath)
        let baseFolder = try adapterBase(folder, config: config, given: base)
        if PeftAdapter.isAdapterFolder(baseFolder) {
            throw ModelConfigError(file: configPath, key: "base_model_name_or_path",
                                   reason: "names \(baseFolder), which is itself an adapter folder; adapters on adapters are not supported: merge that one first (swift run merge --checkpoint \(baseFolder) --out DIR) and point this one at DIR")
        }
        let weightsPath = "\(folder)/\(PeftAdapter.weightsFile)"
        guard FileManager.default.fileExists(atPath: weightsPath) else {
            throw ModelConfigError(file: weightsPath, reason: "is missing; a LoRA adapter folder holds it beside \(PeftAdapter.configFile)")
        }
        let weights = try SafeTensors.load(weightsPath)
        let loaded = try loadModel(baseFolder)
        let model: Module = switch loaded.model {
        case .dualEncoder(let encoder): encoder
        case .textEncoder(let bert, _): bert
        }
        try PeftAdapter.apply(config, weights: weights, to: model, file: weightsPath, base: baseFolder, rename: canonicalKey)
        let adapted = model.adaptedLayers().count
        if merge { model.mergeAdapters() }
        model.eval()
        return PretrainedCheckpoint(directory: baseFolder, model: loaded.model, preprocessing: loaded.preprocessing,
                                    adapter: LoadedAdapter(folder: folder, config: config, base: baseFolder, adaptedLayers: adapted, merged: merge))
    }

    /// The base model's folder of an adapter folder: `given` (a program's `--base`), else
    /// `base_model_name_or_path` as a path — absolute, relative to the working directory, or
    /// relative to the adapter folder. A Hub name or a moved folder is an error that says how to
    /// point at the base.
    public static func adapterBase(_ folder: String, config: LoRAAdapterConfig, given: String?) throws -> String {
        let fm = FileManager.default
        func isCheckpoint(_ path: String) -> Bool { fm.fileExists(atPath: "\(path)/config.json") || PeftAdapter.isAdapterFolder(path) }
        if let given {
            guard isCheckpoint(given) else {
                throw ModelConfigError(file: given, reason: "is not a checkpoint folder (no config.json); --base must be the folder of the model the adapter \(folder) was trained on")
            }
            return given
        }
        let configPath = "\(folder)/\(PeftAdapter.configFile)"
        let how = "give the base model's folder with --base DIR, or write its path into \(configPath)"
        guard let named = config.baseModelPath, !named.isEmpty else {
            throw ModelConfigError(file: configPath, key: "base_model_name_or_path", reason: "is missing, so the adapter does not say which model it adapts: \(how)")
        }
        let candidates = named.hasPrefix("/") ? [named] : [named, "\(folder)/\(named)"]
        if let found = candidates.first(where: isCheckpoint) { return found }
        let hint = named.hasPrefix("/") || named.hasPrefix(".") ? "" : " (a Hugging Face Hub name? this tool reads local folders only)"
        throw ModelConfigError(file: configPath, key: "base_model_name_or_path",
                               reason: "is \"\(named)\", which is not a checkpoint folder here\(hint): \(how)")
    }
}
