import NN
import Torch

/// open_clip's ClipLoss: symmetric cross-entropy over the batch's image-text similarities.
/// Features are L2-normalised here; logits are computed in fp32 even under bf16 autocast.
public func clipLoss(imageFeatures: Tensor, textFeatures: Tensor, logitScale: Tensor) -> Tensor {
    let logits = contrastiveLogits(imageFeatures, textFeatures, logitScale: logitScale)
    let labels = Tensor.arange(0, logits.size(0), device: logits.device)
    return (F.crossEntropy(logits, labels) + F.crossEntropy(logits.mT, labels)) * 0.5
}

/// exp(logit_scale) · cos(image_i, text_j) as an [images, texts] fp32 matrix.
public func contrastiveLogits(_ imageFeatures: Tensor, _ textFeatures: Tensor, logitScale: Tensor) -> Tensor {
    let image = F.normalize(imageFeatures.to(.float32), dim: -1), text = F.normalize(textFeatures.to(.float32), dim: -1)
    return image.matmul(text.mT) * logitScale.to(.float32).exp()
}

/// The sigmoid loss of SigLIP (Zhai et al. 2023), as open_clip's SigLipLoss: every pair is a
/// binary decision, so the batch is not one softmax. Owns the learned bias.
public final class SigLIPLoss: Module {
    public let logitBias: Tensor

    /// open_clip initialises the bias at -10 (and logit_scale at ln 10).
    public init(biasInit: Double = -10) {
        logitBias = Tensor.full([], biasInit).requiringGrad()
    }

    public func callAsFunction(imageFeatures: Tensor, textFeatures: Tensor, logitScale: Tensor) -> Tensor {
        let logits = contrastiveLogits(imageFeatures, textFeatures, logitScale: logitScale) + logitBias
        let n = logits.size(0)
        let signs = Tensor.eye(n, device: logits.device) * 2.0 - 1.0          // +1 on matching pairs, -1 elsewhere
        // -log σ(sign · logit) = BCE-with-logits(sign · logit, 1), summed over pairs, per image.
        return F.binaryCrossEntropyWithLogits(logits * signs, Tensor.ones(like: logits), reduction: .sum) / Double(n)
    }
}
