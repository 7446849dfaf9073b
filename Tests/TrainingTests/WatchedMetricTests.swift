import Foundation
import Testing
import Datasets
import NN
import Optim
import Torch
@testable import Training

/// What evaluations drive: `best/` (with or without early stopping), the plateau schedule, and
/// metric names checked against what the objective reports.
@Suite("Watched metrics", .serialized)
struct WatchedMetricTests {
    /// No early stopping: `best/` still keeps the main metric's best step (image_to_text_R@1,
    /// which a scripted evaluation sets to 0.2, 0.6, 0.4).
    @Test func bestIsKeptWithoutEarlyStopping() throws {
        let runs = temporaryFolder()
        let recipe = try tinyRecipe(runs, name: "no-stopping", steps: 12, extra: ["early_stopping=null", "checkpoint.every_steps=null"])
        var setup = try RunBuilder.contrastive(recipe, resolved: nil)
        #expect(setup.best == MetricDefinition("image_to_text_R@1", .max))
        let objective = HookedObjective(setup.objective)
        objective.scripted = ("image_to_text_R@1", [0.2, 0.6, 0.4])
        setup.objective = objective
        let trainer = try Trainer(setup, resume: false)
        let result = try trainer.run()
        #expect(result.outcome == .completed)
        let best = try Checkpoint.readState("\(runs)/no-stopping/best")
        #expect(best.globalStep == 8 && best.bestStep == 8 && best.bestMetric == 0.6)
    }

    /// `checkpoint.best_metric` picks another metric, with the direction it improves in.
    @Test func bestMetricCanBeChosen() throws {
        let runs = temporaryFolder()
        let recipe = try tinyRecipe(runs, name: "best-loss", steps: 4, extra: ["checkpoint.best_metric=text_to_image_mean_rank"])
        let setup = try RunBuilder.contrastive(recipe, resolved: nil)
        #expect(setup.best == MetricDefinition("text_to_image_mean_rank", .min))
        let keepNone = try RunBuilder.contrastive(try tinyRecipe(runs, name: "no-best", steps: 4, extra: ["checkpoint.keep_best=false"]), resolved: nil)
        #expect(keepNone.best == nil)
    }

    /// A misspelt metric is an error naming the key and the nearest real metric — every one at once —
    /// instead of silently turning early stopping and best/ off.
    @Test func unknownMetricsAreReportedWithSuggestions() throws {
        let runs = temporaryFolder()
        let recipe = try tinyRecipe(runs, name: "typos", steps: 4, extra: [
            "early_stopping.metric=image_to_text_R1", "checkpoint.best_metric=zeroshot_top_1",
            #"schedule={"type": "plateau", "metric": "clip_valloss"}"#,
        ])
        let error = #expect(throws: RecipeErrors.self) { try RunBuilder.contrastive(recipe, resolved: nil) }
        let byPath = Dictionary(uniqueKeysWithValues: (error?.errors ?? []).map { ($0.path, $0.message) })
        #expect(byPath["early_stopping.metric"]?.contains("did you mean 'image_to_text_R@1'?") == true, "\(byPath)")
        #expect(byPath["checkpoint.best_metric"]?.contains("did you mean 'zeroshot_top1'?") == true, "\(byPath)")
        #expect(byPath["schedule.metric"]?.contains("did you mean 'clip_val_loss'?") == true, "\(byPath)")
        #expect(byPath["schedule.metric"]?.contains("it reports image_to_text_R@1") == true, "\(byPath)")
    }

    /// `schedule.type: "plateau"` halves the rate after an evaluation that does not improve
    /// (patience 0): evaluations at steps 4, 8, 12 and 16 report 1.0, 1.0, 0.5, 0.4.
    @Test func plateauScheduleLowersTheRateWhenTheMetricStalls() throws {
        let runs = temporaryFolder()
        let recipe = try tinyRecipe(runs, name: "plateau", steps: 16, extra: [
            #"schedule={"type": "plateau", "warmup_steps": 2, "metric": "clip_val_loss", "patience": 0, "factor": 0.5}"#,
            "early_stopping=null", "log_every_steps=1",
        ])
        #expect(recipe.schedule.kind == .plateau && recipe.schedule.plateau.factor == 0.5)
        var setup = try RunBuilder.contrastive(recipe, resolved: nil)
        #expect(setup.plateau?.metric == "clip_val_loss" && setup.plateau?.rule.mode == .min)
        let objective = HookedObjective(setup.objective)
        objective.scripted = ("clip_val_loss", [1.0, 1.0, 0.5, 0.4])
        setup.objective = objective
        let trainer = try Trainer(setup, resume: false)
        try trainer.run()
        let lr = Dictionary(uniqueKeysWithValues: try MetricsLog.read("\(runs)/plateau/metrics.jsonl").filter { $0.kind == .train }.map { ($0.step, $0.values["lr"]!) })
        #expect(lr[2] == 2e-3 && lr[8] == 2e-3, "\(lr)")        // warmup done; no stall yet
        #expect(lr[9] == 1e-3 && lr[12] == 1e-3, "\(lr)")       // the evaluation at step 8 did not improve
        #expect(lr[13] == 1e-3 && lr[16] == 1e-3, "\(lr)")      // 0.5 at step 12 improved: no further drop
        #expect(trainer.state.plateau?.scale == 0.5)
    }

    /// Keys of another schedule type are named as such; a typo is an unknown key.
    @Test func scheduleKeysBelongToTheirType() throws {
        let json = #"{"data": {"train": {"shards": "t"}}, "max_steps": 10, "schedule": {"type": "cosine", "cooldown_steps": 5, "gama": 0.5}}"#
        let error = #expect(throws: RecipeErrors.self) { try Recipe.decode(Data(json.utf8), file: "r", defaultName: "r") }
        let messages = (error?.errors ?? []).map(\.description)
        #expect(messages.contains(#"schedule.cooldown_steps: only applies to schedule type "const_cooldown", not "cosine""#), "\(messages)")
        #expect(messages.contains { $0.hasPrefix("schedule.gama: unknown key") }, "\(messages)")
    }
}
