import Data
import Foundation
import Models
import NN
import Optim
import Synchronization
import Torch

/// Everything one training run needs, in domain terms (a recipe is turned into this).
public struct TrainingSetup {
    public enum Loss { case clip, siglip(SigLIPLoss) }
    public enum Precision: String, Sendable { case fp32, bf16 }

    public var runFolder: String
    public var model: DualEncoder
    public var tokenizer: CaptionTokenizer
    public var train: DataLoader
    public var validation: DataLoader?
    public var zeroShot: ZeroShotClasses?
    public var optimizer: Optimizer
    public var schedule: LRSchedule
    public var gradientClip: Double?
    /// Micro-batches per step; earlier micro-batches' features stay in the loss as negatives.
    public var accumulationSteps = 1
    public var loss: Loss = .clip
    public var logitScaleMax = Foundation.log(100.0)
    public var totalSteps: Int
    public var stepsPerEpoch: Int?
    public var evalEverySteps: Int?
    public var evalEveryEpoch = true
    /// Retrieval metrics in evaluations (zero-shot and the validation loss are separate).
    public var retrieval = true
    public var earlyStopping: EarlyStopping?
    public var keepBest = true
    public var keepLast = true
    public var checkpointEverySteps: Int?
    public var precision: Precision = .fp32
    public var logEverySteps = 10
    public var maxNonFiniteSteps = 5
    /// Extra loss terms for distillation: given the batch and the student's features, named terms
    /// (each already weighted) added to the contrastive loss.
    public var extraLossTerms: ((Batch, _ imageFeatures: Tensor, _ textFeatures: Tensor) -> [String: Tensor])?
    /// The model's config.json (Hugging Face layout) written into checkpoints.
    public var configJSON: [String: Any]
    /// Called after every completed step with the global step (monitoring, tests).
    public var onStep: ((Int) -> Void)?
    public var preprocessing: ImagePreprocessing
    public var tokenizerFolder: String?
    public var recipeJSON: Data?

    public init(runFolder: String, model: DualEncoder, tokenizer: CaptionTokenizer, train: DataLoader, validation: DataLoader?,
                zeroShot: ZeroShotClasses?, optimizer: Optimizer, schedule: LRSchedule, totalSteps: Int,
                preprocessing: ImagePreprocessing, tokenizerFolder: String?) {
        self.runFolder = runFolder
        self.model = model
        self.tokenizer = tokenizer
        self.train = train
        self.validation = validation
        self.zeroShot = zeroShot
        self.optimizer = optimizer
        self.schedule = schedule
        self.totalSteps = totalSteps
        self.preprocessing = preprocessing
        self.tokenizerFolder = tokenizerFolder
        self.configJSON = Pretrained.configJSON(model)
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
            state = try Checkpoint.load(from: "\(setup.runFolder)/last", into: setup.model, optimizer: setup.optimizer)
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
                    values["logit_scale"] = model.logitScale.item(Double.self)
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
        let model = setup.model
        let tokens = micro.map { setup.tokenizer.encode($0.captions) }
        func features(_ i: Int) -> (Tensor, Tensor) {
            let forward = { (model.imageFeatures(micro[i].pixels), model.textFeatures(ids: tokens[i].ids, attentionMask: tokens[i].attentionMask)) }
            return setup.precision == .bf16 ? withAutocast(.bfloat16, forward) : forward()
        }
        // open_clip's accumulation: features of every micro-batch first (no grad), then each
        // micro-batch again with grad, its features spliced among the cached ones.
        var cached: [(Tensor, Tensor)] = []
        if micro.count > 1 { cached = withNoGrad { (0..<micro.count).map(features) } }
        var totals: [String: Double] = [:]
        setup.optimizer.zeroGrad()
        for i in 0..<micro.count {
            let (image, text) = features(i)
            var allImages = image, allTexts = text
            if micro.count > 1 {
                allImages = Tensor.cat(cached.enumerated().map { $0.offset == i ? image : $0.element.0 })
                allTexts = Tensor.cat(cached.enumerated().map { $0.offset == i ? text : $0.element.1 })
            }
            var terms: [String: Tensor] = [:]
            switch setup.loss {
            case .clip: terms["contrastive_loss"] = clipLoss(imageFeatures: allImages, textFeatures: allTexts, logitScale: model.logitScale)
            case .siglip(let s): terms["siglip_loss"] = s(imageFeatures: allImages, textFeatures: allTexts, logitScale: model.logitScale)
            }
            if let extra = setup.extraLossTerms {
                for (name, t) in extra(micro[i], image, text) { terms[name] = t }
            }
            let total = terms.values.dropFirst().reduce(terms.values.first!) { $0 + $1 }
            let value = total.item(Double.self)
            totals["loss", default: 0] += value / Double(micro.count)
            for (name, t) in terms { totals[name, default: 0] += t.item(Double.self) / Double(micro.count) }
            guard value.isFinite else { return totals }
            total.backward()
        }
        if let clip = setup.gradientClip {
            let parameters = setup.optimizer.groups.flatMap { $0.parameters.map(\.tensor) }
            if let norm = clipGradientNorm(parameters, maxNorm: clip) { totals["grad_norm"] = norm }
        }
        setup.optimizer.step()
        withNoGrad { model.logitScale.clamp_(min: 0, max: setup.logitScaleMax) }
        return totals
    }

    /// Evaluates on the validation data (when there is some), logs, keeps the best checkpoint.
    private func evaluate() throws -> [String: Double] {
        guard let validation = setup.validation else { return [:] }
        progress.message("evaluating at step \(state.globalStep)…")
        let values = try Evaluation.evaluate(setup.model, loader: validation, tokenizer: setup.tokenizer, zeroShot: setup.zeroShot,
                                             retrieval: setup.retrieval)
        let summary = ["image_to_text_R@1", "text_to_image_R@1", "zeroshot_top1", "clip_val_loss"].compactMap { key in
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
        let model = setup.model
        let config = try JSONSerialization.data(withJSONObject: setup.configJSON, options: [.prettyPrinted, .sortedKeys])
        var extra: [String: Data] = [:]
        extra["preprocessor_config.json"] = try JSONSerialization.data(withJSONObject: Pretrained.preprocessorJSON(setup.preprocessing), options: [.prettyPrinted, .sortedKeys])
        if let source = setup.tokenizerFolder {
            for file in Pretrained.tokenizerFiles {
                if let data = FileManager.default.contents(atPath: "\(source)/\(file)") { extra[file] = data }
            }
        }
        try Checkpoint.save(to: folder, model: model, config: config, optimizer: setup.optimizer, state: state, extraFiles: extra)
    }

    private func installInterruptHandler() {
        signal(SIGINT) { _ in interrupted.store(true, ordering: .relaxed) }
    }
}
