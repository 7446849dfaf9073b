// The built programs, end to end, each in a child process: exit codes, printed lines and the
// files they write. Tiny models and data (a few seconds a run in a debug build).
import Foundation
import Testing
import Datasets
import Models
import NN
import Tokenizers
import Torch
import Training
import TestSupport

/// Serialized: each test starts programs that use both cores; running them side by side only
/// makes every time limit tighter.
@Suite("Programs", .serialized)
struct ProgramTests {
    // MARK: train

    @Test func trainWritesARunFolderAndPrintsItsMetrics() throws {
        let tiny = try Trained.tiny.get()
        let run = tiny.run, folder = tiny.folder
        #expect(run.succeeded, "\(run)")
        // What it prints: the run line, the model size, the final metrics, the checkpoints.
        #expect(run.lines.contains("run tiny: 8 steps (6 per epoch) → \(folder)"), "\(run)")
        #expect(run.lines.contains { capture(#"^model: (\d+\.\d\d)M parameters, (\d+\.\d\d)M trainable$"#, in: $0) != nil }, "\(run)")
        var printed: [String: Double] = [:]
        for line in run.lines {
            if let m = capture(#"^([A-Za-z_@0-9]+) (-?\d+\.\d{4})$"#, in: line) { printed[m[0]] = Double(m[1]) }
        }
        #expect(Set(printed.keys) == ["image_to_text_R@1", "text_to_image_R@1", "image_to_text_R@5", "text_to_image_R@5", "zeroshot_top1", "clip_val_loss"],
                "\(run)")
        let best = try #require(run.lines.compactMap { capture(#"^best checkpoint: (.*) \(step (\d+)\)$"#, in: $0) }.first, "\(run)")
        #expect(best[0] == "\(folder)/best")
        #expect(run.lines.contains("last checkpoint: \(folder)/last") && run.lines.contains("curves: \(folder)/curves.svg"), "\(run)")
        // Progress goes to stderr as plain lines when it is not a terminal.
        for step in [2, 4, 6, 8] { #expect(run.stderr.contains("step \(step)/8 ("), "no progress line for step \(step)\n\(run)") }
        #expect(run.stderr.contains("evaluating at step 4"))

        // The run folder.
        for file in ["metrics.jsonl", "curves.svg", "recipe.json",
                     "last/model.safetensors", "last/config.json", "last/trainer_state.json", "last/optimizer.safetensors",
                     "last/preprocessor_config.json", "last/vocab.json", "last/merges.txt",
                     "best/model.safetensors", "best/config.json", "best/trainer_state.json"] {
            #expect(exists("\(folder)/\(file)"), "\(file) is missing from the run folder")
        }
        let svg = try String(contentsOfFile: "\(folder)/curves.svg", encoding: .utf8)
        #expect(svg.contains("<svg") && svg.contains("</svg>"))
        let recipe = try readObject("\(folder)/recipe.json")   // the resolved recipe: every default written out
        #expect(recipe["name"] as? String == "tiny" && recipe["max_steps"] as? Int == 8)
        #expect((recipe["optimizer"] as? [String: Any])?["betas"] != nil)
        #expect(try savedStep("\(folder)/last") == 8)
        #expect(try savedStep("\(folder)/best") == Int(best[1]))
        let config = try readObject("\(folder)/last/config.json")
        #expect(config["model_type"] as? String == "vision-text-dual-encoder")

        // metrics.jsonl: a train record every 2 steps, an evaluation every 4; the printed
        // metrics are the last evaluation's.
        let lines = try metricsLines(folder)
        #expect(lines.filter { $0.kind == "train" }.map(\.step) == [2, 4, 6, 8])
        #expect(lines.filter { $0.kind == "eval" }.map(\.step) == [4, 8])
        let train = lines.filter { $0.kind == "train" }
        #expect(train.allSatisfy { ["loss", "lr", "samples_per_second", "logit_scale"].allSatisfy($0.values.keys.contains) }, "\(train.map(\.values))")
        let lastEval = try #require(lines.last { $0.kind == "eval" })
        for (key, value) in printed {
            #expect(abs((lastEval.values[key] ?? .nan) - value) <= 5.1e-5, "\(key): printed \(value), metrics.jsonl \(lastEval.values[key] ?? .nan)")
        }
        #expect([4, 8].contains(Int(best[1]) ?? 0), "the best checkpoint must come from an evaluation step")
        // The checkpoint is one the framework loads.
        guard case .dualEncoder = try Pretrained.load("\(folder)/last").model else { Issue.record("last/ is not a dual encoder"); return }
    }

    /// `train --resume` with more steps (`--set max_steps`), and `"resume": "latest"` in the
    /// recipe, both end bit-identical to an uninterrupted run of the same total.
    @Test func resumedRunsEndBitIdenticalToAnUninterruptedOne() throws {
        let folder = temporaryFolder()
        // A constant schedule: the learning rate of a step must not depend on the run's length,
        // since the first half runs with max_steps 4.
        func recipe(_ directory: String, steps: Int, resumeLatest: Bool = false) throws -> String {
            var r = try tinyRecipe(name: "resume", directory: "\(folder)/\(directory)", steps: steps)
            r["schedule"] = ["type": "constant", "warmup_steps": 2] as [String: Any]
            if resumeLatest { r["resume"] = "latest" }
            return try writeRecipe(r, in: folder, file: directory)
        }
        let whole = try run("train", ["--recipe", try recipe("whole", steps: 8)])
        try #require(whole.succeeded, "\(whole)")

        // --resume, continued from 4 to 8 steps with --set.
        let split = try recipe("split", steps: 4)
        let first = try run("train", ["--recipe", split])
        try #require(first.succeeded, "\(first)")
        #expect(try savedStep("\(folder)/split/resume/last") == 4)
        let second = try run("train", ["--recipe", split, "--resume", "--set", "max_steps=8"])
        try #require(second.succeeded, "\(second)")
        #expect(second.stderr.contains("resumed at step 4 (epoch 0, sample 64)"), "\(second)")
        #expect(!second.stderr.contains("step 4/8") && second.stderr.contains("step 6/8"), "the resumed run must not redo steps 1–4\n\(second)")
        #expect(second.lines.contains("run resume: 8 steps (6 per epoch) → \(folder)/split/resume"), "\(second)")

        // "resume": "latest": the first run starts afresh (nothing to resume), the second resumes.
        let latest = try recipe("latest", steps: 4, resumeLatest: true)
        let fresh = try run("train", ["--recipe", latest])
        try #require(fresh.succeeded, "\(fresh)")
        #expect(!fresh.stderr.contains("resumed at step"), "\(fresh)")
        let continued = try run("train", ["--recipe", latest, "--set", "max_steps=8"])
        try #require(continued.succeeded, "\(continued)")
        #expect(continued.stderr.contains("resumed at step 4"), "\(continued)")
        #expect(!continued.stderr.contains("step 4/8") && continued.stderr.contains("step 6/8"), "\(continued)")

        let reference = try metricsLines("\(folder)/whole/resume")
        for name in ["split", "latest"] {
            let runFolder = "\(folder)/\(name)/resume"
            #expect(try savedStep("\(runFolder)/last") == 8, "\(name)")
            try expectIdenticalTensors("\(runFolder)/last/model.safetensors", "\(folder)/whole/resume/last/model.safetensors")
            try expectIdenticalTensors("\(runFolder)/last/optimizer.safetensors", "\(folder)/whole/resume/last/optimizer.safetensors")
            // metrics.jsonl continues where the checkpoint was: no step twice, the same losses.
            let lines = try metricsLines(runFolder)
            #expect(lines.filter { $0.kind == "train" }.map(\.step) == [2, 4, 6, 8], "\(name)")
            #expect(lines.filter { $0.kind == "eval" }.map(\.step) == [4, 8], "\(name)")
            for (a, b) in zip(lines.filter { $0.kind == "train" }, reference.filter { $0.kind == "train" }) {
                #expect(a.values["loss"] == b.values["loss"] && a.values["lr"] == b.values["lr"], "\(name) step \(a.step): \(a.values) vs \(b.values)")
            }
        }
    }

    // MARK: eval

    @Test func evalPrintsMetricsAndAnABTable() throws {
        let a = try Trained.early.get(), b = try Trained.tiny.get()
        let data = try Fixtures.valShards
        // --batch-size 16: the batches the trainer evaluated with, so the numbers must agree.
        let common = ["--data", data, "--classes", Fixtures.classes, "--batch-size", "16"]
        func single(_ checkpoint: String) throws -> [String: Double] {
            let result = try run("eval", ["--checkpoint", checkpoint] + common)
            try #require(result.succeeded, "\(result)")
            let object = try parseObject(result.stdout, what: "eval's output")
            #expect(object["checkpoint"] as? String == checkpoint)
            let metrics = numbers(object["metrics"])
            #expect(Set(metrics.keys).isSuperset(of: ["image_to_text_R@1", "text_to_image_R@1", "image_to_text_R@5", "text_to_image_R@5",
                                                      "clip_val_loss", "val_samples", "zeroshot_top1", "zeroshot_top5"]), "\(metrics)")
            #expect(metrics["val_samples"] == 32)
            #expect(metrics.values.allSatisfy { $0.isFinite })
            for (key, value) in metrics where key.contains("R@") || key.hasPrefix("zeroshot") { #expect((0...1).contains(value), "\(key) \(value)") }
            return metrics
        }
        let metricsA = try single(a.last), metricsB = try single(b.last)
        // The same model on the same data as the trainer's last evaluation (step 8).
        let trainerEval = try #require(try metricsLines(b.folder).last { $0.kind == "eval" && $0.step == 8 })
        for (key, value) in metricsB {
            #expect(abs((trainerEval.values[key] ?? .nan) - value) <= 1e-6, "\(key): eval \(value), trainer \(trainerEval.values[key] ?? .nan)")
        }

