import NN
import Torch

public final class BertEmbeddings: Module {
    public let wordEmbeddings: Embedding
    public let positionEmbeddings: Embedding
    public let tokenTypeEmbeddings: Embedding
    public let layerNorm: LayerNorm
    public let dropout: Dropout
    override public class var keyOverrides: [String: String] { ["layerNorm": "LayerNorm"] }

    init(_ c: BertConfig) {
        wordEmbeddings = Embedding(c.vocabSize, c.hiddenSize)
        positionEmbeddings = Embedding(c.maxPositionEmbeddings, c.hiddenSize)
        tokenTypeEmbeddings = Embedding(c.typeVocabSize, c.hiddenSize)
        layerNorm = LayerNorm(c.hiddenSize, eps: c.layerNormEps)
        dropout = Dropout(c.hiddenDropoutProb)
    }

    func callAsFunction(_ ids: Tensor) -> Tensor {
        let length = ids.size(1)
        let positions = positionEmbeddings.weight.narrow(dim: 0, start: 0, length: length).unsqueeze(0)
        let tokenType = tokenTypeEmbeddings.weight.select(dim: 0, index: 0)   // single-segment input
        return dropout(layerNorm(wordEmbeddings(ids) + positions + tokenType))
    }
}

public final class BertSelfAttention: Module {
    public let query: Linear
    public let key: Linear
    public let value: Linear
    let heads: Int
    let dropout: Double

    init(_ c: BertConfig) {
        query = Linear(c.hiddenSize, c.hiddenSize)
        key = Linear(c.hiddenSize, c.hiddenSize)
        value = Linear(c.hiddenSize, c.hiddenSize)
        heads = c.numAttentionHeads
        dropout = c.attentionProbsDropoutProb
    }

    func callAsFunction(_ x: Tensor, mask: AttentionMask) -> Tensor {
        func split(_ t: Tensor) -> Tensor { t.unflatten(dim: -1, sizes: [heads, -1]).transpose(1, 2) }
        let out = mask.attend(split(query(x)), split(key(x)), split(value(x)), dropout: isTraining ? dropout : 0)
        return out.transpose(1, 2).flatten(start: 2)
    }
}

/// `dense` → dropout → LayerNorm(x + residual): BERT's BertSelfOutput and BertOutput.
public final class BertResidualOutput: Module {
    public let dense: Linear
    public let layerNorm: LayerNorm
    public let dropout: Dropout
    override public class var keyOverrides: [String: String] { ["layerNorm": "LayerNorm"] }

    init(inFeatures: Int, _ c: BertConfig) {
        dense = Linear(inFeatures, c.hiddenSize)
        layerNorm = LayerNorm(c.hiddenSize, eps: c.layerNormEps)
        dropout = Dropout(c.hiddenDropoutProb)
    }

    func callAsFunction(_ x: Tensor, residual: Tensor) -> Tensor { layerNorm(dropout(dense(x)) + residual) }
}

public final class BertAttention: Module {
    public let selfAttention: BertSelfAttention
    public let output: BertResidualOutput
    override public class var keyOverrides: [String: String] { ["selfAttention": "self"] }

    init(_ c: BertConfig) {
        selfAttention = BertSelfAttention(c)
        output = BertResidualOutput(inFeatures: c.hiddenSize, c)
    }

    func callAsFunction(_ x: Tensor, mask: AttentionMask) -> Tensor { output(selfAttention(x, mask: mask), residual: x) }
}

public final class BertIntermediate: Module {
    public let dense: Linear
    let activation: Activation
    init(_ c: BertConfig) {
        dense = Linear(c.hiddenSize, c.intermediateSize)
        activation = c.hiddenAct
    }
    func callAsFunction(_ x: Tensor) -> Tensor { activation(dense(x)) }
}

/// A post-LN block in BERT's layout (`attention.self.query`, `intermediate.dense`, `output.LayerNorm`).
public final class BertLayer: Module {
    public let attention: BertAttention
    public let intermediate: BertIntermediate
    public let output: BertResidualOutput

    init(_ c: BertConfig) {
        attention = BertAttention(c)
        intermediate = BertIntermediate(c)
        output = BertResidualOutput(inFeatures: c.intermediateSize, c)
    }

