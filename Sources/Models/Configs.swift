import Datasets
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
        guard let n = v as? NSNumber, !Self.isBoolean(n), n.doubleValue == n.doubleValue.rounded() else {
            throw fail(key, "expected an integer, found \(Self.describe(v))")
        }
        guard Swift.abs(n.doubleValue) < 1e15 else { throw fail(key, "is far too large (\(n)); sizes and ids are below 10^15") }
        return n.intValue
    }

    /// An integer in `range` (transformers' `fallback` when absent).
    func int(_ key: String, _ fallback: Int, in range: ClosedRange<Int>, _ why: String = "") throws -> Int {
        try check(key, try int(key, fallback), in: range, why)
    }

    /// `value` (read from `key`) when it lies in `range`, else an error naming the key and the range.
    @discardableResult
    func check(_ key: String, _ value: Int, in range: ClosedRange<Int>, _ why: String = "") throws -> Int {
        guard range.contains(value) else {
            let bounds = range.upperBound == Int.max ? "at least \(range.lowerBound)"
                : range.lowerBound == range.upperBound ? "\(range.lowerBound)"
                : "between \(range.lowerBound) and \(range.upperBound)"
            throw fail(key, "must be \(bounds), found \(value)" + (why.isEmpty ? "" : " (\(why))"))
        }
        return value
    }

    static func isBoolean(_ n: NSNumber) -> Bool {
        let type = String(cString: n.objCType)
        return type == "c" || type == "B"
    }

    /// How an error message shows a JSON value of the wrong kind: `the string "32"`, `true`,
    /// `1.5`, `an array`, `an object`.
    static func describe(_ v: Any) -> String {
        switch v {
        case let s as String:
            let shown = s.count > 40 ? String(s.prefix(40)) + "…" : s
            return "the string \"\(shown)\""
        case let n as NSNumber: return isBoolean(n) ? (n.boolValue ? "true" : "false") : "\(n)"
        case is [Any]: return "an array"
        case is [String: Any]: return "an object"
        case is NSNull: return "null"
        default: return "\(v)"
        }
    }

    func double(_ key: String, _ fallback: Double) throws -> Double {
        try optionalDouble(key) ?? fallback
    }

    func optionalDouble(_ key: String) throws -> Double? {
        guard let v = values[key], !(v is NSNull) else { return nil }
        guard let n = v as? NSNumber, !Self.isBoolean(n) else { throw fail(key, "expected a number, found \(Self.describe(v))") }
        guard n.doubleValue.isFinite else { throw fail(key, "must be a finite number, found \(n)") }
        return n.doubleValue
    }

    /// A number in `range` (both ends included unless `openAbove`).
    func double(_ key: String, _ fallback: Double, in range: ClosedRange<Double>, openAbove: Bool = false, _ why: String = "") throws -> Double {
        let value = try double(key, fallback)
        guard range.contains(value), !(openAbove && value == range.upperBound) else {
            let lower = range.lowerBound == Double.leastNonzeroMagnitude ? "> 0" : "≥ \(range.lowerBound)"
            throw fail(key, "must be \(lower) and \(openAbove ? "<" : "≤") \(range.upperBound), found \(value)" + (why.isEmpty ? "" : " (\(why))"))
        }
        return value
    }

    func bool(_ key: String, _ fallback: Bool) throws -> Bool {
        guard let v = values[key], !(v is NSNull) else { return fallback }
        guard let n = v as? NSNumber, Self.isBoolean(n) else { throw fail(key, "expected true or false, found \(Self.describe(v))") }
        return n.boolValue
    }

    func string(_ key: String, _ fallback: String) throws -> String {
        guard let v = values[key], !(v is NSNull) else { return fallback }
        guard let s = v as? String else { throw fail(key, "expected a string, found \(Self.describe(v))") }
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
        guard let d = v as? [String: Any] else { throw fail(key, "expected an object, found \(Self.describe(v))") }
        return ConfigReader(d, file: file, prefix: prefix + key + ".")
    }

    /// Config files above this are refused unread: model configs are a few kilobytes.
    static let maxFileBytes = 16 << 20

    /// Reads a JSON object file. `missing` says what a missing file means.
    static func load(_ path: String, missing: String = "is missing; a checkpoint folder needs config.json") throws -> ConfigReader {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { throw ModelConfigError(file: path, reason: missing) }
        guard !isFolder.boolValue else { throw ModelConfigError(file: path, reason: "is a folder, not a JSON file") }
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? 0
        guard size <= maxFileBytes else {
            throw ModelConfigError(file: path, reason: "is \(size) bytes; a config file is a few kilobytes (limit \(maxFileBytes >> 20) MB), so this is not one")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw ModelConfigError(file: path, reason: "cannot be read") }
        let parsed: Any
        do { parsed = try JSONSerialization.jsonObject(with: data) } catch {
            throw ModelConfigError(file: path, reason: "is not valid JSON")
        }
        guard let json = parsed as? [String: Any] else { throw ModelConfigError(file: path, reason: "is not a JSON object") }
        return ConfigReader(json, file: path)
    }
}

