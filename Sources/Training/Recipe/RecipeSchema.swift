import Datasets
import Foundation
import Models
import NN
import Optim

// The recipe's keys and rules: one `code(_:)` per section. The same function runs in both
// directions: decoding reads the JSON into the section's fields, encoding writes them out for
// `resolvedJSON()`. Defaults live only in the fields' initial values (Recipe.swift and the
// domain types). Every check that needs no file is made here, so that one pass reports every
// problem of a recipe at once; `RecipePaths.swift` checks the files it names.

/// A struct that maps to one JSON object; `code` is both its decoder and its encoder.
protocol RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder)
}

extension Recipe: RecipeCoding {
    mutating func code(_ c: inout RecipeCoder) {
        c.field("name", &name, RecipeRule(requirement: "must be a non-empty name without '/'") { !$0.isEmpty && !$0.contains("/") })
        c.field("seed", &seed, .atLeast(0))
        c.section("model", &model)
        c.section("data", &data)
        c.section("loss", &loss)
        c.section("optimizer", &optimizer)
        c.section("schedule", &schedule)
        c.section("eval", &eval)
        c.section("early_stopping", &earlyStopping, start: EarlyStoppingSection())
        c.section("checkpoint", &checkpoint)
        c.field("precision", &precision)
        c.field("epochs", &epochs, .atLeast(1))
        c.field("max_steps", &maxSteps, .atLeast(1))
        c.field("log_every_steps", &logEverySteps, .atLeast(1))
        c.field("max_non_finite_steps", &maxNonFiniteSteps, .atLeast(0))
        c.field("resume", &resume)
        c.section("distill", &distill, start: DistillSection(teacher: ""))
        guard c.isDecoding else { return }
        checkAcrossSections(&c)
    }

    /// Checks that read more than one section. A field that already has a problem kept its
    /// default, so checks that read it are skipped to avoid a second, misleading message.
    private func checkAcrossSections(_ c: inout RecipeCoder) {
        if epochs == nil, maxSteps == nil, !c.hasProblem(at: "epochs"), !c.hasProblem(at: "max_steps") {
            c.report("epochs", "neither epochs nor max_steps is set; set at least one")
        }
        if model.logitScaleInit > loss.logitScaleMax {
            c.report("model.logit_scale_init", "must be ≤ loss.logit_scale_max (\(formatNumber(loss.logitScaleMax))), found \(formatNumber(model.logitScaleInit))")
        }
        if let maxSteps {
            if schedule.warmupSteps > maxSteps {
                c.report("schedule.warmup_steps", "must be ≤ max_steps (\(maxSteps)), found \(schedule.warmupSteps)")
            }
            if case .constantCooldown(let cooldown, _, _) = schedule.kind, cooldown > maxSteps {
                c.report("schedule.cooldown_steps", "must be ≤ max_steps (\(maxSteps)), found \(cooldown)")
            }
        }
        let evaluates = eval.everySteps != nil || eval.everyEpoch
        // What watches an evaluation metric cannot work without evaluations.
        var watchers: [String] = []
        if earlyStopping != nil { watchers.append("early_stopping") }
        if schedule.kind == .plateau { watchers.append("schedule") }
        for watcher in watchers {
            if data.val == nil, !c.hasProblem(at: "data.val") {
                c.report(watcher, "needs data.val to evaluate on")
            }
            if !evaluates {
                c.report(watcher, "needs evaluations: set eval.every_steps or eval.every_epoch")
            }
        }
        if let distill {
            if loss.type == .siglip {
                c.report("loss.type", "distillation uses the CLIP contrastive loss; remove loss.type \"siglip\"")
            }
            if distill.studentInit == .teacherLayers, model.checkpoint != nil {
                c.report("distill.student_init", "\"teacher_layers\" builds the student from the teacher's layers; it cannot start from model.checkpoint too")
            }
            if data.cacheTeacher, !data.textAugmentation.isIdentity {
                c.report("data.cache_teacher", "needs unaugmented captions (an augmented caption differs each epoch): remove data.text_augmentation, or set data.cache_teacher to false")
            }
        }
    }
}

