import Datasets
import Foundation
import Models
import NN
import Optim
import Tokenizers
import Torch

/// Builds a run from a validated recipe: the model and its tokenizer, the data loaders, the
/// optimizer, the schedule, and what evaluations watch. `train` uses `contrastive`, `distill`
/// uses `distillation` (DistillationBuilder.swift).
public enum RunBuilder {
    /// Decodes, applies `--set` overrides and checks a recipe file: every problem at once, value
    /// errors and missing files together. Relative paths in the file resolve against its folder;
    /// those in overrides against the working directory (see `RecipePathResolution`).
    public static func load(_ path: String, overrides: [String] = []) throws -> (Recipe, resolved: Data) {
        guard var data = FileManager.default.contents(atPath: path) else {
            throw TrainingError(message: "\(path): cannot read the recipe file")
        }
        if !overrides.isEmpty { data = try Recipe.applying(overrides: overrides, to: data, file: path) }
        let url = URL(fileURLWithPath: path).standardizedFileURL
        let paths = RecipePathResolution(recipeFolder: url.deletingLastPathComponent().path, overridden: Recipe.overriddenKeys(overrides))
        let (recipe, problems) = try Recipe.decodeReportingProblems(data, file: path, defaultName: url.deletingPathExtension().lastPathComponent,
                                                                   paths: paths)
        // Files are checked even when some values are wrong, so that one try shows everything;
        // a path whose value already has a problem is not reported twice.
        let files = recipe.problemsWithPaths(relativeTo: paths.workingDirectory) { FileManager.default.fileExists(atPath: $0) }
            .filter { file in !problems.contains { $0.path == file.path || file.path.hasPrefix($0.path + ".") || $0.path.hasPrefix(file.path + ".") } }
        // The device must exist here (a recipe written for a GPU machine, run on a laptop).
        let machine = problems.contains { $0.path == "device" } ? [] : recipe.problemsWithThisMachine()
        if !problems.isEmpty || !files.isEmpty || !machine.isEmpty { throw RecipeErrors(file: path, errors: problems + files + machine) }
        return (recipe, recipe.resolvedJSON())
    }

    /// Contrastive fine-tuning (`train`): the recipe's dual encoder under the CLIP or SigLIP loss.
    /// `group`: the processes training together (data parallel), or nil for this one alone.
    public static func contrastive(_ recipe: Recipe, resolved: Data?, group: (any DataParallelGroup)? = nil) throws -> TrainingSetup {
        Torch.manualSeed(UInt64(recipe.seed))
        let (model, tokenizer, tokenizerFolder, preprocessing, adapter) = try ModelBuilder.dualEncoder(recipe)
        // The starting model's weights as loaded, before the loss adds or drops logit_bias: WiSE-FT's zero-shot end.
        let start = recipe.wiseFT != nil && recipe.model.checkpoint != nil ? WeightSignature(model) : nil
        let data = try loaders(recipe, images: ImagePipeline(preprocessing: preprocessing, augmentation: recipe.data.augmentation), group: group)
        let objective = try contrastiveObjective(recipe, model, tokenizer, tokenizerFolder, preprocessing)
        objective.group = group
        let caching = FrozenLayerCaching.configure(recipe, model)
        var setup = try assemble(recipe, objective: objective, data: data, resolved: resolved, group: group)
        setup.adapt(with: adapter)
        setup.notes += caching
        setup.wiseFT = try wiseFTPlan(recipe, model: model, start: start, setup: setup)
        return setup
    }

