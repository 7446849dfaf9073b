#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

// Value types for the subset of onnx/onnx.proto (proto2 syntax) needed to write inference models.
// Field numbers are noted as `// name = N` and match onnx 1.23's onnx.proto.
// Encoding rules: fields are written in field-number order (as protobuf does, so `SerializeToString()` of a
// parsed model reproduces our bytes); optional scalars are written when non-default, except fields that
// onnx.helper always sets (ir_version, op_type, data_type, elem_type, attribute value/type, opset domain/version).
// Repeated scalars are unpacked unless onnx.proto says `[packed = true]` (float_data, int64_data).

/// onnx.ModelProto: a whole .onnx file.
public struct ModelProto: ProtobufMessage, Hashable {
    public var irVersion: Int64  // ir_version = 1
    public var opsetImports: [OperatorSetIdProto]  // opset_import = 8
    public var producerName: String  // producer_name = 2
    public var producerVersion: String  // producer_version = 3
    public var domain: String  // domain = 4
    public var modelVersion: Int64  // model_version = 5
    public var docString: String  // doc_string = 6
    public var graph: GraphProto  // graph = 7
    public var metadataProps: [StringStringEntryProto]  // metadata_props = 14

    /// Creates a model, e.g. `ModelProto(irVersion: 8, opsetImports: [.init(version: 17)], graph: g)`.
    public init(
        irVersion: Int64, opsetImports: [OperatorSetIdProto], graph: GraphProto,
        producerName: String = "", producerVersion: String = "", domain: String = "",
        modelVersion: Int64 = 0, docString: String = "", metadataProps: [StringStringEntryProto] = []
    ) {
        self.irVersion = irVersion
        self.opsetImports = opsetImports
        self.graph = graph
        self.producerName = producerName
        self.producerVersion = producerVersion
        self.domain = domain
        self.modelVersion = modelVersion
        self.docString = docString
        self.metadataProps = metadataProps
    }

    public func encode(to w: inout ProtobufWriter) {
        w.int64Field(1, irVersion)
        if !producerName.isEmpty { w.stringField(2, producerName) }
        if !producerVersion.isEmpty { w.stringField(3, producerVersion) }
        if !domain.isEmpty { w.stringField(4, domain) }
        if modelVersion != 0 { w.int64Field(5, modelVersion) }
        if !docString.isEmpty { w.stringField(6, docString) }
        w.messageField(7, graph)
        for opset in opsetImports { w.messageField(8, opset) }
        for prop in metadataProps { w.messageField(14, prop) }
    }
}

/// onnx.OperatorSetIdProto: an (operator domain, opset version) pair; "" is the default ai.onnx domain.
public struct OperatorSetIdProto: ProtobufMessage, Hashable {
    public var domain: String  // domain = 1
    public var version: Int64  // version = 2

    /// Creates an opset import, e.g. `.init(version: 17)` for ai.onnx opset 17.
    public init(domain: String = "", version: Int64) {
        self.domain = domain
        self.version = version
    }

    public func encode(to w: inout ProtobufWriter) {
        w.stringField(1, domain)  // written even when empty, like onnx.helper.make_opsetid
        w.int64Field(2, version)
    }
}

/// onnx.StringStringEntryProto: a key/value metadata pair.
public struct StringStringEntryProto: ProtobufMessage, Hashable {
    public var key: String  // key = 1
    public var value: String  // value = 2

    /// Creates a metadata entry.
    public init(key: String, value: String) {
        self.key = key
        self.value = value
    }

    public func encode(to w: inout ProtobufWriter) {
        w.stringField(1, key)
        w.stringField(2, value)
    }
}

/// onnx.GraphProto: nodes in topological order plus the graph's inputs, outputs and weights.
public struct GraphProto: ProtobufMessage, Hashable {
    public var nodes: [NodeProto]  // node = 1
    public var name: String  // name = 2
    public var initializers: [TensorProto]  // initializer = 5
    public var docString: String  // doc_string = 10
    public var inputs: [ValueInfoProto]  // input = 11
    public var outputs: [ValueInfoProto]  // output = 12
    public var valueInfo: [ValueInfoProto]  // value_info = 13

