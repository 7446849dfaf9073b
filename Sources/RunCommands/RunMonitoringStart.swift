import Distributed
import Monitoring
import Training

/// The Prometheus endpoint and TensorBoard writer the recipe asks for, started before the model
/// loads (a port in use stops the command at once). Each rank serves its own endpoint (see
/// `RunMonitoring`), so each says where.
public func startMonitoring(_ recipe: Recipe, group: ProcessGroup?) throws -> RunMonitoring {
    let monitoring = try RunMonitoring(recipe, rank: group?.rank ?? 0, localRank: group?.localRank ?? 0)
    if let server = monitoring.server {
        printToStandardError([(group.map { "rank \($0.rank) " } ?? "") + "metrics: \(server.url)"])
    }
    return monitoring
}

/// Attaches `monitoring` to `trainer` and says where the events file is.
public func attach(_ monitoring: RunMonitoring, to trainer: Trainer) throws {
    try monitoring.attach(to: trainer)
    if let log = monitoring.tensorBoard { printToStandardError(["tensorboard: \(log.path)"]) }
}
