import Datasets
import Foundation
import NN
import Torch

/// A model read from a Hugging Face checkpoint folder.
public enum PretrainedModel {
    /// CLIPModel, VisionTextDualEncoderModel, or ours (`cliptune-dual-encoder`, see RemoteCode.swift).
    case dualEncoder(DualEncoder)
    /// A text-only BERT (e.g. sentence-transformers' all-MiniLM-L6-v2), with its pooling and
    /// whether its sentence embeddings are L2-normalised.
    case textEncoder(BertModel, normalize: Bool)
}

/// A loaded checkpoint folder: the model and the image preprocessing it expects.
public struct PretrainedCheckpoint {
    public let directory: String
    public let model: PretrainedModel
    /// From `preprocessor_config.json`, or CLIP's defaults at the vision tower's image size.
    public let preprocessing: ImagePreprocessing?
}

/// Reads and writes Hugging Face checkpoint folders (`config.json` + `model.safetensors` [+ shards]).
public enum Pretrained {
    public static let supportedModelTypes = ["clip", "vision-text-dual-encoder", remoteCodeModelType, "bert"]

    /// Loads any supported checkpoint folder. Every problem (unknown `model_type`, bad config
    /// field, missing or mismatched weights) is reported with the file and key.
    public static func load(_ directory: String) throws -> PretrainedCheckpoint {
        let configPath = "\(directory)/config.json"
        let config = try ConfigReader.load(configPath)
        let modelType = try config.string("model_type", "")
        guard supportedModelTypes.contains(modelType) else {
            throw config.fail("model_type", modelType.isEmpty ? "is missing; cannot tell which architecture this is"
                : "'\(modelType)' is not supported (supported: \(supportedModelTypes.joined(separator: ", ")))")
        }
        let weights = try loadWeights(directory)
        let model: PretrainedModel
        switch modelType {
        case "clip":
            let encoder = try clip(config)
            try encoder.load(weights, source: directory, rename: canonicalKey)
            model = .dualEncoder(encoder)
        case "vision-text-dual-encoder", remoteCodeModelType:
            let encoder = try dualEncoder(config, weights: weights, remoteCode: modelType == remoteCodeModelType)
            try encoder.load(weights, source: directory, rename: canonicalKey)
            model = .dualEncoder(encoder)
        case "bert":
            let (pooling, normalize) = try sentenceTransformersPooling(directory)
            let bert = BertModel(try BertConfig(config), pooling: pooling, withPooler: weights.keys.contains { canonicalKey($0) == "pooler.dense.weight" })
            try bert.load(weights, source: directory, rename: canonicalKey)
            model = .textEncoder(bert, normalize: normalize)
        default:
            fatalError("model types are checked above")
        }
        let preprocessorPath = "\(directory)/preprocessor_config.json"
        var preprocessing: ImagePreprocessing?
        if FileManager.default.fileExists(atPath: preprocessorPath) {
            preprocessing = try ImagePreprocessing.huggingFace(configAt: preprocessorPath)
        } else if case .dualEncoder(let encoder) = model, let vision = encoder.visionModel as? CLIPVisionTransformer {
            preprocessing = ImagePreprocessing(size: vision.config.imageSize)
        }
        switch model {
        case .dualEncoder(let encoder): encoder.eval()
        case .textEncoder(let bert, _): bert.eval()
        }
        return PretrainedCheckpoint(directory: directory, model: model, preprocessing: preprocessing)
    }

    /// Maps other layouts onto ours; nil drops a key. Drops the `position_ids`/`token_type_ids`
    /// buffers some checkpoints carry; accepts transformers 4's `vision_model.vision_model.` and
    /// BERT pre-training checkpoints' `bert.` prefix.
    static func canonicalKey(_ key: String) -> String? {
        if key.hasSuffix("position_ids") || key.hasSuffix("embeddings.token_type_ids") { return nil }
        if key.hasPrefix("cls.") { return nil }
        var k = key
        if k.hasPrefix("vision_model.vision_model.") { k = "vision_model." + k.dropFirst("vision_model.vision_model.".count) }
        if k.hasPrefix("bert.") { k = String(k.dropFirst(5)) }
        return k
    }

