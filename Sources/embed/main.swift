import ArgumentParser
import Datasets
import Foundation
import Models
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

    func validate() throws {
        if !texts.isEmpty && textsFile != nil { throw ValidationError("give --texts or --texts-file, not both") }
        if images.isEmpty && texts.isEmpty && textsFile == nil { throw ValidationError("nothing to embed: give --images and/or --texts / --texts-file") }
        if batchSize <= 0 { throw ValidationError("--batch-size must be positive") }
    }

    func run() throws {
        let loaded = try Pretrained.load(checkpoint)
        let allTexts = try textsFile.map(readTexts) ?? texts
        var output: [String: Any] = [:]
        var imageEmbeds: Tensor?, textEmbeds: Tensor?

        if !images.isEmpty {
            guard case .dualEncoder(let model) = loaded.model, let preprocessing = loaded.preprocessing else {
                throw ValidationError("\(checkpoint) is a text-only model; it cannot embed images")
            }
            let pixels = try ImagePipeline(preprocessing: preprocessing).pixels(ofFiles: images, batchSize: batchSize)
            let features = withInferenceMode { Tensor.cat(pixels.map { model.imageFeatures($0) }) }
            imageEmbeds = raw ? features : F.normalize(features, dim: -1)
            output["image_embeds"] = rows(imageEmbeds!)
        }
        if !allTexts.isEmpty {
            let tokenizer = try loaded.tokenizer()
            let features = withInferenceMode {
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
            textEmbeds = raw ? features : F.normalize(features, dim: -1)
            output["text_embeds"] = rows(textEmbeds!)
        }
        let data = try JSONSerialization.data(withJSONObject: output, options: [.sortedKeys])
        try data.write(to: URL(fileURLWithPath: out), options: .atomic)
        print("wrote \(out): embeddings of \(counted(images.count, "image")) and \(counted(allTexts.count, "text"))")

        if let imageEmbeds, let textEmbeds, case .dualEncoder = loaded.model {
            let similarity = F.normalize(imageEmbeds, dim: -1).matmul(F.normalize(textEmbeds, dim: -1).mT).toArray(Float.self)
            print("\ncosine similarity (rows: images, columns: texts)")
            for (i, path) in images.enumerated() {
                let row = similarity[(i * allTexts.count)..<((i + 1) * allTexts.count)]
                let best = row.indices.max { row[$0] < row[$1] }! - i * allTexts.count
                print(row.map { String(format: "%6.3f", $0) }.joined(separator: " "), " ", URL(fileURLWithPath: path).lastPathComponent,
                      "→ \"\(allTexts[best])\"")
            }
        }
    }

    func readTexts(_ path: String) throws -> [String] {
        guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("\(path): cannot read the texts file") }
        guard let list = (try? JSONSerialization.jsonObject(with: data)) as? [String] else {
            throw ValidationError("\(path): must be a JSON array of strings")
        }
        return list
    }

    func rows(_ t: Tensor) -> [[Double]] {
        let values = t.toArray(Double.self), width = t.size(1)
        return (0..<t.size(0)).map { Array(values[($0 * width)..<(($0 + 1) * width)]) }
    }
}
