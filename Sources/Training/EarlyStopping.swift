import Optim

/// Stops training when a monitored metric has not improved for `patience` evaluations.
/// Codable so that its counters survive a resume.
public struct EarlyStopping: Codable, Sendable, Equatable {
    public typealias Mode = MetricMode

    public enum Decision: Equatable, Sendable {
        /// New best value: keep this checkpoint as `best`.
        case improved
        /// No improvement; `remaining` more evaluations like this stop training.
        case wait(remaining: Int)
        case stop
    }

    public let metric: String
    public let mode: Mode
    public let patience: Int
    /// The least change that counts as an improvement.
    public let minDelta: Double

    public private(set) var best: Double?
    public private(set) var bestStep: Int?
    public private(set) var evaluationsWithoutImprovement = 0

    public init(metric: String, mode: Mode, patience: Int, minDelta: Double = 0) {
        precondition(patience >= 1, "patience must be at least 1")
        precondition(minDelta >= 0, "min_delta must be non-negative")
        self.metric = metric
        self.mode = mode
        self.patience = patience
        self.minDelta = minDelta
    }

    /// Records the metric's value at `step` and says what to do. A NaN never improves.
    public mutating func update(_ value: Double, step: Int) -> Decision {
        let improved: Bool
        if value.isNaN {
            improved = false
        } else if let best {
            improved = mode == .max ? value > best + minDelta : value < best - minDelta
        } else {
            improved = true
        }
        if improved {
            best = value
            bestStep = step
            evaluationsWithoutImprovement = 0
            return .improved
        }
        evaluationsWithoutImprovement += 1
        return evaluationsWithoutImprovement >= patience ? .stop : .wait(remaining: patience - evaluationsWithoutImprovement)
    }
}
