import Datasets
import Foundation
import Models
import NN
import Optim
import Tokenizers
import Torch

/// Turns a validated recipe into a training setup: builds or loads the model, its tokenizer,
/// the data loaders, the optimizer and the schedule.
public enum RecipeRunner {
    public static let defaultCLIPMerges = ".deps/assets/bpe_simple_vocab_16e6.txt.gz"

    /// Decodes, applies `--set` overrides and checks a recipe file: every problem at once.
    public static func load(_ path: String, overrides: [String] = []) throws -> (Recipe, resolved: Data) {
        guard var data = FileManager.default.contents(atPath: path) else {
            throw TrainingError(message: "\(path): cannot read the recipe file")
        }
        if !overrides.isEmpty { data = try Recipe.applying(overrides: overrides, to: data, file: path) }
        let name = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        let recipe = try Recipe.decode(data, file: path, defaultName: name)
        let problems = recipe.problemsWithPaths(relativeTo: FileManager.default.currentDirectoryPath) { FileManager.default.fileExists(atPath: $0) }
        if !problems.isEmpty { throw RecipeErrors(file: path, errors: problems) }
        return (recipe, recipe.resolvedJSON())
    }

    /// The model (and where its tokenizer lives) described by the recipe's model section.
    public static func model(_ recipe: Recipe) throws -> (DualEncoder, TensorTokenizer, tokenizerFolder: String?, ImagePreprocessing) {
        let m = recipe.model
        if let path = m.checkpoint {
            let checkpoint = try Pretrained.load(path)
            guard case .dualEncoder(let model) = checkpoint.model else {
                throw TrainingError(message: "model.checkpoint \(path) is a text-only model; give it as model.text.checkpoint with a vision tower")
            }
            let preprocessing = checkpoint.preprocessing ?? ImagePreprocessing(size: recipe.data.imageSize ?? 224)
            lock(model.visionModel, unlockedLayers: m.lockVision.unlockedLayers)
            lock(model.textModel, unlockedLayers: m.lockText.unlockedLayers)
            return (model, try checkpoint.tokenizer(), path, preprocessing)
        }
        let vision: any ImageTower
        if let path = m.vision.checkpoint {
            guard case .dualEncoder(let source) = try Pretrained.load(path).model else {
                throw TrainingError(message: "model.vision.checkpoint \(path) has no vision tower")
            }
            vision = source.visionModel
        } else {
            var c = CLIPVisionConfig()
            c.imageSize = m.vision.imageSize
            c.patchSize = m.vision.patchSize
            c.hiddenSize = m.vision.hiddenSize
            c.numHiddenLayers = m.vision.numHiddenLayers
            c.numAttentionHeads = m.vision.numAttentionHeads
            c.intermediateSize = m.vision.intermediateSize
            c.hiddenAct = Activation(huggingFaceName: m.vision.hiddenAct.rawValue) ?? .quickGELU
            vision = CLIPVisionTransformer(c)
        }
        let (text, tokenizer, tokenizerFolder) = try textTower(m.text)
        let model = DualEncoder(kind: .visionTextDualEncoder, vision: vision, text: text, projectionDim: m.projectionDim, logitScaleInit: m.logitScaleInit)
        lock(model.visionModel, unlockedLayers: m.lockVision.unlockedLayers)
        lock(model.textModel, unlockedLayers: m.lockText.unlockedLayers)
        let size = recipe.data.imageSize ?? (vision as? CLIPVisionTransformer)?.config.imageSize ?? 224
        return (model, tokenizer, tokenizerFolder, ImagePreprocessing(size: size))
    }

