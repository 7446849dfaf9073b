import ArgumentParser
import Export
import Foundation
import Torch

/// ONNX encoders for serving: image_encoder.onnx, text_encoder.onnx, export.json and the
/// tokenizer files, from any checkpoint the framework loads.
@main
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "export", abstract: "Export a checkpoint's encoders to ONNX (fp32, fp16 or int8).", version: ClipTune.versionLine)

    @Option(help: "Checkpoint folder (Hugging Face layout), e.g. Checkpoints/clip-finetune/best.") var checkpoint: String
    @Option(help: "Output folder; default: <checkpoint>-onnx-<precision>.") var out: String?
    @Option(help: "fp32, fp16 or int8.") var precision: ExportPrecision = .fp32
    @Option(help: "The text encoder's precision, when it should differ (e.g. --precision int8 --text-precision fp16).") var textPrecision: ExportPrecision?
    @Option(help: "ONNX opset (17 or 18).") var opset = 17
    @Flag(help: "Leave the embeddings unnormalised.") var noNormalize = false
    @Flag(help: "int8: quantize activations per token (more accurate, slower in onnxruntime).") var perTokenActivations = false
    @Flag(help: "Replace the output folder if it holds an earlier export (export.json); anything else is refused.") var overwrite = false
    @Option(help: "For a LoRA adapter checkpoint: its base model's folder, instead of the one adapter_config.json names (base_model_name_or_path).") var base: String?

    func validate() throws {
        guard ExportOptions.supportedOpsets.contains(opset) else {
            throw ValidationError("--opset \(opset) is not supported; this exporter writes opsets \(ExportOptions.supportedOpsets.lowerBound)–\(ExportOptions.supportedOpsets.upperBound)")
        }
        if checkpoint.isEmpty { throw ValidationError("--checkpoint is empty") }
    }

    func run() throws {
        let folder = out ?? "\(checkpoint.hasSuffix("/") ? String(checkpoint.dropLast()) : checkpoint)-onnx-\(precision.rawValue)"
        let started = Date()
        var options = ExportOptions(precision: precision, opset: opset, normalize: !noNormalize, overwrite: overwrite, textPrecision: textPrecision)
        options.perTokenActivations = perTokenActivations
        options.base = base
        let result = try EncoderExport.export(checkpoint: checkpoint, to: folder, options: options)
        for (name, size) in result.files.sorted(by: { $0.key < $1.key }) {
            print(String(format: "%10.2f MB  %@/%@", Double(size) / 1e6, folder, name))
        }
        print(String(format: "exported %@ (%@, opset %d) in %.1f s", checkpoint, precision.rawValue, opset, Date().timeIntervalSince(started)))
    }
}

extension ExportPrecision: ExpressibleByArgument {}
