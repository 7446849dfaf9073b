import NN
import Torch

/// Parameters that share a learning rate and weight decay.
public struct ParameterGroup {
    public var name: String
    public var parameters: [(name: String, tensor: Tensor)]
    /// The group's learning rate before any schedule; `learningRate` is what the next step uses.
    public var baseLearningRate: Double
    public var learningRate: Double
    public var weightDecay: Double

    public init(name: String, parameters: [(name: String, tensor: Tensor)], learningRate: Double, weightDecay: Double) {
        self.name = name
        self.parameters = parameters
        self.baseLearningRate = learningRate
        self.learningRate = learningRate
        self.weightDecay = weightDecay
    }

    /// open_clip's rule: no weight decay for 1-D parameters (biases, norm gains), scalars such
    /// as `logit_scale`, and — when `embeddings` is true — embedding tables.
    public static func excludedFromWeightDecay(_ name: String, _ tensor: Tensor, embeddings: Bool = false) -> Bool {
        tensor.rank < 2 || name.hasSuffix("bias") || name.contains("logit_scale")
            || (embeddings && (name.contains("embedding") || name.contains("embeddings")))
    }

    /// The usual two groups over the trainable parameters of `module`: "decay" and "no_decay".
    public static func standard(_ module: Module, learningRate: Double, weightDecay: Double,
                                noDecayForEmbeddings: Bool = false) -> [ParameterGroup] {
        let trainable = module.trainableParameters()
        let noDecay = trainable.filter { excludedFromWeightDecay($0.name, $0.tensor, embeddings: noDecayForEmbeddings) }
        let noDecayNames = Set(noDecay.map(\.name))
        let decay = trainable.filter { !noDecayNames.contains($0.name) }
        return [
            ParameterGroup(name: "decay", parameters: decay, learningRate: learningRate, weightDecay: weightDecay),
            ParameterGroup(name: "no_decay", parameters: noDecay, learningRate: learningRate, weightDecay: 0),
        ].filter { !$0.parameters.isEmpty }
    }
}

/// A state tensor that does not fit the optimizer it is loaded into.
public struct OptimizerStateError: Error, CustomStringConvertible {
    public let key: String
    public let reason: String
    public var description: String { "optimizer state '\(key)': \(reason)" }
}

/// Updates parameters from their gradients. State is keyed by parameter name, so it can be
/// saved next to the model and restored into a fresh optimizer over the same model.
public protocol Optimizer: AnyObject {
    var groups: [ParameterGroup] { get set }
    /// Applies one update to every parameter that has a gradient.
    func step()
    /// Per-parameter state as `"<parameter>.<slot>"` → tensor (e.g. `fc1.weight.exp_avg`).
    func stateDict() -> [String: Tensor]
    func loadStateDict(_ state: [String: Tensor]) throws
}

extension Optimizer {
    /// Drops every gradient (set to none, as torch's default).
    public func zeroGrad() {
        for group in groups { for (_, p) in group.parameters { p.grad = nil } }
    }

    /// Sets each group's learning rate from its base rate.
    public func setLearningRates(_ rate: (Double) -> Double) {
        for i in groups.indices { groups[i].learningRate = rate(groups[i].baseLearningRate) }
    }

    var allParameters: [(name: String, tensor: Tensor)] { groups.flatMap(\.parameters) }

    /// Looks up `name.slot` in `state` and checks it against the parameter's shape.
    func stateTensor(_ state: [String: Tensor], _ name: String, _ slot: String, like parameter: Tensor) throws -> Tensor? {
        guard let t = state["\(name).\(slot)"] else { return nil }
        guard t.shape == parameter.shape else {
            throw OptimizerStateError(key: "\(name).\(slot)", reason: "shape \(t.shape) does not match the parameter's \(parameter.shape)")
        }
        return t.to(parameter.dtype).to(parameter.device).contiguous().clone()
    }
}

/// Scales all gradients so that their joint L2 norm is at most `maxNorm`, as
/// torch.nn.utils.clip_grad_norm_ (foreach path): `_foreach_norm` per device and dtype, the
/// norm of those norms, one `_foreach_mul_` per device and dtype by min(1, maxNorm / (norm +
/// 1e-6)). Returns the norm before clipping (nil when no gradients).
@discardableResult
public func clipGradientNorm(_ parameters: [Tensor], maxNorm: Double) -> Double? {
    withNoGrad {
        let grads = parameters.compactMap(\.grad)
        guard let first = grads.first?.device else { return nil }
        let buckets = groupedByDeviceAndDType(grads) { $0 }
        let total = Tensor.stack(buckets.flatMap { Tensor.foreachNorm($0) }.map { $0.to(first) }).norm()
        let coefficient = (maxNorm / (total + 1e-6)).clamp(max: 1.0)
        for bucket in buckets { Tensor.foreachMul_(bucket, coefficient.to(bucket[0].device)) }
        return total.item(Double.self)
    }
}
