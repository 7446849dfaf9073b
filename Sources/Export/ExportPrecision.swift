/// Numeric form of an exported encoder.
public enum ExportPrecision: String, Sendable, CaseIterable {
    /// float32 weights and compute.
    case fp32
    /// float16 weights and compute; LayerNorm, softmax and reductions in float32 (where float16
    /// would overflow or lose the sum); inputs and outputs stay float32.
    case fp16
    /// Linear layers as dynamic int8 quantization (per-tensor uint8 activations, per-output-channel
    /// 7-bit weights: DynamicQuantizeLinear → MatMulInteger, onnxruntime's `quantize_dynamic` form
    /// with `reduce_range`); the patch convolution's weights per-channel int8 in QDQ form (DequantizeLinear → Conv);
    /// token-embedding tables int8 with one scale per row.
    case int8

    /// What export.json says about the quantization scheme.
    public var scheme: String {
        switch self {
        case .fp32: "none"
        case .fp16: "float16 weights and compute; LayerNormalization, Softmax, ReduceL2 and ReduceSum in float32"
        case .int8: "dynamic: DynamicQuantizeLinear (uint8 activations, per tensor) + MatMulInteger (7-bit int8 weights, per output channel, symmetric); conv weights int8 per channel via DequantizeLinear (QDQ); embedding tables int8 per row (Gather, then scale)"
        }
    }
}

/// An export that cannot be done; the message names the op, module, file or option.
public struct ExportError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
