import Foundation
import Testing
import Datasets
import Models
import NN
import Torch
@testable import Training

/// A manifest of `count` small JPEGs in `folder`, rows `missing` pointing at files that do not exist.
func jpegManifest(_ folder: String, count: Int, missing: Set<Int> = []) throws -> String {
    let encoder = JPEGEncoder()
    var rows = "image_path,caption\n"
    for i in 0..<count {
        var random = SeededRandom(seed: 5, epoch: 0, index: i)
        let pixels = (0..<(32 * 32 * 3)).map { _ in UInt8(random.uniform(0, 255)) }
        let name = missing.contains(i) ? "gone-\(i).jpg" : "\(i).jpg"
        if !missing.contains(i) {
            try Data(try encoder.encode(RGBImage(width: 32, height: 32, pixels: pixels))).write(to: URL(fileURLWithPath: "\(folder)/\(name)"))
        }
        rows += "\(name),a picture numbered \(i)\n"
    }
    try rows.write(toFile: "\(folder)/m.csv", atomically: true, encoding: .utf8)
    return "\(folder)/m.csv"
}

/// Run folders are not lost or shared by mistake, runs that cannot work stop before their first
/// step (or with everything saved), and nothing loops or traps (issue 16).
@Suite("Run safety", .serialized)
struct RunSafetyTests {
    /// A fresh run refuses a folder that holds a previous run; `.overwrite` clears it; `.resume`
    /// needs a checkpoint; `resumeIfPossible` starts afresh and says so.
    @Test func runFoldersAreProtected() throws {
        let runs = temporaryFolder()
        let recipe = try tinyRecipe(runs, name: "kept", steps: 2, extra: ["eval.every_steps=2"])
        try Trainer(try RunBuilder.contrastive(recipe, resolved: nil), resume: false).run()
        let error = #expect(throws: TrainingError.self) { try Trainer(try RunBuilder.contrastive(recipe, resolved: nil), resume: false) }
        #expect(error?.message.contains("holds a previous run (last/ at step 2)") == true, "\(error!)")
        #expect(error?.message.contains("--resume") == true && error?.message.contains("--overwrite") == true)
        #expect(FileManager.default.fileExists(atPath: "\(runs)/kept/best/model.safetensors"), "a refused start must not touch the folder")

        // --overwrite: the previous run is gone (best/ included), a new one starts.
        let fresh = try Trainer(try RunBuilder.contrastive(recipe, resolved: nil), start: .overwrite)
        #expect(!FileManager.default.fileExists(atPath: "\(runs)/kept/best") && fresh.state.globalStep == 0)
        try fresh.run()
        #expect(try Checkpoint.readState("\(runs)/kept/last").globalStep == 2)
        #expect(try FileManager.default.contentsOfDirectory(atPath: runs).allSatisfy { !$0.hasPrefix(".kept.deleted") })

        // --resume with nothing to continue is an error; "resume": "latest" starts afresh.
        let other = try tinyRecipe(runs, name: "nothing", steps: 2)
        let missing = #expect(throws: TrainingError.self) { try Trainer(try RunBuilder.contrastive(other, resolved: nil), start: .resume) }
        #expect(missing?.message.contains("has no last/ checkpoint to continue") == true, "\(missing!)")
        let latest = try Trainer(try RunBuilder.contrastive(other, resolved: nil), start: .resumeIfPossible)
        #expect(latest.state.globalStep == 0)
    }

    /// Two writers in one run folder: the second is refused with the first one's PID.
    @Test func aSecondWriterIsRefusedWithTheHoldersPID() throws {
        let runs = temporaryFolder()
        let recipe = try tinyRecipe(runs, name: "shared", steps: 2)
        let first = try Trainer(try RunBuilder.contrastive(recipe, resolved: nil), resume: false)
        for start in [RunStart.resumeIfPossible, .overwrite] {
            let error = #expect(throws: TrainingError.self) { try Trainer(try RunBuilder.contrastive(recipe, resolved: nil), start: start) }
            #expect(error?.message.contains("another process (PID \(getpid())) is training in") == true, "\(error!)")
        }
        withExtendedLifetime(first) {}
    }

