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
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("name", &name, RecipeRule(requirement: "must be a non-empty name without '/'") { !$0.isEmpty && !$0.contains("/") })
        coder.field("seed", &seed, .atLeast(0))
        coder.section("model", &model)
        coder.section("data", &data)
        coder.section("loss", &loss)
        coder.section("optimizer", &optimizer)
        coder.section("schedule", &schedule)
        coder.section("eval", &eval)
        coder.section("early_stopping", &earlyStopping, start: EarlyStoppingSection())
        coder.section("checkpoint", &checkpoint)
        coder.field("precision", &precision)
        coder.field("epochs", &epochs, .atLeast(1))
        coder.field("max_steps", &maxSteps, .atLeast(1))
        coder.field("log_every_steps", &logEverySteps, .atLeast(1))
        coder.field("max_non_finite_steps", &maxNonFiniteSteps, .atLeast(0))
        coder.field("resume", &resume)
        coder.section("distill", &distill, start: DistillSection(teacher: ""))
        guard coder.isDecoding else { return }
        checkAcrossSections(&coder)
    }

    /// Checks that read more than one section. A field that already has a problem kept its
    /// default, so checks that read it are skipped to avoid a second, misleading message.
    private func checkAcrossSections(_ coder: inout RecipeCoder) {
        if epochs == nil, maxSteps == nil, !coder.hasProblem(at: "epochs"), !coder.hasProblem(at: "max_steps") {
            coder.report("epochs", "neither epochs nor max_steps is set; set at least one")
        }
        if model.logitScaleInit > loss.logitScaleMax {
            coder.report("model.logit_scale_init", "must be ≤ loss.logit_scale_max (\(formatNumber(loss.logitScaleMax))), found \(formatNumber(model.logitScaleInit))")
        }
        if let maxSteps {
            if schedule.warmupSteps > maxSteps {
                coder.report("schedule.warmup_steps", "must be ≤ max_steps (\(maxSteps)), found \(schedule.warmupSteps)")
            }
            if case .constantCooldown(let cooldown, _, _) = schedule.kind, cooldown > maxSteps {
                coder.report("schedule.cooldown_steps", "must be ≤ max_steps (\(maxSteps)), found \(cooldown)")
            }
        }
        let evaluates = eval.everySteps != nil || eval.everyEpoch
        // What watches an evaluation metric cannot work without evaluations.
        var watchers: [String] = []
        if earlyStopping != nil { watchers.append("early_stopping") }
        if schedule.kind == .plateau { watchers.append("schedule") }
        for watcher in watchers {
            if data.val == nil, !coder.hasProblem(at: "data.val") {
                coder.report(watcher, "needs data.val to evaluate on")
            }
            if !evaluates {
                coder.report(watcher, "needs evaluations: set eval.every_steps or eval.every_epoch")
            }
        }
        if let distill {
            if loss.type == .siglip {
                coder.report("loss.type", "distillation uses the CLIP contrastive loss; remove loss.type \"siglip\"")
            }
            if distill.studentInit == .teacherLayers, model.checkpoint != nil {
                coder.report("distill.student_init", "\"teacher_layers\" builds the student from the teacher's layers; it cannot start from model.checkpoint too")
            }
            if data.cacheTeacher, !data.textAugmentation.isIdentity {
                coder.report("data.cache_teacher", "needs unaugmented captions (an augmented caption differs each epoch): remove data.text_augmentation, or set data.cache_teacher to false")
            }
        }
    }
}

