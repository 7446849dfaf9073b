import CTorch

// MARK: - Optimizer kernels: torch's fused AdamW / SGD steps and the foreach ops around them

/// The fused steps take one list per role (parameters, gradients, state), one tensor per
/// parameter in the same order. Their CPU kernels walk each tensor's memory as a flat array of
/// the parameter's size and check neither shapes nor strides (a mismatch reads or writes past
/// the end), so the wrappers below check every tensor against its parameter first: same
/// shape, dtype and device, contiguous. `names` (the parameters' names) make the messages
/// point at the culprit.
extension Tensor {
    /// `torch._foreach_add_(tensors, value)`: adds `value` to each tensor in place.
    public static func foreachAdd_(_ tensors: [Tensor], _ value: some ScalarConvertible,
                                   file: StaticString = #fileID, line: UInt = #line) {
        let s = value.scalar
        guard !tensors.isEmpty else { return }   // libtorch has no kernel for an empty list
        mutateAll(.foreachAddInPlace, CallSite(file: file, line: line), tensors, inputs: tensors, attributes: ["other": .scalar(s)]) {
            withHandles(tensors) { ct_foreach_add_scalar_($0, $1, s.bridged) }
        }
    }

    /// `torch._foreach_mul_(tensors, factor)`: multiplies each tensor by `factor` (0-dim) in place.
    public static func foreachMul_(_ tensors: [Tensor], _ factor: Tensor, file: StaticString = #fileID, line: UInt = #line) {
        guard !tensors.isEmpty else { return }
        mutateAll(.foreachMulInPlace, CallSite(file: file, line: line), tensors, inputs: tensors + [factor]) {
            withExtendedLifetime(factor) { withHandles(tensors) { ct_foreach_mul_tensor_($0, $1, factor.handle) } }
        }
    }

    /// `torch._foreach_norm(tensors, p)`: each tensor's p-norm (0-dim, in its dtype).
    public static func foreachNorm(_ tensors: [Tensor], p: Double = 2, file: StaticString = #fileID, line: UInt = #line) -> [Tensor] {
        guard !tensors.isEmpty else { return [] }
        return makeTensorList(.foreachNorm, CallSite(file: file, line: line), inputs: tensors, attributes: ["p": .double(p)]) { out in
            withHandles(tensors) { ct_foreach_norm($0, $1, p, out) }
        }
    }

    /// `torch._fused_adamw_`: one AdamW step of every parameter in `params`, torch's fused
    /// kernel (what `torch.optim.AdamW(fused=True)` runs). `stateSteps` (float32, 0-dim) are
    /// read as the step number, not incremented: add 1 first, as torch does. `maxExpAvgSqs`:
    /// one per parameter with `amsgrad`, else empty. `gradScale` / `foundInf` (float32, 0-dim):
    /// gradients divided by the scale; nothing changes when `foundInf` is 1. Returns whether it
    /// ran: false after a failure inside `withTorchErrors` (the tensors are then unchanged when
    /// the checks below failed).
    @discardableResult
    public static func fusedAdamW_(params: [Tensor], grads: [Tensor], expAvgs: [Tensor], expAvgSqs: [Tensor],
                                   maxExpAvgSqs: [Tensor] = [], stateSteps: [Tensor], learningRate: Double, beta1: Double,
                                   beta2: Double, weightDecay: Double, eps: Double, amsgrad: Bool = false, maximize: Bool = false,
                                   gradScale: Tensor? = nil, foundInf: Tensor? = nil, names: [String]? = nil,
                                   file: StaticString = #fileID, line: UInt = #line) -> Bool {
        let site = CallSite(file: file, line: line)
        let lists = [("grad", grads), ("exp_avg", expAvgs), ("exp_avg_sq", expAvgSqs)] + (amsgrad ? [("max_exp_avg_sq", maxExpAvgSqs)] : [])
        let extras = [gradScale, foundInf].compactMap { $0 }
        let all = params + grads + expAvgs + expAvgSqs + maxExpAvgSqs + stateSteps + extras
        if let problem = flatLayoutProblem(params, lists, names: names)
            ?? countProblem("state_step", stateSteps, params.count)
            ?? (amsgrad ? nil : countProblem("max_exp_avg_sq (without amsgrad)", maxExpAvgSqs, 0)) {
            reportFailure(OpName.fusedAdamwInPlace.rawValue, site, message: problem) { all }
            return false
        }
        guard !params.isEmpty else { return true }
        let attributes: [String: OpAttribute] = ["lr": .double(learningRate), "beta1": .double(beta1), "beta2": .double(beta2),
                                                 "weight_decay": .double(weightDecay), "eps": .double(eps)]
        return mutateAll(.fusedAdamwInPlace, site, params + expAvgs + expAvgSqs + maxExpAvgSqs, inputs: all, attributes: attributes) {
            withExtendedLifetime(extras) {
                withHandleLists([params, grads, expAvgs, expAvgSqs, maxExpAvgSqs, stateSteps]) { h in
                    ct_fused_adamw_(h[0], h[1], h[2], h[3], h[4], Int64(maxExpAvgSqs.count), h[5], Int64(params.count), learningRate,
                                    beta1, beta2, weightDecay, eps, amsgrad, maximize, gradScale?.handle, foundInf?.handle)
                }
            }
        }
    }

