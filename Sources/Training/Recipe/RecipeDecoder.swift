import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Recipes are read by hand from JSONSerialization's output rather than with `Decodable`, so that
// one pass reports every problem (with its JSON path) instead of stopping at the first.
//
// Each section is one struct (Recipe.swift) plus one `code(_:)` function below that names its
// keys, rules and cross-checks. The same function runs in both directions: decoding reads the
// JSON into the struct's fields, encoding writes them out for `resolvedJSON()`. Defaults live
// only in the structs' property initialisers. Adding a section = one struct, one `code(_:)`,
// one `coder.section(...)` line in `Recipe.code(_:)`.

// MARK: - Errors

/// One problem in a recipe.
public struct RecipeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Dotted JSON path (`optimizer.lr`, `data.train.shards`); empty for the file as a whole.
    public var path: String
    public var message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { path.isEmpty ? message : "\(path): \(message)" }
}

/// Every problem found in one recipe, sorted by path.
public struct RecipeErrors: Error, Sendable, Equatable, CustomStringConvertible {
    /// The recipe file, as the user named it.
    public var file: String
    public var errors: [RecipeError]

    public init(file: String, errors: [RecipeError]) {
        self.file = file
        // Stable: problems at one path keep the order they were found in.
        self.errors = errors.enumerated()
            .sorted { ($0.element.path, $0.offset) < ($1.element.path, $1.offset) }
            .map(\.element)
    }

    /// One line per problem: `file: path: message`.
    public var description: String {
        errors.map { file.isEmpty ? $0.description : "\(file): \($0)" }.joined(separator: "\n")
    }
}

// MARK: - Entry points

extension Recipe {
    /// Reads and validates a recipe, reporting every problem at once.
    ///
    /// - Parameters:
    ///   - data: the recipe's JSON (after `applying(overrides:to:)`, if any).
    ///   - file: the file's name for error messages.
    ///   - defaultName: the run name when the recipe sets none (usually the file's base name).
    /// - Throws: `RecipeErrors` with every unknown key (with the nearest valid key), wrong type,
    ///   invalid choice, out-of-range value and conflict; or one error for malformed JSON.
    ///   Paths on disk are not checked here: see `problemsWithPaths(relativeTo:fileExists:)`.
    public static func decode(_ data: Data, file: String, defaultName: String) throws(RecipeErrors) -> Recipe {
        let object = try parseJSONObject(data, file: file)
        let problems = RecipeProblemList()
        var coder = RecipeCoder(decoding: object, path: "", problems: problems)
        // `train` is required, so this placeholder never survives: its absence is reported.
        var recipe = Recipe(name: defaultName, train: .shards(""))
        recipe.code(&coder)
        coder.reportUnknownKeys()
        guard problems.errors.isEmpty else { throw RecipeErrors(file: file, errors: problems.errors) }
        return recipe
    }

    /// The whole recipe with every default filled in (unset optionals as `null`), pretty-printed
    /// with sorted keys: what the run saves as `recipe.json`. Decoding it gives this recipe back.
    public func resolvedJSON() -> Data {
        var coder = RecipeCoder(encodingAt: "")
        var copy = self
        copy.code(&coder)
        let options: JSONSerialization.WritingOptions = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Cannot fail: the tree holds only strings, finite numbers, booleans, NSNull, arrays and objects.
        return (try? JSONSerialization.data(withJSONObject: coder.output, options: options)) ?? Data("{}".utf8)
    }

    /// Parses `data` as a JSON object; anything else is one `RecipeError` at the root.
    static func parseJSONObject(_ data: Data, file: String) throws(RecipeErrors) -> [String: Any] {
        let value: Any
        do {
            value = try JSONSerialization.jsonObject(with: data, options: .fragmentsAllowed)
        } catch {
            throw RecipeErrors(file: file, errors: [RecipeError(path: "", message: malformedJSONMessage(error, data))])
        }
        guard let object = value as? [String: Any] else {
            throw RecipeErrors(file: file, errors: [RecipeError(path: "", message: "expected a JSON object at the top level, found \(renderJSON(value))")])
        }
        return object
    }

    /// Foundation on Linux says "around character N" (a byte offset); turn that into line and column.
    private static func malformedJSONMessage(_ error: any Error, _ data: Data) -> String {
        var reason = ((error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String) ?? "\(error)"
        guard let marker = reason.range(of: " around character ") else { return "malformed JSON: \(reason)" }
        let digits = reason[marker.upperBound...].prefix { $0.isNumber }
        guard let offset = Int(digits), offset <= data.count else { return "malformed JSON: \(reason)" }
        reason = String(reason[..<marker.lowerBound])
        let before = Array(data.prefix(offset))   // an Array, so indices start at 0 even for a Data slice
        let line = before.reduce(1) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
        let column = offset - (before.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? 0) + 1
        return "malformed JSON at line \(line), column \(column): \(reason.lowercased())"
    }
}

// MARK: - Sections

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

