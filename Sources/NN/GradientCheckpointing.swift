import Torch

/// A stack of transformer layers that can run each layer checkpointed: its activations are
/// recomputed in backward instead of kept (CLIP's encoder, BERT's).
public protocol CheckpointableLayers: Module {
    /// Checkpoint each layer while training (`model.gradient_checkpointing`).
    var gradientCheckpointing: Bool { get set }
}

extension Module {
    /// `body(x)`, one pass through this layer, checkpointed when `enabled` and there is something
    /// to recompute for: grad on, and `x` or one of this layer's parameters needing a gradient.
    /// A layer of a locked (LiT) prefix runs as is: with nothing to differentiate it keeps no
    /// activations anyway.
    /// Tensors `body` captures (masks) must be constants.
    public func checkpointed(_ x: Tensor, if enabled: Bool, _ body: @escaping (Tensor) -> Tensor) -> Tensor {
        guard enabled, Autograd.isGradEnabled else { return body(x) }
        let trainable = parameters().filter(\.requiresGrad)
        guard x.requiresGrad || !trainable.isEmpty else { return body(x) }
        return Autograd.checkpoint([x], parameters: trainable) { body($0[0]) }
    }

    /// Turns per-layer checkpointing on or off in every layer stack under this module; returns
    /// how many stacks there are.
    @discardableResult
    public func setGradientCheckpointing(_ on: Bool) -> Int {
        let stacks = namedModules().compactMap { $0.module as? any CheckpointableLayers }
        for stack in stacks { stack.gradientCheckpointing = on }
        return stacks.count
    }

    /// Whether a layer stack under this module checkpoints its layers.
    public var checkpointsLayers: Bool {
        namedModules().contains { ($0.module as? any CheckpointableLayers)?.gradientCheckpointing == true }
    }
}
