import Foundation
import NN

/// A config.json that cannot describe a model: names the file and key.
public struct ModelConfigError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let key: String?
    public let reason: String
    public init(file: String, key: String? = nil, reason: String) {
        self.file = file
        self.key = key
        self.reason = reason
    }
    public var description: String { "\(file)\(key.map { ", key '\($0)'" } ?? ""): \(reason)" }
}

/// Reads typed fields of a JSON object, with transformers' default for each absent field and
/// an error naming the key for a present field of the wrong type.
struct ConfigReader {
    let values: [String: Any]
    let file: String
    let prefix: String

    init(_ values: [String: Any], file: String, prefix: String = "") {
        self.values = values
        self.file = file
        self.prefix = prefix
    }

    func fail(_ key: String, _ reason: String) -> ModelConfigError {
        ModelConfigError(file: file, key: prefix + key, reason: reason)
    }

    func int(_ key: String, _ fallback: Int) throws -> Int {
        try optionalInt(key) ?? fallback
    }

    func optionalInt(_ key: String) throws -> Int? {
        guard let v = values[key], !(v is NSNull) else { return nil }
        // JSONSerialization gives NSNumbers; an integral one that is not a boolean is an integer.
        guard let n = v as? NSNumber, !Self.isBoolean(n), n.doubleValue == n.doubleValue.rounded(), Swift.abs(n.doubleValue) < 1e15 else {
            throw fail(key, "expected an integer, found \(v)")
        }
        return n.intValue
    }

    static func isBoolean(_ n: NSNumber) -> Bool {
        let type = String(cString: n.objCType)
        return type == "c" || type == "B"
    }

    func double(_ key: String, _ fallback: Double) throws -> Double {
        guard let v = values[key], !(v is NSNull) else { return fallback }
        guard let n = (v as? NSNumber)?.doubleValue else { throw fail(key, "expected a number, found \(v)") }
        return n
    }

    func optionalDouble(_ key: String) throws -> Double? {
        guard let v = values[key], !(v is NSNull) else { return nil }
        guard let n = v as? NSNumber, !Self.isBoolean(n) else { throw fail(key, "expected a number, found \(v)") }
        return n.doubleValue
    }

    func bool(_ key: String, _ fallback: Bool) throws -> Bool {
        guard let v = values[key], !(v is NSNull) else { return fallback }
        guard let n = v as? NSNumber, Self.isBoolean(n) else { throw fail(key, "expected true or false, found \(v)") }
        return n.boolValue
    }

    func string(_ key: String, _ fallback: String) throws -> String {
        guard let v = values[key], !(v is NSNull) else { return fallback }
        guard let s = v as? String else { throw fail(key, "expected a string, found \(v)") }
        return s
    }

    func activation(_ key: String, _ fallback: Activation) throws -> Activation {
        let name = try string(key, fallback.rawValue)
        guard let a = Activation(huggingFaceName: name) else {
            throw fail(key, "activation '\(name)' is not supported (gelu, gelu_new, gelu_pytorch_tanh, quick_gelu, relu)")
        }
        return a
    }

    func object(_ key: String) throws -> ConfigReader {
        guard let v = values[key], !(v is NSNull) else { return ConfigReader([:], file: file, prefix: prefix + key + ".") }
        guard let d = v as? [String: Any] else { throw fail(key, "expected an object") }
        return ConfigReader(d, file: file, prefix: prefix + key + ".")
    }

    static func load(_ path: String) throws -> ConfigReader {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelConfigError(file: path, reason: "is missing; a checkpoint folder needs config.json")
        }
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ModelConfigError(file: path, reason: "is not a JSON object")
        }
        return ConfigReader(json, file: path)
    }
}

/// Checks shared by every transformer config.
func checkTransformer(_ r: ConfigReader, hidden: Int, heads: Int, layers: Int, intermediate: Int) throws {
    for (key, value) in [("hidden_size", hidden), ("num_attention_heads", heads), ("num_hidden_layers", layers), ("intermediate_size", intermediate)] where value <= 0 {
        throw r.fail(key, "must be positive, got \(value)")
    }
    if hidden % heads != 0 { throw r.fail("num_attention_heads", "hidden_size \(hidden) is not divisible by \(heads) heads") }
}

/// transformers' CLIPTextConfig (defaults as there).
public struct CLIPTextConfig: Sendable, Equatable {
    public var vocabSize = 49408, hiddenSize = 512, intermediateSize = 2048, numHiddenLayers = 12, numAttentionHeads = 8
    public var maxPositionEmbeddings = 77
    public var hiddenAct = Activation.quickGELU
    public var layerNormEps = 1e-5
    public var attentionDropout = 0.0
    public var bosTokenId = 49406, eosTokenId = 49407, padTokenId = 1

    public init() {}

    init(_ r: ConfigReader) throws {
        vocabSize = try r.int("vocab_size", vocabSize)
        hiddenSize = try r.int("hidden_size", hiddenSize)
        intermediateSize = try r.int("intermediate_size", intermediateSize)
        numHiddenLayers = try r.int("num_hidden_layers", numHiddenLayers)
        numAttentionHeads = try r.int("num_attention_heads", numAttentionHeads)
        maxPositionEmbeddings = try r.int("max_position_embeddings", maxPositionEmbeddings)
        hiddenAct = try r.activation("hidden_act", hiddenAct)
        layerNormEps = try r.double("layer_norm_eps", layerNormEps)
        attentionDropout = try r.double("attention_dropout", attentionDropout)
        bosTokenId = try r.optionalInt("bos_token_id") ?? bosTokenId
        eosTokenId = try r.optionalInt("eos_token_id") ?? eosTokenId
        padTokenId = try r.optionalInt("pad_token_id") ?? padTokenId
        try checkTransformer(r, hidden: hiddenSize, heads: numAttentionHeads, layers: numHiddenLayers, intermediate: intermediateSize)
        if vocabSize <= 0 || maxPositionEmbeddings <= 0 { throw r.fail("vocab_size", "vocab_size and max_position_embeddings must be positive") }
    }

