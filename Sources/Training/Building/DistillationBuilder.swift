import Datasets
import Foundation
import Models
import NN
import Torch

/// A distillation run made from a recipe: the trainer's setup (student, data, optimizer) and the
/// teacher, with what `distill` reports before and after training.
public struct DistillationPlan {
    public var setup: TrainingSetup
    public let teacher: Teacher
    /// The validation data as the teacher sees it (its own image size and normalisation).
    public let teacherValidation: DataLoader?
    /// Warnings to show before training (a student larger than its teacher...).
    public let warnings: [String]
    /// The zero-shot classes both are evaluated on, if any.
    public var zeroShot: ZeroShotClasses?
}

extension RunBuilder {
    /// Turns a recipe with a `distill` section into a distillation run. What the recipe alone
    /// decides was checked when it was decoded; what depends on the teacher is checked here, all
    /// at once, before the student is built.
    public static func distillation(_ recipe: Recipe, resolved: Data?, group: (any DataParallelGroup)? = nil) throws -> DistillationPlan {
        guard let section = recipe.distill else {
            throw TrainingError(message: "the recipe has no distill section; `distill` needs at least {\"distill\": {\"teacher\": \"<checkpoint folder>\"}}")
        }
        Torch.manualSeed(UInt64(recipe.seed))
        let teacher = try Teacher(section.teacher)
        try checkAgainstTeacher(recipe, teacher)
        let weights = DistillationWeights(logit: section.logitWeight, feature: section.featureWeight, featureDistance: section.featureLoss,
                                          temperature: section.temperature, contrastive: section.contrastiveWeight)
        // An augmented image differs each epoch, so only the captions' embeddings can be cached then.
        let imagesAugmented = !teacher.isTextOnly && !recipe.data.augmentation.randomTransforms.isEmpty
        var warnings: [String] = []
        if recipe.data.cacheTeacher, imagesAugmented {
            warnings.append("data.augmentation is on, so the teacher's image embeddings are computed every step and only its text embeddings are cached; set data.augmentation.random_resized_crop to null (and no flip, rotation or color_jitter) to cache both")
        }
        func cache() throws -> TeacherCache? {
            guard recipe.data.cacheTeacher else { return nil }
            let path = "\(recipe.checkpoint.directory)/\(recipe.name)/\(TeacherCache.file)"
            let cache = try TeacherCache.load(from: path, dim: teacher.embeddingDim, fingerprint: teacher.fingerprint)
                ?? TeacherCache(dim: teacher.embeddingDim, fingerprint: teacher.fingerprint)
            cache.cachesImages = !imagesAugmented
            return cache
        }

        if teacher.isTextOnly {
            let (tower, tokenizer, tokenizerFolder) = try ModelBuilder.textTower(recipe.model.text, adapted: recipe.model.lora != nil)
            guard let student = tower as? BertModel else {
                throw TrainingError(message: "model.text: a text-only teacher distils into a BERT text tower; set model.text.type to \"bert\"")
            }
            if student.width != teacher.embeddingDim {
                warnings.append("the student's embeddings (\(student.width)) are not in the teacher's space (\(teacher.embeddingDim)); the learned projection is used in training only, so the saved student's embeddings will not be comparable to the teacher's")
            }
            if section.studentInit == .teacherLayers { try initialiseFromTeacherLayers(student, teacher: teacher) }
            let adapter = try recipe.model.lora.map { lora -> LoRAAdapterConfig in
                guard let base = recipe.model.text.checkpoint else { throw TrainingError(message: "model.lora adapts a pretrained student: set model.text.checkpoint") }
                return try LoRATraining.apply(lora, to: student, base: base, seed: recipe.seed)
            }
            student.setGradientCheckpointing(recipe.model.gradientCheckpointing)
            if student.parameterCount > teacher.parameterCount {
                warnings.append("the student (\(student.parameterCount) parameters) is larger than the teacher (\(teacher.parameterCount))")
            }
            let projections = FeatureProjections(imageFrom: nil, imageTo: nil, textFrom: student.width, textTo: teacher.embeddingDim)
            let objective = TextDistillationObjective(student: student, tokenizer: tokenizer, tokenizerFolder: tokenizerFolder, teacher: teacher,
                                                      weights: weights, projections: projections, cache: try cache())
            if let group, group.worldSize > 1 {
                throw TrainingError(message: "text-only distillation trains in one process; start it without torchrun or --nproc-per-node")
            }
            let data = try loaders(recipe, images: nil)
            var setup = try assemble(recipe, objective: objective, data: data, resolved: resolved)
            setup.adapt(with: adapter)
            return DistillationPlan(setup: setup, teacher: teacher, teacherValidation: data.validation, warnings: warnings)
        }

        let teacherPreprocessing = teacher.preprocessing!   // checked above
        let (student, tokenizer, tokenizerFolder, preprocessing, adapter) = try ModelBuilder.dualEncoder(recipe)
        if student.projectionDim != teacher.embeddingDim, weights.feature > 0, !section.featureProjection {
            throw TrainingError(message: "distill.feature_projection is false but the embeddings differ in size (student \(student.projectionDim), teacher \(teacher.embeddingDim)): set distill.feature_projection to true, or model.projection_dim to \(teacher.embeddingDim)")
        }
        if student.parameterCount > teacher.parameterCount {
            warnings.append("the student (\(student.parameterCount) parameters) is larger than the teacher (\(teacher.parameterCount))")
        }
        let contrastive = try contrastiveObjective(recipe, student, tokenizer, tokenizerFolder, preprocessing)
        contrastive.group = group
        let projections = weights.feature > 0
            ? FeatureProjections(imageFrom: student.projectionDim, imageTo: teacher.embeddingDim, textFrom: student.projectionDim, textTo: teacher.embeddingDim)
            : FeatureProjections(imageFrom: nil, imageTo: nil, textFrom: 0, textTo: 0)
        let objective = DistillationObjective(student: contrastive, teacher: teacher, weights: weights, projections: projections, cache: try cache())
        let images = ImagePipeline(preprocessing: preprocessing, augmentation: recipe.data.augmentation)
        let data = try loaders(recipe, images: images, teacherView: teacherPreprocessing == preprocessing ? nil : teacherPreprocessing, group: group)
        var setup = try assemble(recipe, objective: objective, data: data, resolved: resolved, group: group)
        setup.adapt(with: adapter)
        var teacherValidation = data.validation
        if teacherPreprocessing != preprocessing, let val = recipe.data.val, let options = data.validation?.options {
            teacherValidation = DataLoader(source: try source(val), pipeline: ImagePipeline(preprocessing: teacherPreprocessing), options: options)
        }
        return DistillationPlan(setup: setup, teacher: teacher, teacherValidation: teacherValidation, warnings: warnings, zeroShot: contrastive.zeroShot)
    }

