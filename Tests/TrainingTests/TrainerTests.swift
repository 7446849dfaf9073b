import Foundation
import Testing
import Datasets
import Models
import NN
import Tokenizers
import Torch
@testable import Training

/// Small train/val shards cut from the embedded dataset, made once per process.
enum TinyShapes {
    static let folder: String = {
        let folder = temporaryFolder("tinyshapes")
        let source = try! ShardReader(path: "\(repositoryRoot)/Data/shapes/val-0000.tar.zst")
        let train = try! ShardWriter(folder: folder, prefix: "train", samplesPerShard: 48)
        let val = try! ShardWriter(folder: folder, prefix: "val", samplesPerShard: 100)
        for i in 0..<128 {
            guard case .success(let record)? = try! source.next(), case .bytes(let jpeg) = record.image else { continue }
            let json = try! JSONSerialization.data(withJSONObject: ["captions": record.captions, "label": record.label ?? ""])
            try! (i < 96 ? train : val).add(key: String(format: "%06d", i), members: [("jpg", jpeg), ("json", [UInt8](json))])
        }
        try! train.close()
        try! val.close()
        return folder
    }()
}

/// A recipe for a tiny model from scratch (ViT + CLIP text with open_clip's tokenizer).
func tinyRecipe(_ runs: String, name: String, steps: Int, extra: [String] = []) throws -> Recipe {
    let json = """
    {
      "name": "\(name)", "seed": 3,
      "model": {
        "vision": {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
        "text": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 40,
                 "tokenizer": "\(repositoryRoot)/.deps/assets/bpe_simple_vocab_16e6.txt.gz"},
        "projection_dim": 16
      },
      "data": {"train": {"shards": "\(TinyShapes.folder)/train-{0000..0001}.tar.zst"}, "val": {"shards": "\(TinyShapes.folder)/val-0000.tar.zst"},
               "batch_size": 16, "threads": 2},
      "optimizer": {"lr": 2e-3},
      "schedule": {"type": "cosine", "warmup_steps": 2},
      "eval": {"every_steps": 4, "every_epoch": false, "zeroshot": {"classes": "\(repositoryRoot)/Data/shapes/classes.json"}},
      "early_stopping": {"metric": "clip_val_loss", "mode": "min", "patience": 50},
      "checkpoint": {"directory": "\(runs)", "every_steps": 2},
      "max_steps": \(steps), "log_every_steps": 2
    }
    """
    let data = try Recipe.applying(overrides: extra, to: Data(json.utf8), file: "test")
    return try Recipe.decode(data, file: "test", defaultName: name)
}

func weights(_ folder: String) throws -> [String: Tensor] { try SafeTensors.load("\(folder)/model.safetensors") }

@Suite("Trainer", .serialized)
struct TrainerTests {
    @Test func aShortRunWritesEverything() throws {
        let runs = temporaryFolder()
        let recipe = try tinyRecipe(runs, name: "short", steps: 8)
        let setup = try RunBuilder.contrastive(recipe, resolved: recipe.resolvedJSON())
        #expect(setup.stepsPerEpoch == 6 && setup.totalSteps == 8)
        let trainer = try Trainer(setup, resume: false)
        let metrics = try trainer.run().metrics
        #expect(metrics["image_to_text_R@1"] != nil && metrics["zeroshot_top1"] != nil && metrics["clip_val_loss"] != nil)
        let folder = "\(runs)/short"
        for file in ["metrics.jsonl", "curves.svg", "recipe.json", "last/model.safetensors", "last/config.json", "last/optimizer.safetensors",
                     "last/trainer_state.json", "last/preprocessor_config.json", "best/model.safetensors"] {
            #expect(FileManager.default.fileExists(atPath: "\(folder)/\(file)"), "\(file) is missing")
        }
        let records = try MetricsLog.read("\(folder)/metrics.jsonl")
        #expect(records.filter { $0.kind == .train }.map(\.step) == [2, 4, 6, 8])
        #expect(records.filter { $0.kind == .eval }.map(\.step) == [4, 8])
        #expect(records.first!.values["lr"] != nil && records.first!.values["samples_per_second"] != nil)
        let losses = records.filter { $0.kind == .train }.compactMap { $0.values["contrastive_loss"] }
        #expect(losses.last! < losses.first!, "loss did not go down: \(losses)")
        // The saved model is a checkpoint the framework (and transformers) loads.
        guard case .dualEncoder = try Pretrained.load("\(folder)/last").model else { Issue.record("last/ does not load"); return }
        #expect(try Checkpoint.readState("\(folder)/last").globalStep == 8)
    }