extension Recipe.ModelSection: RecipeCoding {
    mutating func code(_ c: inout RecipeCoder) {
        c.field("checkpoint", &checkpoint, .nonEmpty)
        // A whole checkpoint fixes both towers, so they are neither read with it nor written.
        if c.isDecoding || checkpoint == nil {
            c.section("vision", &vision)
            c.section("text", &text)
        }
        c.field("projection_dim", &projectionDim, .atLeast(1))
        c.field("logit_scale_init", &logitScaleInit)
        c.section("lock_vision", &lockVision)
        c.section("lock_text", &lockText)
        guard c.isDecoding else { return }

        if checkpoint != nil {
            for key in ["vision", "text"] where c.has(key) {
                c.report(key, "not allowed together with model.checkpoint, which holds both towers")
            }
        }
        // With a checkpoint the layer count is only known once its config is read.
        if checkpoint == nil, vision.checkpoint == nil, lockVision.unlockedLayers > vision.config.numHiddenLayers {
            c.report("lock_vision.unlocked_layers", "must be ≤ vision.num_hidden_layers (\(vision.config.numHiddenLayers)), found \(lockVision.unlockedLayers)")
        }
        if checkpoint == nil, text.checkpoint == nil, lockText.unlockedLayers > text.sizes.numHiddenLayers {
            c.report("lock_text.unlocked_layers", "must be ≤ text.num_hidden_layers (\(text.sizes.numHiddenLayers)), found \(lockText.unlockedLayers)")
        }
    }
}

extension Recipe.VisionTower: RecipeCoding {
    mutating func code(_ c: inout RecipeCoder) {
        c.field("checkpoint", &checkpoint, .nonEmpty)
        c.field("image_size", &config.imageSize, .atLeast(1))
        c.field("patch_size", &config.patchSize, .atLeast(1))
        c.field("hidden_size", &config.hiddenSize, .atLeast(1))
        c.field("num_hidden_layers", &config.numHiddenLayers, .atLeast(1))
        c.field("num_attention_heads", &config.numAttentionHeads, .atLeast(1))
        c.field("intermediate_size", &config.intermediateSize, .atLeast(1))
        c.field("hidden_act", &config.hiddenAct)
        guard c.isDecoding else { return }
        if config.imageSize % config.patchSize != 0 {
            c.report("image_size", "must be a multiple of patch_size (\(config.patchSize)), found \(config.imageSize)")
        }
        if config.hiddenSize % config.numAttentionHeads != 0 {
            c.report("hidden_size", "must be a multiple of num_attention_heads (\(config.numAttentionHeads)), found \(config.hiddenSize)")
        }
    }
}

extension Recipe.TextTower: RecipeCoding {
    mutating func code(_ c: inout RecipeCoder) {
        c.field("checkpoint", &checkpoint, .nonEmpty)
        c.field("pooling", &pooling)
        c.field("vocab_size", &sizes.vocabSize, .atLeast(1))
        c.field("hidden_size", &sizes.hiddenSize, .atLeast(1))
        c.field("num_hidden_layers", &sizes.numHiddenLayers, .atLeast(1))
        c.field("num_attention_heads", &sizes.numAttentionHeads, .atLeast(1))
        c.field("intermediate_size", &sizes.intermediateSize, .atLeast(1))
        c.field("max_position_embeddings", &sizes.maxPositionEmbeddings, .atLeast(1))
        c.field("hidden_act", &sizes.hiddenAct)
        c.field("type", &type)
        c.field("tokenizer", &tokenizer, .nonEmpty)
        guard c.isDecoding else { return }
        if type == .bert, checkpoint == nil, tokenizer == nil || tokenizer!.hasSuffix(".gz"), !c.hasProblem(at: c.path(of: "tokenizer")) {
            c.report("tokenizer", "a BERT text tower needs a WordPiece tokenizer folder (with vocab.txt), e.g. \".deps/assets/all-MiniLM-L6-v2\"")
        }
        if sizes.hiddenSize % sizes.numAttentionHeads != 0 {
            c.report("hidden_size", "must be a multiple of num_attention_heads (\(sizes.numAttentionHeads)), found \(sizes.hiddenSize)")
        }
    }
}

