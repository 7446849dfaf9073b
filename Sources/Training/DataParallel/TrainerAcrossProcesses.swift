import Datasets
import Foundation
import NN
import Torch

extension Trainer {
    /// Every process must train the same recipe: rank 0's resolved recipe is compared with each
    /// process's own, and any difference stops all of them, naming the ranks that differ.
    static func agree(on recipe: Data?, _ group: any DataParallelGroup) throws {
        let mine = [UInt8](recipe ?? Data())
        let leaders = try group.broadcast(bytes: mine, from: 0)
        let differs = leaders != mine
        guard try group.anyRank(differs) else { return }
        // One more collective before anyone exits: no rank can finish it before every rank has
        // the answer above (rank 0's exit would take the store with it).
        _ = try? group.anyRank(true)
        throw TrainingError(message: differs
            ? "rank \(group.rank) runs another recipe than rank 0 (the resolved recipes differ); start every process with the same recipe and --set values"
            : "another process runs a different recipe than rank 0; start every process with the same recipe and --set values")
    }

    /// Rank 0's evaluation on every process: it evaluates, the others receive its metrics (as
    /// JSON). An evaluation that fails on rank 0 fails on all.
    func shareEvaluation(_ group: any DataParallelGroup, _ validation: Datasets.DataLoader) throws -> [String: Double] {
        var values: [String: Double] = [:], failure: Error?
        if group.rank == 0 {
            do { values = try setup.objective.evaluate(validation) } catch { failure = error }
        }
        let payload = group.rank == 0 ? [UInt8](try JSONSerialization.data(withJSONObject: failure == nil ? values : [:] as [String: Double])) : []
        let received = try group.broadcast(bytes: payload, from: 0)
        if try group.anyRank(failure != nil) {
            throw failure ?? TrainingError(message: "evaluation failed on rank 0 (its log says why)")
        }
        guard let decoded = try JSONSerialization.jsonObject(with: Data(received)) as? [String: Double] else {
            throw TrainingError(message: "rank \(group.rank) received no evaluation from rank 0")
        }
        return decoded
    }
}
