import Datasets
import Foundation
import Models
import NN
import Torch

/// A frozen teacher: any checkpoint the framework loads, in eval mode, run without gradients,
/// with its own tokenizer and image preprocessing. Embeddings come out L2-normalised.
public final class Teacher {
    public let path: String
    public let checkpoint: PretrainedCheckpoint
    public let tokenizer: TensorTokenizer
    /// The teacher's exp(logit_scale) (a text-only teacher: sentence-transformers' usual 20).
    public let logitScale: Double
    public let embeddingDim: Int
    public let parameterCount: Int

    public var dualEncoder: DualEncoder? {
        if case .dualEncoder(let encoder) = checkpoint.model { return encoder }
        return nil
    }
    public var isTextOnly: Bool { dualEncoder == nil }
    public var preprocessing: ImagePreprocessing? { checkpoint.preprocessing }

    public init(_ path: String) throws {
        guard FileManager.default.fileExists(atPath: "\(path)/config.json") else {
            throw TrainingError(message: "distill.teacher: '\(path)' is not a model checkpoint (no config.json)")
        }
        self.path = path
        checkpoint = try Pretrained.load(path)
        tokenizer = try checkpoint.tokenizer()
        switch checkpoint.model {
        case .dualEncoder(let encoder):
            encoder.freeze()
            encoder.eval()
            logitScale = Foundation.exp(encoder.logitScale.item(Double.self))
            embeddingDim = encoder.projectionDim
            parameterCount = encoder.parameterCount
        case .textEncoder(let bert, _):
            bert.freeze()
            bert.eval()
            logitScale = 20
            embeddingDim = bert.width
            parameterCount = bert.parameterCount
        }
    }

    /// Where the teacher computes (and where its embeddings are returned).
    public private(set) var device: Device = .cpu

    /// Moves the teacher's weights to `device`.
    public func place(on device: Device) {
        switch checkpoint.model {
        case .dualEncoder(let encoder): encoder.to(device)
        case .textEncoder(let bert, _): bert.to(device)
        }
        self.device = device
    }

    /// Normalised image embeddings [n, D] of pixels preprocessed the teacher's way.
    public func imageEmbeddings(_ pixels: Tensor) -> Tensor {
        guard let encoder = dualEncoder else { fatalError("a text-only teacher has no image tower") }
        return withNoGrad { F.normalize(encoder.imageFeatures(pixels), dim: -1) }
    }

    /// Normalised text embeddings [n, D], tokenised with the teacher's tokenizer.
    public func textEmbeddings(_ captions: [String]) -> Tensor {
        let (ids, mask) = tokenizer.encode(captions)
        return withNoGrad {
            switch checkpoint.model {
            case .dualEncoder(let encoder): F.normalize(encoder.textFeatures(ids: ids, attentionMask: mask), dim: -1)
            case .textEncoder(let bert, _): F.normalize(bert.pooled(ids: ids, attentionMask: mask), dim: -1)
            }
        }
    }

    /// Identifies the teacher's weights (a cache made with other weights is not reused); a LoRA
    /// adapter teacher's include its base's.
    public var fingerprint: String {
        let fm = FileManager.default
        func parts(_ folder: String) -> [String] {
            let files = ((try? fm.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".safetensors") && $0 != Checkpoint.optimizerFile }.sorted()
            return [URL(fileURLWithPath: folder).standardizedFileURL.path] + files.map { name -> String in
                let attributes = try? fm.attributesOfItem(atPath: "\(folder)/\(name)")
                let size = (attributes?[.size] as? NSNumber)?.intValue ?? 0
                let modified = (attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
                return "\(name):\(size):\(Int(modified))"
            }
        }
        return (parts(path) + (checkpoint.adapter.map { parts($0.base) } ?? [])).joined(separator: "|")
    }
}
