import Torch

/// Which keys each query may attend to.
public struct AttentionMask: Sendable {
    /// Query i sees keys 0...i (text towers).
    public var causal: Bool
    /// [batch, keys], 1/true where the key is real, 0/false for padding.
    public var keyPadding: Tensor?
    /// The boolean mask sdpa takes, once `prepared` has built it (every layer of a forward
    /// shares it: building it per layer cost a tril, a cast and a logical and each time).
    public private(set) var sdpaMask: Tensor?
    public private(set) var isPrepared = false
    /// Each row's real tokens (a prefix of the row), when attention is to run one row at a time
    /// (see `attend(_:_:_:dropout:)`); nil runs the batch at once.
    public var rowLengths: [Int]?

    public init(causal: Bool = false, keyPadding: Tensor? = nil) {
        self.causal = causal
        self.keyPadding = keyPadding
    }

    public static var none: AttentionMask { AttentionMask() }

    /// This mask with its sdpa form built for `tokens` queries and keys; an encoder prepares
    /// it once per forward and hands it to each layer.
    public func prepared(tokens: Int, device: Device) -> AttentionMask {
        guard !isPrepared, rowLengths == nil else { return self }
        var mask = self
        mask.sdpaMask = combined(queries: tokens, keys: tokens, device: device)
        mask.isPrepared = true
        return mask
    }

    /// Whether sdpa's own causal flag applies (no explicit mask carries causality).
    var sdpaCausal: Bool { causal && keyPadding == nil }

    /// A boolean mask [batch, 1, queries, keys] (true = attend) when padding is involved; nil
    /// when sdpa's own causal flag or no mask suffices.
    func combined(queries: Int, keys: Int, device: Device) -> Tensor? {
        guard let keyPadding else { return nil }
        var mask = keyPadding.to(.bool).unsqueeze(1).unsqueeze(1)          // [B, 1, 1, K]
        if causal {
            let allowed = Tensor.ones([queries, keys], dtype: .bool, device: device).tril()
            mask = mask.logicalAnd(allowed)                                   // [B, 1, Q, K]
        }
        return mask
    }
}

extension AttentionMask {
    /// sdpa over q, k, v [batch, heads, tokens, head width] under this mask. With `rowLengths`,
    /// each row runs alone over its real tokens (padding positions come out zero): a row's
    /// result is then a function of that row alone. Batched, libtorch's CPU kernels round a row
    /// differently with the batch's size and padded length (by up to 5e-7, measured), which
    /// frozen-layer caching cannot have: its cached rows must equal the ones computed now.
    public func attend(_ q: Tensor, _ k: Tensor, _ v: Tensor, dropout: Double) -> Tensor {
        guard let rowLengths else {
            let mask = prepared(tokens: q.size(2), device: q.device)
            return F.scaledDotProductAttention(q, k, v, mask: mask.sdpaMask, dropout: dropout, causal: mask.sdpaCausal)
        }
        precondition(dropout == 0 && rowLengths.count == q.size(0), "row-at-a-time attention is for inference over \(rowLengths.count) rows")
        let out = Tensor.zeros(q.shape, dtype: q.dtype, device: q.device)
        for (row, length) in rowLengths.enumerated() where length > 0 {
            func real(_ t: Tensor) -> Tensor { t.narrow(dim: 0, start: row, length: 1).narrow(dim: 2, start: 0, length: length) }
            real(out).copy_(F.scaledDotProductAttention(real(q), real(k), real(v), causal: causal))
        }
        return out
    }
}

/// Multi-head self-attention with Hugging Face's CLIP names (`q_proj`, `k_proj`, `v_proj`, `out_proj`).
public final class MultiHeadAttention: Module {
    public let qProj: Linear
    public let kProj: Linear
    public let vProj: Linear
    public let outProj: Linear
    public let heads: Int
    public let dropout: Double

    public init(dimension: Int, heads: Int, dropout: Double = 0, bias: Bool = true, generator: Generator? = nil) {
        precondition(dimension % heads == 0, "attention width \(dimension) is not divisible by \(heads) heads")
        qProj = Linear(dimension, dimension, bias: bias, generator: generator)
        kProj = Linear(dimension, dimension, bias: bias, generator: generator)
        vProj = Linear(dimension, dimension, bias: bias, generator: generator)
        outProj = Linear(dimension, dimension, bias: bias, generator: generator)
        self.heads = heads
        self.dropout = dropout
    }

    /// x: [batch, tokens, dimension] → same shape.
    public func callAsFunction(_ x: Tensor, mask: AttentionMask = .none) -> Tensor {
        // [B, T, D] → [B, H, T, D/H]; -1 keeps batch and length dynamic for export.
        func split(_ t: Tensor) -> Tensor { t.unflatten(dim: -1, sizes: [heads, -1]).transpose(1, 2) }
        let q = split(qProj(x)), k = split(kProj(x)), v = split(vProj(x))
        let attended = mask.attend(q, k, v, dropout: isTraining ? dropout : 0)
        return outProj(attended.transpose(1, 2).flatten(start: 2))
    }
}

/// fc1 → activation → fc2, as Hugging Face's CLIPMLP.
public final class MLP: Module {
    public let fc1: Linear
    public let fc2: Linear
    public let activation: Activation

    public init(dimension: Int, hidden: Int, activation: Activation, generator: Generator? = nil) {
        fc1 = Linear(dimension, hidden, generator: generator)
        fc2 = Linear(hidden, dimension, generator: generator)
        self.activation = activation
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { fc2(activation(fc1(x))) }
}

/// One transformer encoder block in CLIP's layout (`layer_norm1`, `self_attn`, `layer_norm2`, `mlp`).
/// Pre-LN (CLIP, ViT): `x + attn(ln1(x))`; post-LN (BERT): `ln1(x + attn(x))`.
public final class TransformerEncoderLayer: Module {
    public let selfAttn: MultiHeadAttention
    public let layerNorm1: LayerNorm
    public let mlp: MLP
    public let layerNorm2: LayerNorm
    public let residualDropout: Dropout
    public let normFirst: Bool

    public init(dimension: Int, heads: Int, hidden: Int, activation: Activation, normFirst: Bool = true,
                eps: Double = 1e-5, attentionDropout: Double = 0, residualDropout: Double = 0, generator: Generator? = nil) {
        selfAttn = MultiHeadAttention(dimension: dimension, heads: heads, dropout: attentionDropout, generator: generator)
        layerNorm1 = LayerNorm(dimension, eps: eps)
        mlp = MLP(dimension: dimension, hidden: hidden, activation: activation, generator: generator)
        layerNorm2 = LayerNorm(dimension, eps: eps)
        self.residualDropout = Dropout(residualDropout)
        self.normFirst = normFirst
    }

    public func callAsFunction(_ x: Tensor, mask: AttentionMask = .none) -> Tensor {
        if normFirst {
            let h = x + residualDropout(selfAttn(layerNorm1(x), mask: mask))
            return h + residualDropout(mlp(layerNorm2(h)))
        }
        let h = layerNorm1(x + residualDropout(selfAttn(x, mask: mask)))
        return layerNorm2(h + residualDropout(mlp(h)))
    }
}
