import Foundation
import Torch

/// Adam with decoupled weight decay (Loshchilov & Hutter), numerically as torch.optim.AdamW
/// (single-tensor path): the same ops in the same order.
public final class AdamW: Optimizer {
    public var groups: [ParameterGroup]
    public var betas: (Double, Double)
    public var eps: Double

    private struct Slot { var expAvg: Tensor; var expAvgSq: Tensor; var step: Int }
    private var slots: [String: Slot] = [:]

    /// open_clip's defaults: betas (0.9, 0.98), eps 1e-6.
    public init(groups: [ParameterGroup], betas: (Double, Double) = (0.9, 0.98), eps: Double = 1e-6) {
        self.groups = groups
        self.betas = betas
        self.eps = eps
    }

    public func step() {
        let (beta1, beta2) = betas
        withNoGrad {
            for group in groups {
                let lr = group.learningRate
                for (name, param) in group.parameters {
                    guard let grad = param.grad else { continue }
                    var slot = slots[name] ?? Slot(expAvg: Tensor.zeros(param.shape, dtype: param.dtype, device: param.device),
                                                   expAvgSq: Tensor.zeros(param.shape, dtype: param.dtype, device: param.device), step: 0)
                    slot.step += 1
                    if group.weightDecay != 0 { param.mul_(1 - lr * group.weightDecay) }
                    slot.expAvg.lerp_(grad, weight: 1 - beta1)
                    slot.expAvgSq.mul_(beta2)
                    slot.expAvgSq.addcmul_(grad, grad, value: 1 - beta2)
                    let biasCorrection1 = 1 - Foundation.pow(beta1, Double(slot.step))
                    let biasCorrection2 = 1 - Foundation.pow(beta2, Double(slot.step))
                    let stepSize = lr / biasCorrection1
                    let denominator = slot.expAvgSq.sqrt() / biasCorrection2.squareRoot()
                    denominator.add_(eps)
                    param.addcdiv_(slot.expAvg, denominator, value: -stepSize)
                    slots[name] = slot
                }
            }
        }
    }

    public func stateDict() -> [String: Tensor] {
        var result: [String: Tensor] = [:]
        for (name, slot) in slots {
            result["\(name).exp_avg"] = slot.expAvg
            result["\(name).exp_avg_sq"] = slot.expAvgSq
            result["\(name).step"] = Tensor([Float(slot.step)])
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
                loaded[name] = Slot(expAvg: m, expAvgSq: v, step: Int(step.item(Float.self)))
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
