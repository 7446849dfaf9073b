import Foundation
import ONNX
import Torch

/// A graph input of the traced forward pass and how its axes are named in the ONNX file.
public struct TracedInput {
    public let tensor: Tensor
    public let name: String
    /// One entry per axis: a symbolic name ("batch", "sequence") or nil for a fixed size.
    public let axes: [String?]

    public init(_ tensor: Tensor, name: String, axes: [String?]) {
        self.tensor = tensor
        self.name = name
        self.axes = axes
    }
}

/// Lowers one recorded forward pass (`OpRecorder`) to an ONNX graph.
///
/// Ops whose inputs do not depend on a graph input are constant: their recorded results become
/// initializers where a dynamic op uses them (parameters, position-embedding rows, masks…).
/// Sizes read as plain integers during the trace (a batch size passed to `expand`, a sequence
/// length passed to `narrow`) are recognised by their traced values, which is why the trace uses
/// unusual sizes, and rebuilt from the inputs' shapes so the batch (and sequence) axes stay dynamic.
///
/// Ops that only feed the pooled token (`PooledRows`: the last layer's queries, output
/// projection and MLP) are lowered for that token alone: their inputs' rows are gathered.
final class GraphLowering {
    let precision: ExportPrecision
    let opset: Int
    /// Parameter tensors → checkpoint names (initializer names, module names in errors).
    let parameterNames: [ObjectIdentifier: String]
    let traceBatch: Int
    /// The traced sequence length when the sequence axis is dynamic.
    let traceSequence: Int?
    /// int8: quantize activations per token instead of per tensor (more accurate, slower in onnxruntime).
    var perTokenActivations = false

    var nodes: [NodeProto] = []
    private(set) var initializers: [TensorProto] = []
    private var values: [ObjectIdentifier: String] = [:]
    var types: [String: TensorProto.DataType] = [:]
    private var dynamic: Set<ObjectIdentifier> = []
    private var contentNames: [Int: [(TensorProto, String)]] = [:]
    private var derived: [String: String] = [:]
    private var usedNames: Set<String> = []
    var batchSource: String?
    var sequenceSource: String?
    var module = "the model"
    /// The ops that need the pooled token only (nil: every op computes every token).
    var pooled: PooledRows?
    /// Values computed for the pooled token only: their token axis has size 1.
    var rowValues: [ObjectIdentifier: String] = [:]
    /// While an op is lowered for the pooled token only: its output's token axis, and its
    /// inputs' (those read whole are absent).
    var rowAxis: Int?
    var rowInputs: [ObjectIdentifier: Int] = [:]
    /// Rows gathered from values computed whole, by tensor and axis; the per-input positions.
    var gatheredRows: [String: String] = [:]
    var pooledPositions: String?

    /// float16 in fp16 mode: the type of float activations and weights.
    var computeType: TensorProto.DataType { precision == .fp16 ? .float16 : .float }

    init(precision: ExportPrecision, opset: Int, parameterNames: [ObjectIdentifier: String], traceBatch: Int, traceSequence: Int?) {
        self.precision = precision
        self.opset = opset
        self.parameterNames = parameterNames
        self.traceBatch = traceBatch
        self.traceSequence = traceSequence
    }

    // MARK: graph inputs and outputs

    /// Declares a graph input (float inputs are cast to the compute type in fp16 mode).
    func input(_ input: TracedInput) -> ValueInfoProto {
        let type = Self.onnxType(input.tensor.dtype)
        let name = unique(input.name)
        types[name] = type
        var current = name
        if type == .float && computeType != .float { current = cast(name, to: computeType) }
        values[ObjectIdentifier(input.tensor)] = current
        dynamic.insert(ObjectIdentifier(input.tensor))
        if input.axes.first == "batch", batchSource == nil { batchSource = name }
        if input.axes.count > 1, input.axes[1] == "sequence", sequenceSource == nil { sequenceSource = name }
        let shape = zip(input.axes, input.tensor.shape).map { axis, size in axis.map { TensorShapeProto.Dimension.param($0) } ?? .value(size) }
        return .tensor(name: name, elemType: type, shape: shape)
    }

