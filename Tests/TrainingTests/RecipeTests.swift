import Foundation
import Testing
import Datasets
@testable import Training

@Suite("Recipe")
struct RecipeTests {
    /// The project's default recipe, read from Recipes/clip-finetune.json (not a copy that can drift).
    static let example = try! String(contentsOfFile: "\(repositoryRoot)/Recipes/clip-finetune.json", encoding: .utf8)

    /// The smallest valid recipe.
    static let minimal = #"{"data": {"train": {"shards": "train.tar"}}, "max_steps": 100}"#

    func decode(_ json: String) throws(RecipeErrors) -> Recipe {
        try Recipe.decode(Data(json.utf8), file: "test.json", defaultName: "test")
    }

    /// The problems `json` has (empty when it decodes).
    func problems(_ json: String) -> [RecipeError] {
        do {
            _ = try decode(json)
            return []
        } catch {
            return error.errors
        }
    }

    /// Messages at `path`.
    func messages(_ json: String, at path: String) -> [String] {
        problems(json).filter { $0.path == path }.map(\.message)
    }

    /// The minimal recipe with `extra` (JSON members) added at the top level.
    func minimal(plus extra: String) -> String {
        #"{"data": {"train": {"shards": "train.tar"}}, "max_steps": 100, \#(extra)}"#
    }

    // MARK: Decoding

    @Test func exampleRecipeDecodes() throws {
        let r = try decode(Self.example)
        #expect(r.name == "clip-finetune")
        #expect(r.seed == 0)
        #expect(r.model.checkpoint == nil)
        #expect(r.model.vision.checkpoint == nil)
        let v = r.model.vision.config
        #expect([v.imageSize, v.patchSize, v.hiddenSize, v.numHiddenLayers, v.numAttentionHeads, v.intermediateSize] as [Int] == [64, 8, 192, 4, 3, 768])
        #expect(v.hiddenAct == .quickGELU)
        #expect(r.model.text.checkpoint == RecipePathResolution.assetsFolder + "/all-MiniLM-L6-v2")   // @assets/ always expands
        #expect(r.model.text.pooling == .mean)
        #expect(r.model.text.tokenizer == nil)
        #expect(r.model.projectionDim == 256)
        #expect(r.model.logitScaleInit == 2.6592)
        #expect(r.model.lockVision.unlockedLayers == -1)
        #expect(r.model.lockText.unlockedLayers == 1)

        #expect(r.data.train == .shards("../Data/shapes/train-{0000..0003}.tar.zst"))   // relative paths stay so without a recipe folder
        #expect(r.data.val == .shards("../Data/shapes/val-0000.tar.zst"))
        #expect(r.data.imageSize == nil)
        #expect(r.data.batchSize == 128)
        #expect(r.data.threads == 2)
        #expect(r.data.shuffleBuffer == 2000)
        #expect(r.data.badSamples == .skip)
        #expect(r.data.augmentation.randomResizedCrop?.scale == [0.8, 1.0])
        #expect(r.data.augmentation.randomResizedCrop?.ratio == [0.75, 1.3333333333333333])
        #expect(r.data.augmentation.horizontalFlip == 0)
        #expect(r.data.augmentation.rotation == nil)
        #expect(r.data.augmentation.colorJitter == nil)

        #expect(r.loss.type == .clip)
        #expect(r.optimizer.type == .adamw)
        #expect(r.optimizer.lr == 1e-3)
        #expect(r.optimizer.weightDecay == 0.1)
        #expect(r.optimizer.gradClip == 1.0)
        #expect(r.optimizer.betas == [0.9, 0.98])
        #expect(r.schedule.kind == .cosine)
        #expect(r.schedule.warmupSteps == 30)
        #expect(r.eval.everySteps == 124)
        #expect(!r.eval.everyEpoch)
        #expect(r.eval.zeroshot == Recipe.ZeroShot(classes: "../Data/shapes/classes.json"))
        let stopping = try #require(r.earlyStopping)
        #expect(stopping.watch.metric == "image_to_text_R@1")
        #expect(stopping.watch.mode == .max)
        #expect(stopping.patience == 4)
        #expect(stopping.minDelta == 0)
        #expect(r.epochs == 8)
        #expect(r.maxSteps == nil)
        #expect(r.precision == .fp32)
        #expect(r.resume == nil)
    }