extension Recipe.TowerLock: RecipeCoding {
    mutating func code(_ c: inout RecipeCoder) {
        c.field("unlocked_layers", &unlockedLayers, .atLeast(-1))
    }
}

extension Recipe.DataSection: RecipeCoding {
    mutating func code(_ c: inout RecipeCoder) {
        var trainFields = RecipeSourceFields(train)
        c.section("train", &trainFields, required: "an object with shards or manifest")
        if let source = trainFields.source { train = source }
        var valFields = val.map(RecipeSourceFields.init)
        c.section("val", &valFields, start: RecipeSourceFields())
        val = valFields?.source

        c.field("image_size", &imageSize, .atLeast(1))
        c.field("batch_size", &batchSize, .atLeast(1))
        c.field("threads", &threads, .atLeast(1))
        c.field("shuffle_buffer", &shuffleBuffer, .atLeast(0))
        c.field("bad_samples", &badSamples)
        c.section("augmentation", &augmentation)
        c.section("text_augmentation", &textAugmentation)
        c.field("cache_teacher", &cacheTeacher)
    }
}

/// `Source` as the JSON object it is written as: exactly one of `shards` and `manifest`.
struct RecipeSourceFields: RecipeCoding {
    var shards: String?
    var manifest = Recipe.Manifest(path: "")
    var hasManifest = false

    init() {}

    init(_ source: Recipe.Source) {
        switch source {
        case .shards(let pattern): shards = pattern
        case .manifest(let m): manifest = m; hasManifest = true
        }
    }

    /// The source, when the fields name exactly one kind.
    var source: Recipe.Source? {
        switch (shards, hasManifest) {
        case (let pattern?, false): .shards(pattern)
        case (nil, true): .manifest(manifest)
        default: nil
        }
    }

    static let manifestOnlyKeys = ["image_column", "caption_column", "label_column", "separator"]

    mutating func code(_ c: inout RecipeCoder) {
        // A source has no defaults: decoding starts from nothing, not from the value it replaces.
        if c.isDecoding { self = RecipeSourceFields() }
        if c.isDecoding || shards != nil { c.field("shards", &shards, .nonEmpty) }
        guard c.isDecoding || hasManifest else { return }
        var path: String? = hasManifest ? manifest.path : nil
        c.field("manifest", &path, .nonEmpty)
        c.field("image_column", &manifest.imageColumn, .nonEmpty)
        c.field("caption_column", &manifest.captionColumn, .nonEmpty)
        c.field("label_column", &manifest.labelColumn, .nonEmpty)
        c.field("separator", &manifest.separator)
        guard c.isDecoding else { return }

        if let path { manifest.path = path }
        hasManifest = path != nil || c.hasProblem(at: c.path(of: "manifest"))
        switch (shards != nil || c.hasProblem(at: c.path(of: "shards")), hasManifest) {
        case (true, true): c.report(nil, "set either shards or manifest, not both")
        case (false, false): c.report(nil, "needs shards (a shard pattern) or manifest (a CSV/TSV/JSONL file)")
        case (true, false):
            for key in Self.manifestOnlyKeys where c.has(key) {
                c.report(key, "only applies to a manifest source, not to shards")
            }
        case (false, true): break
        }
    }
}

extension ImageAugmentation: RecipeCoding {
    mutating func code(_ c: inout RecipeCoder) {
        c.section("random_resized_crop", &randomResizedCrop, start: RandomResizedCrop())
        c.field("horizontal_flip", &horizontalFlip, .probability)
        c.section("rotation", &rotation, start: Rotation(probability: 0, degrees: 0))
        c.section("color_jitter", &colorJitter, start: ColorJitter(probability: 0))
    }
}

