import ONNX
import Torch

/// How GraphLowering computes the ops `PooledRows` found for the pooled token only: their
/// inputs' rows are gathered, their token axis has size 1, the pooling op reads that row.
extension GraphLowering {
    /// The rows of `t` at the pooled token(s), token axis kept with size 1: computed that way
    /// by an earlier op, or gathered from the whole value.
    func rows(of t: Tensor, axis: Int) throws -> String {
        if let name = rowValues[ObjectIdentifier(t)] { return name }
        let key = "\(ObjectIdentifier(t).hashValue)/\(axis)"
        if let name = gatheredRows[key] { return name }
        let whole = try wholeValue(t)
        let gathered: String
        switch pooled!.selector {
        case .index(let i):
            gathered = emit("Gather", [whole, int64s([Int64(i)])], [.int("axis", Int64(axis))])
        case .positions:
            // GatherND with one batch axis reads data[b, position[b]] with the token axis at 1.
            let rank = t.shape.count
            var perm = Array(0..<rank)
            perm.remove(at: axis)
            perm.insert(axis, at: 1)
            let moved = axis == 1 ? whole : emit("Transpose", [whole], [.ints("perm", perm.map(Int64.init))])
            let indices = emit("Reshape", [try positions(), shapeConstant([-1, 1, 1])], type: .int64)
            let picked = emit("GatherND", [moved, indices], [.int("batch_dims", 1)])
            var inverse = Array(repeating: 0, count: rank)
            for (i, p) in perm.enumerated() { inverse[p] = i }
            gathered = axis == 1 ? picked : emit("Transpose", [picked], [.ints("perm", inverse.map(Int64.init))])
        }
        gatheredRows[key] = gathered
        return gathered
    }

    /// The pooling op itself: `select` drops the (size-1) token axis, `gather`'s result is the row.
    func pool(_ op: RecordedOp, _ pooled: PooledRows) throws -> String {
        let row = try rows(of: op.inputs[0], axis: pooled.poolingAxis)
        return op.name == .select ? emit("Squeeze", [row, int64s([Int64(pooled.poolingAxis)])]) : row
    }

    /// A traced tensor's shape as the op being lowered sees it (token axis 1 for pooled rows).
    func shape(of t: Tensor) -> [Int] {
        var shape = t.shape
        if let axis = rowInputs[ObjectIdentifier(t)] { shape[axis] = 1 }
        return shape
    }

    /// Causal attention for the pooled query only: it sees the keys up to its own position.
    /// Scores [..., 1, keys] → a boolean mask [batch or 1, 1, ..., keys].
    func pooledCausalMask(scores: String, rank: Int) throws -> String {
        func scalar(_ v: Int64) -> String { constantTensor(TensorProto.int64(name: "", dims: [], values: [v]), hint: "const") }
        let keyCount = emit("Gather", [emit("Shape", [scores], type: .int64), scalar(Int64(rank - 1))], [.int("axis", 0)], type: .int64)
        let keys = emit("Range", [scalar(0), keyCount, scalar(1)], type: .int64)
        let ones = Array(repeating: 1, count: rank - 1)
        let position: String
        switch pooled!.selector {
        case .index(let i): position = constantTensor(TensorProto.int64(name: "", dims: ones.map(Int64.init), values: [Int64(i)]), hint: "pooled_position")
        case .positions: position = emit("Reshape", [try positions(), shapeConstant([-1] + ones)], type: .int64)
        }
        return emit("LessOrEqual", [keys, position], type: .bool)
    }

    /// The per-input positions [batch] (int64) of a `.positions` selector.
    private func positions() throws -> String {
        if let pooledPositions { return pooledPositions }
        guard case .positions(let traced)? = pooled?.selector else { throw ExportError("internal: no pooled positions") }
        let value = try wholeValue(traced)
        let int64 = types[value] == .int64 ? value : cast(value, to: .int64)
        pooledPositions = emit("Reshape", [int64, shapeConstant([-1])], type: .int64)
        return pooledPositions!
    }
}
