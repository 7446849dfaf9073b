import Foundation
import Testing
import NN
import Torch
@testable import Models
import TestSupport

/// Adapters made by Python's peft 0.21.2 (Scripts/fixtures/peft_fixtures.py) on the committed
/// clip_a and dual_bert: loading, what they compute, merging, and the adapters we refuse.
@Suite("PEFT LoRA adapters")
struct PeftAdapterTests {
    static let fixtures = ["lora_clip_a", "lora_dual_bert"]
    static let bases = ["lora_clip_a": "clip_a", "lora_dual_bert": "dual_bert"]

    /// PeftModel.from_pretrained(base, folder)'s embeddings (and logits: the adapter also sets
    /// logit_scale in lora_clip_a), adapters kept apart and merged.
    @Test(arguments: fixtures) func embeddingsMatchPeft(_ name: String) throws {
        let expected = try SafeTensors.load(Fixture.path("\(name)/expected.safetensors"))
        let io = try SafeTensors.load(Fixture.path("\(Self.bases[name]!)/io.safetensors"))
        for merge in [false, true] {
            let checkpoint = try Pretrained.load(Fixture.path(name), mergeAdapter: merge)
            let adapter = try #require(checkpoint.adapter)
            #expect(URL(fileURLWithPath: adapter.base).standardizedFileURL == URL(fileURLWithPath: Fixture.path(Self.bases[name]!)).standardizedFileURL)
            let model = try dualEncoder(checkpoint)
            #expect(model.adaptedLayers().count == (merge ? 0 : adapter.adaptedLayers))
            let (image, text, logits) = outputs(model, io)
            let differences = [maxDifference(image, expected["image_embeds"]!), maxDifference(text, expected["text_embeds"]!),
                               maxDifference(logits, expected["logits_per_image"]!)]
            print("\(name) (\(merge ? "merged" : "adapters")) vs peft: image \(differences[0]), text \(differences[1]), logits \(differences[2])")
            #expect(differences[0] <= 1e-5 && differences[1] <= 1e-5, "\(name): \(differences)")
            #expect(differences[2] <= 1e-4, "\(name) logits: \(differences[2])")
        }
        #expect(try Pretrained.load(Fixture.path(name)).adapter?.adaptedLayers == (name == "lora_clip_a" ? 12 : 14))
    }

    /// Our merge against merge_and_unload(): every weight it changed, within 1e-5; every other
    /// weight exactly the base's.
    @Test(arguments: fixtures) func mergeEqualsMergeAndUnload(_ name: String) throws {
        let expected = try SafeTensors.load(Fixture.path("\(name)/expected.safetensors")).filter { $0.key.hasPrefix("merged.") }
        let merged = try dualEncoder(Pretrained.load(Fixture.path(name)))
        let base = try dualEncoder(Pretrained.load(Fixture.path(Self.bases[name]!)))
        let baseWeights = Dictionary(uniqueKeysWithValues: base.stateDict().map { ($0.name, $0.tensor) })
        var largest = 0.0
        for (name_, tensor) in merged.stateDict() {
            if let theirs = expected["merged.\(name_)"] {
                largest = max(largest, maxDifference(tensor, theirs))
            } else {
                #expect(tensor.equal(baseWeights[name_]!), "\(name): \(name_) changed, and merge_and_unload left it")
            }
        }
        print("\(name): merged weights vs merge_and_unload, largest difference \(largest) over \(expected.count) tensors")
        #expect(largest <= 1e-5)
        #expect(expected.count > 10)
    }

