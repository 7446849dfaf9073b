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
    /// Rank 0's (or the only process's); nil on the other processes, which write nothing.
    private let metrics: MetricsLog?
    private let progress: ProgressReporter
    /// Whether this process writes checkpoints, logs and progress (rank 0, or the only one).
    public let isLeader: Bool
    private var records: [MetricsRecord] = []
    /// fp16's dynamic loss scaler (nil in fp32 and bf16); its state is saved with every checkpoint.
    private let scaler: GradScaler?

    public var lastFolder: String { "\(setup.runFolder)/last" }
    public var bestFolder: String { "\(setup.runFolder)/best" }

    private let folder: RunFolder?

    /// Watch the run (the Prometheus endpoint, TensorBoard); add them before `run()`.
    public var observers: [any TrainingObserver] = []
    /// The step this run continues from, or nil when it starts afresh.
    public private(set) var resumedAt: Int?

    /// Starts a run, or continues the one in `runFolder/last` when `resume` is true (and fails
    /// when there is none); see `RunStart`.
    public convenience init(_ setup: TrainingSetup, resume: Bool) throws {
        try self.init(setup, start: resume ? .resume : .fresh)
    }

    /// Starts or continues a run in `setup.runFolder`, holding the folder's lock for its life.
    public init(_ setup: TrainingSetup, start: RunStart) throws {
        self.setup = setup
        if !setup.allowFP16OnCPUForTesting, let problem = setup.precision.problems(on: setup.device).first {
            throw TrainingError(message: "precision \(problem)")
        }
        scaler = setup.precision == .fp16 ? setup.gradScaler ?? GradScaler() : nil
        // Across processes rank 0 alone owns the run folder (lock, checkpoints, logs); the others
        // wait for it, check that they run the same recipe, and read what it holds.
        isLeader = (setup.group?.rank ?? 0) == 0
        if isLeader {
            // An interrupted save is finished or rolled back before anything looks for a checkpoint.
            for name in ["last", "best"] { try CheckpointDirectory.recover("\(setup.runFolder)/\(name)") }
            folder = try RunFolder(setup.runFolder, start: start)
        } else {
            folder = nil
        }
        if let group = setup.group { try Self.agree(on: setup.recipeJSON, group) }
        var messages: [String] = []
        let hasCheckpoint = FileManager.default.fileExists(atPath: "\(setup.runFolder)/last/\(Checkpoint.stateFile)")
        if start == .resume || start == .resumeIfPossible, hasCheckpoint {
            if isLeader, let saved = FileManager.default.contents(atPath: "\(setup.runFolder)/recipe.json"), let current = setup.recipeJSON {
                messages += try Self.checkResumable(saved: saved, current: current, folder: setup.runFolder)
            }
            state = try Checkpoint.load(from: "\(setup.runFolder)/last", into: setup.model, adapter: setup.adapter, trainingHeads: setup.objective.trainingHeads,
                                        optimizer: setup.optimizer)
            // A run started on another kind of device has no state for this one's generator.
            let saved = state.rngStates
            try state.restoreRandomState(Self.generators(of: setup.device).filter { saved[$0.key] != nil })
            if let saved = state.gradScaler { scaler?.state = saved }
            resumedAt = state.globalStep
            metrics = isLeader ? try MetricsLog(path: "\(setup.runFolder)/metrics.jsonl", resumeAt: state.globalStep) : nil
            records = isLeader ? try MetricsLog.read("\(setup.runFolder)/metrics.jsonl") : []
        } else {
            if start == .resumeIfPossible { messages.append("\"resume\": \"latest\": \(setup.runFolder) has no checkpoint yet, so this run starts afresh") }
            state = TrainerState(globalStep: 0, earlyStopping: setup.earlyStopping, plateau: setup.plateau?.rule)
            metrics = isLeader ? try MetricsLog(path: "\(setup.runFolder)/metrics.jsonl") : nil
        }
        if let recipe = setup.recipeJSON { try folder?.writeRecipe(recipe, resumedAt: state.globalStep > 0 ? state.globalStep : nil) }
        progress = isLeader ? ProgressReporter(totalSteps: setup.totalSteps, logEvery: setup.logEverySteps, startStep: state.globalStep)
                            : ProgressReporter(totalSteps: setup.totalSteps, startStep: state.globalStep, output: { _ in })
        for message in messages { progress.message(message) }
        if let group = setup.group {
            // One starting point: rank 0's weights (fresh initialisations differ by process).
            try group.broadcastState(setup.model)
            if let heads = setup.objective.trainingHeads { try group.broadcastState(heads) }
        }
    }

    /// Refuses a resume whose recipe changes the training itself (listing every change); returns
    /// warnings for the changes that keep it (evaluation, logging, length).
    static func checkResumable(saved: Data, current: Data, folder: String) throws -> [String] {
        let (breaking, harmless) = Recipe.resumeDifferences(saved: saved, current: current)
        guard breaking.isEmpty else {
            throw TrainingError(message: "--resume: the recipe changed since \(folder) started, in ways that would not continue the same run:\n  "
                                + breaking.joined(separator: "\n  ")
                                + "\nundo these changes to continue it, or start a new run (another name, or --overwrite)")
        }
        var warnings = harmless.map { "resuming with a changed setting: \($0)" }
        if harmless.contains(where: { $0.hasPrefix("max_steps:") || $0.hasPrefix("epochs:") }) {
            warnings.append("the run's length changed, so schedules that depend on it (cosine, linear, const_cooldown) give other rates from here on than the original plan")
        }
        return warnings
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

        var reportedFirstStep = false
        while stop == nil {
            let epochStart = state.samplesSeenInEpoch
            let epoch = setup.train.epoch(state.epoch, startingAt: epochStart)
            var stepsThisEpoch = 0
            var skippedReported = 0
            var micro: [Batch] = []
            while stop == nil {
                let fetchStarted = Date()
                let fetched: Batch?
                do {
                    // Across processes Ctrl-C is decided together below (a process that
                    // stopped alone inside its data wait would leave the others in a collective).
                    fetched = try epoch.next(stopWhen: setup.group == nil ? { interrupted.load(ordering: .relaxed) } : nil)
                } catch is LoadingInterrupted {
                    return try finishInterrupted(lastEval)
                }
                if epoch.skippedCount > skippedReported {
                    for observer in observers { observer.badSamplesSkipped(epoch.skippedCount - skippedReported) }
                    skippedReported = epoch.skippedCount
                }
                // Across processes an epoch ends for all when it ends for one (skipped samples
                // can end a shard early), and Ctrl-C on one stops all at the same step.
                if let group = setup.group {
                    if try group.anyRank(interrupted.load(ordering: .relaxed)) { return try finishInterrupted(lastEval) }
                    if try group.anyRank(fetched == nil) { break }
                }
                guard let batch = fetched?.on(setup.device, nonBlocking: true) else { break }
                window.dataTime += Date().timeIntervalSince(fetchStarted)
                micro.append(batch)
                // Ctrl-C between micro-batches stops before the step (last/ is the previous step's).
                if setup.group == nil, interrupted.load(ordering: .relaxed) { return try finishInterrupted(lastEval) }
                guard micro.count == setup.accumulationSteps else { continue }
                defer { micro.removeAll() }

                let step = state.globalStep
                let plateauScale = state.plateau?.scale ?? 1
                setup.optimizer.setLearningRates { self.setup.schedule.learningRate(at: step, base: $0) * plateauScale }
                let stepStarted = Date()
                let (terms, stepped) = try trainStep(micro)
                let total = terms["loss"]!
                if !total.isFinite {
                    nonFinite += 1
                    setup.optimizer.zeroGrad()
                    for observer in observers { observer.nonFiniteStepSkipped(at: step) }
                    let cause = setup.objective.explainNonFinite(micro)
                    progress.message("warning: non-finite loss at step \(step) (\(nonFinite) in a row); step skipped" + (cause.map { ": \($0)" } ?? ""))
                    if nonFinite >= setup.maxNonFiniteSteps {
                        throw try stopOnNonFinite(count: nonFinite, step: step, cause: cause)
                    }
                    continue
                }
                nonFinite = 0
                // fp16: gradients that overflowed (the loss itself was finite) mean the scale was
                // too large. torch's GradScaler skips the optimizer update silently and lowers the
                // scale (× 0.5); open_clip's loop still counts the step (its schedule and data move
                // on). So does this one: it is not a non-finite loss, and stopping for it would end
                // runs that are only calibrating their scale (the first steps often overflow).
                if !stepped, let scaler {
                    progress.message("fp16: gradients overflowed at step \(step); loss scale lowered to \(formatNumber(scaler.currentScale)); step skipped")
                }
                stepsThisEpoch += 1
                if !reportedFirstStep {   // as soon as it is known, so a slow run says so early
                    reportedFirstStep = true
                    Torch.synchronize(setup.device)   // the clock must see the device's work
                    progress.message(String(format: "first step took %.2f s", Date().timeIntervalSince(stepStarted)))
                }
                state.globalStep += 1
                state.samplesSeenInEpoch = batch.position
                let samples = micro.reduce(0) { $0 + $1.count }
                window.samples += samples
                for observer in observers { observer.stepFinished(step: state.globalStep, samples: samples) }

                if state.globalStep % setup.logEverySteps == 0 || state.globalStep == setup.totalSteps {
                    Torch.synchronize(setup.device)
                    let seconds = Date().timeIntervalSince(window.started)
                    var values = terms
                    values["lr"] = setup.optimizer.groups.first?.learningRate ?? 0
                    if let scaler { values["loss_scale"] = scaler.currentScale }
                    values.merge(setup.objective.logValues()) { a, _ in a }
                    values["samples_per_second"] = Double(window.samples) / Swift.max(seconds, 1e-9)
                    values["data_time"] = window.dataTime / Double(Swift.max(1, setup.logEverySteps))   // seconds waiting per step
                    values["data_wait_fraction"] = window.dataTime / Swift.max(seconds, 1e-9)
                    values["skipped_samples"] = Double(epoch.skippedCount)
                    values.merge(Self.peakMemory(setup.device)) { a, _ in a }
                    try log(.train, values)
                    progress.update(step: state.globalStep, epoch: epochProgress, loss: total, samplesPerSecond: values["samples_per_second"]!, lr: values["lr"]!)
                    window = (0, 0, Date())
                }
                if let every = setup.evalEverySteps, state.globalStep % every == 0 {
                    lastEval = try evaluateSavingOnFailure()
                    if try record(lastEval) { stop = .stoppedEarly }
                }
                if let every = setup.checkpointEverySteps, state.globalStep % every == 0 { try saveLast() }
                if stop == nil, state.globalStep >= setup.totalSteps { stop = .completed }
                setup.onStep?(state.globalStep)
                // Across processes only the agreed check at the next batch stops (a rank that
                // saw its flag here first would leave the others alone in that collective).
                if setup.group == nil, interrupted.load(ordering: .relaxed) { return try finishInterrupted(lastEval) }
            }
            if stop == nil {
                if epoch.skippedCount > 0 { progress.message("epoch \(state.epoch): \(counted(epoch.skippedCount, "bad sample")) skipped") }
                if let model = setup.model as? DualEncoder {
                    for summary in [model.textPrefixCache?.summary, model.imagePrefixCache?.summary].compactMap({ $0 }) {
                        progress.message("epoch \(state.epoch): frozen-layer cache holds \(summary)")
                    }
                }
                // An epoch that began at its first sample and made no step would repeat forever.
                if epochStart == 0 && stepsThisEpoch == 0 {
                    throw TrainingError(message: "epoch \(state.epoch) made no step: \(epoch.skippedCount == 0 ? "the training data yielded no full batch" : "\(counted(epoch.skippedCount, "sample")) were skipped as unreadable (see the warnings above)") — fewer than batch_size × accumulation_steps usable samples; check data.train")
                }
                state.epoch += 1
                state.samplesSeenInEpoch = 0
                if setup.evalEveryEpoch {
                    lastEval = try evaluateSavingOnFailure()
                    if try record(lastEval) { stop = .stoppedEarly }
                }
                // Skipped samples make epochs shorter than planned: `epochs` still ends the run.
                if stop == nil, let epochs = setup.epochs, state.epoch >= epochs { stop = .completed }
            }
        }
        if lastEval.isEmpty || (setup.evalEverySteps.map { state.globalStep % $0 != 0 } ?? !setup.evalEveryEpoch) {
            lastEval = try evaluateSavingOnFailure()
            _ = try record(lastEval)
        }
        if setup.keepLast { try saveLast() }
        try writeCurves()
        var wiseFT: WiSEFTResult?
        if isLeader, let plan = setup.wiseFT {
            wiseFT = try WiSEFT.afterTraining(plan, runFolder: setup.runFolder, best: bestFolder) { progress.message($0) }
        }
        progress.finish()
        return TrainingResult(outcome: stop ?? .completed, metrics: lastEval, wiseFT: wiseFT)
    }

    /// Ctrl-C: saves `last/` (the last completed step) and ends the run.
    private func finishInterrupted(_ lastEval: [String: Double]) throws -> TrainingResult {
        try saveLast()
        try writeCurves()
        progress.finish()
        return TrainingResult(outcome: .interrupted(step: state.globalStep), metrics: lastEval)
    }

    /// Too many non-finite losses in a row: saves `last/` only if the weights are still finite
    /// (they are those of the last good step then), and says where the last good state is.
    private func stopOnNonFinite(count: Int, step: Int, cause: String?) throws -> TrainingError {
        let finite = setup.model.parameters().allSatisfy(allFinite)
        var saved: String
        if finite {
            try saveLast()
            saved = "the last good state (step \(state.globalStep)) is in \(lastFolder)"
        } else if let step = try? Checkpoint.readState(lastFolder).globalStep {
            saved = "the weights are no longer finite, so last/ was not overwritten: its step \(step) is the last good state"
        } else {
            saved = "the weights are no longer finite and no earlier checkpoint exists"
        }
        let advice = cause ?? "lower optimizer.lr, enable optimizer.grad_clip, or use precision fp32"
        return TrainingError(message: "\(count) non-finite losses in a row at step \(step): \(advice); \(saved)")
    }

    /// An evaluation that fails (bad validation data, say) saves `last/` first, so the training
    /// done so far is kept.
    private func evaluateSavingOnFailure() throws -> [String: Double] {
        do {
            return try evaluate()
        } catch {
            if setup.keepLast || state.globalStep > 0 {
                try? saveLast()
                progress.message("evaluation failed at step \(state.globalStep); saved \(lastFolder) first")
            }
            throw error
        }
    }

    private var epochProgress: Double {
        guard let perEpoch = setup.stepsPerEpoch, perEpoch > 0 else { return Double(state.epoch) }
        return Double(state.globalStep) / Double(perEpoch)
    }

    /// Peak memory so far, in GiB: the process's resident memory, and on a GPU what libtorch's
    /// allocator has held for tensors (what an out-of-memory error is about).
    static func peakMemory(_ device: Device) -> [String: Double] {
        var values = ["peak_host_memory_gib": Double(Torch.hostPeakResidentBytes) / 1_073_741_824]
        if let stats = Torch.memoryStats(device) { values["peak_device_memory_gib"] = Double(stats.peakAllocated) / 1_073_741_824 }
        return values
    }

    /// The generators of the run's device besides the CPU's (dropout on CUDA draws from its own).
    private static func generators(of device: Device) -> [String: Generator] {
        guard case .cuda = device else { return [:] }
        return ["torch_cuda": Generator.default(device: device)]
    }

    /// One optimizer step over `micro` micro-batches; returns the loss terms as numbers, and
    /// whether the optimizer stepped (false under fp16 when the gradients overflowed, and when
    /// the loss is not finite). A libtorch failure (the device out of memory, above all) is an
    /// error that says what to change.
    private func trainStep(_ micro: [Batch]) throws -> (terms: [String: Double], stepped: Bool) {
        do {
            return try withTorchErrors { try optimizerStep(micro) }
        } catch let error as TorchError {
            throw StepFailure.explain(error, step: state.globalStep, batchSize: micro.first?.count ?? 0, microBatches: micro.count,
                                      device: setup.device, precision: setup.precision, gradientCheckpointing: setup.model.checkpointsLayers)
        }
    }

    private func optimizerStep(_ micro: [Batch]) throws -> (terms: [String: Double], stepped: Bool) {
        setup.optimizer.zeroGrad()
        var totals = try setup.objective.forwardBackward(micro, scaler: scaler)
        guard totals["loss"]?.isFinite == true else { return (totals, false) }
        // Data parallel: every process steps with the average of their gradients (DDP's rule).
        if let group = setup.group {
            try group.averageGradients(setup.optimizer.groups.flatMap { $0.parameters.map(\.tensor) }.filter(\.requiresGrad))
        }
        // Clipping must see the true gradients: unscale first (torch's documented order). On an
        // overflow they hold inf/NaN and the step is skipped, so they are not clipped.
        scaler?.unscale(setup.optimizer)
        if let clip = setup.gradientClip, scaler?.foundNonFinite != true {
            var parameters = setup.optimizer.groups.flatMap { $0.parameters.map(\.tensor) }
            parameters.removeAll { !$0.requiresGrad }
            if let norm = clipGradientNorm(parameters, maxNorm: clip) { totals["grad_norm"] = norm }
        }
        var stepped = true
        if let scaler {
            stepped = scaler.step(setup.optimizer)
            scaler.update()
        } else {
            setup.optimizer.step()
        }
        setup.objective.afterOptimizerStep()
        return (totals, stepped)
    }

    /// Evaluates on the validation data (when there is some) and prints the summary metrics.
    private func evaluate() throws -> [String: Double] {
        guard let validation = setup.validation else { return [:] }
        progress.message("evaluating at step \(state.globalStep)…")
        // Across processes rank 0 evaluates on the whole validation set (the single-process
        // result) and the others take its numbers, so that every decision is the same.
        let values = try setup.group.map { try shareEvaluation($0, validation) } ?? setup.objective.evaluate(validation)
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
        var best: BestMetric?
        if let metric = setup.best, let value = state.bestMetric, let step = state.bestStep { best = BestMetric(name: metric.name, value: value, step: step) }
        for observer in observers { try observer.recorded(record, best: best) }
        guard let metrics else { return }
        try metrics.append(record)
        records.append(record)
        // Redrawing costs O(records): do it at evaluations (and at the end), not every log step.
        if kind == .eval { try writeCurves() }
    }

    private func writeCurves() throws {
        guard isLeader else { return }
        try CurvesPlot.write(records, title: URL(fileURLWithPath: setup.runFolder).lastPathComponent, to: "\(setup.runFolder)/curves.svg")
    }

    public func saveLast() throws { try save(to: lastFolder) }

    private func save(to folder: String) throws {
        guard isLeader else { return }
        state.captureRandomState(Self.generators(of: setup.device))
        state.gradScaler = scaler?.state
        try Checkpoint.save(to: folder, model: setup.model, adapter: setup.adapter, trainingHeads: setup.objective.trainingHeads, optimizer: setup.optimizer,
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
