import Foundation
import ONNX
import Torch

/// Symmetric per-channel int8 weight quantization (zero point 0, scale = max|w| / 127 per
/// channel), as onnxruntime's `quantize_dynamic(per_channel=True)` does for weights.
enum Quantization {
    /// `weight` quantized along `axis` (the channel axis): the int8 tensor and its float scales.
    static func perChannel(_ weight: Tensor, axis: Int, levels: Float = 127) -> (TensorProto, TensorProto) {
        let w = withNoGrad { weight.detach().to(.float32).contiguous() }
        let shape = w.shape
        let values = w.toArray(Float.self)
        let channels = shape[axis]
        let inner = shape[(axis + 1)...].reduce(1, *)          // stride of the channel axis
        var maxima = [Float](repeating: 0, count: channels)
        for (i, v) in values.enumerated() {
            let c = (i / inner) % channels
            maxima[c] = Swift.max(maxima[c], abs(v))
        }
        let scales = maxima.map { Swift.max($0, 1e-12) / levels }
        var quantized = Data(count: values.count)
        quantized.withUnsafeMutableBytes { (out: UnsafeMutableRawBufferPointer) in
            for (i, v) in values.enumerated() {
                let q = (v / scales[(i / inner) % channels]).rounded(.toNearestOrEven)
                out.storeBytes(of: Int8(Swift.min(levels, Swift.max(-levels, q))), toByteOffset: i, as: Int8.self)
            }
        }
        return (TensorProto(dataType: .int8, dims: shape.map(Int64.init), rawData: quantized),
                TensorProto.float(name: "", dims: [Int64(channels)], values: scales))
    }

    /// Column sums of an int8 [rows, columns] tensor (the zero-point correction of per-token quantization).
    static func columnSums(_ q: TensorProto, rows: Int, columns: Int) -> [Float] {
        var sums = [Float](repeating: 0, count: columns)
        (q.rawData ?? Data()).withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            let values = raw.bindMemory(to: Int8.self)
            for r in 0..<rows { for c in 0..<columns { sums[c] += Float(values[r * columns + c]) } }
        }
        return sums
    }

    /// int8 zeros: the zero points of symmetric quantization.
    static func zeroPoints(count: Int) -> TensorProto {
        TensorProto(dataType: .int8, dims: [Int64(count)], rawData: Data(count: count))
    }
}
