import Datasets
import Foundation
import Models
import NN
import Optim
import Synchronization
import Torch

/// Everything one training run needs, in domain terms (a recipe is turned into this).
public struct TrainingSetup {
    public var runFolder: String
    /// What is optimised: the model, its loss terms and its metrics.
    public var objective: any TrainingObjective
    public var train: DataLoader
    public var validation: DataLoader?
    public var optimizer: Optimizer
    public var schedule: LRSchedule
    public var gradientClip: Double?
    /// Micro-batches per step (the objective decides how their losses combine).
    public var accumulationSteps = 1
    public var totalSteps: Int
    public var stepsPerEpoch: Int?
    public var evalEverySteps: Int?
    public var evalEveryEpoch = true
    public var earlyStopping: EarlyStopping?
    public var keepBest = true
    public var keepLast = true
    public var checkpointEverySteps: Int?
    public var logEverySteps = 10
    public var maxNonFiniteSteps = 5
    /// Called after every completed step with the global step (monitoring, tests).
    public var onStep: ((Int) -> Void)?
    public var recipeJSON: Data?

    /// The model being trained.
    public var model: Module { objective.model }

    public init(runFolder: String, objective: any TrainingObjective, train: DataLoader, validation: DataLoader?,
                optimizer: Optimizer, schedule: LRSchedule, totalSteps: Int) {
        self.runFolder = runFolder
        self.objective = objective
        self.train = train
        self.validation = validation
        self.optimizer = optimizer
        self.schedule = schedule
        self.totalSteps = totalSteps
    }
}