    /// `torch._fused_sgd_`: one SGD step of every parameter in `params`, torch's fused kernel
    /// (what `torch.optim.SGD(fused=True)` runs). `momentumBuffers`: one per parameter with
    /// momentum, else empty; with `isFirstStep` they are set to the gradient (after weight
    /// decay) rather than updated, as torch's first step with momentum. Returns whether it ran.
    @discardableResult
    public static func fusedSGD_(params: [Tensor], grads: [Tensor], momentumBuffers: [Tensor], learningRate: Double, weightDecay: Double,
                                 momentum: Double, dampening: Double, nesterov: Bool, maximize: Bool = false, isFirstStep: Bool,
                                 gradScale: Tensor? = nil, foundInf: Tensor? = nil, names: [String]? = nil,
                                 file: StaticString = #fileID, line: UInt = #line) -> Bool {
        let site = CallSite(file: file, line: line)
        let extras = [gradScale, foundInf].compactMap { $0 }
        let all = params + grads + momentumBuffers + extras
        if let problem = flatLayoutProblem(params, [("grad", grads)] + (momentum == 0 ? [] : [("momentum_buffer", momentumBuffers)]),
                                           names: names)
            ?? (momentum == 0 ? countProblem("momentum_buffer (without momentum)", momentumBuffers, 0) : nil) {
            reportFailure(OpName.fusedSgdInPlace.rawValue, site, message: problem) { all }
            return false
        }
        guard !params.isEmpty else { return true }
        let attributes: [String: OpAttribute] = ["lr": .double(learningRate), "weight_decay": .double(weightDecay), "momentum": .double(momentum),
                                                 "dampening": .double(dampening), "nesterov": .bool(nesterov), "is_first_step": .bool(isFirstStep)]
        return mutateAll(.fusedSgdInPlace, site, params + momentumBuffers, inputs: all, attributes: attributes) {
            withExtendedLifetime(extras) {
                withHandleLists([params, grads, momentumBuffers]) { h in
                    ct_fused_sgd_(h[0], h[1], h[2], Int64(momentumBuffers.count), Int64(params.count), weightDecay, momentum, learningRate,
                                  dampening, nesterov, maximize, isFirstStep, gradScale?.handle, foundInf?.handle)
                }
            }
        }
    }

    /// Why `lists` cannot go to a fused kernel with `params`, or nil: each list one tensor per
    /// parameter, of its shape, dtype and device, every tensor contiguous.
    private static func flatLayoutProblem(_ params: [Tensor], _ lists: [(String, [Tensor])], names: [String]?) -> String? {
        if let names, names.count != params.count { return "\(names.count) names for \(params.count) parameters" }
        for (role, list) in lists { if let problem = countProblem(role, list, params.count) { return problem } }
        let first = params.first?.device
        for (i, param) in params.enumerated() {
            let label = names.map { "'\($0[i])'" } ?? "\(i)"
            let shape = param.shape, dtype = param.dtype, device = param.device
            guard device == first else { return "parameter \(label) is on \(device), the first on \(first!): one call takes one device" }
            guard param.isContiguous else { return "parameter \(label) is not contiguous" }
            for (role, list) in lists {
                let t = list[i]
                let what = "the \(role) of parameter \(label)"
                if t.dtype != dtype { return "\(what) is \(t.dtype), the parameter \(dtype)" }
                if t.device != device { return "\(what) is on \(t.device), the parameter on \(device)" }
                if t.shape != shape { return "\(what) has shape \(t.shape), the parameter \(shape)" }
                if !t.isContiguous { return "\(what) is not contiguous" }
            }
        }
        return nil
    }

    private static func countProblem(_ role: String, _ list: [Tensor], _ expected: Int) -> String? {
        list.count == expected ? nil : "\(list.count) \(role) tensors, expected \(expected)"
    }
}

/// `mutate` for ops that change several tensors in place; returns whether the call succeeded.
@discardableResult
private func mutateAll(_ op: OpName, _ site: CallSite, _ targets: @autoclosure () -> [Tensor], inputs: @autoclosure () -> [Tensor],
                       attributes: @autoclosure () -> [String: OpAttribute] = [:], _ call: () -> ct_status) -> Bool {
    if call() != 0 {
        reportFailure(op, site, inputs: inputs)
        return false
    }
    recordIfActive(op, inputs: inputs, outputs: targets, attributes: attributes)
    return true
}

/// `withHandles` for several lists at once: one pointer per list into one buffer of handles
/// (never null, also for an empty list).
private func withHandleLists<R>(_ lists: [[Tensor]], _ body: ([UnsafePointer<OpaquePointer?>]) -> R) -> R {
    let flat: [OpaquePointer?] = lists.flatMap { $0.map(\.handle) } + [nil]
    return withExtendedLifetime(lists) {
        flat.withUnsafeBufferPointer { buffer in
            var offset = 0
            let starts = lists.map { list in
                defer { offset += list.count }
                return buffer.baseAddress! + offset
            }
            return body(starts)
        }
    }
}
