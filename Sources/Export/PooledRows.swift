import Torch

/// Which ops of a recorded forward pass need only the pooled token.
///
/// A tower's embedding is read at one token per input (CLIP's class token, the end-of-text
/// token, BERT's [CLS]), but the last transformer layer is written for every token: its query
/// projection, attention rows, output projection, MLP and norms compute rows nothing reads.
/// Neither torch.onnx.export nor onnxruntime removes them. Walking back from the pooling op, an
/// op that treats each token on its own (linear, norms, element-wise ops, head reshapes and
/// transposes; attention on the query side) needs only the rows its consumers need; where a
/// value is also needed whole (the keys and values read every token) the rows are gathered from
/// it. On a 4-layer tower this is about a fifth of the work.
///
/// The analysis looks only at op kinds, axes and traced shapes, never at which module ran an
/// op, so it follows whatever the model records; an op it does not know needs its inputs whole.
struct PooledRows {
    /// Which token each input is pooled at.
    enum Selector {
        /// The same position for every input (`select(dim:index:)`).
        case index(Int)
        /// One position per input: a traced tensor [batch, 1, …, 1] of positions (from
        /// `gather(dim:index:)` with an index broadcast from it).
        case positions(Tensor)
    }

    /// Axes of an op computed for the pooled rows only: the token axis of its output and of
    /// each input (nil: the input is read whole, e.g. weights, keys, broadcast operands).
    struct Axes {
        let output: Int
        let inputs: [Int?]
    }

    let selector: Selector
    /// Index (in the recording) of the op that pools: its input arrives with one row per input.
    let poolingOp: Int
    /// The pooling op's token axis.
    let poolingAxis: Int
    /// Ops lowered for the pooled rows only, by index in the recording.
    let ops: [Int: Axes]
    /// The recording's op indices in lowering order: the ops the selector depends on first
    /// (a text tower finds its end-of-text positions after the encoder ran).
    let order: [Int]

    /// nil when the forward pass pools no token (mean pooling) or nothing can be skipped.
    init?(_ recorded: [RecordedOp], traceBatch: Int) {
        var producer: [ObjectIdentifier: Int] = [:]
        for (i, op) in recorded.enumerated() { for t in op.outputs { producer[ObjectIdentifier(t)] = i } }

        // The last op that reads one token per input.
        guard let (pool, axis, selector) = Self.findPooling(recorded, producer: producer, traceBatch: traceBatch) else { return nil }

        // Backwards: what each tensor's consumers need, merged (.all wins over different rows).
        var need: [ObjectIdentifier: Int?] = [:]      // tensor → token axis, or nil for whole
        func require(_ t: Tensor, _ axis: Int?) {
            let key = ObjectIdentifier(t)
            if let existing = need[key] { if existing != axis { need[key] = .some(nil) } } else { need[key] = .some(axis) }
        }
        let poolOp = recorded[pool]
        require(poolOp.inputs[0], axis)
        for t in poolOp.inputs.dropFirst() { require(t, nil) }
        var ops: [Int: Axes] = [:]     // need is final for an op's output when it is reached: its consumers come later
        for i in stride(from: recorded.count - 1, through: 0, by: -1) where i != pool {
            let op = recorded[i]
            var out: Int?
            if op.outputs.count == 1, let n = need[ObjectIdentifier(op.outputs[0])] { out = n }
            if let out, let inputs = Self.inputAxes(op, outputAxis: out),
               zip(op.inputs, inputs).allSatisfy({ t, a in a.map { Self.canGather(t, axis: $0, selector: selector, traceBatch: traceBatch) } ?? true }),
               Self.readsEachInputOneWay(op.inputs, inputs) {
                ops[i] = Axes(output: out, inputs: inputs)
                for (t, a) in zip(op.inputs, inputs) { require(t, a) }
            } else {
                for t in op.inputs { require(t, nil) }
            }
        }
        guard !ops.isEmpty else { return nil }

        // The selector's own ops go first; they must not depend on a pruned op.
        var early = Set<Int>()
        if case .positions(let positions) = selector {
            var stack = [positions]
            while let t = stack.popLast() {
                guard let p = producer[ObjectIdentifier(t)], early.insert(p).inserted else { continue }
                if ops[p] != nil || p == pool { return nil }
                stack.append(contentsOf: recorded[p].inputs)
            }
        }
        self.selector = selector
        self.poolingOp = pool
        self.poolingAxis = axis
        self.ops = ops
        self.order = early.sorted() + recorded.indices.filter { !early.contains($0) }
    }

