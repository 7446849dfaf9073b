// A LoRA run through the programs: train writes PEFT's files, eval and embed read them with
// their base, export merges them (no adapter ops: the same ONNX as the merged checkpoint's), and
// merge writes a plain checkpoint.
import Foundation
import Testing
import Models
import NN
import Tokenizers
import Torch
import TestSupport

extension ProgramTests {
    /// A tiny random CLIP in CLIPModel layout with CLIP's tokenizer files.
    static func loraBase(in folder: String) throws -> String {
        let base = "\(folder)/base"
        var text = CLIPTextConfig()
        text.hiddenSize = 32; text.intermediateSize = 64; text.numHiddenLayers = 1; text.numAttentionHeads = 2
        var vision = CLIPVisionConfig()
        vision.hiddenSize = 32; vision.intermediateSize = 64; vision.numHiddenLayers = 2; vision.numAttentionHeads = 2
        vision.imageSize = 32; vision.patchSize = 8
        try Pretrained.save(DualEncoder(kind: .clip, vision: CLIPVisionTransformer(vision), text: CLIPTextTransformer(text), projectionDim: 16), to: base)
        try CLIPTokenizer.writeHuggingFaceFiles(fromOpenCLIPMerges: URL(fileURLWithPath: Fixtures.bpe), to: URL(fileURLWithPath: base))
        return base
    }

    @Test func loraRunsThroughEveryProgram() throws {
        let folder = temporaryFolder()
        let base = try Self.loraBase(in: folder)
        var recipe = try tinyRecipe(name: "lora", directory: "\(folder)/runs", steps: 4)
        recipe["model"] = ["checkpoint": base, "lora": ["r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj", "out_proj", "fc1", "fc2"],
                                                       "modules_to_save": ["visual_projection", "logit_scale"]] as [String: Any]]
        let trained = try run("train", ["--recipe", try writeRecipe(recipe, in: folder, file: "lora")])
        try #require(trained.succeeded, "\(trained)")
        #expect(trained.stderr.contains("LoRA: 15 layers adapted (r 4, alpha 8, scaling 2)"), "\(trained)")
        let best = "\(folder)/runs/lora/best"
        for file in [PeftAdapter.configFile, PeftAdapter.weightsFile, "trainer_state.json", "optimizer.safetensors", "vocab.json"] {
            #expect(exists("\(best)/\(file)"), "best/\(file) is missing")
        }
        #expect(!exists("\(best)/model.safetensors") && !exists("\(best)/config.json"))

        // eval and embed read the adapter with its base.
        let evaluated = try run("eval", ["--checkpoint", best, "--data", try Fixtures.valShards])
        try #require(evaluated.succeeded, "\(evaluated)")
        #expect(numbers(try parseObject(evaluated.stdout, what: "eval")["metrics"])["image_to_text_R@1"] != nil, "\(evaluated)")
        let embedded = try run("embed", ["--checkpoint", best, "--texts", "a red circle", "--out", "\(folder)/embed.json"])
        #expect(embedded.succeeded, "\(embedded)")

        // export merges: the same graph as the merged checkpoint's, and no adapter in it.
        let merged = try run("merge", ["--checkpoint", best, "--out", "\(folder)/merged"])
        try #require(merged.succeeded, "\(merged)")
        #expect(merged.stdout.contains("merged \(best) (15 adapted layers)"), "\(merged)")
        for file in ["config.json", "model.safetensors", "vocab.json", "merges.txt", "preprocessor_config.json", "merge.json"] {
            #expect(exists("\(folder)/merged/\(file)"), "merged/\(file) is missing")
        }
        let again = try run("merge", ["--checkpoint", best, "--out", "\(folder)/merged"])
        #expect(!again.succeeded && again.stderr.contains("--overwrite"), "\(again)")
        for (source, out) in [(best, "\(folder)/onnx-adapter"), ("\(folder)/merged", "\(folder)/onnx-merged")] {
            let exported = try run("export", ["--checkpoint", source, "--out", out, "--no-normalize"])
            try #require(exported.succeeded, "\(exported)")
        }
        for file in ["image_encoder.onnx", "text_encoder.onnx"] {
            let adapter = try Data(contentsOf: URL(fileURLWithPath: "\(folder)/onnx-adapter/\(file)"))
            let plain = try Data(contentsOf: URL(fileURLWithPath: "\(folder)/onnx-merged/\(file)"))
            #expect(adapter == plain, "\(file) of the adapter differs from the merged checkpoint's")
            #expect(adapter.range(of: Data("lora_".utf8)) == nil, "\(file) names an adapter weight")
        }
        let manifest = try readObject("\(folder)/onnx-adapter/export.json")
        #expect((manifest["lora"] as? [String: Any])?["merged"] as? Bool == true, "\(manifest)")
        try compareWithEmbed(export: "\(folder)/onnx-adapter", checkpoint: best, textTolerance: 1e-4)

        // A moved base: the error names the key and says how to give it; --base does.
        let moved = "\(folder)/moved"
        try FileManager.default.copyItem(atPath: best, toPath: moved)
        var config = try readObject("\(moved)/\(PeftAdapter.configFile)")
        config["base_model_name_or_path"] = "\(folder)/nowhere"
        try writeJSON(config, to: "\(moved)/\(PeftAdapter.configFile)")
        let lost = try run("eval", ["--checkpoint", moved, "--data", try Fixtures.valShards])
        #expect(!lost.succeeded && lost.stderr.contains("base_model_name_or_path") && lost.stderr.contains("--base"), "\(lost)")
        let found = try run("eval", ["--checkpoint", moved, "--data", try Fixtures.valShards, "--base", base])
        #expect(found.succeeded, "\(found)")
    }
}
