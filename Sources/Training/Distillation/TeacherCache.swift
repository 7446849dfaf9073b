import Foundation
import NN
import Torch

/// Teacher embeddings computed once per image (by sample origin) and once per caption (by
/// text), reused in later epochs, and kept in `teacher_cache.safetensors` beside the run so a
/// resumed run does not recompute them. Valid only when the data is not augmented (the recipe
/// checks this), since an augmented image differs each epoch.
public final class TeacherCache {
    public static let file = "teacher_cache.safetensors"
    private var images: [String: [Float]] = [:]
    private var texts: [String: [Float]] = [:]
    private let dim: Int
    private let fingerprint: String
    private var savedCount = (images: 0, texts: 0)
    public private(set) var hits = 0, misses = 0
    /// False when images are augmented: their embeddings are not cached (the objective computes them).
    public var cachesImages = true

    public init(dim: Int, fingerprint: String) {
        self.dim = dim
        self.fingerprint = fingerprint
    }

    public var count: (images: Int, texts: Int) { (images.count, texts.count) }

    /// The share of lookups served from the cache so far; nil before the first.
    public var hitRate: Double? { hits + misses > 0 ? Double(hits) / Double(hits + misses) : nil }

    /// Image embeddings for a batch; `compute` gets the rows not cached yet.
    public func images(_ keys: [String], compute: ([Int]) -> Tensor) -> Tensor { lookup(keys, &images, compute) }
    /// Text embeddings for a batch of captions; `compute` gets the rows not cached yet.
    public func texts(_ captions: [String], compute: ([Int]) -> Tensor) -> Tensor { lookup(captions, &texts, compute) }

    private func lookup(_ keys: [String], _ table: inout [String: [Float]], _ compute: ([Int]) -> Tensor) -> Tensor {
        var missing: [Int] = []
        var seen = Set<String>()
        for (i, key) in keys.enumerated() where table[key] == nil && seen.insert(key).inserted { missing.append(i) }
        if !missing.isEmpty {
            let computed = compute(missing).to(.float32).contiguous().toArray(Float.self)
            for (row, i) in missing.enumerated() { table[keys[i]] = Array(computed[row * dim..<(row + 1) * dim]) }
        }
        misses += missing.count
        hits += keys.count - missing.count
        var flat: [Float] = []
        flat.reserveCapacity(keys.count * dim)
        for key in keys { flat += table[key]! }
        return Tensor(flat, shape: [keys.count, dim])
    }

    /// Reads a cache file; nil (with the reason) when it is missing or made by other weights.
    public static func load(from path: String, dim: Int, fingerprint: String) throws -> TeacherCache? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let file = try SafeTensorsFile(path: path)
        guard file.metadata["teacher"] == fingerprint else { return nil }
        let tensors = try SafeTensors.load(path)
        let cache = TeacherCache(dim: dim, fingerprint: fingerprint)
        func restore(_ name: String, _ table: inout [String: [Float]]) throws {
            guard let keysJSON = file.metadata["\(name)_keys"], let keys = try JSONSerialization.jsonObject(with: Data(keysJSON.utf8)) as? [String],
                  let tensor = tensors[name], tensor.shape == [keys.count, dim] else {
                throw TrainingError(message: "\(path): damaged teacher cache (\(name)); delete it and it is rebuilt")
            }
            let values = tensor.toArray(Float.self)
            for (row, key) in keys.enumerated() { table[key] = Array(values[row * dim..<(row + 1) * dim]) }
        }
        try restore("images", &cache.images)
        try restore("texts", &cache.texts)
        cache.savedCount = (cache.images.count, cache.texts.count)
        return cache
    }

    /// Writes the cache atomically when it has grown since the last save.
    public func save(to path: String) throws {
        guard (images.count, texts.count) != savedCount else { return }
        var tensors: [String: Tensor] = [:]
        var metadata = ["teacher": fingerprint]
        for (name, table) in [("images", images), ("texts", texts)] {
            let keys = table.keys.sorted()
            var flat: [Float] = []
            flat.reserveCapacity(keys.count * dim)
            for key in keys { flat += table[key]! }
            tensors[name] = Tensor(flat, shape: [keys.count, dim])
            metadata["\(name)_keys"] = String(decoding: try JSONSerialization.data(withJSONObject: keys), as: UTF8.self)
        }
        try SafeTensors.save(tensors, metadata: metadata, to: path)   // atomic: temporary file, fsync, rename
        savedCount = (images.count, texts.count)
    }
}