extension Recipe.ModelSection: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("checkpoint", &checkpoint, .nonEmpty)
        // A whole checkpoint fixes both towers, so they are neither read with it nor written.
        if coder.isDecoding || checkpoint == nil {
            coder.section("vision", &vision)
            coder.section("text", &text)
        }
        coder.field("projection_dim", &projectionDim, .atLeast(1))
        coder.field("logit_scale_init", &logitScaleInit)
        coder.section("lock_vision", &lockVision)
        coder.section("lock_text", &lockText)
        guard coder.isDecoding else { return }

        if checkpoint != nil {
            for key in ["vision", "text"] where coder.has(key) {
                coder.report(key, "not allowed together with model.checkpoint, which holds both towers")
            }
        }
        // With a checkpoint the layer count is only known once its config is read.
        if checkpoint == nil, vision.checkpoint == nil, lockVision.unlockedLayers > vision.config.numHiddenLayers {
            coder.report("lock_vision.unlocked_layers", "must be ≤ vision.num_hidden_layers (\(vision.config.numHiddenLayers)), found \(lockVision.unlockedLayers)")
        }
        if checkpoint == nil, text.checkpoint == nil, lockText.unlockedLayers > text.sizes.numHiddenLayers {
            coder.report("lock_text.unlocked_layers", "must be ≤ text.num_hidden_layers (\(text.sizes.numHiddenLayers)), found \(lockText.unlockedLayers)")
        }
    }
}

extension Recipe.VisionTower: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("checkpoint", &checkpoint, .nonEmpty)
        coder.field("image_size", &config.imageSize, .atLeast(1))
        coder.field("patch_size", &config.patchSize, .atLeast(1))
        coder.field("hidden_size", &config.hiddenSize, .atLeast(1))
        coder.field("num_hidden_layers", &config.numHiddenLayers, .atLeast(1))
        coder.field("num_attention_heads", &config.numAttentionHeads, .atLeast(1))
        coder.field("intermediate_size", &config.intermediateSize, .atLeast(1))
        coder.field("hidden_act", &config.hiddenAct)
        guard coder.isDecoding else { return }
        if config.imageSize % config.patchSize != 0 {
            coder.report("image_size", "must be a multiple of patch_size (\(config.patchSize)), found \(config.imageSize)")
        }
        if config.hiddenSize % config.numAttentionHeads != 0 {
            coder.report("hidden_size", "must be a multiple of num_attention_heads (\(config.numAttentionHeads)), found \(config.hiddenSize)")
        }
    }
}

extension Recipe.TextTower: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("checkpoint", &checkpoint, .nonEmpty)
        coder.field("pooling", &pooling)
        coder.field("vocab_size", &sizes.vocabSize, .atLeast(1))
        coder.field("hidden_size", &sizes.hiddenSize, .atLeast(1))
        coder.field("num_hidden_layers", &sizes.numHiddenLayers, .atLeast(1))
        coder.field("num_attention_heads", &sizes.numAttentionHeads, .atLeast(1))
        coder.field("intermediate_size", &sizes.intermediateSize, .atLeast(1))
        coder.field("max_position_embeddings", &sizes.maxPositionEmbeddings, .atLeast(1))
        coder.field("hidden_act", &sizes.hiddenAct)
        coder.field("type", &type)
        coder.field("tokenizer", &tokenizer, .nonEmpty)
        guard coder.isDecoding else { return }
        if type == .bert, checkpoint == nil, tokenizer == nil || tokenizer!.hasSuffix(".gz"), !coder.hasProblem(at: coder.path(of: "tokenizer")) {
            coder.report("tokenizer", "a BERT text tower needs a WordPiece tokenizer folder (with vocab.txt), e.g. \".deps/assets/all-MiniLM-L6-v2\"")
        }
        if sizes.hiddenSize % sizes.numAttentionHeads != 0 {
            coder.report("hidden_size", "must be a multiple of num_attention_heads (\(sizes.numAttentionHeads)), found \(sizes.hiddenSize)")
        }
    }
}

extension Recipe.TowerLock: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("unlocked_layers", &unlockedLayers, .atLeast(-1))
    }
}