    /// A resume whose recipe changes the training itself is refused, listing each change; one
    /// that changes only evaluation or length warns, and the old recipe.json is kept.
    @Test func resumingWithAChangedRecipe() throws {
        let runs = temporaryFolder()
        func recipe(_ extra: [String]) throws -> (Recipe, Data) {
            let r = try tinyRecipe(runs, name: "changing", steps: 2, extra: ["world_size=1"] + extra)   // as recipe.json records it
            return (r, r.resolvedJSON())
        }
        let (original, json) = try recipe([])
        try Trainer(try RunBuilder.contrastive(original, resolved: json), resume: false).run()

        let (changed, changedJSON) = try recipe(["optimizer.lr=0.01", "data.batch_size=8"])
        let error = #expect(throws: TrainingError.self) { try Trainer(try RunBuilder.contrastive(changed, resolved: changedJSON), resume: true) }
        #expect(error?.message.contains("optimizer.lr: 0.002 → 0.01") == true, "\(error!)")
        #expect(error?.message.contains("data.batch_size: 16 → 8") == true, "\(error!)")

        let (longer, longerJSON) = try recipe(["max_steps=4", "eval.every_steps=2"])
        let resumed = try Trainer(try RunBuilder.contrastive(longer, resolved: longerJSON), resume: true)
        #expect(resumed.state.globalStep == 2)
        #expect(FileManager.default.contents(atPath: "\(runs)/changing/recipe.step-2.json") == json, "the earlier recipe is kept")
        #expect(FileManager.default.contents(atPath: "\(runs)/changing/recipe.json") == longerJSON)
        let warnings = try Trainer.checkResumable(saved: json, current: longerJSON, folder: "f")
        #expect(warnings.contains("resuming with a changed setting: max_steps: 2 → 4") && warnings.contains { $0.contains("run's length changed") }, "\(warnings)")
    }

    /// Names that are not one folder, runs that would save nothing, sizes that overflow, image
    /// sizes a tower cannot take: refused when the recipe is read, all at once.
    @Test func recipesThatCannotWorkAreRefusedUpFront() throws {
        func problems(_ overrides: [String]) -> [String] {
            let json = #"{"data": {"train": {"shards": "t"}}, "max_steps": 10}"#
            do {
                let data = try Recipe.applying(overrides: overrides, to: Data(json.utf8))
                _ = try Recipe.decode(data, file: "r", defaultName: "r")
                return []
            } catch {
                return error.errors.map(\.path)
            }
        }
        for name in ["..", ".", "", "   ", " x", ".hidden", "a/b"] {
            #expect(problems(["name=\"\(name)\""]) == ["name"], "name \"\(name)\"")
        }
        #expect(problems(["checkpoint.keep_last=false"]) == ["checkpoint.keep_last"])   // no data.val: nothing would be saved
        #expect(problems(["checkpoint.keep_last=false", "data.val.shards=v"]).isEmpty)
        #expect(problems(["data.batch_size=4611686018427387904", "optimizer.accumulation_steps=4"]) == ["data.batch_size"])
        #expect(problems(["epochs=4611686018427387904"]) == ["epochs"])
        #expect(problems(["data.image_size=64"]) == ["data.image_size"])   // the ViT is built for 224
        #expect(problems(["model.text.max_position_embeddings=1"]) == ["model.text.max_position_embeddings"])
    }

    /// Duplicate zero-shot classes are an error before any training.
    @Test func duplicateClassNamesAreRefused() throws {
        let folder = temporaryFolder()
        try #"{"classes": ["circle", "square", "circle"], "templates": ["a {}."]}"#.write(toFile: "\(folder)/c.json", atomically: true, encoding: .utf8)
        let error = #expect(throws: DataFileError.self) { try ZeroShotClasses.load("\(folder)/c.json") }
        #expect(error?.reason.contains("\"circle\" more than once") == true)
    }

