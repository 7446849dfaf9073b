import Foundation
import Testing
import Datasets
import NN
import Tokenizers
import Torch
@testable import Models
import TestSupport

/// A copy of a committed fixture (its weights linked, not copied) whose config.json and
/// preprocessor_config.json a test rewrites.
struct MutableCheckpoint {
    let folder: String
    let config: [String: Any]

    init(_ fixture: String, label: String = #function) throws {
        folder = temporaryFolder(label)
        let source = Fixture.path(fixture)
        try FileManager.default.createSymbolicLink(atPath: "\(folder)/model.safetensors", withDestinationPath: "\(source)/model.safetensors")
        config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(source)/config.json"))) as! [String: Any]
        try write(config: config)
    }

    func write(config: [String: Any]) throws {
        try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys]).write(to: URL(fileURLWithPath: "\(folder)/config.json"))
    }

    func write(preprocessor: Any) throws {
        try JSONSerialization.data(withJSONObject: preprocessor, options: [.fragmentsAllowed])
            .write(to: URL(fileURLWithPath: "\(folder)/preprocessor_config.json"))
    }

    /// The config with `path` (dot-separated) set to `value` (nil removes it).
    func config(setting path: String, to value: Any?) -> [String: Any] {
        func set(_ object: [String: Any], _ keys: ArraySlice<Substring>) -> [String: Any] {
            var object = object
            let key = String(keys.first!)
            if keys.count == 1 { object[key] = value } else { object[key] = set(object[key] as? [String: Any] ?? [:], keys.dropFirst()) }
            return object
        }
        return set(config, path.split(separator: ".")[...])
    }
}

/// One bad value: where it goes, as JSON text, and what the error must say.
struct BadField: Sendable, CustomTestStringConvertible {
    let fixture: String
    let path: String
    let json: String
    /// The key the error names (nil: the file only).
    let key: String?
    let says: String
    init(_ fixture: String, _ path: String, _ json: String, key: String? = nil, _ says: String) {
        self.fixture = fixture
        self.path = path
        self.json = json
        self.key = key ?? path
        self.says = says
    }
    var testDescription: String { "\(fixture) \(path) = \(json.prefix(40))" }
    var value: Any { try! JSONSerialization.jsonObject(with: Data(json.utf8), options: [.fragmentsAllowed]) }
}

/// What `Pretrained.load` throws for a checkpoint, or nil when it loads.
func loadError(_ folder: String) -> Error? {
    do { _ = try Pretrained.load(folder); return nil } catch { return error }
}

