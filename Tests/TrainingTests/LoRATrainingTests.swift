import Foundation
import Testing
import Datasets
import Models
import NN
import Optim
import Tokenizers
import Torch
@testable import Training

/// A tiny random CLIP saved in CLIPModel layout with CLIP's tokenizer files: the base of the
/// LoRA runs, made once per process (subprocesses get its path, never make their own).
enum LoRABase {
    static let folder: String = {
        let folder = temporaryFolder("lorabase")
        var text = CLIPTextConfig()
        text.hiddenSize = 32; text.intermediateSize = 64; text.numHiddenLayers = 2; text.numAttentionHeads = 2
        var vision = CLIPVisionConfig()
        vision.hiddenSize = 32; vision.intermediateSize = 64; vision.numHiddenLayers = 2; vision.numAttentionHeads = 2
        vision.imageSize = 32; vision.patchSize = 8
        let clip = DualEncoder(kind: .clip, vision: CLIPVisionTransformer(vision), text: CLIPTextTransformer(text), projectionDim: 16)
        try! Pretrained.save(clip, to: folder)
        try! CLIPTokenizer.writeHuggingFaceFiles(fromOpenCLIPMerges: URL(fileURLWithPath: "\(repositoryRoot)/.deps/assets/bpe_simple_vocab_16e6.txt.gz"),
                                                 to: URL(fileURLWithPath: folder))
        return folder
    }()
}

/// The tiny shapes recipe on the LoRA base: q_proj, v_proj and fc1 adapted in both towers, the
/// projections and logit_scale trained whole.
func loraRecipe(_ runs: String, name: String, steps: Int, base: String = LoRABase.folder, extra: [String] = []) throws -> Recipe {
    let json = """
    {
      "name": "\(name)", "seed": 3,
      "model": {"checkpoint": "\(base)",
                "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj", "fc1"],
                         "modules_to_save": ["visual_projection", "text_projection", "logit_scale"]}},
      "data": {"train": {"shards": "\(TinyShapes.folder)/train-{0000..0001}.tar.zst"}, "val": {"shards": "\(TinyShapes.folder)/val-0000.tar.zst"},
               "batch_size": 16, "threads": 2},
      "optimizer": {"lr": 5e-3},
      "schedule": {"type": "cosine", "warmup_steps": 1},
      "eval": {"every_steps": 4, "every_epoch": false},
      "early_stopping": {"metric": "clip_val_loss", "mode": "min", "patience": 50},
      "checkpoint": {"directory": "\(runs)", "every_steps": 2},
      "max_steps": \(steps), "log_every_steps": 1
    }
    """
    return try Recipe.decode(try Recipe.applying(overrides: extra, to: Data(json.utf8), file: "test"), file: "test", defaultName: name)
}

func adapterWeights(_ folder: String) throws -> [String: Tensor] { try SafeTensors.load("\(folder)/\(PeftAdapter.weightsFile)") }

@Suite("LoRA training", .serialized)
struct LoRATrainingTests {
    static let adapted = ["q_proj", "v_proj", "fc1"]

    /// The base is frozen: only adapters and the modules to save have gradients and optimizer
    /// state, and after training the base's weights are still the checkpoint's.
    @Test func onlyAdaptersAndModulesToSaveTrain() throws {
        let runs = temporaryFolder()
        let setup = try RunBuilder.contrastive(try loraRecipe(runs, name: "frozen", steps: 3), resolved: nil)
        let model = try #require(setup.model as? DualEncoder)
        let trainable = Set(model.trainableParameters().map(\.name))
        let saved = ["visual_projection.weight", "text_projection.weight", "logit_scale"]
        #expect(trainable == Set(model.namedParameters().map(\.name).filter { Module.isAdapterParameter($0) } + saved))
        #expect(model.adaptedLayers().count == 2 * 2 * 3, "2 towers × 2 layers × q_proj, v_proj, fc1")
        #expect(model.adaptedLayers().allSatisfy { path, _ in Self.adapted.contains { path.hasSuffix("." + $0) } })
        #expect(Set(setup.optimizer.groups.flatMap(\.parameters).map(\.name)) == trainable)
        #expect(setup.notes.contains { $0.hasPrefix("LoRA: 12 layers adapted (r 4, alpha 8, scaling 2)") }, "\(setup.notes)")
        try Trainer(setup, resume: false).run()
        let stateNames = Set(setup.optimizer.stateDict().keys.map { $0.components(separatedBy: ".").dropLast().joined(separator: ".") })
        #expect(stateNames == trainable, "optimizer state for \(stateNames.symmetricDifference(trainable).sorted())")
        let base = try SafeTensors.load("\(LoRABase.folder)/model.safetensors")
        for (name, tensor) in model.stateDict() where !trainable.contains(name) {
            #expect(tensor.equal(base[name]!), "\(name) moved: the base is frozen")
        }
        #expect(!model.visualProjection.weight.equal(base["visual_projection.weight"]!), "a module to save trains")
        #expect(model.adaptedLayers().contains { $0.layer.loraB!.weight.abs().max().item(Double.self) > 0 }, "the adapters train")
    }

