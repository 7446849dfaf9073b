import Foundation
import Torch

/// What loading a state dict into a module found.
public struct LoadReport: Sendable, CustomStringConvertible {
    public struct Mismatch: Sendable, Equatable {
        public let key: String
        public let expected: [Int]
        public let found: [Int]
    }

    /// Module keys the source did not provide.
    public var missing: [String] = []
    /// Source keys the module does not have.
    public var unexpected: [String] = []
    /// Keys whose shapes differ.
    public var mismatched: [Mismatch] = []

    public var isClean: Bool { missing.isEmpty && unexpected.isEmpty && mismatched.isEmpty }

    public init(missing: [String] = [], unexpected: [String] = [], mismatched: [Mismatch] = []) {
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched
    }

    public var description: String {
        var lines: [String] = []
        if !missing.isEmpty { lines.append("missing keys (\(missing.count)): \(Self.list(missing))") }
        if !unexpected.isEmpty { lines.append("unexpected keys (\(unexpected.count)): \(Self.list(unexpected))") }
        if !mismatched.isEmpty {
            lines.append("shape mismatches (\(mismatched.count)): " + mismatched.prefix(20).map { "\($0.key): checkpoint \($0.found) vs model \($0.expected)" }.joined(separator: "; "))
        }
        return lines.isEmpty ? "all keys matched" : lines.joined(separator: "\n")
    }

    private static func list(_ keys: [String]) -> String {
        keys.prefix(20).joined(separator: ", ") + (keys.count > 20 ? ", … (\(keys.count - 20) more)" : "")
    }
}

/// A state dict that does not fit the module; lists every problem at once.
public struct StateDictError: Error, CustomStringConvertible {
    public let source: String
    public let report: LoadReport
    public init(source: String, report: LoadReport) {
        self.source = source
        self.report = report
    }
    public var description: String {
        "\(source) does not match the model:\n\(report)\nCheck that the checkpoint and the model config describe the same architecture (or load with strict: false to skip missing/unexpected keys)."
    }
}

extension Module {
    /// Parameters and persistent buffers under their dotted names, detached.
    public func stateDict() -> [(name: String, tensor: Tensor)] {
        withNoGrad {
            namedParameters().map { ($0.name, $0.tensor.detach()) }
                + namedBuffers().filter { $0.buffer.persistent }.map { ($0.name, $0.buffer.tensor.detach()) }
        }
    }

    /// Copies `tensors` into this module's parameters and persistent buffers (converting dtype
    /// and device), after checking every key and shape first: nothing is written unless the
    /// whole load can succeed.
    ///
    /// - `strict`: any missing or unexpected key is an error. Otherwise they are reported and skipped.
    /// - `ignoreMismatchedShapes`: skip (and report) keys whose shapes differ instead of failing.
    /// - `rename`: maps a source key to this module's key, or nil to drop it (other layouts).
    /// - `dryRun`: check and report only; change nothing.
    @discardableResult
    public func load(_ tensors: [String: Tensor], strict: Bool = true, ignoreMismatchedShapes: Bool = false,
                     source: String = "state dict", dryRun: Bool = false, rename: ((String) -> String?)? = nil) throws -> LoadReport {
        var renamed: [String: Tensor] = [:]
        for (key, tensor) in tensors {
            guard let target = rename.map({ $0(key) }) ?? key else { continue }
            renamed[target] = tensor
        }
        let targets = Dictionary(stateDict().map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
        let liveTargets = Dictionary(
            namedParameters().map { ($0.name, $0.tensor) } + namedBuffers().filter { $0.buffer.persistent }.map { ($0.name, $0.buffer.tensor) },
            uniquingKeysWith: { a, _ in a })

        var report = LoadReport()
        report.missing = targets.keys.filter { renamed[$0] == nil }.sorted()
        report.unexpected = renamed.keys.filter { targets[$0] == nil }.sorted()
        var assignments: [(Tensor, Tensor)] = []
        for (key, target) in targets.sorted(by: { $0.key < $1.key }) {
            guard let source = renamed[key] else { continue }
            let expected = target.shape, found = source.shape
            if expected != found {
                report.mismatched.append(.init(key: key, expected: expected, found: found))
            } else {
                assignments.append((liveTargets[key]!, source))
            }
        }
        if (strict && !(report.missing.isEmpty && report.unexpected.isEmpty)) || (!ignoreMismatchedShapes && !report.mismatched.isEmpty) {
            throw StateDictError(source: source, report: report)
        }
        if dryRun { return report }
        try withTorchErrors {
            withNoGrad { for (target, source) in assignments { target.copy_(source) } }
        }
        return report
    }

    /// Loads a Hugging Face weights file or folder: `model.safetensors`, a sharded
    /// `model.safetensors.index.json`, or a path to either.
    @discardableResult
    public func load(checkpoint path: String, strict: Bool = true, ignoreMismatchedShapes: Bool = false,
                     rename: ((String) -> String?)? = nil) throws -> LoadReport {
        let tensors = try ShardedSafeTensors.load(path)
        return try load(tensors, strict: strict, ignoreMismatchedShapes: ignoreMismatchedShapes, source: path, rename: rename)
    }
}

/// Hugging Face's weight layout in a folder: `model.safetensors`, or shards listed in
/// `model.safetensors.index.json` (`{"metadata": {"total_size": N}, "weight_map": {name: file}}`).
public enum ShardedSafeTensors {
    public static let singleFile = "model.safetensors"
    public static let indexFile = "model.safetensors.index.json"

