import Foundation
import ONNX
import Torch

/// The lowerings of GraphLowering that take more than one ONNX node: linear (fp32/fp16 and the
/// int8 forms), the int8 embedding, conv, layer norm, attention, expand, narrow, reductions.
extension GraphLowering {

    /// x·Wᵀ + b. fp32/fp16: MatMul with the transposed weight. int8: dynamic quantization.
    func linear(_ op: RecordedOp) throws -> String {
        let input = try value(op.inputs[0]), weight = op.inputs[1]
        let name = parameterNames[ObjectIdentifier(weight)] ?? "linear.weight"
        var out: String
        if precision == .int8 && perTokenActivations {
            out = try perTokenQuantizedMatMul(input, weight: weight, name: name, rank: op.inputs[0].shape.count)
        } else if precision == .int8 {
            // 7-bit weights (onnxruntime's reduce_range): with full-range uint8 activations, x86's
            // u8×s8 multiply-add (vpmaddubsw) saturates pairs of full-range products.
            let (q, scale) = Quantization.perChannel(weight.mT, axis: 1, levels: 63)          // [in, out], one scale per output
            let wq = constantTensor(q, hint: "\(name).int8")
            let zeros = constantTensor(Quantization.zeroPoints(count: weight.size(0)), hint: "\(name).zero_point")
            let ws = constantTensor(scale, hint: "\(name).scale")
            let xq = unique("\(name).x_quantized"), xs = unique("\(name).x_scale"), xz = unique("\(name).x_zero_point")
            nodes.append(NodeProto(opType: "DynamicQuantizeLinear", inputs: [input], outputs: [xq, xs, xz], name: unique("DynamicQuantizeLinear")))
            types[xq] = .uint8; types[xs] = .float; types[xz] = .uint8
            let integer = emit("MatMulInteger", [xq, wq, xz, zeros], type: .int32)
            out = emit("Mul", [cast(integer, to: .float), emit("Mul", [xs, ws], type: .float)], type: .float)
        } else {
            let transposed = materialize(weight, key: "transposed") { weight.mT.contiguous() }
            out = emit("MatMul", [input, transposed])
        }
        if op.inputs.count > 2 { out = emit("Add", [out, try value(op.inputs[2])]) }
        return out
    }

    /// x·Wᵀ with uint8 activations quantized per token (row) and int8 weights per output channel.
    /// MatMulInteger takes one activation zero point only, so each row is quantized with its own
    /// scale s and zero point z and the product corrected afterwards:
    /// x·W ≈ s·(q − z)·W_q·w = s·(q·W_q − z·colsum(W_q))·w.
    func perTokenQuantizedMatMul(_ input: String, weight: Tensor, name: String, rank: Int) throws -> String {
        let k = weight.size(1), n = weight.size(0)
        let (q, scale) = Quantization.perChannel(weight.mT, axis: 1)          // [in, out]
        let wq = constantTensor(q, hint: "\(name).int8")
        let ws = constantTensor(scale, hint: "\(name).scale")
        let columnSums = Quantization.columnSums(q, rows: k, columns: n)
        let colsum = constantTensor(TensorProto.float(name: "", dims: [1, Int64(n)], values: columnSums), hint: "\(name).column_sums")
        let x = emit("Reshape", [input, shapeConstant([-1, k])], type: .float)                      // [M, K]
        let zero = constant(0, type: .float)
        let low = emit("Min", [reduce("ReduceMin", x, axes: [1], keepdims: true), zero], type: .float)    // the range holds 0
        let high = emit("Max", [reduce("ReduceMax", x, axes: [1], keepdims: true), zero], type: .float)
        // 7-bit activations: x86's u8×s8 multiply-add (vpmaddubsw) saturates pairs of full-range products.
        let s = emit("Max", [emit("Div", [emit("Sub", [high, low], type: .float), constant(127, type: .float)], type: .float),
                             constant(1e-12, type: .float)], type: .float)                          // [M, 1]
        let z = emit("Round", [emit("Div", [emit("Neg", [low], type: .float), s], type: .float)], type: .float)
        let shifted = emit("Add", [emit("Round", [emit("Div", [x, s], type: .float)], type: .float), z], type: .float)
        let xq = cast(emit("Clip", [shifted, zero, constant(127, type: .float)], type: .float), to: .uint8)
        let product = cast(emit("MatMulInteger", [xq, wq], type: .int32), to: .float)                // [M, N]
        let corrected = emit("Sub", [product, emit("Mul", [z, colsum], type: .float)], type: .float)
        let y = emit("Mul", [corrected, emit("Mul", [s, ws], type: .float)], type: .float)
        // Back to the input's leading shape with N columns.
        let leading = emit("Slice", [emit("Shape", [input], type: .int64), int64s([0]), int64s([Int64(rank - 1)])], type: .int64)
        let shape = emit("Concat", [leading, int64s([Int64(n)])], [.int("axis", 0)], type: .int64)
        return emit("Reshape", [y, shape], type: .float)
    }