    /// Creates a graph; `initializers` hold the weights, `valueInfo` optional intermediate types.
    public init(
        name: String, nodes: [NodeProto] = [], inputs: [ValueInfoProto] = [], outputs: [ValueInfoProto] = [],
        initializers: [TensorProto] = [], valueInfo: [ValueInfoProto] = [], docString: String = ""
    ) {
        self.name = name
        self.nodes = nodes
        self.inputs = inputs
        self.outputs = outputs
        self.initializers = initializers
        self.valueInfo = valueInfo
        self.docString = docString
    }

    public func encode(to w: inout ProtobufWriter) {
        for node in nodes { w.messageField(1, node) }
        if !name.isEmpty { w.stringField(2, name) }
        for tensor in initializers { w.messageField(5, tensor) }
        if !docString.isEmpty { w.stringField(10, docString) }
        for info in inputs { w.messageField(11, info) }
        for info in outputs { w.messageField(12, info) }
        for info in valueInfo { w.messageField(13, info) }
    }
}

/// onnx.NodeProto: one operator invocation.
public struct NodeProto: ProtobufMessage, Hashable {
    public var inputs: [String]  // input = 1 ("" marks an omitted optional input)
    public var outputs: [String]  // output = 2
    public var name: String  // name = 3
    public var opType: String  // op_type = 4
    public var attributes: [AttributeProto]  // attribute = 5
    public var docString: String  // doc_string = 6
    public var domain: String  // domain = 7

    /// Creates a node, e.g. `NodeProto(opType: "Softmax", inputs: ["y"], outputs: ["p"], attributes: [.int("axis", -1)])`.
    public init(
        opType: String, inputs: [String], outputs: [String], name: String = "",
        attributes: [AttributeProto] = [], domain: String = "", docString: String = ""
    ) {
        self.opType = opType
        self.inputs = inputs
        self.outputs = outputs
        self.name = name
        self.attributes = attributes
        self.domain = domain
        self.docString = docString
    }

    public func encode(to w: inout ProtobufWriter) {
        for input in inputs { w.stringField(1, input) }
        for output in outputs { w.stringField(2, output) }
        if !name.isEmpty { w.stringField(3, name) }
        w.stringField(4, opType)
        for attribute in attributes { w.messageField(5, attribute) }
        if !docString.isEmpty { w.stringField(6, docString) }
        if !domain.isEmpty { w.stringField(7, domain) }
    }
}

/// onnx.AttributeProto: a named operator attribute; `value` replaces the proto's f/i/s/t/floats/ints/strings fields.
public struct AttributeProto: ProtobufMessage, Hashable {
    /// onnx.AttributeProto.AttributeType.
    public enum AttributeType: Int32, Sendable {
        case undefined = 0, float = 1, int = 2, string = 3, tensor = 4, graph = 5
        case floats = 6, ints = 7, strings = 8, tensors = 9, graphs = 10
        case sparseTensor = 11, sparseTensors = 12, typeProto = 13, typeProtos = 14
    }

    /// The attribute's payload; exactly one proto field is set, so an enum keeps `type` consistent with it.
    public enum Value: Hashable, Sendable {
        case float(Float)  // f = 2
        case int(Int64)  // i = 3
        case string(Data)  // s = 4
        case tensor(TensorProto)  // t = 5
        case floats([Float])  // floats = 7
        case ints([Int64])  // ints = 8
        case strings([Data])  // strings = 9
    }

    public var name: String  // name = 1
    public var value: Value

    /// The proto `type` field (= 20), derived from `value`.
    public var type: AttributeType {
        switch value {
        case .float: .float
        case .int: .int
        case .string: .string
        case .tensor: .tensor
        case .floats: .floats
        case .ints: .ints
        case .strings: .strings
        }
    }

    /// Creates an attribute from a payload.
    public init(name: String, value: Value) {
        self.name = name
        self.value = value
    }

    /// A FLOAT attribute (32-bit, like ONNX).
    public static func float(_ name: String, _ value: Float) -> Self { .init(name: name, value: .float(value)) }
    /// An INT attribute.
    public static func int(_ name: String, _ value: Int64) -> Self { .init(name: name, value: .int(value)) }
    /// A STRING attribute stored as UTF-8.
    public static func string(_ name: String, _ value: String) -> Self { .init(name: name, value: .string(Data(value.utf8))) }
    /// A TENSOR attribute (e.g. Constant's `value`).
    public static func tensor(_ name: String, _ value: TensorProto) -> Self { .init(name: name, value: .tensor(value)) }
    /// A FLOATS attribute.
    public static func floats(_ name: String, _ values: [Float]) -> Self { .init(name: name, value: .floats(values)) }
    /// An INTS attribute (e.g. Transpose's `perm`).
    public static func ints(_ name: String, _ values: [Int64]) -> Self { .init(name: name, value: .ints(values)) }
    /// A STRINGS attribute stored as UTF-8.
    public static func strings(_ name: String, _ values: [String]) -> Self {
        .init(name: name, value: .strings(values.map { Data($0.utf8) }))
    }