    /// A run killed with SIGKILL at a random moment and resumed ends bit-identical to an
    /// uninterrupted run.
    @Test func killedAndResumedRunIsBitIdentical() async throws {
        // Each phase runs in its own process: the global RNG and thread count of this test
        // process are shared with tests running in parallel.
        let runs = temporaryFolder()
        let steps = 12
        await #expect(processExitsWith: .success) { [runs = runs as String, steps = steps as Int] in
            try Trainer(try RunBuilder.contrastive(try tinyRecipe(runs, name: "uninterrupted", steps: steps), resolved: nil), resume: false).run()
        }
        var random = TestRandom("kill step", defaultSeed: 12)
        let killStep = Int.random(in: 3...(steps - 1), using: &random)   // after at least one checkpoint (every 2 steps)
        await #expect(processExitsWith: .signal(SIGKILL)) { [runs = runs as String, killStep = killStep as Int, steps = steps as Int] in
            var setup = try RunBuilder.contrastive(try tinyRecipe(runs, name: "interrupted", steps: steps), resolved: nil)
            setup.onStep = { step in if step == killStep { kill(getpid(), SIGKILL) } }   // no chance to save
            try Trainer(setup, resume: false).run()
        }
        let killedAt = (try? Checkpoint.readState("\(runs)/interrupted/last").globalStep) ?? 0
        #expect(killedAt <= killStep && killedAt >= 2)
        await #expect(processExitsWith: .success) { [runs = runs as String, steps = steps as Int, killedAt = killedAt as Int] in
            let trainer = try Trainer(try RunBuilder.contrastive(try tinyRecipe(runs, name: "interrupted", steps: steps), resolved: nil), resume: true)
            guard trainer.state.globalStep == killedAt else { exit(3) }
            try trainer.run()
        }
        print("killed at step \(killStep) (last checkpoint: step \(killedAt)), resumed to \(steps)")
        let a = try weights("\(runs)/uninterrupted/last"), b = try weights("\(runs)/interrupted/last")
        #expect(Set(a.keys) == Set(b.keys))
        for (key, t) in a { #expect(b[key]!.equal(t), "\(key) differs after resume") }
        #expect(try Checkpoint.readState("\(runs)/interrupted/last").globalStep == steps)
    }

    @Test func accumulationAndSigLIPAndBF16Run() throws {
        let runs = temporaryFolder()
        for (name, extra) in [("accumulate", ["optimizer.accumulation_steps=2", "data.batch_size=8"]),
                              ("siglip", ["loss.type=\"siglip\""]), ("bf16", ["precision=\"bf16\""])] {
            let recipe = try tinyRecipe(runs, name: name, steps: 4, extra: extra)
            let metrics = try Trainer(try RunBuilder.contrastive(recipe, resolved: nil), resume: false).run().metrics
            #expect(metrics["clip_val_loss"]?.isFinite == true, "\(name)")
        }
    }

    @Test func nonFiniteLossesAreSkippedThenStopTheRun() throws {
        let runs = temporaryFolder()
        let recipe = try tinyRecipe(runs, name: "nan", steps: 6, extra: ["max_non_finite_steps=2"])
        let setup = try RunBuilder.contrastive(recipe, resolved: nil)
        // Poison the weights: every forward pass now gives NaN.
        withNoGrad { (setup.model as! DualEncoder).visualProjection.weight.fill_(Double.nan) }
        let error = #expect(throws: TrainingError.self) { try Trainer(setup, resume: false).run() }
        #expect(error?.message.contains("2 non-finite losses in a row") == true)
        #expect(error?.message.contains("lower optimizer.lr") == true)
        // Diverged (non-finite) weights are never saved as "the last good state".
        #expect(error?.message.contains("the weights are no longer finite and no earlier checkpoint exists") == true, "\(error!)")
        #expect(!FileManager.default.fileExists(atPath: "\(runs)/nan/last/model.safetensors"))
    }

    @Test func lockingFreezesAllButTheLastLayers() throws {
        let runs = temporaryFolder()
        let recipe = try tinyRecipe(runs, name: "lock", steps: 2, extra: ["model.lock_vision.unlocked_layers=1", "model.lock_text.unlocked_layers=0"])
        let setup = try RunBuilder.contrastive(recipe, resolved: nil)
        let trainable = setup.model.trainableParameters().map(\.name)
        #expect(!trainable.contains { $0.hasPrefix("vision_model.encoder.layers.0.") })
        #expect(trainable.contains { $0.hasPrefix("vision_model.encoder.layers.1.") })
        #expect(trainable.contains("vision_model.post_layernorm.weight"))
        #expect(!trainable.contains { $0.hasPrefix("text_model.") })
        #expect(trainable.contains("visual_projection.weight") && trainable.contains("logit_scale"))
    }
}

