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
}

extension RecipeRunner {
    /// Turns a recipe with a `distill` section into a distillation run. Everything that can be
    /// checked before training (teacher, dimensions, caching against augmentation) is.
    public static func distillation(_ recipe: Recipe, resolved: Data?) throws -> DistillationPlan {
        guard let d = recipe.distill else {
            throw TrainingError(message: "the recipe has no distill section; `distill` needs at least {\"distill\": {\"teacher\": \"<checkpoint folder>\"}}")
        }
        Torch.manualSeed(UInt64(recipe.seed))
        let teacher = try Teacher(d.teacher)
        let weights = DistillationWeights(logit: d.logitWeight, feature: d.featureWeight,
                                          featureDistance: d.featureLoss == .mse ? .mse : .cosine, temperature: d.temperature)
        // An augmented image or caption differs each epoch, so only the unaugmented side caches.
        let imagesAugmented = !teacher.isTextOnly && recipe.data.augmentation != Recipe.Augmentation.identity
        let textsAugmented = recipe.data.textAugmentation != Recipe.TextAugmentation()
        var warnings: [String] = []
        if recipe.data.cacheTeacher, textsAugmented {
            throw TrainingError(message: "data.cache_teacher needs unaugmented captions (an augmented caption differs each epoch): remove data.text_augmentation, or set data.cache_teacher to false")
        }
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
        func checkDimensions(_ name: String, student: Int) throws {
            guard weights.feature > 0, student != teacher.embeddingDim, !d.featureProjection else { return }
            throw TrainingError(message: "distill.feature_projection is false but the \(name) embeddings differ in size (student \(student), teacher \(teacher.embeddingDim)): set distill.feature_projection to true, or make the student's embedding size \(teacher.embeddingDim)")
        }

        if teacher.isTextOnly {
            if recipe.model.checkpoint != nil {
                throw TrainingError(message: "model.checkpoint: a text-only teacher (\(d.teacher)) distils into a text tower; describe the student in model.text")
            }
            let (tower, tokenizer, tokenizerFolder) = try textTower(recipe.model.text)
            guard let student = tower as? BertModel else {
                throw TrainingError(message: "model.text: a text-only teacher distils into a BERT text tower; set model.text.type to \"bert\"")
            }
            try checkDimensions("text", student: student.width)
            if student.width != teacher.embeddingDim {
                warnings.append("the student's embeddings (\(student.width)) are not in the teacher's space (\(teacher.embeddingDim)); the learned projection is used in training only, so the saved student's embeddings will not be comparable to the teacher's")
            }
            if d.studentInit == .teacherLayers { try initialiseFromTeacherLayers(student, teacher: teacher) }
            if student.parameterCount > teacher.parameterCount {
                warnings.append("the student (\(student.parameterCount) parameters) is larger than the teacher (\(teacher.parameterCount))")
            }
            let projections = FeatureProjections(imageFrom: nil, imageTo: nil, textFrom: student.width, textTo: teacher.embeddingDim)
            let objective = TextDistillationObjective(student: student, tokenizer: tokenizer, tokenizerFolder: tokenizerFolder, teacher: teacher,
                                                      weights: weights, contrastiveWeight: d.contrastiveWeight, projections: projections, cache: try cache())
            let data = try loaders(recipe, images: nil)
            let setup = try assemble(recipe, objective: objective, data: data, resolved: resolved)
            return DistillationPlan(setup: setup, teacher: teacher, teacherValidation: data.validation, warnings: warnings)
        }

        guard let teacherEncoder = teacher.dualEncoder, let teacherPreprocessing = teacher.preprocessing else {
            throw TrainingError(message: "distill.teacher: \(d.teacher) has no image preprocessing")
        }
        if d.studentInit == .teacherLayers {
            throw TrainingError(message: "distill.student_init \"teacher_layers\" is for text-only teachers; use \"random\" or give the student as model.checkpoint")
        }
        let (student, tokenizer, tokenizerFolder, preprocessing) = try model(recipe)
        try checkDimensions("image and text", student: student.projectionDim)
        if student.parameterCount > teacherEncoder.parameterCount {
            warnings.append("the student (\(student.parameterCount) parameters) is larger than the teacher (\(teacherEncoder.parameterCount))")
        }
        let contrastive = ContrastiveObjective(encoder: student, tokenizer: tokenizer, preprocessing: preprocessing, tokenizerFolder: tokenizerFolder)
        try configure(contrastive, recipe)
        contrastive.contrastiveWeight = d.contrastiveWeight
        if recipe.loss.type == .siglip {
            throw TrainingError(message: "loss.type: distillation uses the CLIP contrastive loss; remove loss.type \"siglip\"")
        }
        let projections = weights.feature > 0
            ? FeatureProjections(imageFrom: student.projectionDim, imageTo: teacher.embeddingDim, textFrom: student.projectionDim, textTo: teacher.embeddingDim)
            : FeatureProjections(imageFrom: nil, imageTo: nil, textFrom: 0, textTo: 0)
        let objective = DistillationObjective(student: contrastive, teacher: teacher, weights: weights, projections: projections, cache: try cache())
        let images = ImagePipeline(preprocessing: preprocessing, augmentation: augmentation(recipe.data.augmentation))
        let data = try loaders(recipe, images: images, secondView: teacherPreprocessing == preprocessing ? nil : teacherPreprocessing)
        let setup = try assemble(recipe, objective: objective, data: data, resolved: resolved)
        var teacherValidation = data.validation
        if teacherPreprocessing != preprocessing, let val = recipe.data.val, let options = data.validation?.options {
            teacherValidation = DataLoader(source: try source(val), pipeline: ImagePipeline(preprocessing: teacherPreprocessing), options: options)
        }
        return DistillationPlan(setup: setup, teacher: teacher, teacherValidation: teacherValidation, warnings: warnings)
    }

    /// DistilBERT / TinyBERT initialisation: the teacher's embeddings, and for student layer i of
    /// n the last layer of the i-th of n equal groups of teacher layers (6 → 2: layers 2 and 5),
    /// so the student starts near the teacher's output space.
    static func initialiseFromTeacherLayers(_ student: BertModel, teacher: Teacher) throws {
        guard case .textEncoder(let source, _) = teacher.checkpoint.model else { return }
        let n = student.config.numHiddenLayers, l = source.config.numHiddenLayers
        guard student.width == source.width, n <= l else {
            throw TrainingError(message: "distill.student_init teacher_layers needs the student's width (\(student.width)) to equal the teacher's (\(source.width)) and no more layers than it (\(l))")
        }
        let chosen = (0..<n).map { ($0 + 1) * l / n - 1 }
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

extension Recipe.Augmentation {
    /// No random transform at all.
    static var identity: Recipe.Augmentation {
        var a = Recipe.Augmentation()
        a.randomResizedCrop = nil
        return a
    }
}
