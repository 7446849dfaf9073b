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
    /// The folder of the model's config, tokenizer and preprocessing: the checkpoint, or for a
    /// LoRA adapter folder the base model's.
    public let directory: String
    public let model: PretrainedModel
    /// From `preprocessor_config.json`, or CLIP's defaults at the vision tower's image size.
    public let preprocessing: ImagePreprocessing?
    /// The LoRA adapter applied to the base in `directory`, when the checkpoint was an adapter folder.
    public var adapter: LoadedAdapter?

    public init(directory: String, model: PretrainedModel, preprocessing: ImagePreprocessing?, adapter: LoadedAdapter? = nil) {
        self.directory = directory
        self.model = model
        self.preprocessing = preprocessing
        self.adapter = adapter
    }
}

/// Reads and writes Hugging Face checkpoint folders (`config.json` + `model.safetensors` [+ shards]).
public enum Pretrained {
    public static let supportedModelTypes = ["clip", "vision-text-dual-encoder", remoteCodeModelType, "bert"]

    /// Loads any supported checkpoint folder. Every problem (unknown `model_type`, bad config
    /// field, missing or mismatched weights) is reported with the file and key.
    ///
    /// Order: every field of config.json and preprocessor_config.json is read and checked
    /// against the others first (sizes with overflow-checked arithmetic, see `ConfigLimits`);
    /// the weight files' headers are read (memory-mapped, nothing copied), and a model far larger
    /// than the values they hold (over twice as many, plus `allocationSlack`) is refused — it could
    /// not be filled from them, and building it could allocate anything; only then is the model built, inside
    /// `withTorchErrors`, its weights loaded, and one tiny input run through each tower, so that
    /// anything the checks miss is an error naming config.json, not a trap.
    ///
    /// A PEFT LoRA adapter folder (`adapter_config.json`) loads its base model (`base`, else the
    /// folder its `base_model_name_or_path` names) and applies the adapter to it, merged into the
    /// weights unless `mergeAdapter` is false (see AdapterLoading.swift).
    public static func load(_ directory: String, base: String? = nil, mergeAdapter: Bool = true) throws -> PretrainedCheckpoint {
        if PeftAdapter.isAdapterFolder(directory) { return try loadAdapter(directory, base: base, merge: mergeAdapter) }
        return try loadModel(directory)
    }

    /// Loads a checkpoint folder of a whole model.
    static func loadModel(_ directory: String) throws -> PretrainedCheckpoint {
        let configPath = "\(directory)/config.json"
        let config = try ConfigReader.load(configPath)
        let modelType = try config.string("model_type", "")
        guard supportedModelTypes.contains(modelType) else {
            throw config.fail("model_type", modelType.isEmpty ? "is missing; cannot tell which architecture this is"
                : "'\(modelType)' is not supported (supported: \(supportedModelTypes.joined(separator: ", ")))")
        }
        let weights = try loadWeights(directory)
        let architecture = try Architecture(config, modelType: modelType, directory: directory, weightKeys: weights.keys.map { $0 })

        var preprocessing: ImagePreprocessing?
        if let (vision, sizeKey) = architecture.vision {
            let path = "\(directory)/preprocessor_config.json"
            preprocessing = FileManager.default.fileExists(atPath: path)
                ? try PreprocessorConfig.read(path, imageSize: vision.imageSize, sizeKey: sizeKey)
                : ImagePreprocessing(size: vision.imageSize)
        }

        // A model larger than its weights could not be filled from them (loading is strict). One
        // far larger is refused before anything is allocated; a near miss is built and gets the
        // state-dict report, which names each tensor whose shape differs.
        let stored = weights.values.reduce(0) { $0 + $1.count }
        try architecture.parameters.check(
            limit: 2 * stored + Pretrained.allocationSlack, file: configPath,
            what: "far more than the \(ParameterTally.formatted(stored)) values its weights hold: config.json and the weights do not belong together")

        let model = try withTorchErrors { architecture.build() }
        switch model {
        case .dualEncoder(let encoder):
            try encoder.load(weights, source: directory, rename: canonicalKey)
            encoder.eval()
        case .textEncoder(let bert, _):
            try bert.load(weights, source: directory, rename: canonicalKey)
            bert.eval()
        }
        try probe(model, preprocessing: preprocessing, architecture: architecture, configPath: configPath)
        return PretrainedCheckpoint(directory: directory, model: model, preprocessing: preprocessing)
    }