    /// Skipped samples make epochs shorter than planned; `epochs` still ends the run on time. An
    /// epoch with no usable sample is an error, not an endless loop.
    @Test func epochsAreHonouredAndEmptyEpochsStop() throws {
        let folder = temporaryFolder()
        let manifest = try jpegManifest(folder, count: 48, missing: Set(0..<16))   // 16 of 48 rows are missing
        let recipe = try tinyRecipe(folder, name: "skips", steps: 1000, extra: [
            "max_steps=null", "epochs=2", #"data.train={"manifest": "\#(manifest)"}"#, "data.batch_size=8",
            "eval.every_steps=null", "eval.every_epoch=false", "early_stopping=null", "checkpoint.every_steps=null", "data.val=null",
        ])
        let setup = try RunBuilder.contrastive(recipe, resolved: nil)
        #expect(setup.stepsPerEpoch == 6 && setup.totalSteps == 12)   // planned from 48 rows
        let trainer = try Trainer(setup, resume: false)
        try trainer.run()
        #expect(trainer.state.epoch == 2 && trainer.state.globalStep == 8, "32 usable samples: 4 steps an epoch, 2 epochs")

        let empty = temporaryFolder()
        let nothing = try jpegManifest(empty, count: 16, missing: Set(0..<16))
        let bad = try tinyRecipe(empty, name: "empty", steps: 5, extra: [
            #"data.train={"manifest": "\#(nothing)"}"#, "data.batch_size=8", "data.val=null", "early_stopping=null",
            "eval.every_steps=null", "eval.every_epoch=false",
        ])
        let error = #expect(throws: TrainingError.self) { try Trainer(try RunBuilder.contrastive(bad, resolved: nil), resume: false).run() }
        #expect(error?.message.contains("epoch 0 made no step") == true && error?.message.contains("16 samples were skipped") == true, "\(error!)")
    }

    /// An evaluation that fails saves last/ first: the training done is not lost.
    @Test func aFailedEvaluationSavesLastFirst() throws {
        let runs = temporaryFolder()
        let recipe = try tinyRecipe(runs, name: "failing-eval", steps: 8, extra: ["checkpoint.every_steps=null"])
        var setup = try RunBuilder.contrastive(recipe, resolved: nil)
        let objective = HookedObjective(setup.objective)
        objective.failEvaluationAt = 1   // the second evaluation (step 8) throws
        setup.objective = objective
        #expect(throws: HookedObjective.Failure.self) { try Trainer(setup, resume: false).run() }
        #expect(try Checkpoint.readState("\(runs)/failing-eval/last").globalStep == 8)
    }

    /// A broken teacher is named as the cause of non-finite losses, not the learning rate.
    @Test func aNonFiniteTeacherIsBlamedForNonFiniteLosses() throws {
        let runs = temporaryFolder()
        let teacherRecipe = try tinyRecipe(runs, name: "teacher", steps: 2, extra: ["early_stopping=null"])
        try Trainer(try RunBuilder.contrastive(teacherRecipe, resolved: nil), resume: false).run()
        let student = try tinyRecipe(runs, name: "student", steps: 4, extra: [
            #"distill={"teacher": "\#(runs)/teacher/last", "feature_weight": 1}"#, "max_non_finite_steps=1",
        ])
        let plan = try RunBuilder.distillation(student, resolved: nil)
        guard case .dualEncoder(let teacher) = plan.teacher.checkpoint.model else { Issue.record("not a dual encoder"); return }
        withNoGrad { teacher.textProjection.weight.fill_(Double.nan) }
        let error = #expect(throws: TrainingError.self) { try Trainer(plan.setup, resume: false).run() }
        #expect(error?.message.contains("the teacher's embeddings are not finite") == true, "\(error!)")
        #expect(error?.message.contains("lower optimizer.lr") == false)
    }

