import Datasets
import Foundation
import Models
import NN
import Optim
import Torch

/// Distils a text-only teacher (a sentence-transformers model such as all-MiniLM-L6-v2) into a
/// smaller text tower on sentences: feature distillation on the normalised sentence embeddings,
/// logit distillation on the batch's sentence-sentence similarities, and an in-batch
/// contrastive loss that asks each student embedding to pick its own teacher embedding.
public final class TextDistillationObjective: TrainingObjective {
    public let student: BertModel
    public let tokenizer: TensorTokenizer
    public let tokenizerFolder: String?
    public let teacher: Teacher
    public let projections: FeatureProjections
    public let weights: DistillationWeights
    public let cache: TeacherCache?
    private var files: [String: Data]?

    public var model: Module { student }
    public var trainingHeads: Module? { projections.isEmpty ? nil : projections }
    public var metrics: [MetricDefinition] {
        [MetricDefinition("teacher_cosine", .max, summary: true), MetricDefinition("teacher_cosine_min", .max),
         MetricDefinition("teacher_match_R@1", .max, summary: true)]
    }

    public init(student: BertModel, tokenizer: TensorTokenizer, tokenizerFolder: String?, teacher: Teacher, weights: DistillationWeights,
                projections: FeatureProjections, cache: TeacherCache?) {
        self.student = student
        self.tokenizer = tokenizer
        self.tokenizerFolder = tokenizerFolder
        self.teacher = teacher
        self.weights = weights
        self.projections = projections
        self.cache = cache
    }

    /// The student's sentence embeddings in the teacher's space, normalised.
    func studentEmbeddings(_ sentences: [String]) -> Tensor {
        let (ids, mask) = tokenizer.encode(sentences)
        return F.normalize(projections.projectText(student.pooled(ids: ids, attentionMask: mask)), dim: -1)
    }

    public func place(on device: Device) {
        model.to(device)
        trainingHeads?.to(device)
        teacher.place(on: device)
    }

    func teacherEmbeddings(_ sentences: [String]) -> Tensor {
        guard let cache else { return teacher.textEmbeddings(sentences) }
        return cache.texts(sentences) { rows in teacher.textEmbeddings(rows.map { sentences[$0] }) }.on(teacher.device)   // the cache keeps host rows
    }

    public func forwardBackward(_ micro: [Batch], scaler: GradScaler?) throws -> [String: Double] {
        var totals: [String: Double] = [:]
        for batch in micro {
            let target = teacherEmbeddings(batch.captions)
            let embeddings = studentEmbeddings(batch.captions)
            var terms: [String: Tensor] = [:]
            if weights.feature > 0 {
                terms["feature_distill_loss"] = featureDistillationLoss(student: embeddings, teacher: target, kind: weights.featureDistance) * weights.feature
            }
            if weights.logit > 0 {
                let scale = teacher.logitScale
                terms["logit_distill_loss"] = logitDistillationLoss(student: embeddings.matmul(embeddings.mT) * scale,
                                                                    teacher: target.matmul(target.mT) * scale,
                                                                    temperature: weights.temperature) * weights.logit
            }
            if weights.contrastive > 0 {
                let logits = embeddings.matmul(target.mT) * teacher.logitScale
                terms["contrastive_loss"] = F.crossEntropy(logits, Tensor.arange(0, logits.size(0), device: logits.device)) * weights.contrastive
            }
            guard backward(terms, into: &totals, microBatches: micro.count, perMicroBatch: Set(terms.keys), scaler: scaler) else { return totals }
        }
        return totals
    }

    /// `teacher_cosine`: mean cosine similarity of student and teacher embeddings of the same
    /// sentence; `teacher_match_R@1`: how often a student embedding's nearest teacher embedding
    /// (among the whole validation set) is its own sentence's.
    public func evaluate(_ loader: DataLoader) throws -> [String: Double] {
        student.eval()
        defer { student.train() }
        var students: [Tensor] = [], teachers: [Tensor] = []
        let epoch = loader.epoch(0)
        try withNoGrad {
            while let batch = try epoch.next() {
                students.append(studentEmbeddings(batch.captions))
                teachers.append(teacherEmbeddings(batch.captions))   // cached: the validation sentences do not change
            }
        }
        guard !students.isEmpty else { throw DataFileError(file: "validation data", reason: "has no usable sentences") }
        let allStudents = Tensor.cat(students), allTeachers = Tensor.cat(teachers)
        let cosine = (allStudents * allTeachers).sum(dim: -1)
        let nearest = allStudents.matmul(allTeachers.mT).argmax(dim: 1)
        let count = allStudents.size(0)
        let correct = nearest.eq(Tensor.arange(0, count, device: nearest.device)).to(.float32).mean()
        return ["teacher_cosine": cosine.mean().item(Double.self), "teacher_cosine_min": cosine.min().item(Double.self),
                "teacher_match_R@1": correct.item(Double.self), "val_samples": Double(count)]
    }

    /// A BERT checkpoint that sentence-transformers and this framework load with its pooling
    /// (`modules.json`, `1_Pooling/config.json`, normalisation), plus the tokenizer files.
    public func checkpointFiles() throws -> [String: Data] {
        if files == nil {   // the same at every save
            files = try Checkpoint.tokenizerFiles(from: tokenizerFolder).merging(try Pretrained.sentenceTransformerFiles(student)) { _, b in b }
        }
        return files!
    }

    public func saveRunState(in runFolder: String) throws { try cache?.save(to: "\(runFolder)/\(TeacherCache.file)") }

    public func explainNonFinite(_ micro: [Batch]) -> String? {
        for batch in micro where !allFinite(teacherEmbeddings(batch.captions)) {
            return "the teacher's embeddings are not finite for this batch (sentences \(batch.origins.prefix(3).joined(separator: ", "))…); check the teacher checkpoint \(teacher.path), not the learning rate"
        }
        return nil
    }

    public func logValues() -> [String: Double] { cache?.hitRate.map { ["teacher_cache_hit_rate": $0] } ?? [:] }

    public var embedders: [String: (Batch) -> Tensor] {
        ["texts": { [student, tokenizer] batch in
            let (ids, mask) = tokenizer.encode(batch.captions)
            return student.pooled(ids: ids, attentionMask: mask)
        }]
    }
}
