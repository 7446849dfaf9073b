import ArgumentParser
import Datasets
import Foundation
import Models
import NN
import Torch

/// Embeds images and/or texts with any checkpoint the framework loads, using the checkpoint's
/// own preprocessing and tokenizer.
@main
struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Embed images and texts with a CLIP, dual-encoder or sentence-transformers checkpoint.", version: ClipTune.versionLine)

    @Option(help: "Checkpoint folder (config.json + model.safetensors + tokenizer files).") var checkpoint: String
    @Option(parsing: .upToNextOption, help: "Image files to embed (JPEG, PNG or WebP, told apart by content).") var images: [String] = []
    @Option(parsing: .upToNextOption, help: "Texts to embed.") var texts: [String] = []
    @Option(help: "A JSON array of texts to embed.") var textsFile: String?
    @Option(help: "Where to write {\"image_embeds\": [...], \"text_embeds\": [...]}.") var out: String
    @Flag(help: "Write projected features as transformers' get_image_features / get_text_features return them, not L2-normalised.")
    var raw = false
    @Option(help: "Texts or images per forward pass.") var batchSize = 32
    @Option(help: "auto, cpu, cuda or cuda:N (auto: the first GPU when there is one).") var device = "auto"
    @Option(help: "For a LoRA adapter checkpoint: its base model's folder, instead of the one adapter_config.json names (base_model_name_or_path).") var base: String?

    func validate() throws {
        if !texts.isEmpty && textsFile != nil { throw ValidationError("give --texts or --texts-file, not both") }
        if images.isEmpty && texts.isEmpty && textsFile == nil { throw ValidationError("nothing to embed: give --images and/or --texts / --texts-file") }
        if batchSize <= 0 { throw ValidationError("--batch-size must be positive") }
        guard Device.isWellFormed(device) else { throw ValidationError("--device must be auto, cpu, cuda or cuda:N, found \"\(device)\"") }
    }

    func run() throws {
        // The output is checked before anything loads: never a checkpoint file, an input, a folder.
        var inputs = [OutputLocation.Protected(checkpoint, "the checkpoint folder")]
        inputs += images.map { OutputLocation.Protected($0, "an input image") }
        if let textsFile { inputs.append(.init(textsFile, "the texts file")) }
        _ = try OutputLocation.check(out, kind: .file(isPrevious: Self.isEmbedOutput, previous: "an earlier embed output"),
                                     overwriteOption: nil, protecting: inputs)
        let allTexts = try textsFile.map(readTexts) ?? texts
        if let empty = allTexts.firstIndex(where: { $0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty }) {
            throw EmbedError("\(textsFile.map { "\($0): item" } ?? "--texts: text") \(empty + 1) of \(allTexts.count) is empty; give each text some words (an empty caption embeds nothing)")
        }
        let device = try Device.parse(self.device).validated()
        if base != nil, !PeftAdapter.isAdapterFolder(checkpoint) {
            throw EmbedError("--base is for LoRA adapter checkpoints (with adapter_config.json); \(checkpoint) is a whole model")
        }
        let loaded = try Pretrained.load(checkpoint, base: base)
        switch loaded.model {
        case .dualEncoder(let model): model.to(device)
        case .textEncoder(let bert, _): bert.to(device)
        }
        var output: [String: Any] = [:]
        var imageEmbeds: Tensor?, textEmbeds: Tensor?

        if !images.isEmpty {
            guard case .dualEncoder(let model) = loaded.model, let preprocessing = loaded.preprocessing else {
                throw EmbedError("\(checkpoint) is a text-only model; it cannot embed images")
            }
            let pixels = try ImagePipeline(preprocessing: preprocessing).pixels(ofFiles: images, batchSize: batchSize)
            let features = try forward("image tower") { Tensor.cat(pixels.map { model.imageFeatures($0) }) }
            imageEmbeds = try forward("image tower") { raw ? features : F.normalize(features, dim: -1) }
            output["image_embeds"] = try rows(imageEmbeds!) { "image \($0 + 1) (\(images[$0]))" }
        }
        if !allTexts.isEmpty {
            let tokenizer = try loaded.tokenizer()
            let features = try forward("text tower") {
                Tensor.cat(stride(from: 0, to: allTexts.count, by: batchSize).map { start in
                    let chunk = Array(allTexts[start..<min(start + batchSize, allTexts.count)])
                    let (ids, mask) = tokenizer.encode(chunk)
                    switch loaded.model {
                    case .dualEncoder(let model): return model.textFeatures(ids: ids, attentionMask: mask)
                    case .textEncoder(let bert, let normalize):
                        let pooled = bert.pooled(ids: ids, attentionMask: mask)
                        return normalize ? F.normalize(pooled, dim: -1) : pooled   // the model's own sentence embedding
                    }
                })
            }
            textEmbeds = try forward("text tower") { raw ? features : F.normalize(features, dim: -1) }
            output["text_embeds"] = try rows(textEmbeds!) { "text \($0 + 1) (\"\(allTexts[$0].prefix(60))\")" }
        }
        let data = try JSONSerialization.data(withJSONObject: output, options: [.sortedKeys])
        try OutputLocation.write(data, to: out)
        print("wrote \(out): embeddings of \(counted(images.count, "image")) and \(counted(allTexts.count, "text"))")

        if let imageEmbeds, let textEmbeds, case .dualEncoder = loaded.model {
            let similarity = try forward("similarity") { F.normalize(imageEmbeds, dim: -1).matmul(F.normalize(textEmbeds, dim: -1).mT) }.toArray(Float.self)
            print("\ncosine similarity (rows: images, columns: texts)")
            for (i, path) in images.enumerated() {
                let row = similarity[(i * allTexts.count)..<((i + 1) * allTexts.count)]
                let best = row.indices.max { row[$0] < row[$1] }! - i * allTexts.count
                print(row.map { String(format: "%6.3f", $0) }.joined(separator: " "), " ", URL(fileURLWithPath: path).lastPathComponent,
                      "→ \"\(allTexts[best])\"")
            }
        }
    }

    /// Whether `path` is a file `embed` wrote: JSON starting with one of its keys.
    static func isEmbedOutput(_ path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        let head = String(decoding: (try? handle.read(upToCount: 20)) ?? Data(), as: UTF8.self)
        return head.hasPrefix("{\"image_embeds\":[") || head.hasPrefix("{\"text_embeds\":[") || head == "{}"
    }

    /// Runs a model's forward pass so that a libtorch failure is an error, not a trap.
    func forward(_ what: String, _ body: () -> Tensor) throws -> Tensor {
        do { return try withTorchErrors { withInferenceMode(body) } } catch let error as TorchError {
            throw EmbedError("\(checkpoint): the \(what) failed: \(error)")
        }
    }

    func readTexts(_ path: String) throws -> [String] {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), !isFolder.boolValue,
              let data = FileManager.default.contents(atPath: path) else {
            throw EmbedError("\(path): cannot read the texts file\(isFolder.boolValue ? " (it is a folder)" : "")")
        }
        guard let json = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) else {
            throw EmbedError("\(path): is not valid JSON; give a JSON array of strings")
        }
        guard let list = json as? [Any] else { throw EmbedError("\(path): must be a JSON array of strings, not \(type(of: json) == String.self ? "a string" : "a JSON \(json is [String: Any] ? "object" : "value")")") }
        guard !list.isEmpty else { throw EmbedError("\(path): holds no texts ([]); give at least one") }
        return try list.enumerated().map { i, item in
            guard let text = item as? String else { throw EmbedError("\(path): item \(i + 1) is not a string") }
            return text
        }
    }

    /// The embeddings as rows of numbers; a row that is not finite is an error naming its input.
    func rows(_ t: Tensor, name: (Int) -> String) throws -> [[Double]] {
        let values = t.toArray(Double.self), width = t.size(1)
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            let value = values[bad]
            throw EmbedError("the model produced \(value.isNaN ? "NaN" : "an infinite value") for \(name(bad / width)): its weights or input are not usable (nothing was written)")
        }
        return (0..<t.size(0)).map { Array(values[($0 * width)..<(($0 + 1) * width)]) }
    }
}

/// A problem with the data or the checkpoint (exit 1, no usage text).
struct EmbedError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
