import Foundation
import Testing
import Datasets
import Models
import NN
import Tokenizers
import Torch
@testable import Training

/// Bit-for-bit equality: same dtype, shape and bytes (NaN, −0 and inf included).
private func identical(_ a: Tensor, _ b: Tensor) -> Bool {
    a.dtype == b.dtype && a.shape == b.shape && a.contiguous().bytes() == b.contiguous().bytes()
}

/// A tiny CLIP (ViT 32 px / patch 16, width 32; a 1-layer text tower). Its random weights come
/// from the shared generator, but no test here depends on their values.
private func tinyCLIP(visionWidth: Int = 32) -> DualEncoder {
    var text = CLIPTextConfig()
    text.hiddenSize = 32; text.intermediateSize = 64; text.numHiddenLayers = 1; text.numAttentionHeads = 2; text.maxPositionEmbeddings = 40
    var vision = CLIPVisionConfig()
    vision.hiddenSize = visionWidth; vision.intermediateSize = 64; vision.numHiddenLayers = 2; vision.numAttentionHeads = 2
    vision.imageSize = 32; vision.patchSize = 16
    return DualEncoder(kind: .clip, vision: CLIPVisionTransformer(vision), text: CLIPTextTransformer(text), projectionDim: 16)
}

/// Saves `model` as a checkpoint folder with open_clip's tokenizer files.
private func save(_ model: DualEncoder, to folder: String) throws {
    try Pretrained.save(model, to: folder)
    try CLIPTokenizer.writeHuggingFaceFiles(fromOpenCLIPMerges: URL(fileURLWithPath: "\(repositoryRoot)/.deps/assets/bpe_simple_vocab_16e6.txt.gz"),
                                            to: URL(fileURLWithPath: folder))
}

/// Every float weight of `model` times `factor` (a "fine-tuned" copy, without random draws).
private func scaled(_ model: DualEncoder, by factor: Double) {
    withNoGrad { for (_, t) in model.stateDict() where t.dtype.isFloatingPoint { t.copy_(t.mul(factor)) } }
}

/// Modules with the tensors the refusal tests need (no architecture to compare).
private final class Weights: Module {
    let weight: Tensor
    let ids: Buffer?
    let extra: Tensor?
    init(_ weight: Tensor, ids: [Int64]? = nil, extra: Bool = false) {
        self.weight = weight
        self.ids = ids.map { Buffer(Tensor($0)) }
        self.extra = extra ? Tensor.zeros([2]) : nil
    }
}

