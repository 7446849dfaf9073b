import Datasets
import Foundation
import Models
import NN
import ONNX
import Tokenizers
import Torch

/// Options of `export`.
public struct ExportOptions: Sendable {
    public var precision: ExportPrecision = .fp32
    public var opset = 17
    /// L2-normalise the embeddings inside the graph.
    public var normalize = true
    /// Replace an existing output folder.
    public var overwrite = false
    /// The text encoder's precision when it differs (e.g. int8 images, fp16 text).
    public var textPrecision: ExportPrecision?
    /// int8 only: one activation scale per token instead of per tensor. Measured on the default
    /// model: text-to-image R@1 −2.4 points instead of −4.1, but slower than fp32 in onnxruntime,
    /// which fuses only the per-tensor form.
    public var perTokenActivations = false
    /// A LoRA adapter checkpoint's base model folder, instead of its `base_model_name_or_path`.
    public var base: String?

    public static let supportedOpsets = 17...18

    public init(precision: ExportPrecision = .fp32, opset: Int = 17, normalize: Bool = true, overwrite: Bool = false,
                textPrecision: ExportPrecision? = nil) {
        self.precision = precision
        self.textPrecision = textPrecision
        self.opset = opset
        self.normalize = normalize
        self.overwrite = overwrite
    }
}

/// What an export wrote.
public struct ExportResult {
    public let folder: String
    public let files: [String: Int]
    public let manifest: [String: Any]
}

/// Exports the encoders of a checkpoint as ONNX files for serving: each tower's forward pass is
/// recorded once by the op recorder and lowered to ONNX, so the file computes what was trained.
public enum EncoderExport {
    public static let imageFile = "image_encoder.onnx"
    public static let textFile = "text_encoder.onnx"
    public static let manifestFile = "export.json"
    /// Trace sizes: unusual numbers, so sizes read during the trace are recognisable (see GraphLowering).
    static let traceBatch = 5
    static let traceSequence = 11

    /// Writes the export into `folder` atomically (a temporary sibling renamed into place), so a
    /// failed export never leaves a folder that looks complete.
    @discardableResult
    public static func export(checkpoint: String, to folder: String, options: ExportOptions = ExportOptions()) throws -> ExportResult {
        guard ExportOptions.supportedOpsets.contains(options.opset) else {
            throw ExportError("--opset \(options.opset) is not supported; this exporter writes opsets \(ExportOptions.supportedOpsets.lowerBound)–\(ExportOptions.supportedOpsets.upperBound) (default 17)")
        }
        // Before anything loads: the output may only replace an earlier export, never the
        // checkpoint or anything holding it.
        let plan: OutputLocation.Plan
        do {
            plan = try OutputLocation.check(folder, kind: .folder(isPrevious: isExport, previous: "an earlier export (a folder with export.json)"),
                                            overwrite: options.overwrite,
                                            protecting: [.init(checkpoint, "the checkpoint being exported")] + (options.base.map { [.init($0, "the base model")] } ?? []))
        } catch let problem as OutputLocation.Problem { throw ExportError(problem.message) }
        let loaded: PretrainedCheckpoint
        // An adapter folder comes merged into its base: the graph has no adapter ops.
        do { loaded = try Pretrained.load(checkpoint, base: options.base) } catch {
            throw ExportError("cannot load the checkpoint \(checkpoint): \(error)")
        }
        let temporary: String
        do { temporary = try OutputLocation.temporarySibling(of: plan) } catch let problem as OutputLocation.Problem { throw ExportError(problem.message) }
        do {
            let manifest: [String: Any]
            do { manifest = try write(loaded, checkpoint: checkpoint, into: temporary, options: options) } catch let error as NSError where error.domain == NSCocoaErrorDomain || error.domain == NSPOSIXErrorDomain {
                throw ExportError("cannot write the export next to \(folder): \(OutputLocation.explain(error))")
            }
            var files: [String: Int] = [:]
            for name in try FileManager.default.contentsOfDirectory(atPath: temporary) {
                files[name] = (try FileManager.default.attributesOfItem(atPath: "\(temporary)/\(name)")[.size] as? Int) ?? 0
            }
            try OutputLocation.commit(temporary, to: plan, wholeFolder: true)
            return ExportResult(folder: folder, files: files, manifest: manifest)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            if let problem = error as? OutputLocation.Problem { throw ExportError(problem.message) }
            throw error
        }
    }