    /// Names a traced result as a float32 graph output.
    func output(_ tensor: Tensor, name: String, axes: [String?]) throws -> ValueInfoProto {
        guard let value = values[ObjectIdentifier(tensor)] else { throw ExportError("the output '\(name)' was not computed from the inputs") }
        if types[value] == .float {
            nodes.append(NodeProto(opType: "Identity", inputs: [value], outputs: [name], name: name))
        } else {
            nodes.append(NodeProto(opType: "Cast", inputs: [value], outputs: [name], name: name, attributes: [.int("to", Int64(TensorProto.DataType.float.rawValue))]))
        }
        let shape = zip(axes, tensor.shape).map { axis, size in axis.map { TensorShapeProto.Dimension.param($0) } ?? .value(size) }
        return .tensor(name: name, elemType: .float, shape: shape)
    }

    // MARK: lowering

    func lower(_ ops: [RecordedOp]) throws {
        pooled = PooledRows(ops, traceBatch: traceBatch)
        for i in pooled?.order ?? Array(ops.indices) {
            let op = ops[i]
            for t in op.inputs { if let name = parameterNames[ObjectIdentifier(t)] { module = Self.modulePath(name) } }
            guard isDynamic(op) else { continue }
            let out = ObjectIdentifier(op.outputs[0])
            if let axes = pooled?.ops[i] {
                rowAxis = axes.output
                rowInputs = [:]
                for (t, axis) in zip(op.inputs, axes.inputs) { if let axis { rowInputs[ObjectIdentifier(t)] = axis } }
                defer { rowAxis = nil; rowInputs = [:] }
                rowValues[out] = try lower(op)
            } else if let pooled, i == pooled.poolingOp {
                values[out] = try pool(op, pooled)
            } else {
                values[out] = try lower(op)
            }
            dynamic.insert(out)
        }
    }

    /// Whether an op must be computed at run time: it reads a graph input, or a size that came
    /// from one (the traced batch or sequence length in a shape).
    private func isDynamic(_ op: RecordedOp) -> Bool {
        if op.inputs.contains(where: { dynamic.contains(ObjectIdentifier($0)) }) { return true }
        if case .ints(let shape)? = op.attributes["shape"], [OpName.expand, .view, .reshape].contains(op.name), shape.first == traceBatch { return true }
        if op.name == .narrow, let seq = traceSequence, case .int(seq)? = op.attributes["length"] { return true }
        return false
    }

