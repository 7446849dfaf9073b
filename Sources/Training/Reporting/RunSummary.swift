import Datasets
import Foundation
import Models
import NN
import Torch

/// The resolved settings a run prints before its first step, so that a log says what actually
/// ran: the step count and what bounds it, the device, model sizes and trained parameters, the
/// global batch, precision, and whether images and captions are augmented.
public enum RunSummary {
    public static func lines(_ recipe: Recipe, _ setup: TrainingSetup) -> [String] {
        var lines: [String] = []
        lines.append("run \(recipe.name) → \(setup.runFolder)")
        lines.append("training " + stepsDescription(recipe, setup))
        var device = "device: \(setup.device)" + (recipe.device == "auto" ? " (auto)" : "")
        device += setup.device == .cpu ? ", \(counted(Torch.threadCount, "intra-op thread"))" : (recipe.tf32 ? ", tf32 on" : "")
        if recipe.deterministic { device += ", deterministic algorithms" }
        lines.append(device + "; precision \(recipe.precision.rawValue)")
        lines += setup.notes
        var sizes = "model: \(millions(setup.model.parameterCount)) parameters, \(millions(setup.model.trainableParameterCount)) trained"
        if let encoder = setup.model as? DualEncoder {
            sizes += " (image tower \(millions(encoder.visionModel.parameterCount)), text tower \(millions(encoder.textModel.parameterCount)))"
        }
        if let heads = setup.objective.trainingHeads { sizes += "; training heads \(millions(heads.parameterCount))" }
        if setup.model.checkpointsLayers { sizes += "; gradient checkpointing (each trained layer recomputed in backward)" }
        lines.append(sizes)
        let batch = recipe.data.batchSize, accumulation = recipe.optimizer.accumulationSteps
        if let cost = StepCost.estimate(setup.model, samplesPerStep: batch * accumulation) {
            let (line, warnings) = cost.describe(gigaflops: StepCost.measuredGigaflops(on: setup.device),
                                                 availableBytes: StepCost.availableMemory(on: setup.device), device: setup.device)
            lines.append(line)
            lines += warnings
        }
        let processes = setup.group?.worldSize ?? 1
        lines.append("global batch: \(batch * accumulation * processes) samples per step (batch_size \(batch) × accumulation_steps \(accumulation)"
                     + (processes > 1 ? " × \(processes) processes); " : "); ")
                     + "optimizer \(recipe.optimizer.type.rawValue) lr \(recipe.optimizer.lr), schedule \(recipe.schedule.kind.name.rawValue), warmup \(counted(recipe.schedule.warmupSteps, "step"))")
        lines.append("image augmentation: " + imageAugmentation(recipe.data.augmentation))
        let text = recipe.data.textAugmentation
        lines.append("text augmentation: " + (text.isIdentity ? "off"
            : String(format: "synonym replacement %.2f, random insertion %.2f, random swap %.2f, random deletion %.2f",
                     text.synonymReplacement, text.randomInsertion, text.randomSwap, text.randomDeletion)))
        if let best = setup.best { lines.append("best/ keeps the best \(best.name) (\(best.mode.rawValue))") }
        return lines
    }

    /// "248 steps (31 per epoch × 8 epochs)", and which of `epochs` and `max_steps` ends the run.
    static func stepsDescription(_ recipe: Recipe, _ setup: TrainingSetup) -> String {
        let total = counted(setup.totalSteps, "step")
        guard let perEpoch = setup.stepsPerEpoch else { return total }
        switch (recipe.epochs, recipe.maxSteps) {
        case (let epochs?, let maxSteps?) where epochs * perEpoch < maxSteps:
            return "\(total): epochs=\(epochs) (\(perEpoch) per epoch) ends before max_steps=\(maxSteps)"
        case (let epochs?, let maxSteps?) where maxSteps < epochs * perEpoch:
            return "\(total): max_steps=\(maxSteps) ends before epochs=\(epochs) (\(epochs * perEpoch) steps)"
        case (let epochs?, _):
            return "\(total) (\(perEpoch) per epoch × \(counted(epochs, "epoch")))"
        case (nil, _):
            return "\(total) (\(perEpoch) per epoch)"
        }
    }

    static func imageAugmentation(_ augmentation: ImageAugmentation) -> String {
        var parts: [String] = []
        if let crop = augmentation.randomResizedCrop {
            parts.append("random resized crop scale \(crop.scale[0])–\(crop.scale[1])")
        }
        if augmentation.horizontalFlip > 0 { parts.append("flip p \(augmentation.horizontalFlip)") }
        if let rotation = augmentation.rotation { parts.append("rotation ±\(rotation.degrees)° p \(rotation.probability)") }
        if let jitter = augmentation.colorJitter { parts.append("colour jitter p \(jitter.probability)") }
        return parts.isEmpty ? "off (resize and centre crop)" : parts.joined(separator: ", ")
    }

    static func millions(_ count: Int) -> String { String(format: "%.2fM", Double(count) / 1e6) }
}
