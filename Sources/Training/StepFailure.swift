import Foundation
import Torch

/// A training step that libtorch could not run, in the user's terms: what ran out and which
/// settings lower the memory a step needs.
public struct StepFailure: Error, CustomStringConvertible {
    public let description: String

    static func explain(_ error: TorchError, step: Int, batchSize: Int, microBatches: Int, device: Device, precision: Precision,
                        gradientCheckpointing: Bool = false) -> StepFailure {
        guard error.isOutOfMemory else {
            return StepFailure(description: "step \(step) failed in libtorch on \(device): \(error)")
        }
        var levers = ["a smaller data.batch_size (now \(batchSize))",
                      "optimizer.accumulation_steps (now \(microBatches)) to keep the global batch: batch_size \(Swift.max(1, batchSize / 2)) × \(microBatches * 2) trains on the same \(batchSize * microBatches) samples per step"]
        if precision == .fp32 { levers.append("precision \"bf16\" (half the activation memory)") }
        if !gradientCheckpointing {
            levers.append("model.gradient_checkpointing: true (each layer's activations recomputed in backward instead of kept; steps take about a third longer)")
        }
        let what = device == .cpu ? "the machine ran out of memory" : "\(device) ran out of memory"
        return StepFailure(description: "step \(step): \(what) with \(batchSize) samples per micro-batch. To fit, try:\n  - "
                           + levers.joined(separator: "\n  - ") + "\n(libtorch: \(error.message.split(separator: "\n").first ?? ""))")
    }
}
