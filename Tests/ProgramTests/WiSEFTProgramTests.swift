import Foundation
#if canImport(FoundationXML) && !CLIPTUNE_NO_FOUNDATION_XML   // (see ReportingTests.swift)
import FoundationXML
#endif
import Testing
import Models
import NN
import Torch
import TestSupport
import Training

@Suite("Program: wise-ft")
struct WiSEFTProgramTests {
    /// Two tiny runs of one recipe (2 and 8 steps) as the zero-shot and fine-tuned ends, two
    /// named sets, zero-shot classes, the best mix saved: the table on stdout, wise_ft.json and
    /// wise_ft.svg where --output says, and the ends measure what training measured.
    @Test func sweepsTwoSetsWritesTheReportAndSavesTheBestMix() throws {
        let zeroShot = try Trained.early.get(), fineTuned = try Trained.tiny.get()
        let folder = temporaryFolder()
        let result = try run("wise-ft", ["--zero-shot", zeroShot.last, "--fine-tuned", fineTuned.last, "--alphas", "1,0,0.5",
                                         "--data", "val=\(try Fixtures.valShards)", "--data", try Fixtures.valShards, "--classes", Fixtures.classes,
                                         "--batch-size", "16", "--save", "best", "--out", "\(folder)/mix", "--output", "\(folder)/report"])
        try #require(result.succeeded, "\(result)")
        #expect(result.stdout.contains("val (") && result.stdout.contains("val-0000 (") && result.stdout.contains("← best"), "\(result.stdout)")
        #expect(result.stdout.contains("best α ") && result.stdout.contains("wrote \(folder)/report/wise_ft.json"), "\(result.stdout)")
        #expect(result.stderr.contains("α 0.5 · val-0000: image_to_text_R@1 "), "\(result.stderr)")

        let json = try readObject("\(folder)/report/wise_ft.json")
        #expect(json["alphas"] as? [Double] == [0, 0.5, 1] && (json["sets"] as? [[String: Any]])?.map { $0["name"] as? String } == ["val", "val-0000"])
        let rows = try #require(json["results"] as? [[String: Any]])
        #expect(rows.count == 6)
        func metrics(_ alpha: Double, _ set: String) -> [String: Double] {
            numbers(rows.first { $0["alpha"] as? Double == alpha && $0["set"] as? String == set }?["metrics"])
        }
        // α = 0 and α = 1 are the two checkpoints: the numbers of their runs' last evaluations.
        for (alpha, run, step) in [(0.0, zeroShot, 2), (1.0, fineTuned, 8)] {
            let trained = try #require(try metricsLines(run.folder).last { $0.kind == "eval" && $0.step == step })
            for key in ["image_to_text_R@1", "text_to_image_R@5", "zeroshot_top1", "clip_val_loss"] {
                #expect(abs(metrics(alpha, "val")[key]! - trained.values[key]!) <= 1e-6, "α = \(alpha) \(key): \(metrics(alpha, "val")[key]!) vs \(trained.values[key]!)")
            }
        }
        let svg = try String(contentsOfFile: "\(folder)/report/wise_ft.svg", encoding: .utf8)
        #expect(svg.contains(">best α</text>") && svg.contains("zeroshot_top1"))
        #if !CLIPTUNE_NO_FOUNDATION_XML
        #expect(XMLParser(data: Data(svg.utf8)).parse(), "the plot is not well-formed XML")
        #endif

        // The saved mix is θ(best α) of the two checkpoints, in Hugging Face layout.
        let best = try #require((json["best"] as? [String: Any])?["alpha"] as? Double)
        #expect((json["saved"] as? [String: Any])?["alpha"] as? Double == best)
        let mix = try SafeTensors.load("\(folder)/mix/model.safetensors")
        let a = try SafeTensors.load("\(zeroShot.last)/model.safetensors"), b = try SafeTensors.load("\(fineTuned.last)/model.safetensors")
        for (name, tensor) in mix {
            #expect(tensor.equal(WiSEFT.interpolate(a[name]!, b[name]!, alpha: best)), "\(name)")
        }
        guard case .dualEncoder = try Pretrained.load("\(folder)/mix").model else { Issue.record("the mix is not a dual encoder"); return }
        #expect(exists("\(folder)/mix/vocab.json") && exists("\(folder)/mix/preprocessor_config.json"))
    }