extension Recipe.DataSection: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        var trainFields = RecipeSourceFields(train)
        coder.section("train", &trainFields, required: "an object with shards or manifest")
        if let source = trainFields.source { train = source }
        var valFields = val.map(RecipeSourceFields.init)
        coder.section("val", &valFields, start: RecipeSourceFields())
        val = valFields?.source

        coder.field("image_size", &imageSize, .atLeast(1))
        coder.field("batch_size", &batchSize, .atLeast(1))
        coder.field("threads", &threads, .atLeast(1))
        coder.field("shuffle_buffer", &shuffleBuffer, .atLeast(0))
        coder.field("bad_samples", &badSamples)
        coder.section("augmentation", &augmentation)
        coder.section("text_augmentation", &textAugmentation)
        coder.field("cache_teacher", &cacheTeacher)
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

    mutating func code(_ coder: inout RecipeCoder) {
        // A source has no defaults: decoding starts from nothing, not from the value it replaces.
        if coder.isDecoding { self = RecipeSourceFields() }
        if coder.isDecoding || shards != nil { coder.field("shards", &shards, .nonEmpty) }
        guard coder.isDecoding || hasManifest else { return }
        var path: String? = hasManifest ? manifest.path : nil
        coder.field("manifest", &path, .nonEmpty)
        coder.field("image_column", &manifest.imageColumn, .nonEmpty)
        coder.field("caption_column", &manifest.captionColumn, .nonEmpty)
        coder.field("label_column", &manifest.labelColumn, .nonEmpty)
        coder.field("separator", &manifest.separator)
        guard coder.isDecoding else { return }

        if let path { manifest.path = path }
        hasManifest = path != nil || coder.hasProblem(at: coder.path(of: "manifest"))
        switch (shards != nil || coder.hasProblem(at: coder.path(of: "shards")), hasManifest) {
        case (true, true): coder.report(nil, "set either shards or manifest, not both")
        case (false, false): coder.report(nil, "needs shards (a shard pattern) or manifest (a CSV/TSV/JSONL file)")
        case (true, false):
            for key in Self.manifestOnlyKeys where coder.has(key) {
                coder.report(key, "only applies to a manifest source, not to shards")
            }
        case (false, true): break
        }
    }
}

extension ImageAugmentation: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.section("random_resized_crop", &randomResizedCrop, start: RandomResizedCrop())
        coder.field("horizontal_flip", &horizontalFlip, .probability)
        coder.section("rotation", &rotation, start: Rotation(probability: 0, degrees: 0))
        coder.section("color_jitter", &colorJitter, start: ColorJitter(probability: 0))
    }
}

extension ImageAugmentation.RandomResizedCrop: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("scale", &scale, .orderedPair(lowAbove: 0, highAtMost: 1))
        coder.field("ratio", &ratio, .orderedPair(lowAbove: 0, highAtMost: nil))
    }
}

extension ImageAugmentation.Rotation: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("probability", &probability, .probability, required: true)
        coder.field("degrees", &degrees, .within(0...180), required: true)
        coder.field("fill", &fill, RecipeRule(requirement: "must be 3 values (RGB)") { $0.count == 3 })
    }
}

extension ImageAugmentation.ColorJitter: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("probability", &probability, .probability, required: true)
        coder.field("brightness", &brightness, .atLeast(0))
        coder.field("contrast", &contrast, .atLeast(0))
        coder.field("saturation", &saturation, .atLeast(0))
        coder.field("hue", &hue, .within(0...0.5))
    }
}

extension TextAugmentationConfig: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("synonym_replacement", &synonymReplacement, .probability)
        coder.field("random_insertion", &randomInsertion, .probability)
        coder.field("random_swap", &randomSwap, .probability)
        coder.field("random_deletion", &randomDeletion, .probability)
    }
}

extension Recipe.LossSection: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("type", &type)
        coder.field("logit_scale_max", &logitScaleMax, .above(0))
    }
}