    /// int8 rows with one scale per row: Gather both, then scale the gathered rows (the table
    /// stays int8 in the file, a quarter of its float size).
    func quantizedEmbedding(table: Tensor, ids: String) throws -> String {
        let name = parameterNames[ObjectIdentifier(table)] ?? "embedding.weight"
        let (q, scale) = Quantization.perChannel(table, axis: 0)
        let rows = emit("Gather", [constantTensor(q, hint: "\(name).int8"), ids], [.int("axis", 0)], type: .int8)
        let scales = emit("Gather", [constantTensor(scale, hint: "\(name).scale"), ids], [.int("axis", 0)], type: .float)
        return emit("Mul", [cast(rows, to: .float), emit("Unsqueeze", [scales, int64s([-1])], type: .float)], type: .float)
    }

    func conv(_ op: RecordedOp) throws -> String {
        let a = op.attributes
        guard case .ints(let stride)? = a["stride"], case .ints(let padding)? = a["padding"], case .ints(let dilation)? = a["dilation"],
              case .int(let groups)? = a["groups"] else { throw ExportError("conv2d in \(module) lacks stride/padding/dilation/groups") }
        let weight = op.inputs[1]
        var w: String
        if precision == .int8 {
            let name = parameterNames[ObjectIdentifier(weight)] ?? "conv.weight"
            let (q, scale) = Quantization.perChannel(weight, axis: 0)
            w = emit("DequantizeLinear", [constantTensor(q, hint: "\(name).int8"), constantTensor(scale, hint: "\(name).scale"),
                                          constantTensor(Quantization.zeroPoints(count: weight.size(0)), hint: "\(name).zero_point")],
                     [.int("axis", 0)], type: .float)
        } else {
            w = try value(weight)
        }
        var inputs = [try value(op.inputs[0]), w]
        if op.inputs.count > 2 { inputs.append(try value(op.inputs[2])) }
        return emit("Conv", inputs, [.ints("strides", stride.map(Int64.init)), .ints("pads", (padding + padding).map(Int64.init)),
                                     .ints("dilations", dilation.map(Int64.init)), .int("group", Int64(groups))])
    }

    /// LayerNormalization in float32 whatever the precision.
    func layerNorm(_ op: RecordedOp) throws -> String {
        guard case .ints(let shape)? = op.attributes["normalized_shape"] else { throw ExportError("layer_norm in \(module) has no normalized_shape") }
        var eps = 1e-5
        if case .double(let e)? = op.attributes["eps"] { eps = e }
        let input = try value(op.inputs[0])
        var inputs = [toFloat(input)]
        for t in op.inputs.dropFirst() { inputs.append(floatValue(t)) }
        let result = emit("LayerNormalization", inputs, [.int("axis", Int64(-shape.count)), .float("epsilon", Float(eps))], type: .float)
        return fromFloat(result, like: input)
    }

