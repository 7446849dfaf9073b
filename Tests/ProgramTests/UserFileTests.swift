// The programs on files users get wrong: outputs that would destroy their inputs, damaged or
// inconsistent checkpoints, empty or unusable inputs. Each is refused with `Error: <message>`
// and exit 1 (no usage text, no signal), and nothing the user had is changed.
import Foundation
import Testing
import NN
import Torch
import TestSupport

/// A refusal: exit 1, the message on stderr, no usage text, no trap.
private func expectRefused(_ result: ProgramRun, _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(!result.signaled && !result.timedOut && result.status == 1, "expected exit 1: \(result)", sourceLocation: sourceLocation)
    #expect(result.stderr.hasPrefix("Error: ") && !result.stderr.contains("Usage:") && !result.stderr.contains("NSCocoaErrorDomain"),
            "a data error prints `Error: <message>` only: \(result)", sourceLocation: sourceLocation)
    for fragment in fragments { #expect(result.stderr.contains(fragment), "'\(fragment)' is not in the message: \(result)", sourceLocation: sourceLocation) }
}

/// Every file under `folder` with its bytes, to show that a refused command changed nothing.
private func snapshot(_ folder: String) throws -> [String: Data] {
    var files: [String: Data] = [:]
    for name in FileManager.default.subpaths(atPath: folder) ?? [] {
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: "\(folder)/\(name)", isDirectory: &isFolder), !isFolder.boolValue {
            files[name] = try Data(contentsOf: URL(fileURLWithPath: "\(folder)/\(name)"))
        }
    }
    return files
}

/// A copy of the tiny trained run's `last/` whose config.json (or weights) a test changes.
private func checkpointCopy(_ label: String, in folder: String, config change: ((inout [String: Any]) -> Void)? = nil) throws -> String {
    let copy = "\(folder)/\(label)"
    try FileManager.default.copyItem(atPath: try Trained.tiny.get().last, toPath: copy)
    if let change {
        var config = try readObject("\(copy)/config.json")
        change(&config)
        try writeJSON(config, to: "\(copy)/config.json")
    }
    return copy
}

private func setting(_ section: String, _ key: String, _ value: Any) -> (inout [String: Any]) -> Void {
    { config in
        var tower = config[section] as? [String: Any] ?? [:]
        tower[key] = value
        config[section] = tower
    }
}

@Suite("Programs on files users get wrong", .serialized)
struct UserFileTests {
    /// 7 `export --out` values that would have deleted or written into the checkpoint or
    /// another folder — the run folder with --overwrite (it held the checkpoint), the checkpoint
    /// itself by `..` and by a symlink, a folder inside it, a foreign folder with --overwrite, a
    /// file, a path through a file — are refused and change nothing; an earlier export is
    /// replaced with --overwrite.
    @Test func exportNeverReplacesWhatIsNotAnExport() throws {
        let folder = temporaryFolder()
        let runFolder = "\(folder)/run"
        try FileManager.default.createDirectory(atPath: runFolder, withIntermediateDirectories: true)
        let checkpoint = try checkpointCopy("last", in: runFolder)
        try FileManager.default.createSymbolicLink(atPath: "\(folder)/alias", withDestinationPath: checkpoint)
        try FileManager.default.createDirectory(atPath: "\(folder)/thesis", withIntermediateDirectories: true)
        try Data("chapter 1".utf8).write(to: URL(fileURLWithPath: "\(folder)/thesis/draft.tex"))
        try Data("notes".utf8).write(to: URL(fileURLWithPath: "\(folder)/notes.txt"))
        let before = try snapshot(folder)
        for (out, overwrite, says) in [
            (runFolder, true, "--out \(runFolder) contains the checkpoint being exported"),
            ("\(runFolder)/last/../last", true, "is the checkpoint being exported"),
            ("\(folder)/alias", true, "is the checkpoint being exported"),
            ("\(checkpoint)/onnx", false, "lies inside the checkpoint being exported"),
            ("\(folder)/thesis", true, "already exists and is not an earlier export (a folder with export.json); --overwrite replaces only"),
            ("\(folder)/notes.txt", true, "is a file, not a folder"),
            ("\(folder)/notes.txt/onnx", false, "\(folder)/notes.txt is a file, not a folder"),
        ] {
            expectRefused(try run("export", ["--checkpoint", checkpoint, "--out", out] + (overwrite ? ["--overwrite"] : [])), [says])
        }
        #expect(try snapshot(folder) == before, "a refused export changed files")
        let out = "\(folder)/onnx"
        try #require(try run("export", ["--checkpoint", checkpoint, "--out", out]).succeeded)
        let replaced = try run("export", ["--checkpoint", checkpoint, "--out", out, "--overwrite", "--precision", "fp16"])
        try #require(replaced.succeeded, "\(replaced)")
        #expect(try readObject("\(out)/export.json")["precision"] as? String == "fp16")
    }

