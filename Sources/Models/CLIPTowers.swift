import NN
import Torch

/// A tower that turns images into one pooled vector each.
public protocol ImageTower: Module {
    /// Width of the pooled features.
    var width: Int { get }
    /// Where its weights are; inputs on another device are copied there.
    var device: Device { get }
    /// Pixels [batch, 3, H, W] → pooled features [batch, width].
    func pooled(_ pixels: Tensor) -> Tensor
    /// Transformer layers; `pooled(pixels)` equals `pooled(states: states(pixels, throughLayer: k), afterLayer: k)`
    /// for every k, which lets frozen-layer caching compute a locked prefix apart.
    var layerCount: Int { get }
    /// Tokens per image in the transformer (a class token and the patches).
    var tokenCount: Int { get }
    /// The token states after the embeddings and layers 0..<k: [batch, tokens, width].
    func states(_ pixels: Tensor, throughLayer k: Int) -> Tensor
    /// From the states after layer k: the remaining layers and the pooling → [batch, width].
    func pooled(states: Tensor, afterLayer k: Int) -> Tensor
}

/// A tower that turns token ids into one pooled vector each.
public protocol TextTower: Module {
    var width: Int { get }
    /// Where its weights are; inputs on another device are copied there.
    var device: Device { get }
    /// ids [batch, tokens] (int64) and an optional attention mask (1 = real token) → [batch, width].
    func pooled(ids: Tensor, attentionMask: Tensor?) -> Tensor
    /// Transformer layers; `pooled` equals `pooled(states: states(…, throughLayer: k), afterLayer: k, …)`
    /// for every k, which lets frozen-layer caching compute a locked prefix apart.
    var layerCount: Int { get }
    /// The token states after the embeddings and layers 0..<k: [batch, tokens, width].
    /// `rowLengths`: run attention one row at a time over each row's real tokens (see
    /// `AttentionMask.attend`), which makes each row's states a function of that row alone.
    func states(ids: Tensor, attentionMask: Tensor?, throughLayer k: Int, rowLengths: [Int]?) -> Tensor
    /// From the states after layer k: the remaining layers and the pooling → [batch, width].
    func pooled(states: Tensor, afterLayer k: Int, ids: Tensor, attentionMask: Tensor?) -> Tensor
}

/// The transformer encoder stack shared by CLIP's towers (`encoder.layers.N`).
public final class CLIPEncoder: Module, CheckpointableLayers {
    public let layers: [TransformerEncoderLayer]
    public var gradientCheckpointing = false

    init(hidden: Int, heads: Int, intermediate: Int, layers count: Int, activation: Activation, eps: Double, attentionDropout: Double) {
        layers = (0..<count).map { _ in
            TransformerEncoderLayer(dimension: hidden, heads: heads, hidden: intermediate, activation: activation,
                                    normFirst: true, eps: eps, attentionDropout: attentionDropout)
        }
    }

    func callAsFunction(_ x: Tensor, mask: AttentionMask = .none) -> Tensor { self(x, mask: mask, layers: 0..<layers.count) }

    /// Layers `range` only.
    func callAsFunction(_ x: Tensor, mask: AttentionMask, layers range: Range<Int>) -> Tensor {
        guard !range.isEmpty else { return x }
        let mask = mask.prepared(tokens: x.size(1), device: x.device)   // once, not per layer
        return layers[range].reduce(x) { h, layer in layer.checkpointed(h, if: gradientCheckpointing) { layer($0, mask: mask) } }
    }
}

public final class CLIPVisionEmbeddings: Module {
    public let patchEmbedding: Conv2d
    public let classEmbedding: Tensor
    public let positionEmbedding: Embedding

    init(_ c: CLIPVisionConfig) {
        patchEmbedding = Conv2d(c.numChannels, c.hiddenSize, kernelSize: (c.patchSize, c.patchSize),
                                stride: (c.patchSize, c.patchSize), bias: false)
        classEmbedding = (Tensor.randn([c.hiddenSize]) * (1 / Double(c.hiddenSize).squareRoot())).requiringGrad()
        positionEmbedding = Embedding(c.patchesPerSide * c.patchesPerSide + 1, c.hiddenSize)
    }

    func callAsFunction(_ pixels: Tensor) -> Tensor {
        let patches = patchEmbedding(pixels).flatten(start: 2).transpose(1, 2)           // [B, P, D]
        let width = classEmbedding.size(0)
        let cls = classEmbedding.view([1, 1, width]).expand([patches.size(0), 1, width])
        return Tensor.cat([cls, patches], dim: 1) + positionEmbedding.weight.unsqueeze(0)
    }
}

/// CLIP's vision transformer (`CLIPVisionModel` in transformers 5).
public final class CLIPVisionTransformer: Module, ImageTower {
    public let config: CLIPVisionConfig
    public let embeddings: CLIPVisionEmbeddings
    public let preLayrnorm: LayerNorm    // sic: the checkpoint key is `pre_layrnorm`
    public let encoder: CLIPEncoder
    public let postLayernorm: LayerNorm

