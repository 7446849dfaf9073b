import Foundation
import Testing
@testable import Datasets
import Models
import NN
import Optim
import Torch
@testable import Training

/// A real objective with test hooks: replace the micro-batches of a given call (poisoning),
/// observe every call, and script the monitored metric of each evaluation.
final class HookedObjective: TrainingObjective {
    let inner: any TrainingObjective
    /// Called before each forwardBackward with its index (0-based) and the micro-batches.
    var beforeForward: ((Int, [Batch]) -> Void)?
    /// Calls whose micro-batches get NaN pixels (the real objective then sees a NaN loss).
    var nanPixelsAt: Set<Int> = []
    /// Calls that back-propagate normally and then report a NaN loss (non-finite after backward).
    var nanAfterBackwardAt: Set<Int> = []
    /// Called after each forwardBackward's backward passes with its index (to doctor gradients).
    var afterBackward: ((Int) -> Void)?
    /// Values reported as `metric` by successive evaluations (the real metrics are kept too).
    var scripted: (metric: String, values: [Double])?
    /// The evaluation (0-based) that throws `Failure` instead of reporting.
    var failEvaluationAt: Int?
    struct Failure: Error {}
    private(set) var calls = 0
    private(set) var evaluations = 0

    init(_ inner: any TrainingObjective) { self.inner = inner }

    var model: Module { inner.model }
    var trainingHeads: Module? { inner.trainingHeads }
    var metrics: [MetricDefinition] { inner.metrics }
    var embedders: [String: (Batch) -> Tensor] { inner.embedders }

    func forwardBackward(_ micro: [Batch], scaler: GradScaler?) throws -> [String: Double] {
        defer { calls += 1 }
        beforeForward?(calls, micro)
        var batches = micro
        if nanPixelsAt.contains(calls) {
            batches = micro.map { b in
                Batch(pixels: Tensor.full(b.pixels.shape, Double.nan), teacherPixels: b.teacherPixels, captions: b.captions,
                      tokenIds: b.tokenIds, attentionMask: b.attentionMask, labels: b.labels, origins: b.origins, epoch: b.epoch, position: b.position)
            }
        }
        var totals = try inner.forwardBackward(batches, scaler: scaler)
        afterBackward?(calls)
        if nanAfterBackwardAt.contains(calls) { totals["loss"] = .nan }
        return totals
    }

    func afterOptimizerStep() { inner.afterOptimizerStep() }
    func logValues() -> [String: Double] { inner.logValues() }
    func checkpointFiles() throws -> [String: Data] { try inner.checkpointFiles() }
    func saveRunState(in runFolder: String) throws { try inner.saveRunState(in: runFolder) }

    func evaluate(_ loader: DataLoader) throws -> [String: Double] {
        defer { evaluations += 1 }
        if evaluations == failEvaluationAt { throw Failure() }
        var values = try inner.evaluate(loader)
        if let scripted { values[scripted.metric] = scripted.values[Swift.min(evaluations, scripted.values.count - 1)] }
        return values
    }
}

/// Copies of tensors (state dicts hand out live tensors that later steps change in place).
func snapshot(_ tensors: [(String, Tensor)]) -> [String: Tensor] {
    Dictionary(uniqueKeysWithValues: tensors.map { ($0.0, $0.1.clone()) })
}

func identical(_ a: [String: Tensor], _ b: [String: Tensor]) -> Bool {
    Set(a.keys) == Set(b.keys) && a.allSatisfy { b[$0.key]!.equal($0.value) }
}

