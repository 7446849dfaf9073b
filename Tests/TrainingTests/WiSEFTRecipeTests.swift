import Foundation
import Testing
import Datasets
import Models
import NN
import Tokenizers
import Torch
@testable import Training

/// A tiny CLIP checkpoint folder (config, weights, open_clip's tokenizer files) for runs to start from.
private func tinyCLIPCheckpoint(_ folder: String) throws -> String {
    var text = CLIPTextConfig()
    text.hiddenSize = 32; text.intermediateSize = 64; text.numHiddenLayers = 1; text.numAttentionHeads = 2; text.maxPositionEmbeddings = 40
    var vision = CLIPVisionConfig()
    vision.hiddenSize = 32; vision.intermediateSize = 64; vision.numHiddenLayers = 2; vision.numAttentionHeads = 2
    vision.imageSize = 32; vision.patchSize = 16
    let path = "\(folder)/start"
    try Pretrained.save(DualEncoder(kind: .clip, vision: CLIPVisionTransformer(vision), text: CLIPTextTransformer(text), projectionDim: 16), to: path)
    try CLIPTokenizer.writeHuggingFaceFiles(fromOpenCLIPMerges: URL(fileURLWithPath: "\(repositoryRoot)/.deps/assets/bpe_simple_vocab_16e6.txt.gz"),
                                            to: URL(fileURLWithPath: path))
    return path
}

/// A recipe fine-tuning `checkpoint` on the tiny shapes for `steps` steps, with `wiseFT` as its section.
private func fineTuning(_ checkpoint: String, runs: String, steps: Int, wiseFT: String, extra: [String] = []) throws -> Recipe {
    let json = """
    {
      "name": "wise", "seed": 3, "model": {"checkpoint": "\(checkpoint)"},
      "data": {"train": {"shards": "\(TinyShapes.folder)/train-{0000..0001}.tar.zst"}, "val": {"shards": "\(TinyShapes.folder)/val-0000.tar.zst"},
               "batch_size": 16, "threads": 2},
      "optimizer": {"lr": 2e-3}, "schedule": {"type": "constant"},
      "eval": {"every_steps": 2, "every_epoch": false, "zeroshot": {"classes": "\(repositoryRoot)/Data/shapes/classes.json"}},
      "checkpoint": {"directory": "\(runs)"},
      "max_steps": \(steps), "log_every_steps": 2, "wise_ft": \(wiseFT)
    }
    """
    return try Recipe.decode(try Recipe.applying(overrides: extra, to: Data(json.utf8), file: "test"), file: "test", defaultName: "wise")
}

/// The problems a recipe (JSON text) is refused with.
private func problems(_ json: String) -> [RecipeError] {
    do {
        _ = try Recipe.decode(Data(json.utf8), file: "r.json", defaultName: "r")
        return []
    } catch {
        return error.errors
    }
}