/// A run that cannot go on (non-finite losses, no data); the message says what to do.
public struct TrainingError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// Set by SIGINT; the loop saves `last/` and exits 130.
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
            state = try Checkpoint.load(from: "\(setup.runFolder)/last", into: setup.model, heads: setup.objective.heads, optimizer: setup.optimizer)
            try state.restoreRandomState()
            metrics = try MetricsLog(path: "\(setup.runFolder)/metrics.jsonl", resumeAt: state.globalStep)
            records = (try? MetricsLog.read("\(setup.runFolder)/metrics.jsonl")) ?? []
        } else {
            state = TrainerState(globalStep: 0, earlyStopping: setup.earlyStopping)
            metrics = try MetricsLog(path: "\(setup.runFolder)/metrics.jsonl")
        }
        if let recipe = setup.recipeJSON { try AtomicFile.write(recipe, to: "\(setup.runFolder)/recipe.json") }
        progress = ProgressReporter(totalSteps: setup.totalSteps, logEvery: setup.logEverySteps, startStep: state.globalStep)
    }

    /// Trains to `totalSteps` (or an early stop); returns the last evaluation's metrics.
    @discardableResult
    public func run() throws -> [String: Double] {
        installInterruptHandler()
        let model = setup.model
        model.train()
        var lastEval: [String: Double] = [:]
        var nonFinite = 0
        var stop = state.globalStep >= setup.totalSteps
        var window = (samples: 0, dataTime: 0.0, started: Date())
        if state.globalStep > 0 { progress.message("resumed at step \(state.globalStep) (epoch \(state.epoch), sample \(state.samplesSeenInEpoch))") }

        while !stop {
            let epoch = setup.train.epoch(state.epoch, startingAt: state.samplesSeenInEpoch)
            var micro: [Batch] = []
            while !stop {
                let fetchStarted = Date()
                guard let batch = try epoch.next() else { break }
                window.dataTime += Date().timeIntervalSince(fetchStarted)
                micro.append(batch)
                guard micro.count == setup.accumulationSteps else { continue }
                defer { micro.removeAll() }

                let step = state.globalStep
                setup.optimizer.setLearningRates { self.setup.schedule.learningRate(at: step, base: $0) }
                let terms = try trainStep(micro)
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
                    if try earlyStop(lastEval) { stop = true }
                }
                if let every = setup.checkpointEverySteps, state.globalStep % every == 0 { try saveLast() }
                if state.globalStep >= setup.totalSteps { stop = true }
                setup.onStep?(state.globalStep)
                if interrupted.load(ordering: .relaxed) {
                    try saveLast()
                    writeCurves()
                    progress.finish()
                    FileHandle.standardError.write(Data("interrupted: saved \(lastFolder) at step \(state.globalStep); continue with --resume\n".utf8))
                    exit(130)
                }
            }
            if !stop {
                if epoch.skippedCount > 0 { progress.message("epoch \(state.epoch): \(epoch.skippedCount) bad samples skipped") }
                if state.globalStep == 0 && epoch.skippedCount > 0 {
                    throw TrainingError(message: "the training data has no usable samples (\(epoch.skippedCount) skipped; see the warnings above)")
                }
                state.epoch += 1
                state.samplesSeenInEpoch = 0
                if setup.evalEveryEpoch {
                    lastEval = try evaluate()
                    if try earlyStop(lastEval) { stop = true }
                }
            }
        }
        if lastEval.isEmpty || (setup.evalEverySteps.map { state.globalStep % $0 != 0 } ?? !setup.evalEveryEpoch) {
            lastEval = try evaluate()
            _ = try earlyStop(lastEval)
        }
        if setup.keepLast { try saveLast() }
        writeCurves()
        progress.finish()
        return lastEval
    }

    private var epochProgress: Double {
        guard let perEpoch = setup.stepsPerEpoch, perEpoch > 0 else { return Double(state.epoch) }
        return Double(state.globalStep) / Double(perEpoch)
    }

    /// One optimizer step over `micro` micro-batches; returns the loss terms as numbers.
    private func trainStep(_ micro: [Batch]) throws -> [String: Double] {
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

    /// Evaluates on the validation data (when there is some), logs, keeps the best checkpoint.
    private func evaluate() throws -> [String: Double] {
        guard let validation = setup.validation else { return [:] }
        progress.message("evaluating at step \(state.globalStep)…")
        let values = try setup.objective.evaluate(validation)
        let summary = ["image_to_text_R@1", "text_to_image_R@1", "zeroshot_top1", "clip_val_loss", "teacher_cosine", "teacher_match_R@1"].compactMap { key in
            values[key].map { String(format: "%@ %.4f", key, $0) }
        }.joined(separator: ", ")
        progress.message("step \(state.globalStep): \(summary)")
        return values
    }

    /// Feeds early stopping with an evaluation, saves `best/` on improvement, then logs the
    /// evaluation (with the best step as of now). True to stop.
    private func earlyStop(_ values: [String: Double]) throws -> Bool {
        guard !values.isEmpty else { return false }
        defer { try? log(.eval, values) }
        guard var stopping = state.earlyStopping, let value = values[stopping.metric] else { return false }
        let decision = stopping.update(value, step: state.globalStep)
        state.earlyStopping = stopping
        switch decision {
        case .improved:
            state.bestMetric = value
            state.bestStep = state.globalStep
            if setup.keepBest { try save(to: bestFolder) }
            return false
        case .wait: return false
        case .stop:
            progress.message("early stopping: \(stopping.metric) has not improved for \(stopping.patience) evaluations; best \(String(format: "%.4f", stopping.best ?? .nan)) at step \(stopping.bestStep ?? 0)")
            return true
        }
    }

    private func log(_ kind: MetricsRecord.Kind, _ values: [String: Double]) throws {
        var values = values
        if let best = state.bestStep { values["best_step"] = Double(best) }
        let record = MetricsRecord(kind: kind, step: state.globalStep, epoch: epochProgress, values: values)
        try metrics.append(record)
        records.append(record)
        // Redrawing costs O(records): do it at evaluations (and at the end), not every log step.
        if kind == .eval { writeCurves() }
    }

    private func writeCurves() {
        try? CurvesPlot.write(records, title: URL(fileURLWithPath: setup.runFolder).lastPathComponent, to: "\(setup.runFolder)/curves.svg")
    }

    public func saveLast() throws { try save(to: lastFolder) }

    private func save(to folder: String) throws {
        state.captureRandomState()
        try Checkpoint.save(to: folder, model: setup.model, heads: setup.objective.heads, optimizer: setup.optimizer, state: state,
                            files: try setup.objective.checkpointFiles())
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