    private func lower(_ op: RecordedOp) throws -> String {
        let a = op.attributes
        func x(_ i: Int = 0) throws -> String { try value(op.inputs[i]) }
        func int(_ key: String) throws -> Int {
            guard case .int(let v)? = a[key] else { throw ExportError("op '\(op.name)' in \(module) has no integer '\(key)'") }
            return v
        }
        func ints(_ key: String) throws -> [Int] {
            guard case .ints(let v)? = a[key] else { throw ExportError("op '\(op.name)' in \(module) has no '\(key)' list") }
            return v
        }
        func scalar(_ key: String) -> Double? {
            switch a[key] {
            case .scalar(let s)?: s.doubleValue
            case .double(let d)?: d
            case .int(let i)?: Double(i)
            default: nil
            }
        }
        let rank = op.inputs.first?.shape.count ?? 0
        func axis(_ d: Int) -> Int { d < 0 ? d + rank : d }

        switch op.name {
        case .linear: return try linear(op)
        case .conv2d: return try conv(op)
        case .matmul, .bmm: return emit("MatMul", [try x(0), try x(1)])
        case .add, .sub:
            var other = try x(1)
            if let alpha = scalar("alpha"), alpha != 1 { other = emit("Mul", [other, constant(alpha, type: type(of: other))]) }
            return emit(op.name == .add ? "Add" : "Sub", [try x(0), other])
        case .mul: return emit("Mul", [try x(0), try x(1)])
        case .div: return emit("Div", [try x(0), try x(1)])
        case .maximum: return emit("Max", [try x(0), try x(1)])
        case .minimum: return emit("Min", [try x(0), try x(1)])
        case .addScalar, .subScalar, .mulScalar, .divScalar:
            let input = try x()
            let s = constant(scalar("scalar") ?? 0, type: type(of: input))
            let kind: [OpName: String] = [.addScalar: "Add", .subScalar: "Sub", .mulScalar: "Mul", .divScalar: "Div"]
            return emit(kind[op.name]!, [input, s])
        case .rsubScalar:
            let input = try x()
            return emit("Sub", [constant(scalar("scalar") ?? 0, type: type(of: input)), input])
        case .sigmoid, .tanh, .relu, .exp, .log, .sqrt, .erf, .neg, .abs, .reciprocal, .sin, .cos:
            let kind: [OpName: String] = [.sigmoid: "Sigmoid", .tanh: "Tanh", .relu: "Relu", .exp: "Exp", .log: "Log", .sqrt: "Sqrt", .erf: "Erf",
                                          .neg: "Neg", .abs: "Abs", .reciprocal: "Reciprocal", .sin: "Sin", .cos: "Cos"]
            return emit(kind[op.name]!, [try x()])
        case .rsqrt: return emit("Reciprocal", [emit("Sqrt", [try x()])])
        case .gelu:
            let input = try x(), t = type(of: input)
            if case .string("tanh")? = a["approximate"] {
                // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
                let cube = emit("Mul", [emit("Mul", [input, input]), input])
                let inner = emit("Mul", [emit("Add", [input, emit("Mul", [cube, constant(0.044715, type: t)])]), constant((2 / Double.pi).squareRoot(), type: t)])
                return emit("Mul", [emit("Mul", [input, constant(0.5, type: t)]), emit("Add", [emit("Tanh", [inner]), constant(1, type: t)])])
            }
            // 0.5·x·(1 + erf(x / √2))
            let erf = emit("Erf", [emit("Div", [input, constant(2.0.squareRoot(), type: t)])])
            return emit("Mul", [emit("Mul", [input, constant(0.5, type: t)]), emit("Add", [erf, constant(1, type: t)])])
        case .softmax, .logSoftmax:
            let input = try x()
            let result = emit(op.name == .softmax ? "Softmax" : "LogSoftmax", [toFloat(input)], [.int("axis", Int64(try int("dim")))])
            return fromFloat(result, like: input)
        case .layerNorm: return try layerNorm(op)
        case .scaledDotProductAttention: return try attention(op)
        case .transpose:
            var perm = Array(0..<rank)
            perm.swapAt(axis(try int("dim0")), axis(try int("dim1")))
            return emit("Transpose", [try x()], [.ints("perm", perm.map(Int64.init))])
        case .permute: return emit("Transpose", [try x()], [.ints("perm", try ints("dims").map { Int64(axis($0)) })])
        case .flatten:
            let start = axis(try int("start")), end = axis(try int("end"))
            let inputShape = shape(of: op.inputs[0])
            let target = Array(repeating: 0, count: start) + [-1] + Array(inputShape[(end + 1)...])
            return emit("Reshape", [try x(), shapeConstant(target)])
        case .unflatten:
            let d = axis(try int("dim"))
            let inputShape = shape(of: op.inputs[0])
            let target = Array(repeating: 0, count: d) + (try ints("sizes")) + Array(inputShape[(d + 1)...])
            return emit("Reshape", [try x(), shapeConstant(target)])
        case .view, .reshape:
            var target = try ints("shape")
            let input = shape(of: op.inputs[0])
            if let rowAxis { target[rowAxis] = 1 }
            if target.first == traceBatch, input.first == traceBatch { target[0] = 0 }
            if let seq = traceSequence, target.count > 1, target[1] == seq, input.count > 1, input[1] == seq { target[1] = 0 }
            return emit("Reshape", [try x(), shapeConstant(target)])
        case .expand: return try expand(op)
        case .unsqueeze: return emit("Unsqueeze", [try x(), int64s([Int64(try int("dim"))])])
        case .squeeze: return emit("Squeeze", [try x(), int64s([Int64(try int("dim"))])])
        case .cat: return emit("Concat", try op.inputs.map(value), [.int("axis", Int64(try int("dim")))])
        case .select:
            let index = constantTensor(TensorProto.int64(name: "", dims: [], values: [Int64(try int("index"))]), hint: "index")
            return emit("Gather", [try x(), index], [.int("axis", Int64(axis(try int("dim"))))])
        case .narrow: return try narrow(op)
        case .embedding:
            if precision == .int8 { return try quantizedEmbedding(table: op.inputs[0], ids: try x(1)) }
            return emit("Gather", [try x(0), try x(1)], [.int("axis", 0)])
        case .gather: return emit("GatherElements", [try x(0), try x(1)], [.int("axis", Int64(try int("dim")))])
        case .indexSelect: return emit("Gather", [try x(0), try x(1)], [.int("axis", Int64(try int("dim")))])
        case .toDtype:
            guard case .dtype(let d)? = a["dtype"] else { throw ExportError("to_dtype in \(module) has no dtype") }
            let target = d == .float32 ? computeType : Self.onnxType(d)
            let input = try x()
            return types[input] == target ? input : cast(input, to: target)
        case .contiguous, .clone, .detach, .dropout: return try x()
        case .eqScalar, .neScalar, .gtScalar, .ltScalar, .geScalar, .leScalar:
            let input = try x()
            let c = constant(scalar("scalar") ?? 0, type: type(of: input))
            let kind: [OpName: String] = [.eqScalar: "Equal", .neScalar: "Equal", .gtScalar: "Greater", .ltScalar: "Less",
                                          .geScalar: "GreaterOrEqual", .leScalar: "LessOrEqual"]
            let result = emit(kind[op.name]!, [input, c], type: .bool)
            return op.name == .neScalar ? emit("Not", [result], type: .bool) : result
        case .eq, .ne, .gt, .lt, .ge, .le:
            let kind: [OpName: String] = [.eq: "Equal", .ne: "Equal", .gt: "Greater", .lt: "Less", .ge: "GreaterOrEqual", .le: "LessOrEqual"]
            let result = emit(kind[op.name]!, [try x(0), try x(1)], type: .bool)
            return op.name == .ne ? emit("Not", [result], type: .bool) : result
        case .logicalAnd, .logicalOr, .logicalXor:
            let kind: [OpName: String] = [.logicalAnd: "And", .logicalOr: "Or", .logicalXor: "Xor"]
            return emit(kind[op.name]!, [try x(0), try x(1)], type: .bool)
        case .logicalNot: return emit("Not", [try x()], type: .bool)
        case .where: return emit("Where", [try x(0), try x(1), try x(2)])
        case .argmax, .argmin:
            var keep = false
            if case .bool(let k)? = a["keepdim"] { keep = k }
            return emit(op.name == .argmax ? "ArgMax" : "ArgMin", [try x()], [.int("axis", Int64(try int("dim"))), .int("keepdims", keep ? 1 : 0)], type: .int64)
        case .sum, .mean:
            var keep = false
            if case .bool(let k)? = a["keepdim"] { keep = k }
            let input = try x()
            let result = reduce(op.name == .sum ? "ReduceSum" : "ReduceMean", toFloat(input), axes: try ints("dims").map(axis), keepdims: keep)
            return fromFloat(result, like: input)
        case .norm:
            guard scalar("p") == 2 else { throw ExportError("norm with p ≠ 2 in \(module) has no ONNX lowering") }
            var keep = false
            if case .bool(let k)? = a["keepdim"] { keep = k }
            let input = try x()
            return fromFloat(reduce("ReduceL2", toFloat(input), axes: try ints("dims").map(axis), keepdims: keep), like: input)
        case .clamp:
            let input = try x(), t = type(of: input)
            let low = scalar("min").map { constant($0, type: t) } ?? "", high = scalar("max").map { constant($0, type: t) } ?? ""
            return emit("Clip", [input, low, high].reversedTrimmingEmpty())
        // Recorded by the Torch layer but not part of the exported towers (creation, in-place
        // updates, losses, sorting, ...). No `default`: a new op in `OpName` must be placed here or lowered.
        case .fromBlob, .zeros, .ones, .empty, .full, .arange, .linspace, .eye, .rand, .randn, .randint, .randperm, .bernoulli,
             .uniformInPlace, .normalInPlace, .generatorGetState, .pow, .atan2, .powScalar, .rpowScalar, .fmodScalar, .floor,
             .ceil, .round, .sign, .erfinv, .isnan, .isfinite, .clampTensor, .addInPlace, .addScalarInPlace, .mulInPlace,
             .mulScalarInPlace, .divInPlace, .addcmulInPlace, .addcdivInPlace, .lerpInPlace, .sqrtInPlace, .clampInPlace,
             .copyInPlace, .setData, .zeroInPlace, .fillInPlace, .requiresGradInPlace, .retainGrad,
             .ampForeachNonFiniteCheckAndUnscaleInPlace, .ampUpdateScaleInPlace, .foreachAddInPlace, .foreachMulInPlace,
             .foreachNorm, .fusedAdamwInPlace, .fusedSgdInPlace, .prod, .cumsum, .maxAll,
             .minAll, .maxDim, .minDim, .logsumexp, .var, .std, .topk, .sort, .argsort, .all, .any, .toDevice, .slice, .scatter,
             .scatterValue, .scatterAdd, .maskedFill, .stack, .split, .splitWithSizes, .chunk, .flip, .roll, .repeat, .tril, .triu,
             .diagonal, .crossEntropy, .klDiv, .mseLoss, .binaryCrossEntropyWithLogits, .cosineSimilarity, .interpolate,
             .affineGrid, .gridSample:
            throw ExportError("op '\(op.name)' has no ONNX lowering (used in \(module)); export supports the ops of the CLIP, ViT and BERT towers")
        }
    }

