import Foundation
import Testing
import Datasets
import Models
import NN
import Tokenizers
import Torch
@testable import Training
import TestSupport

/// transformers (5.23, in `.deps/python`, which Scripts/bootstrap makes and CI has) loading one
/// of our checkpoint folders and computing with it, compared with what we compute.
enum Transformers {
    static let python = "\(repositoryRoot)/.deps/python"
    static let miniLM = "\(repositoryRoot)/.deps/assets/all-MiniLM-L6-v2"

    /// Arguments: the checkpoint folder, "remote" or "plain", our tensors, the captions (JSON),
    /// where to write the report (not stdout, where transformers asks its custom-code question),
    /// and where to save the model again with `save_pretrained` (for our loader to read back).
    /// Remote: loading without trust_remote_code (left out, when transformers asks and stdin
    /// answers nothing; and False) must raise. Then the model is loaded (with trust_remote_code
    /// for "remote", without for "plain"), the captions are tokenized by the folder's own
    /// tokenizer (AutoTokenizer) and the embeddings and logits compared with ours.
    static let script = """
    import json, sys, torch
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    folder, mode, ours_path, captions_path, report_path, resaved = sys.argv[1:7]
    ours = load_file(ours_path)
    captions = json.load(open(captions_path))
    report = {"refusals": []}
    if mode == "remote":
        for kwargs in ({}, {"trust_remote_code": False}):
            try:
                AutoModel.from_pretrained(folder, **kwargs)
                report["refusals"].append(None)
            except Exception as error:
                report["refusals"].append(f"{type(error).__name__}: {error}")
    model, info = AutoModel.from_pretrained(folder, trust_remote_code=mode == "remote", output_loading_info=True)
    model.eval()
    tokens = AutoTokenizer.from_pretrained(folder)(captions, padding=True, return_tensors="pt")
    ids, mask, pixels = tokens["input_ids"], tokens["attention_mask"], ours["pixel_values"]
    with torch.no_grad():
        image = model.get_image_features(pixel_values=pixels).pooler_output
        text = model.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
        logits = model(input_ids=ids, attention_mask=mask, pixel_values=pixels).logits_per_image
    bias = getattr(model, "logit_bias", None)
    report.update(
        model=type(model).__name__,
        problems={key: sorted(map(str, value)) for key, value in info.items() if value},
        same_tokens=ids.tolist() == ours["input_ids"].tolist() and mask.tolist() == ours["attention_mask"].tolist(),
        image=(image - ours["image_embeds"]).abs().max().item(),
        text=(text - ours["text_embeds"]).abs().max().item(),
        logits=(logits - ours["logits_per_image"]).abs().max().item(),
        logit_bias=None if bias is None else bias.item(),
    )
    model.save_pretrained(resaved)
    json.dump(report, open(report_path, "w"))
    """

    /// Captions of the embedded data (the first alternative of the first validation samples),
    /// and two of our own with capitals, punctuation and an accent.
    static let captions: [String] = {
        let reader = try! ShardReader(path: "\(repositoryRoot)/Data/shapes/val-0000.tar.zst")
        var captions: [String] = []
        while captions.count < 5, case .success(let record)? = try! reader.next() { captions.append(record.captions[0]) }
        return captions + ["A RED circle, left of the blue square!", "un café: two tiny triangles"]
    }()

    struct Report {
        let json: [String: Any]
        var model: String? { json["model"] as? String }
        var problems: [String: Any] { json["problems"] as? [String: Any] ?? ["unreadable": true] }
        var sameTokens: Bool { json["same_tokens"] as? Bool == true }
        func difference(_ key: String) -> Double { (json[key] as? NSNumber)?.doubleValue ?? .infinity }
        var refusals: [String?] { (json["refusals"] as? [Any] ?? []).map { $0 as? String } }
        var logitBias: Double? { (json["logit_bias"] as? NSNumber)?.doubleValue }
        /// transformers' `save_pretrained` of the model, loaded by us, computes our embeddings exactly.
        var resavedIsTheSame = false
    }

