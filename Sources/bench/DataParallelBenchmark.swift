import ArgumentParser
import Datasets
import Distributed
import Foundation
import Models
import NN
import Optim
import RunCommands
import Torch
import Training

/// One rank of `Scripts/bench --only ddp`: the data-parallel training step as `train` runs it
/// (`Trainer.optimizerStep`): `ContrastiveObjective.forwardBackward` with the process group
/// (features gathered from every rank, the CLIP loss over this rank's rows, the gathered copies'
/// gradients summed back), `averageGradients` (25 MB buckets), AdamW, the logit-scale clamp.
/// Started by torchrun (or any launcher that sets its variables), one process per rank; rank r
/// takes rows r·b..<(r+1)·b of the fixed batch. Rank 0 prints one JSON line.
struct DataParallelTrainStep: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "dp-train-step",
        abstract: "One rank of a data-parallel training step on a fixed batch, joined from torchrun's variables (one JSON line from rank 0).")

    @Option(help: "Folder from `Benchmarks/model_reference.py make-model`.") var model: String
    @Option(help: "Untimed steps first.") var warmup = 3
    @Option(help: "Timed steps.") var steps = 10
    @Option(help: "Intra-op threads of each process.") var threads = 1

    func run() throws {
        Torch.threadCount = threads
        guard let environment = try DistributedEnvironment.detect(ProcessInfo.processInfo.environment), environment.worldSize > 1 else {
            throw ValidationError("no process group in the environment: start this with torchrun --no-python --nproc-per-node 2 (or set RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)")
        }
        let group = TimedGroup(try ProcessGroup(environment))
        let m = try BenchModel(model)
        m.model.train()
        let total = m.pixels.size(0)
        guard total % group.worldSize == 0 else { throw ValidationError("batch \(total) does not split into \(group.worldSize) equal halves") }
        let b = total / group.worldSize, rows = (group.rank * b)..<((group.rank + 1) * b)
        let own = { (t: Tensor) in t.narrow(dim: 0, start: rows.lowerBound, length: b).contiguous() }
        let ids = own(m.ids), mask = own(m.mask)
        let batch = Batch(pixels: own(m.pixels), teacherPixels: nil, captions: rows.map { "row \($0)" }, tokenIds: ids, attentionMask: mask,
                          labels: Array(repeating: nil, count: b), origins: rows.map { "row \($0)" }, epoch: 0, position: rows.upperBound)

        let objective = ContrastiveObjective(encoder: m.model, tokenizer: FixedTokens(ids: ids, mask: mask),
                                             preprocessing: ImagePreprocessing(size: m.pixels.size(-1)), tokenizerFolder: nil)
        objective.group = group
        // The reference side's AdamW settings and open_clip's groups (as `train-step`).
        let optimizer = AdamW(groups: ParameterGroup.standard(m.model, learningRate: 1e-4, weightDecay: 0.1), betas: (0.9, 0.98), eps: 1e-6)
        let parameters = optimizer.groups.flatMap { $0.parameters.map(\.tensor) }.filter(\.requiresGrad)

        let load = loadAverage()
        var losses: [Double] = [], phases: [[String: Double]] = []
        for step in 0..<(warmup + steps) {
            var phase: [String: Double] = [:]
            var clock = Stopwatch()
            optimizer.zeroGrad()
            group.seconds = [:]
            let totals = try objective.forwardBackward([batch])
            phase["forward_backward"] = clock.lap()
            phase["gather"] = group.seconds["allGather", default: 0]
            phase["loss_allreduce"] = group.seconds["allReduce", default: 0]   // gathered copies' gradients + loss values
            group.seconds = [:]
            try group.averageGradients(parameters)
            phase["average_gradients"] = clock.lap()
            phase["gradient_allreduce"] = group.seconds["allReduce", default: 0]
            optimizer.step()
            objective.afterOptimizerStep()
            phase["optimizer"] = clock.lap()
            phase["step"] = clock.total
            guard let loss = totals["loss"], loss.isFinite else { throw ValidationError("non-finite loss at step \(step)") }
            losses.append(loss)
            if step >= warmup { phases.append(phase) }
        }
        // What one forward of this rank's rows costs (the step runs the towers without grad
        // first, for the gather, then again with grad): outside the timed steps.
        let forward = withNoGrad {
            timed(warmup: 1, repetitions: 3) {
                let (image, text) = (m.model.imageFeatures(batch.pixels), m.model.textFeatures(ids: ids, attentionMask: mask))
                _ = (image.sum() + text.sum()).item(Double.self)
            }
        }
        let stepTimes = phases.map { $0["step"]! }
        var medians: [String: Double] = [:]
        for key in phases[0].keys { medians[key] = median(phases.map { $0[key]! }) }
        medians["forward_nograd"] = median(forward)
        medians["collectives"] = medians["gather"]! + medians["loss_allreduce"]! + medians["gradient_allreduce"]!
        if group.rank == 0 {
            emit(["median_s": median(stepTimes), "min_s": stepTimes.min()!, "steps_s": stepTimes, "phases_s": medians,
                  "loss_first": losses.first!, "loss_last": losses.last!, "peak_rss_mb": peakRSSMegabytes(), "threads": Torch.threadCount,
                  "world_size": group.worldSize, "batch_per_rank": b, "loadavg_1m": load])
        }
    }
}