    /// What the teacher's kind and sizes rule out, reported together.
    static func checkAgainstTeacher(_ recipe: Recipe, _ teacher: Teacher) throws {
        let section = recipe.distill!
        var problems: [RecipeError] = []
        if teacher.isTextOnly {
            if recipe.model.checkpoint != nil {
                problems.append(RecipeError(path: "model.checkpoint", message: "a text-only teacher (\(section.teacher)) distils into a text tower; describe the student in model.text"))
            }
            if recipe.model.text.checkpoint == nil, recipe.model.text.type != .bert {
                problems.append(RecipeError(path: "model.text.type", message: "a text-only teacher distils into a BERT text tower; set it to \"bert\""))
            }
            let width = recipe.model.text.sizes.hiddenSize
            if recipe.model.text.checkpoint == nil, section.featureWeight > 0, !section.featureProjection, width != teacher.embeddingDim {
                problems.append(RecipeError(path: "distill.feature_projection", message: "is false but the text embeddings differ in size (student \(width), teacher \(teacher.embeddingDim)): set it to true, or model.text.hidden_size to \(teacher.embeddingDim)"))
            }
        } else {
            if teacher.preprocessing == nil {
                problems.append(RecipeError(path: "distill.teacher", message: "\(section.teacher) has no image preprocessing (preprocessor_config.json)"))
            }
            if section.studentInit == .teacherLayers {
                problems.append(RecipeError(path: "distill.student_init", message: "\"teacher_layers\" is for text-only teachers; use \"random\" or give the student as model.checkpoint"))
            }
        }
        if !problems.isEmpty { throw RecipeErrors(file: "", errors: problems) }
    }

    /// DistilBERT / TinyBERT initialisation: the teacher's embeddings, and for student layer i of
    /// n the last layer of the i-th of n equal groups of teacher layers (6 → 2: layers 2 and 5),
    /// so the student starts near the teacher's output space.
    static func initialiseFromTeacherLayers(_ student: BertModel, teacher: Teacher) throws {
        guard case .textEncoder(let source, _) = teacher.checkpoint.model else { return }
        let studentLayers = student.config.numHiddenLayers, teacherLayers = source.config.numHiddenLayers
        guard student.width == source.width, studentLayers <= teacherLayers else {
            throw TrainingError(message: "distill.student_init teacher_layers needs the student's width (\(student.width)) to equal the teacher's (\(source.width)) and no more layers than it (\(teacherLayers))")
        }
        let chosen = (0..<studentLayers).map { ($0 + 1) * teacherLayers / studentLayers - 1 }
        var weights: [String: Tensor] = [:]
        for (name, tensor) in source.stateDict() {
            if name.hasPrefix("embeddings.") { weights[name] = tensor }
            for (i, j) in chosen.enumerated() where name.hasPrefix("encoder.layer.\(j).") {
                weights["encoder.layer.\(i)." + name.dropFirst("encoder.layer.\(j).".count)] = tensor
            }
        }
        try student.load(weights, strict: false, source: "\(teacher.path) (layers \(chosen))")
    }
}
