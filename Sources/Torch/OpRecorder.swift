import Synchronization

/// An attribute of a recorded op (dims, eps, flags...), as the export layer needs it.
public enum OpAttribute: Sendable, Equatable, CustomStringConvertible {
    case int(Int)
    case ints([Int])
    case double(Double)
    case bool(Bool)
    case string(String)
    case dtype(DType)
    case scalar(Scalar)
    case absent

    public var description: String {
        switch self {
        case .int(let v): "\(v)"
        case .ints(let v): "\(v)"
        case .double(let v): "\(v)"
        case .bool(let v): "\(v)"
        case .string(let v): "\"\(v)\""
        case .dtype(let v): "\(v)"
        case .scalar(let v): "\(v)"
        case .absent: "none"
        }
    }
}

/// One op the Torch layer executed while a recorder was active.
public struct RecordedOp {
    /// `"\(name)"` prints the op's string name ("layer_norm").
    public let name: OpName
    public let inputs: [Tensor]
    public let outputs: [Tensor]
    public let attributes: [String: OpAttribute]
}

/// Records every op the Torch layer executes on this thread inside `record {}`: op name,
/// inputs and outputs by identity, attributes. The export layer lowers the record to ONNX,
/// so the exported graph is exactly the computation that ran.
///
/// The recorder keeps every tensor it saw alive, so object identity stays unique while it
/// exists. When no recorder is active, an op pays one relaxed atomic load.
public final class OpRecorder {
    public private(set) var ops: [RecordedOp] = []
    private var ids: [ObjectIdentifier: Int] = [:]
    private var seen: [Tensor] = []

    public init() {}

    static let activeCount = Atomic<Int>(0)

    @inline(__always)
    static var isAnyActive: Bool { activeCount.load(ordering: .relaxed) != 0 }

    /// Runs `body` with this recorder active on the current thread. Nested recorders: the
    /// innermost one records.
    public func record<R>(_ body: () throws -> R) rethrows -> R {
        let state = ThreadState.current
        let previous = state.recorder
        state.recorder = self
        Self.activeCount.add(1, ordering: .relaxed)
        defer {
            Self.activeCount.subtract(1, ordering: .relaxed)
            state.recorder = previous
        }
        return try body()
    }

    /// A stable number for a tensor seen by this recorder (in order of first appearance).
    public func id(of tensor: Tensor) -> Int? { ids[ObjectIdentifier(tensor)] }

    /// Tensors used as inputs but produced by no recorded op: parameters, constants, graph inputs.
    public var externalInputs: [Tensor] {
        var produced = Set<ObjectIdentifier>()
        var result: [Tensor] = []
        var listed = Set<ObjectIdentifier>()
        for op in ops {
            for t in op.inputs where !produced.contains(ObjectIdentifier(t)) && listed.insert(ObjectIdentifier(t)).inserted {
                result.append(t)
            }
            for t in op.outputs { produced.insert(ObjectIdentifier(t)) }
        }
        return result
    }

    private func register(_ t: Tensor) {
        let key = ObjectIdentifier(t)
        if ids[key] == nil {
            ids[key] = seen.count
            seen.append(t)
        }
    }

    func append(name: OpName, inputs: [Tensor], outputs: [Tensor], attributes: [String: OpAttribute]) {
        inputs.forEach(register)
        outputs.forEach(register)
        ops.append(RecordedOp(name: name, inputs: inputs, outputs: outputs, attributes: attributes))
    }

    /// One line per op: `%3 = linear(%0, %1, %2)`.
    public var summary: String {
        ops.map { op in
            let outs = op.outputs.map { "%\(id(of: $0)!)" }.joined(separator: ", ")
            let ins = op.inputs.map { "%\(id(of: $0)!)" }.joined(separator: ", ")
            let attrs = op.attributes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
            return "\(outs) = \(op.name)(\(ins))" + (attrs.isEmpty ? "" : " {\(attrs)}")
        }.joined(separator: "\n")
    }
}

/// Tells the active recorder of this thread, if any, about an executed op.
@inline(__always)
func recordIfActive(_ name: OpName, inputs: () -> [Tensor], outputs: () -> [Tensor],
                    attributes: () -> [String: OpAttribute]) {
    guard OpRecorder.isAnyActive, let recorder = ThreadState.current.recorder else { return }
    recorder.append(name: name, inputs: inputs(), outputs: outputs(), attributes: attributes())
}
