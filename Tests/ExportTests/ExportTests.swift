import Foundation
import Testing
import Datasets
import Export
import Models
import NN
import Tokenizers
import Torch
import TestSupport

private let python = "\(repositoryRoot)/.deps/python"
private let hasONNXRuntime: Bool = {
    guard FileManager.default.isExecutableFile(atPath: python) else { return false }
    return (try? runPython(["-c", "import onnx, onnxruntime"])) != nil
}()

@discardableResult
private func runPython(_ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: python)
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    let error = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw ExportError("python \(arguments.first ?? "") failed: \(String(decoding: error, as: UTF8.self).suffix(2000))")
    }
    return String(decoding: data, as: UTF8.self)
}

/// Tiny models of the three kinds `export` serves, saved as checkpoints.
enum ExportFixtures {
    static let clipTokenizerFolder: String = {
        let folder = temporaryFolder("clip-tokenizer")
        try! CLIPTokenizer.writeHuggingFaceFiles(fromOpenCLIPMerges: URL(fileURLWithPath: "\(repositoryRoot)/.deps/assets/bpe_simple_vocab_16e6.txt.gz"),
                                                 to: URL(fileURLWithPath: folder))
        return folder
    }()
    static let miniLM = "\(repositoryRoot)/.deps/assets/all-MiniLM-L6-v2"

    static func vision() -> CLIPVisionTransformer {
        var v = CLIPVisionConfig()
        v.imageSize = 32; v.patchSize = 8; v.hiddenSize = 96; v.numHiddenLayers = 2; v.numAttentionHeads = 3; v.intermediateSize = 384
        return CLIPVisionTransformer(v)
    }

    /// CLIPModel: ViT + CLIP text transformer (open_clip's tokenizer).
    static let clip: String = {
        Torch.manualSeed(21)
        var t = CLIPTextConfig()
        t.hiddenSize = 96; t.numHiddenLayers = 2; t.numAttentionHeads = 3; t.intermediateSize = 384; t.maxPositionEmbeddings = 32
        let model = DualEncoder(kind: .clip, vision: vision(), text: CLIPTextTransformer(t), projectionDim: 64)
        let folder = temporaryFolder("export-clip")
        try! Pretrained.save(model, to: folder, tokenizerFrom: clipTokenizerFolder)
        return folder
    }()

    /// The first two layers of all-MiniLM-L6-v2 with its real weights: int8 error is only
    /// meaningful on trained weights (random towers' embeddings are mostly noise).
    static func miniLMLayers(_ n: Int, pooling: TextPooling = .mean) -> BertModel {
        guard case .textEncoder(let source, _) = try! Pretrained.load(miniLM).model else { fatalError("MiniLM is a text encoder") }
        var c = source.config
        c.numHiddenLayers = n
        let bert = BertModel(c, pooling: pooling, withPooler: pooling == .pooler)
        var weights: [String: Tensor] = [:]
        for (name, tensor) in source.stateDict() {
            let kept = name.hasPrefix("embeddings.") || (0..<n).contains { name.hasPrefix("encoder.layer.\($0).") }
                || (pooling == .pooler && name.hasPrefix("pooler."))
            if kept { weights[name] = tensor }
        }
        try! bert.load(weights)
        return bert
    }

    /// VisionTextDualEncoderModel: ViT + BERT (mean pooling, MiniLM's first layers).
    static let dualEncoder: String = {
        Torch.manualSeed(22)
        let model = DualEncoder(kind: .visionTextDualEncoder, vision: vision(), text: miniLMLayers(2), projectionDim: 64)
        let folder = temporaryFolder("export-dual")
        try! Pretrained.save(model, to: folder, tokenizerFrom: miniLM)
        return folder
    }()

    /// VisionTextDualEncoderModel with transformers' BERT pooler (tanh(dense([CLS]))): a post-LN
    /// tower pooled at one token, with a padding mask.
    static let dualEncoderPooler: String = {
        Torch.manualSeed(23)
        let model = DualEncoder(kind: .visionTextDualEncoder, vision: vision(), text: miniLMLayers(2, pooling: .pooler), projectionDim: 64)
        let folder = temporaryFolder("export-dual-pooler")
        try! Pretrained.save(model, to: folder, tokenizerFrom: miniLM)
        return folder
    }()

    /// A distilled text student: a 1-layer BERT in sentence-transformers layout.
    static let textStudent: String = {
        let folder = temporaryFolder("export-student")
        try! Pretrained.save(miniLMLayers(1), to: folder, tokenizerFrom: miniLM)
        return folder
    }()
}

