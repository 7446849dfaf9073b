import Datasets
import Foundation
import Models
import NN
import Optim
import Synchronization
import Torch

/// Set by SIGINT; the loop saves `last/` and returns `.interrupted`.
let interrupted = Atomic<Bool>(false)

/// The training loop shared by `train` and `distill`: get batch, forward, loss, backward, clip,
/// step, schedule, clamp the temperature, log, evaluate, keep the best, checkpoint.
public final class Trainer {
    public let setup: TrainingSetup
    public private(set) var state: TrainerState
    private let metrics: MetricsLog
    private let progress: ProgressReporter
    private var records: [MetricsRecord] = []

    public var lastFolder: String { "\(setup.runFolder)/last" }
    public var bestFolder: String { "\(setup.runFolder)/best" }

    /// Starts a run, or continues the one in `runFolder/last` when `resume` is true.
    public init(_ setup: TrainingSetup, resume: Bool) throws {
        self.setup = setup
        try FileManager.default.createDirectory(atPath: setup.runFolder, withIntermediateDirectories: true)
        if resume, FileManager.default.fileExists(atPath: "\(setup.runFolder)/last/\(Checkpoint.stateFile)") {
            state = try Checkpoint.load(from: "\(setup.runFolder)/last", into: setup.model, trainingHeads: setup.objective.trainingHeads,
                                        optimizer: setup.optimizer)
            try state.restoreRandomState()
            metrics = try MetricsLog(path: "\(setup.runFolder)/metrics.jsonl", resumeAt: state.globalStep)
            records = try MetricsLog.read("\(setup.runFolder)/metrics.jsonl")
        } else {
            state = TrainerState(globalStep: 0, earlyStopping: setup.earlyStopping, plateau: setup.plateau?.rule)
            metrics = try MetricsLog(path: "\(setup.runFolder)/metrics.jsonl")
        }
        if let recipe = setup.recipeJSON { try AtomicFile.write(recipe, to: "\(setup.runFolder)/recipe.json") }
        progress = ProgressReporter(totalSteps: setup.totalSteps, logEvery: setup.logEverySteps, startStep: state.globalStep)
    }

    /// Trains to `totalSteps`, an early stop or an interrupt (which saves `last/` first).
    @discardableResult
    public func run() throws -> TrainingResult {
        installInterruptHandler()
        setup.model.train()
        var lastEval: [String: Double] = [:]
        var nonFinite = 0
        var stop: TrainingResult.Outcome? = state.globalStep >= setup.totalSteps ? .completed : nil
        var window = (samples: 0, dataTime: 0.0, started: Date())
        if state.globalStep > 0 { progress.message("resumed at step \(state.globalStep) (epoch \(state.epoch), sample \(state.samplesSeenInEpoch))") }

        while stop == nil {
            let epoch = setup.train.epoch(state.epoch, startingAt: state.samplesSeenInEpoch)
            var micro: [Batch] = []
            while stop == nil {
                let fetchStarted = Date()
                guard let batch = try epoch.next() else { break }
                window.dataTime += Date().timeIntervalSince(fetchStarted)
                micro.append(batch)
                guard micro.count == setup.accumulationSteps else { continue }
                defer { micro.removeAll() }

                let step = state.globalStep
                let plateauScale = state.plateau?.scale ?? 1
                setup.optimizer.setLearningRates { self.setup.schedule.learningRate(at: step, base: $0) * plateauScale }
                let terms = trainStep(micro)
                let total = terms["loss"]!
                if !total.isFinite {
                    nonFinite += 1
                    setup.optimizer.zeroGrad()
                    progress.message("warning: non-finite loss at step \(step) (\(nonFinite) in a row); step skipped")
                    if nonFinite >= setup.maxNonFiniteSteps {
                        try saveLast()
                        throw TrainingError(message: "\(nonFinite) non-finite losses in a row at step \(step): lower optimizer.lr, enable optimizer.grad_clip, or use precision fp32; the last good state is in \(lastFolder)")
                    }
                    continue
                }
                nonFinite = 0
                state.globalStep += 1
                state.samplesSeenInEpoch = batch.position
                window.samples += micro.reduce(0) { $0 + $1.count }

                if state.globalStep % setup.logEverySteps == 0 || state.globalStep == setup.totalSteps {
                    let seconds = Date().timeIntervalSince(window.started)
                    var values = terms
                    values["lr"] = setup.optimizer.groups.first?.learningRate ?? 0
                    values.merge(setup.objective.logValues()) { a, _ in a }
                    values["samples_per_second"] = Double(window.samples) / Swift.max(seconds, 1e-9)
                    values["data_time"] = window.dataTime / Double(Swift.max(1, setup.logEverySteps))   // seconds waiting per step
                    values["data_wait_fraction"] = window.dataTime / Swift.max(seconds, 1e-9)
                    values["skipped_samples"] = Double(epoch.skippedCount)
                    try log(.train, values)
                    progress.update(step: state.globalStep, epoch: epochProgress, loss: total, samplesPerSecond: values["samples_per_second"]!, lr: values["lr"]!)
                    window = (0, 0, Date())
                }
                if let every = setup.evalEverySteps, state.globalStep % every == 0 {
                    lastEval = try evaluate()
                    if try record(lastEval) { stop = .stoppedEarly }
                }
                if let every = setup.checkpointEverySteps, state.globalStep % every == 0 { try saveLast() }
                if stop == nil, state.globalStep >= setup.totalSteps { stop = .completed }
                setup.onStep?(state.globalStep)
                if interrupted.load(ordering: .relaxed) {
                    try saveLast()
                    try writeCurves()
                    progress.finish()
                    return TrainingResult(outcome: .interrupted(step: state.globalStep), metrics: lastEval)
                }
            }
            if stop == nil {
                if epoch.skippedCount > 0 { progress.message("epoch \(state.epoch): \(counted(epoch.skippedCount, "bad sample")) skipped") }
                if state.globalStep == 0 && epoch.skippedCount > 0 {
                    throw TrainingError(message: "the training data has no usable samples (\(epoch.skippedCount) skipped; see the warnings above)")
                }
                state.epoch += 1
                state.samplesSeenInEpoch = 0
                if setup.evalEveryEpoch {
                    lastEval = try evaluate()
                    if try record(lastEval) { stop = .stoppedEarly }
                }
            }
        }
        if lastEval.isEmpty || (setup.evalEverySteps.map { state.globalStep % $0 != 0 } ?? !setup.evalEveryEpoch) {
            lastEval = try evaluate()
            _ = try record(lastEval)
        }
        if setup.keepLast { try saveLast() }
        try writeCurves()
        progress.finish()
        return TrainingResult(outcome: stop ?? .completed, metrics: lastEval)
    }

