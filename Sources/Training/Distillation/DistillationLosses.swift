import NN
import Torch

/// open_clip's DistillClipLoss, generalised with a temperature: the KL divergence from the
/// teacher's to the student's softened similarity distributions over the batch, row-wise
/// (image → texts) and column-wise (text → images), averaged, times T² so that gradients keep
/// their size as T changes (Hinton et al. 2015). Both matrices are [n, n] logits.
public func logitDistillationLoss(student: Tensor, teacher: Tensor, temperature: Double) -> Tensor {
    func kl(_ s: Tensor, _ t: Tensor) -> Tensor {
        // batchmean: sum over everything / rows, what KL per sample means.
        F.klDiv((s / temperature).logSoftmax(dim: 1), (t / temperature).logSoftmax(dim: 1), reduction: .sum, logTarget: true) / Double(s.size(0))
    }
    let s = lossPrecision(student), t = lossPrecision(teacher)
    return (kl(s, t) + kl(s.mT, t.mT)) * (0.5 * temperature * temperature)
}

/// How far student embeddings are from the teacher's: 1 − cosine (scale-free), or the mean
/// squared error of the raw features.
public func featureDistillationLoss(student: Tensor, teacher: Tensor, kind: FeatureDistance) -> Tensor {
    let s = lossPrecision(student), t = lossPrecision(teacher)
    switch kind {
    case .cosine: return (1.0 - F.cosineSimilarity(s, t, dim: -1)).mean()
    case .mse: return F.mseLoss(s, t)
    }
}

/// How two embeddings are compared in feature distillation: 1 − cosine similarity, or the mean
/// squared error of the (projected) features.
public enum FeatureDistance: String, Sendable, CaseIterable { case cosine, mse }

/// Learned linear maps from the student's embedding size to the teacher's, one per tower, for
/// feature distillation when the sizes differ. Trained with the student, saved with its
/// checkpoints (for resume), never exported.
public final class FeatureProjections: Module {
    public let image: Linear?
    public let text: Linear?

    public init(imageFrom: Int?, imageTo: Int?, textFrom: Int, textTo: Int) {
        image = imageFrom.flatMap { from in imageTo.flatMap { from == $0 ? nil : Linear(from, $0, bias: false) } }
        text = textFrom == textTo ? nil : Linear(textFrom, textTo, bias: false)
    }

    public var isEmpty: Bool { image == nil && text == nil }

    public func projectImage(_ x: Tensor) -> Tensor { image.map { $0(x) } ?? x }
    public func projectText(_ x: Tensor) -> Tensor { text.map { $0(x) } ?? x }
}
