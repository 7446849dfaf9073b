import ArgumentParser
import Foundation
import Training

/// The options `train` and `distill` share: the recipe, `--set` overrides and `--resume`.
public struct RunOptions: ParsableArguments {
    @Option(help: "The recipe (JSON).") public var recipe: String?
    @Option(name: .customLong("set"), help: "Override a recipe field: --set optimizer.lr=1e-4 (repeatable).") public var overrides: [String] = []
    @Flag(help: "Continue the run from its last/ checkpoint.") public var resume = false

    public init() {}

    /// The recipe file (`defaultRecipe` when none is given), decoded with the overrides and checked.
    public func load(defaultRecipe: String) throws -> (Recipe, resolved: Data) {
        try RunBuilder.load(recipe ?? defaultRecipe, overrides: overrides)
    }

    /// Whether to continue from `last/`: the flag, or `"resume": "latest"` in the recipe.
    public func resumes(_ recipe: Recipe) -> Bool { resume || recipe.resume == .latest }
}

/// Ends the command the way its outcome asks: an interrupted run prints how to continue and
/// exits 130 (what a shell reports for Ctrl-C).
public func finish(_ result: TrainingResult, trainer: Trainer) throws {
    if case .interrupted(let step) = result.outcome {
        FileHandle.standardError.write(Data("interrupted: saved \(trainer.lastFolder) at step \(step); continue with --resume\n".utf8))
        throw ExitCode(130)
    }
}

/// One line per summary metric of the objective: `image_to_text_R@1 0.5130`.
public func summaryLines(_ metrics: [String: Double], of objective: any TrainingObjective) -> [String] {
    objective.metrics.filter(\.summary).compactMap { metric in metrics[metric.name].map { String(format: "%@ %.4f", metric.name, $0) } }
}
