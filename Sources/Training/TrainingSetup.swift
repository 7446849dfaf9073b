import Datasets
import Foundation
import Models
import NN
import Optim
import Torch

/// Everything one training run needs, in domain terms (`RunBuilder` makes one from a recipe).
public struct TrainingSetup {
    public var runFolder: String
    /// What is optimised: the model, its loss terms and its metrics.
    public var objective: any TrainingObjective
    public var train: DataLoader
    public var validation: DataLoader?
    public var optimizer: Optimizer
    public var schedule: LRSchedule
    public var gradientClip: Double?
    /// fp16 trains with dynamic loss scaling: `gradScaler`, or torch's default scaler when nil
    /// (`gradScaler` is ignored in fp32 and bf16).
    public var precision: Precision = .fp32
    public var gradScaler: GradScaler?
    /// Tests only: lets fp16 run on the CPU, which `Precision.problems(on:)` refuses, so that
    /// the loss-scaling loop can be tested on machines without a GPU.
    var allowFP16OnCPUForTesting = false
    /// Micro-batches per step (the objective decides how their losses combine).
    public var accumulationSteps = 1
    public var totalSteps: Int
    public var stepsPerEpoch: Int?
    /// Ends the run after this many epochs even when skipped samples made them shorter than
    /// `stepsPerEpoch` planned.
    public var epochs: Int?
    public var evalEverySteps: Int?
    public var evalEveryEpoch = true
    /// Which evaluation metric `best/` keeps the best value of; nil: no `best/`.
    public var best: MetricDefinition?
    public var earlyStopping: EarlyStopping?
    /// `schedule.type: "plateau"`: the metric it watches and the rule that lowers the rate.
    public var plateau: (metric: String, rule: ReduceOnPlateau)?
    public var keepLast = true
    public var checkpointEverySteps: Int?
    public var logEverySteps = 10
    public var maxNonFiniteSteps = 5
    /// Called after every completed step with the global step (monitoring, tests).
    public var onStep: ((Int) -> Void)?
    public var recipeJSON: Data?
    /// Where the model, batches and losses live (`place(on:)` the objective before training).
    public var device: Device = .cpu
    /// The processes training together (data parallel); nil: this one alone.
    public var group: (any DataParallelGroup)?
    /// What the run prints before its first step besides its settings (converted weights).
    public var notes: [String] = []
    /// WiSE-FT after the last step (the recipe's `wise_ft`); nil: none.
    public var wiseFT: WiSEFTPlan?
    /// A LoRA run's adapter: checkpoints then hold PEFT's adapter files, not the model's weights.
    public var adapter: LoRAAdapterConfig?

    /// The model being trained.
    public var model: Module { objective.model }

    /// Makes this a LoRA run (nil: not one), with a note on what trains.
    mutating func adapt(with adapter: LoRAAdapterConfig?) {
        self.adapter = adapter
        guard let adapter else { return }
        let settings = adapter.settings
        let layers = model.adaptedLayers().count
        let saved = adapter.modulesToSave.isEmpty ? "" : "; trained whole: \(adapter.modulesToSave.joined(separator: ", "))"
        notes.append("LoRA: \(layers) layers adapted (r \(settings.rank), alpha \(formatNumber(settings.alpha)), scaling \(formatNumber(settings.scaling))\(settings.rsLoRA ? " rsLoRA" : "")), the base \(adapter.baseModelPath ?? "") frozen\(saved); checkpoints hold PEFT's adapter files")
    }

    public init(runFolder: String, objective: any TrainingObjective, train: DataLoader, validation: DataLoader?,
                optimizer: Optimizer, schedule: LRSchedule, totalSteps: Int) {
        self.runFolder = runFolder
        self.objective = objective
        self.train = train
        self.validation = validation
        self.optimizer = optimizer
        self.schedule = schedule
        self.totalSteps = totalSteps
        best = validation == nil ? nil : objective.mainMetric
    }
}

/// How a run ended, and its last evaluation.
public struct TrainingResult {
    public enum Outcome: Equatable, Sendable {
        /// Trained to the last step.
        case completed
        /// Early stopping fired.
        case stoppedEarly
        /// SIGINT: `last/` was saved at `step`; the command exits 130 (the shell's code for it).
        case interrupted(step: Int)
    }

    public let outcome: Outcome
    /// The last evaluation's metrics (empty without validation data).
    public let metrics: [String: Double]
    /// WiSE-FT's sweep after training (`wise_ft`), when it ran.
    public var wiseFT: WiSEFTResult?
}

/// A run that cannot go on (non-finite losses, no data); the message says what to do.
public struct TrainingError: Error, CustomStringConvertible {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}
