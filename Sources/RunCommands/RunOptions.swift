import ArgumentParser
import Foundation
import Training

/// The options `train` and `distill` share: the recipe, `--set` overrides, `--resume`, and the
/// flags people know from open_clip and transformers' `run_clip.py` as shorthands for `--set`.
public struct RunOptions: ParsableArguments {
    @Option(help: "The recipe (JSON).") public var recipe: String?
    @Option(name: .customLong("set"), help: "Override a recipe field: --set optimizer.lr=1e-4 (repeatable; applied after the flags below).")
    public var overrides: [String] = []
    @Flag(help: "Continue the run from its last/ checkpoint (an error when there is none).") public var resume = false
    @Flag(help: "Delete a previous run in the same run folder and start afresh.") public var overwrite = false

    @Option(help: "Training data: a shard pattern or a CSV/TSV/JSON(L) manifest (data.train).") public var trainData: String?
    @Option(help: "Validation data, as --train-data (data.val).") public var valData: String?
    @Option(help: "Samples per micro-batch (data.batch_size).") public var batchSize: Int?
    @Option(help: "Base learning rate (optimizer.lr).") public var lr: Double?
    @Option(help: "Passes over the training data (epochs).") public var epochs: Int?
    @Option(help: "Folder of run folders (checkpoint.directory).") public var outputDir: String?
    @Option(help: "A dual-encoder checkpoint folder to start from; replaces the recipe's model section (model={\"checkpoint\": …}).")
    public var model: String?
    @Option(help: "fp32, bf16 or fp16 (precision; fp16 needs a GPU).") public var precision: String?
    @Option(help: "Seed of initialisation, shuffling and augmentation (seed).") public var seed: Int?
    @Option(help: "auto, cpu, cuda or cuda:N (device; auto: the first GPU when there is one).") public var device: String?
    @Option(help: "Serve Prometheus metrics at http://127.0.0.1:N/metrics while training; 0: any free port (monitoring.prometheus_port).")
    public var metricsPort: Int?
    @Option(help: "The address the metrics endpoint listens on (monitoring.prometheus_host; default 127.0.0.1).") public var metricsHost: String?
    @Flag(help: "Also write the metrics as TensorBoard scalars in the run folder (logging.tensorboard).") public var tensorboard = false

    public init() {}

    /// The flags as `--set` overrides, before the explicit ones (which therefore win).
    public var allOverrides: [String] {
        func quoted(_ text: String) -> String {
            String(decoding: (try? JSONSerialization.data(withJSONObject: text, options: [.fragmentsAllowed, .withoutEscapingSlashes])) ?? Data(), as: UTF8.self)
        }
        var result: [String] = []
        if let model { result.append("model={\"checkpoint\": \(quoted(model))}") }
        if let trainData { result.append("data.train=\(quoted(trainData))") }
        if let valData { result.append("data.val=\(quoted(valData))") }
        if let batchSize { result.append("data.batch_size=\(batchSize)") }
        if let lr { result.append("optimizer.lr=\(lr)") }
        if let epochs { result.append("epochs=\(epochs)") }
        if let outputDir { result.append("checkpoint.directory=\(quoted(outputDir))") }
        if let precision { result.append("precision=\(quoted(precision))") }
        if let seed { result.append("seed=\(seed)") }
        if let device { result.append("device=\(quoted(device))") }
        if let metricsPort { result.append("monitoring.prometheus_port=\(metricsPort)") }
        if let metricsHost { result.append("monitoring.prometheus_host=\(quoted(metricsHost))") }
        if tensorboard { result.append("logging.tensorboard=true") }
        return result + overrides
    }

    /// The recipe file (`defaultRecipe` when none is given), decoded with the overrides and checked.
    public func load(defaultRecipe: String) throws -> (Recipe, resolved: Data) {
        try RunBuilder.load(recipe ?? defaultRecipe, overrides: allOverrides)
    }

    public func validate() throws {
        if resume && overwrite { throw ValidationError("--resume continues the run and --overwrite deletes it: give one of them") }
    }

    /// How the run meets its folder: `--overwrite`, `--resume`, `"resume": "latest"`, or fresh.
    public func start(_ recipe: Recipe) -> RunStart {
        overwrite ? .overwrite : resume ? .resume : recipe.resume == .latest ? .resumeIfPossible : .fresh
    }
}

/// Ends the command the way its outcome asks: an interrupted run prints how to continue and
/// exits 130 (what a shell reports for Ctrl-C).
public func finish(_ result: TrainingResult, trainer: Trainer) throws {
    if case .interrupted(let step) = result.outcome {
        if trainer.isLeader {   // across processes rank 0 says it once
            FileHandle.standardError.write(Data("interrupted: saved \(trainer.lastFolder) at step \(step); continue with --resume\n".utf8))
        }
        throw ExitCode(130)
    }
}

/// One line per summary metric of the objective: `image_to_text_R@1 0.5130`.
public func summaryLines(_ metrics: [String: Double], of objective: any TrainingObjective) -> [String] {
    objective.metrics.filter(\.summary).compactMap { metric in metrics[metric.name].map { String(format: "%@ %.4f", metric.name, $0) } }
}

/// Writes lines to standard error at once (unbuffered), so they come first in a piped log.
public func printToStandardError(_ lines: [String]) {
    FileHandle.standardError.write(Data(lines.map { $0 + "\n" }.joined().utf8))
}