@Suite("Configs are checked before any model is built")
struct ConfigValidationTests {
    /// 56 bad config.json fields — token ids outside the vocabulary, too few positions, channels
    /// other than RGB, non-positive sizes, sizes whose product is petabytes or overflows, numbers
    /// given as strings, booleans, fractions, arrays, out-of-range probabilities and epsilons,
    /// unsupported types — each an error naming config.json and the key, before anything is built.
    static let badConfigFields: [BadField] = [
        .init("clip_a", "text_config.eos_token_id", "1000", "is 1000, outside the vocabulary (vocab_size 1000: ids 0–999)"),
        .init("clip_a", "text_config.eos_token_id", "-1", "outside the vocabulary"),
        .init("clip_a", "text_config.bos_token_id", "5000", "outside the vocabulary"),
        .init("clip_a", "text_config.pad_token_id", "-2", "outside the vocabulary"),
        .init("clip_b", "text_config.eos_token_id", "600", "outside the vocabulary"),
        .init("clip_a", "text_config.max_position_embeddings", "1", "must be between 2 and 1000000, found 1 (a text needs at least its start and end tokens)"),
        .init("clip_a", "text_config.max_position_embeddings", "0", "found 0"),
        .init("clip_a", "text_config.max_position_embeddings", "-5", "found -5"),
        .init("clip_a", "text_config.max_position_embeddings", "2000000", "between 2 and 1000000"),
        .init("clip_a", "vision_config.num_channels", "-1", "must be 3, found -1 (images are decoded to RGB)"),
        .init("clip_a", "vision_config.num_channels", "0", "must be 3, found 0"),
        .init("clip_a", "vision_config.num_channels", "1", "must be 3, found 1"),
        .init("clip_a", "vision_config.num_channels", "4", "must be 3, found 4"),
        .init("clip_a", "projection_dim", "0", "must be at least 1, found 0"),
        .init("clip_a", "projection_dim", "-16", "must be at least 1, found -16"),
        .init("clip_a", "text_config.vocab_size", "100000000000000", "parameters (largest: text_config.vocab_size × text_config.hidden_size (100000000000000 × 24) = 2,400,000,000,000,000), above the limit of 20 billion"),
        .init("clip_a", "text_config.vocab_size", "0", "must be at least 1, found 0"),
        .init("clip_a", "text_config.vocab_size", "-1000", "found -1000"),
        .init("clip_a", "text_config.hidden_size", "\"24\"", "expected an integer, found the string \"24\""),
        .init("clip_a", "text_config.hidden_size", "24.5", "expected an integer, found 24.5"),
        .init("clip_a", "text_config.hidden_size", "true", "expected an integer, found true"),
        .init("clip_a", "text_config.hidden_size", "[24]", "expected an integer, found an array"),
        .init("clip_a", "text_config.hidden_size", "{}", "expected an integer, found an object"),
        .init("clip_a", "text_config.hidden_size", "100000000000000", "more than 2^63"),
        .init("clip_a", "text_config", "{}", key: "text_config.vocab_size", "far more than the"),
        .init("clip_a", "text_config", "\"clip\"", "expected an object, found the string \"clip\""),
        .init("clip_a", "text_config.num_attention_heads", "0", "must be at least 1, found 0"),
        .init("clip_a", "text_config.num_attention_heads", "5", "is not divisible by 5 heads"),
        .init("clip_a", "text_config.num_hidden_layers", "0", "between 1 and 1024, found 0"),
        .init("clip_a", "text_config.num_hidden_layers", "5000", "between 1 and 1024, found 5000"),
        .init("clip_a", "text_config.intermediate_size", "-1", "must be at least 1, found -1"),
        .init("clip_a", "vision_config.image_size", "0", "between 1 and 4096, found 0"),
        .init("clip_a", "vision_config.image_size", "-32", "found -32"),
        .init("clip_a", "vision_config.image_size", "8192", "between 1 and 4096, found 8192"),
        .init("clip_a", "vision_config.patch_size", "0", "between 1 and 32, found 0"),
        .init("clip_a", "vision_config.patch_size", "64", "between 1 and 32, found 64 (a patch lies within the image)"),
        .init("clip_a", "vision_config.patch_size", "5", "must be a positive multiple of patch_size 5"),
        .init("clip_a", "vision_config.hidden_size", "4000000000", "above the limit of 20 billion"),
        .init("clip_a", "text_config.layer_norm_eps", "0", "must be > 0 and ≤ 1.0, found 0.0"),
        .init("clip_a", "text_config.layer_norm_eps", "-1e-05", "found -1e-05"),
        .init("clip_a", "text_config.attention_dropout", "1", "must be ≥ 0.0 and < 1.0, found 1.0"),
        .init("clip_a", "text_config.attention_dropout", "-0.1", "found -0.1"),
        .init("clip_a", "logit_scale_init_value", "\"2.6592\"", "expected a number, found the string \"2.6592\""),
        .init("clip_a", "logit_scale_init_value", "1000", "≤ 100.0, found 1000.0"),
        .init("clip_a", "text_config.hidden_act", "\"swish\"", "activation 'swish' is not supported"),
        .init("clip_a", "model_type", "\"clip_vision_model\"", "'clip_vision_model' is not supported"),
        .init("clip_a", "model_type", "7", "expected a string, found 7"),
        .init("dual_bert", "text_config.pad_token_id", "500", "is 500, outside the vocabulary (vocab_size 500"),
        .init("dual_bert", "text_config.type_vocab_size", "0", "must be at least 1, found 0 (every text is segment 0)"),
        .init("dual_bert", "text_config.max_position_embeddings", "1", "a text needs at least its [CLS] and [SEP] tokens"),
        .init("dual_bert", "text_config.hidden_dropout_prob", "1.5", "must be ≥ 0.0 and < 1.0, found 1.5"),
        .init("dual_bert", "text_config.vocab_size", "-1", "must be at least 1, found -1"),
        .init("dual_bert", "text_config.position_embedding_type", "\"relative_key\"", "only absolute position embeddings"),
        .init("dual_bert", "text_pooling", "\"max\"", "must be pooler, mean or cls"),
        .init("dual_bert", "vision_config.model_type", "\"siglip_vision_model\"", "vision tower 'siglip_vision_model' is not supported"),
        .init("dual_bert", "vision_config.layer_norm_eps", "\"1e-5\"", "expected a number, found the string \"1e-5\""),
    ]