    /// `select(dim: d, index: i)` or `gather(dim: d, index:)` with one position per input, on a
    /// [batch, tokens, …] value; the last one in the recording.
    private static func findPooling(_ recorded: [RecordedOp], producer: [ObjectIdentifier: Int],
                                    traceBatch: Int) -> (Int, Int, Selector)? {
        for i in stride(from: recorded.count - 1, through: 0, by: -1) {
            let op = recorded[i]
            guard let input = op.inputs.first, input.shape.count >= 3, input.shape[0] == traceBatch,
                  case .int(let d)? = op.attributes["dim"] else { continue }
            let axis = d < 0 ? d + input.shape.count : d
            guard axis >= 1 else { continue }
            if op.name == .select, case .int(let index)? = op.attributes["index"] {
                return (i, axis, .index(index < 0 ? index + input.shape[axis] : index))
            }
            if op.name == .gather, op.outputs[0].shape == input.shape.enumerated().map({ $0.offset == axis ? 1 : $0.element }),
               let positions = broadcastPositions(op.inputs[1], axis: axis, producer: producer, recorded: recorded, traceBatch: traceBatch) {
                return (i, axis, .positions(positions))
            }
        }
        return nil
    }

    /// The index of a pooling `gather` holds one position per input, broadcast over every other
    /// axis: expand([batch, 1, …, 1]) of such a tensor. Returns that tensor.
    private static func broadcastPositions(_ index: Tensor, axis: Int, producer: [ObjectIdentifier: Int], recorded: [RecordedOp],
                                           traceBatch: Int) -> Tensor? {
        guard index.shape.count > axis, index.shape[axis] == 1, index.shape[0] == traceBatch,
              let p = producer[ObjectIdentifier(index)], recorded[p].name == .expand else { return nil }
        let source = recorded[p].inputs[0]
        guard source.shape.first == traceBatch, source.shape.dropFirst().allSatisfy({ $0 == 1 }) else { return nil }
        return source
    }

    /// The lowering finds an input's rows by the tensor, so one tensor passed twice (attention
    /// of x with itself) must be read the same way at both places.
    private static func readsEachInputOneWay(_ inputs: [Tensor], _ axes: [Int?]) -> Bool {
        var seen: [ObjectIdentifier: Int?] = [:]
        for (t, a) in zip(inputs, axes) {
            if let previous = seen[ObjectIdentifier(t)], previous != a { return false }
            seen[ObjectIdentifier(t)] = .some(a)
        }
        return true
    }

    /// Whether rows at `axis` can be gathered from `t` as it is computed whole.
    private static func canGather(_ t: Tensor, axis: Int, selector: Selector, traceBatch: Int) -> Bool {
        guard axis < t.shape.count else { return false }
        if case .positions = selector { return axis >= 1 && t.shape[0] == traceBatch }
        return true
    }