@Suite("WiSE-FT recipe section")
struct WiSEFTRecipeTests {
    @Test func theSectionDecodesAndMistakesAreNamed() throws {
        let base = #""data": {"train": "t.tar", "val": "v.tar"}, "max_steps": 1"#
        // Defaults, extra sets as paths or objects, and the resolved recipe reads back the same.
        let recipe = try Recipe.decode(Data(#"{\#(base), "model": {"checkpoint": "ck"}, "wise_ft": {"extra_val": ["a.csv", {"shards": "b-{0..1}.tar"}], "save_best": true}}"#.utf8),
                                       file: "r.json", defaultName: "r")
        let section = try #require(recipe.wiseFT)
        #expect(section.alphas == WiSEFT.defaultAlphas && section.zeroShot == nil && section.saveBest)
        #expect(section.extraVal == [.manifest(Recipe.Manifest(path: "a.csv")), .shards("b-{0..1}.tar")])
        #expect(try Recipe.decode(recipe.resolvedJSON(), file: "resolved", defaultName: "r") == recipe)

        // A run from scratch has no zero-shot model.
        let scratch = problems(#"{\#(base), "wise_ft": {}}"#)
        #expect(scratch.map(\.path) == ["wise_ft"] && scratch[0].message.contains("this run starts from scratch (no model.checkpoint)"), "\(scratch)")
        // Towers joined from separate checkpoints: zero_shot must name the dual encoder.
        let towers = problems(#"{\#(base), "model": {"vision": {"checkpoint": "v"}}, "wise_ft": {}}"#)
        #expect(towers.map(\.path) == ["wise_ft"] && towers[0].message.contains("name the dual encoder to interpolate with in wise_ft.zero_shot"), "\(towers)")
        #expect(problems(#"{\#(base), "model": {"vision": {"checkpoint": "v"}}, "wise_ft": {"zero_shot": "zs"}}"#).isEmpty)
        // α outside [0, 1], repeated, or none.
        let alphas = problems(#"{\#(base), "model": {"checkpoint": "ck"}, "wise_ft": {"alphas": [0, 1.5, 0.5, 0.5]}}"#)
        #expect(alphas.map(\.message) == ["α 1.5 is outside [0, 1] (0: the zero-shot model, 1: the fine-tuned model)", "α 0.5 is listed more than once"], "\(alphas)")
        #expect(alphas.allSatisfy { $0.path == "wise_ft.alphas" })
        #expect(problems(#"{\#(base), "model": {"checkpoint": "ck"}, "wise_ft": {"alphas": []}}"#).map(\.message) == ["must list at least one α"])
        // best/ and the data it is chosen on; train only.
        let noBest = problems(#"{\#(base), "model": {"checkpoint": "ck"}, "checkpoint": {"keep_best": false}, "wise_ft": {}}"#)
        #expect(noBest.contains { $0.path == "wise_ft" && $0.message.contains("checkpoint.keep_best false") }, "\(noBest)")
        let noVal = problems(#"{"data": {"train": "t.tar"}, "max_steps": 1, "model": {"checkpoint": "ck"}, "wise_ft": {}}"#)
        #expect(noVal.contains { $0.path == "wise_ft" && $0.message.contains("needs data.val") }, "\(noVal)")
        let distill = problems(#"{\#(base), "model": {"checkpoint": "ck"}, "distill": {"teacher": "t"}, "wise_ft": {}}"#)
        #expect(distill.contains { $0.path == "wise_ft" && $0.message.contains("applies to `train` runs") }, "\(distill)")
        // An extra set that is neither an object nor a path.
        let bad = problems(#"{\#(base), "model": {"checkpoint": "ck"}, "wise_ft": {"extra_val": [3, {"shards": "x.tar", "manifest": "y.csv"}]}}"#)
        #expect(bad.map(\.path) == ["wise_ft.extra_val.0", "wise_ft.extra_val.1"], "\(bad)")
        // Files it names must exist.
        let named = try Recipe.decode(Data(#"{\#(base), "model": {"checkpoint": "ck"}, "wise_ft": {"zero_shot": "zs", "extra_val": ["e.csv"]}}"#.utf8),
                                      file: "r.json", defaultName: "r")
        let files = named.problemsWithPaths(relativeTo: "/nowhere") { _ in false }
        #expect(files.contains { $0.path == "wise_ft.zero_shot" } && files.contains { $0.path == "wise_ft.extra_val.0.manifest" }, "\(files)")
    }

    /// A pair that could not be interpolated fails before training: a CLIP checkpoint trained
    /// with the SigLIP loss gains logit_bias.
    @Test func anIncompatiblePairIsRefusedBeforeTraining() throws {
        let folder = temporaryFolder()
        let start = try tinyCLIPCheckpoint(folder)
        let recipe = try fineTuning(start, runs: "\(folder)/runs", steps: 2, wiseFT: "{}", extra: ["loss.type=siglip"])
        let error = #expect(throws: RecipeErrors.self) { try RunBuilder.contrastive(recipe, resolved: nil) }
        #expect(error?.errors.map(\.path) == ["wise_ft"])
        #expect("\(error!)".contains("1 tensor only in the fine-tuned model: logit_bias") && "\(error!)".contains("loss.type siglip adds logit_bias"), "\(error!)")
    }

    /// At the end of a run: the starting checkpoint and best/ interpolated, every α evaluated on
    /// data.val and an extra set, wise_ft.json / wise_ft.svg / wise_ft_best/ in the run folder;
    /// α = 1 on data.val measures what training measured for best/.
    @Test func theEndOfARunInterpolatesItsStartWithItsBest() throws {
        let folder = temporaryFolder()
        let start = try tinyCLIPCheckpoint(folder)
        let recipe = try fineTuning(start, runs: "\(folder)/runs", steps: 4,
                                    wiseFT: #"{"alphas": [1, 0, 0.5], "save_best": true, "extra_val": ["\#(TinyShapes.folder)/val-0000.tar.zst"]}"#)
        let setup = try RunBuilder.contrastive(recipe, resolved: recipe.resolvedJSON())
        let plan = try #require(setup.wiseFT)
        #expect(plan.zeroShot == start && plan.sets.map(\.name) == ["val", "val-0000"] && plan.settings.alphas == [0, 0.5, 1])
        #expect(plan.settings.metric == setup.best && plan.sets.allSatisfy { $0.zeroShot != nil })
        let trainer = try Trainer(setup, resume: false)
        let result = try #require(try trainer.run().wiseFT)
        let run = "\(folder)/runs/wise"

        let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(run)/wise_ft.json"))) as? [String: Any])
        #expect(json["zero_shot"] as? String == start && json["fine_tuned"] as? String == trainer.bestFolder)
        #expect(json["alphas"] as? [Double] == [0, 0.5, 1] && json["metric"] as? String == "image_to_text_R@1")
        #expect((json["results"] as? [Any])?.count == 6)
        let best = try #require(result.bestAlpha)
        #expect((json["best"] as? [String: Any])?["alpha"] as? Double == best)
        #expect((json["saved"] as? [String: Any])?["path"] as? String == "\(run)/wise_ft_best")
        let svg = try String(contentsOfFile: "\(run)/wise_ft.svg", encoding: .utf8)
        #expect(svg.contains("WiSE-FT: \(start) → \(trainer.bestFolder)"))
        #if !CLIPTUNE_NO_FOUNDATION_XML   // (see ReportingTests.swift)
        #expect(XMLOutline.parse(svg)?.withClass("panel").count == result.metricNames.count)
        #endif

        // α = 1 is best/: on data.val it measures what the run's evaluation at the best step did.
        let bestStep = try #require(trainer.state.bestStep)
        let record = try #require(try MetricsLog.read("\(run)/metrics.jsonl").first { $0.kind == .eval && $0.step == bestStep })
        for key in ["image_to_text_R@1", "text_to_image_R@5", "zeroshot_top1", "clip_val_loss"] {
            #expect(abs(result.metrics[2][0][key]! - record.values[key]!) <= 1e-5, "\(key): α = 1 \(result.metrics[2][0][key]!), best/ \(record.values[key]!)")
        }
        // The two copies of the validation set measure the same.
        #expect(result.metrics.allSatisfy { $0[0] == $0[1] })
        // The saved mix loads, with the starting checkpoint's tokenizer.
        guard case .dualEncoder = try Pretrained.load("\(run)/wise_ft_best").model else { Issue.record("wise_ft_best/ is not a dual encoder"); return }
        #expect(FileManager.default.fileExists(atPath: "\(run)/wise_ft_best/vocab.json"))
    }
}