        let ab = try run("eval", ["--checkpoint", a.last, "--checkpoint", b.last] + common)
        try #require(ab.succeeded, "\(ab)")
        let object = try parseObject(ab.stdout, what: "eval's A/B output")
        #expect(Set(object.keys) == ["a", "b", "difference_b_minus_a", "difference_b_minus_a_ci95", "bootstrap"])
        #expect((object["a"] as? [String: Any])?["checkpoint"] as? String == a.last)
        #expect((object["b"] as? [String: Any])?["checkpoint"] as? String == b.last)
        let jsonA = numbers((object["a"] as? [String: Any])?["metrics"]), jsonB = numbers((object["b"] as? [String: Any])?["metrics"])
        #expect(jsonA == metricsA && jsonB == metricsB, "the A/B run measured different numbers than the single runs")
        let difference = numbers(object["difference_b_minus_a"])
        #expect(Set(difference.keys) == Set(jsonA.keys).intersection(jsonB.keys))
        for (key, d) in difference {   // (JSON's decimal spelling may round the last bit)
            #expect(abs(d - (jsonB[key]! - jsonA[key]!)) <= 1e-12 * max(1, abs(d)), "difference_b_minus_a[\(key)] = \(d), B − A = \(jsonB[key]! - jsonA[key]!)")
        }
        #expect(difference.values.contains { $0 != 0 }, "2 and 8 steps of training gave identical metrics: \(difference)")
        // The bootstrap intervals: every metric, lower ≤ upper, from 1,000 seeded resamples of the 32 pairs.
        let bootstrap = try #require(object["bootstrap"] as? [String: Any])
        #expect(bootstrap["resamples"] as? Int == 1_000 && bootstrap["seed"] as? Int == 0 && bootstrap["pairs"] as? Int == 32, "\(bootstrap)")
        let intervals = ((object["difference_b_minus_a_ci95"] as? [String: Any]) ?? [:]).compactMapValues { ($0 as? [Any])?.compactMap { ($0 as? NSNumber)?.doubleValue } }
        let metricOrder = ["image_to_text_R@1", "image_to_text_R@5", "image_to_text_R@10", "image_to_text_mean_rank", "image_to_text_median_rank",
                           "text_to_image_R@1", "text_to_image_R@5", "text_to_image_R@10", "text_to_image_mean_rank", "text_to_image_median_rank",
                           "zeroshot_top1", "zeroshot_top5", "clip_val_loss"]
        #expect(Set(intervals.keys) == Set(metricOrder), "\(intervals.keys.sorted())")
        for (key, interval) in intervals { #expect(interval.count == 2 && interval[0] <= interval[1], "\(key): \(interval)") }
        // The same seed gives the same intervals.
        let again = try run("eval", ["--checkpoint", a.last, "--checkpoint", b.last] + common)
        #expect(try parseObject(again.stdout, what: "eval's A/B output")["difference_b_minus_a_ci95"] as? NSDictionary == object["difference_b_minus_a_ci95"] as? NSDictionary)

        // The table on stderr: the checkpoints, the pairs and resamples, then per metric (in
        // open_clip's order) its direction, A, B, B − A and the interval (4 decimals).
        let lines = ab.stderr.split(separator: "\n").map(String.init)
        #expect(lines.starts(with: ["A: \(a.last)", "B: \(b.last)", "32 validation pairs; 95% interval of B − A from 1000 paired bootstrap resamples (seed 0)"]), "\(ab.stderr)")
        let header = try #require(lines.first { $0.hasPrefix("metric") }, "\(ab.stderr)")
        #expect(header.split(separator: " ").map(String.init) == ["metric", "better", "A", "B", "B", "−", "A", "95%", "interval", "of", "B", "−", "A"], "\(header)")
        var tabled: [String] = []
        for line in lines {
            guard let row = capture(#"^(\S+) +(↑ higher|↓ lower) +(-?\d+\.\d{4}) +(-?\d+\.\d{4}) +([+-]\d+\.\d{4}) +\[([+-]\d+\.\d{4}), ([+-]\d+\.\d{4})\]( +[AB] better)?$"#, in: line) else { continue }
            let key = row[0]
            tabled.append(key)
            guard let x = Double(row[2]), let y = Double(row[3]), let d = Double(row[4]), let low = Double(row[5]), let high = Double(row[6]),
                  let interval = intervals[key], interval.count == 2 else { Issue.record("unreadable row: \(line)"); continue }
            #expect(row[1] == (key.hasSuffix("rank") || key.hasSuffix("loss") ? "↓ lower" : "↑ higher"), "\(line)")
            #expect(abs(x - jsonA[key]!) <= 5.1e-5 && abs(y - jsonB[key]!) <= 5.1e-5, "\(line)")
            #expect(abs(d - difference[key]!) <= 5.1e-5 && abs(d - (y - x)) <= 1.1e-4, "\(line)")
            #expect(abs(low - interval[0]) <= 5.1e-5 && abs(high - interval[1]) <= 5.1e-5, "\(line)")
            // "A better" / "B better" exactly when the interval excludes 0, for the direction that improves.
            let better = row.count > 7 ? row[7].trimmingCharacters(in: .whitespaces) : ""
            let improves = row[1] == "↑ higher" ? 1.0 : -1.0
            let expected = interval[0] > 0 ? (improves > 0 ? "B better" : "A better") : interval[1] < 0 ? (improves > 0 ? "A better" : "B better") : ""
            #expect(better == expected, "\(line)")
        }
        #expect(tabled == metricOrder, "table rows \(tabled) \n\(ab.stderr)")
    }

    /// Zero-shot evaluation on data without usable labels is an error that names the data and
    /// what to set (exit 1, no usage text); manifests take pack's column flags; argument
    /// mistakes are usage errors (exit 64).
    @Test func evalRefusesZeroShotWithoutLabelsAndTakesColumns() throws {
        let checkpoint = try Trained.tiny.get().last
        let folder = temporaryFolder()
        let images = try Fixtures.images
        let shapes = ["circle", "square", "triangle", "star", "cross", "ring", "diamond", "hexagon"]
        var plain = ["image_path,caption"], named = ["file\ttext\tshape"]
        for (i, image) in images.enumerated() {
            plain.append("\(image.path),\"\(image.caption)\"")
            named.append("\(image.path)\t\(image.caption)\t\(shapes[i % shapes.count])")
        }
        try plain.joined(separator: "\n").write(toFile: "\(folder)/plain.csv", atomically: true, encoding: .utf8)
        try named.joined(separator: "\n").write(toFile: "\(folder)/named.tsv", atomically: true, encoding: .utf8)
        func expectDataError(_ result: ProgramRun, _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(!result.signaled && !result.timedOut && result.status == 1, "data errors exit 1: \(result)", sourceLocation: sourceLocation)
            #expect(!result.stderr.contains("Usage:") && result.stdout.isEmpty, "a data error is not a usage error: \(result)", sourceLocation: sourceLocation)
            for fragment in fragments { #expect(result.stderr.contains(fragment), "\(fragment) is not in the message: \(result)", sourceLocation: sourceLocation) }
        }
        let classes = ["--classes", Fixtures.classes]

        // A manifest read without a label column.
        expectDataError(try run("eval", ["--checkpoint", checkpoint, "--data", "\(folder)/plain.csv"] + classes),
                        ["\(folder)/plain.csv: zero-shot evaluation needs each sample's class name", "set --label-column"])
        // A label column the manifest lacks.
        expectDataError(try run("eval", ["--checkpoint", checkpoint, "--data", "\(folder)/plain.csv", "--label-column", "shape"] + classes),
                        ["has no label column 'shape' (columns: image_path, caption)", "--label-column"])
        // Shards without labels (pack without --label-column).
        let packed = try run("pack", ["--manifest", "\(folder)/plain.csv", "--out", "\(folder)/shards", "--shard-size", "100"])
        try #require(packed.succeeded, "\(packed)")
        #expect(packed.lines.contains("packed 8 pairs into 1 shard in \(folder)/shards"), "\(packed)")
        expectDataError(try run("eval", ["--checkpoint", checkpoint, "--data", "\(folder)/shards/shard-0000.tar.zst"] + classes),
                        ["shard-0000.tar.zst: none of its 8 samples carries a class label"])

        // Pack's column flags, and labels that are classes: zero-shot over all 8 pairs.
        let columns = ["--image-column", "file", "--caption-column", "text", "--label-column", "shape"]
        let evaluated = try run("eval", ["--checkpoint", checkpoint, "--data", "\(folder)/named.tsv"] + columns + classes)
        try #require(evaluated.succeeded, "\(evaluated)")
        let metrics = numbers(try parseObject(evaluated.stdout, what: "eval's output")["metrics"])
        #expect(metrics["val_samples"] == 8 && metrics["zeroshot_top1"] != nil && metrics["image_to_text_R@1"] != nil, "\(metrics)")
        // pack carries the labels into the shards, where eval finds them.
        let labelled = try run("pack", ["--manifest", "\(folder)/named.tsv", "--out", "\(folder)/labelled"] + columns)
        try #require(labelled.succeeded, "\(labelled)")
        let fromShards = try run("eval", ["--checkpoint", checkpoint, "--data", "\(folder)/labelled/shard-0000.tar.zst"] + classes)
        try #require(fromShards.succeeded, "\(fromShards)")
        #expect(numbers(try parseObject(fromShards.stdout, what: "eval's output")["metrics"])["zeroshot_top1"] == metrics["zeroshot_top1"])

        // Argument mistakes: usage text, exit 64.
        for arguments in [["--data", "\(folder)/shards/shard-0000.tar.zst", "--label-column", "shape"] + classes,
                          ["--data", "\(folder)/named.tsv", "--label-column", "shape"]] {
            let mistake = try run("eval", ["--checkpoint", checkpoint] + arguments)
            #expect(mistake.status == 64 && mistake.stderr.contains("Usage:"), "\(mistake)")
        }
    }

    // MARK: distill

    @Test func distillTrainsAStudentAndWritesItsReport() throws {
        let teacher = try Trained.tiny.get()
        let folder = temporaryFolder()
        let recipe: [String: Any] = [
            "name": "student", "seed": 5,
            "model": [
                "vision": ["image_size": 32, "patch_size": 8, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32],
                "text": ["hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 40,
                         "tokenizer": Fixtures.bpe],
                "projection_dim": 8,
            ] as [String: Any],
            "distill": ["teacher": teacher.last, "temperature": 2.0, "logit_weight": 1.0, "feature_weight": 1.0, "feature_loss": "cosine",
                        "contrastive_weight": 0.5] as [String: Any],
            "data": ["train": ["shards": try Fixtures.trainShards], "val": ["shards": try Fixtures.valShards], "batch_size": 16, "threads": 2,
                     "augmentation": ["random_resized_crop": NSNull()], "cache_teacher": true] as [String: Any],
            "optimizer": ["lr": 2e-3],
            "schedule": ["type": "cosine", "warmup_steps": 1] as [String: Any],
            "eval": ["every_steps": 2, "every_epoch": false, "zeroshot": ["classes": Fixtures.classes]] as [String: Any],
            "early_stopping": ["metric": "image_to_text_R@1", "mode": "max", "patience": 10] as [String: Any],
            "checkpoint": ["directory": "\(folder)/runs"],
            "max_steps": 4, "log_every_steps": 2,
        ]
        let result = try run("distill", ["--recipe", try writeRecipe(recipe, in: folder, file: "student")])
        try #require(result.succeeded, "\(result)")
        let runFolder = "\(folder)/runs/student"
        #expect(result.lines.contains("run student: 4 steps (6 per epoch) → \(runFolder)"), "\(result)")
        #expect(result.lines.contains { $0.hasPrefix("teacher \(teacher.last): ") && $0.contains("; student: ") }, "\(result)")
        #expect(result.lines.contains { $0.hasPrefix("parameters (M)") }, "\(result)")
        #expect(result.lines.contains("student: \(runFolder)/best; report: \(runFolder)/distill_report.json"), "\(result)")
        for file in ["metrics.jsonl", "best/model.safetensors", "last/model.safetensors", "last/training_heads.safetensors", "teacher_cache.safetensors"] {
            #expect(exists("\(runFolder)/\(file)"), "\(file) is missing")
        }

        let report = try readObject("\(runFolder)/distill_report.json")
        #expect(Set(report.keys) == ["teacher", "student", "threads"])
        #expect((report["threads"] as? Int).map { $0 >= 1 } == true)
        let t = try #require(report["teacher"] as? [String: Any]), s = try #require(report["student"] as? [String: Any])
        #expect(Set(t.keys) == ["path", "parameters", "metrics", "items_per_second"])
        #expect(Set(s.keys) == ["checkpoint", "parameters", "metrics", "items_per_second"])
        #expect(t["path"] as? String == teacher.last)
        #expect(s["checkpoint"] as? String == "\(runFolder)/best")
        // Parameter counts are those of the saved models.
        let teacherParameters = try parameterCount(teacher.last)
        let studentParameters = try parameterCount("\(runFolder)/best")
        #expect(t["parameters"] as? Int == teacherParameters)
        #expect(s["parameters"] as? Int == studentParameters)
        #expect(studentParameters < teacherParameters)
        // Speeds: images and texts for both, finite and positive.
        for side in [t, s] {
            let speed = numbers(side["items_per_second"])
            #expect(Set(speed.keys) == ["images", "texts"] && speed.values.allSatisfy { $0.isFinite && $0 > 0 }, "\(speed)")
        }
        // The teacher's metrics are what the trainer measured for the same checkpoint; the
        // student's are its evaluation at the step kept in best/.
        let teacherMetrics = numbers(t["metrics"]), studentMetrics = numbers(s["metrics"])
        for metrics in [teacherMetrics, studentMetrics] {
            #expect(Set(metrics.keys).isSuperset(of: ["image_to_text_R@1", "text_to_image_R@1", "zeroshot_top1", "clip_val_loss"]), "\(metrics)")
            #expect(metrics.values.allSatisfy { $0.isFinite }, "\(metrics)")
        }
        let teacherEval = try #require(try metricsLines(teacher.folder).last { $0.kind == "eval" && $0.step == 8 })
        for key in ["image_to_text_R@1", "text_to_image_R@1", "image_to_text_R@5", "text_to_image_R@5", "zeroshot_top1", "clip_val_loss"] {
            #expect(abs((teacherMetrics[key] ?? .nan) - (teacherEval.values[key] ?? .nan)) <= 1e-6, "teacher \(key): \(teacherMetrics[key] ?? .nan) vs \(teacherEval.values[key] ?? .nan)")
        }
        let bestStep = try savedStep("\(runFolder)/best")
        let studentEval = try #require(try metricsLines(runFolder).first { $0.kind == "eval" && $0.step == bestStep }, "no evaluation at the best step \(bestStep)")
        for (key, value) in studentMetrics where studentEval.values[key] != nil {
            #expect(abs(value - studentEval.values[key]!) <= 1e-6, "student \(key): report \(value), metrics.jsonl \(studentEval.values[key]!)")
        }
        #expect(studentMetrics["image_to_text_R@1"] == studentEval.values["image_to_text_R@1"])
    }

    // MARK: export

    @Test func exportWritesTheChosenONNXAndRefusesToOverwrite() throws {
        let checkpoint = try Trained.tiny.get().last
        let folder = temporaryFolder()
        let out = "\(folder)/onnx"
        let result = try run("export", ["--checkpoint", checkpoint, "--out", out, "--text-precision", "fp16", "--no-normalize", "--opset", "18"])
        try #require(result.succeeded, "\(result)")
        #expect(result.lines.contains { $0.hasPrefix("exported \(checkpoint) (fp32, opset 18)") }, "\(result)")
        for file in ["image_encoder.onnx", "text_encoder.onnx", "export.json", "vocab.json", "merges.txt"] {
            #expect(exists("\(out)/\(file)"), "\(file) is missing")
            #expect(result.stdout.contains("\(out)/\(file)"), "\(file) is not listed")
        }
        let manifest = try readObject("\(out)/export.json")
        #expect(manifest["precision"] as? String == "fp32")
        #expect(manifest["opset"] as? Int == 18)
        #expect(manifest["normalized"] as? Bool == false)
        #expect((manifest["text"] as? [String: Any])?["precision"] as? String == "fp16")
        #expect((manifest["image"] as? [String: Any])?["image_size"] as? Int == 32)
        #expect(manifest["embedding_dim"] as? Int == 16)
        #expect(manifest["source_checkpoint"] as? String == "tiny/last")   // the run and folder, no path of this machine
        #expect((manifest["source_sha256"] as? String)?.count == 64)
        for file in ["image_encoder.onnx", "text_encoder.onnx"] {
            #expect(try onnxOpsetImports("\(out)/\(file)")[""] == 18, "\(file) does not import opset 18")
        }
        try compareWithEmbed(export: out, checkpoint: checkpoint, textTolerance: nil)

        // An existing folder is refused without --overwrite, and left as it was.
        let again = try run("export", ["--checkpoint", checkpoint, "--out", out])
        #expect(!again.succeeded && !again.signaled, "\(again)")
        #expect(again.stderr.contains("already exists") && again.stderr.contains("--overwrite"), "\(again)")
        let kept = try readObject("\(out)/export.json")["text"] as? [String: Any]
        #expect(kept?["precision"] as? String == "fp16", "the refused export changed export.json")
        // With --overwrite it is replaced: fp32 text now, unnormalised, opset 17 by default.
        let replaced = try run("export", ["--checkpoint", checkpoint, "--out", out, "--no-normalize", "--overwrite"])
        try #require(replaced.succeeded, "\(replaced)")
        let manifest2 = try readObject("\(out)/export.json")
        #expect((manifest2["text"] as? [String: Any])?["precision"] as? String == "fp32" && manifest2["opset"] as? Int == 17)
        #expect(try onnxOpsetImports("\(out)/text_encoder.onnx")[""] == 17)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["onnx"], "a temporary export folder was left behind")
        try compareWithEmbed(export: out, checkpoint: checkpoint, textTolerance: 1e-4)
    }

    /// A checkpoint that transformers computes only through our remote code — a mean-pooled BERT
    /// tower trained with the SigLIP loss — is read by `export`, `embed` and `eval` as any other;
    /// export.json carries the learned bias, the temperature and the loss.
    @Test func programsReadRemoteCodeCheckpoints() throws {
        let folder = temporaryFolder()
        var recipe = try tinyRecipe(name: "siglip", directory: "\(folder)/runs", steps: 2)
        var model = try #require(recipe["model"] as? [String: Any])
        model["text"] = ["type": "bert", "tokenizer": "\(repositoryRoot)/.deps/assets/all-MiniLM-L6-v2", "hidden_size": 16, "num_hidden_layers": 1,
                         "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 40, "pooling": "mean"] as [String: Any]
        recipe["model"] = model
        recipe["loss"] = ["type": "siglip"]
        let trained = try run("train", ["--recipe", try writeRecipe(recipe, in: folder, file: "siglip")])
        try #require(trained.succeeded, "\(trained)")
        let checkpoint = "\(folder)/runs/siglip/last"
        #expect(try readObject("\(checkpoint)/config.json")["model_type"] as? String == Pretrained.remoteCodeModelType)
        #expect(exists("\(checkpoint)/\(Pretrained.remoteCodeFile)"))
        let weights = try SafeTensors.load("\(checkpoint)/model.safetensors")
        let bias = try #require(weights["logit_bias"]).item(Double.self), scale = try #require(weights["logit_scale"]).item(Double.self)

        let out = "\(folder)/onnx"
        let exported = try run("export", ["--checkpoint", checkpoint, "--out", out, "--no-normalize"])
        try #require(exported.succeeded, "\(exported)")
        let manifest = try readObject("\(out)/export.json")
        #expect(manifest["loss"] as? String == "siglip")
        #expect(abs(((manifest["logit_bias"] as? NSNumber)?.doubleValue ?? .nan) - bias) <= 1e-12, "\(manifest)")
        #expect(abs(((manifest["logit_scale"] as? NSNumber)?.doubleValue ?? .nan) - Foundation.exp(scale)) <= 1e-9, "\(manifest)")
        #expect((manifest["scores"] as? String)?.contains("sigmoid") == true)
        #expect((manifest["text"] as? [String: Any])?["pooling"] as? String == "mean")
        try compareWithEmbed(export: out, checkpoint: checkpoint, textTolerance: 1e-4)   // runs `embed` too

        let evaluated = try run("eval", ["--checkpoint", checkpoint, "--data", try Fixtures.valShards])
        try #require(evaluated.succeeded, "\(evaluated)")
        let metrics = numbers(try parseObject(evaluated.stdout, what: "eval's output")["metrics"])
        #expect(metrics["image_to_text_R@1"]?.isFinite == true, "\(metrics)")
    }

    /// onnxruntime on the export's encoders vs `embed --raw` on the same images and texts:
    /// the fp32 image encoder within 1e-4; the text encoder within `textTolerance`, or (fp16)
    /// cosine ≥ 0.999 when nil. Needs `.deps/python` with onnx and onnxruntime (else skipped, said).
    func compareWithEmbed(export: String, checkpoint: String, textTolerance: Double?) throws {
        let python = "\(repositoryRoot)/.deps/python"
        guard FileManager.default.isExecutableFile(atPath: python) else {
            print("note: \(python) is missing; onnxruntime was not compared with embed")
            return
        }
        let folder = temporaryFolder("onnxcompare")
        let images = try Fixtures.images.prefix(3).map(\.path)
        let texts = ["a red circle on the left", "a small blue square", "two shapes"]
        // The inputs `embed` computes: the checkpoint's preprocessing and tokenizer.
        let loaded = try Pretrained.load(checkpoint)
        let pipeline = ImagePipeline(preprocessing: try #require(loaded.preprocessing))
        var pixels = [Float](repeating: 0, count: images.count * pipeline.sampleCount)
        var random = SeededRandom(seed: 0)
        let decoder = ImageDecoder()
        for (i, path) in images.enumerated() {
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            try bytes.withUnsafeBytes { encoded in
                try pixels.withUnsafeMutableBufferPointer { all in
                    try pipeline.process(encoded, decoder: decoder, random: &random,
                                         into: UnsafeMutableBufferPointer(rebasing: all[(i * pipeline.sampleCount)..<((i + 1) * pipeline.sampleCount)]))
                }
            }
        }
        let (ids, mask) = try loaded.tokenizer().encode(texts)
        try pixels.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: "\(folder)/pixels.bin")) }
        try ids.to(.int64).toArray(Int64.self).withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: "\(folder)/ids.bin")) }
        try mask.to(.int64).toArray(Int64.self).withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: "\(folder)/mask.bin")) }
        let size = pipeline.preprocessing.size
        try writeJSON(["pixels_shape": [images.count, 3, size, size], "ids_shape": ids.shape], to: "\(folder)/inputs.json")
        let script = """
        import json, sys
        import numpy as np, onnx, onnxruntime as ort
        export, folder = sys.argv[1:3]
        meta = json.load(open(f"{folder}/inputs.json"))
        pixels = np.fromfile(f"{folder}/pixels.bin", dtype="<f4").reshape(meta["pixels_shape"])
        ids = np.fromfile(f"{folder}/ids.bin", dtype="<i8").reshape(meta["ids_shape"])
        mask = np.fromfile(f"{folder}/mask.bin", dtype="<i8").reshape(meta["ids_shape"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        out = {}
        for name, feeds in [("image_encoder", {"pixel_values": pixels}), ("text_encoder", {"input_ids": ids, "attention_mask": mask})]:
            model = onnx.load(f"{export}/{name}.onnx")
            out[name + "_opset"] = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")][0]
            session = ort.InferenceSession(f"{export}/{name}.onnx", options, providers=["CPUExecutionProvider"])
            wanted = {i.name for i in session.get_inputs()}
            out[name] = session.run(None, {k: v for k, v in feeds.items() if k in wanted})[0].astype(np.float64).tolist()
        json.dump(out, open(f"{folder}/onnx.json", "w"))
        """
        try script.write(toFile: "\(folder)/run_onnx.py", atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["\(folder)/run_onnx.py", export, folder]
        let errors = "\(folder)/python.stderr"
        _ = FileManager.default.createFile(atPath: errors, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: errors)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let finished = poll(timeout: 300, interval: 0.05) { !process.isRunning }
        if !finished { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        let stderr = (try? String(contentsOfFile: errors, encoding: .utf8)) ?? ""
        if process.terminationStatus != 0, stderr.contains("No module named") {
            print("note: onnx/onnxruntime are not installed in .deps/python; onnxruntime was not compared with embed")
            return
        }
        try #require(finished && process.terminationStatus == 0, "onnxruntime failed:\n\(stderr.suffix(3000))")
        let onnx = try readObject("\(folder)/onnx.json")
        let opset = try readObject("\(export)/export.json")["opset"] as? Int
        #expect(opset != nil && onnx["image_encoder_opset"] as? Int == opset && onnx["text_encoder_opset"] as? Int == opset, "onnx.load reads other opsets")

        let embedded = try run("embed", ["--checkpoint", checkpoint, "--images"] + images + ["--texts"] + texts + ["--raw", "--out", "\(folder)/embed.json"])
        try #require(embedded.succeeded, "\(embedded)")
        let ours = try readObject("\(folder)/embed.json")
        func rows(_ value: Any?) -> [[Double]] { (value as? [[Any]])?.map { $0.compactMap { ($0 as? NSNumber)?.doubleValue } } ?? [] }
        let (imageOurs, imageONNX) = (rows(ours["image_embeds"]), rows(onnx["image_encoder"]))
        let (textOurs, textONNX) = (rows(ours["text_embeds"]), rows(onnx["text_encoder"]))
        #expect(imageOurs.count == 3 && imageONNX.count == 3 && textOurs.count == 3 && textONNX.count == 3)
        let imageDiff = zip(imageOurs.joined(), imageONNX.joined()).map { abs($0 - $1) }.max() ?? .infinity
        #expect(imageOurs.joined().count == imageONNX.joined().count && imageDiff <= 1e-4, "image embeddings: onnxruntime vs embed --raw differ by \(imageDiff)")
        if let textTolerance {
            let textDiff = zip(textOurs.joined(), textONNX.joined()).map { abs($0 - $1) }.max() ?? .infinity
            #expect(textOurs.joined().count == textONNX.joined().count && textDiff <= textTolerance, "text embeddings differ by \(textDiff)")
        } else {
            for (a, b) in zip(textOurs, textONNX) {
                let dot = zip(a, b).map { $0 * $1 }.reduce(0, +)
                let cosine = dot / ((a.map { $0 * $0 }.reduce(0, +)).squareRoot() * (b.map { $0 * $0 }.reduce(0, +)).squareRoot())
                #expect(cosine >= 0.999, "fp16 text embedding: cosine \(cosine) to embed --raw")
            }
        }
        // --no-normalize: the raw features, not unit vectors.
        #expect(imageONNX.contains { abs(($0.map { $0 * $0 }.reduce(0, +)).squareRoot() - 1) > 1e-3 }, "the --no-normalize export returned unit vectors")
        print("onnxruntime vs embed --raw: images within \(imageDiff)")
    }

    // MARK: pack

    @Test func packWritesShardsThatReadBack() throws {
        let folder = temporaryFolder()
        let images = try Fixtures.images
        // A ';'-separated manifest with its own column names, a caption holding the other
        // separator, one row whose image is missing, a PNG, a WebP, a PNG named .jpg and a
        // truncated PNG (every image is decoded at pack time; members are named by content).
        var rows = ["file;text;note"]
        var expected: [(row: Int, path: String, caption: String, member: String)] = []
        try FileManager.default.createDirectory(atPath: "\(folder)/images", withIntermediateDirectories: true)
        for (i, image) in images.prefix(7).enumerated() {
            if i == 3 {
                rows.append("images/missing.jpg;nothing here;x")
                rows.append("")   // a blank line is not a row
            }
            let caption = i == 5 ? "\(image.caption), drawn small" : image.caption
            let relative = "images/\(i).jpg"
            try FileManager.default.copyItem(atPath: image.path, toPath: "\(folder)/\(relative)")
            rows.append("\(relative);\(caption);n\(i)")
            expected.append((i < 3 ? i : i + 1, "\(folder)/\(relative)", caption, "jpg"))   // data rows, counted from 0 after the header
        }
        let pictures = "\(repositoryRoot)/Tests/DatasetsTests/Fixtures/images"
        for (i, (fixture, relative, member)) in [("rgba8_photo.png", "images/7.png", "png"), ("webp_lossy_alpha.webp", "images/8.webp", "webp"),
                                                 ("palette8_trns.png", "images/9.jpg", "png")].enumerated() {
            try FileManager.default.copyItem(atPath: "\(pictures)/\(fixture)", toPath: "\(folder)/\(relative)")
            rows.append("\(relative);picture \(i) in \(member);m\(i)")
            expected.append((8 + i, "\(folder)/\(relative)", "picture \(i) in \(member)", member))
        }
        let png = try Data(contentsOf: URL(fileURLWithPath: "\(pictures)/rgb8.png"))
        try png.prefix(png.count - 80).write(to: URL(fileURLWithPath: "\(folder)/images/broken.png"))
        rows.append("images/broken.png;cut short;b")   // line 14 of the file
        try (rows.joined(separator: "\n") + "\n").write(toFile: "\(folder)/pairs.csv", atomically: true, encoding: .utf8)
        let arguments = ["--manifest", "\(folder)/pairs.csv", "--shard-size", "3", "--prefix", "part",
                         "--image-column", "file", "--caption-column", "text", "--separator", ";"]
        let result = try run("pack", arguments + ["--out", "\(folder)/shards"])
        try #require(result.succeeded, "\(result)")
        #expect(result.lines.contains("packed 10 pairs into 4 shards in \(folder)/shards; rejected 2 rows: 1 missing image file, 1 image that does not decode"), "\(result)")
        #expect(result.stderr.contains("warning: skipped \(folder)/pairs.csv:5: image file \(folder)/images/missing.jpg does not exist"), "\(result)")
        #expect(result.stderr.contains("warning: skipped \(folder)/pairs.csv:14: image \(folder)/images/broken.png: corrupt or truncated PNG"), "\(result)")
        let shards = (try FileManager.default.contentsOfDirectory(atPath: "\(folder)/shards")).sorted()
        #expect(shards == ["part-0000.tar.zst", "part-0001.tar.zst", "part-0002.tar.zst", "part-0003.tar.zst"])

        // Read back with the Data library: the same bytes and captions, 3 + 3 + 1, in order.
        var read: [(origin: String, bytes: [UInt8], captions: [String])] = []
        var perShard: [Int] = []
        for shard in shards {
            let reader = try ShardReader(path: "\(folder)/shards/\(shard)")
            var n = 0
            while let next = try reader.next() {
                guard case .success(let record) = next, case .bytes(let bytes) = record.image else { Issue.record("bad sample in \(shard): \(next)"); continue }
                read.append((record.origin, bytes, record.captions))
                n += 1
            }
            perShard.append(n)
        }
        #expect(perShard == [3, 3, 3, 1])
        #expect(read.count == expected.count)
        for (got, want) in zip(read, expected) {
            #expect(got.bytes == [UInt8](try Data(contentsOf: URL(fileURLWithPath: want.path))), "\(got.origin): image bytes differ from \(want.path)")
            #expect(got.captions == [want.caption], "\(got.origin)")
            #expect(got.origin.hasSuffix(String(format: ":%09d", want.row)), "\(got.origin) should be row \(want.row)")
        }
        // tar reads them too.
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/zstd") || FileManager.default.isExecutableFile(atPath: "/bin/zstd") {
            func listTar(_ shard: String) throws -> [String] {
                let tar = Process()
                tar.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                tar.arguments = ["tar", "--zstd", "-tf", shard]
                let listing = "\(folder)/listing.txt"
                _ = FileManager.default.createFile(atPath: listing, contents: nil)
                tar.standardOutput = FileHandle(forWritingAtPath: listing)
                try tar.run()
                let finished = poll(timeout: 60) { !tar.isRunning }
                if !finished { kill(tar.processIdentifier, SIGKILL) }
                tar.waitUntilExit()
                #expect(finished && tar.terminationStatus == 0, "tar -tf \(shard)")
                return try String(contentsOfFile: listing, encoding: .utf8).split(separator: "\n").map(String.init)
            }
            // Members are named after the content: the PNG that was called .jpg is a .png.
            let names = try shards.flatMap { try listTar("\(folder)/shards/\($0)") }
            #expect(names == expected.flatMap { [String(format: "%09d.", $0.row) + $0.member, String(format: "%09d.txt", $0.row)] }, "\(names)")
        } else {
            print("note: zstd is not installed; the shards were not listed with tar")
        }
        // And programs read them: eval over all four shards sees the 10 pairs (JPEG, PNG and
        // WebP), and over the manifest itself the same 10 (the truncated PNG skipped).
        let checkpoint = try Trained.tiny.get().last
        let evaluated = try run("eval", ["--checkpoint", checkpoint, "--data", "\(folder)/shards/part-{0000..0003}.tar.zst"])
        try #require(evaluated.succeeded, "\(evaluated)")
        let shardMetrics = numbers(try parseObject(evaluated.stdout, what: "eval's output")["metrics"])
        #expect(shardMetrics["val_samples"] == 10)
        // eval reads `image_path,caption` manifests: the same rows, in the same order.
        var standard = ["image_path,caption"]
        for (i, want) in expected.enumerated() {
            if i == 3 { standard.append("images/missing.jpg,nothing here") }
            standard.append("\(want.path),\"\(want.caption.replacingOccurrences(of: "\"", with: "\"\""))\"")
        }
        standard.append("images/broken.png,cut short")   // line 13
        try (standard.joined(separator: "\n") + "\n").write(toFile: "\(folder)/standard.csv", atomically: true, encoding: .utf8)
        let fromManifest = try run("eval", ["--checkpoint", checkpoint, "--data", "\(folder)/standard.csv"])
        try #require(fromManifest.succeeded, "\(fromManifest)")
        let manifestMetrics = numbers(try parseObject(fromManifest.stdout, what: "eval's output")["metrics"])
        #expect(manifestMetrics == shardMetrics, "eval of the manifest and of its shards differ: \(manifestMetrics) vs \(shardMetrics)")
        #expect(fromManifest.stderr.contains("standard.csv:13: \(folder)/images/broken.png: corrupt or truncated PNG"), "\(fromManifest)")

        // --bad-samples fail stops at the missing image and leaves no shard behind.
        let strict = try run("pack", arguments + ["--out", "\(folder)/strict", "--bad-samples", "fail"])
        #expect(!strict.succeeded && !strict.signaled, "\(strict)")
        #expect(strict.stderr.contains("pairs.csv:5") && strict.stderr.contains("missing.jpg"), "\(strict)")
        #expect((try? FileManager.default.contentsOfDirectory(atPath: "\(folder)/strict"))?.isEmpty ?? true)
    }

    // MARK: embed

    @Test func embedWritesNormalisedOrRawEmbeddings() throws {
        let checkpoint = try Trained.tiny.get().last
        let folder = temporaryFolder()
        let images = try Fixtures.images.prefix(3).map(\.path)
        let texts = ["a red circle", "a small blue square on a grey background"]
        try writeJSON(texts, to: "\(folder)/texts.json")
        func rows(_ path: String, _ key: String) throws -> [[Double]] {
            try #require((try readObject(path)[key] as? [[Any]])?.map { $0.compactMap { ($0 as? NSNumber)?.doubleValue } }, "\(path) has no \(key)")
        }
        func norm(_ v: [Double]) -> Double { v.map { $0 * $0 }.reduce(0, +).squareRoot() }

        let normalised = try run("embed", ["--checkpoint", checkpoint, "--images"] + images + ["--texts"] + texts + ["--out", "\(folder)/a.json"])
        try #require(normalised.succeeded, "\(normalised)")
        #expect(normalised.lines.contains("wrote \(folder)/a.json: embeddings of 3 images and 2 texts"), "\(normalised)")
        #expect(Set(try readObject("\(folder)/a.json").keys) == ["image_embeds", "text_embeds"])
        let imageA = try rows("\(folder)/a.json", "image_embeds"), textA = try rows("\(folder)/a.json", "text_embeds")
        #expect(imageA.count == 3 && textA.count == 2 && (imageA + textA).allSatisfy { $0.count == 16 })
        #expect((imageA + textA).allSatisfy { abs(norm($0) - 1) < 1e-5 }, "not unit vectors: \((imageA + textA).map(norm))")
        // The similarity table: one row per image, the cosine to each text.
        let table = normalised.lines.drop { !$0.hasPrefix("cosine similarity") }.dropFirst().filter { !$0.isEmpty }
        #expect(table.count == 3, "\(normalised)")
        for (i, line) in table.enumerated() where i < 3 {
            let cells = line.split(separator: " ").prefix(2).compactMap { Double($0) }
            #expect(cells.count == 2)
            for (j, cell) in cells.enumerated() {
                let cosine = zip(imageA[i], textA[j]).map { $0 * $1 }.reduce(0, +)
                #expect(abs(cell - cosine) <= 6e-4, "row \(i) column \(j): printed \(cell), cosine \(cosine)")
            }
        }

        let raw = try run("embed", ["--checkpoint", checkpoint, "--images"] + images + ["--texts-file", "\(folder)/texts.json", "--raw", "--out", "\(folder)/b.json"])
        try #require(raw.succeeded, "\(raw)")
        let imageB = try rows("\(folder)/b.json", "image_embeds"), textB = try rows("\(folder)/b.json", "text_embeds")
        #expect(imageB.count == 3 && textB.count == 2)
        #expect((imageB + textB).contains { abs(norm($0) - 1) > 1e-3 }, "--raw wrote unit vectors: \((imageB + textB).map(norm))")
        for (a, b) in zip(imageA + textA, imageB + textB) {
            let n = norm(b)
            #expect(zip(a, b).allSatisfy { abs($0 - $1 / n) < 1e-5 }, "--raw, normalised, differs from the default output")
        }

        let textsOnly = try run("embed", ["--checkpoint", checkpoint, "--texts-file", "\(folder)/texts.json", "--out", "\(folder)/c.json"])
        try #require(textsOnly.succeeded, "\(textsOnly)")
        #expect(Set(try readObject("\(folder)/c.json").keys) == ["text_embeds"])
        let textC = try rows("\(folder)/c.json", "text_embeds")
        #expect(textC.count == 2 && zip(textC.joined(), textA.joined()).allSatisfy { abs($0 - $1) < 1e-6 })

        // PNG and WebP files embed too, told apart by content; a foreign file is an error that names it.
        let pictures = "\(repositoryRoot)/Tests/DatasetsTests/Fixtures/images"
        let formats = try run("embed", ["--checkpoint", checkpoint, "--images", "\(pictures)/rgba8_photo.png", "\(pictures)/webp_lossy_alpha.webp",
                                        "\(pictures)/exif6.png", "--out", "\(folder)/e.json"])
        try #require(formats.succeeded, "\(formats)")
        #expect(try rows("\(folder)/e.json", "image_embeds").count == 3)
        try (Data("GIF89a".utf8) + Data(count: 40)).write(to: URL(fileURLWithPath: "\(folder)/drawing.png"))
        let foreign = try run("embed", ["--checkpoint", checkpoint, "--images", images[0], "\(folder)/drawing.png", "--out", "\(folder)/f.json"])
        #expect(!foreign.succeeded && !foreign.signaled, "\(foreign)")
        #expect(foreign.stderr.contains("\(folder)/drawing.png: not a JPEG, PNG or WebP image (looks like a GIF"), "\(foreign)")
        #expect(!exists("\(folder)/f.json"))

        let both = try run("embed", ["--checkpoint", checkpoint, "--texts", "x", "--texts-file", "\(folder)/texts.json", "--out", "\(folder)/d.json"])
        #expect(!both.succeeded && !both.signaled && both.stderr.contains("give --texts or --texts-file, not both"), "\(both)")
        #expect(!exists("\(folder)/d.json"))
    }

    // MARK: make-dataset

    /// Regenerates Data/shapes (4,000 + 1,000 pairs; ~50 s in a debug build) and compares
    /// every file byte for byte with the committed one.
    @Test func makeDatasetRegeneratesTheShapesDataByteForByte() throws {
        let out = temporaryFolder() + "/shapes"
        let result = try run("make-dataset", ["--out", out], timeout: 900)
        try #require(result.succeeded, "\(result)")
        #expect(result.lines.contains("train: 4000 pairs in 4 shards") && result.lines.contains("val: 1000 pairs in 1 shard"), "\(result)")
        let committed = "\(repositoryRoot)/Data/shapes"
        let made = try FileManager.default.contentsOfDirectory(atPath: out).sorted()
        // The README is written by hand; everything else is the program's output.
        let expected = try FileManager.default.contentsOfDirectory(atPath: committed).filter { $0 != "README.md" }.sorted()
        #expect(made == expected)
        for file in expected where made.contains(file) {
            let a = try Data(contentsOf: URL(fileURLWithPath: "\(out)/\(file)")), b = try Data(contentsOf: URL(fileURLWithPath: "\(committed)/\(file)"))
            #expect(a == b, "\(file) differs from the committed one (\(a.count) vs \(b.count) bytes)")
        }
        try? FileManager.default.removeItem(atPath: out)
    }

    // MARK: Recipes/

    static let recipeFiles: [String] = ((try? FileManager.default.contentsOfDirectory(atPath: "\(repositoryRoot)/Recipes")) ?? [])
        .filter { $0.hasSuffix(".json") }.sorted()

    @Test func theRecipesFolderHasRecipes() {
        #expect(Self.recipeFiles.count >= 4, "\(Self.recipeFiles)")
    }

    /// Every recipe in Recipes/ loads and runs one step through the real program: `distill` when
    /// it has a distill section, else `train`. Checkpoints a fresh clone lacks are replaced by tiny
    /// ones; the validation data by a small part of it.
    @Test(arguments: recipeFiles)
    func recipeRunsOneStep(file: String) throws {
        let path = "\(repositoryRoot)/Recipes/\(file)"
        let recipe = try readObject(path)
        let folder = temporaryFolder("recipe\(file)")
        let name = recipe["name"] as? String ?? URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent
        let program = recipe["distill"] != nil ? "distill" : "train"
        var overrides = ["max_steps=1", "data.batch_size=8", "log_every_steps=1", "checkpoint.directory=\"\(folder)/runs\""]
        // Step counts in the schedule must fit in one step.
        let schedule = recipe["schedule"] as? [String: Any] ?? [:]
        for key in ["warmup_steps", "cooldown_steps", "step_every"] where ((schedule[key] as? Int) ?? 0) > 1 {
            overrides.append("schedule.\(key)=1")
        }
        /// A recipe path as the recipe means it: `@assets/…`, or relative to the recipe's folder.
        func resolved(_ path: String) -> String {
            if path.hasPrefix("@assets/") { return RecipePathResolution.assetsFolder + "/" + path.dropFirst("@assets/".count) }
            return path.hasPrefix("/") ? path : "\(repositoryRoot)/Recipes/\(path)"
        }
        func missing(_ path: String?) -> Bool {
            guard let path else { return false }
            return !exists(resolved(path))
        }
        let model = recipe["model"] as? [String: Any] ?? [:]
        if let checkpoint = model["checkpoint"] as? String, missing(checkpoint) {
            overrides.append("model.checkpoint=\"\(try TinyCLIP.folder.get())\"")
        }
        for tower in ["vision", "text"] {
            let section = model[tower] as? [String: Any] ?? [:]
            for key in ["checkpoint", "tokenizer"] where missing(section[key] as? String) {
                Issue.record("\(file): model.\(tower).\(key) '\(section[key]!)' does not exist after Scripts/bootstrap; give this test a stand-in for it")
                return
            }
        }
        if let teacher = (recipe["distill"] as? [String: Any])?["teacher"] as? String, missing(teacher) {
            overrides.append("distill.teacher=\"\(try Trained.tiny.get().last)\"")
        }
        // A small validation set: 32 pairs of shards, or the first 24 lines of a text manifest.
        let data = recipe["data"] as? [String: Any] ?? [:]
        if let val = data["val"] as? [String: Any] {
            if val["shards"] != nil {
                overrides.append("data.val.shards=\"\(try Fixtures.valShards)\"")
            } else if let manifest = val["manifest"] as? String, val.keys.contains("image_column"), val["image_column"] is NSNull {
                let lines = try String(contentsOfFile: resolved(manifest), encoding: .utf8).split(separator: "\n").prefix(24)
                let small = "\(folder)/val.\(URL(fileURLWithPath: manifest).pathExtension)"
                try (lines.joined(separator: "\n") + "\n").write(toFile: small, atomically: true, encoding: .utf8)
                overrides.append("data.val.manifest=\"\(small)\"")
            }
        }
        let result = try run(program, ["--recipe", path] + overrides.flatMap { ["--set", $0] })
        try #require(result.succeeded, "\(result)")
        let runFolder = "\(folder)/runs/\(name)"
        #expect(result.lines.contains { $0.hasPrefix("run \(name): 1 step (") && $0.hasSuffix("→ \(runFolder)") }, "\(result)")
        #expect(try savedStep("\(runFolder)/last") == 1)
        if model["lora"] != nil {   // PEFT's adapter files, not the base's weights
            #expect(exists("\(runFolder)/last/\(PeftAdapter.weightsFile)") && exists("\(runFolder)/last/\(PeftAdapter.configFile)"))
        } else {
            #expect(exists("\(runFolder)/last/model.safetensors") && exists("\(runFolder)/last/config.json"))
        }
        #expect(try trainSteps(runFolder) == [1])
        if program == "distill" { #expect(exists("\(runFolder)/distill_report.json")) }
    }
}

