import Foundation
import Training

/// What watches one process's run, as its recipe asks: the Prometheus endpoint
/// (`monitoring.prometheus_port`) and the TensorBoard events file (`logging.tensorboard`).
///
/// Made before the model loads, so a port in use stops the command at once; attached to the
/// trainer once it knows whether the run is resumed.
///
/// Under data parallelism every rank serves its own endpoint, at `prometheus_port + local rank`
/// (so the ranks sharing a machine do not collide), labelled with its global rank: rank 0's
/// throughput and losses are its own, and a stalled rank shows as its own stale series, at no
/// cost in collectives. Only rank 0 writes the events file, as it alone writes `metrics.jsonl`.
public final class RunMonitoring {
    public let metrics: TrainingMetrics?
    public let server: MetricsServer?
    public private(set) var tensorBoard: TensorBoardLog?
    private let writesTensorBoard: Bool

    public init(_ recipe: Recipe, rank: Int = 0, localRank: Int = 0) throws {
        writesTensorBoard = recipe.logging.tensorboard
        guard let base = recipe.monitoring.prometheusPort else {
            metrics = nil
            server = nil
            return
        }
        let port = base == 0 ? 0 : base + localRank
        guard port <= 65_535 else {
            throw MetricsServerError(description: "monitoring.prometheus_port \(base) + local rank \(localRank) is beyond the last TCP port (65535); choose a lower port")
        }
        let metrics = TrainingMetrics(run: recipe.name, rank: rank)
        self.metrics = metrics
        server = try MetricsServer(host: recipe.monitoring.prometheusHost, port: port) { metrics.exposition() }
    }

    /// Adds the observers to `trainer`; opens the events file on the process that writes the logs.
    public func attach(to trainer: Trainer) throws {
        if let metrics { trainer.observers.append(metrics) }
        if writesTensorBoard, trainer.isLeader {
            let log = try TensorBoardLog(runFolder: trainer.setup.runFolder, resumedAt: trainer.resumedAt)
            tensorBoard = log
            trainer.observers.append(log)
        }
    }

    public func close() {
        server?.close()
        tensorBoard?.close()
    }
}