@Suite("WiSE-FT")
struct WiSEFTTests {
    @Test func endsAreExactAndTheMiddleIsComputedInFloat32() throws {
        // −0, inf and NaN: (1 − α)·a + α·b would turn them into +0 or NaN at the ends.
        let a = Tensor([Float(-0.0), 1.5, .infinity, 3, -2, .nan], shape: [2, 3])
        let b = Tensor([Float(2), .infinity, 7, -0.0, 0.25, 1], shape: [2, 3])
        #expect(identical(WiSEFT.interpolate(a, b, alpha: 0), a))
        #expect(identical(WiSEFT.interpolate(a, b, alpha: 1), b))
        let x = [Float(0.1), 0.2, -0.3, 4], y = [Float(1), -0.5, 0.7, 8]
        let half = WiSEFT.interpolate(Tensor(x), Tensor(y), alpha: 0.5)
        #expect(half.dtype == .float32 && half.toArray(Float.self) == zip(x, y).map { 0.5 * $0 + 0.5 * $1 })
        let third = WiSEFT.interpolate(Tensor(x), Tensor(y), alpha: 0.3).toArray(Float.self)
        for (value, (p, q)) in zip(third, zip(x, y)) { #expect(abs(Double(value) - (0.7 * Double(p) + 0.3 * Double(q))) < 1e-6) }
        // Half precision stays half precision, mixed in float32 and rounded once.
        let a16 = Tensor(x).to(.bfloat16), b16 = Tensor(y).to(.bfloat16)
        let mixed = WiSEFT.interpolate(a16, b16, alpha: 0.3)
        #expect(mixed.dtype == .bfloat16)
        #expect(identical(mixed, a16.to(.float32).mul(0.7).add(b16.to(.float32).mul(0.3)).to(.bfloat16)))

        // A whole model: θ(0) and θ(1) are the two state dicts bit for bit, θ(0.5) the mean.
        let zero = tinyCLIP(), fine = tinyCLIP()
        let pair = try WeightPair(zeroShot: zero, fineTuned: fine, names: ("A", "B"))
        let start = Dictionary(zero.stateDict().map { ($0.name, $0.tensor.clone()) }, uniquingKeysWith: { a, _ in a })
        let end = Dictionary(fine.stateDict().map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
        let (at0, at1, at5) = (try pair.interpolated(0), try pair.interpolated(1), try pair.interpolated(0.5))
        #expect(Set(at0.keys) == Set(start.keys) && at0.keys.contains("logit_scale"))
        for (name, tensor) in start {
            #expect(identical(at0[name]!, tensor), "\(name) at α = 0")
            #expect(identical(at1[name]!, end[name]!), "\(name) at α = 1")
            let p = tensor.toArray(Float.self), q = end[name]!.toArray(Float.self)
            #expect(at5[name]!.toArray(Float.self) == zip(p, q).map { 0.5 * $0 + 0.5 * $1 }, "\(name) at α = 0.5")
        }
        // Loading a mix into the zero-shot model leaves the pair's copy of θ0 alone.
        _ = try zero.load(at5)
        #expect(identical(try pair.interpolated(0)["logit_scale"]!, start["logit_scale"]!))
    }

    @Test func badAlphasAreRefusedNamingTheValue() throws {
        func message(_ body: () throws -> Void) -> String {
            do { try body() } catch { return "\(error)" }
            return "no error"
        }
        #expect(message { try WiSEFT.check(alpha: 1.5) }.contains("α 1.5 is outside [0, 1]"))
        #expect(message { try WiSEFT.check(alpha: -0.1) }.contains("α -0.1 is outside [0, 1]"))
        #expect(message { try WiSEFT.check(alpha: .nan) }.contains("α is NaN"))
        let pair = try WeightPair(zeroShot: Weights(Tensor([Float(1)])), fineTuned: Weights(Tensor([Float(2)])), names: ("A", "B"))
        #expect(message { _ = try pair.interpolated(1.5) }.contains("1.5 is outside [0, 1]"))
        #expect(try WiSEFT.parseAlphas("1, 0,0.25") == [0, 0.25, 1])
        #expect(WiSEFT.defaultAlphas.count == 11 && WiSEFT.defaultAlphas[3] == 0.3)
        #expect(message { _ = try WiSEFT.parseAlphas("0,1.5") }.contains("--alphas: α 1.5 is outside [0, 1]"))
        #expect(message { _ = try WiSEFT.parseAlphas("0,nan") }.contains("--alphas: α is NaN"))
        #expect(message { _ = try WiSEFT.parseAlphas("0,x") }.contains("'x' is not a number"))
        #expect(message { _ = try WiSEFT.parseAlphas("0.5,0.5") }.contains("α 0.5 is listed twice"))
        #expect(message { _ = try WiSEFT.parseAlphas("0,,1") }.contains("an empty entry"))
        #expect(try WiSEFTJob.SaveChoice.parse("best") == .best && WiSEFTJob.SaveChoice.parse("0.4") == .alpha(0.4))
        #expect(message { _ = try WiSEFTJob.SaveChoice.parse("2") }.contains("--save α 2 is outside [0, 1]"))
    }

    @Test func pairsThatDifferAreRefusedWithWhatDiffers() throws {
        func refusal(_ a: Module, _ b: Module) -> String {
            do { _ = try WeightPair(zeroShot: a, fineTuned: b, names: ("zs", "ft")) } catch { return "\(error)" }
            return "accepted"
        }
        // Architecture: the config fields that differ, and the tensors whose shapes follow.
        let wide = refusal(tinyCLIP(), tinyCLIP(visionWidth: 48))
        #expect(wide.hasPrefix("cannot interpolate zs (zero-shot) and ft (fine-tuned): their architectures differ in "), "\(wide)")
        #expect(wide.contains("vision_config.hidden_size 32 vs 48"), "\(wide)")
        #expect(wide.contains("; 38 tensors differ in shape: vision_model.embeddings.class_embedding [32] vs [48], ") && wide.contains(", … (34 more)"), "\(wide)")
        // A tensor only in one (SigLIP's logit_bias also changes the saved model type).
        let biased = tinyCLIP()
        biased.logitBias = Tensor.full([], -10.0)
        let bias = refusal(tinyCLIP(), biased)
        #expect(bias.contains("1 tensor only in the fine-tuned model: logit_bias") && bias.contains("model_type clip vs cliptune-dual-encoder"), "\(bias)")
        #expect(refusal(Weights(Tensor.zeros([3]), extra: true), Weights(Tensor.zeros([3]))).contains("1 tensor only in the zero-shot model: extra"))
        #expect(refusal(Weights(Tensor.zeros([2, 3])), Weights(Tensor.zeros([3, 2]))).contains("1 tensor differs in shape: weight [2, 3] vs [3, 2]"))
        let dtype = refusal(Weights(Tensor.zeros([3])), Weights(Tensor.zeros([3]).to(.float64)))
        #expect(dtype.contains("1 tensor differs in dtype: weight \(DType.float32) vs \(DType.float64)"), "\(dtype)")
        // Non-float tensors are never mixed: equal, they are kept; different, the pair is refused.
        let ids = refusal(Weights(Tensor.zeros([3]), ids: [1, 2, 3]), Weights(Tensor.zeros([3]), ids: [1, 2, 4]))
        #expect(ids.contains("1 non-float tensor differs (ids)"), "\(ids)")
        let same = try WeightPair(zeroShot: Weights(Tensor([Float(0), 2]), ids: [1, 2, 3]), fineTuned: Weights(Tensor([Float(1), 4]), ids: [1, 2, 3]), names: ("a", "b"))
        let mix = try same.interpolated(0.5)
        #expect(mix["ids"]!.dtype == .int64 && mix["ids"]!.toArray(Int64.self) == [1, 2, 3] && mix["weight"]!.toArray(Float.self) == [0.5, 3])
    }

    @Test func theResultPicksTheBestMeanAndWritesTableJSONAndPlot() throws {
        func row(_ r1: Double, _ loss: Double) -> [String: Double] {
            ["image_to_text_R@1": r1, "text_to_image_R@1": r1 / 2, "image_to_text_R@5": 1, "clip_val_loss": loss, "zeroshot_top1": r1, "val_samples": 32]
        }
        var result = WiSEFTResult(zeroShot: "zs", fineTuned: "runs/x/best", alphas: [0, 0.5, 1],
                                  sets: [.init(name: "val", data: "val.tar", samples: 32, zeroShot: true), .init(name: "other", data: "o.csv", samples: 32, zeroShot: true)],
                                  metrics: [[row(0.25, 2), row(0.25, 2)], [row(0.5, 1.5), row(0.5, .nan)], [row(0.75, 1), row(0.25, 1)]],
                                  watched: Evaluation.metrics(retrieval: true, zeroShot: true)[0])
        // Means 0.25, 0.5, 0.5: the tie goes to the smaller α.
        #expect(result.watchedMeans == [0.25, 0.5, 0.5])
        #expect(result.bestIndex == 1 && result.bestAlpha == 0.5)
        result.watched = MetricDefinition("clip_val_loss", .min)
        #expect(result.bestAlpha == 1, "the loss is a min metric; NaN is left out of the mean")
        result.watched = Evaluation.metrics(retrieval: true, zeroShot: true)[0]
        result.saved = (0.5, "mix")

        let json = try #require(try JSONSerialization.jsonObject(with: result.jsonData()) as? [String: Any])
        #expect(json["alphas"] as? [Double] == [0, 0.5, 1] && json["metric"] as? String == "image_to_text_R@1" && json["mode"] as? String == "max")
        #expect((json["best"] as? [String: Any])?["alpha"] as? Double == 0.5)
        #expect((json["saved"] as? [String: Any])?["path"] as? String == "mix")
        let rows = try #require(json["results"] as? [[String: Any]])
        #expect(rows.count == 6 && rows.map { $0["set"] as? String } == ["val", "other", "val", "other", "val", "other"])
        #expect((rows[3]["metrics"] as? [String: Any])?["clip_val_loss"] is NSNull, "NaN is written as null")
        #expect((json["sets"] as? [[String: Any]])?.map { $0["name"] as? String } == ["val", "other"])

        let table = result.table().split(separator: "\n").map(String.init)
        #expect(table.first == "val (val.tar, 32 pairs)")
        #expect(table.filter { $0.hasSuffix("← best") }.count == 2 && table.contains { $0.hasPrefix("0.50 ") && $0.hasSuffix("← best") })
        #expect(table.last == "best α 0.5: image_to_text_R@1 0.5000 (mean over 2 sets, higher is better); zero-shot 0.2500, fine-tuned 0.5000", "\(table)")

        #expect(result.metricNames.first == "image_to_text_R@1" && result.metricNames.count == 5)
        #if !CLIPTUNE_NO_FOUNDATION_XML   // (see ReportingTests.swift)
        let outline = try #require(XMLOutline.parse(WiSEFTPlot.svg(result)))
        #expect(outline.withClass("panel").count == result.metricNames.count)
        #expect(outline.withClass("series").count == 2 * result.metricNames.count)
        #expect(outline.withClass("best-marker").count == result.metricNames.count && outline.hasText("best α") && outline.hasText("α"))
        #expect(outline.hasText("WiSE-FT: zs → runs/x/best") && outline.hasText("clip_val_loss (lower is better)"))
        #endif
    }

    /// The sweep evaluates each α with the evaluation code: α = 0 and 1 measure exactly what the
    /// two checkpoints measure alone; a saved mix holds θ(α) and the zero-shot's tokenizer.
    @Test func theSweepMeasuresBothEndsExactlyAndSavesAMix() throws {
        let folder = temporaryFolder()
        let base = tinyCLIP()
        try save(base, to: "\(folder)/zs")
        scaled(base, by: 0.9)
        try save(base, to: "\(folder)/ft")
        let classes = try ZeroShotClasses.load("\(repositoryRoot)/Data/shapes/classes.json")
        let source = try DatasetSource.open("\(TinyShapes.folder)/val-0000.tar.zst")
        let sets = [WiSEFTDataset(name: "val", path: "val-0000.tar.zst", source: source, zeroShot: classes),
                    WiSEFTDataset(name: "plain", path: "val-0000.tar.zst", source: source)]
        var settings = WiSEFTSettings()
        settings.alphas = [0, 0.5, 1]
        settings.batchSize = 16
        let interpolator = try WiSEFTInterpolator(zeroShot: try WiSEFT.loadForInterpolation("\(folder)/zs", role: "zs"),
                                                  fineTuned: try WiSEFT.loadForInterpolation("\(folder)/ft", role: "ft"))
        var lines: [String] = []
        let result = try interpolator.sweep(sets, settings: settings) { lines.append($0) }
        #expect(lines.count == 6 && lines[0].hasPrefix("α 0 · val: image_to_text_R@1 "), "\(lines)")
        #expect(result.sets.map(\.samples) == [32, 32] && result.sets.map(\.zeroShot) == [true, false])
        #expect(result.metrics[0][0]["zeroshot_top1"] != nil && result.metrics[0][1]["zeroshot_top1"] == nil)
        for (a, path) in [(0, "zs"), (2, "ft")] {
            let loaded = try Pretrained.load("\(folder)/\(path)")
            guard case .dualEncoder(let alone) = loaded.model else { Issue.record("not a dual encoder"); return }
            let loader = DataLoader(source: source, pipeline: ImagePipeline(preprocessing: try #require(loaded.preprocessing)),
                                    options: DataLoaderOptions(batchSize: 16, shuffle: false))
            let expected = try Evaluation.evaluate(alone, loader: loader, tokenizer: try loaded.tokenizer(), zeroShot: classes)
            #expect(Set(result.metrics[a][0].keys) == Set(expected.keys))
            for (key, value) in expected {
                #expect(abs(result.metrics[a][0][key]! - value) <= 1e-9, "α = \(result.alphas[a]): \(key) \(result.metrics[a][0][key]!), \(path) alone \(value)")
            }
        }
        #expect(result.metrics[1][0]["clip_val_loss"] != result.metrics[0][0]["clip_val_loss"])

        try interpolator.save(alpha: 0.5, to: "\(folder)/mix")
        let saved = try SafeTensors.load("\(folder)/mix/model.safetensors"), zs = try SafeTensors.load("\(folder)/zs/model.safetensors")
        let ft = try SafeTensors.load("\(folder)/ft/model.safetensors")
        #expect(Set(saved.keys) == Set(zs.keys))
        for (name, tensor) in saved { #expect(identical(tensor, WiSEFT.interpolate(zs[name]!, ft[name]!, alpha: 0.5)), "\(name)") }
        for file in ["vocab.json", "merges.txt", "preprocessor_config.json", "config.json"] {
            #expect(FileManager.default.fileExists(atPath: "\(folder)/mix/\(file)"), "\(file) is missing")
        }
    }

    @Test func setsAreNamedAfterTheirFiles() {
        #expect(WiSEFTDataset.name(forPath: "Data/shapes/val-{0000..0001}.tar.zst") == "val")
        #expect(WiSEFTDataset.name(forPath: "/x/coco/test.CSV") == "test" && WiSEFTDataset.name(forPath: "a/b.tar") == "b")
        #expect(WiSEFTDataset.name(forPath: "shards/{0..3}.tar") == "data")
        #expect(WiSEFTDataset.unique(["val", "val", "x", "val"]) == ["val", "val-2", "x", "val-3"])
        #expect(WiSEFTJob.splitName("coco=/data/coco.csv") == ("coco", "/data/coco.csv"))
        #expect(WiSEFTJob.splitName("/data/a=b.csv").name == nil && WiSEFTJob.splitName("x.csv").name == nil)
    }
}