    /// `merge` writes a plain checkpoint that loads without the adapter and computes the same;
    /// it replaces only its own earlier output, and never the adapter or the base.
    @Test func mergeWritesAPlainCheckpoint() throws {
        let out = temporaryFolder() + "/merged"
        let result = try AdapterMerge.merge(checkpoint: Fixture.path("lora_clip_a"), to: out)
        #expect(result.adapter.adaptedLayers == 12)
        for file in ["config.json", "model.safetensors", "preprocessor_config.json", AdapterMerge.recordFile] {
            #expect(FileManager.default.fileExists(atPath: "\(out)/\(file)"), "\(file) is missing")
        }
        let plain = try Pretrained.load(out)
        #expect(plain.adapter == nil)
        let io = try SafeTensors.load(Fixture.path("clip_a/io.safetensors"))
        let expected = try SafeTensors.load(Fixture.path("lora_clip_a/expected.safetensors"))
        let (image, text, logits) = outputs(try dualEncoder(plain), io)
        #expect(maxDifference(image, expected["image_embeds"]!) <= 1e-5 && maxDifference(text, expected["text_embeds"]!) <= 1e-5)
        #expect(maxDifference(logits, expected["logits_per_image"]!) <= 1e-4)
        #expect(throws: OutputLocation.Problem.self) { try AdapterMerge.merge(checkpoint: Fixture.path("lora_clip_a"), to: out) }
        try AdapterMerge.merge(checkpoint: Fixture.path("lora_clip_a"), to: out, overwrite: true)
        let intoBase = #expect(throws: OutputLocation.Problem.self) {
            try AdapterMerge.merge(checkpoint: Fixture.path("lora_clip_a"), to: Fixture.path("clip_a") + "/merged")
        }
        #expect(intoBase?.message.contains("the base model") == true, "\(intoBase.map { "\($0)" } ?? "")")
        let notAnAdapter = #expect(throws: ModelConfigError.self) { try AdapterMerge.merge(checkpoint: Fixture.path("clip_a"), to: out + "2") }
        #expect(notAnAdapter?.reason.contains("not a LoRA adapter folder") == true)
    }

    // MARK: refusals

    /// A copy of a fixture adapter whose config is changed by `edit`, with the base given as an
    /// absolute path.
    static func editedAdapter(_ name: String = "lora_clip_a", _ edit: (inout [String: Any]) -> Void) throws -> String {
        let folder = temporaryFolder("adapter")
        try FileManager.default.copyItem(atPath: Fixture.path("\(name)/adapter_model.safetensors"), toPath: "\(folder)/adapter_model.safetensors")
        var config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Fixture.path("\(name)/adapter_config.json")))) as? [String: Any])
        config["base_model_name_or_path"] = Fixture.path(bases[name]!)
        edit(&config)
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: "\(folder)/adapter_config.json"))
        return folder
    }

    static func refusal(_ folder: String, base: String? = nil) -> ModelConfigError? {
        #expect(throws: ModelConfigError.self) { try Pretrained.load(folder, base: base) }
    }

    /// What changes the maths and is not implemented is refused, naming the key.
    @Test(arguments: [
        ("use_dora", "true"), ("bias", "\"all\""), ("fan_in_fan_out", "true"), ("rank_pattern", "{\"q_proj\": 8}"), ("alpha_pattern", "{\"v_proj\": 2}"),
        ("layers_to_transform", "[0]"), ("lora_bias", "true"), ("init_lora_weights", "\"pissa\""), ("peft_type", "\"IA3\""), ("a_future_setting", "3"),
    ])
    func unsupportedSettingsAreRefused(_ key: String, _ json: String) throws {
        let value = try JSONSerialization.jsonObject(with: Data(json.utf8), options: .fragmentsAllowed)
        let folder = try Self.editedAdapter { $0[key] = value }
        let error = Self.refusal(folder)
        #expect(error?.key == key && error?.file.hasSuffix("adapter_config.json") == true, "\(key): \(error.map { "\($0)" } ?? "loaded")")
    }

    /// Harmless keys at other values load: task type, inference mode, a future key at its default.
    @Test func harmlessKeysAreTolerated() throws {
        let folder = try Self.editedAdapter {
            $0["task_type"] = "FEATURE_EXTRACTION"; $0["inference_mode"] = false; $0["some_new_config"] = NSNull(); $0["init_lora_weights"] = "gaussian"
        }
        #expect(try Pretrained.load(folder).adapter != nil)
    }

    /// An adapter on a base it was not made for: the key and both shapes.
    @Test func aBaseThatDoesNotFitIsRefused() throws {
        let folder = try Self.editedAdapter { _ in }
        let error = try #require(Self.refusal(folder, base: Fixture.path("clip_b")))
        #expect(error.file.hasSuffix("adapter_model.safetensors"), "\(error)")
        #expect(error.key?.hasPrefix("base_model.model.") == true, "\(error)")
        #expect(error.reason.contains("has shape [") && error.reason.contains("needs [") || error.reason.contains("does not have"), "\(error)")
        // A wrong r: the shapes in the file say otherwise.
        let wrongRank = try #require(Self.refusal(try Self.editedAdapter { $0["r"] = 8 }))
        #expect(wrongRank.reason.contains("has shape [4, ") && wrongRank.reason.contains("needs [8, "), "\(wrongRank)")
        // A BERT adapter on a CLIP base: layers it does not have.
        let other = try #require(Self.refusal(try Self.editedAdapter("lora_dual_bert") { _ in }, base: Fixture.path("clip_a")))
        #expect(other.reason.contains("does not have") || other.reason.contains("has shape"), "\(other)")
    }

    /// A base that is not a folder here (a Hub name) says how to point at it; --base does.
    @Test func aMissingBaseSaysHowToGiveIt() throws {
        let folder = try Self.editedAdapter { $0["base_model_name_or_path"] = "openai/clip-vit-base-patch32" }
        let error = try #require(Self.refusal(folder))
        #expect(error.key == "base_model_name_or_path" && error.reason.contains("--base") && error.reason.contains("Hub"), "\(error)")
        #expect(try Pretrained.load(folder, base: Fixture.path("clip_a")).adapter != nil)
        let missing = try #require(Self.refusal(try Self.editedAdapter { $0["base_model_name_or_path"] = NSNull() }))
        #expect(missing.key == "base_model_name_or_path" && missing.reason.contains("is missing"), "\(missing)")
        #expect(Self.refusal(folder, base: temporaryFolder())?.reason.contains("--base") == true)
    }

    /// The config we write is PEFT's and reads back the same.
    @Test func ourConfigRoundTrips() throws {
        let config = LoRAAdapterConfig(settings: LoRASettings(rank: 16, alpha: 32, dropout: 0.05, rsLoRA: true),
                                       targetModules: .names(["q_proj", "v_proj"]), modulesToSave: ["visual_projection", "logit_scale"],
                                       baseModelPath: "/models/clip", baseModelClass: "CLIPModel", parentLibrary: "transformers.models.clip.modeling_clip")
        let folder = temporaryFolder()
        try config.data().write(to: URL(fileURLWithPath: "\(folder)/adapter_config.json"))
        #expect(try LoRAAdapterConfig.read("\(folder)/adapter_config.json") == config)
        let json = config.json()
        #expect(json["peft_type"] as? String == "LORA" && json["lora_alpha"] as? Int == 32 && json["bias"] as? String == "none")
    }
}