extension ImageAugmentation.RandomResizedCrop: RecipeCoding {
    mutating func code(_ c: inout RecipeCoder) {
        c.field("scale", &scale, .orderedPair(lowAbove: 0, highAtMost: 1))
        c.field("ratio", &ratio, .orderedPair(lowAbove: 0, highAtMost: nil))
    }
}

extension ImageAugmentation.Rotation: RecipeCoding {
    mutating func code(_ c: inout RecipeCoder) {
        c.field("probability", &probability, .probability, required: true)
        c.field("degrees", &degrees, .within(0...180), required: true)
        c.field("fill", &fill, RecipeRule(requirement: "must be 3 values (RGB)") { $0.count == 3 })
    }
}

extension ImageAugmentation.ColorJitter: RecipeCoding {
    mutating func code(_ c: inout RecipeCoder) {
        c.field("probability", &probability, .probability, required: true)
        c.field("brightness", &brightness, .atLeast(0))
        c.field("contrast", &contrast, .atLeast(0))
        c.field("saturation", &saturation, .atLeast(0))
        c.field("hue", &hue, .within(0...0.5))
    }
}

extension TextAugmentationConfig: RecipeCoding {
    mutating func code(_ c: inout RecipeCoder) {
        c.field("synonym_replacement", &synonymReplacement, .probability)
        c.field("random_insertion", &randomInsertion, .probability)
        c.field("random_swap", &randomSwap, .probability)
        c.field("random_deletion", &randomDeletion, .probability)
    }
}

extension Recipe.LossSection: RecipeCoding {
    mutating func code(_ c: inout RecipeCoder) {
        c.field("type", &type)
        c.field("logit_scale_max", &logitScaleMax, .above(0))
    }
}

extension Recipe.OptimizerSection: RecipeCoding {
    mutating func code(_ c: inout RecipeCoder) {
        c.field("type", &type)
        c.field("lr", &lr, .above(0))
        c.field("betas", &betas, RecipeRule(requirement: "must be two values in [0, 1)") { $0.count == 2 && $0.allSatisfy { (0..<1).contains($0) } })
        c.field("eps", &eps, .above(0))
        c.field("weight_decay", &weightDecay, .atLeast(0))
        c.field("momentum", &momentum, .within(0..<1))
        c.field("nesterov", &nesterov)
        c.field("no_decay_embeddings", &noDecayEmbeddings)
        c.field("grad_clip", &gradClip, .above(0))
        c.field("accumulation_steps", &accumulationSteps, .atLeast(1))
        guard c.isDecoding else { return }
        if type == .sgd, nesterov, momentum == 0 {
            c.report("nesterov", "needs momentum > 0")
        }
    }
}

extension Recipe.ScheduleSection: RecipeCoding {
    /// The keys of each kind besides `type` and `warmup_steps`.
    static let kindKeys: [LRSchedule.Kind.Name: [String]] = [
        .constCooldown: ["cooldown_steps", "cooldown_power", "end_lr"],
        .step: ["step_every", "gamma"],
        .linear: ["end_lr"],
        .plateau: ["metric", "mode", "factor", "patience", "threshold", "cooldown", "min_lr_scale"],
    ]

