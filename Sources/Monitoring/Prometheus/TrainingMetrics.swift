import Foundation
import Prometheus
import Synchronization
import Torch
import Training

/// A run's state as Prometheus metrics, kept current by the training loop (it is a
/// `TrainingObserver`) and rendered in the text format for each scrape.
///
/// Names follow Prometheus' conventions: a `cliptune_` prefix, base units (bytes, seconds, ratios),
/// `_total` on counters. Every series carries `run` (the recipe's name) and `rank` labels, so the
/// ranks of one run and several runs can share a dashboard.
///
/// Updates are atomic stores into swift-prometheus' metrics; a scrape reads them on the
/// server's thread, so it never waits for a step and a step never waits for it.
public final class TrainingMetrics: TrainingObserver, Sendable {
    public let registry = PrometheusCollectorRegistry()
    private let labels: [(String, String)]

    private let step: Gauge
    private let epoch: Gauge
    private let samples: Counter
    private let nonFiniteSteps: Counter
    private let badSamples: Counter
    private let learningRate: Gauge
    private let throughput: Gauge
    private let dataWait: Gauge
    private let bestStep: Gauge
    private let evaluationStep: Gauge
    private let residentMemory: Gauge
    private let peakResidentMemory: Gauge
    /// Created when a loss term, metric or other value first appears (keyed by its label).
    private let lossTerms = Mutex<[String: Gauge]>([:])
    private let trainValues = Mutex<[String: Gauge]>([:])
    private let evaluationMetrics = Mutex<[String: Gauge]>([:])
    private let bestMetrics = Mutex<[String: Gauge]>([:])

    /// Train-record keys with a metric of their own, or none (covered by a counter, or not a
    /// base unit: the peak-memory GiB values are served in bytes instead).
    private static let keysWithoutValueSeries: Set<String> = [
        "lr", "samples_per_second", "data_wait_fraction", "skipped_samples", "best_step",
        "peak_host_memory_gib", "peak_device_memory_gib",
    ]

    public init(run: String, rank: Int) {
        let labels = [("run", run), ("rank", String(rank))]
        self.labels = labels
        let registry = registry
        func gauge(_ name: String, _ help: String) -> Gauge { registry.makeGauge(descriptor: Self.name(name, help), labels: labels) }
        func counter(_ name: String, _ help: String) -> Counter { registry.makeCounter(descriptor: Self.name(name, help), labels: labels) }
        step = gauge("step", "Optimizer steps taken so far (the global step).")
        epoch = gauge("epoch", "Progress in epochs (fractional within an epoch).")
        samples = counter("samples_total", "Training samples this process has trained on since it started.")
        nonFiniteSteps = counter("nonfinite_steps_skipped_total", "Steps skipped because the loss was NaN or infinite.")
        badSamples = counter("bad_samples_skipped_total", "Training samples skipped as unreadable (bad image, bad caption, missing file).")
        learningRate = gauge("learning_rate", "Learning rate of the first parameter group at the latest log step.")
        throughput = gauge("samples_per_second", "Training samples per second over the latest log window (this process).")
        dataWait = gauge("data_wait_ratio", "Fraction of the latest log window spent waiting for data.")
        bestStep = gauge("best_step", "Step of the best evaluation so far (the checkpoint in best/).")
        evaluationStep = gauge("eval_step", "Step of the latest evaluation.")
        residentMemory = gauge("resident_memory_bytes", "Resident memory of the process, read at each scrape.")
        peakResidentMemory = gauge("peak_resident_memory_bytes", "The most memory the process has had resident.")
    }

    // MARK: - TrainingObserver

    public func stepFinished(step: Int, samples: Int) {
        self.step.set(to: Double(step))
        self.samples.increment(by: Int64(samples))
    }

    public func nonFiniteStepSkipped(at step: Int) { nonFiniteSteps.increment() }

    public func badSamplesSkipped(_ count: Int) { badSamples.increment(by: Int64(count)) }

    public func recorded(_ record: MetricsRecord, best: BestMetric?) {
        if record.epoch.isFinite { epoch.set(to: record.epoch) }
        switch record.kind {
        case .train:
            for (key, value) in record.values {
                switch key {
                case "lr": learningRate.set(to: value)
                case "samples_per_second": throughput.set(to: value)
                case "data_wait_fraction": dataWait.set(to: value)
                case _ where Self.isLossTerm(key):
                    gauge(in: lossTerms, key, name: "loss", label: "term", help: "Loss terms at the latest log step (`loss` is what is optimised).").set(to: value)
                case _ where !Self.keysWithoutValueSeries.contains(key):
                    gauge(in: trainValues, key, name: "train_value", label: "name", help: "Other values of the latest log step (gradient norm, logit scale, loss scale, data time in seconds...).").set(to: value)
                default: break
                }
            }
        case .eval:
            evaluationStep.set(to: Double(record.step))
            for (key, value) in record.values where key != "best_step" {
                gauge(in: evaluationMetrics, key, name: "eval_metric", label: "metric", help: "The latest value of each evaluation metric (retrieval recall, validation loss, zero-shot accuracy...).").set(to: value)
            }
        }
        if let best {
            gauge(in: bestMetrics, best.name, name: "best_metric", label: "metric", help: "The best value so far of the metric best/ is chosen by.").set(to: best.value)
            bestStep.set(to: Double(best.step))
        }
    }

    // MARK: - Exposition

    /// The text format (0.0.4) of every series, with the memory read now.
    public func exposition() -> [UInt8] {
        if let bytes = ResidentMemory.currentBytes { residentMemory.set(to: Double(bytes)) }
        peakResidentMemory.set(to: Double(Torch.hostPeakResidentBytes))
        var buffer: [UInt8] = []
        buffer.reserveCapacity(8192)
        registry.emit(into: &buffer)
        return buffer
    }

    /// `cliptune_<name>` (the unit, `_bytes` or `_total`, is part of `name`).
    private static func name(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "cliptune", metricName: name, unitName: "", helpText: help)
    }

    /// `loss`, and the terms objectives log beside it (`distill_loss`, `loss_contrastive`...);
    /// fp16's loss scale is not a loss.
    static func isLossTerm(_ key: String) -> Bool { key.contains("loss") && key != "loss_scale" }

    private func gauge(in family: borrowing Mutex<[String: Gauge]>, _ key: String, name: String, label: String, help: String) -> Gauge {
        family.withLock { gauges in
            if let gauge = gauges[key] { return gauge }
            let gauge = registry.makeGauge(descriptor: Self.name(name, help), labels: labels + [(label, key)])
            gauges[key] = gauge
            return gauge
        }
    }
}
