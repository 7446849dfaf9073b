import Datasets
import Foundation
import Models
import NN
import Optim
import Torch

/// Loss weights of a distillation run (the recipe's `distill` section, in domain terms).
public struct DistillationWeights: Sendable {
    public var logit = 1.0
    public var feature = 0.0
    public var featureDistance: FeatureDistance = .cosine
    public var temperature = 1.0
    /// The student's own contrastive loss.
    public var contrastive = 1.0

    public init(logit: Double = 1, feature: Double = 0, featureDistance: FeatureDistance = .cosine, temperature: Double = 1,
                contrastive: Double = 1) {
        self.logit = logit
        self.feature = feature
        self.featureDistance = featureDistance
        self.temperature = temperature
        self.contrastive = contrastive
    }
}

/// Distils a dual-encoder teacher into a dual-encoder student (open_clip's `distill_task.py`,
/// generalised): per micro-batch, the student's own contrastive loss, KL between the teacher's
/// and the student's image-text similarities, and the distance between their embeddings.
/// Evaluation, checkpoints and embeddings are the student's contrastive objective's.
public final class DistillationObjective: TrainingObjective {
    public let student: ContrastiveObjective
    public let teacher: Teacher
    public let projections: FeatureProjections
    public let weights: DistillationWeights
    public let cache: TeacherCache?

    public var model: Module { student.model }
    public var trainingHeads: Module? { projections.isEmpty ? nil : projections }
    public var metrics: [MetricDefinition] { student.metrics }

    public init(student: ContrastiveObjective, teacher: Teacher, weights: DistillationWeights, projections: FeatureProjections, cache: TeacherCache?) {
        self.student = student
        self.teacher = teacher
        self.weights = weights
        self.projections = projections
        self.cache = cache
    }

    public func forwardBackward(_ micro: [Batch], scaler: GradScaler?) throws -> [String: Double] {
        // The distillation terms are means over one micro-batch (see `backward`).
        try student.accumulate(micro, perMicroBatch: ["logit_distill_loss", "feature_distill_loss"], scaler: scaler) { i, features in
            try lossTerms(micro[i], features, trainsLossParameters: i == 0)
        }
    }

    /// The weighted loss terms of one micro-batch: the student's contrastive loss over the step's
    /// features, then the teacher's embeddings (computed or cached) against the student's.
    func lossTerms(_ batch: Batch, _ features: StepFeatures, trainsLossParameters: Bool) throws -> [String: Tensor] {
        var terms: [String: Tensor] = [:]
        if weights.contrastive > 0 {
            let (name, loss) = student.contrastiveTerm(features, trainsLossParameters: trainsLossParameters)
            terms[name] = weights.contrastive == 1 ? loss : loss * weights.contrastive
        }
        let target = teacherEmbeddings(batch)
        if let share = features.microShare, let group = student.group {
            // Across processes: the teacher's embeddings of every process's micro-batch for the
            // logit term's columns; this process's rows of each term (see `RowShare`).
            return try sharedDistillationTerms(terms, target: target, features: features, share: share, group: group)
        }
        if weights.logit > 0 {
            let studentLogits = contrastiveLogits(features.image, features.text, logitScale: student.encoder.logitScale)
            let teacherLogits = target.image.matmul(target.text.mT) * teacher.logitScale
            terms["logit_distill_loss"] = logitDistillationLoss(student: studentLogits, teacher: teacherLogits, temperature: weights.temperature) * weights.logit
        }
        if weights.feature > 0 {
            let image = projections.projectImage(F.normalize(features.image.to(.float32), dim: -1))
            let text = projections.projectText(F.normalize(features.text.to(.float32), dim: -1))
            let loss = featureDistillationLoss(student: image, teacher: target.image, kind: weights.featureDistance)
                + featureDistillationLoss(student: text, teacher: target.text, kind: weights.featureDistance)
            terms["feature_distill_loss"] = loss * (0.5 * weights.feature)
        }
        return terms
    }

    /// The teacher's normalised embeddings of a batch: its own view of the images (when its
    /// preprocessing differs) and its own tokenizer; cached rows when caching is on.
    func teacherEmbeddings(_ batch: Batch) -> (image: Tensor, text: Tensor) {
        let pixels = batch.teacherPixels ?? batch.pixels
        guard let cache else { return (teacher.imageEmbeddings(pixels), teacher.textEmbeddings(batch.captions)) }
        let image = cache.cachesImages
            ? cache.images(batch.origins) { rows in
                teacher.imageEmbeddings(pixels.indexSelect(dim: 0, index: Tensor(rows.map(Int64.init), shape: [rows.count]).on(pixels.device)))
            }.on(teacher.device)   // the cache keeps host rows
            : teacher.imageEmbeddings(pixels)
        let text = cache.texts(batch.captions) { rows in teacher.textEmbeddings(rows.map { batch.captions[$0] }) }.on(teacher.device)
        return (image, text)
    }

    public func afterOptimizerStep() { student.afterOptimizerStep() }

    public func place(on device: Device) {
        model.to(device)
        trainingHeads?.to(device)
        teacher.place(on: device)
    }

    public func explainNonFinite(_ micro: [Batch]) -> String? {
        if let inputs = nonFiniteInputs(micro) { return inputs }
        for batch in micro {
            let target = teacherEmbeddings(batch)
            if !allFinite(target.image) || !allFinite(target.text) {
                return "the teacher's embeddings are not finite for this batch (samples \(batch.origins.prefix(3).joined(separator: ", "))…); check the teacher checkpoint \(teacher.path), not the learning rate"
            }
        }
        return nil
    }

    public func logValues() -> [String: Double] {
        var values = student.logValues()
        if let rate = cache?.hitRate { values["teacher_cache_hit_rate"] = rate }
        return values
    }

    public func evaluate(_ loader: DataLoader) throws -> [String: Double] { try student.evaluate(loader) }
    public func checkpointFiles() throws -> [String: Data] { try student.checkpointFiles() }
    public func saveRunState(in runFolder: String) throws { try cache?.save(to: "\(runFolder)/\(TeacherCache.file)") }
    public var embedders: [String: (Batch) -> Tensor] { student.embedders }
}