    mutating func code(_ c: inout RecipeCoder) {
        var name = kind.name
        c.field("type", &name)
        c.field("warmup_steps", &warmupSteps, .atLeast(0))
        // A key of another kind is a mistake worth naming (a typo gets "unknown key" instead).
        let own = Self.kindKeys[name] ?? []
        for (other, keys) in Self.kindKeys where other != name {
            for key in keys where !own.contains(key) && c.has(key) {
                c.report(key, "only applies to schedule type \"\(other.rawValue)\", not \"\(name.rawValue)\"")
                c.accept(key)
            }
        }
        switch name {
        case .cosine: kind = .cosine
        case .constant: kind = .constant
        case .constCooldown:
            var (steps, power, endLR) = (1, 1.0, 0.0)
            if case .constantCooldown(let s, let p, let e) = kind { (steps, power, endLR) = (s, p, e) }
            c.requireKey("cooldown_steps", because: "type is \"const_cooldown\"")
            c.field("cooldown_steps", &steps, .atLeast(1))
            c.field("cooldown_power", &power, .above(0))
            c.field("end_lr", &endLR, .atLeast(0))
            kind = .constantCooldown(cooldownSteps: steps, power: power, endLR: endLR)
        case .step:
            var (every, gamma) = (1, 0.1)
            if case .step(let e, let g) = kind { (every, gamma) = (e, g) }
            c.requireKey("step_every", because: "type is \"step\"")
            c.field("step_every", &every, .atLeast(1))
            c.field("gamma", &gamma, .above(0))
            kind = .step(every: every, gamma: gamma)
        case .linear:
            var endLR = 0.0
            if case .linear(let e) = kind { endLR = e }
            c.field("end_lr", &endLR, .atLeast(0))
            kind = .linear(endLR: endLR)
        case .plateau:
            kind = .plateau
            c.field("metric", &plateau.watch.metric, .nonEmpty)
            c.field("mode", &plateau.watch.mode)
            c.field("factor", &plateau.factor, RecipeRule(requirement: "must be in (0, 1)") { $0 > 0 && $0 < 1 })
            c.field("patience", &plateau.patience, .atLeast(0))
            c.field("threshold", &plateau.threshold, .atLeast(0))
            c.field("cooldown", &plateau.cooldown, .atLeast(0))
            c.field("min_lr_scale", &plateau.minLRScale, .within(0...1))
        }
    }
}

extension Recipe.EvalSection: RecipeCoding {
    mutating func code(_ c: inout RecipeCoder) {
        c.field("every_steps", &everySteps, .atLeast(1))
        c.field("every_epoch", &everyEpoch)
        c.field("retrieval", &retrieval)
        c.section("zeroshot", &zeroshot, start: Recipe.ZeroShot(classes: ""))
        c.field("batch_size", &batchSize, .atLeast(1))
    }
}

extension Recipe.ZeroShot: RecipeCoding {
    mutating func code(_ c: inout RecipeCoder) {
        c.field("classes", &classes, .nonEmpty, required: true)
    }
}

extension Recipe.EarlyStoppingSection: RecipeCoding {
    mutating func code(_ c: inout RecipeCoder) {
        c.field("metric", &watch.metric, .nonEmpty)
        c.field("mode", &watch.mode)
        c.field("patience", &patience, .atLeast(1))
        c.field("min_delta", &minDelta, .atLeast(0))
    }
}

extension Recipe.DistillSection: RecipeCoding {
    mutating func code(_ c: inout RecipeCoder) {
        c.field("teacher", &teacher, .nonEmpty, required: true)
        c.field("temperature", &temperature, .above(0))
        c.field("logit_weight", &logitWeight, .atLeast(0))
        c.field("feature_weight", &featureWeight, .atLeast(0))
        c.field("feature_loss", &featureLoss)
        c.field("feature_projection", &featureProjection)
        c.field("contrastive_weight", &contrastiveWeight, .atLeast(0))
        c.field("student_init", &studentInit)
        guard c.isDecoding else { return }
        if logitWeight == 0, featureWeight == 0, contrastiveWeight == 0 {
            c.report("logit_weight", "logit_weight, feature_weight and contrastive_weight are all 0: nothing to train on")
        }
    }
}

extension Recipe.CheckpointSection: RecipeCoding {
    mutating func code(_ c: inout RecipeCoder) {
        c.field("directory", &directory, .nonEmpty)
        c.field("keep_best", &keepBest)
        c.field("best_metric", &best.metric, .nonEmpty)
        c.field("best_mode", &best.mode)
        c.field("keep_last", &keepLast)
        c.field("every_steps", &everySteps, .atLeast(1))
    }
}
