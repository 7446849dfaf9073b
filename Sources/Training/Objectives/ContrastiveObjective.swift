import Datasets
import Foundation
import Models
import NN
import Optim
import Torch

/// CLIP-style training of a dual encoder: the contrastive (or SigLIP) loss over the batch,
/// with open_clip's gradient accumulation (earlier micro-batches' features stay in the loss as
/// negatives), optional bf16 or fp16 autocast, and the learned temperature clamped after each step.
public final class ContrastiveObjective: TrainingObjective {
    public enum Loss { case clip, siglip(SigLIPLoss) }

    public let encoder: DualEncoder
    public let tokenizer: CaptionTokenizer
    public var loss: Loss = .clip
    public var logitScaleMax = Foundation.log(100.0)
    public var precision: Precision = .fp32
    public var zeroShot: ZeroShotClasses?
    /// The processes training together (data parallel); nil or one process: this one alone.
    public var group: (any DataParallelGroup)?
    /// Retrieval metrics in evaluations (zero-shot and the validation loss are separate).
    public var retrieval = true
    public var preprocessing: ImagePreprocessing
    /// Where the tokenizer files come from (copied into checkpoints).
    public var tokenizerFolder: String?
    private var tokenizerFileCache: [String: Data]?

    public var model: Module { encoder }
    public var metrics: [MetricDefinition] { Evaluation.metrics(retrieval: retrieval, zeroShot: zeroShot != nil) }

    public init(encoder: DualEncoder, tokenizer: CaptionTokenizer, preprocessing: ImagePreprocessing, tokenizerFolder: String?) {
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.preprocessing = preprocessing
        self.tokenizerFolder = tokenizerFolder
    }

    public func forwardBackward(_ micro: [Batch], scaler: GradScaler?) throws -> [String: Double] {
        try accumulate(micro, scaler: scaler) { i, features in
            let (name, loss) = contrastiveTerm(features, trainsLossParameters: i == 0)
            return [name: loss]
        }
    }

    /// The contrastive (or SigLIP) loss over the step's features, with its log name.
    ///
    /// Each micro-batch's pass differentiates the whole step's loss through its own features, so
    /// the passes add up to the full batch's gradient — except for the loss's own parameters
    /// (logit_scale, SigLIP's bias), which would get the full gradient once per pass: only the
    /// pass with `trainsLossParameters` lets it through. (open_clip's --accum-freq adds it
    /// accum_freq times.)
    func contrastiveTerm(_ features: StepFeatures, trainsLossParameters: Bool) -> (String, Tensor) {
        let scale = trainsLossParameters ? encoder.logitScale : encoder.logitScale.detach()
        switch (loss, features.stepShare) {
        case (.clip, nil):
            return ("contrastive_loss", clipLoss(imageFeatures: features.allImages, textFeatures: features.allTexts, logitScale: scale))
        case (.clip, let share?):
            return ("contrastive_loss", clipLoss(imageFeatures: features.allImages, textFeatures: features.allTexts, logitScale: scale, share: share))
        case (.siglip(let siglip), nil):
            return ("siglip_loss", siglip(imageFeatures: features.allImages, textFeatures: features.allTexts, logitScale: scale,
                                          trainBias: trainsLossParameters))
        case (.siglip(let siglip), let share?):
            return ("siglip_loss", siglip(imageFeatures: features.allImages, textFeatures: features.allTexts, logitScale: scale,
                                          trainBias: trainsLossParameters, share: share))
        }
    }

