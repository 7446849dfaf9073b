import Torch

/// Adam with decoupled weight decay (Loshchilov & Hutter), as `torch.optim.AdamW(fused=True)`:
/// one call of torch's fused kernel per parameter group, device and dtype, after adding 1 to
/// the step counts of the parameters that have a gradient (torch's order).
public final class AdamW: Optimizer {
    public var groups: [ParameterGroup]
    public var betas: (Double, Double)
    public var eps: Double

    /// `step` is a float32 0-dim tensor on the parameter's device, as torch's fused state (the
    /// kernel reads it there).
    private struct Slot { let expAvg: Tensor; let expAvgSq: Tensor; let step: Tensor }
    private var slots: [String: Slot] = [:]

    /// open_clip's defaults: betas (0.9, 0.98), eps 1e-6.
    public init(groups: [ParameterGroup], betas: (Double, Double) = (0.9, 0.98), eps: Double = 1e-6) {
        self.groups = groups
        self.betas = betas
        self.eps = eps
    }

    public func step() {
        withNoGrad {
            for group in groups {
                for bucket in steppingBuckets(group) {
                    let state = bucket.map { p in
                        slots[p.name] ?? Slot(expAvg: Tensor.zeros(p.target.shape, dtype: p.target.dtype, device: p.target.device),
                                              expAvgSq: Tensor.zeros(p.target.shape, dtype: p.target.dtype, device: p.target.device),
                                              step: Tensor.zeros([], dtype: .float32, device: p.target.device))
                    }
                    let steps = state.map(\.step)
                    Tensor.foreachAdd_(steps, 1)
                    // A failed call (inside withTorchErrors: gradients that do not fit) leaves
                    // the state as it was, so that a caller who catches it can go on.
                    guard Tensor.fusedAdamW_(params: bucket.map(\.target), grads: bucket.map(\.grad), expAvgs: state.map(\.expAvg),
                                             expAvgSqs: state.map(\.expAvgSq), stateSteps: steps, learningRate: group.learningRate,
                                             beta1: betas.0, beta2: betas.1, weightDecay: group.weightDecay, eps: eps,
                                             names: bucket.map(\.name)) else {
                        Tensor.foreachAdd_(steps, -1)
                        continue
                    }
                    for (p, slot) in zip(bucket, state) { slots[p.name] = slot }
                    bucket.finish()
                }
            }
        }
    }

    /// `step` is saved as a 1-element float32 CPU tensor, the format checkpoints have always had.
    public func stateDict() -> [String: Tensor] {
        var result: [String: Tensor] = [:]
        for (name, slot) in slots {
            result["\(name).exp_avg"] = slot.expAvg
            result["\(name).exp_avg_sq"] = slot.expAvgSq
            result["\(name).step"] = slot.step.to(.cpu).reshape([1]).clone()
        }
        return result
    }

    public func loadStateDict(_ state: [String: Tensor]) throws {
        var loaded: [String: Slot] = [:]
        for (name, param) in allParameters {
            let m = try stateTensor(state, name, "exp_avg", like: param)
            let v = try stateTensor(state, name, "exp_avg_sq", like: param)
            switch (m, v, state["\(name).step"]) {
            case (nil, nil, nil): continue   // never stepped
            case let (m?, v?, step?):
                guard step.count == 1 else { throw OptimizerStateError(key: "\(name).step", reason: "holds \(step.count) values, not one step count") }
                loaded[name] = Slot(expAvg: m, expAvgSq: v, step: step.to(.float32).reshape([]).to(param.device).clone())
            default:
                throw OptimizerStateError(key: name, reason: "needs exp_avg, exp_avg_sq and step together")
            }
        }
        let known = Set(allParameters.map(\.name))
        if let stray = state.keys.first(where: { key in !known.contains(where: { key.hasPrefix($0 + ".") }) }) {
            throw OptimizerStateError(key: stray, reason: "belongs to no parameter of this optimizer (a different model?)")
        }
        slots = loaded
    }
}
