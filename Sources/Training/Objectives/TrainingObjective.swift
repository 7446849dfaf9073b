import Datasets
import Foundation
import NN
import Torch

/// What a run optimises, separated from the loop that runs it (open_clip's split of loss and
/// train): the contrastive objective of `train`, or a distillation objective of `distill`.
/// The `Trainer` owns batching, the optimizer, the schedule, evaluation timing, early stopping
/// and checkpoints; an objective owns the forward pass, the loss terms and the metrics.
public protocol TrainingObjective: AnyObject {
    /// The model that trains and is saved as the checkpoint (what `export` reads).
    var model: Module { get }
    /// Modules trained beside the model but not part of it (distillation projections): in the
    /// optimizer and in checkpoints (`heads.safetensors`, for exact resume), never exported.
    var heads: Module? { get }
    /// Forward and backward over the micro-batches of one optimizer step (gradients accumulate).
    /// Returns the loss terms averaged over the micro-batches, with their weighted sum as "loss";
    /// a non-finite "loss" returns at once, before its backward pass.
    func forwardBackward(_ micro: [Batch]) -> [String: Double]
    /// After the optimizer step (clamping a temperature, say).
    func afterOptimizerStep()
    /// Values for log lines besides the loss terms.
    func logValues() -> [String: Double]
    /// Metrics over a validation loader (model in eval mode, no gradients).
    func evaluate(_ loader: DataLoader) throws -> [String: Double]
    /// Files written beside the weights in every checkpoint: `config.json`, preprocessing, tokenizer.
    func checkpointFiles() throws -> [String: Data]
    /// Called when the trainer saves a checkpoint: state that lives beside the run (teacher caches).
    func saveRunState(in runFolder: String) throws
}

extension TrainingObjective {
    public var heads: Module? { nil }
    public func afterOptimizerStep() {}
    public func logValues() -> [String: Double] { [:] }
    public func saveRunState(in runFolder: String) throws {}
}

/// One micro-batch's share of a step: sums the named terms (in a fixed order), adds each term
/// and the total to `totals` averaged over the micro-batches, and back-propagates the total.
/// False (nothing back-propagated) when the total is not finite.
///
/// `perMicroBatch` names the terms that are means over this micro-batch alone (distillation
/// terms), unlike open_clip's contrastive loss, whose every pass already yields its share of the
/// whole batch's gradient: they are back-propagated divided by the number of micro-batches, so
/// that the step's gradient is that of their average (the value reported), as without
/// accumulation.
func backward(_ terms: [String: Tensor], into totals: inout [String: Double], microBatches: Int,
              perMicroBatch: Set<String> = []) -> Bool {
    let names = terms.keys.sorted()
    let scaled = names.map { microBatches > 1 && perMicroBatch.contains($0) ? terms[$0]! / Double(microBatches) : terms[$0]! }
    let total = scaled.dropFirst().reduce(scaled[0]) { $0 + $1 }
    let value = names.reduce(0.0) { $0 + terms[$1]!.item(Double.self) }
    totals["loss", default: 0] += value / Double(microBatches)
    for (name, t) in terms { totals[name, default: 0] += t.item(Double.self) / Double(microBatches) }
    guard value.isFinite else { return false }
    total.backward()
    return true
}
