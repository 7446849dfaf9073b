import CTorch
#if canImport(Glibc)
import Glibc
#endif

/// Where in Swift an op was called from, for error messages.
/// Built on every op, so it keeps the compiler's static strings and converts only on failure.
public struct CallSite: Sendable, CustomStringConvertible {
    private let staticFile: StaticString
    private let staticLine: UInt

    public init(file: StaticString, line: UInt) {
        staticFile = file
        staticLine = line
    }

    public var file: String { "\(staticFile)" }
    public var line: Int { Int(staticLine) }
    public var description: String { "\(file):\(line)" }
}

/// A libtorch operation that failed: libtorch's own message plus the op and the Swift call site.
public struct TorchError: Error, CustomStringConvertible, Sendable {
    public let operation: String
    /// libtorch's message, unchanged.
    public let message: String
    public let site: CallSite?
    /// Shapes of the op's tensor inputs, when known.
    public let inputShapes: [[Int]]
    public let kind: Kind

    /// What went wrong, as far as a caller can act on it.
    public enum Kind: Sendable, Equatable {
        /// Anything else: a shape mismatch, a bad argument, a missing backend.
        case other
        /// An allocation failed: CUDA's caching allocator (after freeing its cache) or the CPU
        /// allocator. A smaller batch or shorter sequences may fit.
        case outOfMemory
    }

    public var isOutOfMemory: Bool { kind == .outOfMemory }

    public init(operation: String, message: String, site: CallSite?, inputShapes: [[Int]], kind: Kind = .other) {
        self.operation = operation
        self.message = message
        self.site = site
        self.inputShapes = inputShapes
        self.kind = kind
    }

    public var description: String {
        let shapes = inputShapes.isEmpty ? "" : "(" + inputShapes.map { "\($0)" }.joined(separator: ", ") + ")"
        let at = site.map { " at \($0)" } ?? ""
        return "\(operation)\(shapes) failed\(at): \(message)"
    }
}

/// Per-thread state of the Torch layer: open error scopes and the active op recorder.
final class ThreadState {
    /// Innermost last. Each scope keeps the first failure that happened inside it.
    var errorScopes: [ErrorScope] = []
    var recorder: OpRecorder?

    final class ErrorScope { var firstError: TorchError? }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { raw in if let raw { Unmanaged<ThreadState>.fromOpaque(raw).release() } }
        return key
    }()

    static var current: ThreadState {
        if let raw = pthread_getspecific(key) { return Unmanaged<ThreadState>.fromOpaque(raw).takeUnretainedValue() }
        let state = ThreadState()
        pthread_setspecific(key, Unmanaged.passRetained(state).toOpaque())
        return state
    }
}

/// Runs `body`, turning any libtorch failure inside it into a thrown `TorchError`.
///
/// Outside such a scope a failed op stops the program with libtorch's message and the call
/// site (a programming error). Inside it, the first failure is kept, later ops see an
/// undefined tensor and fail quietly, and the error is thrown when `body` returns. Use it
/// wherever user input reaches tensors (loading files, user-given shapes).
public func withTorchErrors<R>(_ body: () throws -> R) throws -> R {
    let state = ThreadState.current
    let scope = ThreadState.ErrorScope()
    state.errorScopes.append(scope)
    defer { state.errorScopes.removeLast() }
    let result = try body()
    if let error = scope.firstError { throw error }
    return result
}

/// Handles a failed bridge call: throws into the innermost `withTorchErrors` scope or traps.
@usableFromInline
func reportFailure(_ op: StaticString, _ site: CallSite?, inputs: () -> [Tensor]) {
    reportFailure("\(op)", site, message: String(cString: ct_last_error()), kind: lastErrorKind(), inputs: inputs)
}

/// Same, for a recorded op.
func reportFailure(_ op: OpName, _ site: CallSite?, inputs: () -> [Tensor]) {
    reportFailure(op.rawValue, site, message: String(cString: ct_last_error()), kind: lastErrorKind(), inputs: inputs)
}

/// The kind of the bridge's last failure on this thread.
func lastErrorKind() -> TorchError.Kind {
    ct_last_error_kind() == Int32(CT_ERROR_OUT_OF_MEMORY.rawValue) ? .outOfMemory : .other
}

/// Same, for a failure detected in Swift before calling the bridge.
func reportFailure(_ op: String, _ site: CallSite?, message: String, kind: TorchError.Kind = .other,
                   inputs: () -> [Tensor]) {
    let state = ThreadState.current
    guard let scope = state.errorScopes.last else {
        let shapes = inputs().map { $0.shapeIfDefined ?? [] }
        fatalError("\(TorchError(operation: op, message: message, site: site, inputShapes: shapes, kind: kind))")
    }
    if scope.firstError == nil {
        let shapes = inputs().map { $0.shapeIfDefined ?? [] }
        scope.firstError = TorchError(operation: op, message: message, site: site, inputShapes: shapes, kind: kind)
    }
}