    /// `embed`: 9 refusals — an output that is a checkpoint file, a new file inside the
    /// checkpoint, an input image, the texts file, a folder, a path through a file, a foreign
    /// file; texts files holding `[]` or an empty string, `--texts` with an empty text; a model
    /// that computes NaN — each writes nothing and changes nothing.
    @Test func embedRefusesOutputsOverItsInputsAndUnusableInputs() throws {
        let folder = temporaryFolder()
        let checkpoint = try checkpointCopy("last", in: folder)
        let image = "\(folder)/photo.jpg"
        try FileManager.default.copyItem(atPath: try Fixtures.images[0].path, toPath: image)
        try writeJSON(["a red circle"], to: "\(folder)/texts.json")
        try writeJSON([String](), to: "\(folder)/none.json")
        try writeJSON(["a red circle", " "], to: "\(folder)/blank.json")
        try Data("keep".utf8).write(to: URL(fileURLWithPath: "\(folder)/results.csv"))
        let before = try snapshot(folder)
        let base = ["--checkpoint", checkpoint]
        for (arguments, says) in [
            (["--texts", "a", "--out", "\(checkpoint)/config.json"], "lies inside the checkpoint folder"),
            (["--texts", "a", "--out", "\(checkpoint)/embeddings.json"], "lies inside the checkpoint folder"),
            (["--images", image, "--out", image], "--out \(image) is an input image"),
            (["--texts-file", "\(folder)/texts.json", "--out", "\(folder)/texts.json"], "is the texts file"),
            (["--texts", "a", "--out", folder], "is a folder; give a file path"),
            (["--texts", "a", "--out", "\(folder)/results.csv/x.json"], "\(folder)/results.csv is a file, not a folder"),
            (["--texts", "a", "--out", "\(folder)/results.csv"], "already exists and is not an earlier embed output"),
            (["--texts-file", "\(folder)/none.json", "--out", "\(folder)/e.json"], "none.json: holds no texts ([]); give at least one"),
            (["--texts-file", "\(folder)/blank.json", "--out", "\(folder)/e.json"], "blank.json: item 2 of 2 is empty"),
            (["--texts", "a cat", "", "--out", "\(folder)/e.json"], "--texts: text 2 of 2 is empty"),
        ] {
            expectRefused(try run("embed", base + arguments), [says])
        }
        #expect(try snapshot(folder) == before, "a refused embed changed files")

        // NaN weights: an error naming the first input whose embedding is not finite, no output.
        let broken = try checkpointCopy("nan", in: folder)
        var weights = try SafeTensors.load("\(broken)/model.safetensors")
        weights["text_projection.weight"] = weights["text_projection.weight"]! * Double.nan
        try SafeTensors.save(weights, to: "\(broken)/model.safetensors")
        expectRefused(try run("embed", ["--checkpoint", broken, "--texts", "a red circle", "--out", "\(folder)/nan.json"]),
                      ["the model produced NaN for text 1 (\"a red circle\")"])
        #expect(!exists("\(folder)/nan.json"))
        // An earlier embed output is replaced.
        for _ in 0..<2 { try #require(try run("embed", base + ["--texts", "a", "--out", "\(folder)/e.json"]).succeeded) }
    }

    /// 8 checkpoints that passed for valid before and trapped or embedded every text alike:
    /// eos_token_id past the vocabulary, an eos_token_id that is not the tokenizer's end token,
    /// one position, a negative channel count, a zero projection, a 12.8 PB vocabulary, a
    /// preprocessor crop that is not the model's image size, a one-value image_mean. `embed`,
    /// `eval` and `export` each report the file and key (exit 1).
    @Test func inconsistentCheckpointsAreErrorsInEveryProgram() throws {
        let folder = temporaryFolder()
        let images = try Fixtures.images.prefix(2).map(\.path)
        let cases: [(String, ((inout [String: Any]) -> Void)?, [String: Any]?, [String])] = [
            ("eos-outside", setting("text_config", "eos_token_id", 49408), nil, ["config.json, key 'text_config.eos_token_id': is 49408, outside the vocabulary"]),
            ("eos-word", setting("text_config", "eos_token_id", 320), nil, ["key 'text_config.eos_token_id'", "same embedding"]),
            ("one-position", setting("text_config", "max_position_embeddings", 1), nil, ["key 'text_config.max_position_embeddings'"]),
            ("channels", setting("vision_config", "num_channels", -3), nil, ["key 'vision_config.num_channels': must be 3, found -3"]),
            ("projection", { $0["projection_dim"] = 0 }, nil, ["key 'projection_dim': must be at least 1, found 0"]),
            ("petabytes", setting("text_config", "vocab_size", 100_000_000_000_000), nil, ["key 'text_config.vocab_size'", "above the limit of 20 billion"]),
            ("crop", nil, ["crop_size": 48], ["preprocessor_config.json, key 'crop_size': is 48 but the vision tower takes 32 × 32"]),
            ("mean", nil, ["crop_size": 32, "image_mean": [0.5]], ["preprocessor_config.json, key 'image_mean': needs 3 values (R, G, B), found 1"]),
        ]
        for (label, change, preprocessor, says) in cases {
            let checkpoint = try checkpointCopy(label, in: folder, config: change)
            if let preprocessor { try writeJSON(preprocessor, to: "\(checkpoint)/preprocessor_config.json") }
            expectRefused(try run("embed", ["--checkpoint", checkpoint, "--images"] + images + ["--texts", "a red circle", "--out", "\(folder)/\(label).json"]), says)
            expectRefused(try run("eval", ["--checkpoint", checkpoint, "--data", try Fixtures.valShards]), says)
            expectRefused(try run("export", ["--checkpoint", checkpoint, "--out", "\(folder)/\(label)-onnx"]), says)
            #expect(!exists("\(folder)/\(label).json") && !exists("\(folder)/\(label)-onnx"))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder).allSatisfy { !$0.contains("partial") })
    }

    /// `pack` and `make-dataset` write into folders that may hold other files: their own earlier
    /// shards are replaced only with --overwrite (a stale extra shard goes with them), other files
    /// are never touched; 5 refusals — earlier shards without the flag (both programs), a file as
    /// --out, a file that looks like theirs but is not, a --prefix with a path in it.
    @Test func packAndMakeDatasetReplaceOnlyTheirOwnFiles() throws {
        let folder = temporaryFolder()
        let images = try Fixtures.images
        var rows = ["image_path,caption"]
        for image in images.prefix(4) { rows.append("\(image.path),\"\(image.caption)\"") }
        try rows.joined(separator: "\n").write(toFile: "\(folder)/pairs.csv", atomically: true, encoding: .utf8)
        let out = "\(folder)/shards"
        try #require(try run("pack", ["--manifest", "\(folder)/pairs.csv", "--out", out, "--shard-size", "1"]).succeeded)   // 4 shards
        try Data("hand-written".utf8).write(to: URL(fileURLWithPath: "\(out)/README.md"))
        let before = try snapshot(out)
        expectRefused(try run("pack", ["--manifest", "\(folder)/pairs.csv", "--out", out, "--shard-size", "2"]),
                      ["--out \(out) already holds 4 files of shards named shard-NNNN.tar.zst (shard-0000.tar.zst, shard-0001.tar.zst, shard-0002.tar.zst, …); pass --overwrite"])
        expectRefused(try run("pack", ["--manifest", "\(folder)/pairs.csv", "--out", "\(folder)/pairs.csv"]), ["is a file, not a folder"])
        #expect(try snapshot(out) == before)
        let again = try run("pack", ["--manifest", "\(folder)/pairs.csv", "--out", out, "--shard-size", "2", "--overwrite"])
        try #require(again.succeeded, "\(again)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: out).sorted() == ["README.md", "shard-0000.tar.zst", "shard-0001.tar.zst"])
        // Other prefixes live side by side; a file named like a shard that is not one is refused.
        try #require(try run("pack", ["--manifest", "\(folder)/pairs.csv", "--out", out, "--prefix", "val"]).succeeded)
        try Data("not zstd".utf8).write(to: URL(fileURLWithPath: "\(out)/val-0001.tar.zst"))
        expectRefused(try run("pack", ["--manifest", "\(folder)/pairs.csv", "--out", out, "--prefix", "val", "--overwrite"]),
                      ["holds val-0001.tar.zst, which this command would overwrite but which is not shards named val-NNNN.tar.zst"])
        let prefix = try run("pack", ["--manifest", "\(folder)/pairs.csv", "--out", out, "--prefix", "../escape"])
        #expect(prefix.status == 64 && prefix.stderr.contains("--prefix must be a plain file name"), "\(prefix)")

        let shapes = "\(folder)/shapes"
        let small = ["--out", shapes, "--train", "2", "--val", "1", "--shard-size", "1", "--image-size", "32"]
        try #require(try run("make-dataset", small).succeeded)
        try Data("by hand".utf8).write(to: URL(fileURLWithPath: "\(shapes)/README.md"))
        expectRefused(try run("make-dataset", small), ["already holds 4 files of a shapes dataset (train-/val- shards, classes.json)", "pass --overwrite"])
        try #require(try run("make-dataset", small.map { $0 == "2" ? "1" : $0 } + ["--overwrite"]).succeeded)
        #expect(try FileManager.default.contentsOfDirectory(atPath: shapes).sorted() == ["README.md", "classes.json", "train-0000.tar.zst", "val-0000.tar.zst"])
    }
}
