import Datasets
import Foundation
import Models
import NN

/// A recipe's `wise_ft` section made concrete (by `RunBuilder.contrastive`): what the trainer
/// interpolates, evaluates and writes after the last step.
public struct WiSEFTPlan {
    /// The zero-shot end's folder (α = 0); the run's `best/` is the other end.
    public var zeroShot: String
    public var sets: [WiSEFTDataset]
    public var settings: WiSEFTSettings
    /// Also write the best α's mix as `wise_ft_best/`.
    public var saveBest: Bool
}

extension WiSEFT {
    /// The folder `save_best` writes in the run folder.
    public static let bestFolderName = "wise_ft_best"

    /// After training: interpolates the plan's zero-shot model with `best`, evaluates every α,
    /// writes `wise_ft.json` and `wise_ft.svg` (and with `saveBest`, `wise_ft_best/`) in the
    /// run folder, and says what it does through `message`. nil when the run kept no `best/`
    /// (no evaluation gave the watched metric a value).
    static func afterTraining(_ plan: WiSEFTPlan, runFolder: String, best: String, message: (String) -> Void) throws -> WiSEFTResult? {
        // A full run's best/ has config.json; a LoRA run's, PEFT's adapter files (merged on load).
        guard [Pretrained.configFile, PeftAdapter.configFile].contains(where: { FileManager.default.fileExists(atPath: "\(best)/\($0)") }) else {
            message("wise_ft: skipped: the run kept no best/ (no evaluation gave \(plan.settings.metric.name) a value)")
            return nil
        }
        message("wise_ft: interpolating \(plan.zeroShot) (α = 0) with \(best) (α = 1): \(counted(plan.settings.alphas.count, "α value")) on \(plan.sets.map(\.name).joined(separator: ", "))…")
        let interpolator = try WiSEFTInterpolator(zeroShot: try loadForInterpolation(plan.zeroShot, role: "wise_ft.zero_shot"),
                                                  fineTuned: try loadForInterpolation(best, role: "the run's best/"), device: plan.settings.device)
        var result = try interpolator.sweep(plan.sets, settings: plan.settings) { message("wise_ft: \($0)") }
        if plan.saveBest, let alpha = result.bestAlpha {
            let folder = "\(runFolder)/\(bestFolderName)"
            try CheckpointDirectory.write(to: folder) { try interpolator.save(alpha: alpha, to: $0) }
            result.saved = (alpha, folder)
        }
        try OutputLocation.write(result.jsonData(), to: "\(runFolder)/\(WiSEFTResult.jsonFile)", option: "wise_ft")
        try WiSEFTPlot.write(result, to: "\(runFolder)/\(WiSEFTResult.plotFile)", option: "wise_ft")
        for line in result.table().split(separator: "\n", omittingEmptySubsequences: false).dropLast() { message(String(line)) }
        return result
    }
}

extension RunBuilder {
    /// The plan of a recipe's `wise_ft`, checked before training so that a pair that cannot be
    /// interpolated fails now, not after the run: `start` is the signature of the model as
    /// loaded from `model.checkpoint` (before the loss added or dropped `logit_bias`), `model`
    /// the model the run trains (what `best/` will hold).
    static func wiseFTPlan(_ recipe: Recipe, model: DualEncoder, start: WeightSignature?, setup: TrainingSetup) throws -> WiSEFTPlan? {
        guard let section = recipe.wiseFT else { return nil }
        func refuse(_ message: String) -> RecipeErrors { RecipeErrors(file: "", errors: [RecipeError(path: "wise_ft", message: message)]) }
        let zeroShot: String, signature: WeightSignature
        if let path = section.zeroShot {
            let endpoint = try WiSEFT.loadForInterpolation(path, role: "wise_ft.zero_shot")
            zeroShot = path
            signature = WeightSignature(endpoint.model)
        } else if let path = recipe.model.checkpoint, let start {
            zeroShot = path
            signature = start
        } else {
            throw refuse("needs a zero-shot model: set model.checkpoint or wise_ft.zero_shot")   // the recipe's checks say so first
        }
        let problems = signature.differences(from: WeightSignature(model))
        guard problems.isEmpty else {
            let bias = problems.contains { $0.contains("logit_bias") }
                ? " (loss.type siglip adds logit_bias to a model without one, and the clip loss drops it)" : ""
            throw refuse("the model this run trains could not be interpolated with \(zeroShot): \(problems.joined(separator: "; "))\(bias)")
        }
        guard let val = recipe.data.val else { throw refuse("needs data.val") }
        let classes = try recipe.eval.zeroshot.map { try ZeroShotClasses.load($0.classes) }
        let names = WiSEFTDataset.unique(["val"] + section.extraVal.map { WiSEFTDataset.name(forPath: describe($0)) })
        var sets = [WiSEFTDataset(name: names[0], path: describe(val), source: try source(val), zeroShot: classes)]
        for (index, extra) in section.extraVal.enumerated() {
            let set = WiSEFTDataset(name: names[index + 1], path: describe(extra), source: try source(extra), zeroShot: classes)
            try classes?.checkLabels(in: set.source, name: "wise_ft.extra_val.\(index) (\(set.path))", labelSetting: "wise_ft.extra_val.\(index).label_column")
            sets.append(set)
        }
        var settings = WiSEFTSettings()
        settings.alphas = section.alphas.sorted()
        settings.metric = setup.best ?? setup.objective.mainMetric ?? settings.metric
        settings.batchSize = recipe.eval.batchSize ?? recipe.data.batchSize
        settings.threads = recipe.data.threads
        settings.device = setup.device
        return WiSEFTPlan(zeroShot: zeroShot, sets: sets, settings: settings, saveBest: section.saveBest)
    }

    private static func describe(_ source: Recipe.Source) -> String {
        switch source {
        case .shards(let pattern): pattern
        case .manifest(let manifest): manifest.path
        }
    }
}