/// Sizes a config can ask for, checked before any tensor is built. A config is data: a typo or
/// a damaged file must become an error naming the key, never a trap or a huge allocation.
public enum ConfigLimits {
    /// The most parameters a model built from a config may have: 20 billion (80 GB in float32),
    /// above the largest public CLIP-style model (EVA-CLIP-18B, 18.1B). Whatever a config says,
    /// `Pretrained.load` also refuses a model larger than its weight files (it could not be filled
    /// from them), so a small damaged checkpoint never allocates more than its own size.
    public static let maxParameters = 20_000_000_000
    /// Transformer layers per tower: 1,024 (the deepest CLIP towers have 48).
    public static let maxLayers = 1_024
    /// Positions of a text tower: 1,000,000, the limit tokenizers already apply to
    /// `model_max_length` (long-context BERTs have 8,192; CLIP 77).
    public static let maxPositions = 1_000_000
    /// Image side: 4,096 pixels (public CLIP/SigLIP towers use 224–896; one 4,096² RGB float
    /// image is 201 MB).
    public static let maxImageSide = ImagePreprocessing.maxSize
}

/// Parameters a config asks for, as products of its keys, added with overflow checks: a lower
/// bound of the built model's parameter count (the embedding tables and weight matrices; biases
/// and norms left out), so it never exceeds what a correct checkpoint holds.
public struct ParameterTally: Sendable {
    public struct Term: Sendable {
        public let keys: [String]
        public let factors: [Int]
        /// nil: the product overflows 64 bits.
        public let count: Int?
    }
    public private(set) var terms: [Term] = []
    /// nil once any term or the sum overflows.
    public private(set) var total: Int? = 0

    public init() {}

    mutating func add(_ factors: [(key: String, value: Int)]) {
        var product: Int? = 1
        for (_, value) in factors {
            guard let p = product else { break }
            let (r, overflow) = p.multipliedReportingOverflow(by: Swift.max(0, value))
            product = overflow ? nil : r
        }
        terms.append(Term(keys: factors.map(\.key), factors: factors.map(\.value), count: product))
        if let t = total, let p = product {
            let (r, overflow) = t.addingReportingOverflow(p)
            total = overflow ? nil : r
        } else {
            total = nil
        }
    }

    mutating func add(_ other: ParameterTally) {
        for term in other.terms { add(zip(term.keys, term.factors).map { ($0, $1) }) }
    }

    /// The largest term, for messages ("text_config.vocab_size × text_config.hidden_size = ...").
    public var largest: Term? { terms.max { ($0.count ?? Int.max) < ($1.count ?? Int.max) } }

    static func describe(_ term: Term) -> String {
        let product = term.keys.joined(separator: " × ") + " (" + term.factors.map(String.init).joined(separator: " × ") + ")"
        return product + " = " + (term.count.map { Self.formatted($0) } ?? "more than 2^63")
    }

    static func formatted(_ n: Int) -> String {
        let digits = String(n)
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return out
    }

    /// Throws when the total overflows or exceeds `limit`, naming the largest term's first key.
    func check(limit: Int, file: String, what: String) throws {
        if let total, total <= limit { return }
        let term = largest
        let amount = total.map { "at least \(Self.formatted($0)) parameters" } ?? "more than 2^63 parameters"
        // Blame the key with the largest factor of the largest term (constants have no key).
        let blamed = term.flatMap { t in zip(t.keys, t.factors).filter { !$0.0.allSatisfy(\.isNumber) }.max { $0.1 < $1.1 }?.0 }
        throw ModelConfigError(file: file, key: blamed,
                               reason: "describes a model of \(amount) (largest: \(term.map(Self.describe) ?? "?")), \(what)")
    }
}

/// Checks shared by every transformer config.
func checkTransformer(_ r: ConfigReader, hidden: Int, heads: Int, layers: Int, intermediate: Int) throws {
    try r.check("hidden_size", hidden, in: 1...Int.max)
    try r.check("num_attention_heads", heads, in: 1...Int.max)
    try r.check("num_hidden_layers", layers, in: 1...ConfigLimits.maxLayers)
    try r.check("intermediate_size", intermediate, in: 1...Int.max)
    if hidden % heads != 0 { throw r.fail("num_attention_heads", "hidden_size \(hidden) is not divisible by \(heads) heads") }
}

