import Datasets
import Foundation
import NN
import Torch

/// Teacher against student after a distillation run: sizes, validation metrics and embedding
/// throughput, as `distill` prints it and writes `distill_report.json`.
public struct DistillationReport {
    public var teacherPath: String
    public var teacherParameters: Int
    public var teacherMetrics: [String: Double]
    public var teacherItemsPerSecond: [String: Double]
    /// The checkpoint the student metrics come from (`best/`, else `last/`).
    public var studentCheckpoint: String
    public var studentParameters: Int
    public var studentMetrics: [String: Double]
    public var studentItemsPerSecond: [String: Double]
    /// The metrics worth a row, in order.
    public var rows: [String]

    /// The teacher's metrics on its own view of the validation data (before training).
    public static func teacherMetrics(_ plan: DistillationPlan) throws -> [String: Double] {
        guard let validation = plan.teacherValidation, let encoder = plan.teacher.dualEncoder else { return [:] }
        return try Evaluation.evaluate(encoder, loader: validation, tokenizer: plan.teacher.tokenizer, zeroShot: plan.zeroShot)
    }

    /// Reloads the student the run kept (best/, else last/), evaluates it and times both models.
    public static func measure(_ plan: DistillationPlan, trainer: Trainer, teacherMetrics: [String: Double]) throws -> DistillationReport {
        let setup = plan.setup
        let kept = FileManager.default.fileExists(atPath: "\(trainer.bestFolder)/\(Checkpoint.stateFile)") ? trainer.bestFolder : trainer.lastFolder
        _ = try Checkpoint.load(from: kept, into: setup.model, adapter: setup.adapter, optimizer: nil)
        let studentMetrics = try setup.validation.map { try setup.objective.evaluate($0) } ?? [:]
        setup.model.eval()
        let (teacherRates, studentRates) = try throughput(plan)
        let summary = setup.objective.metrics.filter(\.summary).map(\.name)
        return DistillationReport(
            teacherPath: plan.teacher.path, teacherParameters: plan.teacher.parameterCount, teacherMetrics: teacherMetrics,
            teacherItemsPerSecond: teacherRates, studentCheckpoint: kept, studentParameters: setup.model.parameterCount,
            studentMetrics: studentMetrics, studentItemsPerSecond: studentRates,
            rows: summary.filter { teacherMetrics[$0] != nil || studentMetrics[$0] != nil })
    }

    /// Embeddings per second of each tower, teacher vs student, over up to 8 validation batches
    /// (no gradients, one warm-up pass, then the median of three timed passes).
    static func throughput(_ plan: DistillationPlan) throws -> (teacher: [String: Double], student: [String: Double]) {
        guard let validation = plan.setup.validation else { return ([:], [:]) }
        func batches(_ loader: DataLoader) throws -> [Batch] {
            var result: [Batch] = []
            let epoch = loader.epoch(0)
            while result.count < 8, let batch = try epoch.next() { result.append(batch) }
            return result
        }
        let studentBatches = try batches(validation)
        let teacherBatches = try plan.teacherValidation.map { $0 === validation ? studentBatches : try batches($0) } ?? studentBatches
        func rate(_ batches: [Batch], _ embed: (Batch) -> Tensor) -> Double {
            withNoGrad { for batch in batches.prefix(1) { _ = embed(batch).sum().item(Double.self) } }
            let items = batches.reduce(0) { $0 + $1.count }
            let times = (0..<3).map { _ in
                let start = Date()
                withNoGrad { for batch in batches { _ = embed(batch).sum().item(Double.self) } }
                return Date().timeIntervalSince(start)
            }.sorted()
            return Double(items) / times[1]
        }
        let teacher = plan.teacher
        var teacherRates = ["texts": rate(teacherBatches) { teacher.textEmbeddings($0.captions) }]
        if !teacher.isTextOnly { teacherRates["images"] = rate(teacherBatches) { teacher.imageEmbeddings($0.teacherPixels ?? $0.pixels) } }
        let studentRates = plan.setup.objective.embedders.mapValues { rate(studentBatches, $0) }
        return (teacherRates, studentRates)
    }

    /// The side-by-side table `distill` prints.
    public var table: String {
        var lines: [(String, Double?, Double?)] = [("parameters (M)", Double(teacherParameters) / 1e6, Double(studentParameters) / 1e6)]
        for key in rows { lines.append((key, teacherMetrics[key], studentMetrics[key])) }
        for (key, value) in teacherItemsPerSecond.sorted(by: { $0.key < $1.key }) { lines.append(("\(key) per second", value, studentItemsPerSecond[key])) }
        func cell(_ value: Double?) -> String { value.map { String(format: "%10.4f", $0) } ?? String(repeating: " ", count: 9) + "–" }
        var text = String(repeating: " ", count: 26) + "   teacher     student\n"
        for (name, teacher, student) in lines {
            text += name.padding(toLength: 26, withPad: " ", startingAt: 0) + " " + cell(teacher) + "  " + cell(student) + "\n"
        }
        if let main = rows.first, let teacher = teacherMetrics[main], let student = studentMetrics[main], teacher > 0 {
            text += String(format: "student keeps %.1f%% of the teacher's %@\n", 100 * student / teacher, main)
        }
        return text
    }

    /// `distill_report.json`.
    public func write(to path: String) throws {
        let report: [String: Any] = [
            "teacher": ["path": teacherPath, "parameters": teacherParameters, "metrics": teacherMetrics, "items_per_second": teacherItemsPerSecond],
            "student": ["checkpoint": studentCheckpoint, "parameters": studentParameters, "metrics": studentMetrics, "items_per_second": studentItemsPerSecond],
            "threads": Torch.threadCount,
        ]
        try AtomicFile.write(try JSONSerialization.data(withJSONObject: report, options: [.prettyPrinted, .sortedKeys]), to: path)
    }
}
