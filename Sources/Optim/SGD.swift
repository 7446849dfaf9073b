import Torch

/// Stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay,
/// numerically as torch.optim.SGD (single-tensor path).
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
                for (name, param) in group.parameters {
                    guard var grad = param.grad else { continue }
                    if group.weightDecay != 0 { grad = grad.add(param, alpha: group.weightDecay) }
                    if momentum != 0 {
                        let buffer: Tensor
                        if let existing = buffers[name] {
                            existing.mul_(momentum)
                            existing.add_(grad, alpha: 1 - dampening)
                            buffer = existing
                        } else {
                            buffer = grad.clone().detach()
                            buffers[name] = buffer
                        }
                        grad = nesterov ? grad.add(buffer, alpha: momentum) : buffer
                    }
                    param.add_(grad, alpha: -group.learningRate)
                }
            }
        }
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