/// The weight matrices of `layers` transformer layers (attention q, k, v, out; MLP up and down).
/// A text tower's token and position tables (vocabulary × width, positions × width).
func tokenTableTerms(_ prefix: String, vocabulary: Int, positions: Int, hidden: Int) -> ParameterTally {
    var t = ParameterTally()
    t.add([(prefix + "vocab_size", vocabulary), (prefix + "hidden_size", hidden)])
    t.add([(prefix + "max_position_embeddings", positions), (prefix + "hidden_size", hidden)])
    return t
}

func layerTerms(_ prefix: String, hidden: Int, intermediate: Int, layers: Int) -> ParameterTally {
    var t = ParameterTally()
    t.add([(prefix + "num_hidden_layers", layers), ("4", 4), (prefix + "hidden_size", hidden), (prefix + "hidden_size", hidden)])
    t.add([(prefix + "num_hidden_layers", layers), ("2", 2), (prefix + "intermediate_size", intermediate), (prefix + "hidden_size", hidden)])
    return t
}

/// A token id of the config, which must name a row of the embedding table.
func checkTokenId(_ r: ConfigReader, _ key: String, _ id: Int, vocabSize: Int) throws {
    guard (0..<vocabSize).contains(id) else {
        throw r.fail(key, "is \(id), outside the vocabulary (vocab_size \(vocabSize): ids 0–\(vocabSize - 1))")
    }
}