    @Test(arguments: badConfigFields)
    func badConfigFieldsAreErrorsNamingTheKey(_ c: BadField) throws {
        let checkpoint = try MutableCheckpoint(c.fixture)
        try checkpoint.write(config: checkpoint.config(setting: c.path, to: c.value))
        let error = try #require(loadError(checkpoint.folder) as? ModelConfigError, "\(c.path) = \(c.json): \(String(describing: loadError(checkpoint.folder)))")
        #expect(error.file == "\(checkpoint.folder)/config.json")
        #expect(error.key == c.key, "\(error)")
        #expect(error.reason.contains(c.says), "\(error)")
    }

    /// 27 bad preprocessor_config.json fields or files — a crop that differs from the vision
    /// tower's image size (given, nested, or transformers' default 224), crops of 0, negative,
    /// too large, non-square, given as strings or empty objects, resizes smaller than the crop, far
    /// larger or ignoring the aspect ratio, one, two or four means, non-numeric means, zero or
    /// negative stds, steps switched off, another rescale factor, not an object, not JSON — each an
    /// error naming preprocessor_config.json (and its key).
    static let badPreprocessorFields: [BadField] = [
        .init("clip_a", "crop_size", "24", "is 24 but the vision tower takes 32 × 32 images (config.json vision_config.image_size)"),
        .init("clip_a", "crop_size", "{\"height\": 224, \"width\": 224}", "is 224 but the vision tower takes 32 × 32"),
        .init("clip_a", "crop_size", "null", "is 224 (transformers' default) but the vision tower takes 32 × 32"),
        .init("clip_a", "crop_size", "0", "must be between 1 and 4096, found 0"),
        .init("clip_a", "crop_size", "-32", "found -32"),
        .init("clip_a", "crop_size", "8192", "must be between 1 and 4096, found 8192"),
        .init("clip_a", "crop_size", "\"32\"", "expected an integer or an object with shortest_edge, found the string \"32\""),
        .init("clip_a", "crop_size", "{\"height\": 32, \"width\": 24}", "height 32 and width 24 differ"),
        .init("clip_a", "crop_size", "{}", "needs shortest_edge, or height and width"),
        .init("clip_a", "crop_size", "{\"height\": 0, \"width\": 0}", key: "crop_size.height", "found 0"),
        .init("clip_a", "size", "{\"shortest_edge\": 16}", "shortest edge 16 must be ≥ the crop size 32"),
        .init("clip_a", "size", "{\"shortest_edge\": 1000}", "shortest edge 1000 must be ≤ 4 × the crop size 32"),
        .init("clip_a", "size", "{\"height\": 32, \"width\": 32}", "gives height and width"),
        .init("clip_a", "size", "{\"shortest_edge\": \"32\"}", key: "size.shortest_edge", "found the string \"32\""),
        .init("clip_a", "image_mean", "[0.5]", "needs 3 values (R, G, B), found 1"),
        .init("clip_a", "image_mean", "[0.5, 0.5]", "found 2"),
        .init("clip_a", "image_mean", "[0.5, 0.5, 0.5, 0.5]", "found 4"),
        .init("clip_a", "image_mean", "[\"a\", 0.5, 0.5]", "value 1 must be a finite number, found the string \"a\""),
        .init("clip_a", "image_mean", "\"0.5\"", "expected 3 numbers (R, G, B), found the string \"0.5\""),
        .init("clip_a", "image_mean", "true", "expected a number, found true"),
        .init("clip_a", "image_std", "[1, 1, 0]", "std values must be > 0"),
        .init("clip_a", "image_std", "[1, -1, 1]", "std values must be > 0"),
        .init("clip_a", "image_std", "0", "std values must be > 0"),
        .init("clip_a", "do_resize", "false", "is false; ClipTune always resizes"),
        .init("clip_a", "do_center_crop", "false", "is false"),
        .init("clip_a", "do_normalize", "\"yes\"", "expected true or false, found the string \"yes\""),
        .init("clip_a", "rescale_factor", "1", "must be 1/255"),
    ]

