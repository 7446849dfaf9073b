/// Something that watches a run as it trains: the Prometheus endpoint and the TensorBoard
/// writer (in `Monitoring`) are observers, so the loop knows nothing of HTTP or protobuf.
///
/// The loop calls observers on its own thread, between steps; an observer must return quickly
/// (a scrape or a slow disk never holds up the step). Every rank calls its observers; only
/// rank 0 evaluates, and the others report the numbers it shares.
public protocol TrainingObserver: AnyObject {
    /// After every optimizer step the run counts (fp16 steps skipped for overflow count too, as
    /// in torch's GradScaler loop): `step` is the new global step.
    func stepFinished(step: Int, samples: Int)
    /// A step skipped because its loss was NaN or infinite.
    func nonFiniteStepSkipped(at step: Int)
    /// Samples the data pipeline skipped as unreadable since the last call.
    func badSamplesSkipped(_ count: Int)
    /// Every record of `metrics.jsonl` as it is logged, with the best evaluation so far (nil
    /// before the first, or when the run keeps no `best/`). An error stops the run, as a failed
    /// write of `metrics.jsonl` does.
    func recorded(_ record: MetricsRecord, best: BestMetric?) throws
}

extension TrainingObserver {
    public func stepFinished(step: Int, samples: Int) {}
    public func nonFiniteStepSkipped(at step: Int) {}
    public func badSamplesSkipped(_ count: Int) {}
    public func recorded(_ record: MetricsRecord, best: BestMetric?) throws {}
}

/// The best value of the metric `best/` is chosen by, and the step it was reached at.
public struct BestMetric: Sendable, Equatable {
    public var name: String
    public var value: Double
    public var step: Int

    public init(name: String, value: Double, step: Int) {
        self.name = name
        self.value = value
        self.step = step
    }
}