    public func encode(to w: inout ProtobufWriter) {
        w.stringField(1, name)
        switch value {  // the value is written even when zero: its presence is what the type promises
        case .float(let f): w.floatField(2, f)
        case .int(let i): w.int64Field(3, i)
        case .string(let s): w.bytesField(4, s)
        case .tensor(let t): w.messageField(5, t)
        case .floats(let fs): for f in fs { w.floatField(7, f) }  // proto2 `repeated float`, not packed
        case .ints(let ns): for n in ns { w.int64Field(8, n) }  // proto2 `repeated int64`, not packed
        case .strings(let ss): for s in ss { w.bytesField(9, s) }
        }
        w.int64Field(20, Int64(type.rawValue))
    }
}

/// onnx.TensorProto: a constant tensor (initializer or attribute value).
public struct TensorProto: ProtobufMessage, Hashable {
    /// onnx.TensorProto.DataType; a struct rather than an enum because every ONNX release adds codes.
    public struct DataType: RawRepresentable, Hashable, Sendable {
        public var rawValue: Int32
        /// Wraps a raw ONNX data type code.
        public init(rawValue: Int32) { self.rawValue = rawValue }

        public static let undefined = DataType(rawValue: 0)
        public static let float = DataType(rawValue: 1)
        public static let uint8 = DataType(rawValue: 2)
        public static let int8 = DataType(rawValue: 3)
        public static let uint16 = DataType(rawValue: 4)
        public static let int16 = DataType(rawValue: 5)
        public static let int32 = DataType(rawValue: 6)
        public static let int64 = DataType(rawValue: 7)
        public static let string = DataType(rawValue: 8)
        public static let bool = DataType(rawValue: 9)
        public static let float16 = DataType(rawValue: 10)
        public static let double = DataType(rawValue: 11)
        public static let uint32 = DataType(rawValue: 12)
        public static let uint64 = DataType(rawValue: 13)
        public static let complex64 = DataType(rawValue: 14)
        public static let complex128 = DataType(rawValue: 15)
        public static let bfloat16 = DataType(rawValue: 16)
    }

    public var dims: [Int64]  // dims = 1 (not packed)
    public var dataType: DataType  // data_type = 2
    public var floatData: [Float]  // float_data = 4 [packed = true]
    public var int64Data: [Int64]  // int64_data = 7 [packed = true]
    public var name: String  // name = 8
    public var rawData: Data?  // raw_data = 9 (little-endian element bytes; nil = field absent)

    /// Creates a tensor; give its elements in exactly one of `rawData`, `floatData` or `int64Data`.
    public init(
        name: String = "", dataType: DataType, dims: [Int64],
        rawData: Data? = nil, floatData: [Float] = [], int64Data: [Int64] = []
    ) {
        self.name = name
        self.dataType = dataType
        self.dims = dims
        self.rawData = rawData
        self.floatData = floatData
        self.int64Data = int64Data
    }

    /// A FLOAT tensor stored in raw_data (the compact form onnxruntime and numpy_helper use).
    public static func float(name: String, dims: [Int64], values: [Float]) -> TensorProto {
        precondition(values.count == dims.reduce(1, *), "\(values.count) values do not fill shape \(dims)")
        #if _endian(little)
        let bytes = values.withUnsafeBytes { Data($0) }
        #else
        let bytes = values.map { $0.bitPattern.littleEndian }.withUnsafeBytes { Data($0) }
        #endif
        return TensorProto(name: name, dataType: .float, dims: dims, rawData: bytes)
    }

    /// An INT64 tensor stored in raw_data.
    public static func int64(name: String, dims: [Int64], values: [Int64]) -> TensorProto {
        precondition(values.count == dims.reduce(1, *), "\(values.count) values do not fill shape \(dims)")
        #if _endian(little)
        let bytes = values.withUnsafeBytes { Data($0) }
        #else
        let bytes = values.map(\.littleEndian).withUnsafeBytes { Data($0) }
        #endif
        return TensorProto(name: name, dataType: .int64, dims: dims, rawData: bytes)
    }

