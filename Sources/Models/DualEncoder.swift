import Foundation
import NN
import Torch

/// An image tower and a text tower joined by linear projections into one embedding space, with
/// a learned temperature. The same keys serve transformers' `CLIPModel` and
/// `VisionTextDualEncoderModel`: `vision_model.*`, `text_model.*`, `visual_projection.weight`,
/// `text_projection.weight`, `logit_scale` (and `logit_bias`, SiglipModel's key, when trained
/// with the SigLIP loss).
public final class DualEncoder: Module {
    /// Which transformers class the checkpoint is (what `config.json` says when saved).
    public enum Kind: String, Sendable {
        case clip
        case visionTextDualEncoder = "vision-text-dual-encoder"
    }

    public let kind: Kind
    public let visionModel: any ImageTower
    public let textModel: any TextTower
    public let visualProjection: Linear
    public let textProjection: Linear
    public let logitScale: Tensor
    /// SigLIP's learned bias (`logit_bias`), saved and loaded with the model; nil for models
    /// trained with the CLIP loss. Set it before an optimizer is built over the model.
    public var logitBias: Tensor?
    public let projectionDim: Int
    /// The text tower's locked prefix computed once per distinct caption (set by training when
    /// the prefix is frozen and captions are not augmented); nil computes it every time.
    public var textPrefixCache: TextPrefixCache? {
        willSet { precondition(newValue.map { $0.tower === textModel } ?? true, "the cache belongs to another text tower") }
    }
    /// The same for the image tower, per distinct image (set when images are not augmented).
    public var imagePrefixCache: ImagePrefixCache? {
        willSet { precondition(newValue.map { $0.tower === visionModel } ?? true, "the cache belongs to another image tower") }
    }
    /// open_clip's and big_vision's initial SigLIP bias.
    public static let sigLIPLogitBiasInit = -10.0

    public init(kind: Kind, vision: any ImageTower, text: any TextTower, projectionDim: Int, logitScaleInit: Double = 2.6592) {
        self.kind = kind
        visionModel = vision
        textModel = text
        visualProjection = Linear(vision.width, projectionDim, bias: false)
        textProjection = Linear(text.width, projectionDim, bias: false)
        logitScale = Tensor.full([], logitScaleInit).requiringGrad()
        self.projectionDim = projectionDim
    }

    /// Where the model computes (its towers' weights; `to(_:)` moves them).
    public var device: Device { visionModel.device }

    /// Projected image features, as transformers' `get_image_features` (not normalised).
    public func imageFeatures(_ pixels: Tensor) -> Tensor {
        visualProjection(imagePrefixCache.map { $0.pooled(pixels) } ?? visionModel.pooled(pixels))
    }

    /// Projected text features, as `get_text_features` (not normalised).
    public func textFeatures(ids: Tensor, attentionMask: Tensor?) -> Tensor {
        let pooled = textPrefixCache.map { $0.pooled(ids: ids, attentionMask: attentionMask) }
            ?? textModel.pooled(ids: ids, attentionMask: attentionMask)
        return textProjection(pooled)
    }

    /// Cosine similarities scaled by exp(logit_scale), plus `logit_bias` when there is one:
    /// [images, texts]. With a bias (SigLIP), sigmoid of a logit is the pair's probability.
    public func logitsPerImage(imageFeatures: Tensor, textFeatures: Tensor) -> Tensor {
        let image = F.normalize(imageFeatures, dim: -1), text = F.normalize(textFeatures, dim: -1)
        let logits = image.matmul(text.mT) * logitScale.exp()
        return logitBias.map { logits + $0 } ?? logits
    }
}