/// Our embeddings for batches of 1 and 7 (images and captions), what onnxruntime must reproduce.
private func writeReference(_ checkpoint: String, to path: String) throws {
    let loaded = try Pretrained.load(checkpoint)
    let tokenizer = try loaded.tokenizer()
    let captions = ["a red circle", "two small blue squares on the left of a big yellow triangle", "a cat", "green",
                    "an orange hexagon in the top right corner", "a purple star", "nothing at all here"]
    var tensors: [String: Tensor] = [:]
    withNoGrad {
        for n in [1, 7] {
            let (ids, mask) = tokenizer.encode(Array(captions.prefix(n)))
            tensors["text_in_\(n)"] = ids
            tensors["text_mask_\(n)"] = mask
            switch loaded.model {
            case .dualEncoder(let model):
                let pixels = Tensor.randn([n, 3, 32, 32], generator: Generator(seed: UInt64(n)))
                tensors["image_in_\(n)"] = pixels
                tensors["image_out_\(n)"] = F.normalize(model.imageFeatures(pixels), dim: -1)
                tensors["text_out_\(n)"] = F.normalize(model.textFeatures(ids: ids, attentionMask: mask), dim: -1)
            case .textEncoder(let bert, _):
                tensors["text_out_\(n)"] = F.normalize(bert.pooled(ids: ids, attentionMask: mask), dim: -1)
            }
        }
    }
    try SafeTensors.save(tensors, to: path)
}

private struct CheckResult: Decodable {
    struct Run: Decodable { let max_abs: Double; let min_cosine: Double; let shape: [Int] }
    let precision: String
    let checker: [String: String]
    let runs: [String: Run]
}

@Suite("ONNX export", .serialized)
struct ExportTests {
    @Test(.enabled(if: hasONNXRuntime, "needs .deps/python with onnx and onnxruntime (Scripts/bootstrap installs them)"),
          arguments: [("clip", true), ("dual", true), ("dual-pooler", true), ("student", false)])
    func onnxruntimeMatchesOurForward(kind: String, hasImage: Bool) throws {
        let checkpoint = ["clip": ExportFixtures.clip, "dual": ExportFixtures.dualEncoder, "dual-pooler": ExportFixtures.dualEncoderPooler,
                          "student": ExportFixtures.textStudent][kind]!
        let reference = "\(temporaryFolder("export-ref"))/reference.safetensors"
        try writeReference(checkpoint, to: reference)
        let folder = temporaryFolder("export-out")
        // int8 twice: per-tensor activations (the default) and per-token.
        for (precision, perToken) in ExportPrecision.allCases.map({ ($0, false) }) + [(.int8, true)] {
            let out = "\(folder)/\(kind)-\(precision.rawValue)\(perToken ? "-token" : "")"
            var options = ExportOptions(precision: precision)
            options.perTokenActivations = perToken
            try EncoderExport.export(checkpoint: checkpoint, to: out, options: options)
            var arguments = ["\(repositoryRoot)/Tests/ExportTests/check_export.py", out, reference]
            if precision == .int8 { arguments.append("\(folder)/\(kind)-fp32") }
            let json = try runPython(arguments)
            let result = try JSONDecoder().decode(CheckResult.self, from: Data(json.utf8))
            #expect(result.checker["text"] == "ok" && (result.checker["image"] == "ok") == hasImage, "\(json)")
            #expect(result.runs.count == (hasImage ? 4 : 2) * (precision == .int8 ? 2 : 1), "\(json)")
            for (name, run) in result.runs where !name.hasPrefix("ort_int8_") {
                switch precision {
                case .fp32: #expect(run.max_abs <= 1e-4, "\(kind) fp32 \(name): max |Δ| \(run.max_abs)")
                case .fp16: #expect(run.min_cosine >= 0.999, "\(kind) fp16 \(name): cosine \(run.min_cosine)")
                case .int8:
                    // Held to onnxruntime's own dynamic quantization of the same fp32 model: that
                    // is the reference int8. Tiny towers with random parts lose more than trained
                    // ones; the trained default model's cosines (≥ 0.991 to fp32) are a measurement
                    // made by Scripts/onnx_retrieval.py and reported in the README, not a test.
                    let ort = try #require(result.runs["ort_int8_\(name)"])
                    #expect(run.min_cosine >= ort.min_cosine - 0.01, "\(kind) int8 \(name): cosine \(run.min_cosine) vs onnxruntime's \(ort.min_cosine)")
                    #expect(run.min_cosine >= 0.9, "\(kind) int8 \(name): cosine \(run.min_cosine)")
                }
            }
        }
    }

