import Datasets
import Foundation
import NN
import Optim
import Torch

extension ContrastiveObjective {
    /// `accumulate` across processes, equal (up to summation order) to one process training on
    /// the global batch: every process's features are gathered, each process computes the loss
    /// terms over its own rows (`RowShare`), and the gradients of the gathered copies come back
    /// to the process that owns them — what open_clip's `gather_with_grad` with `local_loss`
    /// computes, done as two backward passes:
    ///
    /// 1. The terms are differentiated with respect to detached copies of micro-batch `i`'s
    ///    features from every process (cheap: no tower in the graph).
    /// 2. Those gradients are summed across processes (an all-gather's backward is a
    ///    reduce-scatter of sums), and each process takes its own rows' sum back through its towers.
    ///
    /// Each process's parameter gradients then sum to `processes ×` the global loss's; the
    /// trainer averages them (as DistributedDataParallel does). Logged values are averaged too,
    /// so every process sees the same loss and makes the same non-finite decision.
    func accumulateAcrossProcesses(_ micro: [Batch], group: any DataParallelGroup, perMicroBatch: Set<String>, scaler: GradScaler?,
                                   terms: (Int, StepFeatures) throws -> [String: Tensor]) throws -> [String: Double] {
        let features = featureFunction(micro)
        // Every micro-batch's features from every process, without gradient: [micro][rank].
        // With one micro-batch its features with gradient serve the gather too (no second
        // forward); with several, each is recomputed with gradient in its own pass.
        let live: (Tensor, Tensor)? = micro.count == 1 ? features(0) : nil
        let local = live.map { [($0.0.detach(), $0.1.detach())] } ?? withNoGrad { micro.indices.map(features) }
        var images: [[Tensor]] = [], texts: [[Tensor]] = []
        for (image, text) in local {
            images.append(try group.allGatherRows(image.contiguous()))
            texts.append(try group.allGatherRows(text.contiguous()))
        }
        let microTotals = images.map { $0.reduce(0) { $0 + $1.size(0) } }
        let stepTotal = microTotals.reduce(0, +)
        var totals: [String: Double] = [:]
        for i in micro.indices {
            let (image, text) = (i == 0 ? live : nil) ?? features(i)
            // Micro-batch i of every process as leaves (this process's from the live features).
            let imageLeaves = images[i].enumerated().map { ($0.offset == group.rank ? image : $0.element).detach().requiringGrad() }
            let textLeaves = texts[i].enumerated().map { ($0.offset == group.rank ? text : $0.element).detach().requiringGrad() }
            let microImage = Tensor.cat(imageLeaves), microText = Tensor.cat(textLeaves)
            let allImages = Tensor.cat(images.indices.map { $0 == i ? microImage : Tensor.cat(images[$0]) })
            let allTexts = Tensor.cat(texts.indices.map { $0 == i ? microText : Tensor.cat(texts[$0]) })
            let before = images[i].prefix(group.rank).reduce(0) { $0 + $1.size(0) }
            let mine = before..<(before + image.size(0))
            // The step's loss needs every row (micro-batch i's features are columns of all of
            // them): the processes split the step's rows evenly, whoever owns them.
            let perProcess = stepTotal / group.worldSize
            let stepRows = (group.rank * perProcess)..<(group.rank == group.worldSize - 1 ? stepTotal : (group.rank + 1) * perProcess)
            let step = StepFeatures(image: microImage, text: microText, allImages: allImages, allTexts: allTexts,
                                    stepShare: RowShare(rows: stepRows, total: stepTotal, processes: group.worldSize),
                                    microShare: RowShare(rows: mine, total: microTotals[i], processes: group.worldSize))
            let named = try terms(i, step)
            guard try backwardAcrossProcesses(named, group: group, into: &totals, microBatches: micro.count, perMicroBatch: perMicroBatch,
                                              scaler: scaler) else { return totals }
            // Phase 2: the summed gradients of this process's rows, through its towers.
            let imageGrads = Tensor.cat(imageLeaves.map { $0.grad ?? Tensor.zeros($0.shape, dtype: $0.dtype).on($0.device) })
            let textGrads = Tensor.cat(textLeaves.map { $0.grad ?? Tensor.zeros($0.shape, dtype: $0.dtype).on($0.device) })
            try group.allReduce([imageGrads, textGrads], average: false)
            if image.size(0) > 0 {
                image.backward(imageGrads.narrow(dim: 0, start: mine.lowerBound, length: mine.count).to(image.dtype))
                text.backward(textGrads.narrow(dim: 0, start: mine.lowerBound, length: mine.count).to(text.dtype))
            }
        }
        return totals
    }
}

/// `backward` for a share of the loss: the values are averaged across processes first (so each
/// logs the global loss and all stop at the same non-finite total), then this process's share
/// is differentiated (phase 1, into the gathered leaves and the loss's own parameters).
func backwardAcrossProcesses(_ terms: [String: Tensor], group: any DataParallelGroup, into totals: inout [String: Double], microBatches: Int,
                             perMicroBatch: Set<String>, scaler: GradScaler?) throws -> Bool {
    let names = terms.keys.sorted()
    let values = Tensor(names.map { terms[$0]!.item(Double.self) }, shape: [names.count]).to(.float64).on(terms[names[0]]!.device)
    try group.allReduce([values], average: true)
    let averaged = values.toArray(Double.self)
    let value = averaged.reduce(0, +)
    totals["loss", default: 0] += value / Double(microBatches)
    for (name, v) in zip(names, averaged) { totals[name, default: 0] += v / Double(microBatches) }
    guard value.isFinite else { return false }
    let total = weightedTotal(terms, names: names, microBatches: microBatches, perMicroBatch: perMicroBatch)
    (scaler?.scale(total) ?? total).backward()
    return true
}