    /// The step estimate grows with the image size as a transformer's does, and a step that
    /// would take minutes or not fit in memory is warned about before training.
    @Test func stepCostsAreEstimatedAndWarned() throws {
        func cost(_ imageSize: Int) throws -> StepCost {
            var config = CLIPVisionConfig()
            (config.imageSize, config.patchSize, config.hiddenSize, config.numHiddenLayers, config.numAttentionHeads, config.intermediateSize) = (imageSize, 16, 32, 2, 2, 64)
            var text = CLIPTextConfig()
            (text.hiddenSize, text.numHiddenLayers, text.numAttentionHeads, text.intermediateSize, text.vocabSize) = (32, 1, 2, 64, 100)
            let model = DualEncoder(kind: .clip, vision: CLIPVisionTransformer(config), text: CLIPTextTransformer(text), projectionDim: 16)
            return try #require(StepCost.estimate(model, samplesPerStep: 64))
        }
        let small = try cost(64), large = try cost(2048)
        // 1024× the patches: the attention's T² term dominates.
        #expect(large.flops > 1000 * small.flops && large.bytes > 1000 * small.bytes)
        let (_, quiet) = small.describe(gigaflops: 100, availableBytes: 16e9)
        #expect(quiet.isEmpty)
        let (line, warnings) = large.describe(gigaflops: 100, availableBytes: 16e9)
        #expect(line.hasPrefix("estimated step:"))
        #expect(warnings.contains { $0.contains("a step would take about") } && warnings.contains { $0.contains("GB are available") }, "\(warnings)")
    }

    /// Ctrl-C while the loader waits for data ends the wait (the loop then saves last/).
    @Test func waitingForDataCanBeInterrupted() throws {
        let folder = temporaryFolder()
        let manifest = try jpegManifest(folder, count: 16)
        let loader = DataLoader(source: .manifest(try ManifestSource(path: manifest)), pipeline: ImagePipeline(preprocessing: ImagePreprocessing(size: 32)),
                                options: DataLoaderOptions(batchSize: 8, threads: 1))
        #expect(throws: LoadingInterrupted.self) { _ = try loader.epoch(0).next { true } }
        #expect(try loader.epoch(0).next { false }?.count == 8)
    }

    /// Seeded random mutations of a real recipe: each decodes or is refused, never traps.
    @Test func mutatedRecipesNeverTrap() throws {
        var random = TestRandom("recipe mutations", defaultSeed: 16)
        let original = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(repositoryRoot)/Recipes/clip-finetune.json"))) as! [String: Any]
        let values: [Any] = [NSNull(), true, 0, -1, Int.max, Int.min, 1e308, -0.0, 2.5, "", "x", "../../..", String(repeating: "a", count: 10_000),
                             [], [1, 2], ["a": 1], [[[[[[[]]]]]]], 4611686018427387904, 1e-320]
        func mutate(_ value: Any, depth: Int) -> Any {
            guard var object = value as? [String: Any], !object.isEmpty else { return values.randomElement(using: &random)! }
            let keys = object.keys.sorted()
            let key = keys.randomElement(using: &random)!
            switch Int.random(in: 0..<5, using: &random) {
            case 0: object[key] = nil
            case 1: object[key + "_"] = values.randomElement(using: &random)!
            case 2: object[key] = values.randomElement(using: &random)!
            default: object[key] = depth < 4 ? mutate(object[key]!, depth: depth + 1) : values.randomElement(using: &random)!
            }
            return object
        }
        var decoded = 0, refused = 0
        for _ in 0..<3_000 {
            var recipe: Any = original
            for _ in 0..<Int.random(in: 1...4, using: &random) { recipe = mutate(recipe, depth: 0) }
            let data = try JSONSerialization.data(withJSONObject: recipe)
            do {
                let r = try Recipe.decode(data, file: "fuzz", defaultName: "fuzz")
                _ = r.resolvedJSON()
                decoded += 1
            } catch {
                #expect(!error.errors.isEmpty)
                refused += 1
            }
        }
        print("recipe mutations: \(decoded) decoded, \(refused) refused, 0 traps")
        #expect(decoded > 0 && refused > 0)
    }
}