    /// The text tower of `model.text`: from a checkpoint, or built from its sizes (CLIP or BERT),
    /// with its tokenizer and the folder its tokenizer files come from.
    static func textTower(_ t: Recipe.TextTower) throws -> (any TextTower, TensorTokenizer, tokenizerFolder: String?) {
        if let path = t.checkpoint {
            let checkpoint = try Pretrained.load(path)
            let text: any TextTower
            switch checkpoint.model {
            case .textEncoder(let bert, _):
                bert.pooling = TextPooling(rawValue: t.pooling.rawValue) ?? .pooler
                if bert.pooling == .pooler && bert.pooler == nil {
                    throw TrainingError(message: "model.text.pooling is 'pooler' but \(path) has no pooler weights; use \"mean\" or \"cls\"")
                }
                text = bert
            case .dualEncoder(let source): text = source.textModel
            }
            return (text, try checkpoint.tokenizer(), path)
        }
        switch t.type {
        case .clip:
            var c = CLIPTextConfig()
            c.vocabSize = t.vocabSize
            c.hiddenSize = t.hiddenSize
            c.numHiddenLayers = t.numHiddenLayers
            c.numAttentionHeads = t.numAttentionHeads
            c.intermediateSize = t.intermediateSize
            c.maxPositionEmbeddings = t.maxPositionEmbeddings
            c.hiddenAct = Activation(huggingFaceName: t.hiddenAct.rawValue) ?? .quickGELU
            let source = t.tokenizer ?? defaultCLIPMerges
            let tokenizer = source.hasSuffix(".gz")
                ? try TensorTokenizer.openCLIP(mergesGz: source, contextLength: c.maxPositionEmbeddings)
                : try TensorTokenizer.fromDirectory(source, contextLength: c.maxPositionEmbeddings)
            return (CLIPTextTransformer(c), tokenizer, source)   // a .gz becomes vocab.json + merges.txt in checkpoints
        case .bert:
            guard let folder = t.tokenizer else { throw TrainingError(message: "model.text.tokenizer: a BERT text tower needs a WordPiece tokenizer folder") }
            let tokenizer = try TensorTokenizer.fromDirectory(folder, contextLength: t.maxPositionEmbeddings)
            var c = BertConfig()
            guard let wordPiece = tokenizer.tokenizer as? WordPieceTokenizer else {
                throw TrainingError(message: "model.text.tokenizer: '\(folder)' is not a WordPiece (vocab.txt) tokenizer, which a BERT text tower needs")
            }
            c.vocabSize = wordPiece.vocabularySize
            c.hiddenSize = t.hiddenSize
            c.numHiddenLayers = t.numHiddenLayers
            c.numAttentionHeads = t.numAttentionHeads
            c.intermediateSize = t.intermediateSize
            c.maxPositionEmbeddings = t.maxPositionEmbeddings
            c.hiddenAct = Activation(huggingFaceName: t.hiddenAct.rawValue) ?? .gelu
            let pooling = TextPooling(rawValue: t.pooling.rawValue) ?? .mean
            return (BertModel(c, pooling: pooling, withPooler: pooling == .pooler), tokenizer, folder)
        }
    }

    /// LiT-style locking: -1 leaves the tower trainable; k ≥ 0 freezes all but its last k
    /// transformer layers (and, when k > 0, the norms and pooler after them).
    static func lock(_ tower: Module, unlockedLayers: Int) {
        guard unlockedLayers >= 0 else { return }
        tower.freeze()
        guard unlockedLayers > 0 else { return }
        let names = tower.namedParameters().map(\.name)
        let layerIndex: (String) -> Int? = { name in
            for marker in ["encoder.layers.", "encoder.layer."] {
                if let r = name.range(of: marker), let n = Int(name[r.upperBound...].prefix { $0.isNumber }) { return n }
            }
            return nil
        }
        let layers = (names.compactMap(layerIndex).max() ?? -1) + 1
        tower.unfreeze { name in
            if let i = layerIndex(name) { return i >= layers - unlockedLayers }
            return ["post_layernorm", "final_layer_norm", "pooler"].contains { name.hasPrefix($0) }
        }
    }

    static func source(_ s: Recipe.Source) throws -> DatasetSource {
        switch s {
        case .shards(let pattern): return .shards(try WebDataset.shards(pattern))
        case .manifest(let m):
            let format: ManifestSource.Format? = m.separator.map { .csv(separator: $0.asciiValue ?? 44) }
            return .manifest(try ManifestSource(path: m.path, format: format, imageColumn: m.imageColumn, captionColumn: m.captionColumn, labelColumn: m.labelColumn))
        }
    }