    static func loadWeights(_ directory: String) throws -> [String: Tensor] {
        let fm = FileManager.default
        if !fm.fileExists(atPath: "\(directory)/\(ShardedSafeTensors.singleFile)") && !fm.fileExists(atPath: "\(directory)/\(ShardedSafeTensors.indexFile)") {
            let reason = fm.fileExists(atPath: "\(directory)/pytorch_model.bin")
                ? "has only pytorch_model.bin; convert it to safetensors (e.g. `model.save_pretrained(dir, safe_serialization=True)` in transformers)"
                : "has no model.safetensors or model.safetensors.index.json"
            throw ModelConfigError(file: directory, reason: reason)
        }
        return try ShardedSafeTensors.load(directory)
    }

    static func clip(_ config: ConfigReader) throws -> DualEncoder {
        let text = try CLIPTextConfig(config.object("text_config"))
        let vision = try CLIPVisionConfig(config.object("vision_config"))
        return DualEncoder(kind: .clip, vision: CLIPVisionTransformer(vision), text: CLIPTextTransformer(text),
                           projectionDim: try config.int("projection_dim", 512),
                           logitScaleInit: try config.double("logit_scale_init_value", 2.6592))
    }

    /// A VisionTextDualEncoderModel, or with `remoteCode` our subclass of it, whose config also
    /// says whether a BERT text tower has pooler weights (`text_pooler`) and whether the model has
    /// SigLIP's `logit_bias` (`logit_bias_init_value`).
    static func dualEncoder(_ config: ConfigReader, weights: [String: Tensor], remoteCode: Bool = false) throws -> DualEncoder {
        let visionReader = try config.object("vision_config")
        let textReader = try config.object("text_config")
        let vision: any ImageTower
        switch try visionReader.string("model_type", "") {
        case "clip_vision_model": vision = CLIPVisionTransformer(try CLIPVisionConfig(visionReader))
        case "clip": vision = CLIPVisionTransformer(try CLIPVisionConfig(visionReader.object("vision_config")))
        case let other: throw visionReader.fail("model_type", "vision tower '\(other)' is not supported (clip_vision_model)")
        }
        let text: any TextTower
        switch try textReader.string("model_type", "") {
        case "bert":
            let pooling = TextPooling(rawValue: try config.string("text_pooling", "pooler"))
            guard let pooling else { throw config.fail("text_pooling", "must be pooler, mean or cls") }
            var hasPooler = weights.keys.contains { canonicalKey($0) == "text_model.pooler.dense.weight" }
            if remoteCode { hasPooler = try config.bool("text_pooler", true) }   // what transformers builds: weights must agree
            if pooling == .pooler && !hasPooler { throw config.fail("text_pooling", "is 'pooler' but the text tower has no pooler weights") }
            text = BertModel(try BertConfig(textReader), pooling: pooling, withPooler: hasPooler)
        case "clip_text_model":
            if try config.string("text_pooling", "pooler") != "pooler" { throw config.fail("text_pooling", "a CLIP text tower pools at its end token ('pooler')") }
            text = CLIPTextTransformer(try CLIPTextConfig(textReader))
        case let other: throw textReader.fail("model_type", "text tower '\(other)' is not supported (bert, clip_text_model)")
        }
        let encoder = DualEncoder(kind: .visionTextDualEncoder, vision: vision, text: text,
                                  projectionDim: try config.int("projection_dim", 512),
                                  logitScaleInit: try config.double("logit_scale_init_value", 2.6592))
        if remoteCode, let bias = try config.optionalDouble("logit_bias_init_value") {
            encoder.logitBias = Tensor.full([], bias).requiringGrad()
        }
        return encoder
    }