/// The rest of issue 16's cases: an empty validation set, a teacher with a broken config and
/// a run folder that is a file.
@Suite("Run safety: validation data, teachers, folders", .serialized)
struct RunSafetyEdgeTests {
    /// Validation data with no rows is refused before training; one whose every sample is bad
    /// fails at the first evaluation with last/ saved first.
    @Test func emptyValidationSets() throws {
        let folder = temporaryFolder()
        try "image_path,caption\n".write(toFile: "\(folder)/none.csv", atomically: true, encoding: .utf8)
        let empty = try tinyRecipe(folder, name: "empty-val", steps: 2, extra: [#"data.val={"manifest": "\#(folder)/none.csv"}"#])
        let refused = #expect(throws: (any Error).self) { _ = try RunBuilder.contrastive(empty, resolved: nil) }
        #expect(refused.map { "\($0)" }?.contains("none.csv") == true, "the message names the file: \(String(describing: refused))")
        #expect(!FileManager.default.fileExists(atPath: "\(folder)/empty-val"), "nothing was started")

        let broken = try jpegManifest(folder, count: 8, missing: Set(0..<8))
        let unusable = try tinyRecipe(folder, name: "bad-val", steps: 4, extra: [#"data.val={"manifest": "\#(broken)"}"#, "checkpoint.every_steps=null",
                                                                               "eval.zeroshot=null", "early_stopping=null"])
        let error = #expect(throws: (any Error).self) { try Trainer(try RunBuilder.contrastive(unusable, resolved: nil), resume: false).run() }
        #expect(error.map { "\($0)" }?.contains("has no usable samples (8 skipped)") == true, "\(String(describing: error))")
        #expect(try Checkpoint.readState("\(folder)/bad-val/last").globalStep == 4, "the training done is saved before the failure")
    }

    /// A teacher whose config.json is broken is an error naming the file and key, not a trap.
    @Test func aTeacherWithABrokenConfigIsRefused() throws {
        let runs = temporaryFolder()
        try Trainer(try RunBuilder.contrastive(try tinyRecipe(runs, name: "teacher", steps: 2, extra: ["early_stopping=null"]), resolved: nil), resume: false).run()
        let cases: [(String, (inout [String: Any]) -> Void, String)] = [
            ("channels", { c in var v = c["vision_config"] as! [String: Any]; v["num_channels"] = 0; c["vision_config"] = v }, "vision_config.num_channels"),
            ("projection", { $0["projection_dim"] = -4 }, "projection_dim"),
            ("vocabulary", { c in var t = c["text_config"] as! [String: Any]; t["vocab_size"] = 100_000_000_000_000; c["text_config"] = t }, "text_config.vocab_size"),
        ]
        for (label, change, key) in cases {
            let teacher = "\(runs)/teacher-\(label)"
            try FileManager.default.copyItem(atPath: "\(runs)/teacher/last", toPath: teacher)
            var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(teacher)/config.json"))) as! [String: Any]
            change(&config)
            try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: "\(teacher)/config.json"))
            let student = try tinyRecipe(runs, name: "student-\(label)", steps: 2, extra: [#"distill={"teacher": "\#(teacher)"}"#])
            let error = #expect(throws: (any Error).self) { _ = try RunBuilder.distillation(student, resolved: nil) }
            let message = error.map { "\($0)" } ?? ""
            #expect(message.contains("config.json") && message.contains(key), "\(label): \(message)")
        }
    }

    /// A run folder (or checkpoint directory) that is a file: said plainly, nothing changed.
    @Test func aRunFolderThatIsAFile() throws {
        let runs = temporaryFolder()
        try "not a folder".write(toFile: "\(runs)/taken", atomically: true, encoding: .utf8)
        let recipe = try tinyRecipe(runs, name: "taken", steps: 2)
        let error = #expect(throws: (any Error).self) { _ = try Trainer(try RunBuilder.contrastive(recipe, resolved: nil), resume: false) }
        let message = error.map { "\($0)" } ?? ""
        #expect(message.contains("\(runs)/taken") && message.contains("is a file") && !message.contains("NSCocoaErrorDomain"), "\(message)")
        #expect(try String(contentsOfFile: "\(runs)/taken", encoding: .utf8) == "not a folder")

        let parent = try tinyRecipe(runs, name: "inside", steps: 2, extra: ["checkpoint.directory=\"\(runs)/taken\""])
        let nested = #expect(throws: (any Error).self) { _ = try Trainer(try RunBuilder.contrastive(parent, resolved: nil), resume: false) }
        let said = nested.map { "\($0)" } ?? ""
        #expect(said.contains("taken") && said.contains("is a file") && !said.contains("NSCocoaErrorDomain"), "\(said)")
    }
}
