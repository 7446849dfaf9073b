import Foundation
import Testing
import Datasets
import NN
import Torch
@testable import Models
import TestSupport

/// Random mutations of JSON values: numbers at boundaries, values of the wrong kind, removed and
/// added keys, swapped sections, and (sometimes) damaged bytes of the serialised text.
struct JSONMutator {
    var random: TestRandom

    /// Values that sit on or past the edges the readers check.
    static var pool: [Any] { [
        0, 1, -1, 2, 3, 5, 7, 8, 16, 24, 32, 48, 77, 512, 1000, 49406, 49407, 49408, 4096, 4097,
        2_147_483_647, 2_147_483_648, 4_294_967_296, 999_999_999_999_999, 1e15, 1e16, 9.3e18, -9.3e18,
        NSNumber(value: Int64.max), NSNumber(value: Int64.min), 1e300, -1e300, 1e-300, 0.5, 1.5, -0.0, 0.999999,
        "", "32", "1e-5", "gelu", "clip", "bert", "clip_text_model", "clip_vision_model", "cliptune-dual-encoder", "vision-text-dual-encoder",
        true, false, NSNull(), [Any](), [1], [0.5, 0.5, 0.5], [0.5], [1, 2, 3, 4], [String: Any](), ["a": 1], ["shortest_edge": 0],
        ["height": 32, "width": 32], ["height": 32, "width": 24],
    ] }

    init(_ label: String, seed: UInt64) { random = TestRandom(label, defaultSeed: seed) }

    mutating func pick<T>(_ values: [T]) -> T { values[Int.random(in: 0..<values.count, using: &random)] }
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &random) < p }

    /// Every path (keys) to a value in `object`, nested objects included.
    static func paths(_ object: [String: Any], prefix: [String] = []) -> [[String]] {
        object.keys.sorted().flatMap { key -> [[String]] in
            let path = prefix + [key]
            if let nested = object[key] as? [String: Any] { return [path] + paths(nested, prefix: path) }
            return [path]
        }
    }

    static func get(_ object: [String: Any], _ path: [String]) -> Any? {
        guard let first = path.first else { return object }
        return path.count == 1 ? object[first] : (object[first] as? [String: Any]).flatMap { get($0, Array(path.dropFirst())) }
    }

    static func set(_ object: [String: Any], _ path: [String], _ value: Any?) -> [String: Any] {
        var object = object
        guard let first = path.first else { return object }
        if path.count == 1 { object[first] = value } else {
            object[first] = set(object[first] as? [String: Any] ?? [:], Array(path.dropFirst()), value)
        }
        return object
    }

    /// One to three mutations of `object`.
    mutating func mutate(_ object: [String: Any]) -> [String: Any] {
        var result = object
        for _ in 0..<Int.random(in: 1...3, using: &random) {
            let paths = Self.paths(result)
            guard !paths.isEmpty else { result["model_type"] = pick(Self.pool); continue }
            let path = pick(paths)
            let current = Self.get(result, path)
            switch Int.random(in: 0..<9, using: &random) {
            case 0, 1: result = Self.set(result, path, pick(Self.pool))                          // a boundary or foreign value
            case 2:                                                                            // arithmetic on a number
                if let n = current as? NSNumber, !ConfigReader.isBoolean(n) {
                    let v = n.doubleValue
                    let changed: Double = pick([v * 2, (v / 2).rounded(.down), v + 1, v - 1, -v, v * 1000, 0, v * 1e12])
                    result = Self.set(result, path, changed.rounded() == changed && Swift.abs(changed) < 9e18 ? NSNumber(value: Int64(changed)) : NSNumber(value: changed))
                } else {
                    result = Self.set(result, path, pick(Self.pool))
                }
            case 3: result = Self.set(result, path, nil)                                        // removed
            case 4:                                                                            // the number as a string, and back
                if let n = current as? NSNumber { result = Self.set(result, path, "\(n)") }
                else if let s = current as? String { result = Self.set(result, path, Double(s).map { NSNumber(value: $0) } ?? NSNumber(value: s.count)) }
                else { result = Self.set(result, path, [current ?? NSNull()]) }
            case 5:                                                                            // the towers swapped
                let text = result["text_config"], vision = result["vision_config"]
                result["text_config"] = vision
                result["vision_config"] = text
            case 6: result = Self.set(result, path, Self.get(result, pick(paths)))              // another key's value
            case 7: result = Self.set(result, Array(path.dropLast()) + ["unknown_\(Int.random(in: 0..<9, using: &random))"], pick(Self.pool))
            default: result = Self.set(result, path, [String: Any]())                           // an empty section
            }
        }
        return result
    }

    /// The object's JSON text, sometimes with damaged bytes (flipped, cut, inserted).
    mutating func serialise(_ object: [String: Any]) -> Data {
        var bytes = [UInt8]((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8))
        guard chance(0.1), !bytes.isEmpty else { return Data(bytes) }
        switch Int.random(in: 0..<3, using: &random) {
        case 0: for _ in 0..<Int.random(in: 1...4, using: &random) { bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random) }
        case 1: bytes = Array(bytes.prefix(Int.random(in: 0..<bytes.count, using: &random)))
        default: bytes.insert(contentsOf: Array(pick(["[", "{", "\"", "9e999", ",", "\\u0000"]).utf8), at: Int.random(in: 0...bytes.count, using: &random))
        }
        return Data(bytes)
    }
}