    /// open_clip's accumulation: features of every micro-batch first (no grad), then each
    /// micro-batch again with grad, its features spliced among the cached ones; `terms` names
    /// the loss terms of micro-batch `i`, which are back-propagated at once. Returns the terms
    /// averaged over the micro-batches (see `backward`), or stops at a non-finite total.
    func accumulate(_ micro: [Batch], perMicroBatch: Set<String> = [], scaler: GradScaler?,
                    terms: (Int, StepFeatures) throws -> [String: Tensor]) throws -> [String: Double] {
        if let group, group.worldSize > 1 {
            return try accumulateAcrossProcesses(micro, group: group, perMicroBatch: perMicroBatch, scaler: scaler, terms: terms)
        }
        let features = featureFunction(micro)
        var cached: [(Tensor, Tensor)] = []
        if micro.count > 1 { cached = withNoGrad { (0..<micro.count).map(features) } }
        var totals: [String: Double] = [:]
        for i in 0..<micro.count {
            let (image, text) = features(i)
            var step = StepFeatures(image: image, text: text, allImages: image, allTexts: text, stepShare: nil, microShare: nil)
            if micro.count > 1 {
                step.allImages = Tensor.cat(cached.enumerated().map { $0.offset == i ? image : $0.element.0 })
                step.allTexts = Tensor.cat(cached.enumerated().map { $0.offset == i ? text : $0.element.1 })
            }
            guard backward(try terms(i, step), into: &totals, microBatches: micro.count, perMicroBatch: perMicroBatch, scaler: scaler) else { return totals }
        }
        return totals
    }

    /// The projected (image, text) features of micro-batch `i`, under the run's autocast.
    func featureFunction(_ micro: [Batch]) -> (Int) -> (Tensor, Tensor) {
        let tokens = micro.map { tokenizer.encode($0.captions) }
        return { i in
            let forward = { (self.encoder.imageFeatures(micro[i].pixels), self.encoder.textFeatures(ids: tokens[i].ids, attentionMask: tokens[i].attentionMask)) }
            guard let type = self.precision.autocastType else { return forward() }
            return withAutocast(type, device: self.encoder.logitScale.device, forward)
        }
    }

    public func afterOptimizerStep() {
        // A frozen temperature (LoRA without logit_scale in modules_to_save) stays the base's.
        guard encoder.logitScale.requiresGrad else { return }
        withNoGrad { encoder.logitScale.clamp_(min: 0, max: logitScaleMax) }
    }

    public func logValues() -> [String: Double] {
        var values = ["logit_scale": encoder.logitScale.item(Double.self)]
        if let bias = encoder.logitBias { values["logit_bias"] = bias.item(Double.self) }
        return values
    }

    public func evaluate(_ loader: DataLoader) throws -> [String: Double] {
        try Evaluation.evaluate(encoder, loader: loader, tokenizer: tokenizer, zeroShot: zeroShot, retrieval: retrieval)
    }

    public func checkpointFiles() throws -> [String: Data] {
        // config.json, and the remote code for models transformers computes only through it.
        var files = try Pretrained.modelFiles(encoder)
        files["preprocessor_config.json"] = try JSONSerialization.data(withJSONObject: Pretrained.preprocessorJSON(preprocessing), options: [.prettyPrinted, .sortedKeys])
        if tokenizerFileCache == nil { tokenizerFileCache = try Checkpoint.tokenizerFiles(from: tokenizerFolder) }
        files.merge(tokenizerFileCache!) { a, _ in a }
        return files
    }

    public var embedders: [String: (Batch) -> Tensor] {
        ["images": { [encoder] batch in encoder.imageFeatures(batch.pixels) },
         "texts": { [encoder, tokenizer] batch in
             let (ids, mask) = tokenizer.encode(batch.captions)
             return encoder.textFeatures(ids: ids, attentionMask: mask)
         }]
    }
}

/// The projected features of one micro-batch (with grad) and of the whole step: this
/// micro-batch's rows spliced among the cached, gradient-free rows of the others.
///
/// Across processes (`DataParallelGroup`) these are gathered from every process: `stepShare` is
/// this process's rows of `allImages`/`allTexts`, `microShare` its rows of `image`/`text`, and
/// each loss term covers only its share (see `RowShare`); nil in one process.
struct StepFeatures {
    var image: Tensor
    var text: Tensor
    var allImages: Tensor
    var allTexts: Tensor
    var stepShare: RowShare?
    var microShare: RowShare?
}