    @Test func badRequestsAreRefusedAndLeaveNothingBehind() throws {
        let parent = temporaryFolder("export-bad")
        let out = "\(parent)/out"
        // An existing output folder needs --overwrite.
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        #expect(throws: ExportError.self) { try EncoderExport.export(checkpoint: ExportFixtures.textStudent, to: out) }
        // An unsupported opset, and a folder that is no checkpoint.
        do { try EncoderExport.export(checkpoint: ExportFixtures.textStudent, to: "\(parent)/o2", options: ExportOptions(opset: 11)); Issue.record("opset 11 accepted") }
        catch { #expect("\(error)".contains("opset 11")) }
        try FileManager.default.createDirectory(atPath: "\(parent)/nothing", withIntermediateDirectories: true)
        do { try EncoderExport.export(checkpoint: "\(parent)/nothing", to: "\(parent)/o3"); Issue.record("no checkpoint accepted") }
        catch { #expect("\(error)".contains("cannot load the checkpoint")) }
        // Nothing partial is left, and a successful export has everything.
        try EncoderExport.export(checkpoint: ExportFixtures.textStudent, to: out, options: ExportOptions(overwrite: true))
        let names = try FileManager.default.contentsOfDirectory(atPath: parent)
        #expect(Set(names) == ["out", "nothing"], "\(names)")
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: out))
        #expect(files.isSuperset(of: ["text_encoder.onnx", "export.json", "vocab.txt"]))
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(out)/export.json"))) as! [String: Any]
        #expect((manifest["source_sha256"] as? String)?.count == 64 && manifest["opset"] as? Int == 17)
    }

