import ArgumentParser
import Foundation
import Tokenizers

/// Strings per second of one tokenizer over a caption file (one JSON line); the Python side
/// (`Benchmarks/model_reference.py tokenize`) runs transformers' fast (Rust) tokenizer on the same file.
struct TokenizerThroughput: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tokenize",
        abstract: "Tokenizer throughput on a JSONL caption file: CLIP BPE (vocab.json + merges.txt) or WordPiece (vocab.txt).")

    @Option(help: "Folder with the tokenizer files.") var folder: String
    @Option(help: "clip or wordpiece.") var kind: String
    @Option(help: "JSON lines with a \"caption\" field.") var strings = "Data/sentences/val.jsonl"
    @Option(help: "Untimed passes first.") var warmup = 1
    @Option(help: "Timed passes.") var repetitions = 5

    func validate() throws {
        guard ["clip", "wordpiece"].contains(kind) else { throw ValidationError("--kind must be clip or wordpiece, not \(kind)") }
    }

    func run() throws {
        let captions = try String(contentsOfFile: strings, encoding: .utf8).split(separator: "\n").map { line -> String in
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            guard let caption = object?["caption"] as? String else { throw ValidationError("\(strings): a line without \"caption\"") }
            return caption
        }
        let folder = URL(fileURLWithPath: self.folder)
        let tokenizer: any TextTokenizer = kind == "clip" ? try CLIPTokenizer.fromDirectory(folder) : try WordPieceTokenizer.fromDirectory(folder)
        let seconds = timed(warmup: warmup, repetitions: repetitions) { _ = tokenizer.encode(batch: captions) }
        let median = median(seconds)
        emit(["median_s": median, "strings_per_s": Double(captions.count) / median, "strings": captions.count, "kind": kind])
    }
}