    /// Loads `folder` with our loader, computes our embeddings and logits for `captions` (our
    /// tokenizer) and random pixels, and has transformers do the same.
    static func check(_ folder: String, remote: Bool) throws -> Report {
        let checkpoint = try Pretrained.load(folder)
        guard case .dualEncoder(let model) = checkpoint.model else { throw TrainingError(message: "\(folder) is not a dual encoder") }
        let size = try #require(model.visionModel as? CLIPVisionTransformer).config.imageSize
        let (ids, mask) = try checkpoint.tokenizer().encode(captions)
        let pixels = Tensor.randn([3, 3, size, size], generator: Generator(seed: 5))
        let work = temporaryFolder("transformers")
        try withNoGrad {
            let image = model.imageFeatures(pixels), text = model.textFeatures(ids: ids, attentionMask: mask)
            try SafeTensors.save(["pixel_values": pixels, "input_ids": ids, "attention_mask": mask, "image_embeds": image, "text_embeds": text,
                                  "logits_per_image": model.logitsPerImage(imageFeatures: image, textFeatures: text)],
                                 to: "\(work)/ours.safetensors")
        }
        try JSONSerialization.data(withJSONObject: captions).write(to: URL(fileURLWithPath: "\(work)/captions.json"))

        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", script, folder, remote ? "remote" : "plain", "\(work)/ours.safetensors", "\(work)/captions.json",
                             "\(work)/report.json", "\(work)/resaved"]
        // Remote code is copied into HF_MODULES_CACHE: a folder of this test's, not ~/.cache.
        // stdin from /dev/null: transformers' question about custom code gets no answer at once.
        process.environment = ProcessInfo.processInfo.environment.merging(["HF_MODULES_CACHE": "\(work)/modules", "HF_HUB_OFFLINE": "1"]) { _, b in b }
        process.standardInput = FileHandle.nullDevice
        for (path, stream) in [("\(work)/stdout.txt", 1), ("\(work)/stderr.txt", 2)] {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            if stream == 1 { process.standardOutput = handle } else { process.standardError = handle }
        }
        try process.run()
        process.waitUntilExit()
        let stderr = (try? String(contentsOfFile: "\(work)/stderr.txt", encoding: .utf8)) ?? ""
        try #require(process.terminationStatus == 0,
                     "transformers could not load \(folder) (Scripts/bootstrap installs it into .deps/python):\n\(stderr.suffix(3000))")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(work)/report.json"))) as? [String: Any])
        // And what transformers saves again, our loader reads to the same model.
        let resaved = try dualEncoder(Pretrained.load("\(work)/resaved"))
        let same = withNoGrad {
            resaved.imageFeatures(pixels).equal(model.imageFeatures(pixels))
                && resaved.textFeatures(ids: ids, attentionMask: mask).equal(model.textFeatures(ids: ids, attentionMask: mask))
                && resaved.logitBias?.item(Double.self) == model.logitBias?.item(Double.self)
        }
        var report = Report(json: json)
        report.resavedIsTheSame = same
        print("transformers vs ours, \(folder) (\(report.model ?? "?")): image \(report.difference("image")), text \(report.difference("text")), logits \(report.difference("logits"))")
        for refusal in report.refusals { print("  without trust_remote_code: \(refusal ?? "LOADED")") }
        return report
    }

    /// The checks every checkpoint must pass: nothing missing or unexpected, the folder's
    /// tokenizer gives our tokens, embeddings and logits within 1e-4; with remote code, loading
    /// without `trust_remote_code=True` raises.
    static func expectSame(_ report: Report, remote: Bool, model: String, _ name: String) {
        #expect(report.model == model, "\(name): \(report.json)")
        #expect(report.problems.isEmpty, "\(name): loading problems \(report.problems)")
        #expect(report.sameTokens, "\(name): AutoTokenizer's tokens differ from ours")
        #expect(report.resavedIsTheSame, "\(name): transformers' save_pretrained, loaded by us, computes something else")
        for key in ["image", "text", "logits"] { #expect(report.difference(key) <= 1e-4, "\(name) \(key): \(report.difference(key))") }
        if remote {
            #expect(report.refusals.count == 2, "\(name): \(report.json)")
            for refusal in report.refusals {
                #expect(refusal?.hasPrefix("ValueError: ") == true && refusal?.contains("trust_remote_code=True") == true,
                        "\(name): loading without trust_remote_code did not fail: \(refusal ?? "it loaded")")
            }
        }
    }

    /// What a checkpoint folder says about itself: config.json, and whether the remote code is
    /// there (and exactly ours).
    static func config(_ folder: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(folder)/config.json"))) as? [String: Any])
    }

    static func expectRemoteCodeFiles(_ folder: String, _ name: String) throws {
        let config = try config(folder)
        #expect(config["model_type"] as? String == Pretrained.remoteCodeModelType, "\(name)")
        #expect(config["auto_map"] as? [String: String] == Pretrained.remoteCodeAutoMap, "\(name)")
        #expect(config["architectures"] as? [String] == [Pretrained.remoteCodeArchitecture], "\(name)")
        let code = FileManager.default.contents(atPath: "\(folder)/\(Pretrained.remoteCodeFile)")
        #expect(code == Data(Pretrained.remoteCodeSource.utf8), "\(name): \(Pretrained.remoteCodeFile) is missing or not ours")
    }

    static func expectPlainFiles(_ folder: String, modelType: String, _ name: String) throws {
        let config = try config(folder)
        #expect(config["model_type"] as? String == modelType, "\(name)")
        #expect(config["auto_map"] == nil && config["text_pooling"] == nil && config["logit_bias_init_value"] == nil, "\(name): \(config)")
        #expect(!FileManager.default.fileExists(atPath: "\(folder)/\(Pretrained.remoteCodeFile)"), "\(name)")
    }

    static func vision() -> CLIPVisionTransformer {
        var config = CLIPVisionConfig()
        config.imageSize = 32; config.patchSize = 8; config.hiddenSize = 32; config.numHiddenLayers = 1; config.numAttentionHeads = 2
        config.intermediateSize = 64
        return CLIPVisionTransformer(config)
    }

    /// A 1-layer BERT of width 32 on all-MiniLM-L6-v2's WordPiece vocabulary.
    static func bert(pooling: TextPooling, withPooler: Bool) throws -> BertModel {
        let tokenizer = try TensorTokenizer.fromDirectory(miniLM)
        var config = BertConfig()
        config.vocabSize = try #require(tokenizer.tokenizer as? WordPieceTokenizer).vocabularySize
        config.hiddenSize = 32; config.numHiddenLayers = 1; config.numAttentionHeads = 2; config.intermediateSize = 64
        config.maxPositionEmbeddings = 40
        return BertModel(config, pooling: pooling, withPooler: withPooler)
    }

    static let clipTokenizerFolder: String = {
        let folder = temporaryFolder("cliptokenizer")
        try! CLIPTokenizer.writeHuggingFaceFiles(fromOpenCLIPMerges: URL(fileURLWithPath: "\(repositoryRoot)/.deps/assets/bpe_simple_vocab_16e6.txt.gz"),
                                                 to: URL(fileURLWithPath: folder))
        return folder
    }()

    static func clipText() -> CLIPTextTransformer {
        var config = CLIPTextConfig()
        config.hiddenSize = 32; config.numHiddenLayers = 1; config.numAttentionHeads = 2; config.intermediateSize = 64; config.maxPositionEmbeddings = 40
        return CLIPTextTransformer(config)
    }
}

