import Torch

/// Stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay, as
/// `torch.optim.SGD(fused=True)`: torch's fused kernel, one call per parameter group, device
/// and dtype (and, with momentum, per buffers that exist / start this step).
public final class SGD: Optimizer {
    public var groups: [ParameterGroup]
    public var momentum: Double
    public var dampening: Double
    public var nesterov: Bool
    private var buffers: [String: Tensor] = [:]

    public init(groups: [ParameterGroup], momentum: Double = 0, dampening: Double = 0, nesterov: Bool = false) {
        precondition(!nesterov || (momentum > 0 && dampening == 0), "Nesterov momentum needs momentum > 0 and zero dampening")
        self.groups = groups
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov
    }

    public func step() {
        withNoGrad {
            for group in groups {
                for bucket in steppingBuckets(group) {
                    guard momentum != 0 else {
                        run(bucket, buffers: [], group: group, isFirstStep: false)
                        continue
                    }
                    // A buffer starts as the gradient (torch's first step with momentum). torch's
                    // fused path decides that per group and fails on a parameter whose first
                    // gradient comes later; its foreach path (and this) starts each buffer alone.
                    let continuing = bucket.filter { buffers[$0.name] != nil }
                    let starting = bucket.filter { buffers[$0.name] == nil }
                    run(continuing, buffers: continuing.map { buffers[$0.name]! }, group: group, isFirstStep: false)
                    let fresh = starting.map { Tensor.empty($0.target.shape, dtype: $0.target.dtype, device: $0.target.device) }
                    if run(starting, buffers: fresh, group: group, isFirstStep: true) {
                        for (p, buffer) in zip(starting, fresh) { buffers[p.name] = buffer }
                    }
                }
            }
        }
    }

    /// Whether the kernel ran (false after a failure inside withTorchErrors: nothing changed).
    @discardableResult
    private func run(_ bucket: [SteppingParameter], buffers: [Tensor], group: ParameterGroup, isFirstStep: Bool) -> Bool {
        guard !bucket.isEmpty else { return true }
        guard Tensor.fusedSGD_(params: bucket.map(\.target), grads: bucket.map(\.grad), momentumBuffers: buffers,
                               learningRate: group.learningRate, weightDecay: group.weightDecay, momentum: momentum,
                               dampening: dampening, nesterov: nesterov, isFirstStep: isFirstStep, names: bucket.map(\.name))
        else { return false }
        bucket.finish()
        return true
    }

    public func stateDict() -> [String: Tensor] {
        Dictionary(uniqueKeysWithValues: buffers.map { ("\($0.key).momentum_buffer", $0.value) })
    }

    public func loadStateDict(_ state: [String: Tensor]) throws {
        var loaded: [String: Tensor] = [:]
        for (name, param) in allParameters {
            if let b = try stateTensor(state, name, "momentum_buffer", like: param) { loaded[name] = b }
        }
        if let stray = state.keys.first(where: { !$0.hasSuffix(".momentum_buffer") || loaded[String($0.dropLast(".momentum_buffer".count))] == nil }) {
            throw OptimizerStateError(key: stray, reason: "belongs to no parameter of this optimizer (a different model?)")
        }
        buffers = loaded
    }
}
