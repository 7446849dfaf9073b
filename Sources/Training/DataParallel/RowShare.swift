import Foundation
import NN
import Torch

/// This process's part of a loss computed across processes (open_clip's "local loss"): the rows
/// `rows` of a matrix with `total` rows gathered from `processes` processes. A term over a share
/// is the sum of its rows' losses × processes / total, so that the shares of all processes
/// average to the loss over all rows (the averaged gradients then match one process with the
/// whole batch). Rows are any partition; each process takes its own samples'.
struct RowShare {
    let rows: Range<Int>
    let total: Int
    let processes: Int

    /// Sum over the share's rows → its contribution to the mean over all rows.
    func scaled(_ sum: Tensor) -> Tensor { sum * (Double(processes) / Double(total)) }

    func select(_ t: Tensor) -> Tensor { t.narrow(dim: 0, start: rows.lowerBound, length: rows.count) }

    /// The column of each row's own pair ([rows], int64).
    func labels(device: Device) -> Tensor { Tensor.arange(rows.lowerBound, rows.upperBound, device: device) }
}

/// The CLIP loss over a share: its images against every text and its texts against every image.
func clipLoss(imageFeatures: Tensor, textFeatures: Tensor, logitScale: Tensor, share: RowShare) -> Tensor {
    let perImage = contrastiveLogits(share.select(imageFeatures), textFeatures, logitScale: logitScale)
    let perText = contrastiveLogits(share.select(textFeatures), imageFeatures, logitScale: logitScale)
    let labels = share.labels(device: perImage.device)
    return share.scaled((F.crossEntropy(perImage, labels, reduction: .sum) + F.crossEntropy(perText, labels, reduction: .sum)) * 0.5)
}

extension SigLIPLoss {
    /// The sigmoid loss over a share: its images against every text (SigLIP's loss is per image).
    func callAsFunction(imageFeatures: Tensor, textFeatures: Tensor, logitScale: Tensor, trainBias: Bool, share: RowShare) -> Tensor {
        let logits = contrastiveLogits(share.select(imageFeatures), textFeatures, logitScale: logitScale) + (trainBias ? logitBias : logitBias.detach())
        let columns = Tensor.arange(0, textFeatures.size(0), device: logits.device)
        let signs = columns.unsqueeze(0).eq(share.labels(device: logits.device).unsqueeze(1)).to(logits.dtype) * 2.0 - 1.0
        return share.scaled(F.binaryCrossEntropyWithLogits(logits * signs, Tensor.ones(like: logits), reduction: .sum))
    }
}

/// Logit distillation over a share of the micro-batch's rows: KL of the softened image→text
/// rows and text→image rows (the transposed matrix's), × T².
func logitDistillationLoss(student: (image: Tensor, text: Tensor), teacher: (image: Tensor, text: Tensor), logitScale: Tensor,
                           teacherScale: Double, temperature: Double, share: RowShare) -> Tensor {
    func kl(_ s: Tensor, _ t: Tensor) -> Tensor {
        F.klDiv((s / temperature).logSoftmax(dim: 1), (t / temperature).logSoftmax(dim: 1), reduction: .sum, logTarget: true)
    }
    let imageRows = kl(contrastiveLogits(share.select(student.image), student.text, logitScale: logitScale),
                       lossPrecision(share.select(teacher.image).matmul(teacher.text.mT) * teacherScale))
    let textRows = kl(contrastiveLogits(share.select(student.text), student.image, logitScale: logitScale),
                      lossPrecision(share.select(teacher.text).matmul(teacher.image.mT) * teacherScale))
    return share.scaled((imageRows + textRows) * (0.5 * temperature * temperature))
}

/// Feature distillation over a share's rows (`student` and `teacher` hold only those rows).
func featureDistillationLoss(student: Tensor, teacher: Tensor, kind: FeatureDistance, share: RowShare) -> Tensor {
    let s = lossPrecision(student), t = lossPrecision(teacher)
    switch kind {
    case .cosine: return share.scaled((1.0 - F.cosineSimilarity(s, t, dim: -1)).sum())
    case .mse: return share.scaled(F.mseLoss(s, t, reduction: .sum) / Double(Swift.max(1, s.size(-1))))
    }
}