    /// How many parameters a config may ask for beyond twice what the weight files hold before
    /// `load` refuses it unbuilt: 16M (64 MB of float32).
    static let allocationSlack = 1 << 24

    /// What a config.json describes, read and checked without building anything.
    struct Architecture {
        enum Text {
            case clip(CLIPTextConfig)
            case bert(BertConfig, pooling: TextPooling, withPooler: Bool)
        }
        enum Kind {
            case dualEncoder(DualEncoder.Kind, vision: CLIPVisionConfig, visionSizeKey: String, text: Text, projectionDim: Int,
                             logitScaleInit: Double, logitBias: Double?)
            case textEncoder(BertConfig, pooling: TextPooling, normalize: Bool, withPooler: Bool)
        }
        let kind: Kind
        /// Every tower's and projection's parameters (a lower bound of the built model's count).
        let parameters: ParameterTally

        init(kind: Kind, parameters: ParameterTally) {
            self.kind = kind
            self.parameters = parameters
        }

        init(_ config: ConfigReader, modelType: String, directory: String, weightKeys: [String]) throws {
            let keys = Set(weightKeys.compactMap(canonicalKey))
            switch modelType {
            case "clip": self = try Pretrained.clipArchitecture(config)
            case "bert":
                let (pooling, normalize) = try sentenceTransformersPooling(directory)
                let bert = try BertConfig(config)
                let withPooler = keys.contains("pooler.dense.weight")
                if pooling == .pooler && !withPooler {
                    throw ModelConfigError(file: config.file, reason: "this BERT has no pooler weights (pooler.dense.*) and no sentence-transformers modules.json with a Pooling module saying how it pools its tokens")
                }
                self.init(kind: .textEncoder(bert, pooling: pooling, normalize: normalize, withPooler: withPooler), parameters: bert.parameters())
            default: self = try Pretrained.dualEncoderArchitecture(config, weightKeys: keys, remoteCode: modelType == remoteCodeModelType)
            }
        }

        /// The vision tower's config and the key of its image size in config.json.
        var vision: (CLIPVisionConfig, String)? {
            if case .dualEncoder(_, let vision, let key, _, _, _, _) = kind { return (vision, key) }
            return nil
        }

        func build() -> PretrainedModel {
            switch kind {
            case .dualEncoder(let kind, let vision, _, let text, let projectionDim, let logitScaleInit, let logitBias):
                let textTower: any TextTower
                switch text {
                case .clip(let c): textTower = CLIPTextTransformer(c)
                case .bert(let c, let pooling, let withPooler): textTower = BertModel(c, pooling: pooling, withPooler: withPooler)
                }
                let encoder = DualEncoder(kind: kind, vision: CLIPVisionTransformer(vision), text: textTower, projectionDim: projectionDim,
                                          logitScaleInit: logitScaleInit)
                if let logitBias { encoder.logitBias = Tensor.full([], logitBias).requiringGrad() }
                return .dualEncoder(encoder)
            case .textEncoder(let c, let pooling, let normalize, let withPooler):
                return .textEncoder(BertModel(c, pooling: pooling, withPooler: withPooler), normalize: normalize)
            }
        }
    }