    static func augmentation(_ a: Recipe.Augmentation) -> ImageAugmentation {
        ImageAugmentation(
            randomResizedCrop: a.randomResizedCrop.map { ImageAugmentation.RandomResizedCrop(scale: $0.scale, ratio: $0.ratio) },
            horizontalFlip: a.horizontalFlip,
            rotation: a.rotation.map { ImageAugmentation.Rotation(probability: $0.probability, degrees: $0.degrees, fill: $0.fill) },
            colorJitter: a.colorJitter.map { ImageAugmentation.ColorJitter(probability: $0.probability, brightness: $0.brightness, contrast: $0.contrast, saturation: $0.saturation, hue: $0.hue) })
    }

    /// Samples in a source, counted without decoding (manifests: rows; shards: one read).
    static func sampleCount(_ source: DatasetSource) throws -> Int {
        switch source {
        case .manifest(let m): return m.count
        case .shards(let paths):
            var n = 0
            for path in paths {
                let reader = try ShardReader(path: path)
                while try reader.next() != nil { n += 1 }
            }
            return n
        }
    }

    /// Everything the trainer needs, from a recipe.
    public static func setup(_ recipe: Recipe, resolved: Data?) throws -> TrainingSetup {
        Torch.manualSeed(UInt64(recipe.seed))
        let (model, tokenizer, tokenizerFolder, preprocessing) = try model(recipe)
        let data = try loaders(recipe, images: ImagePipeline(preprocessing: preprocessing, augmentation: augmentation(recipe.data.augmentation)))
        let objective = ContrastiveObjective(encoder: model, tokenizer: tokenizer, preprocessing: preprocessing, tokenizerFolder: tokenizerFolder)
        var extraGroups: [ParameterGroup] = []
        if recipe.loss.type == .siglip {
            let siglip = SigLIPLoss()
            extraGroups.append(ParameterGroup(name: "loss", parameters: [("loss.logit_bias", siglip.logitBias)], learningRate: recipe.optimizer.lr, weightDecay: 0))
            objective.loss = .siglip(siglip)
        }
        try configure(objective, recipe)
        return try assemble(recipe, objective: objective, data: data, extraGroups: extraGroups, resolved: resolved)
    }

    /// The recipe's contrastive settings on an objective.
    static func configure(_ objective: ContrastiveObjective, _ recipe: Recipe) throws {
        objective.zeroShot = try recipe.eval.zeroshot.map { try ZeroShotClasses.load($0.classes) }
        objective.logitScaleMax = recipe.loss.logitScaleMax
        objective.retrieval = recipe.eval.retrieval
        objective.precision = recipe.precision == .bf16 ? .bf16 : .fp32
    }

    /// The training and validation loaders, and the step counts they imply.
    struct DataPlan {
        var train: DataLoader
        var validation: DataLoader?
        var stepsPerEpoch: Int
        var totalSteps: Int
    }

    /// `images` nil: a text-only loader. `secondView`: the teacher's own preprocessing.
    static func loaders(_ recipe: Recipe, images: ImagePipeline?, secondView: ImagePreprocessing? = nil) throws -> DataPlan {
        let d = recipe.data
        let trainSource = try source(d.train)
        let count = try sampleCount(trainSource)
        let perStep = d.batchSize * recipe.optimizer.accumulationSteps
        guard count >= perStep else {
            throw TrainingError(message: "data.train has \(count) samples, fewer than one step needs (batch_size \(d.batchSize) × accumulation_steps \(recipe.optimizer.accumulationSteps))")
        }
        var textAugmenter: TextAugmenter?
        let ta = TextAugmentationConfig(synonymReplacement: d.textAugmentation.synonymReplacement, randomInsertion: d.textAugmentation.randomInsertion,
                                        randomSwap: d.textAugmentation.randomSwap, randomDeletion: d.textAugmentation.randomDeletion)
        if !ta.isIdentity { textAugmenter = TextAugmenter(wordNet: try WordNet(), config: ta) }
        let options = DataLoaderOptions(batchSize: d.batchSize, threads: d.threads, seed: UInt64(recipe.seed), shuffle: true, dropLast: true,
                                        badSamples: d.badSamples == .fail ? .fail : .skip, shuffleBuffer: d.shuffleBuffer)
        let second = secondView.map { ImagePipeline(preprocessing: $0, augmentation: images?.augmentation) }
        let train = DataLoader(source: trainSource, pipeline: images, secondView: second, captionAugmenter: textAugmenter, options: options)
        var validation: DataLoader?
        if let val = d.val {
            var valOptions = options
            valOptions.shuffle = false
            valOptions.dropLast = false
            valOptions.batchSize = recipe.eval.batchSize ?? d.batchSize
            // The caption picked for a multi-caption sample follows the loader's seed; validation
            // uses a fixed one, as `eval` does, so a checkpoint scores the same in both.
            valOptions.seed = 0
            validation = DataLoader(source: try source(val), pipeline: images.map { ImagePipeline(preprocessing: $0.preprocessing) }, options: valOptions)
        }
        let stepsPerEpoch = count / perStep
        let totalSteps = [recipe.maxSteps, recipe.epochs.map { $0 * stepsPerEpoch }].compactMap { $0 }.min() ?? stepsPerEpoch
        return DataPlan(train: train, validation: validation, stepsPerEpoch: stepsPerEpoch, totalSteps: totalSteps)
    }