    /// Reads every tensor from a folder, an index file or a single safetensors file.
    public static func load(_ path: String) throws -> [String: Tensor] {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw SafeTensorsError(file: path, tensor: nil, reason: "does not exist")
        }
        if isFolder.boolValue {
            if FileManager.default.fileExists(atPath: "\(path)/\(indexFile)") { return try loadIndexed("\(path)/\(indexFile)") }
            if FileManager.default.fileExists(atPath: "\(path)/\(singleFile)") { return try SafeTensors.load("\(path)/\(singleFile)") }
            throw SafeTensorsError(file: path, tensor: nil, reason: "holds neither \(singleFile) nor \(indexFile)")
        }
        return path.hasSuffix(".json") ? try loadIndexed(path) : try SafeTensors.load(path)
    }

    /// The floating-point types a folder's weights are stored in (headers only; empty when
    /// they cannot be read — loading reports that).
    public static func storedFloatTypes(_ folder: String) -> Set<DType> {
        var files = ["\(folder)/\(singleFile)"]
        if let data = FileManager.default.contents(atPath: "\(folder)/\(indexFile)"), let index = try? JSONDecoder().decode(Index.self, from: data) {
            files = Set(index.weightMap.values).map { "\(folder)/\($0)" }
        }
        var types = Set<DType>()
        for file in files {
            guard let header = try? SafeTensorsFile(path: file) else { continue }
            for entry in header.entries.values where entry.dtype.isFloatingPoint { types.insert(entry.dtype) }
        }
        return types
    }

    private struct Index: Codable {
        var metadata: [String: Int]?
        var weightMap: [String: String]
        enum CodingKeys: String, CodingKey { case metadata, weightMap = "weight_map" }
    }

    static func loadIndexed(_ indexPath: String) throws -> [String: Tensor] {
        let folder = URL(fileURLWithPath: indexPath).deletingLastPathComponent().path
        let index: Index
        do {
            index = try JSONDecoder().decode(Index.self, from: Data(contentsOf: URL(fileURLWithPath: indexPath)))
        } catch {
            throw SafeTensorsError(file: indexPath, tensor: nil, reason: "is not a valid safetensors index (\(error))")
        }
        var result: [String: Tensor] = [:]
        for shard in Set(index.weightMap.values).sorted() {
            guard !shard.contains("/") else {
                throw SafeTensorsError(file: indexPath, tensor: nil, reason: "shard name \(shard) must be a file in the same folder")
            }
            let file = try SafeTensorsFile(path: "\(folder)/\(shard)")
            for name in index.weightMap.filter({ $0.value == shard }).keys {
                result[name] = try file.tensor(name)
            }
        }
        return result
    }

    /// Writes tensors as `model.safetensors`, or as numbered shards plus an index when they
    /// exceed `maxShardBytes` (Hugging Face's naming: `model-00001-of-00003.safetensors`).
    public static func save(_ tensors: [(name: String, tensor: Tensor)], to folder: String, maxShardBytes: Int = 5_000_000_000,
                            metadata: [String: String] = ["format": "pt"]) throws {
        var shards: [[(name: String, tensor: Tensor)]] = [[]]
        var shardBytes = 0
        for item in tensors {
            let bytes = item.tensor.count * item.tensor.dtype.byteSize
            if shardBytes + bytes > maxShardBytes && !shards[shards.count - 1].isEmpty {
                shards.append([])
                shardBytes = 0
            }
            shards[shards.count - 1].append(item)
            shardBytes += bytes
        }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        if shards.count == 1 {
            try SafeTensors.save(shards[0], metadata: metadata, to: "\(folder)/\(singleFile)")
            return
        }
        var weightMap: [String: String] = [:]
        for (i, shard) in shards.enumerated() {
            let name = String(format: "model-%05d-of-%05d.safetensors", i + 1, shards.count)
            try SafeTensors.save(shard, metadata: metadata, to: "\(folder)/\(name)")
            for item in shard { weightMap[item.name] = name }
        }
        let total = tensors.reduce(0) { $0 + $1.tensor.count * $1.tensor.dtype.byteSize }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(encoder.encode(Index(metadata: ["total_size": total], weightMap: weightMap)), to: "\(folder)/\(indexFile)")
    }
}