    private var epochProgress: Double {
        guard let perEpoch = setup.stepsPerEpoch, perEpoch > 0 else { return Double(state.epoch) }
        return Double(state.globalStep) / Double(perEpoch)
    }

    /// One optimizer step over `micro` micro-batches; returns the loss terms as numbers.
    private func trainStep(_ micro: [Batch]) -> [String: Double] {
        setup.optimizer.zeroGrad()
        var totals = setup.objective.forwardBackward(micro)
        guard totals["loss"]?.isFinite == true else { return totals }
        if let clip = setup.gradientClip {
            var parameters = setup.optimizer.groups.flatMap { $0.parameters.map(\.tensor) }
            parameters.removeAll { !$0.requiresGrad }
            if let norm = clipGradientNorm(parameters, maxNorm: clip) { totals["grad_norm"] = norm }
        }
        setup.optimizer.step()
        setup.objective.afterOptimizerStep()
        return totals
    }

    /// Evaluates on the validation data (when there is some) and prints the summary metrics.
    private func evaluate() throws -> [String: Double] {
        guard let validation = setup.validation else { return [:] }
        progress.message("evaluating at step \(state.globalStep)…")
        let values = try setup.objective.evaluate(validation)
        let summary = setup.objective.metrics.filter(\.summary).compactMap { metric in
            values[metric.name].map { String(format: "%@ %.4f", metric.name, $0) }
        }.joined(separator: ", ")
        progress.message("step \(state.globalStep): \(summary)")
        return values
    }

    /// What an evaluation decides: `best/` when the watched metric improved, the plateau
    /// schedule's scale, early stopping; then the evaluation is logged (with the best step as of
    /// now). True to stop.
    private func record(_ values: [String: Double]) throws -> Bool {
        guard !values.isEmpty else { return false }
        if let best = setup.best, let value = values[best.name], best.improves(value, over: state.bestMetric) {
            state.bestMetric = value
            state.bestStep = state.globalStep
            try save(to: bestFolder)
        }
        if let plateau = setup.plateau, let value = values[plateau.metric], state.plateau?.update(value) == true {
            progress.message("\(plateau.metric) has stalled: learning rate × \(String(format: "%.4g", state.plateau!.scale)) from step \(state.globalStep)")
        }
        var stop = false
        if var stopping = state.earlyStopping, let value = values[stopping.metric] {
            if case .stop = stopping.update(value, step: state.globalStep) {
                progress.message("early stopping: \(stopping.metric) has not improved for \(counted(stopping.patience, "evaluation")); best \(String(format: "%.4f", stopping.best ?? .nan)) at step \(stopping.bestStep ?? 0)")
                stop = true
            }
            state.earlyStopping = stopping
        }
        try log(.eval, values)
        return stop
    }

    private func log(_ kind: MetricsRecord.Kind, _ values: [String: Double]) throws {
        var values = values
        if let best = state.bestStep { values["best_step"] = Double(best) }
        let record = MetricsRecord(kind: kind, step: state.globalStep, epoch: epochProgress, values: values)
        try metrics.append(record)
        records.append(record)
        // Redrawing costs O(records): do it at evaluations (and at the end), not every log step.
        if kind == .eval { try writeCurves() }
    }

    private func writeCurves() throws {
        try CurvesPlot.write(records, title: URL(fileURLWithPath: setup.runFolder).lastPathComponent, to: "\(setup.runFolder)/curves.svg")
    }

    public func saveLast() throws { try save(to: lastFolder) }

    private func save(to folder: String) throws {
        state.captureRandomState()
        try Checkpoint.save(to: folder, model: setup.model, trainingHeads: setup.objective.trainingHeads, optimizer: setup.optimizer,
                            state: state, files: try setup.objective.checkpointFiles())
        try setup.objective.saveRunState(in: setup.runFolder)
    }

    private func installInterruptHandler() {
        signal(SIGINT) { _ in interrupted.store(true, ordering: .relaxed) }
        // A process can start with SIGINT blocked (a child spawned from a libdispatch worker
        // thread, as Foundation's Process does from Swift concurrency, inherits its mask); then
        // Ctrl-C would stay pending and the run would go on. Unblock it on this thread.
        var mask = sigset_t()
        sigemptyset(&mask)
        sigaddset(&mask, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &mask, nil)
    }
}

extension MetricDefinition {
    /// Whether `value` is better than `best` (nil: nothing yet). NaN never improves.
    func improves(_ value: Double, over best: Double?) -> Bool {
        guard !value.isNaN else { return false }
        guard let best else { return true }
        return mode == .max ? value > best : value < best
    }
}