    /// Optimizer (over the model's trainable parameters, the objective's heads and
    /// `extraGroups`), schedule and the loop settings: the part `train` and `distill` share.
    static func assemble(_ recipe: Recipe, objective: any TrainingObjective, data: DataPlan, extraGroups: [ParameterGroup] = [],
                         resolved: Data?) throws -> TrainingSetup {
        let o = recipe.optimizer
        let totalSteps = data.totalSteps
        var groups = ParameterGroup.standard(objective.model, learningRate: o.lr, weightDecay: o.weightDecay, noDecayForEmbeddings: o.noDecayEmbeddings)
        groups += extraGroups
        if let heads = objective.heads {
            groups.append(ParameterGroup(name: "heads", parameters: heads.trainableParameters().map { ("heads.\($0.name)", $0.tensor) },
                                         learningRate: o.lr, weightDecay: 0))
        }
        let optimizer: Optimizer = o.type == .adamw
            ? AdamW(groups: groups, betas: (o.betas[0], o.betas[1]), eps: o.eps)
            : SGD(groups: groups, momentum: o.momentum, nesterov: o.nesterov)
        let s = recipe.schedule
        let kind: LRSchedule.Kind
        switch s.type {
        case .cosine: kind = .cosine
        case .constant: kind = .constant
        case .constCooldown: kind = .constantCooldown(cooldownSteps: s.cooldownSteps ?? totalSteps / 10, power: s.cooldownPower, endLR: s.endLR)
        case .step: kind = .step(every: s.stepEvery ?? Swift.max(1, totalSteps / 3), gamma: s.gamma)
        case .linear: kind = .linear(endLR: s.endLR)
        }
        let schedule = LRSchedule(kind, warmupSteps: s.warmupSteps, totalSteps: totalSteps)
        if let problem = schedule.problems.first { throw TrainingError(message: "schedule: \(problem)") }

        var setup = TrainingSetup(runFolder: "\(recipe.checkpoint.directory)/\(recipe.name)", objective: objective, train: data.train,
                                  validation: data.validation, optimizer: optimizer, schedule: schedule, totalSteps: totalSteps)
        setup.stepsPerEpoch = data.stepsPerEpoch
        setup.gradientClip = o.gradClip
        setup.accumulationSteps = o.accumulationSteps
        setup.evalEverySteps = recipe.eval.everySteps
        setup.evalEveryEpoch = recipe.eval.everyEpoch
        setup.earlyStopping = recipe.earlyStopping.map {
            EarlyStopping(metric: $0.metric, mode: $0.mode == .max ? .max : .min, patience: $0.patience, minDelta: $0.minDelta)
        }
        setup.keepBest = recipe.checkpoint.keepBest
        setup.keepLast = recipe.checkpoint.keepLast
        setup.checkpointEverySteps = recipe.checkpoint.everySteps
        setup.logEverySteps = recipe.logEverySteps
        setup.maxNonFiniteSteps = recipe.maxNonFiniteSteps
        setup.recipeJSON = resolved
        return setup
    }
}
