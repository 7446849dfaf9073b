import Datasets
import Foundation
import NN
import Optim
import Torch

/// What a run optimises, separated from the loop that runs it (open_clip's split of loss and
/// train): the contrastive objective of `train`, or a distillation objective of `distill`.
/// The `Trainer` owns batching, the optimizer, the schedule, evaluation timing, early stopping
/// and checkpoints; an objective owns the forward pass, the loss terms and the metrics.
public protocol TrainingObjective: AnyObject {
    /// The model that trains and is saved as the checkpoint (what `export` reads).
    var model: Module { get }
    /// Modules trained beside the model but not part of it (distillation projections): in the
    /// optimizer and in checkpoints (`training_heads.safetensors`, for exact resume), never exported.
    var trainingHeads: Module? { get }
    /// The metrics `evaluate` reports and the direction each improves in. The first is the main
    /// one (what `best/` keeps by default).
    var metrics: [MetricDefinition] { get }
    /// Forward and backward over the micro-batches of one optimizer step (gradients accumulate).
    /// Returns the loss terms averaged over the micro-batches, with their weighted sum as "loss";
    /// a non-finite "loss" returns at once, before its backward pass. Under fp16 every backward
    /// starts from `scaler.scale(loss)` (the `backward` helper does it).
    func forwardBackward(_ micro: [Batch], scaler: GradScaler?) throws -> [String: Double]
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
    /// The model's embedding functions by what they embed ("images", "texts"), for throughput
    /// reports: a batch in, its embeddings out.
    var embedders: [String: (Batch) -> Tensor] { get }
    /// Why these micro-batches gave a non-finite loss when the cause is not the training itself
    /// (a broken teacher, non-finite inputs); nil when it is (then the learning rate is the
    /// usual suspect).
    func explainNonFinite(_ micro: [Batch]) -> String?
    /// Moves everything that computes (model, training heads, a teacher) to `device`.
    func place(on device: Device)
}

extension TrainingObjective {
    /// Without loss scaling (fp32, bf16).
    public func forwardBackward(_ micro: [Batch]) throws -> [String: Double] { try forwardBackward(micro, scaler: nil) }
    public var trainingHeads: Module? { nil }
    public func afterOptimizerStep() {}
    public func logValues() -> [String: Double] { [:] }
    public func saveRunState(in runFolder: String) throws {}

    public func place(on device: Device) {
        model.to(device)
        trainingHeads?.to(device)
    }

    public func explainNonFinite(_ micro: [Batch]) -> String? { nonFiniteInputs(micro) }

    /// The objective's main metric (the first it declares).
    public var mainMetric: MetricDefinition? { metrics.first }

    /// The definition of `name`, or an error that lists the metrics there are (with the
    /// nearest one suggested). `key` is the recipe key that named it.
    func metric(named name: String, key: String) throws(RecipeError) -> MetricDefinition {
        if let found = metrics.first(where: { $0.name == name }) { return found }
        let names = metrics.map(\.name)
        var message = "'\(name)' is not a metric this run reports"
        if let suggestion = Recipe.nearestName(name, among: names) { message += "; did you mean '\(suggestion)'?" }
        message += names.isEmpty ? " (it has no validation metrics)" : " (it reports \(names.joined(separator: ", ")))"
        throw RecipeError(path: key, message: message)
    }
}

/// Whether every element is finite (NaN − NaN and ∞ − ∞ are NaN, which is not 0).
func allFinite(_ tensor: Tensor) -> Bool {
    withNoGrad { (tensor - tensor).eq(0.0).all().item(Bool.self) }
}

/// The first micro-batch whose pixels are not all finite (broken decoding or data), said plainly.
func nonFiniteInputs(_ micro: [Batch]) -> String? {
    for batch in micro where batch.pixels.count > 0 && !allFinite(batch.pixels) {
        return "the batch's images hold non-finite values (samples \(batch.origins.prefix(3).joined(separator: ", "))…); the data, not the learning rate, is the cause"
    }
    return nil
}

/// A metric an objective reports: its name (open_clip's names), the direction it improves in,
/// and whether it belongs in one-line summaries (progress messages, the end of a run).
public struct MetricDefinition: Sendable, Equatable {
    public let name: String
    public let mode: MetricMode
    public let summary: Bool

    public init(_ name: String, _ mode: MetricMode, summary: Bool = false) {
        self.name = name
        self.mode = mode
        self.summary = summary
    }
}

/// Numeric precision of the forward and backward passes.
public enum Precision: String, Sendable, CaseIterable {
    case fp32
    /// bf16 autocast: matmuls in bf16, losses in fp32.
    case bf16
    /// fp16 autocast with dynamic loss scaling (`GradScaler`, torch.amp's): float16 has too
    /// little range for small gradients, so the loss is scaled up before backward. GPUs only.
    case fp16

    /// The dtype the forward pass autocasts to; nil: none (fp32).
    public var autocastType: DType? {
        switch self {
        case .fp32: nil
        case .bf16: .bfloat16
        case .fp16: .float16
        }
    }

    /// Why this precision cannot train on `device` (empty when it can), each said for the
    /// recipe's `precision` key. On the CPU, float16 matmuls are slow and loss scaling only
    /// papers over its range: bf16 has float32's range and needs no scaling.
    public func problems(on device: Device) -> [String] {
        self == .fp16 && device == .cpu ? ["fp16 needs a CUDA device (loss scaling of float16 is for GPUs); use bf16 on the CPU"] : []
    }
}

/// One micro-batch's share of a step: sums the named terms (in a fixed order), adds each term
/// and the total to `totals` averaged over the micro-batches, and back-propagates the total
/// (times the loss scale under fp16; the trainer unscales the gradients before clipping).
/// False (nothing back-propagated) when the total is not finite.
///
/// `perMicroBatch` names the terms that are means over this micro-batch alone (distillation
/// terms), unlike open_clip's contrastive loss, whose every pass already yields its share of the
/// whole batch's gradient: they are back-propagated divided by the number of micro-batches, so
/// that the step's gradient is that of their average (the value reported), as without
/// accumulation.
/// The sum of the terms (in `names`' order) that one micro-batch back-propagates: those in
/// `perMicroBatch` are means over this micro-batch alone, so they count 1/microBatches each.
func weightedTotal(_ terms: [String: Tensor], names: [String], microBatches: Int, perMicroBatch: Set<String>) -> Tensor {
    let scaled = names.map { microBatches > 1 && perMicroBatch.contains($0) ? terms[$0]! / Double(microBatches) : terms[$0]! }
    return scaled.dropFirst().reduce(scaled[0]) { $0 + $1 }
}

func backward(_ terms: [String: Tensor], into totals: inout [String: Double], microBatches: Int,
              perMicroBatch: Set<String> = [], scaler: GradScaler?) -> Bool {
    let names = terms.keys.sorted()
    let total = weightedTotal(terms, names: names, microBatches: microBatches, perMicroBatch: perMicroBatch)
    let value = names.reduce(0.0) { $0 + terms[$1]!.item(Double.self) }
    totals["loss", default: 0] += value / Double(microBatches)
    for (name, t) in terms { totals[name, default: 0] += t.item(Double.self) / Double(microBatches) }
    guard value.isFinite else { return false }
    (scaler?.scale(total) ?? total).backward()
    return true
}
