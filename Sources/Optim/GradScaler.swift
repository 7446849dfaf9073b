import Torch

/// Dynamic loss scaling for float16 training, as torch.amp.GradScaler: the loss is multiplied
/// by the scale before backward so that small float16 gradients do not flush to zero; the
/// gradients are divided by it again before clipping and the optimizer step. A step whose
/// gradients hold inf or NaN (the scale was too large) is skipped and the scale backs off;
/// after `growthInterval` good steps in a row it grows.
///
/// The scale and the growth tracker are libtorch tensors updated by torch's own kernels
/// (`_amp_foreach_non_finite_check_and_unscale_`, `_amp_update_scale_`), so the arithmetic is
/// torch's bit for bit. Per step:
///
/// ```
/// scaler.scale(loss).backward()
/// scaler.unscale(optimizer)          // optional: only to see true gradients (clipping)
/// clipGradientNorm(...)
/// scaler.step(optimizer)             // skips optimizer.step() on inf/NaN gradients
/// scaler.update()
/// ```
public final class GradScaler {
    /// What a checkpoint keeps to continue exactly (torch's state_dict keeps the same two
    /// numbers as "scale" and "_growth_tracker"; the factors come from the configuration).
    public struct State: Codable, Sendable, Equatable {
        /// A float32 value, held exactly.
        public var scale: Double
        /// Good steps in a row since the last growth or backoff.
        public var growthTracker: Int

        public init(scale: Double, growthTracker: Int) {
            self.scale = scale
            self.growthTracker = growthTracker
        }
    }

    public let growthFactor: Double
    public let backoffFactor: Double
    public let growthInterval: Int
    /// Disabled: `scale` returns the loss, `step` always steps, the rest does nothing.
    public let enabled: Bool

    /// Made on the loss's device by the first `scale` (torch's lazy init); until then `state`
    /// reports these.
    private var scaleTensor: Tensor?
    private var growthTracker: Tensor?
    private var initScale: Double
    private var initGrowthTracker = 0

    private enum Stage { case ready, unscaled, stepped }
    /// torch's per-optimizer state: where the step is, and the found-inf flag of each device.
    private var optimizers: [ObjectIdentifier: (stage: Stage, foundInf: [Device: Tensor])] = [:]

    public init(initScale: Double = 65536, growthFactor: Double = 2, backoffFactor: Double = 0.5, growthInterval: Int = 2000,
                enabled: Bool = true) {
        precondition(!enabled || growthFactor > 1, "The growth factor must be > 1.0.")
        precondition(!enabled || backoffFactor < 1, "The backoff factor must be < 1.0.")
        self.initScale = initScale
        self.growthFactor = growthFactor
        self.backoffFactor = backoffFactor
        self.growthInterval = growthInterval
        self.enabled = enabled
    }

    /// `loss × scale` (the scale is a float32 tensor, as torch's).
    public func scale(_ loss: Tensor) -> Tensor {
        guard enabled else { return loss }
        if scaleTensor == nil {
            scaleTensor = Tensor.full([], initScale, dtype: .float32, device: loss.device)
            growthTracker = Tensor.full([], initGrowthTracker, dtype: .int32, device: loss.device)
        }
        return loss * scaleTensor!.to(loss.device)
    }

    /// Divides the gradients of `optimizer`'s parameters by the scale, in place, and records
    /// whether any is inf or NaN. At most once per step, before `step` (which otherwise does it).
    public func unscale(_ optimizer: Optimizer) {
        guard enabled else { return }
        guard let scaleTensor else { preconditionFailure("Attempted unscale but the scale is not set: call scale(loss) first in the step") }
        let id = ObjectIdentifier(optimizer)
        switch optimizers[id]?.stage ?? .ready {
        case .unscaled: preconditionFailure("unscale() has already been called on this optimizer since the last update().")
        case .stepped: preconditionFailure("unscale() is being called after step().")
        case .ready: break
        }
        // Computed in double then rounded to float, as torch (1/scale is exact for powers of two).
        let invScale = scaleTensor.to(.float64).reciprocal().to(.float32)
        // Grouped by device and dtype, as torch's foreach kernel requires.
        var groups: [Device: [DType: [Tensor]]] = [:]
        for group in optimizer.groups {
            for (_, parameter) in group.parameters {
                guard let grad = parameter.grad else { continue }
                precondition(grad.dtype != .float16, "Attempting to unscale FP16 gradients.")
                groups[grad.device, default: [:]][grad.dtype, default: []].append(grad)
            }
        }
        var foundInf: [Device: Tensor] = [:]
        withNoGrad {
            for (device, byType) in groups {
                let flag = Tensor.zeros([], dtype: .float32, device: device)
                let inverse = invScale.to(device)
                for grads in byType.values { Tensor.ampNonFiniteCheckAndUnscale_(grads, foundInf: flag, invScale: inverse) }
                foundInf[device] = flag
            }
        }
        optimizers[id] = (.unscaled, foundInf)
    }

    /// Unscales (unless `unscale` already did) and runs `optimizer.step()` when every gradient
    /// is finite. Returns whether it stepped.
    @discardableResult
    public func step(_ optimizer: Optimizer) -> Bool {
        guard enabled else {
            optimizer.step()
            return true
        }
        let id = ObjectIdentifier(optimizer)
        if optimizers[id]?.stage == .stepped { preconditionFailure("step() has already been called since the last update().") }
        if optimizers[id]?.stage != .unscaled { unscale(optimizer) }
        let flags = optimizers[id]!.foundInf
        precondition(!flags.isEmpty, "No inf checks were recorded for this optimizer (no parameter has a gradient).")
        let finite = flags.values.reduce(0.0) { $0 + $1.item(Double.self) } == 0
        if finite { optimizer.step() }
        optimizers[id]!.stage = .stepped
        return finite
    }

    /// Whether the last unscale found inf or NaN gradients (nil before any in this step).
    public var foundNonFinite: Bool? {
        let flags = optimizers.values.flatMap { $0.foundInf.values }
        return flags.isEmpty ? nil : flags.contains { $0.item(Double.self) != 0 }
    }

    /// Ends the step: backs the scale off when any optimizer's gradients overflowed, grows it
    /// after `growthInterval` good steps in a row.
    public func update() {
        guard enabled else { return }
        guard let scaleTensor, let growthTracker else { preconditionFailure("Attempted update but the scale is not set: call scale(loss) first in the step") }
        let flags = optimizers.values.flatMap { $0.foundInf.values }.map { $0.to(scaleTensor.device) }
        precondition(!flags.isEmpty, "No inf checks were recorded prior to update.")
        withNoGrad {
            let combined = flags.dropFirst().reduce(flags[0]) { $0 + $1 }
            scaleTensor.ampUpdateScale_(growthTracker: growthTracker, foundInf: combined, growthFactor: growthFactor,
                                        backoffFactor: backoffFactor, growthInterval: growthInterval)
        }
        optimizers = [:]
    }

    /// The scale the next step multiplies the loss by (1 when disabled).
    public var currentScale: Double { enabled ? state.scale : 1 }

    /// For a checkpoint: take it after `update` (as torch's state_dict).
    public var state: State {
        get {
            State(scale: scaleTensor.map { Double($0.item(Float.self)) } ?? initScale,
                  growthTracker: growthTracker.map { Int($0.item(Int32.self)) } ?? initGrowthTracker)
        }
        set {
            initScale = newValue.scale
            initGrowthTracker = newValue.growthTracker
            withNoGrad {
                scaleTensor?.fill_(newValue.scale)
                growthTracker?.fill_(newValue.growthTracker)
            }
        }
    }
}