    // MARK: values and constants

    /// The graph value of a traced tensor: an earlier node's output, a graph input, or an
    /// initializer made from its traced contents.
    func value(_ t: Tensor) throws -> String {
        if let axis = rowInputs[ObjectIdentifier(t)] { return try rows(of: t, axis: axis) }
        return try wholeValue(t)
    }

    /// Every token of a traced tensor (never the pooled rows alone).
    func wholeValue(_ t: Tensor) throws -> String {
        if let name = values[ObjectIdentifier(t)] { return name }
        // A value computed for the pooled token only has no whole form: its traced contents
        // must not be baked in as a constant.
        guard rowValues[ObjectIdentifier(t)] == nil else {
            throw ExportError("internal: \(module) reads every token of a value the export computes for the pooled token only")
        }
        let type: TensorProto.DataType = t.dtype == .float32 || t.dtype == .float64 ? computeType : Self.onnxType(t.dtype)
        let name = materialize(t, key: "", as: type) { t }
        values[ObjectIdentifier(t)] = name
        return name
    }

    /// A float tensor as a float32 initializer (LayerNorm weights in fp16 mode).
    func floatValue(_ t: Tensor) -> String {
        if let name = values[ObjectIdentifier(t)], types[name] == .float { return name }
        if let name = values[ObjectIdentifier(t)], dynamic.contains(ObjectIdentifier(t)) { return toFloat(name) }
        return materialize(t, key: "float32", as: .float) { t }
    }