    /// Without --output the report goes beside the fine-tuned checkpoint (a run's folder for its
    /// best/), replacing an earlier report there and nothing else.
    @Test func theDefaultOutputIsTheFineTunedCheckpointsFolder() throws {
        let zeroShot = try Trained.early.get(), fineTuned = try Trained.tiny.get()
        let folder = temporaryFolder()
        try FileManager.default.createDirectory(atPath: "\(folder)/run", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: fineTuned.last, toPath: "\(folder)/run/best")
        let arguments = ["--zero-shot", zeroShot.last, "--fine-tuned", "\(folder)/run/best", "--alphas", "0,1", "--data", try Fixtures.valShards, "--batch-size", "16"]
        for _ in 0..<2 {
            let result = try run("wise-ft", arguments)
            try #require(result.succeeded, "\(result)")
        }
        #expect(exists("\(folder)/run/wise_ft.json") && exists("\(folder)/run/wise_ft.svg"))
        // A file of that name it did not write is never replaced.
        try "{}".write(toFile: "\(folder)/run/wise_ft.json", atomically: true, encoding: .utf8)
        let refused = try run("wise-ft", arguments)
        #expect(refused.status == 1 && refused.stderr.contains("which is not an earlier wise-ft output"), "\(refused)")
    }

    /// Mistakes in the flags are usage errors (64); a pair that cannot be interpolated and a
    /// checkpoint written inside an input are errors naming the problem (1).
    @Test func badInputIsRefusedWithTheProblemNamed() throws {
        let fineTuned = try Trained.tiny.get()
        let data = ["--data", try Fixtures.valShards]
        let folder = temporaryFolder()
        func usage(_ arguments: [String], _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let result = try run("wise-ft", ["--zero-shot", fineTuned.last, "--fine-tuned", fineTuned.last] + arguments)
            #expect(result.status == 64 && result.stderr.contains(fragment) && result.stderr.contains("Usage:"), "\(result)", sourceLocation: sourceLocation)
        }
        try usage(data + ["--alphas", "0,1.5"], "--alphas: α 1.5 is outside [0, 1]")
        try usage(data + ["--alphas", "0,nan"], "--alphas: α is NaN")
        try usage(data + ["--save", "1.5", "--out", "\(folder)/x"], "--save α 1.5 is outside [0, 1]")
        try usage(data + ["--save", "0.5"], "--save and --out go together")
        try usage(data + ["--metric", "zeroshot_top1"], "zero-shot metrics need --classes")
        try usage([], "give at least one --data set")
        try usage(data + ["--label-column", "label", "--classes", Fixtures.classes], "--label-column names a manifest column")

        // Another architecture (patch 16, not 8): the fields and tensors that differ.
        let other = try run("wise-ft", ["--zero-shot", try TinyCLIP.folder.get(), "--fine-tuned", fineTuned.last, "--output", folder] + data)
        #expect(other.status == 1 && !other.stderr.contains("Usage:"), "\(other)")
        #expect(other.stderr.contains("their architectures differ in") && other.stderr.contains("vision_config.patch_size 16 vs 8"), "\(other)")
        // --out inside an input.
        let inside = try run("wise-ft", ["--zero-shot", fineTuned.last, "--fine-tuned", fineTuned.last, "--output", folder,
                                         "--save", "0.5", "--out", "\(fineTuned.last)/mix"] + data)
        #expect(inside.status == 1 && inside.stderr.contains("lies inside the --zero-shot checkpoint"), "\(inside)")
        #expect(!exists("\(fineTuned.last)/mix"))
    }
}