    @Test(arguments: badPreprocessorFields)
    func badPreprocessorFieldsAreErrorsNamingTheKey(_ c: BadField) throws {
        let checkpoint = try MutableCheckpoint(c.fixture)
        var preprocessor = Pretrained.preprocessorJSON(ImagePreprocessing(size: 32))
        preprocessor[c.path] = c.value is NSNull ? nil : c.value
        try checkpoint.write(preprocessor: preprocessor)
        let error = try #require(loadError(checkpoint.folder) as? ModelConfigError, "\(c.path) = \(c.json)")
        #expect(error.file == "\(checkpoint.folder)/preprocessor_config.json")
        #expect(error.key == c.key, "\(error)")
        #expect(error.reason.contains(c.says), "\(error)")
    }

    /// Whole files: not an object, not JSON, a folder, far too large (4 cases); and what is
    /// accepted: one number for all three channels, integer sides, a crop given as shortest_edge.
    @Test func preprocessorFilesAndAcceptedForms() throws {
        let checkpoint = try MutableCheckpoint("clip_a")
        let path = "\(checkpoint.folder)/preprocessor_config.json"
        try checkpoint.write(preprocessor: [1, 2])
        #expect((loadError(checkpoint.folder) as? ModelConfigError)?.reason == "is not a JSON object")
        try Data("{\"crop_size\": ".utf8).write(to: URL(fileURLWithPath: path))
        #expect((loadError(checkpoint.folder) as? ModelConfigError)?.reason == "is not valid JSON")
        try Data(count: ConfigReader.maxFileBytes + 1).write(to: URL(fileURLWithPath: path))
        #expect((loadError(checkpoint.folder) as? ModelConfigError)?.reason.contains("a config file is a few kilobytes") == true)
        try FileManager.default.removeItem(atPath: path)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        #expect((loadError(checkpoint.folder) as? ModelConfigError)?.reason == "is a folder, not a JSON file")
        try FileManager.default.removeItem(atPath: path)

        try checkpoint.write(preprocessor: ["crop_size": ["shortest_edge": 32], "size": 36, "image_mean": 0.5, "image_std": [0.25, 0.5, 1]] as [String: Any])
        let loaded = try Pretrained.load(checkpoint.folder)
        #expect(loaded.preprocessing == ImagePreprocessing(size: 32, shortestEdge: 36, mean: [0.5, 0.5, 0.5], std: [0.25, 0.5, 1]))
    }