    /// An initializer for (tensor, key), made once; identical contents share one initializer.
    func materialize(_ t: Tensor, key: String, as type: TensorProto.DataType? = nil, _ make: () -> Tensor) -> String {
        let cacheKey = "\(ObjectIdentifier(t).hashValue)/\(key)/\(type?.rawValue ?? -1)"
        if let name = derived[cacheKey] { return name }
        var hint = parameterNames[ObjectIdentifier(t)] ?? "const"
        if !key.isEmpty { hint += ".\(key)" }
        let type = type ?? (t.dtype == .float32 ? computeType : Self.onnxType(t.dtype))
        let name = constantTensor(Self.tensorProto(make(), type: type), hint: hint)
        derived[cacheKey] = name
        return name
    }

    /// Adds an initializer (or finds one with the same type, shape and bytes) and returns its name.
    func constantTensor(_ proto: TensorProto, hint: String) -> String {
        var hasher = Hasher()
        hasher.combine(proto.dataType.rawValue)
        hasher.combine(proto.dims)
        hasher.combine(proto.rawData)
        let key = hasher.finalize()
        if let match = contentNames[key]?.first(where: { $0.0.dataType == proto.dataType && $0.0.dims == proto.dims && $0.0.rawData == proto.rawData }) {
            return match.1
        }
        var named = proto
        named.name = unique(hint)
        initializers.append(named)
        types[named.name] = proto.dataType
        contentNames[key, default: []].append((named, named.name))
        return named.name
    }