/// The fixed batch's token rows for the objective's tokenizer call (the reference side gets
/// the same ids; no text is tokenized on either side).
struct FixedTokens: CaptionTokenizer, @unchecked Sendable {
    let ids: Tensor, mask: Tensor

    func encode(_ captions: [String]) -> (ids: Tensor, attentionMask: Tensor) {
        precondition(captions.count == ids.size(0), "FixedTokens holds \(ids.size(0)) rows, asked for \(captions.count)")
        return (ids, mask)
    }
}

/// The process group with a clock on each collective (seconds by kind since `seconds` was
/// last reset), so that the step's time splits into communication and compute.
final class TimedGroup: DataParallelGroup {
    let inner: ProcessGroup
    var seconds: [String: Double] = [:]

    init(_ inner: ProcessGroup) { self.inner = inner }

    var rank: Int { inner.rank }
    var worldSize: Int { inner.worldSize }
    var localRank: Int { inner.localRank }

    private func clocked<R>(_ kind: String, _ body: () throws -> R) rethrows -> R {
        let clock = Stopwatch()
        defer { seconds[kind, default: 0] += clock.total }
        return try body()
    }

    func allReduce(_ tensors: [Tensor], average: Bool) throws { try clocked("allReduce") { try inner.allReduce(tensors, average: average) } }
    func allGather(_ tensor: Tensor) throws -> [Tensor] { try clocked("allGather") { try inner.allGather(tensor) } }
    func broadcast(_ tensors: [Tensor], from root: Int) throws { try clocked("broadcast") { try inner.broadcast(tensors, from: root) } }
    func broadcast(bytes: [UInt8], from root: Int) throws -> [UInt8] { try clocked("broadcast") { try inner.broadcast(bytes: bytes, from: root) } }
    func anyRank(_ flag: Bool) throws -> Bool { try clocked("anyRank") { try inner.anyRank(flag) } }
}

/// Seconds since it was made (`total`) or since the last `lap`.
struct Stopwatch {
    private let start = DispatchTime.now().uptimeNanoseconds
    private var last = DispatchTime.now().uptimeNanoseconds

    var total: Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }

    mutating func lap() -> Double {
        let now = DispatchTime.now().uptimeNanoseconds
        defer { last = now }
        return Double(now - last) / 1e9
    }
}

/// The 1-minute load average (what the reference side reports as loadavg_1m).
func loadAverage() -> Double {
    var values = [Double](repeating: 0, count: 3)
    return getloadavg(&values, 3) > 0 ? values[0] : -1
}
