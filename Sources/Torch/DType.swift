import CTorch

/// Element types the framework stores and computes in. Raw values are the bridge's `ct_dtype` codes.
public enum DType: Int32, CaseIterable, Sendable, CustomStringConvertible, Codable {
    case float32 = 0, float64 = 1, float16 = 2, bfloat16 = 3, int64 = 4, int32 = 5, uint8 = 6, bool = 7

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .float64, .int64: 8
        case .float32, .int32: 4
        case .float16, .bfloat16: 2
        case .uint8, .bool: 1
        }
    }

    public var isFloatingPoint: Bool { [.float32, .float64, .float16, .bfloat16].contains(self) }

    public var description: String {
        switch self {
        case .float32: "float32"
        case .float64: "float64"
        case .float16: "float16"
        case .bfloat16: "bfloat16"
        case .int64: "int64"
        case .int32: "int32"
        case .uint8: "uint8"
        case .bool: "bool"
        }
    }
}

/// Where a tensor lives.
public enum Device: Equatable, Hashable, Sendable, CustomStringConvertible {
    case cpu
    case cuda(Int)

    public static var cuda: Device { .cuda(0) }

    package var bridged: ct_device {
        switch self {
        case .cpu: ct_device(type: Int32(CT_CPU.rawValue), index: 0)
        case .cuda(let index): ct_device(type: Int32(CT_CUDA.rawValue), index: Int32(index))
        }
    }

    init(_ d: ct_device) {
        self = d.type == Int32(CT_CUDA.rawValue) ? .cuda(Int(d.index)) : .cpu
    }

    public var description: String {
        switch self {
        case .cpu: "cpu"
        case .cuda(let i): "cuda:\(i)"
        }
    }
}

/// Swift types that map one-to-one onto a tensor element type.
public protocol TensorElement: Sendable {
    static var dtype: DType { get }
    /// Converts the result of `item()` (read as Double or Int64 by the bridge).
    static func fromItem(double: Double, int: Int64) -> Self
}

extension Float: TensorElement {
    public static var dtype: DType { .float32 }
    public static func fromItem(double: Double, int: Int64) -> Float { Float(double) }
}
extension Double: TensorElement {
    public static var dtype: DType { .float64 }
    public static func fromItem(double: Double, int: Int64) -> Double { double }
}
#if !(os(macOS) && arch(x86_64))
extension Float16: TensorElement {
    public static var dtype: DType { .float16 }
    public static func fromItem(double: Double, int: Int64) -> Float16 { Float16(double) }
}
#endif
extension Int64: TensorElement {
    public static var dtype: DType { .int64 }
    public static func fromItem(double: Double, int: Int64) -> Int64 { int }
}
extension Int: TensorElement {
    public static var dtype: DType { .int64 }
    public static func fromItem(double: Double, int: Int64) -> Int { Int(int) }
}
extension Int32: TensorElement {
    public static var dtype: DType { .int32 }
    public static func fromItem(double: Double, int: Int64) -> Int32 { Int32(truncatingIfNeeded: int) }
}
extension UInt8: TensorElement {
    public static var dtype: DType { .uint8 }
    public static func fromItem(double: Double, int: Int64) -> UInt8 { UInt8(truncatingIfNeeded: int) }
}
extension Bool: TensorElement {
    public static var dtype: DType { .bool }
    public static func fromItem(double: Double, int: Int64) -> Bool { int != 0 }
}

/// A number passed to an op (`x * 0.5`, `mask.fill(0)`); keeps integers exact.
public enum Scalar: Sendable, Equatable, CustomStringConvertible {
    case float(Double)
    case int(Int)
    case bool(Bool)

    var bridged: ct_scalar {
        switch self {
        case .float(let v): ct_scalar(kind: Int32(CT_SCALAR_FLOAT.rawValue), f: v, i: 0)
        case .int(let v): ct_scalar(kind: Int32(CT_SCALAR_INT.rawValue), f: 0, i: Int64(v))
        case .bool(let v): ct_scalar(kind: Int32(CT_SCALAR_BOOL.rawValue), f: 0, i: v ? 1 : 0)
        }
    }

    public var description: String {
        switch self {
        case .float(let v): "\(v)"
        case .int(let v): "\(v)"
        case .bool(let v): "\(v)"
        }
    }
}

public protocol ScalarConvertible: Sendable { var scalar: Scalar { get } }
extension Double: ScalarConvertible { public var scalar: Scalar { .float(self) } }
extension Float: ScalarConvertible { public var scalar: Scalar { .float(Double(self)) } }
extension Int: ScalarConvertible { public var scalar: Scalar { .int(self) } }
extension Bool: ScalarConvertible { public var scalar: Scalar { .bool(self) } }
extension Scalar: ScalarConvertible { public var scalar: Scalar { self } }

/// How a loss reduces over the batch.
public enum Reduction: Int32, Sendable {
    case none = 0, mean = 1, sum = 2
}
