import NN
import Torch

/// open_clip's ClipLoss: symmetric cross-entropy over the batch's image-text similarities.
/// Features are L2-normalised here; logits are computed in fp32 even under bf16 autocast.
public func clipLoss(imageFeatures: Tensor, textFeatures: Tensor, logitScale: Tensor) -> Tensor {
    let logits = contrastiveLogits(imageFeatures, textFeatures, logitScale: logitScale)
    let labels = Tensor.arange(0, logits.size(0), device: logits.device)
    return (F.crossEntropy(logits, labels) + F.crossEntropy(logits.mT, labels)) * 0.5
}

/// exp(logit_scale) · cos(image_i, text_j) as an [images, texts] fp32 matrix (fp64 for fp64 inputs).
public func contrastiveLogits(_ imageFeatures: Tensor, _ textFeatures: Tensor, logitScale: Tensor) -> Tensor {
    let image = F.normalize(lossPrecision(imageFeatures), dim: -1), text = F.normalize(lossPrecision(textFeatures), dim: -1)
    return image.matmul(text.mT) * lossPrecision(logitScale).exp()
}

/// Losses run in fp32 whatever the model's precision (bf16 autocast, fp16); fp64 stays fp64.
func lossPrecision(_ t: Tensor) -> Tensor { t.dtype == .float64 ? t : t.to(.float32) }

/// The sigmoid loss of SigLIP (Zhai et al. 2023), as open_clip's SigLipLoss: every pair is a
/// binary decision, so the batch is not one softmax. The learned bias is the model's
/// (`DualEncoder.logitBias`, saved with it) in training runs.
public final class SigLIPLoss: Module {
    public let logitBias: Tensor

    /// open_clip initialises the bias at -10 (and logit_scale at ln 10).
    public init(biasInit: Double = -10) {
        logitBias = Tensor.full([], biasInit).requiringGrad()
    }

    /// The loss over a bias that lives elsewhere (the model's).
    public init(bias: Tensor) {
        logitBias = bias
    }

    /// `trainBias` false: the bias is a constant here (no gradient flows to it).
    public func callAsFunction(imageFeatures: Tensor, textFeatures: Tensor, logitScale: Tensor, trainBias: Bool = true) -> Tensor {
        let logits = contrastiveLogits(imageFeatures, textFeatures, logitScale: logitScale) + (trainBias ? logitBias : logitBias.detach())
        let n = logits.size(0)
        let signs = Tensor.eye(n, device: logits.device) * 2.0 - 1.0          // +1 on matching pairs, -1 elsewhere
        // -log σ(sign · logit) = BCE-with-logits(sign · logit, 1), summed over pairs, per image.
        return F.binaryCrossEntropyWithLogits(logits * signs, Tensor.ones(like: logits), reduction: .sum) / Double(n)
    }
}