    @Test func defaultsWhenSectionsAreOmitted() throws {
        let r = try decode(Self.minimal)
        #expect(r == Recipe(name: "test", train: .shards("train.tar"), maxSteps: 100))
        // The documented defaults, spelled out so that a changed default fails here.
        #expect(r.name == "test" && r.seed == 0 && r.epochs == nil)
        #expect(r.model.checkpoint == nil && r.model.projectionDim == 512 && r.model.logitScaleInit == 2.6592)
        let v = r.model.vision.config
        #expect([v.imageSize, v.patchSize, v.hiddenSize, v.numHiddenLayers, v.numAttentionHeads, v.intermediateSize] as [Int] == [224, 32, 768, 12, 12, 3072])
        #expect(v.hiddenAct == .quickGELU)
        let t = r.model.text.sizes
        #expect([t.vocabSize, t.hiddenSize, t.numHiddenLayers, t.numAttentionHeads, t.intermediateSize, t.maxPositionEmbeddings] as [Int] == [49408, 512, 12, 8, 2048, 77])
        #expect(t.hiddenAct == .quickGELU && r.model.text.pooling == .pooler && r.model.text.tokenizer == nil)
        #expect(r.model.lockVision.unlockedLayers == -1 && r.model.lockText.unlockedLayers == -1)
        #expect(r.data.val == nil && r.data.imageSize == nil)
        #expect(r.data.batchSize == 64 && r.data.threads == 2 && r.data.shuffleBuffer == 2000 && r.data.badSamples == .skip)
        #expect(r.data.augmentation.randomResizedCrop?.scale == [0.9, 1.0])
        #expect(r.data.augmentation.randomResizedCrop?.ratio == [0.75, 1.3333333333333333])
        #expect(r.data.textAugmentation == TextAugmentationConfig())
        #expect(r.data.textAugmentation.randomDeletion == 0 && !r.data.cacheTeacher)
        #expect(r.loss.type == .clip && r.loss.logitScaleMax == 4.605170185988092)
        let o = r.optimizer
        #expect(o.type == .adamw && o.lr == 5e-4 && o.betas == [0.9, 0.98] && o.eps == 1e-6 && o.weightDecay == 0.2)
        #expect(o.momentum == 0.9 && !o.nesterov && !o.noDecayEmbeddings && o.gradClip == 1.0 && o.accumulationSteps == 1)
        #expect(r.schedule.kind == .cosine && r.schedule.warmupSteps == 0)
        let p = r.schedule.plateau
        #expect(p.watch == Recipe.WatchedMetric() && p.factor == 0.1 && p.patience == 10 && p.threshold == 1e-4 && p.cooldown == 0 && p.minLRScale == 0)
        #expect(r.eval.everySteps == nil && r.eval.everyEpoch && r.eval.retrieval && r.eval.zeroshot == nil && r.eval.batchSize == nil)
        #expect(r.earlyStopping == nil)
        #expect(r.checkpoint.directory == "Checkpoints" && r.checkpoint.keepBest && r.checkpoint.keepLast && r.checkpoint.everySteps == nil)
        #expect(r.checkpoint.best == Recipe.WatchedMetric())
        #expect(r.precision == .fp32 && r.logEverySteps == 10 && r.maxNonFiniteSteps == 5 && r.resume == nil)
    }