@Suite("Trainer behaviours", .serialized)
struct TrainerBehaviourTests {
    /// Evaluations every 4 steps report 0.9, 0.7, 0.5 (best, step 12), then 0.55, 0.5 (equal is
    /// no improvement), 0.51: with patience 3 the run stops at step 24 of 40, and best/ holds step 12.
    @Test func earlyStoppingStopsAtItsPatienceAndKeepsTheBestStep() throws {
        let runs = temporaryFolder()
        let recipe = try tinyRecipe(runs, name: "early", steps: 40, extra: ["early_stopping.patience=3", "checkpoint.every_steps=null"])
        var setup = try RunBuilder.contrastive(recipe, resolved: nil)
        let objective = HookedObjective(setup.objective)
        objective.scripted = ("clip_val_loss", [0.9, 0.7, 0.5, 0.55, 0.5, 0.51, 0.1, 0.1])
        setup.objective = objective
        var atStep: [Int: [String: Tensor]] = [:]
        let model = setup.model
        setup.onStep = { step in if [12, 24].contains(step) { atStep[step] = snapshot(model.stateDict()) } }
        let trainer = try Trainer(setup, resume: false)
        try trainer.run()

        #expect(trainer.state.globalStep == 24, "the run should stop at step 24 of 40")
        #expect(objective.evaluations == 6)
        let folder = "\(runs)/early"
        let best = try Checkpoint.readState("\(folder)/best"), last = try Checkpoint.readState("\(folder)/last")
        #expect(best.globalStep == 12 && best.bestStep == 12 && best.bestMetric == 0.5)
        #expect(last.globalStep == 24 && last.bestStep == 12 && last.earlyStopping?.evaluationsWithoutImprovement == 3)
        let bestWeights = try weights("\(folder)/best"), lastWeights = try weights("\(folder)/last")
        let bestIsStep12 = identical(bestWeights, try #require(atStep[12])), lastIsStep24 = identical(lastWeights, try #require(atStep[24]))
        let bestIsLast = identical(bestWeights, lastWeights)
        #expect(bestIsStep12, "best/ is not the model of step 12")
        #expect(lastIsStep24, "last/ is not the model of step 24")
        #expect(!bestIsLast, "training went on after step 12, so best/ and last/ differ")
        let records = try MetricsLog.read("\(folder)/metrics.jsonl")
        #expect(records.filter { $0.kind == .eval }.map(\.step) == [4, 8, 12, 16, 20, 24])
        #expect(records.map(\.step).max() == 24)
        #expect(records.filter { $0.kind == .eval }.last?.values["best_step"] == 12)
    }

    /// One NaN loss (poisoned pixels) and, later, another after a real backward pass: each step
    /// is skipped without touching weights or optimizer state, the counter resets in between
    /// (max_non_finite_steps 2 would otherwise stop the run), and the run completes.
    @Test func isolatedNonFiniteStepsAreSkippedWithoutSideEffects() throws {
        let runs = temporaryFolder()
        let recipe = try tinyRecipe(runs, name: "nan-skip", steps: 8, extra: ["max_non_finite_steps=2"])
        var setup = try RunBuilder.contrastive(recipe, resolved: nil)
        let objective = HookedObjective(setup.objective)
        objective.nanPixelsAt = [2]
        objective.nanAfterBackwardAt = [6]
        let model = setup.model, optimizer = setup.optimizer
        var before: [(weights: [String: Tensor], optimizer: [String: Tensor])] = []
        objective.beforeForward = { _, _ in
            before.append((snapshot(model.stateDict()), snapshot(optimizer.stateDict().map { ($0.key, $0.value) })))
        }
        setup.objective = objective
        var steps: [Int] = []
        setup.onStep = { steps.append($0) }
        let trainer = try Trainer(setup, resume: false)
        try trainer.run()

        #expect(steps == Array(1...8), "steps \(steps)")
        #expect(objective.calls == 10 && before.count == 10)
        for poisoned in [2, 6] {
            let sameWeights = identical(before[poisoned].weights, before[poisoned + 1].weights)
            let sameOptimizer = identical(before[poisoned].optimizer, before[poisoned + 1].optimizer)
            #expect(sameWeights, "call \(poisoned): weights changed by a skipped step")
            #expect(sameOptimizer, "call \(poisoned): optimizer state changed by a skipped step")
        }
        // Not vacuous: a real step changes both.
        let stepChangesWeights = !identical(before[3].weights, before[4].weights), stepChangesOptimizer = !identical(before[3].optimizer, before[4].optimizer)
        #expect(stepChangesWeights && stepChangesOptimizer)
        let state = try Checkpoint.readState("\(runs)/nan-skip/last")
        #expect(state.globalStep == 8)
        // The step after a skipped one is the same optimizer step (AdamW's step count: 2 before call 3).
        #expect(before[3].optimizer["logit_scale.step"]?.item(Double.self) == 2)
    }

    /// all-MiniLM-L6-v2 → a 2-layer student initialised from its layers 2 and 5 (the last of
    /// each half, 0-based) and its embeddings, then a few steps of text-only distillation.
    @Test func textDistillationStartsFromTeacherLayersTwoAndFive() throws {
        let folder = temporaryFolder()
        let sentences = try String(contentsOfFile: "\(repositoryRoot)/Data/sentences/train.jsonl", encoding: .utf8).split(separator: "\n")
        try sentences.prefix(32).joined(separator: "\n").write(toFile: "\(folder)/train.jsonl", atomically: true, encoding: .utf8)
        try sentences.dropFirst(32).prefix(16).joined(separator: "\n").write(toFile: "\(folder)/val.jsonl", atomically: true, encoding: .utf8)
        let minilm = "\(repositoryRoot)/.deps/assets/all-MiniLM-L6-v2"
        let json = """
        {
          "name": "minilm-text", "seed": 0,
          "model": {"text": {"type": "bert", "tokenizer": "\(minilm)", "hidden_size": 384, "num_hidden_layers": 2, "num_attention_heads": 12,
                             "intermediate_size": 1536, "max_position_embeddings": 512, "pooling": "mean", "hidden_act": "gelu"}},
          "distill": {"teacher": "\(minilm)", "student_init": "teacher_layers", "temperature": 2.0, "feature_weight": 1.0,
                      "feature_loss": "cosine", "logit_weight": 1.0, "contrastive_weight": 0.1},
          "data": {"train": {"manifest": "\(folder)/train.jsonl", "image_column": null}, "val": {"manifest": "\(folder)/val.jsonl", "image_column": null},
                   "batch_size": 8, "threads": 1, "cache_teacher": true},
          "optimizer": {"type": "adamw", "lr": 5e-4, "weight_decay": 0.01, "grad_clip": 1.0},
          "schedule": {"type": "constant", "warmup_steps": 0},
          "eval": {"every_steps": 3, "every_epoch": false},
          "checkpoint": {"directory": "\(folder)/runs"},
          "max_steps": 3, "log_every_steps": 1
        }
        """
        let recipe = try Recipe.decode(Data(json.utf8), file: "test", defaultName: "minilm-text")
        let plan = try RunBuilder.distillation(recipe, resolved: nil)
        let objective = try #require(plan.setup.objective as? TextDistillationObjective)
        guard case .textEncoder(let teacher, _) = plan.teacher.checkpoint.model else { Issue.record("the teacher is not a text encoder"); return }
        #expect(teacher.config.numHiddenLayers == 6 && objective.student.config.numHiddenLayers == 2)
        let t = Dictionary(uniqueKeysWithValues: teacher.stateDict().map { ($0.name, $0.tensor) })
        let s = Dictionary(uniqueKeysWithValues: objective.student.stateDict().map { ($0.name, $0.tensor) })
        func layer(_ d: [String: Tensor], _ i: Int) -> [String: Tensor] {
            let prefix = "encoder.layer.\(i)."
            return Dictionary(uniqueKeysWithValues: d.filter { $0.key.hasPrefix(prefix) }.map { (String($0.key.dropFirst(prefix.count)), $0.value) })
        }
        #expect(layer(s, 0).count == 16 && layer(s, 1).count == 16 && layer(s, 2).isEmpty)
        let layer0Is2 = identical(layer(s, 0), layer(t, 2)), layer1Is5 = identical(layer(s, 1), layer(t, 5))
        let layer0Is0 = identical(layer(s, 0), layer(t, 0)), layer1Is1 = identical(layer(s, 1), layer(t, 1))
        #expect(layer0Is2, "student layer 0 is not teacher layer 2")
        #expect(layer1Is5, "student layer 1 is not teacher layer 5")
        #expect(!layer0Is0 && !layer1Is1, "the teacher's layers differ from each other, so the choice shows")
        let embeddings = s.filter { $0.key.hasPrefix("embeddings.") }
        let sameEmbeddings = embeddings.allSatisfy { t[$0.key]!.equal($0.value) }
        #expect(embeddings.count >= 5 && sameEmbeddings, "embeddings are the teacher's")

        let metrics = try Trainer(plan.setup, resume: false).run().metrics
        // Initialised from the teacher, the student is close to it from the start.
        #expect(try #require(metrics["teacher_cosine"]) > 0.5, "\(metrics)")
        let records = try MetricsLog.read("\(folder)/runs/minilm-text/metrics.jsonl").filter { $0.kind == .train }
        #expect(records.map(\.step) == [1, 2, 3] && records.allSatisfy { $0.values["feature_distill_loss"]?.isFinite == true })
        guard case .textEncoder(let saved, _) = try Pretrained.load("\(folder)/runs/minilm-text/last").model else {
            Issue.record("last/ is not a text encoder"); return
        }
        #expect(saved.config.numHiddenLayers == 2 && saved.width == 384)
    }

    /// A distillation run with learned projections (training_heads.safetensors) checkpointed at step 4,
    /// killed at step 5, resumed in a new process and continued to 10 ends bit-identical to an
    /// uninterrupted run: weights, heads and optimizer state.
    @Test func distillationResumesBitIdenticallyWithItsHeads() async throws {
        let runs = temporaryFolder()
        let teacher = TinyTeacher.folder, shapes = TinyShapes.folder
        let extra = ["checkpoint.every_steps=4", "eval.every_steps=3"]
        await #expect(processExitsWith: .success) { [runs = runs as String, teacher = teacher as String, shapes = shapes as String, extra = extra as [String]] in
            let plan = try RunBuilder.distillation(try studentRecipe(runs, name: "uninterrupted", steps: 10, extra: extra, teacher: teacher, shapes: shapes), resolved: nil)
            guard plan.setup.objective.trainingHeads != nil else { exit(4) }
            try Trainer(plan.setup, resume: false).run()
        }
        await #expect(processExitsWith: .signal(SIGKILL)) { [runs = runs as String, teacher = teacher as String, shapes = shapes as String, extra = extra as [String]] in
            var setup = try RunBuilder.distillation(try studentRecipe(runs, name: "interrupted", steps: 10, extra: extra, teacher: teacher, shapes: shapes), resolved: nil).setup
            setup.onStep = { step in if step == 5 { kill(getpid(), SIGKILL) } }
            try Trainer(setup, resume: false).run()
        }
        let interrupted = "\(runs)/interrupted/last"
        #expect(try Checkpoint.readState(interrupted).globalStep == 4)
        let headsAtStep4 = try SafeTensors.load("\(interrupted)/\(Checkpoint.trainingHeadsFile)").mapValues { $0.clone() }
        await #expect(processExitsWith: .success) { [runs = runs as String, teacher = teacher as String, shapes = shapes as String, extra = extra as [String]] in
            let setup = try RunBuilder.distillation(try studentRecipe(runs, name: "interrupted", steps: 10, extra: extra, teacher: teacher, shapes: shapes), resolved: nil).setup
            let trainer = try Trainer(setup, resume: true)
            guard trainer.state.globalStep == 4 else { exit(3) }
            try trainer.run()
        }
        let uninterrupted = "\(runs)/uninterrupted/last"
        #expect(try Checkpoint.readState(interrupted).globalStep == 10)
        for file in ["model.safetensors", Checkpoint.trainingHeadsFile, Checkpoint.optimizerFile] {
            let a = try SafeTensors.load("\(uninterrupted)/\(file)"), b = try SafeTensors.load("\(interrupted)/\(file)")
            #expect(!a.isEmpty && Set(a.keys) == Set(b.keys), "\(file): keys differ")
            for (key, t) in a {
                let same = b[key].map { $0.equal(t) } ?? false
                #expect(same, "\(file): \(key) differs after resume")
            }
        }
        // The heads trained after the resume (so restoring them mattered).
        let finalHeads = try SafeTensors.load("\(interrupted)/\(Checkpoint.trainingHeadsFile)")
        let headsMoved = !identical(finalHeads, headsAtStep4)
        #expect(headsMoved)
        #expect(try MetricsLog.read("\(runs)/interrupted/metrics.jsonl").filter { $0.kind == .eval }.map(\.step) == [3, 6, 9, 10])
    }
}