        // Checks across sections. A field that already has a problem kept its default, so
        // checks that read it are skipped to avoid a second, misleading message.
        if epochs == nil, maxSteps == nil, !c.hasProblem(at: "epochs"), !c.hasProblem(at: "max_steps") {
            c.report("epochs", "neither epochs nor max_steps is set; set at least one")
        }
        if model.logitScaleInit > loss.logitScaleMax {
            c.report("model.logit_scale_init", "must be ≤ loss.logit_scale_max (\(format(loss.logitScaleMax))), found \(format(model.logitScaleInit))")
        }
        if let maxSteps {
            if schedule.warmupSteps > maxSteps {
                c.report("schedule.warmup_steps", "must be ≤ max_steps (\(maxSteps)), found \(schedule.warmupSteps)")
            }
            if schedule.type == .constCooldown, let cooldown = schedule.cooldownSteps, cooldown > maxSteps {
                c.report("schedule.cooldown_steps", "must be ≤ max_steps (\(maxSteps)), found \(cooldown)")
            }
        }
        if earlyStopping != nil {
            // Early stopping watches an evaluation metric: without evaluations it never fires.
            if data.val == nil, !c.hasProblem(at: "data.val") {
                c.report("early_stopping", "needs data.val to evaluate on")
            }
            if eval.everySteps == nil, !eval.everyEpoch {
                c.report("early_stopping", "needs evaluations: set eval.every_steps or eval.every_epoch")
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
        if checkpoint == nil, vision.checkpoint == nil, lockVision.unlockedLayers > vision.numHiddenLayers {
            c.report("lock_vision.unlocked_layers", "must be ≤ vision.num_hidden_layers (\(vision.numHiddenLayers)), found \(lockVision.unlockedLayers)")
        }
        if checkpoint == nil, text.checkpoint == nil, lockText.unlockedLayers > text.numHiddenLayers {
            c.report("lock_text.unlocked_layers", "must be ≤ text.num_hidden_layers (\(text.numHiddenLayers)), found \(lockText.unlockedLayers)")
        }
    }
}

extension Recipe.VisionTower: RecipeCoding {
    mutating func code(_ c: inout RecipeCoder) {
        c.field("checkpoint", &checkpoint, .nonEmpty)
        c.field("image_size", &imageSize, .atLeast(1))
        c.field("patch_size", &patchSize, .atLeast(1))
        c.field("hidden_size", &hiddenSize, .atLeast(1))
        c.field("num_hidden_layers", &numHiddenLayers, .atLeast(1))
        c.field("num_attention_heads", &numAttentionHeads, .atLeast(1))
        c.field("intermediate_size", &intermediateSize, .atLeast(1))
        c.field("hidden_act", &hiddenAct)
        guard c.isDecoding else { return }
        if imageSize % patchSize != 0 {
            c.report("image_size", "must be a multiple of patch_size (\(patchSize)), found \(imageSize)")
        }
        if hiddenSize % numAttentionHeads != 0 {
            c.report("hidden_size", "must be a multiple of num_attention_heads (\(numAttentionHeads)), found \(hiddenSize)")
        }
    }
}

extension Recipe.TextTower: RecipeCoding {
    mutating func code(_ c: inout RecipeCoder) {
        c.field("checkpoint", &checkpoint, .nonEmpty)
        c.field("pooling", &pooling)
        c.field("vocab_size", &vocabSize, .atLeast(1))
        c.field("hidden_size", &hiddenSize, .atLeast(1))
        c.field("num_hidden_layers", &numHiddenLayers, .atLeast(1))
        c.field("num_attention_heads", &numAttentionHeads, .atLeast(1))
        c.field("intermediate_size", &intermediateSize, .atLeast(1))
        c.field("max_position_embeddings", &maxPositionEmbeddings, .atLeast(1))
        c.field("hidden_act", &hiddenAct)
        c.field("type", &type)
        c.field("tokenizer", &tokenizer, .nonEmpty)
        guard c.isDecoding else { return }
        if type == .bert, checkpoint == nil, tokenizer == nil || tokenizer!.hasSuffix(".gz"), !c.hasProblem(at: c.path(of: "tokenizer")) {
            c.report("tokenizer", "a BERT text tower needs a WordPiece tokenizer folder (with vocab.txt), e.g. \".deps/assets/all-MiniLM-L6-v2\"")
        }
        if hiddenSize % numAttentionHeads != 0 {
            c.report("hidden_size", "must be a multiple of num_attention_heads (\(numAttentionHeads)), found \(hiddenSize)")
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

extension Recipe.Augmentation: RecipeCoding {
    mutating func code(_ c: inout RecipeCoder) {
        c.section("random_resized_crop", &randomResizedCrop, start: Recipe.RandomResizedCrop())
        c.field("horizontal_flip", &horizontalFlip, .probability)
        c.section("rotation", &rotation, start: Recipe.Rotation(probability: 0, degrees: 0))
        c.section("color_jitter", &colorJitter, start: Recipe.ColorJitter(probability: 0))
    }
}

extension Recipe.RandomResizedCrop: RecipeCoding {
    mutating func code(_ c: inout RecipeCoder) {
        c.field("scale", &scale, .orderedPair(lowAbove: 0, highAtMost: 1))
        c.field("ratio", &ratio, .orderedPair(lowAbove: 0, highAtMost: nil))
    }
}

extension Recipe.Rotation: RecipeCoding {
    mutating func code(_ c: inout RecipeCoder) {
        c.field("probability", &probability, .probability, required: true)
        c.field("degrees", &degrees, .within(0...180), required: true)
        c.field("fill", &fill, RecipeRule(requirement: "must be 3 values (RGB)") { $0.count == 3 })
    }
}

extension Recipe.ColorJitter: RecipeCoding {
    mutating func code(_ c: inout RecipeCoder) {
        c.field("probability", &probability, .probability, required: true)
        c.field("brightness", &brightness, .atLeast(0))
        c.field("contrast", &contrast, .atLeast(0))
        c.field("saturation", &saturation, .atLeast(0))
        c.field("hue", &hue, .within(0...0.5))
    }
}

extension Recipe.TextAugmentation: RecipeCoding {
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
    mutating func code(_ c: inout RecipeCoder) {
        c.field("type", &type)
        c.field("warmup_steps", &warmupSteps, .atLeast(0))
        c.field("cooldown_steps", &cooldownSteps, .atLeast(1))
        c.field("cooldown_power", &cooldownPower, .above(0))
        c.field("end_lr", &endLR, .atLeast(0))
        c.field("step_every", &stepEvery, .atLeast(1))
        c.field("gamma", &gamma, .above(0))
        guard c.isDecoding else { return }
        if type == .step, stepEvery == nil, !c.hasProblem(at: c.path(of: "step_every")) {
            c.report("step_every", "required when type is \"step\"")
        }
        if type == .constCooldown, cooldownSteps == nil, !c.hasProblem(at: c.path(of: "cooldown_steps")) {
            c.report("cooldown_steps", "required when type is \"const_cooldown\"")
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
        c.field("metric", &metric, .nonEmpty)
        c.field("mode", &mode)
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
        c.field("keep_last", &keepLast)
        c.field("every_steps", &everySteps, .atLeast(1))
    }
}

// MARK: - The coder

/// Problems found so far; shared by the coders of nested objects.
final class RecipeProblemList {
    private(set) var errors: [RecipeError] = []
    private var paths: Set<String> = []

    func add(_ path: String, _ message: String) {
        errors.append(RecipeError(path: path, message: message))
        paths.insert(path)
    }

    /// Whether a problem was reported at `path` or below it.
    func contains(path: String) -> Bool {
        paths.contains { $0 == path || $0.hasPrefix(path + ".") }
    }
}

/// Reads one JSON object into a struct's fields (decoding) or writes the fields out (encoding).
struct RecipeCoder {
    /// Dotted path of this object; "" at the top.
    let path: String
    /// The object being decoded; nil while encoding.
    private let input: [String: Any]?
    private let problems: RecipeProblemList
    /// Keys asked for, in order: the valid keys of this object.
    private var knownKeys: [String] = []
    /// The encoded object.
    private(set) var output: [String: Any] = [:]

    init(decoding object: [String: Any], path: String, problems: RecipeProblemList) {
        self.path = path
        self.input = object
        self.problems = problems
    }

    init(encodingAt path: String) {
        self.path = path
        self.input = nil
        self.problems = RecipeProblemList()
    }

    var isDecoding: Bool { input != nil }

    func path(of key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// Whether the JSON object has `key` (null included); false while encoding.
    func has(_ key: String) -> Bool { input?[key] != nil }

    /// Whether a problem was reported at `fullPath` (a path from the root) or below it.
    func hasProblem(at fullPath: String) -> Bool { problems.contains(path: fullPath) }

    /// Reports a problem at `key` (a key or dotted path below this object), or at the object itself.
    func report(_ key: String?, _ message: String) {
        problems.add(key.map(path(of:)) ?? path, message)
    }

    private enum Lookup {
        case absent, null, present(Any)
    }

    private mutating func lookup(_ key: String) -> Lookup {
        knownKeys.append(key)
        switch input?[key] {
        case nil: return .absent
        case is NSNull: return .null
        case let value?: return .present(value)
        }
    }

    /// A field that always has a value: absent keeps the default, null is a type error.
    mutating func field<T: RecipeValue>(_ key: String, _ value: inout T, _ rule: RecipeRule<T>? = nil, required: Bool = false) {
        guard isDecoding else {
            output[key] = value.recipeJSON
            return
        }
        switch lookup(key) {
        case .absent:
            if required { report(key, "required") }
        case .null:
            report(key, "expected \(T.recipeExpectation), found null")
        case .present(let raw):
            if let decoded = read(key, raw, rule) { value = decoded }
        }
    }

    /// An optional field: absent keeps the default, null sets nil.
    mutating func field<T: RecipeValue>(_ key: String, _ value: inout T?, _ rule: RecipeRule<T>? = nil) {
        guard isDecoding else {
            output[key] = value?.recipeJSON ?? NSNull()
            return
        }
        switch lookup(key) {
        case .absent: break
        case .null: value = nil
        case .present(let raw):
            if let decoded = read(key, raw, rule) { value = decoded }
        }
    }

    private func read<T: RecipeValue>(_ key: String, _ raw: Any, _ rule: RecipeRule<T>?) -> T? {
        switch T.recipeDecode(RecipeJSON(raw)) {
        case .failure(let mismatch):
            report(key, "\(mismatch.message), found \(renderJSON(raw))" + (mismatch.hint.map { "; \($0)" } ?? ""))
            return nil
        case .success(let decoded):
            if let rule, !rule.holds(decoded) {
                report(key, "\(rule.requirement), found \(renderJSON(raw))")
                return nil
            }
            return decoded
        }
    }

    /// A nested object that always exists. Absent, it is decoded from `{}` so that its required
    /// fields and checks still run, unless it is itself `required` (then `required` says what it should be).
    mutating func section<S: RecipeCoding>(_ key: String, _ value: inout S, required: String? = nil) {
        guard isDecoding else {
            var child = RecipeCoder(encodingAt: path(of: key))
            var copy = value
            copy.code(&child)
            output[key] = child.output
            return
        }
        switch lookup(key) {
        case .absent:
            if let required {
                report(key, "required: \(required)")
            } else {
                decodeObject(key, [:], into: &value)
            }
        case .null:
            report(key, "expected an object, found null")
        case .present(let raw):
            guard let object = raw as? [String: Any] else {
                report(key, "expected an object, found \(renderJSON(raw))")
                return
            }
            decodeObject(key, object, into: &value)
        }
    }

    /// A nested object that may be off: absent keeps the default, null turns it off, an object is
    /// decoded over `start` (the section's defaults, with placeholders for its required fields).
    mutating func section<S: RecipeCoding>(_ key: String, _ value: inout S?, start: S) {
        guard isDecoding else {
            if var copy = value {
                var child = RecipeCoder(encodingAt: path(of: key))
                copy.code(&child)
                output[key] = child.output
            } else {
                output[key] = NSNull()
            }
            return
        }
        switch lookup(key) {
        case .absent: break
        case .null: value = nil
        case .present(let raw):
            guard let object = raw as? [String: Any] else {
                report(key, "expected an object or null, found \(renderJSON(raw))")
                return
            }
            var decoded = start
            decodeObject(key, object, into: &decoded)
            value = decoded
        }
    }

    private func decodeObject<S: RecipeCoding>(_ key: String, _ object: [String: Any], into value: inout S) {
        var child = RecipeCoder(decoding: object, path: path(of: key), problems: problems)
        value.code(&child)
        child.reportUnknownKeys()
    }

    /// Reports every key of the object that no field asked for, with the nearest valid key.
    func reportUnknownKeys() {
        guard let input else { return }
        for key in input.keys.sorted() where !knownKeys.contains(key) {
            var message = "unknown key '\(path(of: key))'"
            if let suggestion = Recipe.nearestName(key, among: knownKeys) {
                message += "; did you mean '\(suggestion)'?"
            } else {
                message += "; valid keys: \(knownKeys.sorted().joined(separator: ", "))"
            }
            problems.add(path(of: key), message)
        }
    }
}

// MARK: - Values

/// A JSON value as JSONSerialization returns it, classified. On Linux numbers and booleans are
/// all NSNumber (`1 is Bool` is true), so the boxed type (`objCType`) tells them apart.
enum RecipeJSON {
    case null, bool(Bool), integer(Int), number(Double), string(String), array([Any]), object([String: Any]), other

    init(_ raw: Any) {
        switch raw {
        case is NSNull: self = .null
        case let s as String: self = .string(s)
        // Native Swift values first (a tree built in code rather than parsed).
        case let b as Bool where type(of: raw) == Bool.self: self = .bool(b)
        case let i as Int where type(of: raw) == Int.self: self = .integer(i)
        case let d as Double where type(of: raw) == Double.self: self = .number(d)
        case let n as NSNumber:
            switch String(cString: n.objCType) {
            case "c", "B": self = .bool(n.boolValue)
            case "d", "f": self = .number(n.doubleValue)
            case "Q", "L": self = n.uint64Value <= UInt64(Int.max) ? .integer(Int(n.uint64Value)) : .number(n.doubleValue)
            default: self = .integer(n.intValue)
            }
        case let a as [Any]: self = .array(a)
        case let o as [String: Any]: self = .object(o)
        default: self = .other
        }
    }
}

/// Why a JSON value is not of the expected type: "expected a number", and maybe a hint
/// ("did you mean …?") for after the value found.
struct RecipeMismatch: Error {
    let message: String
    var hint: String?
}

/// A type a recipe field can hold.
protocol RecipeValue {
    /// What the JSON should be, e.g. "an integer".
    static var recipeExpectation: String { get }
    /// Several of them, for arrays: "numbers".
    static var recipePlural: String { get }
    static func recipeDecode(_ json: RecipeJSON) -> Result<Self, RecipeMismatch>
    /// The value as JSONSerialization writes it.
    var recipeJSON: Any { get }
}

extension RecipeValue {
    static var recipePlural: String { "values" }
    static var recipeMismatch: RecipeMismatch { RecipeMismatch(message: "expected \(recipeExpectation)") }
}

extension Int: RecipeValue {
    static var recipeExpectation: String { "an integer" }
    static var recipePlural: String { "integers" }
    static func recipeDecode(_ json: RecipeJSON) -> Result<Int, RecipeMismatch> {
        switch json {
        case .integer(let i): .success(i)
        // 32.0 (or 1e3) is accepted: some tools write every number with a decimal point.
        case .number(let d): Int(exactly: d).map { .success($0) } ?? .failure(recipeMismatch)
        default: .failure(recipeMismatch)
        }
    }
    var recipeJSON: Any { self }
}

extension Double: RecipeValue {
    static var recipeExpectation: String { "a number" }
    static var recipePlural: String { "numbers" }
    static func recipeDecode(_ json: RecipeJSON) -> Result<Double, RecipeMismatch> {
        switch json {
        case .integer(let i): .success(Double(i))
        case .number(let d) where d.isFinite: .success(d)
        default: .failure(recipeMismatch)
        }
    }
    // JSON has no NaN or infinity; such a value (set in code) is written as a string so that
    // writing never fails and decoding the result reports it.
    var recipeJSON: Any { isFinite ? self : "\(self)" }
}

extension Bool: RecipeValue {
    static var recipeExpectation: String { "true or false" }
    static func recipeDecode(_ json: RecipeJSON) -> Result<Bool, RecipeMismatch> {
        if case .bool(let b) = json { return .success(b) }
        return .failure(recipeMismatch)
    }
    var recipeJSON: Any { self }
}

extension String: RecipeValue {
    static var recipeExpectation: String { "a string" }
    static func recipeDecode(_ json: RecipeJSON) -> Result<String, RecipeMismatch> {
        if case .string(let s) = json { return .success(s) }
        return .failure(recipeMismatch)
    }
    var recipeJSON: Any { self }
}

extension Character: RecipeValue {
    static var recipeExpectation: String { "a single ASCII character" }
    static func recipeDecode(_ json: RecipeJSON) -> Result<Character, RecipeMismatch> {
        // The manifest reader splits on one byte.
        if case .string(let s) = json, s.count == 1, let c = s.first, c.isASCII { return .success(c) }
        return .failure(recipeMismatch)
    }
    var recipeJSON: Any { String(self) }
}

extension Array: RecipeValue where Element: RecipeValue {
    static var recipeExpectation: String { "an array of \(Element.recipePlural)" }
    static func recipeDecode(_ json: RecipeJSON) -> Result<[Element], RecipeMismatch> {
        guard case .array(let items) = json else { return .failure(recipeMismatch) }
        var result: [Element] = []
        for item in items {
            guard case .success(let element) = Element.recipeDecode(RecipeJSON(item)) else { return .failure(recipeMismatch) }
            result.append(element)
        }
        return .success(result)
    }
    var recipeJSON: Any { map(\.recipeJSON) }
}

extension UInt8: RecipeValue {
    static var recipeExpectation: String { "an integer in 0...255" }
    static var recipePlural: String { "integers in 0...255" }
    static func recipeDecode(_ json: RecipeJSON) -> Result<UInt8, RecipeMismatch> {
        guard case .success(let i) = Int.recipeDecode(json), let byte = UInt8(exactly: i) else { return .failure(recipeMismatch) }
        return .success(byte)
    }
    var recipeJSON: Any { Int(self) }
}

/// A string choice: the raw values are the only valid JSON strings.
protocol RecipeChoice: RecipeValue, RawRepresentable<String>, CaseIterable {}

extension RecipeChoice {
    static var recipeExpectation: String { "one of " + allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ") }
    static func recipeDecode(_ json: RecipeJSON) -> Result<Self, RecipeMismatch> {
        guard case .string(let s) = json else { return .failure(recipeMismatch) }
        if let value = Self(rawValue: s) { return .success(value) }
        let suggestion = Recipe.nearestName(s, among: allCases.map(\.rawValue))
        return .failure(RecipeMismatch(message: recipeMismatch.message, hint: suggestion.map { "did you mean \"\($0)\"?" }))
    }
    var recipeJSON: Any { rawValue }
}

extension Recipe.HiddenAct: RecipeChoice {}
extension Recipe.TextPooling: RecipeChoice {}
extension Recipe.TextArchitecture: RecipeChoice {}
extension Recipe.FeatureLoss: RecipeChoice {}
extension Recipe.StudentInit: RecipeChoice {}
extension Recipe.BadSamplePolicy: RecipeChoice {}
extension Recipe.LossType: RecipeChoice {}
extension Recipe.OptimizerType: RecipeChoice {}
extension Recipe.ScheduleType: RecipeChoice {}
extension Recipe.MetricMode: RecipeChoice {}
extension Recipe.Precision: RecipeChoice {}
extension Recipe.ResumePolicy: RecipeChoice {}

// MARK: - Rules

/// A condition on a decoded value, with the message shown when it fails ("must be ≥ 1").
struct RecipeRule<T> {
    let requirement: String
    let holds: (T) -> Bool

    init(requirement: String, _ holds: @escaping (T) -> Bool) {
        self.requirement = requirement
        self.holds = holds
    }
}

extension RecipeRule where T: Comparable {
    static func atLeast(_ bound: T) -> RecipeRule { RecipeRule(requirement: "must be ≥ \(format(bound))") { $0 >= bound } }
    static func above(_ bound: T) -> RecipeRule { RecipeRule(requirement: "must be > \(format(bound))") { $0 > bound } }
    static func within(_ r: ClosedRange<T>) -> RecipeRule {
        RecipeRule(requirement: "must be in [\(format(r.lowerBound)), \(format(r.upperBound))]") { r.contains($0) }
    }
    static func within(_ r: Range<T>) -> RecipeRule {
        RecipeRule(requirement: "must be in [\(format(r.lowerBound)), \(format(r.upperBound)))") { r.contains($0) }
    }
}

extension RecipeRule where T == Double {
    static var probability: RecipeRule { .within(0...1) }
}

extension RecipeRule where T == String {
    static var nonEmpty: RecipeRule { RecipeRule(requirement: "must not be empty") { !$0.isEmpty } }
}

extension RecipeRule where T == [Double] {
    /// `[low, high]` with `lowAbove < low ≤ high (≤ highAtMost)`.
    static func orderedPair(lowAbove: Double, highAtMost: Double?) -> RecipeRule {
        let upper = highAtMost.map { " ≤ \(format($0))" } ?? ""
        return RecipeRule(requirement: "must be [low, high] with \(format(lowAbove)) < low ≤ high\(upper)") { pair in
            pair.count == 2 && lowAbove < pair[0] && pair[0] <= pair[1] && highAtMost.map { pair[1] <= $0 } ?? true
        }
    }
}

/// A number for a message: `1` rather than `1.0`.
fileprivate func format<T>(_ value: T) -> String {
    let text = "\(value)"
    return text.hasSuffix(".0") ? String(text.dropLast(2)) : text
}

/// A JSON value as it appears in the file, shortened, for "found …" in messages.
func renderJSON(_ raw: Any) -> String {
    let options: JSONSerialization.WritingOptions = [.fragmentsAllowed, .sortedKeys, .withoutEscapingSlashes]
    guard JSONSerialization.isValidJSONObject([raw]),
          let data = try? JSONSerialization.data(withJSONObject: raw, options: options) else { return "\(raw)" }
    let text = String(decoding: data, as: UTF8.self)
    return text.count > 60 ? text.prefix(57) + "…" : text
}

// MARK: - Suggestions

extension Recipe {
    /// The candidate the user most likely meant by `word`, if any is close: same letters ignoring case
    /// and `_`/`-`, a small edit distance, or one a prefix of the other (`warmup` → `warmup_steps`).
    static func nearestName(_ word: String, among candidates: [String]) -> String? {
        func normalized(_ s: String) -> [Character] { Array(s.lowercased().filter { $0 != "_" && $0 != "-" }) }
        let target = normalized(word)
        let limit = max(1, min(3, target.count / 3))
        var best: (candidate: String, distance: Int)?
        for candidate in candidates {
            let other = normalized(candidate)
            let distance = editDistance(target, other)
            let isPrefix = min(target.count, other.count) >= 3
                && (other.starts(with: target) || target.starts(with: other))
            guard distance <= limit || isPrefix else { continue }
            if best.map({ distance < $0.distance }) ?? true { best = (candidate, distance) }
        }
        return best?.candidate
    }
}

/// Edit distance counting an insertion, deletion, substitution or swap of neighbours as one edit
/// (optimal string alignment), so `modle` is one edit from `model`.
fileprivate func editDistance(_ a: [Character], _ b: [Character]) -> Int {
    guard !a.isEmpty, !b.isEmpty else { return max(a.count, b.count) }
    var d = (0...a.count).map { i in (0...b.count).map { j in i == 0 ? j : (j == 0 ? i : 0) } }
    for i in 1...a.count {
        for j in 1...b.count {
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
            }
        }
    }
    return d[a.count][b.count]
}

// MARK: - Paths on disk

extension Recipe {
    /// Problems with the files and folders the recipe names, so that a run fails before it loads
    /// anything: checkpoints must be folders with a `config.json` (and a tokenizer where the text
    /// side comes from them), `model.text.tokenizer` a tokenizer folder or a `.txt.gz`, manifests
    /// and the zero-shot classes file must exist, and every shard pattern must match files (each
    /// file a brace expansion names without wildcards must exist, as the loader requires).
    ///
    /// Relative paths resolve against `folder`, which should be the current directory (where
    /// `train` runs, normally the repository root), not the recipe's folder: recipes name
    /// `Data/…` and `.deps/…` relative to the root. Absolute paths and `~/…` are used as they are.
    /// - Parameter fileExists: whether a file or folder exists at an absolute path
    ///   (`FileManager.default.fileExists(atPath:)`; tests pass a fake).
    public func problemsWithPaths(relativeTo folder: String, fileExists: (String) -> Bool) -> [RecipeError] {
        problemsWithPaths(relativeTo: folder, fileExists: fileExists, glob: globFiles)
    }

    /// As `problemsWithPaths(relativeTo:fileExists:)`, with the wildcard matcher replaceable for tests.
    func problemsWithPaths(relativeTo folder: String, fileExists: (String) -> Bool,
                           glob: (String) -> [String]) -> [RecipeError] {
        var problems: [RecipeError] = []
        func resolve(_ path: String) -> String {
            if path.hasPrefix("/") { return path }
            if path == "~" || path.hasPrefix("~/") { return NSString(string: path).expandingTildeInPath }
            if folder.isEmpty { return path }
            return folder.hasSuffix("/") ? folder + path : folder + "/" + path
        }
        func add(_ path: String, _ message: String) { problems.append(RecipeError(path: path, message: message)) }

        func hasTokenizer(_ dir: String) -> Bool {
            (fileExists(dir + "/vocab.json") && fileExists(dir + "/merges.txt")) || fileExists(dir + "/vocab.txt")
        }
        let tokenizerFiles = "vocab.json and merges.txt, or vocab.txt"
        /// Checks a model folder; `needsTokenizer` when text is tokenised with its files.
        func checkModel(_ key: String, _ path: String, needsTokenizer: Bool) {
            let dir = resolve(path)
            guard fileExists(dir + "/config.json") else {
                add(key, "'\(path)' is not a model folder: no config.json in \(dir)")
                return
            }
            if needsTokenizer, !hasTokenizer(dir) {
                add(key, "'\(path)' has no tokenizer (\(tokenizerFiles)) in \(dir)")
            }
        }

        if let checkpoint = model.checkpoint {
            checkModel("model.checkpoint", checkpoint, needsTokenizer: true)
        } else {
            if let checkpoint = model.vision.checkpoint {
                checkModel("model.vision.checkpoint", checkpoint, needsTokenizer: false)
            }
            if let checkpoint = model.text.checkpoint {
                checkModel("model.text.checkpoint", checkpoint, needsTokenizer: model.text.tokenizer == nil)
            }
            if let tokenizer = model.text.tokenizer {
                let path = resolve(tokenizer)
                if tokenizer.hasSuffix(".gz") {
                    if !fileExists(path) { add("model.text.tokenizer", "'\(tokenizer)' does not exist (\(path))") }
                } else if !hasTokenizer(path) {
                    add("model.text.tokenizer", "'\(tokenizer)' is not a tokenizer folder (\(tokenizerFiles)) or a .txt.gz file: \(path)")
                }
            }
        }

        func checkSource(_ key: String, _ source: Source) {
            switch source {
            case .manifest(let manifest):
                let path = resolve(manifest.path)
                if !fileExists(path) { add("\(key).manifest", "'\(manifest.path)' does not exist (\(path))") }
            case .shards(let pattern):
                var matched = 0
                var missing: [String] = []
                for candidate in Recipe.expandBraces(resolve(pattern)) {
                    if candidate.contains(where: { "*?[".contains($0) }) {
                        matched += glob(candidate).count
                    } else if fileExists(candidate) {
                        matched += 1
                    } else {
                        missing.append(candidate)
                    }
                }
                if !missing.isEmpty {
                    let shown = missing.prefix(3).joined(separator: ", ") + (missing.count > 3 ? " and \(missing.count - 3) more" : "")
                    add("\(key).shards", "\(missing.count) shard\(missing.count == 1 ? "" : "s") of '\(pattern)' missing: \(shown)")
                } else if matched == 0 {
                    add("\(key).shards", "'\(pattern)' matches no files (in \(resolve(pattern)))")
                }
            }
        }
        checkSource("data.train", data.train)
        if let val = data.val { checkSource("data.val", val) }

        if let distill {
            let path = resolve(distill.teacher)
            if !fileExists(path + "/config.json") {
                // A run folder's best/ is made by training its recipe: say which command.
                let parts = distill.teacher.split(separator: "/")
                var hint = ""
                if parts.count >= 2, let run = parts.dropLast().last, ["best", "last"].contains(parts.last!) {
                    hint = "; it is made by `swift run -c release train --recipe Recipes/\(run).json`"
                }
                add("distill.teacher", "'\(distill.teacher)' is not a model checkpoint: no config.json in \(path)\(hint)")
            }
        }
        if let zeroshot = eval.zeroshot {
            let path = resolve(zeroshot.classes)
            if !fileExists(path) { add("eval.zeroshot.classes", "'\(zeroshot.classes)' does not exist (\(path))") }
        }
        return problems
    }
}

extension Recipe {
    /// Shell-style brace expansion, as the shard loader does it: `a{1..3}b` → a1b a2b a3b (zero
    /// padding follows the first bound: `{08..10}` → 08 09 10), `{x,y}` → x y; several groups
    /// multiply out, nested braces are not supported.
    static func expandBraces(_ s: String) -> [String] {
        guard let open = s.firstIndex(of: "{"), let close = s[open...].firstIndex(of: "}") else { return [s] }
        let head = s[..<open], body = s[s.index(after: open)..<close], tail = s[s.index(after: close)...]
        let options: [String]
        let bounds = body.components(separatedBy: "..")
        if bounds.count == 2, let low = Int(bounds[0]), let high = Int(bounds[1]), low <= high {
            let width = bounds[0].count
            options = (low...high).map { n in
                let digits = String(n)
                return String(repeating: "0", count: max(0, width - digits.count)) + digits
            }
        } else {
            options = body.components(separatedBy: ",")
        }
        return options.flatMap { expandBraces(head + $0 + tail) }
    }
}

/// Files matching a wildcard pattern (`*`, `?`, `[…]`), via the C library's glob().
fileprivate func globFiles(_ pattern: String) -> [String] {
    var matches = glob_t()
    defer { globfree(&matches) }
    guard glob(pattern, 0, nil, &matches) == 0 else { return [] }
    return (0..<Int(matches.gl_pathc)).compactMap { i in matches.gl_pathv[i].map { String(cString: $0) } }
}