@Suite("Recipes")
struct RecipeFileTests {
    /// Recipes/clip-vit-b32-finetune.json end to end on a tiny random CLIP saved in the layout of
    /// openai/clip-vit-base-patch32 (CLIPModel config, model.safetensors, vocab.json, merges.txt).
    @Test func clipVitB32RecipeRunsOnATinyCLIPInThatLayout() throws {
        let folder = temporaryFolder()
        let clipFolder = "\(folder)/clip-vit-base-patch32"
        var text = CLIPTextConfig()
        text.hiddenSize = 32; text.intermediateSize = 64; text.numHiddenLayers = 1; text.numAttentionHeads = 2
        var vision = CLIPVisionConfig()
        vision.hiddenSize = 32; vision.intermediateSize = 64; vision.numHiddenLayers = 2; vision.numAttentionHeads = 2
        vision.imageSize = 32; vision.patchSize = 16
        let clip = DualEncoder(kind: .clip, vision: CLIPVisionTransformer(vision), text: CLIPTextTransformer(text), projectionDim: 16)
        try Pretrained.save(clip, to: clipFolder)
        try CLIPTokenizer.writeHuggingFaceFiles(fromOpenCLIPMerges: URL(fileURLWithPath: "\(repositoryRoot)/.deps/assets/bpe_simple_vocab_16e6.txt.gz"),
                                                to: URL(fileURLWithPath: clipFolder))
        let (recipe, resolved) = try RunBuilder.load("\(repositoryRoot)/Recipes/clip-vit-b32-finetune.json", overrides: [
            "model.checkpoint=\"\(clipFolder)\"", "data.train.shards=\"\(TinyShapes.folder)/train-{0000..0001}.tar.zst\"",
            "data.val.shards=\"\(TinyShapes.folder)/val-0000.tar.zst\"", "data.batch_size=16", "epochs=null", "max_steps=3",
            "schedule.warmup_steps=1", "eval.every_steps=3", "eval.zeroshot.classes=\"\(repositoryRoot)/Data/shapes/classes.json\"",
            "checkpoint.directory=\"\(folder)/runs\"",
        ])
        let setup = try RunBuilder.contrastive(recipe, resolved: resolved)
        #expect(!setup.model.trainableParameters().contains { $0.name.hasPrefix("vision_model.") })   // LiT: the image tower is locked
        let metrics = try Trainer(setup, resume: false).run().metrics
        #expect(metrics["image_to_text_R@1"] != nil)
        let saved = "\(folder)/runs/clip-vit-b32-finetune/last"
        #expect(FileManager.default.fileExists(atPath: "\(saved)/vocab.json") && FileManager.default.fileExists(atPath: "\(saved)/merges.txt"))
        guard case .dualEncoder(let reloaded) = try Pretrained.load(saved).model else { Issue.record("not a dual encoder"); return }
        #expect(reloaded.kind == .clip)
    }

