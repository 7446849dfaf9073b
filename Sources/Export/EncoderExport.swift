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
        let fm = FileManager.default
        if fm.fileExists(atPath: folder), !options.overwrite {
            throw ExportError("\(folder) already exists; choose another --out or pass --overwrite to replace it")
        }
        let loaded: PretrainedCheckpoint
        do { loaded = try Pretrained.load(checkpoint) } catch {
            throw ExportError("cannot load the checkpoint \(checkpoint): \(error)")
        }
        let parent = URL(fileURLWithPath: folder).standardizedFileURL.deletingLastPathComponent().path
        try fm.createDirectory(atPath: parent, withIntermediateDirectories: true)
        let temporary = "\(parent)/.\(URL(fileURLWithPath: folder).lastPathComponent).partial-\(getpid())"
        try? fm.removeItem(atPath: temporary)
        try fm.createDirectory(atPath: temporary, withIntermediateDirectories: true)
        do {
            let manifest = try write(loaded, checkpoint: checkpoint, into: temporary, options: options)
            var files: [String: Int] = [:]
            for name in try fm.contentsOfDirectory(atPath: temporary) {
                files[name] = (try fm.attributesOfItem(atPath: "\(temporary)/\(name)")[.size] as? Int) ?? 0
            }
            if fm.fileExists(atPath: folder) { try fm.removeItem(atPath: folder) }
            guard rename(temporary, folder) == 0 else { throw ExportError("cannot move the export into \(folder) (\(String(cString: strerror(errno))))") }
            AtomicFile.syncFolder(parent)
            return ExportResult(folder: folder, files: files, manifest: manifest)
        } catch {
            try? fm.removeItem(atPath: temporary)
            throw error
        }
    }

    private static func write(_ loaded: PretrainedCheckpoint, checkpoint: String, into folder: String, options: ExportOptions) throws -> [String: Any] {
        var manifest: [String: Any] = [
            "format": "cliptune-onnx-export/1", "precision": options.precision.rawValue,
            "quantization": options.precision == .int8 && options.perTokenActivations
                ? "per-token uint8 activations (own scale and zero point per row, corrected after MatMulInteger) + int8 weights per output channel; conv QDQ; embedding tables int8 per row"
                : options.precision.scheme,
            "opset": options.opset, "ir_version": 8, "normalized": options.normalize,
            "source_checkpoint": sourceName(checkpoint),
            "source_sha256": try SHA256Digest.hex(files: weightFiles(checkpoint)),
        ]
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
        var ids = Tensor.randint(1000, 2000, [traceBatch, length], generator: Generator(seed: 11))
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
        let result = withNoGrad { recorder.record { options.normalize ? F.normalize(forward(), dim: -1) : forward() } }
        var names: [ObjectIdentifier: String] = [:]
        for (key, tensor) in model.namedParameters() { names[ObjectIdentifier(tensor)] = key }
        let lowering = GraphLowering(precision: options.precision, opset: options.opset, parameterNames: names,
                                     traceBatch: traceBatch, traceSequence: sequence)
        lowering.perTokenActivations = options.perTokenActivations
        let graphInputs = inputs.map(lowering.input)
        try lowering.lower(recorder.ops)
        let graphOutput = try lowering.output(result, name: output, axes: ["batch", nil])
        // Constants materialised for an op that later took another path are dropped.
        let used = Set(lowering.nodes.flatMap(\.inputs))
        let graph = GraphProto(name: name, nodes: lowering.nodes, inputs: graphInputs, outputs: [graphOutput],
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

    /// The checkpoint's weight files in a stable order (single file, or the shards by name).
    static func weightFiles(_ checkpoint: String) throws -> [String] {
        let fm = FileManager.default
        if fm.fileExists(atPath: "\(checkpoint)/\(ShardedSafeTensors.singleFile)") { return ["\(checkpoint)/\(ShardedSafeTensors.singleFile)"] }
        let shards = try fm.contentsOfDirectory(atPath: checkpoint).filter { $0.hasPrefix("model-") && $0.hasSuffix(".safetensors") }.sorted()
        return ["\(checkpoint)/\(ShardedSafeTensors.indexFile)"] + shards.map { "\(checkpoint)/\($0)" }
    }
}