/// Dropout probabilities: [0, 1).
private let probability = 0.0...1.0

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
        vocabSize = try r.int("vocab_size", vocabSize, in: 1...Int.max)
        hiddenSize = try r.int("hidden_size", hiddenSize)
        intermediateSize = try r.int("intermediate_size", intermediateSize)
        numHiddenLayers = try r.int("num_hidden_layers", numHiddenLayers)
        numAttentionHeads = try r.int("num_attention_heads", numAttentionHeads)
        maxPositionEmbeddings = try r.int("max_position_embeddings", maxPositionEmbeddings, in: 2...ConfigLimits.maxPositions,
                                          "a text needs at least its start and end tokens")
        hiddenAct = try r.activation("hidden_act", hiddenAct)
        layerNormEps = try r.double("layer_norm_eps", layerNormEps, in: Double.leastNonzeroMagnitude...1)
        attentionDropout = try r.double("attention_dropout", attentionDropout, in: probability, openAbove: true)
        try checkTransformer(r, hidden: hiddenSize, heads: numAttentionHeads, layers: numHiddenLayers, intermediate: intermediateSize)
        // The ids must name rows of the token table: the text is pooled at eos_token_id, so an
        // id outside it would pool every text at its first token and embed them all alike.
        bosTokenId = try r.optionalInt("bos_token_id") ?? bosTokenId
        eosTokenId = try r.optionalInt("eos_token_id") ?? eosTokenId
        padTokenId = try r.optionalInt("pad_token_id") ?? padTokenId
        try checkTokenId(r, "eos_token_id", eosTokenId, vocabSize: vocabSize)
        try checkTokenId(r, "bos_token_id", bosTokenId, vocabSize: vocabSize)
        try checkTokenId(r, "pad_token_id", padTokenId, vocabSize: vocabSize)
        try parameters(prefix: r.prefix).check(limit: ConfigLimits.maxParameters, file: r.file, what: "above the limit of 20 billion")
    }

    /// The embedding tables and weight matrices this config asks for (see `ParameterTally`).
    public func parameters(prefix: String = "") -> ParameterTally {
        var t = ParameterTally()
        t.add(tokenTableTerms(prefix, vocabulary: vocabSize, positions: maxPositionEmbeddings, hidden: hiddenSize))
        t.add(layerTerms(prefix, hidden: hiddenSize, intermediate: intermediateSize, layers: numHiddenLayers))
        return t
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
        numChannels = try r.int("num_channels", numChannels, in: 3...3, "images are decoded to RGB")
        imageSize = try r.int("image_size", imageSize, in: 1...ConfigLimits.maxImageSide)
        patchSize = try r.int("patch_size", patchSize, in: 1...imageSize, "a patch lies within the image")
        hiddenAct = try r.activation("hidden_act", hiddenAct)
        layerNormEps = try r.double("layer_norm_eps", layerNormEps, in: Double.leastNonzeroMagnitude...1)
        attentionDropout = try r.double("attention_dropout", attentionDropout, in: probability, openAbove: true)
        try checkTransformer(r, hidden: hiddenSize, heads: numAttentionHeads, layers: numHiddenLayers, intermediate: intermediateSize)
        if imageSize % patchSize != 0 {
            throw r.fail("patch_size", "image_size \(imageSize) must be a positive multiple of patch_size \(patchSize)")
        }
        try parameters(prefix: r.prefix).check(limit: ConfigLimits.maxParameters, file: r.file, what: "above the limit of 20 billion")
    }

    public var patchesPerSide: Int { imageSize / patchSize }

    /// The patch projection, position table and weight matrices this config asks for.
    public func parameters(prefix: String = "") -> ParameterTally {
        var t = ParameterTally()
        t.add([(prefix + "num_channels", numChannels), (prefix + "patch_size", patchSize), (prefix + "patch_size", patchSize), (prefix + "hidden_size", hiddenSize)])
        let patches = patchSize > 0 ? patchesPerSide : 0
        t.add([(prefix + "image_size/patch_size", patches), (prefix + "image_size/patch_size", patches), (prefix + "hidden_size", hiddenSize)])
        t.add(layerTerms(prefix, hidden: hiddenSize, intermediate: intermediateSize, layers: numHiddenLayers))
        return t
    }

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
        vocabSize = try r.int("vocab_size", vocabSize, in: 1...Int.max)
        hiddenSize = try r.int("hidden_size", hiddenSize)
        numHiddenLayers = try r.int("num_hidden_layers", numHiddenLayers)
        numAttentionHeads = try r.int("num_attention_heads", numAttentionHeads)
        intermediateSize = try r.int("intermediate_size", intermediateSize)
        hiddenAct = try r.activation("hidden_act", hiddenAct)
        hiddenDropoutProb = try r.double("hidden_dropout_prob", hiddenDropoutProb, in: probability, openAbove: true)
        attentionProbsDropoutProb = try r.double("attention_probs_dropout_prob", attentionProbsDropoutProb, in: probability, openAbove: true)
        maxPositionEmbeddings = try r.int("max_position_embeddings", maxPositionEmbeddings, in: 2...ConfigLimits.maxPositions,
                                          "a text needs at least its [CLS] and [SEP] tokens")
        typeVocabSize = try r.int("type_vocab_size", typeVocabSize, in: 1...Int.max, "every text is segment 0")
        layerNormEps = try r.double("layer_norm_eps", layerNormEps, in: Double.leastNonzeroMagnitude...1)
        padTokenId = try r.optionalInt("pad_token_id") ?? padTokenId
        let embedding = try r.string("position_embedding_type", "absolute")
        guard embedding == "absolute" else { throw r.fail("position_embedding_type", "only absolute position embeddings are supported, found '\(embedding)'") }
        try checkTransformer(r, hidden: hiddenSize, heads: numAttentionHeads, layers: numHiddenLayers, intermediate: intermediateSize)
        try checkTokenId(r, "pad_token_id", padTokenId, vocabSize: vocabSize)
        try parameters(prefix: r.prefix).check(limit: ConfigLimits.maxParameters, file: r.file, what: "above the limit of 20 billion")
    }

    /// The embedding tables and weight matrices this config asks for (the pooler left out).
    public func parameters(prefix: String = "") -> ParameterTally {
        var t = ParameterTally()
        t.add(tokenTableTerms(prefix, vocabulary: vocabSize, positions: maxPositionEmbeddings, hidden: hiddenSize))
        t.add([(prefix + "type_vocab_size", typeVocabSize), (prefix + "hidden_size", hiddenSize)])
        t.add(layerTerms(prefix, hidden: hiddenSize, intermediate: intermediateSize, layers: numHiddenLayers))
        return t
    }

    public var json: [String: Any] {
        ["model_type": "bert", "vocab_size": vocabSize, "hidden_size": hiddenSize, "num_hidden_layers": numHiddenLayers,
         "num_attention_heads": numAttentionHeads, "intermediate_size": intermediateSize, "hidden_act": hiddenAct == .geluTanh ? "gelu_new" : hiddenAct.rawValue,
         "hidden_dropout_prob": hiddenDropoutProb, "attention_probs_dropout_prob": attentionProbsDropoutProb,
         "max_position_embeddings": maxPositionEmbeddings, "type_vocab_size": typeVocabSize, "layer_norm_eps": layerNormEps,
         "pad_token_id": padTokenId]
    }
}