    /// Whether `folder` holds an earlier export: its export.json says `cliptune-onnx-export/…`.
    public static func isExport(_ folder: String) -> Bool {
        let path = "\(folder)/\(manifestFile)"
        guard let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue, size < 1 << 20,
              let data = FileManager.default.contents(atPath: path),
              let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return false }
        return (json["format"] as? String)?.hasPrefix("cliptune-onnx-export/") == true
    }

    private static func write(_ loaded: PretrainedCheckpoint, checkpoint: String, into folder: String, options: ExportOptions) throws -> [String: Any] {
        var manifest: [String: Any] = [
            "format": "cliptune-onnx-export/1", "precision": options.precision.rawValue,
            "quantization": options.precision == .int8 && options.perTokenActivations
                ? "per-token uint8 activations (own scale and zero point per row, corrected after MatMulInteger) + int8 weights per output channel; conv QDQ; embedding tables int8 per row"
                : options.precision.scheme,
            "opset": options.opset, "ir_version": 8, "normalized": options.normalize,
            "source_checkpoint": sourceName(checkpoint),
            "source_sha256": try SHA256Digest.hex(files: weightFiles(checkpoint, loaded: loaded)),
        ]
        if let adapter = loaded.adapter {
            manifest["lora"] = ["adapter": sourceName(checkpoint), "base": sourceName(adapter.base), "adapted_layers": adapter.adaptedLayers,
                                "merged": true, "r": adapter.config.settings.rank] as [String: Any]
        }
        let tokenizer = try loaded.tokenizer()
        switch loaded.model {
        case .dualEncoder(let model):
            model.eval()
            guard let vision = model.visionModel as? CLIPVisionTransformer else { throw ExportError("only ViT image towers can be exported") }
            let size = vision.config.imageSize
            let pixels = Tensor.randn([traceBatch, 3, size, size], generator: Generator(seed: 7))
            let image = try graph(name: "image_encoder", model: model, options: options,
                                  inputs: [TracedInput(pixels, name: "pixel_values", axes: ["batch", nil, nil, nil])],
                                  output: "image_embeds", sequence: nil) { model.imageFeatures(pixels) }
            try image.serializedData().write(to: URL(fileURLWithPath: "\(folder)/\(imageFile)"))
            let preprocessing = loaded.preprocessing ?? ImagePreprocessing(size: size)
            manifest["image"] = [
                "file": imageFile, "input": "pixel_values", "output": "image_embeds", "image_size": size,
                "resize": ["shortest_edge": preprocessing.shortestEdge, "resample": "bicubic (Pillow)", "center_crop": size,
                           "rule": "resize the shorter side to shortest_edge with bicubic resampling, centre-crop image_size × image_size, scale to [0, 1], subtract mean, divide by std; RGB, CHW"],
                "mean": preprocessing.mean, "std": preprocessing.std,
            ] as [String: Any]
            manifest["embedding_dim"] = model.projectionDim
            // What a serving team needs to turn cosines into scores: exp(logit_scale) (the
            // multiplier), the SigLIP bias, and which loss the model was trained with.
            manifest["logit_scale"] = Foundation.exp(model.logitScale.item(Double.self))
            if let bias = model.logitBias {
                manifest["logit_bias"] = bias.item(Double.self)
                manifest["loss"] = "siglip"
                manifest["scores"] = "logit = logit_scale · cos(image_embeds, text_embeds) + logit_bias; sigmoid(logit) is the probability that the image and the text match (each pair on its own)"
            } else {
                manifest["loss"] = "clip"
                manifest["scores"] = "logit = logit_scale · cos(image_embeds, text_embeds); softmax over the candidates (texts for an image, or images for a text) gives probabilities"
            }
            manifest["text"] = try textExport(model, tower: model.textModel, tokenizer: tokenizer, folder: folder, options: options) { ids, mask in
                model.textFeatures(ids: ids, attentionMask: mask)
            }
        case .textEncoder(let bert, _):
            bert.eval()
            manifest["embedding_dim"] = bert.width
            manifest["text"] = try textExport(bert, tower: bert, tokenizer: tokenizer, folder: folder, options: options) { ids, mask in
                bert.pooled(ids: ids, attentionMask: mask)
            }
        }
        // Tokenizer files travel with the encoders.
        for file in Pretrained.tokenizerFiles where FileManager.default.fileExists(atPath: "\(loaded.directory)/\(file)") {
            try FileManager.default.copyItem(atPath: "\(loaded.directory)/\(file)", toPath: "\(folder)/\(file)")
        }
        let data = try JSONSerialization.data(withJSONObject: manifest, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: "\(folder)/\(manifestFile)"))
        return manifest
    }

    /// Records and lowers the text tower; returns its export.json section.
    private static func textExport(_ model: Module, tower: any TextTower, tokenizer: TensorTokenizer, folder: String, options: ExportOptions,
                                   forward: (Tensor, Tensor?) -> Tensor) throws -> [String: Any] {
        var options = options
        options.precision = options.textPrecision ?? options.precision
        let isBERT = tower is BertModel
        let context = tokenizer.tokenizer.contextLength
        var section: [String: Any] = ["file": textFile, "input": "input_ids", "output": "text_embeds", "context_length": context,
                                      "pad_id": tokenizer.tokenizer.padTokenId, "precision": options.precision.rawValue]
        let length = Swift.min(traceSequence, context)
        // Token ids the tower has embeddings for (the values do not shape the graph).
        let vocabulary = (tower as? CLIPTextTransformer)?.config.vocabSize ?? (tower as? BertModel)?.config.vocabSize ?? 2000
        let high = Swift.min(2000, vocabulary)
        var ids = Tensor.randint(high == 2000 ? 1000 : 0, high, [traceBatch, length], generator: Generator(seed: 11))
        var mask: Tensor?
        if let clip = tower as? CLIPTextTransformer, let clipTokenizer = tokenizer.tokenizer as? CLIPTokenizer {
            // Each row ends with the end-of-text token (the pooled position) at a different place.
            var rows = ids.toArray(Int64.self)
            for r in 0..<traceBatch { rows[r * length + (length - 1 - r % 3)] = Int64(clip.config.eosTokenId == 2 ? clipTokenizer.endTokenId : clip.config.eosTokenId) }
            ids = Tensor(rows, shape: [traceBatch, length])
            section["tokenizer"] = ["kind": "clip_bpe", "files": ["vocab.json", "merges.txt"], "start_id": clipTokenizer.startTokenId,
                                    "end_id": clipTokenizer.endTokenId, "lowercase": true]
            section["note"] = "pad input_ids to any length ≤ context_length with pad_id; the embedding is read at the end-of-text token"
        } else if isBERT, let wordPiece = tokenizer.tokenizer as? WordPieceTokenizer {
            var m = [Int64](repeating: 1, count: traceBatch * length)
            for r in 0..<traceBatch { for j in (length - r)..<length where j > 2 { m[r * length + j] = 0 } }
            mask = Tensor(m, shape: [traceBatch, length])
            section["attention_mask"] = "attention_mask"
            section["tokenizer"] = ["kind": "wordpiece", "files": ["vocab.txt"], "cls_id": wordPiece.classifierTokenId, "sep_id": wordPiece.separatorTokenId,
                                    "lowercase": wordPiece.lowercase]
            section["pooling"] = (tower as! BertModel).pooling.rawValue
        } else {
            throw ExportError("text tower \(type(of: tower)) with tokenizer \(type(of: tokenizer.tokenizer)) cannot be exported")
        }
        var inputs = [TracedInput(ids, name: "input_ids", axes: ["batch", "sequence"])]
        if let mask { inputs.append(TracedInput(mask, name: "attention_mask", axes: ["batch", "sequence"])) }
        let proto = try graph(name: "text_encoder", model: model, options: options, inputs: inputs, output: "text_embeds", sequence: length) {
            forward(ids, mask)
        }
        try proto.serializedData().write(to: URL(fileURLWithPath: "\(folder)/\(textFile)"))
        section["dynamic_axes"] = ["batch", "sequence"]
        return section
    }

    /// One recorded forward pass → an ONNX model.
    public static func graph(name: String, model: Module, options: ExportOptions, inputs: [TracedInput], output: String, sequence: Int?,
                      _ forward: () -> Tensor) throws -> ModelProto {
        let recorder = OpRecorder()
        // A model that fails on the trace input is an error, not a trap.
        let result: Tensor
        do {
            result = try withTorchErrors { withNoGrad { recorder.record { options.normalize ? F.normalize(forward(), dim: -1) : forward() } } }
        } catch let error as TorchError {
            throw ExportError("\(name): the forward pass failed on the trace input: \(error)")
        }
        var names: [ObjectIdentifier: String] = [:]
        for (key, tensor) in model.namedParameters() { names[ObjectIdentifier(tensor)] = key }
        let lowering = GraphLowering(precision: options.precision, opset: options.opset, parameterNames: names,
                                     traceBatch: traceBatch, traceSequence: sequence)
        lowering.perTokenActivations = options.perTokenActivations
        let graphInputs = inputs.map(lowering.input)
        try lowering.lower(recorder.ops)
        let graphOutput = try lowering.output(result, name: output, axes: ["batch", nil])
        // Nodes nothing reads (a pooling gather's index once the pooled row is computed
        // directly) and constants materialised for an op that later took another path are dropped.
        var needed: Set<String> = [output]
        let nodes = Array(lowering.nodes.reversed().filter { node in
            guard node.outputs.contains(where: needed.contains) else { return false }
            needed.formUnion(node.inputs)
            return true
        }.reversed())
        let used = Set(nodes.flatMap(\.inputs))
        let graph = GraphProto(name: name, nodes: nodes, inputs: graphInputs, outputs: [graphOutput],
                               initializers: lowering.initializers.filter { used.contains($0.name) })
        return ModelProto(irVersion: 8, opsetImports: [OperatorSetIdProto(version: Int64(options.opset))], graph: graph,
                          producerName: "cliptune", producerVersion: "1", docString: "\(name) (\(options.precision.rawValue))")
    }

    /// How export.json names the source checkpoint, without the exporting machine's paths: the
    /// folder's name, after its run's name when the folder is one a trainer names generically
    /// (`Checkpoints/clip-finetune/best` → `clip-finetune/best`; `checkpoint-500` likewise).
    /// Which weights they were is `source_sha256`'s job.
    public static func sourceName(_ checkpoint: String) -> String {
        let url = URL(fileURLWithPath: checkpoint).standardizedFileURL
        let name = url.lastPathComponent, run = url.deletingLastPathComponent().lastPathComponent
        let generic = ["best", "last"].contains(name) || name.hasPrefix("checkpoint-")
        return generic && !run.isEmpty && run != "/" ? "\(run)/\(name)" : name
    }

    /// The checkpoint's weight files in a stable order (single file, or the shards by name); for
    /// an adapter folder, its adapter weights and then its base's.
    static func weightFiles(_ checkpoint: String, loaded: PretrainedCheckpoint? = nil) throws -> [String] {
        if let adapter = loaded?.adapter {
            return ["\(adapter.folder)/\(PeftAdapter.weightsFile)"] + (try weightFiles(adapter.base))
        }
        let fm = FileManager.default
        if fm.fileExists(atPath: "\(checkpoint)/\(ShardedSafeTensors.singleFile)") { return ["\(checkpoint)/\(ShardedSafeTensors.singleFile)"] }
        let shards = try fm.contentsOfDirectory(atPath: checkpoint).filter { $0.hasPrefix("model-") && $0.hasSuffix(".safetensors") }.sorted()
        return ["\(checkpoint)/\(ShardedSafeTensors.indexFile)"] + shards.map { "\(checkpoint)/\($0)" }
    }
}
