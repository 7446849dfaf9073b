import Datasets
import Foundation
import Models
import NN
import Torch

/// Loss weights of a distillation run (the recipe's `distill` section, in domain terms).
public struct DistillationWeights: Sendable {
    public var logit = 1.0
    public var feature = 0.0
    public var featureDistance: FeatureDistance = .cosine
    public var temperature = 1.0

    public init(logit: Double = 1, feature: Double = 0, featureDistance: FeatureDistance = .cosine, temperature: Double = 1) {
        self.logit = logit
        self.feature = feature
        self.featureDistance = featureDistance
        self.temperature = temperature
    }
}

/// Distils a dual-encoder teacher into a dual-encoder student: the student's own contrastive
/// objective (its loss weighted by the recipe) plus, per micro-batch, logit distillation on the
/// batch's image-text similarities and feature distillation on the embeddings. Everything else
/// (evaluation, checkpoints) is the student's contrastive objective.
public final class DistillationObjective: TrainingObjective {
    public let student: ContrastiveObjective
    public let teacher: Teacher
    public let projections: FeatureProjections
    public let weights: DistillationWeights
    public let cache: TeacherCache?

    public var model: Module { student.model }
    public var heads: Module? { projections.isEmpty ? nil : projections }

    public init(student: ContrastiveObjective, teacher: Teacher, weights: DistillationWeights, projections: FeatureProjections, cache: TeacherCache?) {
        self.student = student
        self.teacher = teacher
        self.weights = weights
        self.projections = projections
        self.cache = cache
        student.extraLossTerms = { [unowned self] batch, image, text in self.distillationTerms(batch, image, text) }
    }

    /// The teacher's normalised embeddings of a batch: its own view of the images (when its
    /// preprocessing differs) and its own tokenizer; cached rows when caching is on.
    func teacherEmbeddings(_ batch: Batch) -> (image: Tensor, text: Tensor) {
        let pixels = batch.secondViewPixels ?? batch.pixels
        if let size = teacher.preprocessing?.size {
            precondition(pixels.size(-1) == size, "the teacher needs \(size) px images; this loader has no teacher view (DataLoader.secondView)")
        }
        guard let cache else { return (teacher.imageEmbeddings(pixels), teacher.textEmbeddings(batch.captions)) }
        let image = cache.cachesImages
            ? cache.images(batch.origins) { rows in
                teacher.imageEmbeddings(pixels.indexSelect(dim: 0, index: Tensor(rows.map(Int64.init), shape: [rows.count])))
            }
            : teacher.imageEmbeddings(pixels)
        let text = cache.texts(batch.captions) { rows in teacher.textEmbeddings(rows.map { batch.captions[$0] }) }
        return (image, text)
    }

    func distillationTerms(_ batch: Batch, _ imageFeatures: Tensor, _ textFeatures: Tensor) -> [String: Tensor] {
        let target = teacherEmbeddings(batch)
        var terms: [String: Tensor] = [:]
        if weights.logit > 0 {
            let studentLogits = contrastiveLogits(imageFeatures, textFeatures, logitScale: student.encoder.logitScale)
            let teacherLogits = target.image.matmul(target.text.mT) * teacher.logitScale
            terms["logit_distill_loss"] = logitDistillationLoss(student: studentLogits, teacher: teacherLogits, temperature: weights.temperature) * weights.logit
        }
        if weights.feature > 0 {
            let image = projections.projectImage(F.normalize(imageFeatures.to(.float32), dim: -1))
            let text = projections.projectText(F.normalize(textFeatures.to(.float32), dim: -1))
            let loss = featureDistillationLoss(student: image, teacher: target.image, kind: weights.featureDistance)
                + featureDistillationLoss(student: text, teacher: target.text, kind: weights.featureDistance)
            terms["feature_distill_loss"] = loss * (0.5 * weights.feature)
        }
        return terms
    }

    public func forwardBackward(_ micro: [Batch]) -> [String: Double] { student.forwardBackward(micro) }
    public func afterOptimizerStep() { student.afterOptimizerStep() }

    public func logValues() -> [String: Double] {
        var values = student.logValues()
        if let cache, cache.hits + cache.misses > 0 { values["teacher_cache_hit_rate"] = Double(cache.hits) / Double(cache.hits + cache.misses) }
        return values
    }

    public func evaluate(_ loader: DataLoader) throws -> [String: Double] { try student.evaluate(loader) }
    public func checkpointFiles() throws -> [String: Data] { try student.checkpointFiles() }
    public func saveRunState(in runFolder: String) throws { try cache?.save(to: "\(runFolder)/\(TeacherCache.file)") }
}