    public func encode(to w: inout ProtobufWriter) {
        for d in dims { w.int64Field(1, d) }
        w.int64Field(2, Int64(dataType.rawValue))
        w.packedFloatField(4, floatData)
        w.packedInt64Field(7, int64Data)
        if !name.isEmpty { w.stringField(8, name) }
        if let rawData { w.bytesField(9, rawData) }
    }
}

/// onnx.ValueInfoProto: the name and type of a graph input, output or intermediate value.
public struct ValueInfoProto: ProtobufMessage, Hashable {
    public var name: String  // name = 1
    public var type: TypeProto?  // type = 2
    public var docString: String  // doc_string = 3

    /// Creates a value info.
    public init(name: String, type: TypeProto? = nil, docString: String = "") {
        self.name = name
        self.type = type
        self.docString = docString
    }

    /// A tensor value, e.g. `.tensor(name: "x", elemType: .float, shape: ["batch", 4])`; `shape: nil` = unknown rank.
    public static func tensor(name: String, elemType: TensorProto.DataType, shape: [Dim]?) -> ValueInfoProto {
        ValueInfoProto(name: name, type: .tensor(elemType, shape: shape))
    }

    public func encode(to w: inout ProtobufWriter) {
        w.stringField(1, name)
        if let type { w.messageField(2, type) }
        if !docString.isEmpty { w.stringField(3, docString) }
    }
}

/// onnx.TypeProto, limited to the `tensor_type` member of its oneof.
public struct TypeProto: ProtobufMessage, Hashable {
    /// onnx.TypeProto.Tensor: element type plus optional shape.
    public struct Tensor: ProtobufMessage, Hashable {
        public var elemType: TensorProto.DataType  // elem_type = 1
        public var shape: TensorShapeProto?  // shape = 2 (nil = unknown rank; empty = scalar)

        /// Creates a tensor type.
        public init(elemType: TensorProto.DataType, shape: TensorShapeProto?) {
            self.elemType = elemType
            self.shape = shape
        }

        public func encode(to w: inout ProtobufWriter) {
            w.int64Field(1, Int64(elemType.rawValue))
            if let shape { w.messageField(2, shape) }  // an empty shape is meaningful (scalar), so presence counts
        }
    }

    public var tensorType: Tensor?  // tensor_type = 1

    /// Creates a type.
    public init(tensorType: Tensor?) { self.tensorType = tensorType }

    /// A tensor type with the given element type and dimensions (`nil` = unknown rank).
    public static func tensor(_ elemType: TensorProto.DataType, shape: [Dim]?) -> TypeProto {
        TypeProto(tensorType: Tensor(elemType: elemType, shape: shape.map(TensorShapeProto.init(dims:))))
    }

    public func encode(to w: inout ProtobufWriter) {
        if let tensorType { w.messageField(1, tensorType) }
    }
}

/// Shorthand for a tensor dimension: `.value(4)`, `.param("batch")`, or the literals `4` / `"batch"`.
public typealias Dim = TensorShapeProto.Dimension

/// onnx.TensorShapeProto: a list of dimensions.
public struct TensorShapeProto: ProtobufMessage, Hashable {
    /// onnx.TensorShapeProto.Dimension: a fixed size, a symbolic name, or unknown.
    public enum Dimension: ProtobufMessage, Hashable, ExpressibleByIntegerLiteral, ExpressibleByStringLiteral {
        case value(Int)  // dim_value = 1
        case param(String)  // dim_param = 2
        case unknown  // neither set

        /// A fixed dimension from an integer literal.
        public init(integerLiteral value: Int) { self = .value(value) }
        /// A symbolic dimension from a string literal.
        public init(stringLiteral value: String) { self = .param(value) }

        public func encode(to w: inout ProtobufWriter) {
            switch self {  // oneof members are written even when default: `dim_value: 0` is a real size
            case .value(let n): w.int64Field(1, Int64(n))
            case .param(let s): w.stringField(2, s)
            case .unknown: break
            }
        }
    }

    public var dims: [Dimension]  // dim = 1

    /// Creates a shape.
    public init(dims: [Dimension]) { self.dims = dims }

    public func encode(to w: inout ProtobufWriter) {
        for d in dims { w.messageField(1, d) }
    }
}