    /// best/ and last/ hold PEFT's files (no base weights) beside the training state; they load
    /// as a model that computes what the trained one does, and evaluates as the run did.
    /// The recipe's wise_ft after a LoRA run mixes the base with best/ merged (an adapter folder,
    /// not a config.json: once skipped as "no best/").
    @Test func wiseFTRunsAfterALoRARun() throws {
        let runs = temporaryFolder()
        let recipe = try loraRecipe(runs, name: "mixed", steps: 4, extra: ["wise_ft={\"alphas\": [0, 0.5, 1]}"])
        _ = try Trainer(try RunBuilder.contrastive(recipe, resolved: nil), resume: false).run()
        let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(runs)/mixed/wise_ft.json"))) as? [String: Any])
        #expect(report["alphas"] as? [Double] == [0, 0.5, 1], "\(report.keys.sorted())")
        #expect(FileManager.default.fileExists(atPath: "\(runs)/mixed/wise_ft.svg"))
    }

    @Test func aLoRARunSavesPEFTFilesThatLoadAndEvaluate() throws {
        let runs = temporaryFolder()
        let setup = try RunBuilder.contrastive(try loraRecipe(runs, name: "files", steps: 8), resolved: nil)
        let result = try Trainer(setup, resume: false).run()
        for folder in ["best", "last"] {
            for file in [PeftAdapter.configFile, PeftAdapter.weightsFile, Checkpoint.optimizerFile, Checkpoint.stateFile, "preprocessor_config.json",
                         "vocab.json", "merges.txt"] {
                #expect(FileManager.default.fileExists(atPath: "\(runs)/files/\(folder)/\(file)"), "\(folder)/\(file) is missing")
            }
            for file in ["config.json", "model.safetensors"] {
                #expect(!FileManager.default.fileExists(atPath: "\(runs)/files/\(folder)/\(file)"), "\(folder)/\(file): a LoRA checkpoint holds no whole model")
            }
        }
        let last = "\(runs)/files/last"
        let config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(last)/\(PeftAdapter.configFile)"))) as? [String: Any])
        #expect(config["peft_type"] as? String == "LORA" && config["r"] as? Int == 4 && config["lora_alpha"] as? Int == 8)
        #expect(config["base_model_name_or_path"] as? String == URL(fileURLWithPath: LoRABase.folder).standardizedFileURL.path)
        #expect(config["target_modules"] as? [String] == Self.adapted)
        #expect(config["modules_to_save"] as? [String] == ["visual_projection", "text_projection", "logit_scale"])
        #expect((config["auto_mapping"] as? [String: String])?["base_model_class"] == "CLIPModel")
        let keys = Set(try adapterWeights(last).keys)
        #expect(keys.contains("base_model.model.vision_model.encoder.layers.0.self_attn.q_proj.lora_A.weight"))
        #expect(keys.contains("base_model.model.text_model.encoder.layers.1.mlp.fc1.lora_B.weight"))
        #expect(keys.isSuperset(of: ["base_model.model.logit_scale", "base_model.model.visual_projection.weight"]))
        #expect(keys.count == 12 * 2 + 3)

        let loaded = try Pretrained.load(last)
        #expect(loaded.adapter?.adaptedLayers == 12 && loaded.directory == LoRABase.folder)
        guard case .dualEncoder(let model) = loaded.model else { Issue.record("not a dual encoder"); return }
        let trained = try #require(setup.model as? DualEncoder)
        trained.eval()
        let pixels = Tensor.randn([3, 3, 32, 32], generator: Generator(seed: 9))
        let (ids, mask) = try loaded.tokenizer().encode(["a red circle", "two blue squares on green", "a star"])
        withNoGrad {
            #expect(maxDifference(model.imageFeatures(pixels), trained.imageFeatures(pixels)) < 1e-5)
            #expect(maxDifference(model.textFeatures(ids: ids, attentionMask: mask), trained.textFeatures(ids: ids, attentionMask: mask)) < 1e-5)
            #expect(model.logitScale.equal(trained.logitScale))
        }
        // last/ is the model of the final evaluation (step 8).
        let metrics = try Evaluation.evaluate(model, loader: try #require(setup.validation), tokenizer: try loaded.tokenizer())
        #expect(abs(metrics["clip_val_loss"]! - result.metrics["clip_val_loss"]!) < 1e-4, "\(metrics) vs \(result.metrics)")
    }

    /// A LoRA run killed at a random step and resumed ends with the adapter of an uninterrupted run.
    @Test func killedAndResumedLoRARunIsBitIdentical() async throws {
        let runs = temporaryFolder()
        let base = LoRABase.folder, steps = 10
        await #expect(processExitsWith: .success) { [runs = runs as String, base = base as String, steps = steps as Int] in
            try Trainer(try RunBuilder.contrastive(try loraRecipe(runs, name: "uninterrupted", steps: steps, base: base), resolved: nil), resume: false).run()
        }
        var random = TestRandom("LoRA kill step", defaultSeed: 7)
        let killStep = Int.random(in: 3...(steps - 1), using: &random)
        await #expect(processExitsWith: .signal(SIGKILL)) { [runs = runs as String, base = base as String, steps = steps as Int, killStep = killStep as Int] in
            var setup = try RunBuilder.contrastive(try loraRecipe(runs, name: "interrupted", steps: steps, base: base), resolved: nil)
            setup.onStep = { step in if step == killStep { kill(getpid(), SIGKILL) } }
            try Trainer(setup, resume: false).run()
        }
        let killedAt = (try? Checkpoint.readState("\(runs)/interrupted/last").globalStep) ?? 0
        #expect(killedAt >= 2 && killedAt <= killStep)
        await #expect(processExitsWith: .success) { [runs = runs as String, base = base as String, steps = steps as Int, killedAt = killedAt as Int] in
            let trainer = try Trainer(try RunBuilder.contrastive(try loraRecipe(runs, name: "interrupted", steps: steps, base: base), resolved: nil), resume: true)
            guard trainer.state.globalStep == killedAt else { exit(3) }
            try trainer.run()
        }
        print("LoRA run killed at step \(killStep) (last checkpoint: step \(killedAt)), resumed to \(steps)")
        let a = try adapterWeights("\(runs)/uninterrupted/last"), b = try adapterWeights("\(runs)/interrupted/last")
        #expect(Set(a.keys) == Set(b.keys) && a.count == 27)
        for (key, t) in a { #expect(b[key]!.equal(t), "\(key) differs after resume") }
        let optimizerA = try SafeTensors.load("\(runs)/uninterrupted/last/\(Checkpoint.optimizerFile)")
        let optimizerB = try SafeTensors.load("\(runs)/interrupted/last/\(Checkpoint.optimizerFile)")
        for (key, t) in optimizerA { #expect(optimizerB[key]?.equal(t) == true, "optimizer \(key) differs after resume") }
    }

    /// Gradient checkpointing recomputes adapted layers with the same gradients; accumulation
    /// runs; a distillation student takes the adapters.
    @Test func loraWorksWithCheckpointingAccumulationAndDistillation() throws {
        let runs = temporaryFolder()
        func gradients(_ checkpointing: Bool) throws -> [String: Tensor] {
            let setup = try RunBuilder.contrastive(try loraRecipe(runs, name: "grad", steps: 1, extra: ["model.gradient_checkpointing=\(checkpointing)"]),
                                                   resolved: nil)
            #expect(setup.model.checkpointsLayers == checkpointing)
            let batch = try #require(try setup.train.epoch(0).next())
            _ = try setup.objective.forwardBackward([batch])
            return Dictionary(uniqueKeysWithValues: setup.model.trainableParameters().map { ($0.name, $0.tensor.grad!) })
        }
        let plain = try gradients(false), checkpointed = try gradients(true)
        #expect(plain.count == 27 && Set(plain.keys) == Set(checkpointed.keys))
        for (name, g) in plain { #expect(maxDifference(g, checkpointed[name]!) < 1e-6, "\(name)") }

        let accumulated = try Trainer(try RunBuilder.contrastive(try loraRecipe(runs, name: "accumulate", steps: 3,
                                                                                extra: ["optimizer.accumulation_steps=2", "data.batch_size=8"]),
                                                                 resolved: nil), resume: false).run()
        #expect(accumulated.metrics.isEmpty || accumulated.metrics["clip_val_loss"]?.isFinite == true)
        #expect(FileManager.default.fileExists(atPath: "\(runs)/accumulate/last/\(PeftAdapter.weightsFile)"))

        // The base model teaches its own adapted copy.
        let recipe = try loraRecipe(runs, name: "student", steps: 4, extra: [#"distill={"teacher": "\#(LoRABase.folder)", "feature_weight": 1}"#])
        let plan = try RunBuilder.distillation(recipe, resolved: recipe.resolvedJSON())
        #expect(plan.setup.adapter != nil && plan.setup.model.adaptedLayers().count == 12)
        let trainer = try Trainer(plan.setup, resume: false)
        try trainer.run()
        let report = try DistillationReport.measure(plan, trainer: trainer, teacherMetrics: [:])
        #expect(report.studentCheckpoint.hasSuffix("best") && report.studentMetrics["image_to_text_R@1"] != nil)
        #expect(FileManager.default.fileExists(atPath: "\(runs)/student/best/\(PeftAdapter.configFile)"))
    }

    /// Text distillation into all-MiniLM-L6-v2 itself with adapters on query and value: the
    /// student's base is model.text.checkpoint, saved as a BERT adapter and loaded back with it.
    @Test func aTextOnlyStudentTakesAdaptersOnItsBERT() throws {
        let folder = temporaryFolder()
        let sentences = try String(contentsOfFile: "\(repositoryRoot)/Data/sentences/train.jsonl", encoding: .utf8).split(separator: "\n")
        try sentences.prefix(16).joined(separator: "\n").write(toFile: "\(folder)/train.jsonl", atomically: true, encoding: .utf8)
        try sentences.dropFirst(16).prefix(8).joined(separator: "\n").write(toFile: "\(folder)/val.jsonl", atomically: true, encoding: .utf8)
        let minilm = "\(repositoryRoot)/.deps/assets/all-MiniLM-L6-v2"
        let json = """
        {
          "name": "minilm-lora", "seed": 0,
          "model": {"text": {"checkpoint": "\(minilm)", "pooling": "mean"}, "lora": {"r": 2, "alpha": 4, "target_modules": ["query", "value"]}},
          "distill": {"teacher": "\(minilm)", "feature_weight": 1.0, "logit_weight": 1.0, "contrastive_weight": 0.1},
          "data": {"train": {"manifest": "\(folder)/train.jsonl", "image_column": null}, "val": {"manifest": "\(folder)/val.jsonl", "image_column": null},
                   "batch_size": 8, "threads": 1},
          "optimizer": {"lr": 1e-3},
          "eval": {"every_steps": 2, "every_epoch": false},
          "checkpoint": {"directory": "\(folder)/runs"},
          "max_steps": 2, "log_every_steps": 1
        }
        """
        let plan = try RunBuilder.distillation(try Recipe.decode(Data(json.utf8), file: "test", defaultName: "minilm-lora"), resolved: nil)
        let student = try #require((plan.setup.objective as? TextDistillationObjective)?.student)
        #expect(student.adaptedLayers().count == 12 && plan.setup.adapter?.baseModelClass == "BertModel")
        #expect(student.trainableParameters().allSatisfy { Module.isAdapterParameter($0.name) })
        try Trainer(plan.setup, resume: false).run()
        let last = "\(folder)/runs/minilm-lora/last"
        #expect(FileManager.default.fileExists(atPath: "\(last)/\(PeftAdapter.weightsFile)") && FileManager.default.fileExists(atPath: "\(last)/vocab.txt"))
        #expect(!FileManager.default.fileExists(atPath: "\(last)/modules.json") && !FileManager.default.fileExists(atPath: "\(last)/config.json"))
        #expect(try adapterWeights(last).keys.contains("base_model.model.encoder.layer.5.attention.self.value.lora_B.weight"))
        let loaded = try Pretrained.load(last)
        guard case .textEncoder(let bert, let normalize) = loaded.model else { Issue.record("not a text encoder"); return }
        #expect(normalize && bert.pooling == .mean && loaded.adapter?.adaptedLayers == 12)
        let (ids, mask) = try loaded.tokenizer().encode(["A man is eating food.", "Two shapes on a lavender background."])
        student.eval()
        #expect(withNoGrad { maxDifference(bert.pooled(ids: ids, attentionMask: mask), student.pooled(ids: ids, attentionMask: mask)) } < 1e-5)
    }

    /// Two processes (threads here) with batch 16 train the adapters as one with batch 32.
    @Test func dataParallelLoRAEqualsOneProcess() throws {
        let runs = temporaryFolder()
        let common = ["early_stopping=null", "eval.every_steps=10", "checkpoint.every_steps=null"]
        let single = try RunBuilder.contrastive(try loraRecipe(runs, name: "one", steps: 6, extra: common + ["data.batch_size=32"]), resolved: nil)
        let hub = ThreadGroupHub(size: 2)
        let recipe = try loraRecipe(runs, name: "two", steps: 6, extra: common + ["data.batch_size=16"])
        let setups = try (0..<2).map { try RunBuilder.contrastive(recipe, resolved: recipe.resolvedJSON(), group: hub.group($0)) }
        try Trainer(single, resume: false).run()
        nonisolated(unsafe) let shared = setups
        _ = try onThreads(2) { rank in try Trainer(shared[rank], resume: false).run() }
        let one = try adapterWeights("\(runs)/one/last"), two = try adapterWeights("\(runs)/two/last")
        #expect(Set(one.keys) == Set(two.keys) && one.count == 27)
        var worst = 0.0
        for (key, a) in one { worst = max(worst, maxDifference(a, two[key]!)) }
        #expect(worst < 1e-5, "largest adapter difference after 6 steps: \(worst)")
    }

    /// Each mistake is refused with the problem named.
    @Test func loraMistakesAreRefusedByName() throws {
        let runs = temporaryFolder()
        func problems(_ extra: [String], base: String = LoRABase.folder) -> String {
            do {
                _ = try RunBuilder.contrastive(try loraRecipe(runs, name: "bad", steps: 2, base: base, extra: extra), resolved: nil)
                return "accepted"
            } catch { return "\(error)" }
        }
        #expect(problems(["model.lora.r=0"]).contains("model.lora.r: must be ≥ 1"))
        #expect(problems(["model.lora.r=-2"]).contains("model.lora.r: must be ≥ 1"))
        #expect(problems(["model.lock_vision.unlocked_layers=1"]).contains("model.lock_vision: not allowed together with model.lora"))
        let target = problems([#"model.lora.target_modules=["qproj", "fc1"]"#])
        #expect(target.contains("model.lora.target_modules: 'qproj' matches no linear layer of the vision and text towers (did you mean 'q_proj'?)"), "\(target)")
        #expect(target.contains("fc1, fc2, k_proj, out_proj, q_proj, v_proj"), "\(target)")
        let towers = problems([#"model.lora.towers="text""#, #"model.lora.target_modules=["visual_projection"]"#])
        #expect(towers.contains("'visual_projection' matches no linear layer of the text tower"), "\(towers)")
        let saved = problems([#"model.lora.modules_to_save=["logit_scal"]"#])
        #expect(saved.contains("model.lora.modules_to_save: 'logit_scal' names no module or parameter") && saved.contains("logit_scale"), "\(saved)")
        #expect(problems(["loss.type=\"siglip\""]).contains("loss.type siglip needs a learned logit_bias"))
        // Without a pretrained whole model there is no base to name.
        let scratch = try? tinyRecipe(runs, name: "scratch", steps: 2, extra: [#"model.lora={"r": 2}"#])
        #expect(scratch == nil, "a LoRA recipe without model.checkpoint decoded")
        do { _ = try tinyRecipe(runs, name: "scratch", steps: 2, extra: [#"model.lora={"r": 2}"#]) } catch {
            #expect("\(error)".contains("model.lora: adapts a pretrained model: set model.checkpoint"), "\(error)")
        }
        // An adapter folder as the base of another adapter.
        let first = try RunBuilder.contrastive(try loraRecipe(runs, name: "first", steps: 2, extra: ["early_stopping=null"]), resolved: nil)
        try Trainer(first, resume: false).run()
        #expect(problems([], base: "\(runs)/first/last").contains("is a LoRA adapter folder, and model.lora needs a plain base model"))
        // The towers a recipe left out are frozen whole and pinned to inference.
        let visionOnly = try RunBuilder.contrastive(try loraRecipe(runs, name: "vision", steps: 2, extra: [#"model.lora.towers="vision""#,
                                                                                                       "model.lora.modules_to_save=[]"]), resolved: nil)
        let encoder = try #require(visionOnly.model as? DualEncoder)
        #expect(encoder.textModel.pinnedToInference && !encoder.visionModel.pinnedToInference)
        #expect(!encoder.trainableParameters().contains { $0.name.hasPrefix("text_") })
        #expect(encoder.adaptedLayers().allSatisfy { $0.path.hasPrefix("vision_model.") })
    }
}