    /// The recipe's contrastive objective over a dual encoder. Under the SigLIP loss the model
    /// carries the learned bias (`logit_bias`, kept from a SigLIP checkpoint or started at -10),
    /// so it is saved, restored on resume and trained as one of the model's parameters (no weight
    /// decay, as a scalar); under the CLIP loss it has none (a softmax ignores a constant bias).
    static func contrastiveObjective(_ recipe: Recipe, _ model: DualEncoder, _ tokenizer: TensorTokenizer, _ tokenizerFolder: String?,
                                     _ preprocessing: ImagePreprocessing) throws -> ContrastiveObjective {
        switch recipe.loss.type {
        case .clip: model.logitBias = nil
        case .siglip where model.logitBias == nil && recipe.model.lora != nil:
            throw TrainingError(message: "loss.type siglip needs a learned logit_bias, which the base model \(recipe.model.checkpoint ?? "") does not have and a LoRA adapter cannot add to it; train it whole first (without model.lora), or use loss.type clip")
        case .siglip: if model.logitBias == nil { model.logitBias = Tensor.full([], DualEncoder.sigLIPLogitBiasInit).requiringGrad() }
        }
        let objective = ContrastiveObjective(encoder: model, tokenizer: tokenizer, preprocessing: preprocessing, tokenizerFolder: tokenizerFolder)
        switch recipe.loss.type {
        case .clip: objective.loss = .clip
        case .siglip: objective.loss = .siglip(SigLIPLoss(bias: model.logitBias!))
        }
        objective.zeroShot = try recipe.eval.zeroshot.map { try ZeroShotClasses.load($0.classes) }
        objective.logitScaleMax = recipe.loss.logitScaleMax
        objective.retrieval = recipe.eval.retrieval
        objective.precision = recipe.precision
        return objective
    }

    static func source(_ source: Recipe.Source) throws -> DatasetSource {
        switch source {
        case .shards(let pattern): return .shards(try WebDataset.shards(pattern))
        case .manifest(let manifest):
            let format: ManifestSource.Format? = manifest.separator.map { .csv(separator: $0.asciiValue!) }   // the decoder takes ASCII only
            return .manifest(try ManifestSource(path: manifest.path, format: format, imageColumn: manifest.imageColumn,
                                                captionColumn: manifest.captionColumn, labelColumn: manifest.labelColumn))
        }
    }

    /// Samples in a source, counted without decoding (manifests: rows; shards: one read).
    static func sampleCount(_ source: DatasetSource) throws -> Int {
        switch source {
        case .manifest(let manifest): return manifest.count
        case .shards(let paths):
            var count = 0
            for path in paths {
                let reader = try ShardReader(path: path)
                while try reader.next() != nil { count += 1 }
            }
            return count
        }
    }

    /// The training and validation loaders, and the step counts they imply.
    struct DataPlan {
        var train: DataLoader
        var validation: DataLoader?
        var stepsPerEpoch: Int
        var totalSteps: Int
    }