/// Every checkpoint we write computes in transformers what it computes here, or transformers
/// refuses to load it: architectures transformers has are written in its plain layouts; the
/// others (BERT towers pooled by the mean or [CLS] state, BERT towers without a pooler, SigLIP's
/// logit bias) with remote code (`modeling_cliptune.py`, `auto_map`), under a `model_type` that
/// only that code defines.
@Suite("Checkpoints compute the same in transformers", .serialized)
struct TransformersInteropTests {
    /// clip-finetune's layout: the text tower comes from a sentence-transformers checkpoint with
    /// pooler weights and is pooled by the mean; a short real run saves it.
    @Test func meanPooledBERTWithAPoolerNeedsTheRemoteCode() throws {
        let folder = temporaryFolder()
        let textFolder = "\(folder)/bert"
        try Pretrained.save(try Transformers.bert(pooling: .mean, withPooler: true), to: textFolder, tokenizerFrom: Transformers.miniLM)
        let recipe = try tinyRecipe("\(folder)/runs", name: "mean", steps: 2, extra: [#"model.text={"checkpoint": "\#(textFolder)", "pooling": "mean"}"#])
        let trainer = try Trainer(try RunBuilder.contrastive(recipe, resolved: nil), resume: false)
        try trainer.run()
        let checkpoint = trainer.lastFolder
        try Transformers.expectRemoteCodeFiles(checkpoint, "mean")
        let config = try Transformers.config(checkpoint)
        #expect(config["text_pooling"] as? String == "mean" && config["text_pooler"] as? Bool == true && config["logit_bias_init_value"] == nil)
        #expect(try weights(checkpoint)["text_model.pooler.dense.weight"] != nil)
        let report = try Transformers.check(checkpoint, remote: true)
        Transformers.expectSame(report, remote: true, model: "CliptuneDualEncoderModel", "mean")
        #expect(report.logitBias == nil)
    }

    /// distill.json's student: a BERT tower from sizes, pooled by the mean, with no pooler at all
    /// (plain transformers would report `text_model.pooler.dense.*` missing and make them up).
    @Test func distilledStudentWithoutAPoolerNeedsTheRemoteCode() throws {
        let runs = temporaryFolder()
        let plan = try RunBuilder.distillation(try studentRecipe(runs, name: "student", steps: 2), resolved: nil)
        let trainer = try Trainer(plan.setup, resume: false)
        try trainer.run()
        let checkpoint = trainer.lastFolder
        try Transformers.expectRemoteCodeFiles(checkpoint, "student")
        let config = try Transformers.config(checkpoint)
        #expect(config["text_pooling"] as? String == "mean" && config["text_pooler"] as? Bool == false)
        #expect(try weights(checkpoint).keys.allSatisfy { !$0.contains("pooler") })
        Transformers.expectSame(try Transformers.check(checkpoint, remote: true), remote: true, model: "CliptuneDualEncoderModel", "student")
    }

    /// Saved by `Pretrained.save`: [CLS] pooling (with a pooler that goes unused), and a CLIP
    /// with SigLIP's bias, which a plain CLIPModel would load and leave out of its logits.
    @Test(arguments: ["cls", "clip+bias"])
    func otherArchitecturesTransformersLacksNeedTheRemoteCode(_ name: String) throws {
        let folder = temporaryFolder()
        let model: DualEncoder
        let tokenizer: String
        if name == "cls" {
            model = DualEncoder(kind: .visionTextDualEncoder, vision: Transformers.vision(), text: try Transformers.bert(pooling: .cls, withPooler: true), projectionDim: 16)
            tokenizer = Transformers.miniLM
        } else {
            model = DualEncoder(kind: .clip, vision: Transformers.vision(), text: Transformers.clipText(), projectionDim: 16)
            model.logitBias = Tensor.full([], -7.25).requiringGrad()
            tokenizer = Transformers.clipTokenizerFolder
        }
        try Pretrained.save(model, to: folder, tokenizerFrom: tokenizer)
        try Transformers.expectRemoteCodeFiles(folder, name)
        let report = try Transformers.check(folder, remote: true)
        Transformers.expectSame(report, remote: true, model: "CliptuneDualEncoderModel", name)
        #expect(report.logitBias == (name == "cls" ? nil : -7.25), "\(name)")
        // Our loader reads it back as it was.
        let again = try dualEncoder(Pretrained.load(folder))
        #expect(again.logitBias?.item(Double.self) == model.logitBias?.item(Double.self))
        #expect((again.textModel as? BertModel)?.pooling == (model.textModel as? BertModel)?.pooling)
    }

    /// What transformers has stays in its own layouts, loaded without remote code: a short run's
    /// ViT + CLIP-text dual encoder, a pooler-pooled BERT tower, a CLIP.
    @Test(arguments: ["trained clip-text", "pooler", "clip"])
    func plainLayoutsLoadWithoutRemoteCode(_ name: String) throws {
        let folder: String
        let expected: (modelType: String, model: String)
        switch name {
        case "trained clip-text":
            let runs = temporaryFolder()
            let trainer = try Trainer(try RunBuilder.contrastive(try tinyRecipe(runs, name: "plain", steps: 2), resolved: nil), resume: false)
            try trainer.run()
            folder = trainer.lastFolder
            expected = ("vision-text-dual-encoder", "VisionTextDualEncoderModel")
        case "pooler":
            folder = temporaryFolder()
            let model = DualEncoder(kind: .visionTextDualEncoder, vision: Transformers.vision(), text: try Transformers.bert(pooling: .pooler, withPooler: true), projectionDim: 16)
            try Pretrained.save(model, to: folder, tokenizerFrom: Transformers.miniLM)
            expected = ("vision-text-dual-encoder", "VisionTextDualEncoderModel")
        default:
            folder = temporaryFolder()
            let model = DualEncoder(kind: .clip, vision: Transformers.vision(), text: Transformers.clipText(), projectionDim: 16)
            try Pretrained.save(model, to: folder, tokenizerFrom: Transformers.clipTokenizerFolder)
            expected = ("clip", "CLIPModel")
        }
        try Transformers.expectPlainFiles(folder, modelType: expected.modelType, name)
        Transformers.expectSame(try Transformers.check(folder, remote: false), remote: false, model: expected.model, name)
    }
}

/// SigLIP's learned bias is the model's `logit_bias`: saved in model.safetensors, restored on
/// resume, loaded back and computed by transformers through the remote code.
@Suite("SigLIP's bias")
struct SigLIPBiasTests {
    @Test func resumedSigLIPRunIsBitIdenticalAndKeepsItsBias() async throws {
        let runs = temporaryFolder()
        // Each phase in its own process: the global RNG and thread count are shared with tests
        // running in parallel here.
        await #expect(processExitsWith: .success) { [runs = runs as String] in
            try Trainer(try RunBuilder.contrastive(try tinyRecipe(runs, name: "straight", steps: 4, extra: [#"loss.type="siglip""#]), resolved: nil),
                        resume: false).run()
        }
        // 2 steps of the same 4-step run (its checkpoint at step 2 written), then the process ends.
        await #expect(processExitsWith: .success) { [runs = runs as String] in
            var setup = try RunBuilder.contrastive(try tinyRecipe(runs, name: "resumed", steps: 4, extra: [#"loss.type="siglip""#]), resolved: nil)
            setup.onStep = { step in if step == 2 { exit(0) } }
            try Trainer(setup, resume: false).run()
        }
        #expect(try Checkpoint.readState("\(runs)/resumed/last").globalStep == 2)
        await #expect(processExitsWith: .success) { [runs = runs as String] in
            let trainer = try Trainer(try RunBuilder.contrastive(try tinyRecipe(runs, name: "resumed", steps: 4, extra: [#"loss.type="siglip""#]), resolved: nil),
                                      resume: true)
            guard trainer.state.globalStep == 2 else { exit(3) }
            try trainer.run()
        }
        let straight = "\(runs)/straight/last", resumed = "\(runs)/resumed/last"
        #expect(try Checkpoint.readState(resumed).globalStep == 4)
        for file in ["model.safetensors", Checkpoint.optimizerFile] {
            let a = try SafeTensors.load("\(straight)/\(file)"), b = try SafeTensors.load("\(resumed)/\(file)")
            #expect(Set(a.keys) == Set(b.keys) && !a.isEmpty, "\(file)")
            for (key, t) in a { #expect(b[key].map { $0.equal(t) } == true, "\(file): \(key) differs after resume") }
        }
        let saved = try weights(straight)
        let bias = try #require(saved["logit_bias"], "model.safetensors has no logit_bias").item(Double.self)
        #expect(bias != DualEncoder.sigLIPLogitBiasInit, "the bias did not train")
        #expect(try SafeTensors.load("\(straight)/\(Checkpoint.optimizerFile)").keys.contains { $0.hasPrefix("logit_bias.") })

        // Reloaded, by us and by transformers (remote code: a plain CLIP class would drop the bias).
        let reloaded = try dualEncoder(Pretrained.load(straight))
        #expect(reloaded.logitBias?.item(Double.self) == bias)
        try Transformers.expectRemoteCodeFiles(straight, "siglip")
        #expect(try Transformers.config(straight)["logit_bias_init_value"] as? Double == DualEncoder.sigLIPLogitBiasInit)
        let report = try Transformers.check(straight, remote: true)
        Transformers.expectSame(report, remote: true, model: "CliptuneDualEncoderModel", "siglip")
        #expect(report.logitBias.map(Float.init) == Float(bias))
        // The log has it too.
        let logged = try MetricsLog.read("\(runs)/straight/metrics.jsonl").filter { $0.kind == .train }.compactMap { $0.values["logit_bias"] }
        #expect(logged.count == 2 && logged.last.map(Float.init) == Float(bias), "\(logged)")
    }
}

/// The dual encoder of a loaded checkpoint.
func dualEncoder(_ checkpoint: PretrainedCheckpoint) throws -> DualEncoder {
    guard case .dualEncoder(let model) = checkpoint.model else { throw TrainingError(message: "expected a dual encoder, found \(checkpoint.model)") }
    return model
}
