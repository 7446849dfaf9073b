import Foundation

/// Whether a smaller or a larger value of a metric is better.
public enum MetricMode: String, Codable, Sendable, CaseIterable {
    case max, min
}

/// Learning rate as a pure function of the global step, so resuming needs no scheduler state.
/// Formulas follow open_clip's `scheduler.py` (warmup `base · (step + 1) / warmup`).
public struct LRSchedule: Codable, Sendable, Equatable {
    public enum Kind: Codable, Sendable, Equatable {
        /// Warmup, then the base rate.
        case constant
        /// Warmup, then half a cosine from the base rate to 0 at `totalSteps`.
        case cosine
        /// Warmup, base rate, then over the last `cooldownSteps` a decay
        /// `(1 - e/es)^power · (base - endLR) + endLR` (open_clip's const-cooldown).
        case constantCooldown(cooldownSteps: Int, power: Double, endLR: Double)
        /// Warmup, then multiply by `gamma` every `every` steps.
        case step(every: Int, gamma: Double)
        /// Warmup, then a straight line from the base rate to `endLR` at `totalSteps`.
        case linear(endLR: Double)
        /// Warmup, then the base rate, which the trainer multiplies by the scale of a
        /// `ReduceOnPlateau` fed with evaluations (torch's ReduceLROnPlateau).
        case plateau

        /// The names recipes give the kinds (open_clip's `--lr-scheduler` names where it has them).
        public enum Name: String, CaseIterable, Sendable {
            case cosine, constant, constCooldown = "const_cooldown", step, linear, plateau
        }

        public var name: Name {
            switch self {
            case .constant: .constant
            case .cosine: .cosine
            case .constantCooldown: .constCooldown
            case .step: .step
            case .linear: .linear
            case .plateau: .plateau
            }
        }
    }

    public var kind: Kind
    public var warmupSteps: Int
    public var totalSteps: Int

    public init(_ kind: Kind, warmupSteps: Int = 0, totalSteps: Int) {
        self.kind = kind
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
    }

    /// Problems with the parameters, as messages (empty when valid).
    public var problems: [String] {
        var result: [String] = []
        if warmupSteps < 0 { result.append("warmup steps must be ≥ 0, got \(warmupSteps)") }
        if totalSteps <= 0 { result.append("total steps must be > 0, got \(totalSteps)") }
        switch kind {
        case .constantCooldown(let cooldown, let power, _):
            if cooldown <= 0 || cooldown > totalSteps { result.append("cooldown steps must be in 1...\(totalSteps), got \(cooldown)") }
            if power <= 0 { result.append("cooldown power must be > 0, got \(power)") }
        case .step(let every, let gamma):
            if every <= 0 { result.append("step decay interval must be > 0, got \(every)") }
            if gamma <= 0 { result.append("step decay gamma must be > 0, got \(gamma)") }
        case .constant, .cosine, .linear, .plateau: break
        }
        return result
    }

    /// The learning rate at `step` (0-based) for a group whose base rate is `base`.
    public func learningRate(at step: Int, base: Double) -> Double {
        if step < warmupSteps { return base * Double(step + 1) / Double(warmupSteps) }
        switch kind {
        case .constant, .plateau:
            return base
        case .cosine:
            let e = Double(step - warmupSteps), es = Double(totalSteps - warmupSteps)
            return 0.5 * (1 + Foundation.cos(Double.pi * e / es)) * base
        case .constantCooldown(let cooldownSteps, let power, let endLR):
            let start = totalSteps - cooldownSteps
            if step < start { return base }
            let e = Double(step - start), es = Double(totalSteps - start)
            let decay = Foundation.pow(1 - e / es, power)
            return decay * (base - endLR) + endLR
        case .step(let every, let gamma):
            return base * Foundation.pow(gamma, Double((step - warmupSteps) / every))
        case .linear(let endLR):
            let progress = Swift.min(1, Double(step - warmupSteps) / Double(Swift.max(1, totalSteps - warmupSteps)))
            return base + (endLR - base) * progress
        }
    }
}

/// Lowers the learning rate when an evaluation metric stops improving, as
/// torch.optim.lr_scheduler.ReduceLROnPlateau (relative threshold). Its state is Codable for
/// checkpoints; `scale` multiplies whatever the step schedule gives.
public struct ReduceOnPlateau: Codable, Sendable, Equatable {
    public typealias Mode = MetricMode

    public var mode: Mode
    public var factor: Double
    public var patience: Int
    public var threshold: Double
    public var cooldown: Int
    public var minScale: Double

    public private(set) var scale = 1.0
    public private(set) var best: Double?
    public private(set) var badEvaluations = 0
    public private(set) var cooldownLeft = 0

    public init(mode: Mode = .min, factor: Double = 0.1, patience: Int = 10, threshold: Double = 1e-4,
                cooldown: Int = 0, minScale: Double = 0) {
        precondition(factor > 0 && factor < 1, "factor must be in (0, 1)")
        self.mode = mode
        self.factor = factor
        self.patience = patience
        self.threshold = threshold
        self.cooldown = cooldown
        self.minScale = minScale
    }

    /// Feeds one evaluation; returns true when the rate was just reduced.
    @discardableResult
    public mutating func update(_ metric: Double) -> Bool {
        let improved: Bool
        if let best {
            improved = mode == .min ? metric < best * (1 - threshold) : metric > best * (1 + threshold)
        } else {
            improved = true
        }
        if improved {
            best = metric
            badEvaluations = 0
        } else {
            badEvaluations += 1
        }
        if cooldownLeft > 0 {
            cooldownLeft -= 1
            badEvaluations = 0
        }
        guard badEvaluations > patience else { return false }
        let reduced = Swift.max(scale * factor, minScale)
        let changed = scale - reduced > 1e-8
        scale = reduced
        cooldownLeft = cooldown
        badEvaluations = 0
        return changed
    }
}