    func callAsFunction(_ x: Tensor, mask: AttentionMask) -> Tensor {
        let h = attention(x, mask: mask)
        return output(intermediate(h), residual: h)
    }
}

public final class BertEncoder: Module, CheckpointableLayers {
    public let layer: [BertLayer]
    public var gradientCheckpointing = false
    init(_ c: BertConfig) { layer = (0..<c.numHiddenLayers).map { _ in BertLayer(c) } }
}

public final class BertPooler: Module {
    public let dense: Linear
    init(_ c: BertConfig) { dense = Linear(c.hiddenSize, c.hiddenSize) }
    func callAsFunction(_ hidden: Tensor) -> Tensor { dense(hidden.select(dim: 1, index: 0)).tanh() }
}

/// How a BERT tower turns token states into one vector.
public enum TextPooling: String, Sendable, Codable, CaseIterable {
    /// transformers' BertModel pooler: tanh(dense([CLS])). What `VisionTextDualEncoderModel` uses.
    case pooler
    /// The mean over real tokens, as sentence-transformers' all-MiniLM-L6-v2.
    case mean
    /// The [CLS] state itself.
    case cls
}

/// BERT (`BertModel` keys: `embeddings.*`, `encoder.layer.N.*`, `pooler.dense.*`).
public final class BertModel: Module, TextTower {
    public let config: BertConfig
    public let embeddings: BertEmbeddings
    public let encoder: BertEncoder
    public let pooler: BertPooler?
    public var pooling: TextPooling

    public init(_ c: BertConfig, pooling: TextPooling = .pooler, withPooler: Bool = true) {
        config = c
        embeddings = BertEmbeddings(c)
        encoder = BertEncoder(c)
        pooler = withPooler ? BertPooler(c) : nil
        self.pooling = pooling
    }

    public var width: Int { config.hiddenSize }

    /// Where the tower's weights are (inputs from elsewhere are copied there).
    public var device: Device { embeddings.wordEmbeddings.weight.device }

    public var layerCount: Int { encoder.layer.count }

    public func lastHiddenState(ids: Tensor, attentionMask: Tensor?) -> Tensor {
        states(ids: ids, attentionMask: attentionMask, throughLayer: layerCount)
    }

    public func states(ids: Tensor, attentionMask: Tensor?, throughLayer k: Int, rowLengths: [Int]? = nil) -> Tensor {
        let ids = ids.on(device)
        return layers(0..<k, embeddings(ids), attentionMask: attentionMask, rowLengths: rowLengths)
    }

    public func pooled(ids: Tensor, attentionMask: Tensor?) -> Tensor {
        pooled(states: states(ids: ids, attentionMask: attentionMask, throughLayer: 0), afterLayer: 0, ids: ids, attentionMask: attentionMask)
    }

    public func pooled(states: Tensor, afterLayer k: Int, ids: Tensor, attentionMask: Tensor?) -> Tensor {
        let ids = ids.on(device), attentionMask = attentionMask?.on(device)
        let hidden = layers(k..<layerCount, states, attentionMask: attentionMask)
        switch pooling {
        case .pooler:
            guard let pooler else { fatalError("this BERT has no pooler weights; use mean or cls pooling") }
            return pooler(hidden)
        case .cls:
            return hidden.select(dim: 1, index: 0)
        case .mean:
            let mask = (attentionMask ?? Tensor.ones(like: ids)).to(hidden.dtype).unsqueeze(-1)
            return (hidden * mask).sum(dim: 1) / mask.sum(dim: 1).clamp(min: 1e-9)
        }
    }

    /// Encoder layers `range` over `x`.
    func layers(_ range: Range<Int>, _ x: Tensor, attentionMask: Tensor?, rowLengths: [Int]? = nil) -> Tensor {
        guard !range.isEmpty else { return x }
        var mask = AttentionMask(keyPadding: attentionMask?.on(device))
        mask.rowLengths = rowLengths   // row at a time: no batched sdpa mask to build
        mask = mask.prepared(tokens: x.size(1), device: device)   // once, not per layer
        return encoder.layer[range].reduce(x) { h, layer in layer.checkpointed(h, if: encoder.gradientCheckpointing) { layer($0, mask: mask) } }
    }
}