extension Recipe.OptimizerSection: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("type", &type)
        coder.field("lr", &lr, .above(0))
        coder.field("betas", &betas, RecipeRule(requirement: "must be two values in [0, 1)") { $0.count == 2 && $0.allSatisfy { (0..<1).contains($0) } })
        coder.field("eps", &eps, .above(0))
        coder.field("weight_decay", &weightDecay, .atLeast(0))
        coder.field("momentum", &momentum, .within(0..<1))
        coder.field("nesterov", &nesterov)
        coder.field("no_decay_embeddings", &noDecayEmbeddings)
        coder.field("grad_clip", &gradClip, .above(0))
        coder.field("accumulation_steps", &accumulationSteps, .atLeast(1))
        guard coder.isDecoding else { return }
        if type == .sgd, nesterov, momentum == 0 {
            coder.report("nesterov", "needs momentum > 0")
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

    mutating func code(_ coder: inout RecipeCoder) {
        var name = kind.name
        coder.field("type", &name)
        coder.field("warmup_steps", &warmupSteps, .atLeast(0))
        // A key of another kind is a mistake worth naming (a typo gets "unknown key" instead).
        let own = Self.kindKeys[name] ?? []
        for (other, keys) in Self.kindKeys where other != name {
            for key in keys where !own.contains(key) && coder.has(key) {
                coder.report(key, "only applies to schedule type \"\(other.rawValue)\", not \"\(name.rawValue)\"")
                coder.accept(key)
            }
        }
        switch name {
        case .cosine: kind = .cosine
        case .constant: kind = .constant
        case .constCooldown:
            var (steps, power, endLR) = (1, 1.0, 0.0)
            if case .constantCooldown(let s, let p, let e) = kind { (steps, power, endLR) = (s, p, e) }
            coder.requireKey("cooldown_steps", because: "type is \"const_cooldown\"")
            coder.field("cooldown_steps", &steps, .atLeast(1))
            coder.field("cooldown_power", &power, .above(0))
            coder.field("end_lr", &endLR, .atLeast(0))
            kind = .constantCooldown(cooldownSteps: steps, power: power, endLR: endLR)
        case .step:
            var (every, gamma) = (1, 0.1)
            if case .step(let e, let g) = kind { (every, gamma) = (e, g) }
            coder.requireKey("step_every", because: "type is \"step\"")
            coder.field("step_every", &every, .atLeast(1))
            coder.field("gamma", &gamma, .above(0))
            kind = .step(every: every, gamma: gamma)
        case .linear:
            var endLR = 0.0
            if case .linear(let e) = kind { endLR = e }
            coder.field("end_lr", &endLR, .atLeast(0))
            kind = .linear(endLR: endLR)
        case .plateau:
            kind = .plateau
            coder.field("metric", &plateau.watch.metric, .nonEmpty)
            coder.field("mode", &plateau.watch.mode)
            coder.field("factor", &plateau.factor, RecipeRule(requirement: "must be in (0, 1)") { $0 > 0 && $0 < 1 })
            coder.field("patience", &plateau.patience, .atLeast(0))
            coder.field("threshold", &plateau.threshold, .atLeast(0))
            coder.field("cooldown", &plateau.cooldown, .atLeast(0))
            coder.field("min_lr_scale", &plateau.minLRScale, .within(0...1))
        }
    }
}

extension Recipe.EvalSection: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("every_steps", &everySteps, .atLeast(1))
        coder.field("every_epoch", &everyEpoch)
        coder.field("retrieval", &retrieval)
        coder.section("zeroshot", &zeroshot, start: Recipe.ZeroShot(classes: ""))
        coder.field("batch_size", &batchSize, .atLeast(1))
    }
}

extension Recipe.ZeroShot: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("classes", &classes, .nonEmpty, required: true)
    }
}

extension Recipe.EarlyStoppingSection: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("metric", &watch.metric, .nonEmpty)
        coder.field("mode", &watch.mode)
        coder.field("patience", &patience, .atLeast(1))
        coder.field("min_delta", &minDelta, .atLeast(0))
    }
}

extension Recipe.DistillSection: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("teacher", &teacher, .nonEmpty, required: true)
        coder.field("temperature", &temperature, .above(0))
        coder.field("logit_weight", &logitWeight, .atLeast(0))
        coder.field("feature_weight", &featureWeight, .atLeast(0))
        coder.field("feature_loss", &featureLoss)
        coder.field("feature_projection", &featureProjection)
        coder.field("contrastive_weight", &contrastiveWeight, .atLeast(0))
        coder.field("student_init", &studentInit)
        guard coder.isDecoding else { return }
        if logitWeight == 0, featureWeight == 0, contrastiveWeight == 0 {
            coder.report("logit_weight", "logit_weight, feature_weight and contrastive_weight are all 0: nothing to train on")
        }
    }
}

extension Recipe.CheckpointSection: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("directory", &directory, .nonEmpty)
        coder.field("keep_best", &keepBest)
        coder.field("best_metric", &best.metric, .nonEmpty)
        coder.field("best_mode", &best.mode)
        coder.field("keep_last", &keepLast)
        coder.field("every_steps", &everySteps, .atLeast(1))
    }
}
