import ArgumentParser
import Foundation
import Models
import NN
import Torch

/// A LoRA adapter checkpoint and its base → one plain Hugging Face checkpoint (PEFT's
/// `merge_and_unload()` + `save_pretrained`).
@main
struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Merge a LoRA adapter checkpoint into its base model and write a plain Hugging Face checkpoint.", version: ClipTune.versionLine)

    @Option(help: "LoRA adapter folder (adapter_config.json + adapter_model.safetensors), e.g. Checkpoints/run/best.") var checkpoint: String
    @Option(help: "Output folder: config.json, model.safetensors, tokenizer and preprocessor files, merge.json.") var out: String
    @Option(help: "The base model's folder, instead of the one adapter_config.json names (base_model_name_or_path).") var base: String?
    @Flag(help: "Replace the output folder if it holds an earlier merge (merge.json); anything else is refused.") var overwrite = false

    func validate() throws {
        if checkpoint.isEmpty { throw ValidationError("--checkpoint is empty") }
    }

    func run() throws {
        let started = Date()
        let result = try AdapterMerge.merge(checkpoint: checkpoint, base: base, to: out, overwrite: overwrite)
        print(String(format: "merged %@ (%d adapted layers) into %@ → %@ in %.1f s", checkpoint, result.adapter.adaptedLayers,
                     result.adapter.base, out, Date().timeIntervalSince(started)))
    }
}