@Suite("Fuzz: mutated configs load or throw, never trap or allocate gigabytes")
struct ConfigFuzzTests {
    static let fixtures = ["clip_a", "clip_b", "dual_bert"]
    /// Cases per fixture (× `CLIPTUNE_FUZZ_SCALE`, default 1, for longer runs by hand).
    static let configCases = 200 * fuzzScale
    static let preprocessorCases = 100 * fuzzScale

    /// A loaded checkpoint is within what its weights can fill (no huge model was built).
    static func checkLoaded(_ checkpoint: PretrainedCheckpoint, folder: String) throws {
        let stored = try ShardedSafeTensors.load(folder).values.reduce(0) { $0 + $1.count }
        let parameters: Int
        switch checkpoint.model {
        case .dualEncoder(let model): parameters = model.parameterCount
        case .textEncoder(let bert, _): parameters = bert.parameterCount
        }
        #expect(parameters <= 2 * stored + Pretrained.allocationSlack, "\(folder): a model of \(parameters) parameters was built from \(stored) stored values")
        if let p = checkpoint.preprocessing { #expect(p.problems.isEmpty && p.size <= ImagePreprocessing.maxSize) }
    }

    /// config.json of each committed fixture, mutated (seed 1616; 200 cases per fixture, 600 in all).
    @Test func mutatedConfigsLoadOrThrow() throws {
        var mutator = JSONMutator("config.json mutations", seed: 1616)
        var summary: [String] = []
        for fixture in Self.fixtures {
            let checkpoint = try MutableCheckpoint(fixture)
            var loaded = 0, refused = 0
            for _ in 0..<Self.configCases {
                let data = mutator.serialise(mutator.mutate(checkpoint.config))
                try data.write(to: URL(fileURLWithPath: "\(checkpoint.folder)/config.json"))
                do {
                    try Self.checkLoaded(try Pretrained.load(checkpoint.folder), folder: checkpoint.folder)
                    loaded += 1
                } catch let error as ModelConfigError {
                    #expect(error.file.hasPrefix(checkpoint.folder) && !error.reason.isEmpty)
                    refused += 1
                } catch {
                    #expect(error is StateDictError, "\(fixture): unexpected \(type(of: error)): \(error)")
                    refused += 1
                }
            }
            summary.append("\(fixture): \(loaded) loaded, \(refused) refused")
        }
        print("config.json fuzz (\(Self.configCases) per fixture): " + summary.joined(separator: "; "))
    }

    /// preprocessor_config.json beside each fixture, mutated (seed 1617; 100 cases per fixture, 300 in all).
    @Test func mutatedPreprocessorConfigsLoadOrThrow() throws {
        var mutator = JSONMutator("preprocessor_config.json mutations", seed: 1617)
        var summary: [String] = []
        for fixture in Self.fixtures {
            let checkpoint = try MutableCheckpoint(fixture)
            let size = ((checkpoint.config["vision_config"] as? [String: Any])?["image_size"] as? Int) ?? 224
            let base = Pretrained.preprocessorJSON(ImagePreprocessing(size: size))
            var loaded = 0, refused = 0
            for _ in 0..<Self.preprocessorCases {
                let data = mutator.serialise(mutator.mutate(base))
                try data.write(to: URL(fileURLWithPath: "\(checkpoint.folder)/preprocessor_config.json"))
                do {
                    try Self.checkLoaded(try Pretrained.load(checkpoint.folder), folder: checkpoint.folder)
                    loaded += 1
                } catch let error as ModelConfigError {
                    #expect(error.file == "\(checkpoint.folder)/preprocessor_config.json", "\(error)")
                    refused += 1
                }
            }
            summary.append("\(fixture): \(loaded) loaded, \(refused) refused")
        }
        print("preprocessor_config.json fuzz (\(Self.preprocessorCases) per fixture): " + summary.joined(separator: "; "))
    }
}
