import Foundation
import Testing
import Models
import NN
import Torch
@testable import Training

@Suite("Gradient checkpointing in training", .serialized)
struct GradientCheckpointingTrainingTests {
    private func decode(_ json: String) throws(RecipeErrors) -> Recipe {
        try Recipe.decode(Data(json.utf8), file: "test.json", defaultName: "test")
    }

    @Test func theRecipeKeyRoundTripsAndABadValueIsRefused() throws {
        let minimal = #"{"data": {"train": {"shards": "train.tar"}}, "max_steps": 100"#
        #expect(try decode(minimal + "}").model.gradientCheckpointing == false)
        let on = try decode(minimal + #", "model": {"gradient_checkpointing": true}}"#)
        #expect(on.model.gradientCheckpointing)
        let again = try Recipe.decode(on.resolvedJSON(), file: "resolved.json", defaultName: "test")
        #expect(again == on)
        let set = try Recipe.applying(overrides: ["model.gradient_checkpointing=true"], to: Data((minimal + "}").utf8), file: "test.json")
        #expect(try Recipe.decode(set, file: "test.json", defaultName: "test").model.gradientCheckpointing)

        let thrown = #expect(throws: RecipeErrors.self) { try decode(minimal + #", "model": {"gradient_checkpointing": "yes"}}"#) }
        #expect(thrown?.errors == [RecipeError(path: "model.gradient_checkpointing", message: #"expected true or false, found "yes""#)])
        #expect(Recipe.reference().contains("gradient_checkpointing"))
    }

    /// The run builds its towers with checkpointing on, and its summary says so.
    @Test func theBuiltModelCheckpointsItsLayers() throws {
        let recipe = try tinyRecipe(temporaryFolder(), name: "flag", steps: 2, extra: ["model.gradient_checkpointing=true"])
        let setup = try RunBuilder.contrastive(recipe, resolved: nil)
        let stacks = setup.model.namedModules().compactMap { $0.module as? any CheckpointableLayers }
        #expect(stacks.count == 2 && stacks.allSatisfy(\.gradientCheckpointing))
        #expect(RunSummary.lines(recipe, setup).contains { $0.contains("gradient checkpointing") })
    }

    /// The estimate before the first step counts the recomputation, and running out of memory
    /// suggests checkpointing until it is on.
    @Test func estimatesAndOutOfMemoryAdviceKnowAboutIt() throws {
        var vision = CLIPVisionConfig()
        (vision.imageSize, vision.patchSize, vision.hiddenSize, vision.numHiddenLayers, vision.numAttentionHeads, vision.intermediateSize) = (64, 8, 32, 4, 2, 64)
        var text = CLIPTextConfig()
        (text.hiddenSize, text.numHiddenLayers, text.numAttentionHeads, text.intermediateSize, text.vocabSize) = (32, 4, 2, 64, 100)
        let model = DualEncoder(kind: .clip, vision: CLIPVisionTransformer(vision), text: CLIPTextTransformer(text), projectionDim: 16)
        let off = try #require(StepCost.estimate(model, samplesPerStep: 256))
        model.setGradientCheckpointing(true)
        let on = try #require(StepCost.estimate(model, samplesPerStep: 256))
        #expect(on.bytes < 0.6 * off.bytes && on.flops > 1.2 * off.flops && on.flops < 1.4 * off.flops, "\(off) vs \(on)")

        var failure: TorchError?
        do { _ = try withTorchErrors { Tensor.empty([1 << 52]) } } catch let error as TorchError { failure = error }
        let error = try #require(failure)
        let advice = { (on: Bool) in
            StepFailure.explain(error, step: 1, batchSize: 256, microBatches: 1, device: .cpu, precision: .fp32, gradientCheckpointing: on).description
        }
        #expect(advice(false).contains("model.gradient_checkpointing: true") && !advice(true).contains("gradient_checkpointing"))
    }

    /// Three steps with and without checkpointing: the same losses and weights. With a BERT text
    /// tower (dropout 0.1: the recomputation must draw the same masks) and a LiT-locked image
    /// tower prefix, and with CLIP's towers.
    /// In child processes: the default generator (initialisation, dropout) is shared with tests
    /// running in parallel.
    @Test(arguments: ["bert-locked", "clip"])
    func stepsGiveTheSameLossesAndWeights(_ variant: String) async throws {
        let runs = temporaryFolder()
        let towers = variant == "clip" ? [] : [
            "model.text.type=\"bert\"", "model.text.pooling=\"mean\"", "model.lock_vision.unlocked_layers=1",
            "model.text.tokenizer=\"\(repositoryRoot)/.deps/assets/all-MiniLM-L6-v2\"",
        ]
        for checkpointing in [false, true] {
            await #expect(processExitsWith: .success) { [runs = runs as String, towers = towers as [String], checkpointing = checkpointing as Bool] in
                let recipe = try tinyRecipe(runs, name: checkpointing ? "on" : "off", steps: 3,
                                            extra: towers + ["model.gradient_checkpointing=\(checkpointing)"])
                _ = try Trainer(try RunBuilder.contrastive(recipe, resolved: nil), resume: false).run()
            }
        }
        func run(_ checkpointing: Bool) throws -> (losses: [Double], weights: [String: Tensor]) {
            let name = checkpointing ? "on" : "off"
            let losses = try MetricsLog.read("\(runs)/\(name)/metrics.jsonl").filter { $0.kind == .train }.compactMap { $0.values["loss"] }
            return (losses, try weights("\(runs)/\(name)/last"))
        }
        let off = try run(false), on = try run(true)
        #expect(!off.losses.isEmpty && off.losses.count == on.losses.count)
        for (a, b) in zip(off.losses, on.losses) { #expect(abs(a - b) <= 1e-6, "loss \(a) vs \(b)") }
        #expect(off.weights.keys.sorted() == on.weights.keys.sorted())
        let worst = off.weights.map { name, w in maxDifference(w, on.weights[name]!) }.max() ?? .infinity
        #expect(worst <= 1e-6, "weights differ by \(worst)")
    }
}