    /// `images` nil: a text-only loader. `teacherView`: the teacher's own preprocessing, when it
    /// differs from the student's (the loader replays each crop in it).
    static func loaders(_ recipe: Recipe, images: ImagePipeline?, teacherView: ImagePreprocessing? = nil,
                        group: (any DataParallelGroup)? = nil) throws -> DataPlan {
        let data = recipe.data
        let trainSource = try source(data.train)
        let count = try sampleCount(trainSource)
        let processes = group?.worldSize ?? 1
        // Data parallel: each process takes batch_size samples of a global batch of batch_size × processes.
        let perStep = data.batchSize * recipe.optimizer.accumulationSteps * processes
        guard count >= perStep else {
            throw TrainingError(message: "data.train has \(counted(count, "sample")), fewer than one step needs (batch_size \(data.batchSize) × accumulation_steps \(recipe.optimizer.accumulationSteps)"
                                + (processes > 1 ? " × \(processes) processes)" : ")"))
        }
        let captionAugmenter = data.textAugmentation.isIdentity ? nil : TextAugmenter(wordNet: try WordNet(), config: data.textAugmentation)
        var options = DataLoaderOptions(batchSize: data.batchSize, threads: data.threads, seed: UInt64(recipe.seed), shuffle: true, dropLast: true,
                                        badSamples: data.badSamples, shuffleBuffer: data.shuffleBuffer)
        if let group { options.shard = LoaderShard(rank: group.rank, count: group.worldSize) }
        let teacherPipeline = teacherView.map { ImagePipeline(preprocessing: $0, augmentation: images?.augmentation) }
        let train = DataLoader(source: trainSource, pipeline: images, teacherView: teacherPipeline, captionAugmenter: captionAugmenter, options: options)
        var validation: DataLoader?
        if let val = data.val {
            var valOptions = options
            valOptions.shard = LoaderShard(rank: 0, count: 1)   // rank 0 evaluates on all of it
            valOptions.shuffle = false
            valOptions.dropLast = false
            valOptions.batchSize = recipe.eval.batchSize ?? data.batchSize
            // Caption alternatives are drawn with the seed: a fixed one makes evaluation the
            // same as `eval`'s (and independent of the training seed).
            valOptions.seed = 0
            let valSource = try source(val)
            // An empty validation set would fail only at the first evaluation, after training.
            guard try sampleCount(valSource) > 0 else { throw TrainingError(message: "data.val holds no samples; give validation data or set data.val to null") }
            validation = DataLoader(source: valSource, pipeline: images.map { ImagePipeline(preprocessing: $0.preprocessing) }, options: valOptions)
            // Zero-shot accuracy on data without class labels would be missing from every evaluation.
            if images != nil, let zeroshot = recipe.eval.zeroshot, let validation {
                try ZeroShotClasses.load(zeroshot.classes).checkLabels(in: validation.source, name: "data.val", labelSetting: "data.val.label_column")
            }
        }
        let stepsPerEpoch = count / perStep
        // epochs ≤ 1e6 (the decoder's bound), so the product fits; guarded all the same.
        let epochSteps = recipe.epochs.map { $0.multipliedReportingOverflow(by: stepsPerEpoch) }.map { $0.overflow ? Int.max : $0.partialValue }
        let totalSteps = [recipe.maxSteps, epochSteps].compactMap { $0 }.min() ?? stepsPerEpoch
        return DataPlan(train: train, validation: validation, stepsPerEpoch: stepsPerEpoch, totalSteps: totalSteps)
    }

    /// The device a process trains on: the recipe's, where `cuda` or `auto` on a machine with
    /// several processes means this process's own GPU (`cuda:LOCAL_RANK`), as under torchrun.
    public static func device(of recipe: Recipe, localRank: Int) throws -> Device {
        let device = try Device.parse(recipe.device).validated()
        guard case .cuda = device, recipe.device == "cuda" || recipe.device == "auto", localRank > 0 else { return device }
        return try Device.cuda(localRank).validated()
    }

