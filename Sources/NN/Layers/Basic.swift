import Torch

/// `y = x Wᵀ + b`, weight [out, in]. Initialised as torch.nn.Linear.
///
/// With a LoRA adapter (`addAdapter`, LoRA.swift) it computes PEFT's
/// `x Wᵀ + b + lora_B(lora_A(dropout(x))) · scaling`; the adapter's weights sit under
/// `lora_A.weight` / `lora_B.weight`, PEFT's keys without the adapter name.
public final class Linear: Module {
    public let weight: Tensor
    public let bias: Tensor?
    /// The adapter's down- and up-projections ([r, in] and [out, r]); nil without an adapter.
    public internal(set) var loraA: Linear?
    public internal(set) var loraB: Linear?
    /// Dropout on the adapter's input only (PEFT's `lora_dropout`).
    public internal(set) var loraDropout: Dropout?
    /// alpha / r, or alpha / √r with rsLoRA.
    public internal(set) var loraScaling = 0.0
    override public class var keyOverrides: [String: String] { ["loraA": "lora_A", "loraB": "lora_B", "loraDropout": "lora_dropout"] }

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, dtype: DType = .float32, generator: Generator? = nil) {
        weight = Tensor.empty([outFeatures, inFeatures], dtype: dtype)
        Init.kaimingUniform(weight, a: 5.0.squareRoot(), generator: generator)
        if bias {
            let b = Tensor.empty([outFeatures], dtype: dtype)
            let bound = 1 / Double(inFeatures).squareRoot()
            Init.uniform(b, -bound, bound, generator: generator)
            self.bias = b.requiringGrad()
        } else {
            self.bias = nil
        }
        weight.requiresGrad = true
    }

    /// A layer over existing tensors (the adapter's zero-initialised B).
    init(weight: Tensor, bias: Tensor?) {
        self.weight = weight
        self.bias = bias
    }

    public var inFeatures: Int { weight.size(1) }
    public var outFeatures: Int { weight.size(0) }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let y = F.linear(x, weight: weight, bias: bias)
        guard let loraA, let loraB, let loraDropout else { return y }
        return y + loraB(loraA(loraDropout(x))) * loraScaling   // PEFT's order of operations
    }
}

/// A lookup table of `count` vectors of size `dimension`, initialised N(0, 1) as torch.
public final class Embedding: Module {
    public let weight: Tensor

    public init(_ count: Int, _ dimension: Int, dtype: DType = .float32, generator: Generator? = nil) {
        weight = Tensor.empty([count, dimension], dtype: dtype)
        Init.normal(weight, generator: generator)
        weight.requiresGrad = true
    }

    public func callAsFunction(_ indices: Tensor) -> Tensor { F.embedding(indices, weight: weight) }
}

/// Normalises over the last dimension with a learned gain and bias.
public final class LayerNorm: Module {
    public let weight: Tensor
    public let bias: Tensor
    public let eps: Double

    public init(_ dimension: Int, eps: Double = 1e-5, dtype: DType = .float32) {
        weight = Tensor.ones([dimension], dtype: dtype).requiringGrad()
        bias = Tensor.zeros([dimension], dtype: dtype).requiringGrad()
        self.eps = eps
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        F.layerNorm(x, normalizedShape: [weight.size(0)], weight: weight, bias: bias, eps: eps)
    }
}

/// 2-D convolution over NCHW input, initialised as torch.nn.Conv2d.
public final class Conv2d: Module {
    public let weight: Tensor
    public let bias: Tensor?
    public let stride: (Int, Int)
    public let padding: (Int, Int)

    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: (Int, Int), stride: (Int, Int) = (1, 1),
                padding: (Int, Int) = (0, 0), bias: Bool = true, dtype: DType = .float32, generator: Generator? = nil) {
        weight = Tensor.empty([outChannels, inChannels, kernelSize.0, kernelSize.1], dtype: dtype)
        Init.kaimingUniform(weight, a: 5.0.squareRoot(), generator: generator)
        weight.requiresGrad = true
        if bias {
            let b = Tensor.empty([outChannels], dtype: dtype)
            let bound = 1 / Double(inChannels * kernelSize.0 * kernelSize.1).squareRoot()
            Init.uniform(b, -bound, bound, generator: generator)
            self.bias = b.requiringGrad()
        } else {
            self.bias = nil
        }
        self.stride = stride
        self.padding = padding
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        F.conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding)
    }
}

/// Zeroes elements with probability `p` in training mode and rescales the rest; identity in eval.
public final class Dropout: Module {
    public let p: Double

    public init(_ p: Double) {
        precondition((0..<1).contains(p), "dropout probability must be in [0, 1), got \(p)")
        self.p = p
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        p == 0 || !isTraining ? x : F.dropout(x, p: p, training: true)
    }
}

/// The activations transformer configs name in `hidden_act`.
public enum Activation: String, Sendable, Codable, CaseIterable {
    /// Exact GELU (erf).
    case gelu
    /// GELU with the tanh approximation.
    case geluTanh = "gelu_pytorch_tanh"
    /// `x · σ(1.702 x)`, OpenAI CLIP's.
    case quickGELU = "quick_gelu"
    case relu

    /// Maps a Hugging Face `hidden_act` name; nil for ones not supported.
    public init?(huggingFaceName name: String) {
        switch name {
        case "gelu": self = .gelu
        case "gelu_new", "gelu_pytorch_tanh": self = .geluTanh
        case "quick_gelu": self = .quickGELU
        case "relu": self = .relu
        default: return nil
        }
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        switch self {
        case .gelu: F.gelu(x)
        case .geluTanh: F.gelu(x, approximate: .tanh)
        case .quickGELU: F.quickGELU(x)
        case .relu: x.relu()
        }
    }
}