    @Test func nullsTurnOptionalPartsOff() throws {
        let r = try decode(#"""
        {"data": {"train": {"shards": "t.tar"}, "augmentation": {"random_resized_crop": null}, "val": null},
         "optimizer": {"grad_clip": null}, "early_stopping": null, "epochs": 1, "max_steps": null, "resume": "latest"}
        """#)
        #expect(r.data.augmentation.randomResizedCrop == nil)
        #expect(r.optimizer.gradClip == nil)
        #expect(r.earlyStopping == nil)
        #expect(r.maxSteps == nil && r.epochs == 1)
        #expect(r.resume == .latest)
    }

    @Test func manifestSourceAndOptionalSections() throws {
        let r = try decode(#"""
        {"model": {"checkpoint": "hf/clip-vit-b32", "lock_vision": {"unlocked_layers": 0}},
         "data": {"train": {"manifest": "train.tsv", "image_column": "file", "separator": "\t", "label_column": "label"},
                  "augmentation": {"rotation": {"probability": 0.5, "degrees": 15, "fill": [255, 255, 255]},
                                   "color_jitter": {"probability": 0.8, "brightness": 0.4, "hue": 0.1}}},
         "loss": {"type": "siglip"}, "optimizer": {"type": "sgd", "nesterov": true, "momentum": 0.8},
         "schedule": {"type": "const_cooldown", "cooldown_steps": 50, "cooldown_power": 2},
         "precision": "bf16", "max_steps": 500}
        """#)
        #expect(r.model.checkpoint == "hf/clip-vit-b32")
        #expect(r.model.lockVision.unlockedLayers == 0)
        var manifest = Recipe.Manifest(path: "train.tsv")
        manifest.imageColumn = "file"
        manifest.separator = "\t"
        manifest.labelColumn = "label"
        #expect(r.data.train == .manifest(manifest))
        #expect(r.data.augmentation.rotation?.fill == [255, 255, 255])
        #expect(r.data.augmentation.rotation?.degrees == 15)
        #expect(r.data.augmentation.colorJitter?.brightness == 0.4)
        #expect(r.data.augmentation.colorJitter?.contrast == 0)
        #expect(r.loss.type == .siglip && r.optimizer.type == .sgd && r.optimizer.nesterov)
        #expect(r.schedule.kind == .constantCooldown(cooldownSteps: 50, power: 2, endLR: 0))
        #expect(r.precision == .bf16)
    }

    // MARK: Errors

    @Test func everyMistakeInOneFileIsReported() throws {
        let json = #"""
        {
          "name": "many-mistakes",
          "modle": {},
          "model": {"vision": {"patch_sise": 16, "hidden_act": "gelu_fast"}, "text": {"pooling": "max"}},
          "data": {"train": {"shards": "a.tar", "manifest": "b.csv"}, "batch_size": 0, "threads": 1.5,
                   "augmentation": {"horizontal_flip": 1.5, "random_resized_crop": {"scale": [1.0, 0.5]}}},
          "optimizer": {"lrr": 0.001, "lr": "fast", "type": "adam", "accumulation_steps": 0},
          "schedule": {"type": "step", "warmup": 10},
          "early_stopping": {"patience": 0, "mode": "maximum"},
          "checkpoint": {"keep_best": "yes"}
        }
        """#
        let thrown = #expect(throws: RecipeErrors.self) { try decode(json) }
        let errors = try #require(thrown).errors
        let expected: [(String, String)] = [
            ("checkpoint.keep_best", #"expected true or false, found "yes""#),
            ("data.augmentation.horizontal_flip", "must be in [0, 1], found 1.5"),
            ("data.augmentation.random_resized_crop.scale", "must be [low, high] with 0 < low ≤ high ≤ 1, found [1,0.5]"),
            ("data.batch_size", "must be ≥ 1, found 0"),
            ("data.threads", "expected an integer, found 1.5"),
            ("data.train", "set either shards or manifest, not both"),
            ("early_stopping", "needs data.val to evaluate on"),
            ("early_stopping.mode", #"expected one of "max", "min", found "maximum"; did you mean "max"?"#),
            ("early_stopping.patience", "must be ≥ 1, found 0"),
            ("epochs", "neither epochs nor max_steps is set; set at least one"),
            ("model.text.pooling", #"expected one of "pooler", "mean", "cls", found "max""#),
            ("model.vision.hidden_act", #"expected one of "gelu", "gelu_new", "gelu_pytorch_tanh", "quick_gelu", "relu", found "gelu_fast"; did you mean "gelu"?"#),
            ("model.vision.patch_sise", "unknown key 'model.vision.patch_sise'; did you mean 'patch_size'?"),
            ("modle", "unknown key 'modle'; did you mean 'model'?"),
            ("optimizer.accumulation_steps", "must be ≥ 1, found 0"),
            ("optimizer.lr", #"expected a number, found "fast""#),
            ("optimizer.lrr", "unknown key 'optimizer.lrr'; did you mean 'lr'?"),
            ("optimizer.type", #"expected one of "adamw", "sgd", found "adam"; did you mean "adamw"?"#),
            ("schedule.step_every", #"required when type is "step""#),
            ("schedule.warmup", "unknown key 'schedule.warmup'; did you mean 'warmup_steps'?"),
        ]
        #expect(errors.map(\.path) == expected.map(\.0))
        for (error, (path, message)) in zip(errors, expected) {
            #expect(error.message == message, "at \(path)")
        }
        // One line per problem, each with the file name, in path order.
        let lines = thrown?.description.split(separator: "\n") ?? []
        #expect(lines.count == expected.count)
        #expect(lines.first == #"test.json: checkpoint.keep_best: expected true or false, found "yes""#)
        #expect(lines.allSatisfy { $0.hasPrefix("test.json: ") })
    }

    @Test func unknownKeyWithoutCloseMatchListsValidKeys() {
        #expect(messages(minimal(plus: #""loss": {"temperature": 0.07}"#), at: "loss.temperature")
            == ["unknown key 'loss.temperature'; valid keys: logit_scale_max, type"])
    }

    @Test func integersRejectFractionsAndBooleans() {
        #expect(messages(minimal(plus: #""seed": 1.5"#), at: "seed") == ["expected an integer, found 1.5"])
        #expect(messages(minimal(plus: #""seed": true"#), at: "seed") == ["expected an integer, found true"])
        #expect(messages(minimal(plus: #""seed": "1""#), at: "seed") == [#"expected an integer, found "1""#])
        #expect(messages(minimal(plus: #""log_every_steps": false"#), at: "log_every_steps") == ["expected an integer, found false"])
        // Numbers reject booleans too, and booleans reject numbers.
        #expect(messages(minimal(plus: #""optimizer": {"lr": true}"#), at: "optimizer.lr") == ["expected a number, found true"])
        #expect(messages(minimal(plus: #""optimizer": {"nesterov": 1}"#), at: "optimizer.nesterov") == ["expected true or false, found 1"])
        #expect(messages(minimal(plus: #""eval": {"retrieval": 0}"#), at: "eval.retrieval") == ["expected true or false, found 0"])
        #expect(messages(minimal(plus: #""seed": null"#), at: "seed") == ["expected an integer, found null"])
        #expect(messages(minimal(plus: #""data": {"train": {"shards": "t.tar"}, "augmentation": {"rotation": {"probability": 1, "degrees": 5, "fill": [0, 256, true]}}}"#),
                         at: "data.augmentation.rotation.fill") == ["expected an array of integers in 0...255, found [0,256,true]"])
    }

    @Test func integralNumbersAreAcceptedWhereTheyFit() throws {
        let r = try decode(minimal(plus: #""seed": 7.0, "log_every_steps": 1e2, "optimizer": {"lr": 1, "betas": [0, 0.5]}, "data": {"train": {"shards": "t"}, "augmentation": {"horizontal_flip": 1}}"#))
        #expect(r.seed == 7 && r.logEverySteps == 100)
        #expect(r.optimizer.lr == 1.0 && r.optimizer.betas == [0, 0.5])
        #expect(r.data.augmentation.horizontalFlip == 1.0)
    }

    @Test func conflictingFields() {
        #expect(messages(minimal(plus: #""model": {"checkpoint": "hf/clip", "vision": {"image_size": 64}}"#), at: "model.vision")
            == ["not allowed together with model.checkpoint, which holds both towers"])
        #expect(messages(#"{"data": {"train": {"shards": "a", "manifest": "b"}}, "epochs": 1}"#, at: "data.train")
            == ["set either shards or manifest, not both"])
        #expect(messages(#"{"data": {"train": {}}, "epochs": 1}"#, at: "data.train")
            == ["needs shards (a shard pattern) or manifest (a CSV/TSV/JSONL file)"])
        #expect(messages(#"{"data": {"train": {"shards": "a", "caption_column": "text"}}, "epochs": 1}"#, at: "data.train.caption_column")
            == ["only applies to a manifest source, not to shards"])
        #expect(problems(#"{"data": {"train": {"shards": "a"}}}"#)
            == [RecipeError(path: "epochs", message: "neither epochs nor max_steps is set; set at least one")])
        #expect(messages(minimal(plus: #""schedule": {"type": "step"}"#), at: "schedule.step_every") == [#"required when type is "step""#])
        #expect(messages(minimal(plus: #""schedule": {"type": "const_cooldown"}"#), at: "schedule.cooldown_steps")
            == [#"required when type is "const_cooldown""#])
        #expect(messages(minimal(plus: #""schedule": {"warmup_steps": 101}"#), at: "schedule.warmup_steps")
            == ["must be ≤ max_steps (100), found 101"])
        #expect(messages(minimal(plus: #""optimizer": {"type": "sgd", "nesterov": true, "momentum": 0}"#), at: "optimizer.nesterov")
            == ["needs momentum > 0"])
        #expect(messages(minimal(plus: #""early_stopping": {}"#), at: "early_stopping") == ["needs data.val to evaluate on"])
        #expect(messages(minimal(plus: #""model": {"vision": {"image_size": 100}}"#), at: "model.vision.image_size")
            == ["must be a multiple of patch_size (32), found 100"])
        #expect(messages(minimal(plus: #""model": {"lock_vision": {"unlocked_layers": 13}}"#), at: "model.lock_vision.unlocked_layers")
            == ["must be ≤ vision.num_hidden_layers (12), found 13"])
        #expect(messages(minimal(plus: #""loss": {"logit_scale_max": 2}"#), at: "model.logit_scale_init")
            == ["must be ≤ loss.logit_scale_max (2), found 2.6592"])
    }

    @Test func missingAndMistypedSections() {
        #expect(problems(#"{"max_steps": 5}"#) == [RecipeError(path: "data.train", message: "required: an object with shards or manifest, or a path")])
        #expect(messages(minimal(plus: #""optimizer": [1, 2]"#), at: "optimizer") == ["expected an object, found [1,2]"])
        #expect(messages(minimal(plus: #""loss": null"#), at: "loss") == ["expected an object, found null"])
        #expect(messages(minimal(plus: #""early_stopping": true"#), at: "early_stopping") == ["expected an object or null, found true"])
        #expect(messages(minimal(plus: #""data": {"train": {"shards": "t"}, "augmentation": {"rotation": {"degrees": 10}}}"#),
                         at: "data.augmentation.rotation.probability") == ["required"])
        #expect(messages(minimal(plus: #""eval": {"zeroshot": {}}"#), at: "eval.zeroshot.classes") == ["required"])
    }

    @Test func rangesAndChoices() {
        let cases: [(String, String, String)] = [
            (#""optimizer": {"lr": 0}"#, "optimizer.lr", "must be > 0, found 0"),
            (#""optimizer": {"betas": [0.9]}"#, "optimizer.betas", "must be two values in [0, 1), found [0.9]"),
            (#""optimizer": {"grad_clip": -1}"#, "optimizer.grad_clip", "must be > 0, found -1"),
            (#""optimizer": {"momentum": 1}"#, "optimizer.momentum", "must be in [0, 1), found 1"),
            (#""schedule": {"warmup_steps": -1}"#, "schedule.warmup_steps", "must be ≥ 0, found -1"),
            (#""data": {"train": {"shards": "t"}, "text_augmentation": {"random_swap": 2}}"#, "data.text_augmentation.random_swap", "must be in [0, 1], found 2"),
            (#""data": {"train": {"manifest": "m.csv", "separator": ", "}}"#, "data.train.separator", #"expected a single ASCII character, found ", ""#),
            (#""data": {"train": {"shards": ""}}"#, "data.train.shards", #"must not be empty, found """#),
            (#""data": {"train": {"shards": "t"}, "bad_samples": "ignore"}"#, "data.bad_samples", #"expected one of "skip", "fail", found "ignore""#),
            (#""data": {"train": {"shards": "t"}, "augmentation": {"color_jitter": {"probability": 1, "hue": 0.6}}}"#, "data.augmentation.color_jitter.hue", "must be in [0, 0.5], found 0.6"),
            (#""precision": "fp8""#, "precision", #"expected one of "fp32", "bf16", "fp16", found "fp8""#),
            (#""resume": "best""#, "resume", #"expected one of "latest", found "best""#),
            (#""name": "a/b""#, "name", #"must be one folder name (not empty, "." or "..", no '/', not starting with '.'), found "a/b""#),
            (#""schedule": {"type": "cosin"}"#, "schedule.type", #"expected one of "cosine", "constant", "const_cooldown", "step", "linear", "plateau", found "cosin"; did you mean "cosine"?"#),
            (#""model": {"lock_text": {"unlocked_layers": -2}}"#, "model.lock_text.unlocked_layers", "must be ≥ -1, found -2"),
        ]
        for (extra, path, message) in cases {
            #expect(problems(minimal(plus: extra)) == [RecipeError(path: path, message: message)], "\(extra)")
        }
    }

    @Test func notAnObjectAndMalformedJSON() throws {
        #expect(problems("[1, 2]") == [RecipeError(path: "", message: "expected a JSON object at the top level, found [1,2]")])
        #expect(problems("42") == [RecipeError(path: "", message: "expected a JSON object at the top level, found 42")])
        let malformed = problems("{\n  \"seed\": 1,\n  \"epochs\": ,\n}")
        #expect(malformed.count == 1)
        #expect(malformed.first?.path == "")
        #expect(malformed.first?.message.hasPrefix("malformed JSON") == true)
        #if os(Linux)
        #expect(malformed.first?.message == "malformed JSON at line 3, column 13: invalid value")
        #endif
        #expect(problems("").first?.message.hasPrefix("malformed JSON") == true)
    }

    @Test func errorsPrintSortedWithTheFileName() {
        let errors = RecipeErrors(file: "r.json", errors: [
            RecipeError(path: "optimizer.lr", message: "b"),
            RecipeError(path: "", message: "root"),
            RecipeError(path: "data.batch_size", message: "a"),
            RecipeError(path: "optimizer.lr", message: "a"),
        ])
        #expect(errors.description == "r.json: root\nr.json: data.batch_size: a\nr.json: optimizer.lr: b\nr.json: optimizer.lr: a")
    }

    @Test func suggestions() {
        let keys = ["type", "lr", "betas", "warmup_steps", "batch_size", "image_size"]
        #expect(Recipe.nearestName("lrr", among: keys) == "lr")
        #expect(Recipe.nearestName("batchSize", among: keys) == "batch_size")
        #expect(Recipe.nearestName("warmup", among: keys) == "warmup_steps")
        #expect(Recipe.nearestName("imagesize", among: keys) == "image_size")
        #expect(Recipe.nearestName("temperature", among: keys) == nil)
        #expect(Recipe.nearestName("x", among: keys) == nil)
        #expect(Recipe.nearestName("tpye", among: keys) == "type")   // a swap is one edit
    }

    // MARK: Overrides

    func override(_ sets: [String], _ json: String = RecipeTests.minimal) throws -> Recipe {
        let data = try Recipe.applying(overrides: sets, to: Data(json.utf8), file: "test.json")
        return try Recipe.decode(data, file: "test.json", defaultName: "test")
    }

    @Test func overridesSetNumbersStringsAndStructures() throws {
        let r = try override([
            "optimizer.lr=1e-4", "data.batch_size=32", "name=run-2", "resume=latest",
            "data.train.shards=Data/x-{0000..0003}.tar.zst", "optimizer.grad_clip=null", "optimizer.nesterov=true",
            "optimizer.betas=[0.9, 0.999]", #"precision="bf16""#, "early_stopping.patience=3", "seed=1", "seed=2",
        ], Self.example)
        #expect(r.optimizer.lr == 1e-4)
        #expect(r.data.batchSize == 32)
        #expect(r.name == "run-2")
        #expect(r.resume == .latest)
        #expect(r.data.train == .shards("Data/x-{0000..0003}.tar.zst"))
        #expect(r.optimizer.gradClip == nil)
        #expect(r.optimizer.nesterov)
        #expect(r.optimizer.betas == [0.9, 0.999])
        #expect(r.precision == .bf16)
        #expect(r.earlyStopping?.patience == 3)
        #expect(r.earlyStopping?.watch.mode == .max)
        #expect(r.seed == 2)   // the last one wins
        // Untouched values survive the rewrite.
        #expect(r.model.lockText.unlockedLayers == 1 && r.optimizer.weightDecay == 0.1 && r.eval.everySteps == 124)
    }

    @Test func overridesCreateMissingObjects() throws {
        let r = try override(["model.vision.image_size=64", "model.vision.patch_size=16", "eval.zeroshot.classes=c.json",
                              #"data.augmentation.rotation={"probability": 0.5, "degrees": 10}"#])
        #expect(r.model.vision.config.imageSize == 64 && r.model.vision.config.patchSize == 16)
        #expect(r.eval.zeroshot?.classes == "c.json")
        #expect(r.data.augmentation.rotation == ImageAugmentation.Rotation(probability: 0.5, degrees: 10))

        // A null section is replaced by a new object too.
        let off = #"{"data": {"train": {"shards": "t"}, "val": {"shards": "v"}}, "epochs": 1, "early_stopping": null}"#
        #expect(try override(["early_stopping.patience=2"], off).earlyStopping?.patience == 2)
    }

    @Test func overrideWithUnknownKeyIsCaughtByValidation() throws {
        let thrown = #expect(throws: RecipeErrors.self) { try override(["optimizer.lrr=1e-4", "data.batchsize=8"]) }
        #expect(thrown?.errors == [
            RecipeError(path: "data.batchsize", message: "unknown key 'data.batchsize'; did you mean 'batch_size'?"),
            RecipeError(path: "optimizer.lrr", message: "unknown key 'optimizer.lrr'; did you mean 'lr'?"),
        ])
        let typed = #expect(throws: RecipeErrors.self) { try override(["optimizer.lr=fast"]) }
        #expect(typed?.errors == [RecipeError(path: "optimizer.lr", message: #"expected a number, found "fast""#)])
    }

    @Test func malformedOverridesAreNamed() throws {
        let thrown = #expect(throws: RecipeErrors.self) {
            try Recipe.applying(overrides: ["optimizer.lr", "=3", "a..b=1", "max_steps.x=1", "data.batch_size=2"],
                                to: Data(Self.minimal.utf8), file: "test.json")
        }
        #expect(thrown?.errors == [
            RecipeError(path: "", message: "malformed override 'optimizer.lr': expected path=value, e.g. optimizer.lr=1e-4"),
            RecipeError(path: "", message: "malformed override '=3': the path is empty"),
            RecipeError(path: "", message: "malformed override 'a..b=1': empty key in 'a..b'"),
            RecipeError(path: "max_steps.x", message: "cannot apply override 'max_steps.x=1': 'max_steps' is 100, not an object"),
        ])
        #expect(thrown?.description.hasPrefix("test.json: malformed override 'optimizer.lr'") == true)
    }

    @Test func noOverridesLeaveTheBytesAlone() throws {
        let data = Data("not json".utf8)
        #expect(try Recipe.applying(overrides: [], to: data) == data)
        #expect(throws: RecipeErrors.self) { try Recipe.applying(overrides: ["seed=1"], to: data) }
    }

    // MARK: Resolved recipe

    @Test func resolvedJSONRoundTrips() throws {
        let original = try decode(Self.example)
        let resolved = original.resolvedJSON()
        let again = try Recipe.decode(resolved, file: "recipe.json", defaultName: "other")
        #expect(again == original)

        // Every default is written out, unset optionals as null.
        let object = try #require(try JSONSerialization.jsonObject(with: resolved) as? [String: Any])
        let optimizer = try #require(object["optimizer"] as? [String: Any])
        #expect(optimizer["eps"] as? Double == 1e-6)
        #expect(optimizer["betas"] as? [Double] == [0.9, 0.98])
        #expect(object["max_steps"] is NSNull)
        #expect(object["max_non_finite_steps"] as? Int == 5)
        let data = try #require(object["data"] as? [String: Any])
        #expect(data["image_size"] is NSNull)
        #expect((data["train"] as? [String: Any])?.keys.sorted() == ["shards"])
        let text = String(decoding: resolved, as: UTF8.self)
        #expect(text.contains(#""shards" : "../Data/shapes/train-{0000..0003}.tar.zst""#))   // pretty, slashes unescaped
        #expect(text.contains(#""checkpoint" : "\#(RecipePathResolution.assetsFolder)/all-MiniLM-L6-v2""#))
    }

    @Test func resolvedJSONRoundTripsEveryVariant() throws {
        var r = Recipe(name: "variant", train: .manifest(Recipe.Manifest(path: "m.jsonl")), epochs: 3, maxSteps: 1000)
        r.model.checkpoint = "hf/clip"
        r.model.lockVision = Recipe.TowerLock(unlockedLayers: 0)
        var val = Recipe.Manifest(path: "v.csv")
        val.labelColumn = "label"
        val.separator = ";"
        r.data.val = .manifest(val)
        r.data.imageSize = 96
        r.data.augmentation.randomResizedCrop = nil
        var rotation = ImageAugmentation.Rotation(probability: 0.25, degrees: 30)
        rotation.fill = [1, 2, 3]
        r.data.augmentation.rotation = rotation
        r.data.augmentation.colorJitter = ImageAugmentation.ColorJitter(probability: 0.5)
        r.data.textAugmentation.randomSwap = 0.1
        r.data.badSamples = .fail
        r.loss.type = .siglip
        r.optimizer.type = .sgd
        r.optimizer.gradClip = nil
        r.schedule.kind = .step(every: 100, gamma: 0.1)
        r.eval.zeroshot = Recipe.ZeroShot(classes: "classes.json")
        r.eval.batchSize = 256
        r.earlyStopping = Recipe.EarlyStoppingSection()
        r.checkpoint.everySteps = 50
        r.precision = .bf16
        r.resume = .latest
        let again = try Recipe.decode(r.resolvedJSON(), file: "recipe.json", defaultName: "other")
        #expect(again == r)

        let object = try #require(try JSONSerialization.jsonObject(with: r.resolvedJSON()) as? [String: Any])
        let model = try #require(object["model"] as? [String: Any])
        #expect(model["vision"] == nil && model["text"] == nil)   // a whole checkpoint: towers not written
    }

    // MARK: Paths on disk

    /// A fake file system: the paths that exist, relative to /repo.
    func pathProblems(_ recipe: Recipe, existing: Set<String>, glob: @escaping (String) -> [String] = { _ in [] }) -> [RecipeError] {
        recipe.problemsWithPaths(relativeTo: "/repo", fileExists: { existing.contains($0) }, glob: glob)
    }

    static let assets = RecipePathResolution.assetsFolder
    static let exampleFiles: Set<String> = [
        "\(assets)/all-MiniLM-L6-v2/config.json", "\(assets)/all-MiniLM-L6-v2/vocab.txt",
        "/repo/Data/shapes/train-0000.tar.zst", "/repo/Data/shapes/train-0001.tar.zst",
        "/repo/Data/shapes/train-0002.tar.zst", "/repo/Data/shapes/train-0003.tar.zst",
        "/repo/Data/shapes/val-0000.tar.zst", "/repo/Data/shapes/classes.json",
    ]

    /// Relative paths resolve against the recipe's folder (/repo/Recipes here), `@assets/`
    /// against the downloaded assets.
    @Test func pathsOfTheExampleRecipe() throws {
        let r = try Recipe.decode(Data(Self.example.utf8), file: "clip-finetune.json", defaultName: "clip-finetune",
                                  paths: RecipePathResolution(recipeFolder: "/repo/Recipes", workingDirectory: "/elsewhere"))
        #expect(r.data.train == .shards("/repo/Data/shapes/train-{0000..0003}.tar.zst"))
        #expect(pathProblems(r, existing: Self.exampleFiles) == [])

        var missing = Self.exampleFiles
        missing.remove("/repo/Data/shapes/train-0002.tar.zst")
        missing.remove("/repo/Data/shapes/classes.json")
        missing.remove("\(Self.assets)/all-MiniLM-L6-v2/vocab.txt")
        #expect(pathProblems(r, existing: missing) == [
            RecipeError(path: "model.text.checkpoint", message: "'\(Self.assets)/all-MiniLM-L6-v2' has no tokenizer (vocab.json and merges.txt, or vocab.txt) in \(Self.assets)/all-MiniLM-L6-v2"),
            RecipeError(path: "data.train.shards", message: "1 shard of '/repo/Data/shapes/train-{0000..0003}.tar.zst' missing: /repo/Data/shapes/train-0002.tar.zst"),
            RecipeError(path: "eval.zeroshot.classes", message: "'/repo/Data/shapes/classes.json' does not exist (/repo/Data/shapes/classes.json)"),
        ])
    }

    /// Values given on the command line resolve against the working directory instead.
    @Test func overriddenPathsResolveAgainstTheWorkingDirectory() throws {
        let data = try Recipe.applying(overrides: [#"data.val="my/val.csv""#, "model.text.tokenizer=tok"], to: Data(Self.example.utf8))
        let r = try Recipe.decode(data, file: "r.json", defaultName: "r",
                                  paths: RecipePathResolution(recipeFolder: "/repo/Recipes", workingDirectory: "/home/me/work",
                                                              overridden: Recipe.overriddenKeys([#"data.val="my/val.csv""#, "model.text.tokenizer=tok"])))
        #expect(r.data.val == .manifest(Recipe.Manifest(path: "/home/me/work/my/val.csv")))   // a plain path: a manifest by its suffix
        #expect(r.model.text.tokenizer == "/home/me/work/tok")
        #expect(r.data.train == .shards("/repo/Data/shapes/train-{0000..0003}.tar.zst"))
        #expect(r.eval.zeroshot?.classes == "/repo/Data/shapes/classes.json")
        #expect(r.checkpoint.directory == "Checkpoints")   // an output: left to the working directory
        // A plain shard pattern is shards, and `~` expands.
        let shards = try Recipe.decode(Data(#"{"data": {"train": "~/d/t-{0..3}.tar"}, "max_steps": 1}"#.utf8), file: "r", defaultName: "r",
                                       paths: RecipePathResolution(recipeFolder: "/repo"))
        #expect(shards.data.train == .shards(NSHomeDirectory() + "/d/t-{0..3}.tar"))
    }

    @Test func pathsOfCheckpointsTokenizersManifestsAndGlobs() {
        var r = Recipe(name: "p", train: .shards("/data/train-*.tar"), epochs: 1)
        r.model.vision.checkpoint = "vit"
        r.model.text.tokenizer = "~/bpe_simple_vocab_16e6.txt.gz"
        r.data.val = .manifest(Recipe.Manifest(path: "val.csv"))
        let problems = pathProblems(r, existing: [])
        let home = NSString(string: "~").expandingTildeInPath
        #expect(problems == [
            RecipeError(path: "model.vision.checkpoint", message: "'vit' is not a model folder: no config.json in /repo/vit"),
            RecipeError(path: "model.text.tokenizer", message: "'~/bpe_simple_vocab_16e6.txt.gz' does not exist (\(home)/bpe_simple_vocab_16e6.txt.gz)"),
            RecipeError(path: "data.train.shards", message: "'/data/train-*.tar' matches no files (in /data/train-*.tar)"),
            RecipeError(path: "data.val.manifest", message: "'val.csv' does not exist (/repo/val.csv)"),
        ])

        // With the files there (and a glob that matches), nothing is reported.
        let existing: Set<String> = ["/repo/vit/config.json", "\(home)/bpe_simple_vocab_16e6.txt.gz", "/repo/val.csv"]
        #expect(pathProblems(r, existing: existing, glob: { $0 == "/data/train-*.tar" ? ["/data/train-0.tar"] : [] }) == [])
        // Every wildcard goes to glob; a name without one must exist itself.
        for pattern in ["/data/t-?.tar", "/data/t-[01].tar"] {
            r.data.train = .shards(pattern)
            #expect(pathProblems(r, existing: existing, glob: { $0 == pattern ? ["/data/t-0.tar"] : [] }) == [])
        }
        r.data.train = .shards("/data/train-*.tar")

        // A whole checkpoint needs its config and tokenizer; the towers' paths are then not read.
        var whole = r
        whole.model.checkpoint = "clip"
        whole.data.val = nil
        #expect(pathProblems(whole, existing: ["/repo/clip/config.json", "/repo/clip/vocab.json"], glob: { _ in ["x"] }) == [
            RecipeError(path: "model.checkpoint", message: "'clip' has no tokenizer (vocab.json and merges.txt, or vocab.txt) in /repo/clip"),
        ])
        // A tokenizer folder.
        var folder = r
        folder.model.text.tokenizer = "tok"
        #expect(pathProblems(folder, existing: existing.union(["/repo/tok/vocab.json", "/repo/tok/merges.txt"]), glob: { _ in ["x"] }) == [])
        #expect(pathProblems(folder, existing: existing.union(["/repo/tok/vocab.json"]), glob: { _ in ["x"] }).map(\.path) == ["model.text.tokenizer"])
    }

    @Test func realGlobFindsFiles() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("recipe-glob-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        for name in ["a-0.tar", "a-1.tar", "b-0.tar"] {
            _ = FileManager.default.createFile(atPath: "\(folder)/\(name)", contents: Data())
        }
        let exists = { (path: String) in FileManager.default.fileExists(atPath: path) }
        #expect(Recipe(name: "g", train: .shards("a-*.tar"), epochs: 1).problemsWithPaths(relativeTo: folder, fileExists: exists) == [])
        #expect(Recipe(name: "g", train: .shards("{a,b}-0.tar"), epochs: 1).problemsWithPaths(relativeTo: folder, fileExists: exists) == [])
        #expect(Recipe(name: "g", train: .shards("c-*.tar"), epochs: 1).problemsWithPaths(relativeTo: folder, fileExists: exists).map(\.path)
            == ["data.train.shards"])
    }

    @Test func braceExpansion() throws {
        // The recipe checks and the loader share WebDataset's expansion.
        #expect(try WebDataset.expandBraces("t-{0000..0003}.tar") == ["t-0000.tar", "t-0001.tar", "t-0002.tar", "t-0003.tar"])
        #expect(try WebDataset.expandBraces("{a,b}/{8..10}") == ["a/8", "a/9", "a/10", "b/8", "b/9", "b/10"])
        #expect(try WebDataset.expandBraces("{08..10}") == ["08", "09", "10"])
        #expect(try WebDataset.expandBraces("plain.tar") == ["plain.tar"])
        #expect(try WebDataset.expandBraces("open{only") == ["open{only"])
        // A pattern naming too many shards is a recipe problem, found without expanding it.
        let huge = Recipe(name: "g", train: .shards("t-{0..999}{0..9999}.tar"), epochs: 1).problemsWithPaths(relativeTo: "/data", fileExists: { _ in true })
        #expect(huge.map(\.path) == ["data.train.shards"] && huge.first?.message.contains("expands to 10,000,000 names") == true, "\(huge)")
    }
}
