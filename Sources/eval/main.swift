import ArgumentParser
import Datasets
import Foundation
import Models
import Training

/// Evaluation alone: retrieval (and zero-shot) metrics of one checkpoint, or an A/B table of two.
@main
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Evaluate checkpoints on image-text data; JSON to stdout.")

    @Option(help: "Checkpoint folder (give two for an A/B comparison).") var checkpoint: [String]
    @Option(help: "Data: a shard pattern (train-{0000..0003}.tar.zst) or a CSV/TSV/JSONL manifest.") var data: String
    @Option(help: "Zero-shot classes file ({\"classes\": [...], \"templates\": [...]}).") var classes: String?
    @Option(help: "Samples per batch.") var batchSize = 128
    @Option(help: "Decode threads.") var threads = 2

    func validate() throws {
        guard (1...2).contains(checkpoint.count) else { throw ValidationError("give one --checkpoint, or two to compare") }
        guard batchSize > 0, threads > 0 else { throw ValidationError("--batch-size and --threads must be positive") }
    }

    func run() throws {
        let source = try DatasetSource.open(data)
        let zeroShot = try classes.map(ZeroShotClasses.load)
        var results: [[String: Double]] = []
        for path in checkpoint {
            let loaded = try Pretrained.load(path)
            guard case .dualEncoder(let model) = loaded.model else { throw ValidationError("\(path) is a text-only model; eval needs image and text towers") }
            let pipeline = ImagePipeline(preprocessing: loaded.preprocessing ?? ImagePreprocessing())
            let loader = DataLoader(source: source, pipeline: pipeline, options: DataLoaderOptions(batchSize: batchSize, threads: threads, shuffle: false))
            results.append(try Evaluation.evaluate(model, loader: loader, tokenizer: try loaded.tokenizer(), zeroShot: zeroShot))
        }
        var output: [String: Any] = checkpoint.count == 1 ? ["checkpoint": checkpoint[0], "metrics": results[0]]
            : ["a": ["checkpoint": checkpoint[0], "metrics": results[0]], "b": ["checkpoint": checkpoint[1], "metrics": results[1]]]
        if results.count == 2 {
            let keys = Set(results[0].keys).intersection(results[1].keys).sorted()
            output["difference_b_minus_a"] = Dictionary(uniqueKeysWithValues: keys.map { ($0, results[1][$0]! - results[0][$0]!) })
            func column(_ s: String, _ width: Int) -> String { s.padding(toLength: Swift.max(width, s.count), withPad: " ", startingAt: 0) }
            var table = column("metric", 28) + "         A          B      B - A\n"
            for key in keys {
                table += column(key, 28) + String(format: "%10.4f %10.4f %+10.4f\n", results[0][key]!, results[1][key]!, results[1][key]! - results[0][key]!)
            }
            FileHandle.standardError.write(Data(table.utf8))
        }
        let json = try JSONSerialization.data(withJSONObject: output, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        print(String(decoding: json, as: UTF8.self))
    }
}
