import ArgumentParser
import Datasets
import Foundation
import Torch
import RunCommands
import Training

/// Contrastive fine-tuning from a recipe.
@main
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Fine-tune a CLIP-style dual encoder from a JSON recipe.", version: ClipTune.versionLine)

    @OptionGroup var options: RunOptions
    @OptionGroup var launch: LaunchOptions
    @Flag(help: "Print the recipe reference (every key, its type, default and meaning) as Markdown and exit.") var recipeReference = false

    func run() throws {
        if launch.launches { throw ExitCode(try Launcher.run(launch)) }
        if recipeReference {
            print(Recipe.reference(), terminator: "")
            return
        }
        let (recipe, resolved) = try options.load(defaultRecipe: "Recipes/clip-finetune.json")
        let group = try dataParallelGroup(recipe)
        let monitoring = try startMonitoring(recipe, group: group)
        defer { monitoring.close() }
        let setup = try RunBuilder.contrastive(recipe, resolved: resolved, group: group)
        let leader = (group?.rank ?? 0) == 0   // rank 0 alone prints (and writes) when processes train together
        if leader { printToStandardError(RunSummary.lines(recipe, setup)) }
        let trainer = try Trainer(setup, start: options.start(recipe))
        try attach(monitoring, to: trainer)
        guard leader else {
            try finish(try trainer.run(), trainer: trainer)
            return
        }
        print("run \(recipe.name): \(counted(setup.totalSteps, "step")) (\(setup.stepsPerEpoch ?? 0) per epoch) → \(setup.runFolder)")
        print(String(format: "model: %.2fM parameters, %.2fM trainable", Double(setup.model.parameterCount) / 1e6, Double(setup.model.trainableParameterCount) / 1e6))
        let result = try trainer.run()
        try finish(result, trainer: trainer)
        for line in summaryLines(result.metrics, of: setup.objective) { print(line) }
        if let best = trainer.state.bestStep { print("best checkpoint: \(trainer.bestFolder) (step \(best))") }
        if setup.keepLast { print("last checkpoint: \(trainer.lastFolder)") }
        print("curves: \(setup.runFolder)/curves.svg")
        if let wiseFT = result.wiseFT {
            print("wise_ft: best α \(wiseFT.bestAlpha.map { String(format: "%g", $0) } ?? "none") by \(wiseFT.watched.name); \(setup.runFolder)/\(WiSEFTResult.jsonFile), \(WiSEFTResult.plotFile)"
                  + (wiseFT.saved.map { ", checkpoint \($0.path)" } ?? ""))
        }
    }
}
