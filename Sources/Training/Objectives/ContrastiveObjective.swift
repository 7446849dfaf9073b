import Datasets
import Foundation
import Models
import NN
import Torch

/// CLIP-style training of a dual encoder: the contrastive (or SigLIP) loss over the batch,
/// with open_clip's gradient accumulation (earlier micro-batches' features stay in the loss as
/// negatives), optional bf16 autocast, and the learned temperature clamped after each step.
public final class ContrastiveObjective: TrainingObjective {
    public enum Loss { case clip, siglip(SigLIPLoss) }
    public enum Precision: String, Sendable { case fp32, bf16 }

    public let encoder: DualEncoder
    public let tokenizer: CaptionTokenizer
    public var loss: Loss = .clip
    /// Weight of the contrastive term in the total (distillation lowers it).
    public var contrastiveWeight = 1.0
    public var logitScaleMax = Foundation.log(100.0)
    public var precision: Precision = .fp32
    public var zeroShot: ZeroShotClasses?
    /// Retrieval metrics in evaluations (zero-shot and the validation loss are separate).
    public var retrieval = true
    public var preprocessing: ImagePreprocessing
    /// Where the tokenizer files come from (copied into checkpoints).
    public var tokenizerFolder: String?
    /// The model's config.json (Hugging Face layout) written into checkpoints.
    public var configJSON: [String: Any]
    /// Extra weighted loss terms (distillation): given a micro-batch and the student's projected
    /// features for it (with grad), named terms added to the total.
    public var extraLossTerms: ((Batch, _ imageFeatures: Tensor, _ textFeatures: Tensor) -> [String: Tensor])?
    public var extraHeads: Module?
    private var tokenizerFileCache: [String: Data]?

    public var model: Module { encoder }
    public var heads: Module? { extraHeads }

    public init(encoder: DualEncoder, tokenizer: CaptionTokenizer, preprocessing: ImagePreprocessing, tokenizerFolder: String?) {
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.preprocessing = preprocessing
        self.tokenizerFolder = tokenizerFolder
        configJSON = Pretrained.configJSON(encoder)
    }

    public func forwardBackward(_ micro: [Batch]) -> [String: Double] {
        let tokens = micro.map { tokenizer.encode($0.captions) }
        func features(_ i: Int) -> (Tensor, Tensor) {
            let forward = { (self.encoder.imageFeatures(micro[i].pixels), self.encoder.textFeatures(ids: tokens[i].ids, attentionMask: tokens[i].attentionMask)) }
            return precision == .bf16 ? withAutocast(.bfloat16, forward) : forward()
        }
        // open_clip's accumulation: features of every micro-batch first (no grad), then each
        // micro-batch again with grad, its features spliced among the cached ones.
        var cached: [(Tensor, Tensor)] = []
        if micro.count > 1 { cached = withNoGrad { (0..<micro.count).map(features) } }
        var totals: [String: Double] = [:]
        for i in 0..<micro.count {
            let (image, text) = features(i)
            var allImages = image, allTexts = text
            if micro.count > 1 {
                allImages = Tensor.cat(cached.enumerated().map { $0.offset == i ? image : $0.element.0 })
                allTexts = Tensor.cat(cached.enumerated().map { $0.offset == i ? text : $0.element.1 })
            }
            var terms: [String: Tensor] = [:]
            if contrastiveWeight > 0 {
                // Each micro-batch's pass differentiates the whole batch's loss through its own
                // features, so the passes add up to the full batch's gradient — except for the
                // loss's own parameters (logit_scale, SigLIP's bias), which would get the full
                // gradient once per pass: only the first pass lets it through. (open_clip's
                // --accum-freq adds it accum_freq times.)
                let lossParameters = i == 0
                let scale = lossParameters ? encoder.logitScale : encoder.logitScale.detach()
                switch loss {
                case .clip: terms["contrastive_loss"] = clipLoss(imageFeatures: allImages, textFeatures: allTexts, logitScale: scale)
                case .siglip(let s):
                    terms["siglip_loss"] = s(imageFeatures: allImages, textFeatures: allTexts, logitScale: scale, trainBias: lossParameters)
                }
                if contrastiveWeight != 1 { for (name, t) in terms { terms[name] = t * contrastiveWeight } }
            }
            var extraNames: Set<String> = []
            if let extraLossTerms {
                for (name, t) in extraLossTerms(micro[i], image, text) { terms[name] = t; extraNames.insert(name) }
            }
            guard backward(terms, into: &totals, microBatches: micro.count, perMicroBatch: extraNames) else { return totals }
        }
        return totals
    }

    public func afterOptimizerStep() {
        withNoGrad { encoder.logitScale.clamp_(min: 0, max: logitScaleMax) }
    }

    public func logValues() -> [String: Double] { ["logit_scale": encoder.logitScale.item(Double.self)] }

    public func evaluate(_ loader: DataLoader) throws -> [String: Double] {
        try Evaluation.evaluate(encoder, loader: loader, tokenizer: tokenizer, zeroShot: zeroShot, retrieval: retrieval)
    }

    public func checkpointFiles() throws -> [String: Data] {
        var files: [String: Data] = [:]
        files[Checkpoint.configFile] = try JSONSerialization.data(withJSONObject: configJSON, options: [.prettyPrinted, .sortedKeys])
        files["preprocessor_config.json"] = try JSONSerialization.data(withJSONObject: Pretrained.preprocessorJSON(preprocessing), options: [.prettyPrinted, .sortedKeys])
        if tokenizerFileCache == nil { tokenizerFileCache = try Checkpoint.tokenizerFiles(from: tokenizerFolder) }
        files.merge(tokenizerFileCache!) { a, _ in a }
        return files
    }
}
