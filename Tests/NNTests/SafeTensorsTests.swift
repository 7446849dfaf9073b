import Foundation
import Testing
import Torch
@testable import NN

/// Writes a file with a hand-made header (and an optional lying length field).
private func craft(_ header: String, data: [UInt8] = [], length: UInt64? = nil, in folder: String, name: String = "bad.safetensors") -> String {
    var bytes = [UInt8]()
    var n = (length ?? UInt64(header.utf8.count)).littleEndian
    withUnsafeBytes(of: &n) { bytes += $0 }
    bytes += Array(header.utf8) + data
    let path = "\(folder)/\(name)"
    _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
    return path
}

private func rejection(_ path: String) -> SafeTensorsError? {
    do {
        _ = try SafeTensors.load(path)
        return nil
    } catch let error as SafeTensorsError {
        return error
    } catch {
        Issue.record("unexpected error type \(error)")
        return nil
    }
}

@Suite("safetensors")
struct SafeTensorsTests {
    @Test func readsAFileWrittenByPython() throws {
        let file = try SafeTensorsFile(path: Fixture.path("python_written", "safetensors"))
        #expect(file.metadata == ["format": "pt", "writer": "python safetensors"])
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Fixture.path("python_written", "json")))) as! [String: [String: Any]]
        #expect(Set(file.names) == Set(expected.keys))
        let dtypes: [String: DType] = ["float32": .float32, "float64": .float64, "float16": .float16, "bfloat16": .bfloat16,
                                       "int64": .int64, "int32": .int32, "uint8": .uint8, "bool": .bool]
        for (name, info) in expected {
            let t = try file.tensor(name)
            #expect(t.dtype == dtypes[info["dtype"] as! String], "\(name)")
            #expect(t.shape == info["shape"] as! [Int], "\(name)")
            if t.dtype == .int64 {
                // Beyond 2^53 the JSON doubles are rounded; compare what Python wrote exactly.
                #expect(t.toArray(Int64.self) == [-(1 << 62), 0, (1 << 62) + 7])
            } else {
                // Foundation's JSON parser on Linux can be one ulp off; 1e-12 still tells float32 values apart.
                let values = t.toArray(Double.self), wanted = info["values"] as! [Double]
                #expect(values.count == wanted.count, "\(name)")
                for (v, w) in zip(values, wanted) { #expect(v == w || Swift.abs(v - w) <= 1e-12 * Swift.abs(w), "\(name): \(v) vs \(w)") }
            }
        }
    }

    @Test(arguments: DType.allCases) func roundTripsEveryDType(_ dtype: DType) throws {
        let folder = temporaryFolder()
        let a = (Tensor.randn([3, 5], generator: Generator(seed: 56)) * 10.0).to(dtype)
        let b = Tensor.arange(0, 4).to(dtype).reshape(2, 2)
        let path = "\(folder)/x.safetensors"
        try SafeTensors.save([("a", a), ("b.nested.name", b), ("empty", Tensor.zeros([0], dtype: dtype))], metadata: ["k": "v \"quoted\""], to: path)
        let file = try SafeTensorsFile(path: path)
        #expect(file.metadata == ["k": "v \"quoted\""])
        #expect(file.names == ["a", "b.nested.name", "empty"])
        #expect(try file.tensor("a").equal(a))
        #expect(try file.tensor("b.nested.name").equal(b))
        #expect(try file.tensor("empty").shape == [0])
    }

    @Test func loadedTensorsAreIndependentOfTheFile() throws {
        let folder = temporaryFolder()
        let path = "\(folder)/x.safetensors"
        try SafeTensors.save(["w": Tensor.ones([4])], to: path)
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        var w: Tensor? = try SafeTensors.load(path)["w"]
        w!.mul_(3.0)   // copy-on-write: the file must not change
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
        let kept = w!.clone()
        w = nil
        #expect(kept.toArray(Float.self) == [3, 3, 3, 3])
    }

    @Test func writesFilesThatPythonReads() throws {
        let python = "\(repositoryRoot)/.deps/python"
        guard FileManager.default.isExecutableFile(atPath: python) else {
            Issue.record("no \(python): run Scripts/bootstrap, which installs Python's safetensors for this test")
            return
        }
        let folder = temporaryFolder()
        let path = "\(folder)/ours.safetensors"
        let tensors: [(name: String, tensor: Tensor)] = [
            ("f32", Tensor([1.5, -2, 3] as [Float], shape: [1, 3])), ("f64", Tensor([0.1, 0.2])),
            ("f16", Tensor([0.5, 4] as [Float16])), ("i64", Tensor([Int64.min, 5])), ("i32", Tensor([7, -8] as [Int32])),
            ("u8", Tensor([0, 200] as [UInt8])), ("bool", Tensor([true, false])),
        ]
        try SafeTensors.save(tensors, metadata: ["format": "pt"], to: path)
        let script = """
        import json, sys
        from safetensors import safe_open
        with safe_open(sys.argv[1], framework="numpy") as f:
            print(json.dumps({"metadata": f.metadata(), "tensors": {k: {"shape": list(f.get_tensor(k).shape), "values": f.get_tensor(k).astype("float64").ravel().tolist()} for k in f.keys()}}))
        """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", script, path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "Python's safetensors could not read our file")
        let parsed = try JSONSerialization.jsonObject(with: output) as! [String: Any]
        #expect(parsed["metadata"] as? [String: String] == ["format": "pt"])
        let read = parsed["tensors"] as! [String: [String: Any]]
        for (name, tensor) in tensors {
            #expect(read[name]?["shape"] as? [Int] == tensor.shape, "\(name)")
            #expect(read[name]?["values"] as? [Double] == tensor.toArray(Double.self), "\(name)")
        }
    }

    @Test func rejectsDamagedAndMaliciousFiles() throws {
        let folder = temporaryFolder()
        let ok = #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        let data = [UInt8](repeating: 0, count: 8)

        struct Case { let name: String; let path: String; let mentions: [String]; let tensor: String? }
        let cases = [
            Case(name: "shorter than 8 bytes", path: { let p = "\(folder)/tiny.safetensors"; _ = FileManager.default.createFile(atPath: p, contents: Data([1, 2])); return p }(), mentions: ["truncated"], tensor: nil),
            Case(name: "header length beyond the file", path: craft(ok, data: data, length: 10_000, in: folder, name: "a.safetensors"), mentions: ["runs past the end"], tensor: nil),
            Case(name: "header over 100 MB", path: craft(ok, data: data, length: 200_000_000, in: folder, name: "b.safetensors"), mentions: ["100 MB"], tensor: nil),
            Case(name: "not JSON", path: craft("{nope", in: folder, name: "c.safetensors"), mentions: ["not valid"], tensor: nil),
            Case(name: "not an object", path: craft("[1,2]", in: folder, name: "d.safetensors"), mentions: ["not a JSON object"], tensor: nil),
            Case(name: "offsets out of range", path: craft(#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: data, in: folder, name: "e.safetensors"), mentions: ["outside"], tensor: "w"),
            Case(name: "reversed offsets", path: craft(#"{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#, data: data, in: folder, name: "f.safetensors"), mentions: ["outside"], tensor: "w"),
            Case(name: "overlap", path: craft(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: data, in: folder, name: "g.safetensors"), mentions: ["overlap"], tensor: "b"),
            Case(name: "hole", path: craft(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: data, in: folder, name: "h.safetensors"), mentions: ["hole"], tensor: "a"),
            Case(name: "trailing bytes", path: craft(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: data, in: folder, name: "i.safetensors"), mentions: ["trailing"], tensor: nil),
            Case(name: "unknown dtype", path: craft(#"{"w":{"dtype":"F8_E9M9","shape":[8],"data_offsets":[0,8]}}"#, data: data, in: folder, name: "j.safetensors"), mentions: ["unknown or unsupported dtype F8_E9M9"], tensor: "w"),
            Case(name: "shape does not match bytes", path: craft(#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: data, in: folder, name: "k.safetensors"), mentions: ["needs 12 bytes"], tensor: "w"),
            Case(name: "shape overflows", path: craft(#"{"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}"#, data: data, in: folder, name: "l.safetensors"), mentions: ["overflow"], tensor: "w"),
            Case(name: "negative dimension", path: craft(#"{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, data: data, in: folder, name: "m.safetensors"), mentions: ["negative"], tensor: "w"),
            Case(name: "fractional offsets", path: craft(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,7.5]}}"#, data: data, in: folder, name: "n.safetensors"), mentions: ["not {dtype, shape, data_offsets}"], tensor: "w"),
            Case(name: "bad metadata", path: craft(#"{"__metadata__":{"a":1},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: data, in: folder, name: "o.safetensors"), mentions: ["__metadata__"], tensor: nil),
            Case(name: "missing file", path: "\(folder)/absent.safetensors", mentions: ["cannot open"], tensor: nil),
        ]
        for c in cases {
            let error = rejection(c.path)
            #expect(error != nil, "\(c.name) was accepted")
            guard let error else { continue }
            #expect(error.file == c.path, "\(c.name)")
            #expect(error.tensor == c.tensor, "\(c.name): \(error)")
            for m in c.mentions { #expect(error.reason.contains(m), "\(c.name): \(error)") }
        }
    }

    /// Byte-level damage to a whole file (seed 400; 1,000 cases): truncation, random bytes
    /// anywhere, in the header only, in the length field, and appended bytes.
    @Test func randomCorruptionNeverCrashes() throws {
        let folder = temporaryFolder()
        let path = "\(folder)/good.safetensors"
        try SafeTensors.save([("a", Tensor.randn([3, 4], generator: Generator(seed: 157))), ("b", Tensor.arange(0, 5)), ("c", Tensor([true]))], to: path)
        let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let headerEnd = 8 + Int(original.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        var rng = TestRandom("safetensors corruptions", defaultSeed: 400)
        var rejected = 0
        let cases = 1_000 * fuzzScale
        for trial in 0..<cases {
            var bytes = original
            switch trial % 5 {
            case 0: bytes = Array(bytes.prefix(Int.random(in: 0..<bytes.count, using: &rng)))   // truncation
            case 1: for _ in 0..<Int.random(in: 1...4, using: &rng) { bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            case 2: for _ in 0..<Int.random(in: 1...3, using: &rng) { bytes[Int.random(in: 8..<headerEnd, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            case 3: bytes[Int.random(in: 0..<8, using: &rng)] = UInt8.random(in: 0...255, using: &rng)   // length field
            default: bytes += (0..<Int.random(in: 1...16, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            }
            let damaged = "\(folder)/damaged.safetensors"
            _ = FileManager.default.createFile(atPath: damaged, contents: Data(bytes))
            if let tensors = try? SafeTensors.load(damaged) {
                for (_, t) in tensors { _ = t.sum() }   // whatever loaded is readable
            } else {
                rejected += 1
            }
        }
        print("safetensors byte corruptions: \(cases) cases, \(rejected) rejected, \(cases - rejected) loaded")
        #expect(rejected > cases * 3 / 8)
    }

    /// Mutations of the header JSON itself (seed 1618; 2,000 cases): numbers at the boundaries
    /// of shapes and offsets (0, −1, 2^31, 2^32, 2^53 + 1, 2^62, 2^63 − 1, 2^63, 1e20, fractions,
    /// the buffer's length ± 1), huge and many-dimensional shapes, overlapping, swapped, shifted
    /// and shared offsets, wrong and unknown dtypes (and dtypes changed with the shape adjusted),
    /// entries of the wrong kind or missing fields, duplicate and odd names, bad metadata, and a
    /// data buffer that grows or shrinks. Every file loads or throws a SafeTensorsError; whatever
    /// loads is readable and no larger than its file.
    @Test func headerMutationsNeverCrash() throws {
        let folder = temporaryFolder()
        struct Entry { var name: String; var dtype: String; var shape: [String]; var offsets: [String]; var raw: String? }
        let data = [UInt8](repeating: 0x3F, count: 48 + 40 + 6)   // a: F32 [3, 4], b: I64 [5], c: U8 [6]
        let base = [Entry(name: "a", dtype: "\"F32\"", shape: ["3", "4"], offsets: ["0", "48"], raw: nil),
                    Entry(name: "b", dtype: "\"I64\"", shape: ["5"], offsets: ["48", "88"], raw: nil),
                    Entry(name: "c", dtype: "\"U8\"", shape: ["6"], offsets: ["88", "94"], raw: nil)]
        let numbers = ["0", "1", "-1", "2", "3", "4", "5", "6", "7", "8", "12", "47", "48", "49", "88", "93", "94", "95", "2147483648",
                       "4294967296", "9007199254740993", "4611686018427387904", "9223372036854775807", "9223372036854775808",
                       "18446744073709551616", "1e20", "-0", "1.5", "48.0", "\"48\"", "null", "true", "[]", "{}"]
        let dtypes = ["\"F32\"", "\"F16\"", "\"BF16\"", "\"F64\"", "\"I64\"", "\"I32\"", "\"U8\"", "\"BOOL\"", "\"F8_E4M3\"", "\"I8\"",
                      "\"U64\"", "\"f32\"", "\"\"", "7", "null", "[\"F32\"]"]
        var rng = TestRandom("safetensors header mutations", defaultSeed: 1618)
        func pick<T>(_ values: [T]) -> T { values[Int.random(in: 0..<values.count, using: &rng)] }
        var rejected = 0, loaded = 0
        let cases = 2_000 * fuzzScale
        for _ in 0..<cases {
            var entries = base
            var metadata: String? = pick([nil, "{\"format\":\"pt\"}"])
            var buffer = data
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                let i = Int.random(in: 0..<entries.count, using: &rng)
                switch Int.random(in: 0..<12, using: &rng) {
                case 0:
                    if entries[i].shape.isEmpty { entries[i].shape = [pick(numbers)] }
                    else { entries[i].shape[Int.random(in: 0..<entries[i].shape.count, using: &rng)] = pick(numbers) }
                case 1: entries[i].offsets[Int.random(in: 0...1, using: &rng)] = pick(numbers)
                case 2: entries[i].shape = pick([["2147483648", "2147483648", "4"], ["9223372036854775807"], ["0", "9223372036854775807"], [],
                                                 Array(repeating: "1", count: 64), Array(repeating: "2", count: 70), ["4611686018427387904", "4"], ["-3", "-4"]])
                case 3:                                                                   // overlapping, shared, swapped, shifted offsets
                    let j = Int.random(in: 0..<entries.count, using: &rng)
                    switch Int.random(in: 0..<3, using: &rng) {
                    case 0: entries[i].offsets = entries[j].offsets
                    case 1: entries[i].offsets.reverse()
                    default:
                        let shift = pick([-1, 1, -4, 4, 48])
                        entries[i].offsets = entries[i].offsets.map { String((Int($0) ?? 0) + shift) }
                    }
                case 4: entries[i].dtype = pick(dtypes)
                case 5:                                                                   // another dtype, shape adjusted to keep the bytes
                    let (dtype, factor) = pick([("\"F16\"", 2), ("\"BF16\"", 2), ("\"U8\"", 4), ("\"BOOL\"", 4), ("\"F64\"", 0)])
                    entries[i].dtype = dtype
                    if factor > 0, let last = entries[i].shape.last.flatMap({ Int($0) }) { entries[i].shape[entries[i].shape.count - 1] = String(last &* factor) }
                case 6: entries[i].raw = pick(["[]", "\"x\"", "{}", "null", "1", "{\"dtype\":\"F32\",\"shape\":[2]}", "{\"dtype\":\"F32\",\"data_offsets\":[0,8]}",
                                               "{\"dtype\":\"F32\",\"shape\":[12],\"data_offsets\":[0,48],\"extra\":[1,2]}", "{\"shape\":[12],\"data_offsets\":[0,48]}"])
                case 7: entries[i].name = pick(["", "a", "b", "__metadata__", "ü\\u0000x", String(repeating: "n", count: 5000), "a.b.c", "\\\"quoted\\\""])
                case 8: metadata = pick(["1", "[]", "{\"a\":1}", "{\"a\":{\"b\":\"c\"}}", "null", "\"x\"", "{\"\":\"\"}"])
                case 9: entries.append(Entry(name: "extra\(i)", dtype: pick(dtypes), shape: [pick(numbers)], offsets: [pick(numbers), pick(numbers)], raw: nil))
                case 10: if entries.count > 1 { entries.remove(at: i) }
                default:                                                                  // the data buffer grows or shrinks
                    if Bool.random(using: &rng) { buffer += Array(repeating: 0, count: pick([1, 4, 8, 48])) } else { buffer.removeLast(Swift.min(buffer.count, pick([1, 4, 6, 40]))) }
                }
            }
            var parts = entries.map { e in
                "\"\(e.name)\":" + (e.raw ?? "{\"dtype\":\(e.dtype),\"shape\":[\(e.shape.joined(separator: ","))],\"data_offsets\":[\(e.offsets.joined(separator: ","))]}")
            }
            if let metadata { parts.insert("\"__metadata__\":\(metadata)", at: Int.random(in: 0...parts.count, using: &rng)) }
            var header = Array("{\(parts.joined(separator: ","))}".utf8)
            while header.count % 8 != 0 { header.append(0x20) }
            var length = UInt64(header.count)
            if Int.random(in: 0..<10, using: &rng) == 0 { length = pick([0, 1, 7, length - 1, length + 1, length + 8, UInt64(Int64.max), UInt64.max]) }
            var bytes = (0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * UInt64($0))) }
            bytes += header + buffer
            let path = "\(folder)/mutated.safetensors"
            _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
            do {
                let tensors = try SafeTensors.load(path)
                let total = tensors.values.reduce(0) { $0 + $1.count * $1.dtype.byteSize }
                #expect(total <= bytes.count, "\(total) bytes of tensors from a \(bytes.count)-byte file")
                for (_, t) in tensors { _ = t.to(.float64).sum().item(Double.self) }
                loaded += 1
            } catch is SafeTensorsError {
                rejected += 1
            } catch {
                Issue.record("not a SafeTensorsError: \(error)")
            }
        }
        print("safetensors header mutations: \(cases) cases, \(rejected) rejected, \(loaded) loaded")
        #expect(rejected > cases / 2 && loaded > 0)
    }

    @Test func shardedCheckpointsRoundTrip() throws {
        let folder = temporaryFolder()
        let model = TinyEncoder()
        try ShardedSafeTensors.save(model.stateDict(), to: folder, maxShardBytes: 1_500)
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
        #expect(files.contains(ShardedSafeTensors.indexFile))
        #expect(files.filter { $0.hasPrefix("model-0") }.count > 2)
        let other = TinyEncoder()
        try other.load(checkpoint: folder)
        for ((name, a), (_, b)) in zip(model.stateDict(), other.stateDict()) { #expect(a.equal(b), "\(name)") }
        let single = temporaryFolder()
        try ShardedSafeTensors.save(model.stateDict(), to: single)
        #expect(try FileManager.default.contentsOfDirectory(atPath: single) == [ShardedSafeTensors.singleFile])
        #expect(try ShardedSafeTensors.load(single).count == model.stateDict().count)
    }
}

@Suite("Loading state dicts into modules")
struct StateDictTests {
    @Test func reportsMissingUnexpectedAndMismatchedTogether() throws {
        let model = TinyEncoder()
        var weights = Dictionary(uniqueKeysWithValues: model.stateDict().map { ($0.name, $0.tensor.clone()) })
        weights["final_layer_norm.weight"] = nil
        weights["layers.0.mlp.fc1.bias"] = nil
        weights["text_projection.weight"] = Tensor.ones([2, 2])
        weights["layers.1.mlp.fc1.weight"] = Tensor.ones([15, 8])
        let before = model.layers[0].selfAttn.qProj.weight.clone()
        weights["layers.0.self_attn.q_proj.weight"] = Tensor.zeros([8, 8])

        let error = #expect(throws: StateDictError.self) { try model.load(weights, source: "ckpt/model.safetensors") }
        let report = try #require(error?.report)
        #expect(report.missing == ["final_layer_norm.weight", "layers.0.mlp.fc1.bias"])
        #expect(report.unexpected == ["text_projection.weight"])
        #expect(report.mismatched == [.init(key: "layers.1.mlp.fc1.weight", expected: [16, 8], found: [15, 8])])
        #expect("\(error!)".contains("ckpt/model.safetensors"))
        // Nothing was written.
        #expect(model.layers[0].selfAttn.qProj.weight.equal(before))

        // Non-strict skips missing and unexpected keys but still refuses shape mismatches...
        #expect(throws: StateDictError.self) { try model.load(weights, strict: false) }
        // ...unless told to skip those too.
        let loose = try model.load(weights, strict: false, ignoreMismatchedShapes: true)
        #expect(loose.missing.count == 2 && loose.unexpected.count == 1 && loose.mismatched.count == 1)
        #expect(model.layers[0].selfAttn.qProj.weight.equal(Tensor.zeros([8, 8])))
    }

    @Test func renameHookAndDryRun() throws {
        let source = TinyEncoder(), target = TinyEncoder()
        let prefixed = Dictionary(uniqueKeysWithValues: source.stateDict().map { ("text_model.\($0.name)", $0.tensor) }
            + [("vision_model.x", Tensor.ones([1]))])
        let report = try target.load(prefixed, dryRun: true) { key in
            key.hasPrefix("text_model.") ? String(key.dropFirst(11)) : nil
        }
        #expect(report.isClean)
        #expect(!target.tokenEmbedding.weight.equal(source.tokenEmbedding.weight))   // dry run changed nothing
        try target.load(prefixed) { $0.hasPrefix("text_model.") ? String($0.dropFirst(11)) : nil }
        #expect(target.tokenEmbedding.weight.equal(source.tokenEmbedding.weight))
    }

    @Test func convertsDTypesWhileLoading() throws {
        let model = TinyEncoder()
        let half = Dictionary(uniqueKeysWithValues: model.stateDict().map { ($0.name, $0.tensor.to(.bfloat16)) })
        let other = TinyEncoder()
        try other.load(half)
        #expect(other.tokenEmbedding.weight.dtype == .float32)
        #expect(other.tokenEmbedding.weight.allClose(model.tokenEmbedding.weight, rtol: 1e-2, atol: 1e-2))
    }
}