    @Test func sha256MatchesKnownDigests() throws {
        let folder = temporaryFolder("sha")
        try Data("abc".utf8).write(to: URL(fileURLWithPath: "\(folder)/a"))
        try Data().write(to: URL(fileURLWithPath: "\(folder)/empty"))
        #expect(try SHA256Digest.hex(files: ["\(folder)/a"]) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(try SHA256Digest.hex(files: ["\(folder)/empty"]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    /// export.json names its source by the checkpoint folder (after its run's name for best/last)
    /// and the SHA-256 of its weights: no path of the exporting machine appears anywhere in it.
    @Test func exportJSONNamesItsSourceWithoutAbsolutePaths() throws {
        #expect(EncoderExport.sourceName("/home/me/Checkpoints/clip-finetune/best") == "clip-finetune/best")
        #expect(EncoderExport.sourceName("/home/me/Checkpoints/clip-finetune/last/") == "clip-finetune/last")
        #expect(EncoderExport.sourceName("runs/x/checkpoint-500") == "x/checkpoint-500")
        #expect(EncoderExport.sourceName("/srv/models/openai-clip-vit-base-patch32") == "openai-clip-vit-base-patch32")
        #expect(EncoderExport.sourceName("/best") == "best")

        let parent = temporaryFolder("export-paths")
        let checkpoint = "\(parent)/Checkpoints/student-run/best"
        try FileManager.default.createDirectory(atPath: "\(parent)/Checkpoints/student-run", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: ExportFixtures.textStudent, toPath: checkpoint)
        try EncoderExport.export(checkpoint: checkpoint, to: "\(parent)/out")
        let manifest = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(parent)/out/export.json"))) as? [String: Any])
        #expect(manifest["source_checkpoint"] as? String == "student-run/best")
        #expect(manifest["source_sha256"] as? String == (try SHA256Digest.hex(files: ["\(checkpoint)/model.safetensors"])))
        // Every string value and key, however deep.
        func strings(_ value: Any) -> [String] {
            switch value {
            case let s as String: return [s]
            case let object as [String: Any]: return object.keys + object.values.flatMap(strings)
            case let list as [Any]: return list.flatMap(strings)
            default: return []
            }
        }
        let all = strings(manifest)
        #expect(all.count > 10)
        let paths = all.filter { $0.hasPrefix("/") || $0.contains(parent) || $0.contains(NSTemporaryDirectory()) || $0.contains(repositoryRoot) }
        #expect(paths.isEmpty, "export.json holds paths of this machine: \(paths)")
    }

    /// The output is checked before anything loads: the checkpoint's own folder, its run folder
    /// (with overwrite), a folder inside it are refused and leave it as it was (3 cases).
    @Test func theOutputNeverHoldsOrLiesInsideTheCheckpoint() throws {
        let parent = temporaryFolder("export-source")
        let checkpoint = "\(parent)/run/best"
        try FileManager.default.createDirectory(atPath: "\(parent)/run", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: ExportFixtures.textStudent, toPath: checkpoint)
        let files = try FileManager.default.contentsOfDirectory(atPath: checkpoint).sorted()
        for (out, says) in [(checkpoint, "is the checkpoint being exported"), ("\(parent)/run", "contains the checkpoint being exported"),
                            ("\(checkpoint)/onnx", "lies inside the checkpoint being exported")] {
            do { try EncoderExport.export(checkpoint: checkpoint, to: out, options: ExportOptions(overwrite: true)); Issue.record("\(out) accepted") }
            catch { #expect("\(error)".contains(says), "\(error)") }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: checkpoint).sorted() == files)
    }

    /// A text tower with fewer than 2,000 token ids is traced with ids it has (the trace drew
    /// ids 1000–1999 and trapped in the embedding lookup).
    @Test func smallVocabulariesExport() throws {
        var c = BertConfig()
        (c.vocabSize, c.hiddenSize, c.intermediateSize, c.numHiddenLayers, c.numAttentionHeads, c.maxPositionEmbeddings) = (40, 16, 32, 1, 2, 16)
        let model = DualEncoder(kind: .visionTextDualEncoder, vision: ExportFixtures.vision(), text: BertModel(c, pooling: .mean, withPooler: false), projectionDim: 8)
        let folder = temporaryFolder("export-small-vocab")
        try Pretrained.save(model, to: "\(folder)/checkpoint")
        let vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + (5..<40).map { "w\($0)" }
        try vocab.joined(separator: "\n").write(toFile: "\(folder)/checkpoint/vocab.txt", atomically: true, encoding: .utf8)
        let result = try EncoderExport.export(checkpoint: "\(folder)/checkpoint", to: "\(folder)/onnx")
        #expect(result.files.keys.contains("text_encoder.onnx"))
    }

    @Test func anOpWithoutLoweringNamesTheOpAndModule() throws {
        let linear = Linear(4, 3)
        let x = Tensor.randn([5, 4], generator: Generator(seed: 196))
        #expect(throws: ExportError.self) {
            _ = try EncoderExport.graph(name: "g", model: linear, options: ExportOptions(), inputs: [TracedInput(x, name: "x", axes: ["batch", nil])],
                                        output: "y", sequence: nil) { linear(x).cumsum(dim: 1) }
        }
        do {
            _ = try EncoderExport.graph(name: "g", model: linear, options: ExportOptions(), inputs: [TracedInput(x, name: "x", axes: ["batch", nil])],
                                        output: "y", sequence: nil) { linear(x).cumsum(dim: 1) }
        } catch { #expect("\(error)".contains("op 'cumsum' has no ONNX lowering")) }
    }
}

@Suite("Serving snippet", .serialized)
struct ServingSnippetTests {
    /// The README's Python snippet (docs/serve_example.py) embeds a real JPEG and a caption with an
    /// fp32 export; its similarity must be ours.
    @Test(.enabled(if: hasONNXRuntime, "needs .deps/python with onnxruntime and Pillow (Scripts/bootstrap installs them)"))
    func snippetPrintsOurSimilarity() throws {
        let snippet = "\(repositoryRoot)/docs/serve_example.py"
        let readme = try String(contentsOfFile: "\(repositoryRoot)/README.md", encoding: .utf8)
        #expect(readme.contains(try String(contentsOfFile: snippet, encoding: .utf8)), "README's serving snippet differs from docs/serve_example.py")

        let out = "\(temporaryFolder("serve"))/export"
        try EncoderExport.export(checkpoint: ExportFixtures.dualEncoder, to: out)
        // A 64×64 JPEG of the embedded data, resized to the model's 32 px by both sides.
        let reader = try ShardReader(path: "\(repositoryRoot)/Data/shapes/val-0000.tar.zst")
        guard case .success(let record)? = try reader.next(), case .bytes(let jpeg) = record.image else { Issue.record("no sample"); return }
        let imagePath = "\(temporaryFolder("serve-image"))/sample.jpg"
        try Data(jpeg).write(to: URL(fileURLWithPath: imagePath))
        let caption = "a small red circle, top-left (naïve test)"

        let loaded = try Pretrained.load(ExportFixtures.dualEncoder)
        guard case .dualEncoder(let model) = loaded.model else { Issue.record("not a dual encoder"); return }
        let pipeline = ImagePipeline(preprocessing: loaded.preprocessing!)
        var pixels = [Float](repeating: 0, count: pipeline.sampleCount)
        var random = SeededRandom(seed: 0, epoch: 0, index: 0)
        try jpeg.withUnsafeBytes { encoded in
            try pixels.withUnsafeMutableBufferPointer { try pipeline.process(encoded, decoder: ImageDecoder(), random: &random, into: $0) }
        }
        let size = loaded.preprocessing!.size
        let ours: Double = withNoGrad {
            let (ids, mask) = try! loaded.tokenizer().encode([caption])
            let image = F.normalize(model.imageFeatures(Tensor(pixels, shape: [1, 3, size, size])), dim: -1)
            let text = F.normalize(model.textFeatures(ids: ids, attentionMask: mask), dim: -1)
            return (image * text).sum().item(Double.self)
        }
        let printed = try runPython([snippet, out, imagePath, caption])
        let value = try #require(Double(printed.replacingOccurrences(of: "similarity:", with: "").trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(abs(value - ours) < 1e-4, "snippet \(value) vs ours \(ours)")
    }
}