    /// sentence-transformers' modules.json / 1_Pooling: mean or CLS pooling, and Normalize.
    static func sentenceTransformersPooling(_ directory: String) throws -> (TextPooling, Bool) {
        let modulesPath = "\(directory)/modules.json"
        guard let data = FileManager.default.contents(atPath: modulesPath) else { return (.pooler, false) }
        guard let modules = (try? JSONSerialization.jsonObject(with: data)) as? [[String: Any]] else {
            throw ModelConfigError(file: modulesPath, reason: "is not a list of sentence-transformers modules")
        }
        let types = modules.compactMap { $0["type"] as? String }
        let normalize = types.contains { $0.hasSuffix("Normalize") }
        guard let poolingModule = modules.first(where: { ($0["type"] as? String)?.hasSuffix("Pooling") == true }),
              let path = poolingModule["path"] as? String else { return (.cls, normalize) }
        let pooling = try ConfigReader.load("\(directory)/\(path)/config.json")
        if pooling.values["pooling_mode_mean_tokens"] as? Bool == true { return (.mean, normalize) }
        if pooling.values["pooling_mode_cls_token"] as? Bool == true { return (.cls, normalize) }
        throw pooling.fail("pooling_mode_mean_tokens", "only mean and CLS pooling are supported")
    }

    // MARK: saving

    /// Files a tokenizer may consist of, copied from the source checkpoint when saving.
    public static let tokenizerFiles = ["vocab.json", "merges.txt", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]

