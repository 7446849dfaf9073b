import CTorch

// Gradients: requires-grad flags, backward, .grad, and the scopes that switch recording off
// (no-grad, inference mode) or change precision (autocast).
extension Tensor {
    /// Whether autograd tracks operations on this tensor.
    public var requiresGrad: Bool {
        get { query("requires_grad", nil, false) { ct_requires_grad(handle, $0) } }
        set { mutate(.requiresGradInPlace, nil, self, inputs: [self]) { ct_set_requires_grad(handle, newValue) } }
    }

    /// Sets `requiresGrad` and returns self, for chaining at creation.
    @discardableResult
    public func requiringGrad(_ flag: Bool = true, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        mutate(.requiresGradInPlace, CallSite(file: file, line: line), self, inputs: [self]) { ct_set_requires_grad(handle, flag) }
        return self
    }

    /// True for tensors created by the user rather than by a tracked op.
    public var isLeaf: Bool { query("is_leaf", nil, true) { ct_is_leaf(handle, $0) } }

    /// Keeps `.grad` of a non-leaf tensor after backward.
    public func retainGrad(file: StaticString = #fileID, line: UInt = #line) {
        mutate(.retainGrad, CallSite(file: file, line: line), self, inputs: [self]) { ct_retain_grad(handle) }
    }

    /// Accumulates d(self)/d(leaf) into every leaf's `.grad`. `gradient` is needed unless self is a scalar.
    public func backward(_ gradient: Tensor? = nil, retainGraph: Bool = false, createGraph: Bool = false,
                         file: StaticString = #fileID, line: UInt = #line) {
        let site = CallSite(file: file, line: line)
        if ct_backward(handle, gradient?.handle, retainGraph, createGraph) != 0 {
            reportFailure("backward", site) { [self] + (gradient.map { [$0] } ?? []) }
        }
    }

    /// The accumulated gradient, or nil before any backward pass (or after `grad = nil`).
    public var grad: Tensor? {
        get {
            var out: OpaquePointer?
            if ct_grad(handle, &out) != 0 {
                reportFailure("grad", nil) { [self] }
                return nil
            }
            return out.map(Tensor.init(owning:))
        }
        set {
            if ct_set_grad(handle, newValue?.handle) != 0 {
                reportFailure("set_grad", nil) { [self] }
            }
        }
    }
}

/// Autograd and precision scopes.
public enum Autograd {
    /// Whether ops on this thread are being recorded for backward.
    public static var isGradEnabled: Bool { query("grad_mode", nil, true) { ct_grad_mode_enabled($0) } }

    static func setGradEnabled(_ enabled: Bool) {
        if ct_set_grad_mode(enabled) != 0 { reportFailure("set_grad_mode", nil) { [] } }
    }
}

/// Runs `body` without recording ops for backward (evaluation, optimizer updates).
public func withNoGrad<R>(_ body: () throws -> R) rethrows -> R {
    let previous = Autograd.isGradEnabled
    Autograd.setGradEnabled(false)
    defer { Autograd.setGradEnabled(previous) }
    return try body()
}

/// Runs `body` with gradient recording forced on (inside a no-grad scope).
public func withGrad<R>(_ body: () throws -> R) rethrows -> R {
    let previous = Autograd.isGradEnabled
    Autograd.setGradEnabled(true)
    defer { Autograd.setGradEnabled(previous) }
    return try body()
}

/// Runs `body` in libtorch's inference mode: faster than no-grad, but tensors made inside can
/// never join an autograd graph later.
public func withInferenceMode<R>(_ body: () throws -> R) rethrows -> R {
    var guardHandle: OpaquePointer?
    if ct_inference_mode_enter(&guardHandle) != 0 { reportFailure("inference_mode", nil) { [] } }
    defer { if let guardHandle { ct_guard_free(guardHandle) } }
    return try body()
}

/// Whether autocast is on for `device`'s kind (CPU or CUDA), as inside `withAutocast`.
public func isAutocastEnabled(on device: Device) -> Bool {
    var enabled = false
    _ = ct_autocast_enabled(device == .cpu ? CT_CPU : CT_CUDA, &enabled)
    return enabled
}

/// Runs `body` under autocast: matmuls, linear layers and convolutions compute in `dtype`
/// (bf16 on CPU) and losses (cross-entropy, MSE, KL) in fp32. On CPU, libtorch's policy leaves
/// softmax and layer norm in the input's dtype: cast logits to fp32 where it matters.
public func withAutocast<R>(_ dtype: DType = .bfloat16, device: Device = .cpu, _ body: () throws -> R) rethrows -> R {
    let type: ct_device_type = device == .cpu ? CT_CPU : CT_CUDA
    var wasEnabled = false
    _ = ct_autocast_enabled(type, &wasEnabled)
    var depth: Int64 = 0
    if ct_set_autocast_dtype(type, dtype.rawValue) != 0 || ct_set_autocast_enabled(type, true) != 0
        || ct_autocast_increment_nesting(&depth) != 0 {
        reportFailure("autocast", nil) { [] }
    }
    defer {
        var remaining: Int64 = 0
        _ = ct_autocast_decrement_nesting(&remaining)
        // libtorch caches casted weights while nested; drop them when the outermost scope ends.
        if remaining == 0 { _ = ct_autocast_clear_cache() }
        _ = ct_set_autocast_enabled(type, wasEnabled)
    }
    return try body()
}