    /// A config far larger than its weights is refused before anything is allocated (3.2 billion
    /// parameters, under the absolute limit, against 61 thousand stored values); a near miss is
    /// built and gets the state-dict report that names the tensor.
    @Test func aModelFarLargerThanItsWeightsIsNeverBuilt() throws {
        let checkpoint = try MutableCheckpoint("clip_a")
        try checkpoint.write(config: checkpoint.config(setting: "text_config.vocab_size", to: 100_000_000))
        let error = try #require(loadError(checkpoint.folder) as? ModelConfigError)
        #expect(error.key == "text_config.vocab_size" && error.reason.contains("far more than the") && error.reason.contains("values its weights hold"), "\(error)")
        try checkpoint.write(config: checkpoint.config(setting: "text_config.intermediate_size", to: 64))
        #expect(loadError(checkpoint.folder) is StateDictError)
    }

    /// The safety net under the checks: a forward pass that fails (here an image size the checks
    /// would have refused) is a ModelConfigError naming config.json, not a trap.
    @Test func theLoadTimeProbeTurnsFailuresIntoErrors() throws {
        let folder = Fixture.path("clip_a")
        let checkpoint = try Pretrained.load(folder)
        let reader = try ConfigReader.load("\(folder)/config.json")
        let architecture = try Pretrained.Architecture(reader, modelType: "clip", directory: folder, weightKeys: [])
        let error = #expect(throws: ModelConfigError.self) {
            try Pretrained.probe(checkpoint.model, preprocessing: ImagePreprocessing(size: 48), architecture: architecture, configPath: "\(folder)/config.json")
        }
        #expect(error?.reason.contains("fails on a one-image, two-token test input") == true, "\(String(describing: error))")
    }
}

/// Tiny CLIP and BERT checkpoints with real tokenizer files, for the tokenizer checks.
enum TokenizerCheckpoints {
    static let merges = "\(repositoryRoot)/.deps/assets/bpe_simple_vocab_16e6.txt.gz"
    static let clipTokenizer: String = {
        let folder = temporaryFolder("clip-tokenizer-files")
        try! CLIPTokenizer.writeHuggingFaceFiles(fromOpenCLIPMerges: URL(fileURLWithPath: merges), to: URL(fileURLWithPath: folder))
        return folder
    }()

    /// A CLIP whose text tower has `vocab` rows and pools at `eos`, saved with CLIP's tokenizer
    /// files (or, with `wordPiece`, a BERT vocab.txt).
    static func clip(vocab: Int = 49408, eos: Int = 49407, wordPiece: Bool = false, label: String = #function) throws -> String {
        var text = CLIPTextConfig()
        (text.vocabSize, text.hiddenSize, text.intermediateSize, text.numHiddenLayers, text.numAttentionHeads, text.maxPositionEmbeddings) = (vocab, 8, 16, 1, 2, 16)
        (text.eosTokenId, text.bosTokenId, text.padTokenId) = (eos, Swift.min(49406, vocab - 1), 1)
        var vision = CLIPVisionConfig()
        (vision.imageSize, vision.patchSize, vision.hiddenSize, vision.intermediateSize, vision.numHiddenLayers, vision.numAttentionHeads) = (16, 8, 8, 16, 1, 2)
        let model = DualEncoder(kind: .clip, vision: CLIPVisionTransformer(vision), text: CLIPTextTransformer(text), projectionDim: 4)
        let folder = temporaryFolder(label)
        try Pretrained.save(model, to: folder, tokenizerFrom: wordPiece ? nil : clipTokenizer)
        if wordPiece { try vocabTxt(count: 100).write(toFile: "\(folder)/vocab.txt", atomically: true, encoding: .utf8) }
        return folder
    }