    @Test func theDefaultRecipeIsValid() throws {
        let (recipe, _) = try RunBuilder.load("\(repositoryRoot)/Recipes/clip-finetune.json")
        #expect(recipe.name == "clip-finetune")
        #expect(recipe.model.text.checkpoint == RecipePathResolution.assetsFolder + "/all-MiniLM-L6-v2")
        // Loaded from anywhere, a recipe's paths mean the same: relative to its own folder.
        #expect(recipe.data.train == .shards("\(repositoryRoot)/Data/shapes/train-{0000..0003}.tar.zst"))
    }

    @Test func recipeMistakesAreReportedTogether() throws {
        let folder = temporaryFolder()
        try #"{"model": {"vision": {"patch_size": 7}}, "optimizer": {"lrr": 1}, "data": {"train": {"shards": "nope-*.tar"}, "batch_size": 0}}"#
            .write(toFile: "\(folder)/bad.json", atomically: true, encoding: .utf8)
        let error = #expect(throws: RecipeErrors.self) { try RunBuilder.load("\(folder)/bad.json") }
        let text = "\(error!)"
        #expect(text.contains("optimizer.lrr") && text.contains("did you mean 'lr'"))
        #expect(text.contains("data.batch_size"))
        // Value errors and missing files in the same report, not one after the other.
        #expect(text.contains("data.train.shards") && text.contains("matches no files"), "\(text)")
        #expect(error!.errors.map(\.path).sorted() == ["data.batch_size", "data.train.shards", "epochs", "optimizer.lrr"], "\(text)")
    }

    /// The reference in Recipes/README.md is generated from the schema; a stale copy fails here.
    @Test func theRecipeReferenceIsCurrent() throws {
        let committed = try String(contentsOfFile: "\(repositoryRoot)/Recipes/README.md", encoding: .utf8)
        #expect(committed == Recipe.reference(), "Recipes/README.md is stale: run `swift run train --recipe-reference > Recipes/README.md`")
        // It documents every section and the keys of every schedule kind.
        for key in ["`data.augmentation.color_jitter`", "| `synonym_replacement` |", "| `cooldown_steps` |", "| `min_lr_scale` |", "| `best_metric` |", "`distill`"] {
            #expect(committed.contains(key), "\(key) is not documented")
        }
    }

    /// What a run prints first: the step count and what bounds it, sizes, batch, augmentation.
    @Test func theRunSummarySaysWhatBoundsTheRun() throws {
        let runs = temporaryFolder()
        let recipe = try tinyRecipe(runs, name: "summary", steps: 30, extra: ["epochs=2"])
        let setup = try RunBuilder.contrastive(recipe, resolved: nil)
        let lines = RunSummary.lines(recipe, setup)
        #expect(lines.contains("training 12 steps: epochs=2 (6 per epoch) ends before max_steps=30"), "\(lines)")
        #expect(lines.contains { $0.hasPrefix("global batch: 16 samples per step (batch_size 16 × accumulation_steps 1)") }, "\(lines)")
        #expect(lines.contains("text augmentation: off"))
        #expect(lines.contains { $0.hasPrefix("image augmentation: random resized crop scale 0.9–1.0") }, "\(lines)")
        let capped = RunSummary.lines(try tinyRecipe(runs, name: "capped", steps: 5, extra: ["epochs=2"]), try RunBuilder.contrastive(try tinyRecipe(runs, name: "capped", steps: 5, extra: ["epochs=2"]), resolved: nil))
        #expect(capped.contains("training 5 steps: max_steps=5 ends before epochs=2 (12 steps)"), "\(capped)")
    }
}
