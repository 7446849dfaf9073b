import Foundation
import Testing
import Models
import NN
import Torch
@testable import Training

/// Python's peft (0.21.2, in `.deps/python`, which Scripts/bootstrap makes and CI has) loading
/// the adapter of one of our LoRA runs onto its base: `PeftModel.from_pretrained(
/// AutoModel.from_pretrained(base), run/last)` must compute our embeddings, and its
/// `merge_and_unload()` our merged weights (logit_scale included).
@Suite("LoRA adapters in peft", .serialized)
struct LoRAPeftInteropTests {
    static let script = """
    import json, sys, torch
    from safetensors.torch import load_file
    from transformers import AutoModel
    from peft import PeftModel

    base_dir, adapter_dir, ours_path, report_path = sys.argv[1:5]
    ours = load_file(ours_path)
    model = PeftModel.from_pretrained(AutoModel.from_pretrained(base_dir).eval(), adapter_dir).eval()
    adapted = sorted(name for name, module in model.named_modules() if hasattr(module, "lora_A") and "default" in module.lora_A)
    with torch.no_grad():
        image = model.get_image_features(pixel_values=ours["pixel_values"])
        text = model.get_text_features(input_ids=ours["input_ids"], attention_mask=ours["attention_mask"])
    image = getattr(image, "pooler_output", image)
    text = getattr(text, "pooler_output", text)
    merged = model.merge_and_unload().state_dict()
    weights = {k[len("merged."):]: v for k, v in ours.items() if k.startswith("merged.")}
    json.dump({
        "image": (image - ours["image_embeds"]).abs().max().item(),
        "text": (text - ours["text_embeds"]).abs().max().item(),
        "merged": max((merged[k] - v).abs().max().item() for k, v in weights.items()),
        "missing": sorted(set(weights) - set(merged)),
        "adapted": len(adapted),
        "vision_only": all(".vision_model." in name for name in adapted),
    }, open(report_path, "w"))
    """

    @Test(arguments: ["both", "vision"]) func peftComputesWhatOurAdapterDoes(_ towers: String) throws {
        let runs = temporaryFolder()
        let recipe = try loraRecipe(runs, name: "peft", steps: 3, extra: ["early_stopping=null", "model.lora.towers=\"\(towers)\""])
        try Trainer(try RunBuilder.contrastive(recipe, resolved: nil), resume: false).run()
        let last = "\(runs)/peft/last"
        let loaded = try Pretrained.load(last)
        guard case .dualEncoder(let model) = loaded.model else { Issue.record("not a dual encoder"); return }
        let pixels = Tensor.randn([2, 3, 32, 32], generator: Generator(seed: 3))
        let (ids, mask) = try loaded.tokenizer().encode(["a red circle left of a blue square", "three small green stars"])
        let work = temporaryFolder("peft")
        var tensors: [String: Tensor] = ["pixel_values": pixels, "input_ids": ids, "attention_mask": mask]
        withNoGrad {
            tensors["image_embeds"] = model.imageFeatures(pixels)
            tensors["text_embeds"] = model.textFeatures(ids: ids, attentionMask: mask)
        }
        for (name, tensor) in model.stateDict() { tensors["merged.\(name)"] = tensor }
        try SafeTensors.save(tensors, to: "\(work)/ours.safetensors")

        let process = Process()
        process.executableURL = URL(fileURLWithPath: Transformers.python)
        process.arguments = ["-c", Self.script, LoRABase.folder, last, "\(work)/ours.safetensors", "\(work)/report.json"]
        process.environment = ProcessInfo.processInfo.environment.merging(["HF_HUB_OFFLINE": "1"]) { _, b in b }
        process.standardInput = FileHandle.nullDevice
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "peft could not load \(last) (Scripts/bootstrap installs peft into .deps/python):\n\(stderr.suffix(3000))")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(work)/report.json"))) as? [String: Any])
        func number(_ key: String) -> Double { (report[key] as? NSNumber)?.doubleValue ?? .infinity }
        print("peft vs ours (towers \(towers)): image \(number("image")), text \(number("text")), merged weights \(number("merged")), \(report["adapted"] ?? "?") layers")
        #expect(number("image") <= 1e-4 && number("text") <= 1e-4, "\(report)")
        #expect(number("merged") <= 1e-5, "\(report)")
        #expect((report["missing"] as? [String])?.isEmpty == true, "\(report)")
        #expect(report["adapted"] as? Int == (towers == "both" ? 12 : 6), "\(report)")
        #expect(report["vision_only"] as? Bool == (towers == "vision"), "\(report)")
    }
}