    /// For an op whose output is needed at token axis `a` only: the token axis of each input
    /// (nil: read whole), or nil when the op mixes tokens or is not known to keep them apart.
    static func inputAxes(_ op: RecordedOp, outputAxis a: Int) -> [Int?]? {
        guard let output = op.outputs.first else { return nil }
        let rank = output.shape.count
        let attributes = op.attributes
        func int(_ key: String) -> Int? { if case .int(let v)? = attributes[key] { return v }; return nil }
        func ints(_ key: String) -> [Int]? { if case .ints(let v)? = attributes[key] { return v }; return nil }
        func normalized(_ d: Int, _ r: Int) -> Int { d < 0 ? d + r : d }
        /// Broadcasting from the right: a size-1 (or missing) axis is read whole.
        func broadcast(_ t: Tensor) -> Int? {
            let ia = a - (rank - t.shape.count)
            return ia < 0 || t.shape[ia] == 1 ? nil : ia
        }

        switch op.name {
        case .sigmoid, .tanh, .relu, .exp, .log, .sqrt, .erf, .neg, .abs, .reciprocal, .sin, .cos, .rsqrt, .gelu,
             .addScalar, .subScalar, .mulScalar, .divScalar, .rsubScalar, .clamp, .toDtype, .contiguous, .clone, .detach, .dropout,
             .eqScalar, .neScalar, .gtScalar, .ltScalar, .geScalar, .leScalar, .logicalNot:
            return [a]
        case .add, .sub, .mul, .div, .maximum, .minimum, .eq, .ne, .gt, .lt, .ge, .le, .logicalAnd, .logicalOr, .logicalXor, .where:
            return op.inputs.map(broadcast)
        case .linear:
            return a < rank - 1 ? [a] + Array(repeating: nil, count: op.inputs.count - 1) : nil
        case .layerNorm:
            guard let shape = ints("normalized_shape"), a < rank - shape.count else { return nil }
            return [a] + Array(repeating: nil, count: op.inputs.count - 1)
        case .softmax, .logSoftmax:
            guard let d = int("dim"), normalized(d, rank) != a else { return nil }
            return [a]
        case .transpose:
            guard let d0 = int("dim0"), let d1 = int("dim1") else { return nil }
            let (x, y) = (normalized(d0, rank), normalized(d1, rank))
            return [a == x ? y : a == y ? x : a]
        case .permute:
            guard let dims = ints("dims") else { return nil }
            return [normalized(dims[a], rank)]
        case .unflatten:
            guard let d0 = int("dim"), let sizes = ints("sizes") else { return nil }
            let d = normalized(d0, rank - sizes.count + 1)
            if a < d { return [a] }
            return a >= d + sizes.count ? [a - sizes.count + 1] : nil
        case .flatten:
            let inputRank = op.inputs[0].shape.count
            guard let s0 = int("start"), let e0 = int("end") else { return nil }
            let (s, e) = (normalized(s0, inputRank), normalized(e0, inputRank))
            if a < s { return [a] }
            if a > s { return [a + e - s] }
            return s == e ? [a] : nil
        case .view, .reshape:
            // The token axis must survive as one axis: same size, same elements before and after it.
            let input = op.inputs[0].shape, out = output.shape
            let before = out[..<a].reduce(1, *), after = out[(a + 1)...].reduce(1, *)
            for b in input.indices where input[b] == out[a] && input[..<b].reduce(1, *) == before && input[(b + 1)...].reduce(1, *) == after {
                return [b]
            }
            return nil
        case .select:
            guard let d0 = int("dim") else { return nil }
            let d = normalized(d0, rank + 1)
            return [a < d ? a : a + 1]
        case .narrow:
            guard let d = int("dim"), normalized(d, rank) != a else { return nil }
            return [a]
        case .unsqueeze:
            guard let d0 = int("dim") else { return nil }
            let d = normalized(d0, rank)
            return a == d ? nil : [a < d ? a : a - 1]
        case .squeeze:
            guard let d0 = int("dim") else { return nil }
            let d = normalized(d0, rank + 1)
            return [a < d ? a : a + 1]
        case .cat:
            guard let d = int("dim"), normalized(d, rank) != a else { return nil }
            return op.inputs.map(broadcast)
        case .matmul, .bmm:
            // Rows of the left operand (batch axes broadcast); the right one is read whole.
            guard rank >= 2, a != rank - 1 else { return nil }
            if a == rank - 2 { let ia = a - (rank - op.inputs[0].shape.count); return ia >= 0 ? [ia, nil] : nil }
            return op.inputs.map(broadcast)
        case .scaledDotProductAttention:
            // Query rows; every key and value; the mask's rows when it has them.
            guard a == rank - 2 else { return nil }
            return [a, nil, nil] + op.inputs.dropFirst(3).map(broadcast)
        default:
            return nil
        }
    }
}
