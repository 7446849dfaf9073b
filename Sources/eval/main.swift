import ArgumentParser
import Datasets
import Foundation
import Models
import Torch
import Training

/// Evaluation alone: retrieval (and zero-shot) metrics of one checkpoint, or an A/B table of two
/// with bootstrap intervals of the differences.
@main
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate checkpoints on image-text data; JSON to stdout.",
        discussion: "With two checkpoints, an A/B table goes to stderr: each metric's direction, B − A and its 95% interval from a paired bootstrap of the validation pairs.",
        version: ClipTune.versionLine)

    @Option(help: "Checkpoint folder (give two for an A/B comparison).") var checkpoint: [String]
    @Option(help: "Data: a shard pattern (train-{0000..0003}.tar.zst) or a CSV/TSV/JSONL manifest.") var data: String
    @Option(help: "Zero-shot classes file ({\"classes\": [...], \"templates\": [...]}); every sample then needs a class label.") var classes: String?
    @Option(help: "A manifest's image column (JSONL: field). Default: image_path.") var imageColumn: String?
    @Option(help: "A manifest's caption column (JSONL: field). Default: caption.") var captionColumn: String?
    @Option(help: "A manifest's column (JSONL: field) of class names, for --classes. Shards carry them in .cls/.label members or \"label\" in .json.")
    var labelColumn: String?
    @Option(help: "Samples per batch.") var batchSize = 128
    @Option(help: "Decode threads.") var threads = 2
    @Option(help: "A/B: bootstrap resamples of the validation pairs.") var resamples = 1_000
    @Option(help: "A/B: seed of the bootstrap resampling.") var seed: UInt64 = 0
    @Option(help: "auto, cpu, cuda or cuda:N (auto: the first GPU when there is one).") var device = "auto"
    @Option(help: "For LoRA adapter checkpoints: their base model's folder, instead of the one adapter_config.json names (base_model_name_or_path).") var base: String?

    func validate() throws {
        guard (1...2).contains(checkpoint.count) else { throw ValidationError("give one --checkpoint, or two to compare") }
        guard batchSize > 0, threads > 0 else { throw ValidationError("--batch-size and --threads must be positive") }
        guard resamples > 0 else { throw ValidationError("--resamples must be positive") }
        guard Device.isWellFormed(device) else { throw ValidationError("--device must be auto, cpu, cuda or cuda:N, found \"\(device)\"") }
        let columns = [("--image-column", imageColumn), ("--caption-column", captionColumn), ("--label-column", labelColumn)]
        if !DatasetSource.isManifest(data), let (flag, _) = columns.first(where: { $0.1 != nil }) {
            throw ValidationError("\(flag) names a manifest column, and --data \(data) is a shard pattern (manifests end in \(DatasetSource.manifestSuffixes.joined(separator: ", "))); shards name their members by extension (.jpg, .txt or .json, .cls)")
        }
        if labelColumn != nil, classes == nil { throw ValidationError("--label-column is read for zero-shot evaluation; give --classes too") }
        if base != nil, !checkpoint.contains(where: PeftAdapter.isAdapterFolder) {
            throw ValidationError("--base is for LoRA adapter checkpoints (with adapter_config.json); no --checkpoint is one")
        }
    }

    func run() throws {
        let device = try Device.parse(self.device).validated()
        let source = try DatasetSource.open(data, imageColumn: imageColumn ?? "image_path", captionColumn: captionColumn ?? "caption",
                                            labelColumn: labelColumn)
        let zeroShot = try classes.map(ZeroShotClasses.load)
        // Before any model loads: zero-shot accuracy must have labelled samples to score.
        try zeroShot?.checkLabels(in: source, name: data, labelSetting: "--label-column")
        var results: [EvaluationSamples] = []
        for path in checkpoint {
            let loaded = try Pretrained.load(path, base: base)
            guard case .dualEncoder(let model) = loaded.model else { throw EvaluationError("\(path) is a text-only model; eval needs image and text towers") }
            model.to(device)
            let pipeline = ImagePipeline(preprocessing: loaded.preprocessing ?? ImagePreprocessing())
            let loader = DataLoader(source: source, pipeline: pipeline, options: DataLoaderOptions(batchSize: batchSize, threads: threads, shuffle: false))
            let tokenizer = try loaded.tokenizer()
            // Pretrained.load ran each tower once on a test input; the whole pass runs inside
            // withTorchErrors too, so a libtorch failure on the data is an error, not a trap.
            do {
                results.append(try withTorchErrors { try Evaluation.evaluateSamples(model, loader: loader, tokenizer: tokenizer, zeroShot: zeroShot) })
            } catch let error as TorchError {
                throw EvaluationError("\(path): the model failed on the data: \(error)")
            }
        }
        if let ranks = results[0].zeroShotRanks, ranks.contains(nil) {
            let scored = ranks.filter { $0 != nil }.count
            warn("zero-shot accuracy is over \(scored) of the \(counted(ranks.count, "sample")): \(ranks.count - scored) have no label that is a class")
        }
        var output: [String: Any]
        if results.count == 1 {
            output = ["checkpoint": checkpoint[0], "metrics": results[0].metrics()]
        } else {
            let comparison = try ABComparison(a: results[0], b: results[1], options: BootstrapOptions(resamples: resamples, seed: seed))
            output = ["a": ["checkpoint": checkpoint[0], "metrics": comparison.metricsA], "b": ["checkpoint": checkpoint[1], "metrics": comparison.metricsB]]
            output.merge(comparison.json) { current, _ in current }
            FileHandle.standardError.write(Data(("A: \(checkpoint[0])\nB: \(checkpoint[1])\n" + comparison.table).utf8))
        }
        let json = try JSONSerialization.data(withJSONObject: output, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        print(String(decoding: json, as: UTF8.self))
    }

    private func warn(_ message: String) {
        FileHandle.standardError.write(Data("note: \(message)\n".utf8))
    }
}