    /// One image of the preprocessing's size and one two-token text through each tower, inside
    /// `withTorchErrors`: a model that fails on them fails here, with an error, not later with a trap.
    static func probe(_ model: PretrainedModel, preprocessing: ImagePreprocessing?, architecture: Architecture, configPath: String) throws {
        var ids = Tensor([Int64(0), 0], shape: [1, 2])
        if case .dualEncoder(_, _, _, .clip(let text), _, _, _) = architecture.kind {
            ids = Tensor([Int64(text.bosTokenId), Int64(text.eosTokenId)], shape: [1, 2])
        }
        let mask = Tensor.ones(like: ids)
        do {
            try withTorchErrors {
                withNoGrad {
                    switch model {
                    case .dualEncoder(let encoder):
                        if let size = preprocessing?.size { _ = encoder.imageFeatures(Tensor.zeros([1, 3, size, size])) }
                        _ = encoder.textFeatures(ids: ids, attentionMask: mask)
                    case .textEncoder(let bert, _):
                        _ = bert.pooled(ids: ids, attentionMask: mask)
                    }
                }
            }
        } catch let error as TorchError {
            throw ModelConfigError(file: configPath, reason: "the model it describes fails on a one-image, two-token test input: \(error)")
        }
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
                : fm.fileExists(atPath: "\(directory)/\(PeftAdapter.weightsFile)")
                ? "holds \(PeftAdapter.weightsFile) but no \(PeftAdapter.configFile), which a LoRA adapter folder needs beside it"
                : "has no model.safetensors or model.safetensors.index.json"
            throw ModelConfigError(file: directory, reason: reason)
        }
        return try ShardedSafeTensors.load(directory)
    }

    /// A CLIPModel built from its config (random weights).
    static func clip(_ config: ConfigReader) throws -> DualEncoder {
        guard case .dualEncoder(let encoder) = try clipArchitecture(config).build() else { fatalError("a CLIP architecture builds a dual encoder") }
        return encoder
    }

    static func clipArchitecture(_ config: ConfigReader) throws -> Architecture {
        let textReader = try config.object("text_config"), visionReader = try config.object("vision_config")
        let text = try CLIPTextConfig(textReader)
        let vision = try CLIPVisionConfig(visionReader)
        let projectionDim = try config.int("projection_dim", 512, in: 1...Int.max)
        var parameters = text.parameters(prefix: textReader.prefix)
        parameters.add(vision.parameters(prefix: visionReader.prefix))
        parameters.add(projections(config, vision: (vision.hiddenSize, visionReader.prefix), text: (text.hiddenSize, textReader.prefix), projectionDim))
        try parameters.check(limit: ConfigLimits.maxParameters, file: config.file, what: "above the limit of 20 billion")
        return Architecture(kind: .dualEncoder(.clip, vision: vision, visionSizeKey: visionReader.prefix + "image_size", text: .clip(text),
                                               projectionDim: projectionDim, logitScaleInit: try logitScaleInit(config), logitBias: nil),
                            parameters: parameters)
    }

    static func projections(_ config: ConfigReader, vision: (width: Int, prefix: String), text: (width: Int, prefix: String), _ dim: Int) -> ParameterTally {
        var t = ParameterTally()
        t.add([(vision.prefix + "hidden_size", vision.width), ("projection_dim", dim)])
        t.add([(text.prefix + "hidden_size", text.width), ("projection_dim", dim)])
        return t
    }

    static func logitScaleInit(_ config: ConfigReader) throws -> Double {
        try config.double("logit_scale_init_value", 2.6592, in: -100...100, "exp(logit_scale) multiplies the cosines")
    }

    /// A VisionTextDualEncoderModel, or with `remoteCode` our subclass of it, whose config also
    /// says whether a BERT text tower has pooler weights (`text_pooler`) and whether the model has
    /// SigLIP's `logit_bias` (`logit_bias_init_value`).
    static func dualEncoderArchitecture(_ config: ConfigReader, weightKeys: Set<String>, remoteCode: Bool = false) throws -> Architecture {
        var visionReader = try config.object("vision_config")
        let textReader = try config.object("text_config")
        switch try visionReader.string("model_type", "") {
        case "clip_vision_model": break
        case "clip": visionReader = try visionReader.object("vision_config")
        case let other: throw visionReader.fail("model_type", "vision tower '\(other)' is not supported (clip_vision_model)")
        }
        let vision = try CLIPVisionConfig(visionReader)
        let text: Architecture.Text
        var parameters = vision.parameters(prefix: visionReader.prefix)
        let textWidth: Int
        switch try textReader.string("model_type", "") {
        case "bert":
            let pooling = TextPooling(rawValue: try config.string("text_pooling", "pooler"))
            guard let pooling else { throw config.fail("text_pooling", "must be pooler, mean or cls") }
            var hasPooler = weightKeys.contains("text_model.pooler.dense.weight")
            if remoteCode { hasPooler = try config.bool("text_pooler", true) }   // what transformers builds: weights must agree
            if pooling == .pooler && !hasPooler { throw config.fail("text_pooling", "is 'pooler' but the text tower has no pooler weights") }
            let bert = try BertConfig(textReader)
            text = .bert(bert, pooling: pooling, withPooler: hasPooler)
            parameters.add(bert.parameters(prefix: textReader.prefix))
            textWidth = bert.hiddenSize
        case "clip_text_model":
            if try config.string("text_pooling", "pooler") != "pooler" { throw config.fail("text_pooling", "a CLIP text tower pools at its end token ('pooler')") }
            let clip = try CLIPTextConfig(textReader)
            text = .clip(clip)
            parameters.add(clip.parameters(prefix: textReader.prefix))
            textWidth = clip.hiddenSize
        case let other: throw textReader.fail("model_type", "text tower '\(other)' is not supported (bert, clip_text_model)")
        }
        let projectionDim = try config.int("projection_dim", 512, in: 1...Int.max)
        parameters.add(projections(config, vision: (vision.hiddenSize, visionReader.prefix), text: (textWidth, textReader.prefix), projectionDim))
        try parameters.check(limit: ConfigLimits.maxParameters, file: config.file, what: "above the limit of 20 billion")
        var bias: Double?
        if remoteCode { bias = try config.optionalDouble("logit_bias_init_value") }
        return Architecture(kind: .dualEncoder(.visionTextDualEncoder, vision: vision, visionSizeKey: visionReader.prefix + "image_size", text: text,
                                               projectionDim: projectionDim, logitScaleInit: try logitScaleInit(config), logitBias: bias),
                            parameters: parameters)
    }

    /// sentence-transformers' modules.json / 1_Pooling: mean or CLS pooling, and Normalize.
    static func sentenceTransformersPooling(_ directory: String) throws -> (TextPooling, Bool) {
        let modulesPath = "\(directory)/modules.json"
        guard FileManager.default.fileExists(atPath: modulesPath) else { return (.pooler, false) }
        let size = (try? FileManager.default.attributesOfItem(atPath: modulesPath)[.size] as? NSNumber)?.intValue ?? 0
        guard size <= ConfigReader.maxFileBytes, let data = FileManager.default.contents(atPath: modulesPath),
              let modules = (try? JSONSerialization.jsonObject(with: data)) as? [[String: Any]] else {
            throw ModelConfigError(file: modulesPath, reason: "is not a list of sentence-transformers modules")
        }
        let types = modules.compactMap { $0["type"] as? String }
        let normalize = types.contains { $0.hasSuffix("Normalize") }
        guard let poolingModule = modules.first(where: { ($0["type"] as? String)?.hasSuffix("Pooling") == true }),
              let path = poolingModule["path"] as? String else { return (.cls, normalize) }
        let pooling = try ConfigReader.load("\(directory)/\(path)/config.json", missing: "is missing; modules.json names it as the Pooling module's folder")
        if try pooling.bool("pooling_mode_mean_tokens", false) { return (.mean, normalize) }
        if try pooling.bool("pooling_mode_cls_token", false) { return (.cls, normalize) }
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
