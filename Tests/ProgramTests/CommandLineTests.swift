import Foundation
import Testing
import TestSupport
import Torch

/// What people type: open_clip's familiar flags, recipes run from another folder, `--version`,
/// and the settings a run prints before its first step.
@Suite("Command lines", .serialized)
struct CommandLineTests {
    /// `--train-data`, `--val-data`, `--batch-size`, `--lr`, `--epochs`, `--output-dir`,
    /// `--precision` and `--seed` land in the resolved recipe; relative values resolve against the
    /// working directory, the recipe's own relative paths against its folder; the settings come
    /// first on stderr.
    @Test func familiarFlagsAndPathsFromAnywhere() throws {
        let folder = temporaryFolder()
        let recipes = "\(folder)/recipes", work = "\(folder)/work"
        try FileManager.default.createDirectory(atPath: recipes, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: "\(work)/data", withIntermediateDirectories: true)
        // The recipe names its classes file relative to itself; the data comes from flags, relative to `work`.
        try FileManager.default.copyItem(atPath: Fixtures.classes, toPath: "\(recipes)/classes.json")
        let shards = try Fixtures.shards
        for file in ["train-0000.tar.zst", "train-0001.tar.zst", "val-0000.tar.zst"] {
            try FileManager.default.copyItem(atPath: "\(shards)/\(file)", toPath: "\(work)/data/\(file)")
        }
        var recipe = try tinyRecipe(name: "flags", directory: "unused", steps: 4)
        recipe["data"] = ["batch_size": 64, "threads": 2] as [String: Any]   // data only from the flags
        recipe["eval"] = ["every_steps": 4, "every_epoch": false, "zeroshot": ["classes": "classes.json"]] as [String: Any]
        recipe["max_steps"] = nil
        let path = try writeRecipe(recipe, in: recipes, file: "flags")

        let result = try run("train", ["--recipe", path, "--train-data", "data/train-{0000..0001}.tar.zst", "--val-data", "data/val-0000.tar.zst",
                                       "--batch-size", "16", "--lr", "0.003", "--epochs", "1", "--output-dir", "runs", "--seed", "7",
                                       "--precision", "fp32"], in: work)
        try #require(result.succeeded, "\(result)")
        let resolved = try readObject("\(work)/runs/flags/recipe.json")
        let data = try #require(resolved["data"] as? [String: Any])
        #expect((data["train"] as? [String: Any])?["shards"] as? String == "\(work)/data/train-{0000..0001}.tar.zst")
        #expect((data["val"] as? [String: Any])?["shards"] as? String == "\(work)/data/val-0000.tar.zst")
        #expect(data["batch_size"] as? Int == 16)
        #expect((resolved["optimizer"] as? [String: Any])?["lr"] as? Double == 0.003)
        #expect(resolved["epochs"] as? Int == 1 && resolved["seed"] as? Int == 7)
        #expect(((resolved["eval"] as? [String: Any])?["zeroshot"] as? [String: Any])?["classes"] as? String == "\(recipes)/classes.json")
        #expect(try savedStep("\(work)/runs/flags/last") == 6)   // one epoch of 96 samples at 16
        // The resolved settings come first on stderr, before any progress line.
        let first = result.stderr.split(separator: "\n").prefix(3).map(String.init)
        #expect(first.first == "run flags → runs/flags", "\(result)")
        #expect(first.dropFirst().first == "training 6 steps (6 per epoch × 1 epoch)", "\(result)")
    }

    /// A data path with the wrong kind of file, or a flag that does not parse, is refused before training.
    @Test func badFlagValuesAreRefused() throws {
        let folder = temporaryFolder()
        let path = try writeRecipe(try tinyRecipe(name: "bad", directory: "\(folder)/runs", steps: 2), in: folder, file: "bad")
        let missing = try run("train", ["--recipe", path, "--train-data", "nowhere.csv"], in: folder)
        #expect(!missing.succeeded && missing.stderr.contains("data.train.manifest") && missing.stderr.contains("nowhere.csv"), "\(missing)")
        let precision = try run("train", ["--recipe", path, "--precision", "fp8"], in: folder)
        #expect(!precision.succeeded && precision.stderr.contains("precision") && precision.stderr.contains("\"fp32\", \"bf16\""), "\(precision)")
    }

    /// `--device`: a misspelling is an argument error (exit 64, with the usage); a device the
    /// machine lacks is an error naming the fix (exit 1), in `train`, `eval` and `embed`.
    @Test func devicesThisMachineLacksAreRefused() throws {
        let folder = temporaryFolder()
        let path = try writeRecipe(try tinyRecipe(name: "dev", directory: "\(folder)/runs", steps: 2), in: folder, file: "dev")
        let checkpoint = try Trained.tiny.get().last
        let spelled = try run("eval", ["--checkpoint", checkpoint, "--data", try Fixtures.valShards, "--device", "gpu"])
        #expect(spelled.status == 64 && spelled.stderr.contains("--device must be auto, cpu, cuda or cuda:N"), "\(spelled)")
        let recipe = try run("train", ["--recipe", path, "--device", "gpu"], in: folder)
        #expect(recipe.status != 0 && recipe.stderr.contains("device") && recipe.stderr.contains("cuda:N"), "\(recipe)")
        guard !Torch.isCUDAAvailable else { return }
        let train = try run("train", ["--recipe", path, "--device", "cuda"], in: folder)
        #expect(train.status == 1 && train.stderr.contains("Scripts/bootstrap --cuda") && !exists("\(folder)/runs/dev"), "\(train)")
        let embed = try run("embed", ["--checkpoint", checkpoint, "--texts", "a red circle", "--out", "\(folder)/e.json", "--device", "cuda:1"])
        #expect(embed.status == 1 && embed.stderr.contains("Scripts/bootstrap --cuda") && !embed.stderr.contains("Usage:"), "\(embed)")
        let fp16 = try run("train", ["--recipe", path, "--precision", "fp16"], in: folder)
        #expect(fp16.status == 1 && fp16.stderr.contains("fp16 needs a CUDA device"), "\(fp16)")
    }

    /// Every program answers `--version` with the framework's and libtorch's versions.
    @Test(arguments: Programs.names + ["doctor"])
    func everyProgramHasAVersion(name: String) throws {
        let result = try run(name, ["--version"])
        #expect(result.succeeded, "\(result)")
        #expect(result.stdout.hasPrefix("cliptune ") && result.stdout.contains("(libtorch "), "\(result)")
    }

    /// `doctor --steps 10` says the fit needs more steps, not that the installation is broken.
    @Test func doctorExplainsTooFewSteps() throws {
        let result = try run("doctor", ["--steps", "10"])
        #expect(!result.succeeded)
        #expect(result.stderr.contains("too few") && result.stderr.contains("at least 300") && !result.stderr.contains("broken"), "\(result)")
    }
}
