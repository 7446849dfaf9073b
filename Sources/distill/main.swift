import ArgumentParser
import Datasets
import Foundation
import Models
import NN
import Torch
import Training

/// Teacher → student knowledge distillation from a JSON recipe (the recipe's `distill` section
/// names the teacher and the loss weights; `model` describes the student).
@main
struct Distill: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Distil a teacher checkpoint into a smaller student from a JSON recipe.")

    @Option(help: "The recipe (JSON) with a distill section.") var recipe = "Recipes/distill.json"
    @Option(name: .customLong("set"), help: "Override a recipe field: --set distill.temperature=2 (repeatable).") var overrides: [String] = []
    @Flag(help: "Continue the run from its last/ checkpoint.") var resume = false

    func run() throws {
        let (recipe, resolved) = try RecipeRunner.load(self.recipe, overrides: overrides)
        let plan = try RecipeRunner.distillation(recipe, resolved: resolved)
        for warning in plan.warnings { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
        let setup = plan.setup, teacher = plan.teacher
        print("run \(recipe.name): \(setup.totalSteps) steps (\(setup.stepsPerEpoch ?? 0) per epoch) → \(setup.runFolder)")
        print(String(format: "teacher %@: %.2fM parameters; student: %.2fM parameters (%.1f%%), %.2fM trainable", teacher.path,
                     Double(teacher.parameterCount) / 1e6, Double(setup.model.parameterCount) / 1e6,
                     100 * Double(setup.model.parameterCount) / Double(teacher.parameterCount), Double(setup.model.trainableParameterCount) / 1e6))

        var teacherMetrics: [String: Double] = [:]
        if let validation = plan.teacherValidation, let encoder = teacher.dualEncoder {
            print("evaluating the teacher…")
            teacherMetrics = try Evaluation.evaluate(encoder, loader: validation, tokenizer: teacher.tokenizer,
                                                     zeroShot: try recipe.eval.zeroshot.map { try ZeroShotClasses.load($0.classes) })
        }
        let trainer = try Trainer(setup, resume: resume || recipe.resume == .latest)
        try trainer.run()

        // The report compares the teacher with the student as saved in best/ (or last/).
        let kept = FileManager.default.fileExists(atPath: "\(trainer.bestFolder)/\(Checkpoint.stateFile)") ? trainer.bestFolder : trainer.lastFolder
        _ = try Checkpoint.load(from: kept, into: setup.model, optimizer: nil)
        var studentMetrics: [String: Double] = [:]
        if let validation = setup.validation { studentMetrics = try setup.objective.evaluate(validation) }
        setup.model.eval()
        let speed = try throughput(plan)

        var rows: [(String, Double?, Double?)] = [("parameters (M)", Double(teacher.parameterCount) / 1e6, Double(setup.model.parameterCount) / 1e6)]
        for key in ["image_to_text_R@1", "text_to_image_R@1", "image_to_text_R@5", "text_to_image_R@5", "zeroshot_top1", "teacher_cosine", "teacher_match_R@1"]
        where teacherMetrics[key] != nil || studentMetrics[key] != nil {
            rows.append((key, teacherMetrics[key], studentMetrics[key]))
        }
        for (key, value) in speed.teacher.sorted(by: { $0.key < $1.key }) { rows.append(("\(key) per second", value, speed.student[key])) }
        print("\n" + String(repeating: " ", count: 26) + "   teacher     student")
        for (name, t, s) in rows {
            func cell(_ v: Double?) -> String { v.map { String(format: "%10.4f", $0) } ?? String(repeating: " ", count: 9) + "–" }
            print(name.padding(toLength: 26, withPad: " ", startingAt: 0) + " " + cell(t) + "  " + cell(s))
        }
        if let t = teacherMetrics["image_to_text_R@1"], let s = studentMetrics["image_to_text_R@1"], t > 0 {
            print(String(format: "student keeps %.1f%% of the teacher's image_to_text_R@1", 100 * s / t))
        }
        let report: [String: Any] = [
            "teacher": ["path": teacher.path, "parameters": teacher.parameterCount, "metrics": teacherMetrics, "items_per_second": speed.teacher],
            "student": ["checkpoint": kept, "parameters": setup.model.parameterCount, "metrics": studentMetrics, "items_per_second": speed.student],
            "threads": Torch.threadCount,
        ]
        try AtomicFile.write(try JSONSerialization.data(withJSONObject: report, options: [.prettyPrinted, .sortedKeys]), to: "\(setup.runFolder)/distill_report.json")
        print("student: \(kept); report: \(setup.runFolder)/distill_report.json")
    }

    /// Embeddings per second of each tower, teacher vs student, over the validation data (no
    /// gradients, one warm-up pass, then the median of three timed passes).
    func throughput(_ plan: DistillationPlan) throws -> (teacher: [String: Double], student: [String: Double]) {
        guard let validation = plan.setup.validation else { return ([:], [:]) }
        var studentBatches: [Batch] = [], teacherBatches: [Batch] = []
        let epoch = validation.epoch(0)
        while let b = try epoch.next(), studentBatches.count < 8 { studentBatches.append(b) }
        if let tv = plan.teacherValidation, tv !== validation {
            let e = tv.epoch(0)
            while let b = try e.next(), teacherBatches.count < 8 { teacherBatches.append(b) }
        } else {
            teacherBatches = studentBatches
        }
        func rate(_ batches: [Batch], _ body: (Batch) -> Tensor) -> Double {
            withNoGrad { for b in batches.prefix(1) { _ = body(b).sum().item(Double.self) } }
            let items = batches.reduce(0) { $0 + $1.count }
            let times = (0..<3).map { _ in
                let start = Date()
                withNoGrad { for b in batches { _ = body(b).sum().item(Double.self) } }
                return Date().timeIntervalSince(start)
            }.sorted()
            return Double(items) / times[1]
        }
        let teacher = plan.teacher
        var t: [String: Double] = [:], s: [String: Double] = [:]
        t["texts"] = rate(teacherBatches) { teacher.textEmbeddings($0.captions) }
        switch plan.setup.objective {
        case let objective as DistillationObjective:
            let student = objective.student
            t["images"] = rate(teacherBatches) { teacher.imageEmbeddings($0.secondViewPixels ?? $0.pixels) }
            s["images"] = rate(studentBatches) { student.encoder.imageFeatures($0.pixels) }
            s["texts"] = rate(studentBatches) { b in
                let (ids, mask) = student.tokenizer.encode(b.captions)
                return student.encoder.textFeatures(ids: ids, attentionMask: mask)
            }
        case let objective as TextDistillationObjective:
            s["texts"] = rate(studentBatches) { b in
                let (ids, mask) = objective.tokenizer.encode(b.captions)
                return objective.student.pooled(ids: ids, attentionMask: mask)
            }
        default: break
        }
        return (t, s)
    }
}