/// The parameters of a saved checkpoint, as the framework loads it.
func parameterCount(_ checkpoint: String) throws -> Int {
    switch try Pretrained.load(checkpoint).model {
    case .dualEncoder(let model): return model.parameterCount
    case .textEncoder(let model, _): return model.parameterCount
    }
}

/// A tiny random CLIP in the layout of openai/clip-vit-base-patch32 (CLIPModel config,
/// model.safetensors, vocab.json + merges.txt), standing in for that download.
enum TinyCLIP {
    static let folder: Result<String, ProgramError> = {
        do {
            let folder = temporaryFolder("tinyclip") + "/clip-vit-base-patch32"
            var text = CLIPTextConfig()
            text.hiddenSize = 32; text.intermediateSize = 64; text.numHiddenLayers = 1; text.numAttentionHeads = 2
            var vision = CLIPVisionConfig()
            vision.hiddenSize = 32; vision.intermediateSize = 64; vision.numHiddenLayers = 2; vision.numAttentionHeads = 2
            vision.imageSize = 32; vision.patchSize = 16
            let clip = DualEncoder(kind: .clip, vision: CLIPVisionTransformer(vision), text: CLIPTextTransformer(text), projectionDim: 16)
            try Pretrained.save(clip, to: folder)
            try CLIPTokenizer.writeHuggingFaceFiles(fromOpenCLIPMerges: URL(fileURLWithPath: Fixtures.bpe), to: URL(fileURLWithPath: folder))
            return .success(folder)
        } catch {
            return .failure(ProgramError("cannot make the tiny CLIP checkpoint: \(error)"))
        }
    }()
}