    /// A vocab.txt of `count` tokens: the specials, then words.
    static func vocabTxt(count: Int) -> String {
        let words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "circle", "blue", "square"]
        return (words + (words.count..<count).map { "w\($0)" }).joined(separator: "\n") + "\n"
    }

    /// A text-only BERT with `vocab` rows and `positions` positions, its vocab.txt of `tokens`.
    static func bert(vocab: Int = 100, positions: Int = 16, tokens: Int = 100, label: String = #function) throws -> String {
        var c = BertConfig()
        (c.vocabSize, c.hiddenSize, c.intermediateSize, c.numHiddenLayers, c.numAttentionHeads, c.maxPositionEmbeddings) = (vocab, 8, 16, 1, 2, positions)
        let folder = temporaryFolder(label)
        try Pretrained.save(BertModel(c, pooling: .mean, withPooler: false), to: folder)
        try vocabTxt(count: tokens).write(toFile: "\(folder)/vocab.txt", atomically: true, encoding: .utf8)
        try FileManager.default.removeItem(atPath: "\(folder)/sentence_bert_config.json")   // the tokenizer's own limit (512) applies
        return folder
    }
}

@Suite("Checkpoint tokenizers agree with their text tower")
struct TokenizerAgreementTests {
    func tokenizerError(_ folder: String) throws -> ModelConfigError? {
        let checkpoint = try Pretrained.load(folder)
        do { _ = try checkpoint.tokenizer(); return nil } catch let error as ModelConfigError { return error }
    }

    /// 5 mismatches refused — an eos_token_id in the vocabulary that is not the tokenizer's end
    /// token (a word, the start token), a vocabulary smaller than the tokenizer's ids (CLIP and
    /// BERT), a CLIP tower with a WordPiece tokenizer whose [SEP] is not its eos — and 3 that work:
    /// the matching end token, transformers' legacy eos_token_id 2, and a BERT whose tokenizer
    /// allows more tokens than it has positions (cut to its positions).
    @Test func mismatchesAreRefusedWithTheKey() throws {
        guard FileManager.default.fileExists(atPath: TokenizerCheckpoints.merges) else {
            Issue.record("\(TokenizerCheckpoints.merges) is missing: run Scripts/bootstrap")
            return
        }
        for (folder, key, says) in [
            (try TokenizerCheckpoints.clip(eos: 100, label: "eos100"), "text_config.eos_token_id", "every text would be pooled at its first token and get the same embedding"),
            (try TokenizerCheckpoints.clip(eos: 49406, label: "eosbos"), "text_config.eos_token_id", "<|endoftext|> (id 49407 in vocab.json)"),
            (try TokenizerCheckpoints.clip(vocab: 1000, eos: 999, label: "vocab1000"), "text_config.vocab_size", "is 1000, but the tokenizer (vocab.json) has ids up to 49407"),
            (try TokenizerCheckpoints.clip(wordPiece: true, label: "wordpiece"), "text_config.eos_token_id", "[SEP] (id 3 in vocab.txt)"),
            (try TokenizerCheckpoints.bert(vocab: 50, tokens: 100, label: "bertvocab"), "vocab_size", "is 50, but the tokenizer (vocab.txt) has ids up to 99"),
        ] {
            let error = try #require(try tokenizerError(folder), "\(folder) was accepted")
            #expect(error.key == key && error.reason.contains(says), "\(error)")
        }
        let clip = try Pretrained.load(try TokenizerCheckpoints.clip(label: "matching"))
        let (ids, _) = try clip.tokenizer().encode(["a red circle"])
        #expect(ids.toArray(Int.self).last == 49407)

        let legacy = try TokenizerCheckpoints.clip(eos: 2, label: "legacy")
        #expect(try tokenizerError(legacy) == nil)

        let bert = try Pretrained.load(try TokenizerCheckpoints.bert(label: "bertpositions"))
        let tokenizer = try bert.tokenizer()
        #expect(tokenizer.tokenizer.contextLength == 16)
        let (long, mask) = tokenizer.encode([Array(repeating: "red", count: 100).joined(separator: " ")])
        #expect(long.shape == [1, 16])
        guard case .textEncoder(let model, _) = bert.model else { throw TestFailure("not a text encoder") }
        #expect(try withTorchErrors { withNoGrad { model.pooled(ids: long, attentionMask: mask) } }.shape == [1, 8])
    }
}
