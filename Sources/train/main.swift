import ArgumentParser
import Foundation
import Training

/// Contrastive fine-tuning from a recipe.
@main
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Fine-tune a CLIP-style dual encoder from a JSON recipe.")

    @Option(help: "The recipe (JSON).") var recipe = "Recipes/clip-finetune.json"
    @Option(name: .customLong("set"), help: "Override a recipe field: --set optimizer.lr=1e-4 (repeatable).") var overrides: [String] = []
    @Flag(help: "Continue the run from its last/ checkpoint.") var resume = false

    func run() throws {
        let (recipe, resolved) = try RecipeRunner.load(self.recipe, overrides: overrides)
        let setup = try RecipeRunner.setup(recipe, resolved: resolved)
        let trainer = try Trainer(setup, resume: resume || recipe.resume == .latest)
        print("run \(recipe.name): \(setup.totalSteps) steps (\(setup.stepsPerEpoch ?? 0) per epoch) → \(setup.runFolder)")
        print(String(format: "model: %.2fM parameters, %.2fM trainable", Double(setup.model.parameterCount) / 1e6, Double(setup.model.trainableParameterCount) / 1e6))
        let metrics = try trainer.run()
        let keys = ["image_to_text_R@1", "text_to_image_R@1", "image_to_text_R@5", "text_to_image_R@5", "zeroshot_top1", "clip_val_loss"]
        for key in keys { if let v = metrics[key] { print(String(format: "%@ %.4f", key, v)) } }
        if let best = trainer.state.bestStep { print("best checkpoint: \(trainer.bestFolder) (step \(best))") }
        print("last checkpoint: \(trainer.lastFolder); curves: \(setup.runFolder)/curves.svg")
    }
}