    /// Writes `config.json` + `model.safetensors` that transformers' `AutoModel.from_pretrained`
    /// loads without missing or unexpected keys and computes the same with (`modelFiles`), plus
    /// `preprocessor_config.json` and the tokenizer files found in `tokenizerFrom`.
    public static func save(_ model: DualEncoder, to directory: String, preprocessing: ImagePreprocessing? = nil,
                            tokenizerFrom: String? = nil) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try ShardedSafeTensors.save(model.stateDict(), to: directory)
        for (name, data) in try modelFiles(model) { try AtomicFile.write(data, to: "\(directory)/\(name)") }
        if let p = preprocessing ?? (model.visionModel as? CLIPVisionTransformer).map({ ImagePreprocessing(size: $0.config.imageSize) }) {
            try AtomicFile.write(try JSONSerialization.data(withJSONObject: preprocessorJSON(p), options: [.prettyPrinted, .sortedKeys]),
                                 to: "\(directory)/preprocessor_config.json")
        }
        if let source = tokenizerFrom, URL(fileURLWithPath: source).standardizedFileURL != URL(fileURLWithPath: directory).standardizedFileURL {
            for file in tokenizerFiles where FileManager.default.fileExists(atPath: "\(source)/\(file)") {
                try AtomicFile.write(try Data(contentsOf: URL(fileURLWithPath: "\(source)/\(file)")), to: "\(directory)/\(file)")
            }
        }
    }

    /// Whether transformers' own classes would compute something else with this model: a BERT
    /// text tower pooled by the mean or [CLS] state (they pool with BertModel's pooler), one
    /// without pooler weights (they would initialise them at random), or SigLIP's `logit_bias`
    /// (they would drop it from the logits). Such models are saved with remote code.
    public static func needsRemoteCode(_ model: DualEncoder) -> Bool {
        if model.logitBias != nil { return true }
        if let bert = model.textModel as? BertModel { return bert.pooling != .pooler || bert.pooler == nil }
        return false
    }

    /// The files that describe the model beside its weights: `config.json`, and for a model that
    /// `needsRemoteCode`, `modeling_cliptune.py`.
    public static func modelFiles(_ model: DualEncoder) throws -> [String: Data] {
        var files = [configFile: try JSONSerialization.data(withJSONObject: configJSON(model), options: [.prettyPrinted, .sortedKeys])]
        if needsRemoteCode(model) { files[remoteCodeFile] = Data(remoteCodeSource.utf8) }
        return files
    }

    public static let configFile = "config.json"

    /// `config.json`: transformers' CLIPModel when both towers are CLIP's and the kind says so,
    /// VisionTextDualEncoderModel for other towers it computes the same, else our remote code's
    /// `cliptune-dual-encoder` (its `auto_map`, `text_pooling`, `text_pooler`, `logit_bias_init_value`).
    public static func configJSON(_ model: DualEncoder) -> [String: Any] {
        var json: [String: Any] = ["projection_dim": model.projectionDim, "logit_scale_init_value": 2.6592, "dtype": "float32"]
        let vision = (model.visionModel as? CLIPVisionTransformer).map { $0.config.json } ?? [:]
        var text: [String: Any] = [:]
        if let t = model.textModel as? CLIPTextTransformer { text = t.config.json }
        if let b = model.textModel as? BertModel { text = b.config.json }
        json["vision_config"] = vision
        json["text_config"] = text
        if needsRemoteCode(model) {
            json["model_type"] = remoteCodeModelType
            json["architectures"] = [remoteCodeArchitecture]
            json["auto_map"] = remoteCodeAutoMap
            let bert = model.textModel as? BertModel
            json["text_pooling"] = (bert?.pooling ?? .pooler).rawValue
            if let bert { json["text_pooler"] = bert.pooler != nil }
            if model.logitBias != nil { json["logit_bias_init_value"] = DualEncoder.sigLIPLogitBiasInit }
        } else if model.kind == .clip, model.textModel is CLIPTextTransformer {
            json["model_type"] = "clip"
            json["architectures"] = ["CLIPModel"]
        } else {
            json["model_type"] = "vision-text-dual-encoder"
            json["architectures"] = ["VisionTextDualEncoderModel"]
        }
        return json
    }

    /// The files (besides weights and tokenizer) of a sentence-transformers BERT folder, which
    /// sentence-transformers and `load` read with its pooling and normalisation: config.json,
    /// modules.json, 1_Pooling/config.json, sentence_bert_config.json.
    public static func sentenceTransformerFiles(_ bert: BertModel, normalize: Bool = true) throws -> [String: Data] {
        let json = { (object: Any) in try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]) }
        var config = bert.config.json
        config["architectures"] = ["BertModel"]
        var modules: [[String: Any]] = [
            ["idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"],
            ["idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"],
        ]
        if normalize { modules.append(["idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"]) }
        return [
            "config.json": try json(config),
            "modules.json": try json(modules),
            "1_Pooling/config.json": try json([
                "word_embedding_dimension": bert.width, "pooling_mode_cls_token": bert.pooling == .cls,
                "pooling_mode_mean_tokens": bert.pooling == .mean, "pooling_mode_max_tokens": false, "pooling_mode_mean_sqrt_len_tokens": false,
            ]),
            "sentence_bert_config.json": try json(["max_seq_length": bert.config.maxPositionEmbeddings, "do_lower_case": false]),
        ]
    }

    /// Writes a text-only BERT as a sentence-transformers folder (weights, the files above and
    /// the tokenizer files found in `tokenizerFrom`).
    public static func save(_ bert: BertModel, to directory: String, normalize: Bool = true, tokenizerFrom: String? = nil) throws {
        try FileManager.default.createDirectory(atPath: "\(directory)/1_Pooling", withIntermediateDirectories: true)
        try ShardedSafeTensors.save(bert.stateDict(), to: directory)
        for (name, data) in try sentenceTransformerFiles(bert, normalize: normalize) { try AtomicFile.write(data, to: "\(directory)/\(name)") }
        if let source = tokenizerFrom, URL(fileURLWithPath: source).standardizedFileURL != URL(fileURLWithPath: directory).standardizedFileURL {
            for file in tokenizerFiles where FileManager.default.fileExists(atPath: "\(source)/\(file)") {
                try AtomicFile.write(try Data(contentsOf: URL(fileURLWithPath: "\(source)/\(file)")), to: "\(directory)/\(file)")
            }
        }
    }

    public static func preprocessorJSON(_ p: ImagePreprocessing) -> [String: Any] {
        ["image_processor_type": "CLIPImageProcessor", "do_resize": true, "size": ["shortest_edge": p.shortestEdge],
         "resample": 3, "do_center_crop": true, "crop_size": ["height": p.size, "width": p.size], "do_rescale": true,
         "rescale_factor": 1.0 / 255.0, "do_normalize": true, "image_mean": p.mean, "image_std": p.std, "do_convert_rgb": true]
    }
}