    /// softmax(q·kᵀ·scale, masked) · v, the mask and softmax in float32.
    func attention(_ op: RecordedOp) throws -> String {
        let q = try value(op.inputs[0]), k = try value(op.inputs[1]), v = try value(op.inputs[2])
        let d = op.inputs[0].shape.last!
        var scale = 1 / Double(d).squareRoot()
        if case .double(let s)? = op.attributes["scale"] { scale = s }
        let rank = op.inputs[0].shape.count
        var perm = Array(0..<rank).map(Int64.init)
        perm.swapAt(rank - 1, rank - 2)
        let scores = emit("Mul", [emit("MatMul", [q, emit("Transpose", [k], [.ints("perm", perm)])]), constant(scale, type: type(of: q))])
        var logits = toFloat(scores)
        let negativeInfinity = constant(-Double.infinity, type: .float)
        if op.inputs.count > 3 {
            logits = emit("Where", [try value(op.inputs[3]), logits, negativeInfinity], type: .float)
        }
        if case .bool(true)? = op.attributes["is_causal"], rowAxis != nil {
            logits = emit("Where", [try pooledCausalMask(scores: logits, rank: rank), logits, negativeInfinity], type: .float)
        } else if case .bool(true)? = op.attributes["is_causal"] {
            // Lower-triangular mask of the scores' last two (dynamic) sizes.
            let size = emit("Slice", [emit("Shape", [logits], type: .int64), int64s([Int64(rank - 2)]), int64s([Int64(rank)])], type: .int64)
            let ones = emit("ConstantOfShape", [size], [.tensor("value", TensorProto(dataType: .bool, dims: [1], rawData: Data([1])))], type: .bool)
            logits = emit("Where", [emit("Trilu", [ones], [.int("upper", 0)], type: .bool), logits, negativeInfinity], type: .float)
        }
        let probabilities = fromFloat(emit("Softmax", [logits], [.int("axis", -1)], type: .float), like: q)
        return emit("MatMul", [probabilities, v])
    }

    /// expand: -1 keeps a dimension (ONNX broadcasting does that with 1); the traced batch size
    /// becomes the batch input's first dimension.
    func expand(_ op: RecordedOp) throws -> String {
        guard case .ints(var shape)? = op.attributes["shape"] else { throw ExportError("expand in \(module) has no shape") }
        shape = shape.map { $0 == -1 ? 1 : $0 }
        let input = try value(op.inputs[0])
        if shape.first == traceBatch, let source = batchSource {
            let batch = emit("Slice", [emit("Shape", [source], type: .int64), int64s([0]), int64s([1])], type: .int64)
            let target = emit("Concat", [batch, int64s(shape.dropFirst().map(Int64.init))], [.int("axis", 0)], type: .int64)
            return emit("Expand", [input, target])
        }
        return emit("Expand", [input, shapeConstant(shape)])
    }

    /// narrow → Slice; a length equal to the traced sequence length follows the input's length.
    func narrow(_ op: RecordedOp) throws -> String {
        guard case .int(let dim)? = op.attributes["dim"], case .int(let start)? = op.attributes["start"], case .int(let length)? = op.attributes["length"] else {
            throw ExportError("narrow in \(module) lacks dim/start/length")
        }
        let input = try value(op.inputs[0])
        var end = int64s([Int64(start + length)])
        if let seq = traceSequence, length == seq, let source = sequenceSource {
            let sequence = emit("Slice", [emit("Shape", [source], type: .int64), int64s([1]), int64s([2])], type: .int64)
            end = start == 0 ? sequence : emit("Add", [sequence, int64s([Int64(start)])], type: .int64)
        }
        return emit("Slice", [input, int64s([Int64(start)]), end, int64s([Int64(dim)])])
    }

    /// Reduce ops: axes are an attribute before opset 18 (ReduceSum: 13), an input after.
    func reduce(_ kind: String, _ input: String, axes: [Int], keepdims: Bool) -> String {
        let keep = AttributeProto.int("keepdims", keepdims ? 1 : 0)
        if kind == "ReduceSum" || opset >= 18 {
            return emit(kind, [input, int64s(axes.map(Int64.init))], [keep], type: types[input])
        }
        return emit(kind, [input], [.ints("axes", axes.map(Int64.init)), keep], type: types[input])
    }
}