    public var json: [String: Any] {
        ["model_type": "clip_text_model", "vocab_size": vocabSize, "hidden_size": hiddenSize, "intermediate_size": intermediateSize,
         "num_hidden_layers": numHiddenLayers, "num_attention_heads": numAttentionHeads, "max_position_embeddings": maxPositionEmbeddings,
         "hidden_act": hiddenAct.rawValue, "layer_norm_eps": layerNormEps, "attention_dropout": attentionDropout,
         "bos_token_id": bosTokenId, "eos_token_id": eosTokenId, "pad_token_id": padTokenId]
    }
}

/// transformers' CLIPVisionConfig.
public struct CLIPVisionConfig: Sendable, Equatable {
    public var hiddenSize = 768, intermediateSize = 3072, numHiddenLayers = 12, numAttentionHeads = 12
    public var numChannels = 3, imageSize = 224, patchSize = 32
    public var hiddenAct = Activation.quickGELU
    public var layerNormEps = 1e-5
    public var attentionDropout = 0.0

    public init() {}

    init(_ r: ConfigReader) throws {
        hiddenSize = try r.int("hidden_size", hiddenSize)
        intermediateSize = try r.int("intermediate_size", intermediateSize)
        numHiddenLayers = try r.int("num_hidden_layers", numHiddenLayers)
        numAttentionHeads = try r.int("num_attention_heads", numAttentionHeads)
        numChannels = try r.int("num_channels", numChannels)
        imageSize = try r.int("image_size", imageSize)
        patchSize = try r.int("patch_size", patchSize)
        hiddenAct = try r.activation("hidden_act", hiddenAct)
        layerNormEps = try r.double("layer_norm_eps", layerNormEps)
        attentionDropout = try r.double("attention_dropout", attentionDropout)
        try checkTransformer(r, hidden: hiddenSize, heads: numAttentionHeads, layers: numHiddenLayers, intermediate: intermediateSize)
        if patchSize <= 0 || imageSize <= 0 || imageSize % patchSize != 0 {
            throw r.fail("patch_size", "image_size \(imageSize) must be a positive multiple of patch_size \(patchSize)")
        }
    }

    public var patchesPerSide: Int { imageSize / patchSize }

    public var json: [String: Any] {
        ["model_type": "clip_vision_model", "hidden_size": hiddenSize, "intermediate_size": intermediateSize,
         "num_hidden_layers": numHiddenLayers, "num_attention_heads": numAttentionHeads, "num_channels": numChannels,
         "image_size": imageSize, "patch_size": patchSize, "hidden_act": hiddenAct.rawValue, "layer_norm_eps": layerNormEps,
         "attention_dropout": attentionDropout]
    }
}

/// transformers' BertConfig (the fields a BERT text tower needs).
public struct BertConfig: Sendable, Equatable {
    public var vocabSize = 30522, hiddenSize = 768, numHiddenLayers = 12, numAttentionHeads = 12, intermediateSize = 3072
    public var hiddenAct = Activation.gelu
    public var hiddenDropoutProb = 0.1, attentionProbsDropoutProb = 0.1
    public var maxPositionEmbeddings = 512, typeVocabSize = 2
    public var layerNormEps = 1e-12
    public var padTokenId = 0

    public init() {}

    init(_ r: ConfigReader) throws {
        vocabSize = try r.int("vocab_size", vocabSize)
        hiddenSize = try r.int("hidden_size", hiddenSize)
        numHiddenLayers = try r.int("num_hidden_layers", numHiddenLayers)
        numAttentionHeads = try r.int("num_attention_heads", numAttentionHeads)
        intermediateSize = try r.int("intermediate_size", intermediateSize)
        hiddenAct = try r.activation("hidden_act", hiddenAct)
        hiddenDropoutProb = try r.double("hidden_dropout_prob", hiddenDropoutProb)
        attentionProbsDropoutProb = try r.double("attention_probs_dropout_prob", attentionProbsDropoutProb)
        maxPositionEmbeddings = try r.int("max_position_embeddings", maxPositionEmbeddings)
        typeVocabSize = try r.int("type_vocab_size", typeVocabSize)
        layerNormEps = try r.double("layer_norm_eps", layerNormEps)
        padTokenId = try r.optionalInt("pad_token_id") ?? padTokenId
        let embedding = try r.string("position_embedding_type", "absolute")
        guard embedding == "absolute" else { throw r.fail("position_embedding_type", "only absolute position embeddings are supported, found '\(embedding)'") }
        try checkTransformer(r, hidden: hiddenSize, heads: numAttentionHeads, layers: numHiddenLayers, intermediate: intermediateSize)
    }

    public var json: [String: Any] {
        ["model_type": "bert", "vocab_size": vocabSize, "hidden_size": hiddenSize, "num_hidden_layers": numHiddenLayers,
         "num_attention_heads": numAttentionHeads, "intermediate_size": intermediateSize, "hidden_act": hiddenAct == .geluTanh ? "gelu_new" : hiddenAct.rawValue,
         "hidden_dropout_prob": hiddenDropoutProb, "attention_probs_dropout_prob": attentionProbsDropoutProb,
         "max_position_embeddings": maxPositionEmbeddings, "type_vocab_size": typeVocabSize, "layer_norm_eps": layerNormEps,
         "pad_token_id": padTokenId]
    }
}