    /// Optimizer (over the model's trainable parameters and the objective's training heads),
    /// schedule, what evaluations watch, and the loop settings: the part `train` and `distill`
    /// share. Metric names are checked against what the objective reports.
    static func assemble(_ recipe: Recipe, objective: any TrainingObjective, data: DataPlan, resolved: Data?,
                         group: (any DataParallelGroup)? = nil) throws -> TrainingSetup {
        let settings = recipe.optimizer
        var groups = ParameterGroup.standard(objective.model, learningRate: settings.lr, weightDecay: settings.weightDecay,
                                             noDecayForEmbeddings: settings.noDecayEmbeddings)
        if let heads = objective.trainingHeads {
            groups.append(ParameterGroup(name: "training_heads", parameters: heads.trainableParameters().map { ("training_heads.\($0.name)", $0.tensor) },
                                         learningRate: settings.lr, weightDecay: 0))
        }
        let optimizer: Optimizer = switch settings.type {
        case .adamw: AdamW(groups: groups, betas: (settings.betas[0], settings.betas[1]), eps: settings.eps)
        case .sgd: SGD(groups: groups, momentum: settings.momentum, nesterov: settings.nesterov)
        }
        let schedule = LRSchedule(recipe.schedule.kind, warmupSteps: recipe.schedule.warmupSteps, totalSteps: data.totalSteps)
        if let problem = schedule.problems.first { throw RecipeErrors(file: "", errors: [RecipeError(path: "schedule", message: problem)]) }

        let processes = group?.worldSize ?? 1
        if let expected = recipe.worldSize, expected != processes {
            throw RecipeErrors(file: "", errors: [RecipeError(path: "world_size", message: "is \(expected) but \(counted(processes, "process")) \(processes == 1 ? "is" : "are") training; launch \(expected) (torchrun --nproc-per-node or --nproc-per-node), or set world_size to null")])
        }
        var recorded = recipe
        recorded.worldSize = processes   // recipe.json says how many processes trained (the global batch)
        var setup = TrainingSetup(runFolder: "\(recipe.checkpoint.directory)/\(recipe.name)", objective: objective, train: data.train,
                                  validation: data.validation, optimizer: optimizer, schedule: schedule, totalSteps: data.totalSteps)
        setup.stepsPerEpoch = data.stepsPerEpoch
        setup.epochs = recipe.epochs
        setup.gradientClip = settings.gradClip
        setup.precision = recipe.precision
        setup.accumulationSteps = settings.accumulationSteps
        setup.evalEverySteps = recipe.eval.everySteps
        setup.evalEveryEpoch = recipe.eval.everyEpoch
        try watchMetrics(recipe, objective: objective, into: &setup)
        setup.keepLast = recipe.checkpoint.keepLast
        setup.checkpointEverySteps = recipe.checkpoint.everySteps
        setup.logEverySteps = recipe.logEverySteps
        setup.maxNonFiniteSteps = recipe.maxNonFiniteSteps
        setup.recipeJSON = resolved.map { _ in recorded.resolvedJSON() }
        setup.group = group
        setup.notes = ModelBuilder.conversionNotes(recipe)
        setup.device = try device(of: recipe, localRank: group?.localRank ?? 0)
        objective.place(on: setup.device)
        // Batches are collated into page-locked memory, so their copies to a GPU do not block.
        data.train.pinFor = setup.device
        data.validation?.pinFor = setup.device
        Torch.allowTF32 = recipe.tf32
        Torch.deterministicAlgorithms = recipe.deterministic
        try HostAllocator.use(recipe.hostAllocator)
        return setup
    }

    /// Resolves the metrics that early stopping, `best/` and the plateau schedule watch against
    /// the objective's metrics (with "did you mean"), reporting every unknown name at once.
    static func watchMetrics(_ recipe: Recipe, objective: any TrainingObjective, into setup: inout TrainingSetup) throws {
        var problems: [RecipeError] = []
        func resolve(_ watch: Recipe.WatchedMetric, key: String, unset: MetricDefinition?) -> MetricDefinition? {
            guard let name = watch.metric else { return unset.map { MetricDefinition($0.name, watch.mode ?? $0.mode) } }
            do {
                let found = try objective.metric(named: name, key: key)
                return MetricDefinition(found.name, watch.mode ?? found.mode)
            } catch {
                problems.append(error)
                return nil
            }
        }
        let main = objective.mainMetric
        var stopping: MetricDefinition?
        if let section = recipe.earlyStopping {
            stopping = resolve(section.watch, key: "early_stopping.metric", unset: main)
            setup.earlyStopping = stopping.map { EarlyStopping(metric: $0.name, mode: $0.mode, patience: section.patience, minDelta: section.minDelta) }
        }
        setup.best = resolve(recipe.checkpoint.best, key: "checkpoint.best_metric", unset: stopping ?? main)
        if !recipe.checkpoint.keepBest || setup.validation == nil { setup.best = nil }
        if recipe.schedule.kind == .plateau {
            let settings = recipe.schedule.plateau
            if let watched = resolve(settings.watch, key: "schedule.metric", unset: main) {
                setup.plateau = (watched.name, ReduceOnPlateau(mode: watched.mode, factor: settings.factor, patience: settings.patience,
                                                               threshold: settings.threshold, cooldown: settings.cooldown, minScale: settings.minLRScale))
            }
        }
        if !problems.isEmpty { throw RecipeErrors(file: "", errors: problems) }
    }
}
