import Foundation
import Testing
import Monitoring
import TestSupport
@testable import Training

/// Watching a real (tiny) run: Prometheus' reference parser scrapes the endpoint between steps,
/// and TensorBoard's reader sees exactly what `metrics.jsonl` holds, across a crash and resumes.
@Suite("Watching a run", .serialized)
struct MonitoringTrainingTests {

    @Test func prometheusScrapesDuringARun() throws {
        let runs = temporaryFolder()
        let recipe = try tinyRecipe(runs, name: "watched", steps: 8, extra: ["monitoring.prometheus_port=0"])
        let monitoring = try RunMonitoring(recipe)
        defer { monitoring.close() }
        let url = try #require(monitoring.server?.url)
        var setup = try RunBuilder.contrastive(recipe, resolved: recipe.resolvedJSON())
        var scrapes: [Int: [ScrapedSample]] = [:]
        var failures: [String] = []
        // Between steps 3, 5 and 8, while the run is live (after step 8's evaluation).
        setup.onStep = { step in
            guard [3, 5, 8].contains(step) else { return }
            do { scrapes[step] = try scrapeWithPrometheusClient(url).samples } catch { failures.append("step \(step): \(error)") }
        }
        let trainer = try Trainer(setup, resume: false)
        try monitoring.attach(to: trainer)
        // The records exactly as logged (reading metrics.jsonl back can differ in a double's last bit).
        let logged = RecordingObserver()
        trainer.observers.append(logged)
        try trainer.run()
        #expect(failures.isEmpty, "\(failures)")
        try #require(scrapes.count == 3)

        let records = logged.records
        #expect(records.map(\.step) == (try MetricsLog.read("\(runs)/watched/metrics.jsonl")).map(\.step))
        func latest(_ kind: MetricsRecord.Kind, atOrBefore step: Int) -> MetricsRecord? { records.last { $0.kind == kind && $0.step <= step } }
        for (step, samples) in scrapes.sorted(by: { $0.key < $1.key }) {
            #expect(samples.allSatisfy { $0.labels["run"] == "watched" && $0.labels["rank"] == "0" })
            #expect(samples.value("cliptune_step") == Double(step))
            #expect(samples.value("cliptune_samples_total") == Double(16 * step), "counter at step \(step)")
            let train = try #require(latest(.train, atOrBefore: step))
            #expect(samples.value("cliptune_loss", ["term": "contrastive_loss"]) == train.values["contrastive_loss"])
            #expect(samples.value("cliptune_learning_rate") == train.values["lr"])
            #expect(samples.value("cliptune_samples_per_second") == train.values["samples_per_second"])
            #expect(samples.value("cliptune_data_wait_ratio") == train.values["data_wait_fraction"])
            if let eval = latest(.eval, atOrBefore: step) {
                for metric in ["image_to_text_R@1", "text_to_image_R@1", "zeroshot_top1", "clip_val_loss"] {
                    #expect(samples.value("cliptune_eval_metric", ["metric": metric]) == eval.values[metric], "\(metric) at step \(step)")
                }
                #expect(samples.value("cliptune_eval_step") == Double(eval.step))
                #expect(samples.value("cliptune_best_step") == eval.values["best_step"])
            } else {
                #expect(samples.value("cliptune_eval_metric") == nil)
            }
        }
        #expect(scrapes[8]!.value("cliptune_best_metric", ["metric": "clip_val_loss"]) == trainer.state.bestMetric)
    }

    /// A run killed after logging steps 5-8 but before its step-6 checkpoint (its last/ is at
    /// step 4), resumed: TensorBoard sees every step once, with metrics.jsonl's values.
    @Test func tensorBoardMatchesMetricsLogAcrossACrashAndResumes() throws {
        let runs = temporaryFolder()
        let folder = "\(runs)/tb"
        func train(steps: Int, resume: Bool) throws {
            let recipe = try tinyRecipe(runs, name: "tb", steps: steps, extra: ["logging.tensorboard=true"])
            let monitoring = try RunMonitoring(recipe)
            defer { monitoring.close() }
            let trainer = try Trainer(try RunBuilder.contrastive(recipe, resolved: recipe.resolvedJSON()), resume: resume)
            try monitoring.attach(to: trainer)
            try trainer.run()
        }
        try train(steps: 4, resume: false)
        try FileManager.default.copyItem(atPath: "\(folder)/last", toPath: "\(runs)/last-at-4")
        try train(steps: 8, resume: true)
        // The crash: last/ goes back to step 4, with steps 5-8 already logged.
        try FileManager.default.removeItem(atPath: "\(folder)/last")
        try FileManager.default.moveItem(atPath: "\(runs)/last-at-4", toPath: "\(folder)/last")
        try train(steps: 8, resume: true)

        let files = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasPrefix("events.out.tfevents.") }
        #expect(files.count == 1, "\(files)")
        let scalars = try readWithTensorBoard(folder)
        let records = try MetricsLog.read("\(folder)/metrics.jsonl")
        #expect(records.filter { $0.kind == .train }.map(\.step) == [2, 4, 6, 8])
        var expected = 0
        for record in records {
            var values = record.values
            values["epoch"] = record.epoch
            for (key, value) in values {
                expected += 1
                let tag = "\(record.kind.rawValue)/\(key)"
                let points = scalars[tag]?.filter { $0.step == record.step } ?? []
                try #require(points.count == 1, "\(tag) at step \(record.step): \(points.count) points")
                // float32 in the file; metrics.jsonl read back may differ from the logged double in its last bit
                if value.isNaN { #expect(points[0].value.isNaN, "\(tag)") } else { #expect(abs(points[0].value - value) <= 1e-7 * abs(value), "\(tag) at step \(record.step)") }
            }
        }
        #expect(scalars.values.reduce(0) { $0 + $1.count } == expected, "TensorBoard holds points metrics.jsonl does not")
        for (tag, points) in scalars { #expect(points.map(\.step) == points.map(\.step).sorted(), "\(tag) steps out of order") }
    }
}

/// Keeps every record the trainer logs, as logged.
final class RecordingObserver: TrainingObserver {
    private(set) var records: [MetricsRecord] = []
    func recorded(_ record: MetricsRecord, best: BestMetric?) { records.append(record) }
}