    func constant(_ value: Double, type: TensorProto.DataType) -> String {
        constantTensor(Self.scalarProto(value, type: type), hint: "const")
    }

    func int64s(_ values: [Int64]) -> String {
        constantTensor(TensorProto.int64(name: "", dims: [Int64(values.count)], values: values), hint: "const")
    }

    func shapeConstant(_ shape: [Int]) -> String { int64s(shape.map(Int64.init)) }

    func type(of value: String) -> TensorProto.DataType { types[value] ?? computeType }

    func cast(_ value: String, to type: TensorProto.DataType) -> String {
        emit("Cast", [value], [.int("to", Int64(type.rawValue))], type: type)
    }

    /// In fp16 mode, float16 values go to float32 for numerically sensitive ops, and back.
    func toFloat(_ value: String) -> String { types[value] == .float16 ? cast(value, to: .float) : value }
    func fromFloat(_ value: String, like original: String) -> String {
        types[original] == .float16 && types[value] == .float ? cast(value, to: .float16) : value
    }

    /// Appends a node with one output; its type defaults to the first input's.
    @discardableResult
    func emit(_ opType: String, _ inputs: [String], _ attributes: [AttributeProto] = [], type: TensorProto.DataType? = nil) -> String {
        let output = unique("\(opType.lowercased())_out")
        // Nodes are named after the module that ran them: "text_model.encoder.layer.0.output.dense/MatMul".
        nodes.append(NodeProto(opType: opType, inputs: inputs, outputs: [output], name: unique("\(module)/\(opType)"), attributes: attributes))
        types[output] = type ?? inputs.first.flatMap { types[$0] } ?? computeType
        return output
    }

    func unique(_ base: String) -> String {
        var name = base, n = 1
        while usedNames.contains(name) { n += 1; name = "\(base)_\(n)" }
        usedNames.insert(name)
        return name
    }

    // MARK: conversions

    static func onnxType(_ d: DType) -> TensorProto.DataType {
        switch d {
        case .float32: .float
        case .float64: .double
        case .float16: .float16
        case .bfloat16: .bfloat16
        case .int64: .int64
        case .int32: .int32
        case .uint8: .uint8
        case .bool: .bool
        }
    }

    static func torchType(_ t: TensorProto.DataType) -> DType {
        switch t {
        case .float16: .float16
        case .int64: .int64
        case .int32: .int32
        case .uint8: .uint8
        case .bool: .bool
        case .double: .float64
        default: .float32
        }
    }

    static func tensorProto(_ t: Tensor, type: TensorProto.DataType) -> TensorProto {
        let converted = withNoGrad { t.detach().to(torchType(type)).contiguous() }
        return TensorProto(dataType: type, dims: t.shape.map(Int64.init), rawData: Data(converted.bytes()))
    }

    static func scalarProto(_ value: Double, type: TensorProto.DataType) -> TensorProto {
        tensorProto(Tensor.full([], value, dtype: torchType(type)), type: type)
    }

    /// "vision_model.encoder.layers.0.mlp.fc1.weight" → "vision_model.encoder.layers.0.mlp.fc1".
    static func modulePath(_ parameter: String) -> String {
        parameter.split(separator: ".").dropLast().joined(separator: ".")
    }
}

private extension Array where Element == String {
    /// Drops trailing "" (omitted optional inputs at the end of an ONNX node's input list).
    func reversedTrimmingEmpty() -> [String] {
        var result = self
        while result.last == "" { result.removeLast() }
        return result
    }
}

private extension Scalar {
    var doubleValue: Double {
        switch self {
        case .float(let v): v
        case .int(let v): Double(v)
        case .bool(let v): v ? 1 : 0
        }
    }
}