    public init(_ c: CLIPVisionConfig) {
        config = c
        embeddings = CLIPVisionEmbeddings(c)
        preLayrnorm = LayerNorm(c.hiddenSize, eps: c.layerNormEps)
        encoder = CLIPEncoder(hidden: c.hiddenSize, heads: c.numAttentionHeads, intermediate: c.intermediateSize,
                              layers: c.numHiddenLayers, activation: c.hiddenAct, eps: c.layerNormEps, attentionDropout: c.attentionDropout)
        postLayernorm = LayerNorm(c.hiddenSize, eps: c.layerNormEps)
    }

    public var width: Int { config.hiddenSize }

    /// Where the tower's weights are (inputs from elsewhere are copied there).
    public var device: Device { embeddings.patchEmbedding.weight.device }

    public var layerCount: Int { encoder.layers.count }

    public var tokenCount: Int { config.patchesPerSide * config.patchesPerSide + 1 }

    /// Hidden states of every token [batch, 1 + patches, width].
    public func lastHiddenState(_ pixels: Tensor) -> Tensor { states(pixels, throughLayer: layerCount) }

    /// The class token after the post-LayerNorm.
    public func pooled(_ pixels: Tensor) -> Tensor { pooled(states: states(pixels, throughLayer: 0), afterLayer: 0) }

    /// After the embeddings, `pre_layrnorm` and layers 0..<k.
    public func states(_ pixels: Tensor, throughLayer k: Int) -> Tensor {
        encoder(preLayrnorm(embeddings(pixels.on(device))), mask: .none, layers: 0..<k)
    }

    public func pooled(states: Tensor, afterLayer k: Int) -> Tensor {
        postLayernorm(encoder(states, mask: .none, layers: k..<layerCount).select(dim: 1, index: 0))
    }
}

public final class CLIPTextEmbeddings: Module {
    public let tokenEmbedding: Embedding
    public let positionEmbedding: Embedding

    init(_ c: CLIPTextConfig) {
        tokenEmbedding = Embedding(c.vocabSize, c.hiddenSize)
        positionEmbedding = Embedding(c.maxPositionEmbeddings, c.hiddenSize)
    }

    func callAsFunction(_ ids: Tensor) -> Tensor {
        tokenEmbedding(ids) + positionEmbedding.weight.narrow(dim: 0, start: 0, length: ids.size(1)).unsqueeze(0)
    }
}

/// CLIP's text transformer (`CLIPTextModel`): causal attention, final LayerNorm, pooling at the
/// first end-of-text token.
public final class CLIPTextTransformer: Module, TextTower {
    public let config: CLIPTextConfig
    public let embeddings: CLIPTextEmbeddings
    public let encoder: CLIPEncoder
    public let finalLayerNorm: LayerNorm

    public init(_ c: CLIPTextConfig) {
        config = c
        embeddings = CLIPTextEmbeddings(c)
        encoder = CLIPEncoder(hidden: c.hiddenSize, heads: c.numAttentionHeads, intermediate: c.intermediateSize,
                              layers: c.numHiddenLayers, activation: c.hiddenAct, eps: c.layerNormEps, attentionDropout: c.attentionDropout)
        finalLayerNorm = LayerNorm(c.hiddenSize, eps: c.layerNormEps)
    }

    public var width: Int { config.hiddenSize }

    /// Where the tower's weights are (inputs from elsewhere are copied there).
    public var device: Device { embeddings.tokenEmbedding.weight.device }

    public var layerCount: Int { encoder.layers.count }

    public func lastHiddenState(ids: Tensor, attentionMask: Tensor?) -> Tensor {
        let ids = ids.on(device)
        let states = states(ids: ids, attentionMask: attentionMask, throughLayer: 0)
        return finalLayerNorm(encoder(states, mask: mask(attentionMask), layers: 0..<layerCount))
    }

    public func states(ids: Tensor, attentionMask: Tensor?, throughLayer k: Int, rowLengths: [Int]? = nil) -> Tensor {
        var mask = mask(attentionMask)
        mask.rowLengths = rowLengths
        return encoder(embeddings(ids.on(device)), mask: mask, layers: 0..<k)
    }

    public func pooled(ids: Tensor, attentionMask: Tensor?) -> Tensor {
        pooled(states: states(ids: ids, attentionMask: attentionMask, throughLayer: 0), afterLayer: 0, ids: ids, attentionMask: attentionMask)
    }

    public func pooled(states: Tensor, afterLayer k: Int, ids: Tensor, attentionMask: Tensor?) -> Tensor {
        let ids = ids.on(device)
        let hidden = finalLayerNorm(encoder(states, mask: mask(attentionMask), layers: k..<layerCount))
        // transformers: configs from before its PR #24773 say eos_token_id = 2 and pool at the
        // largest id; newer ones pool at the first eos. int32 before argmax: ONNX runtimes lack int64 ArgMax.
        let position = config.eosTokenId == 2
            ? ids.to(.int32).argmax(dim: 1)
            : ids.eq(config.eosTokenId).to(.int32).argmax(dim: 1)
        let index = position.view([-1, 1, 1]).expand([-1, 1, hidden.size(2)])
        return hidden.gather(dim: 1, index: index).squeeze(1)
    }

    private func mask(_ attentionMask: Tensor?) -> AttentionMask {
        AttentionMask(causal: true, keyPadding: attentionMask?.on(device))
    }
}
