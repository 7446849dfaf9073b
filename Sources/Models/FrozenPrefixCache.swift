import Foundation
import Torch

/// Frozen-layer caching, what the text and image towers share: a locked prefix of a tower (its
/// embeddings and first layers, frozen and pinned to inference) is a function of its input alone,
/// so its output is computed once per distinct input and kept, up to a byte budget, for later
/// epochs and evaluations. `TextPrefixCache` keys captions by their token ids, `ImagePrefixCache`
/// images by a hash of their pixels.
///
/// Exactness: a cached value must equal the one computed now, bit for bit, so each tower computes
/// its prefix so that an input's value depends on that input alone (not on the batch it came
/// in; see the subclasses). With `capacityBytes` 0 nothing is kept and the prefix is computed the
/// same way every step: the reference the cache is checked against.
public class FrozenPrefixCache<Key: Hashable> {
    /// The most bytes of values kept; inputs beyond it are computed each time (still exact); 0
    /// keeps nothing.
    public let capacityBytes: Int
    /// What an input is called in `summary` ("captions").
    let inputs: String

    /// Under autocast (bf16 training) a prefix computes in another precision than without
    /// (evaluation): the two are different values, kept apart.
    private struct Entry: Hashable {
        let key: Key
        let autocast: Bool
    }
    /// Each input's value [rows, width], a view into one of the slabs.
    private var values: [Entry: Tensor] = [:]
    /// Values live in large blocks: thousands of small long-lived allocations between a step's
    /// large short-lived ones fragmented malloc's heap (peak RSS 3.8 GB for a 352 MB text cache
    /// on the default recipe). The block being filled, per dtype, and the rows it has used.
    private var openSlabs: [DType: (slab: Tensor, used: Int)] = [:]
    public private(set) var storedBytes = 0
    public private(set) var hits = 0
    public private(set) var misses = 0
    /// Inputs not stored because the cache was full.
    public private(set) var overflowed = 0

    init(capacityBytes: Int, inputs: String) {
        self.capacityBytes = capacityBytes
        self.inputs = inputs
    }

    public var storedInputs: Int { values.count }

    /// One value [rows, width] per key, in order: kept ones, and for the others what `compute`
    /// returns — called once with the batch row of each missing key's first occurrence, in batch
    /// order, it gives one value per row — stored while there is room.
    func values(for keys: [Key], on device: Device, compute: ([Int]) -> [Tensor]) -> [Tensor] {
        let autocast = isAutocastEnabled(on: device)
        let entries = keys.map { Entry(key: $0, autocast: autocast) }
        let found: [Tensor?] = entries.map { values[$0] }
        hits += found.count { $0 != nil }
        var firstRow: [Entry: Int] = [:]
        let missing = entries.indices.filter { found[$0] == nil && firstRow.updateValue($0, forKey: entries[$0]) == nil }
        guard !missing.isEmpty else { return found.map { $0! } }
        misses += missing.count
        let computed = compute(missing)
        for (row, value) in zip(missing, computed) { store(entries[row], value) }
        let byEntry = Dictionary(uniqueKeysWithValues: zip(missing.map { entries[$0] }, computed))
        return entries.indices.map { found[$0] ?? byEntry[entries[$0]]! }
    }

    /// "1234 captions, 45.6 MB, 92% of lookups hit".
    public var summary: String {
        if capacityBytes == 0 { return "no \(inputs) (model.frozen_layer_cache_mb is 0: the locked prefix runs every step)" }
        let looked = hits + misses
        let rate = looked == 0 ? 0 : Double(hits) / Double(looked) * 100
        var text = String(format: "%d %@, %.1f MB, %.0f%% of lookups hit", values.count, inputs, Double(storedBytes) / 1e6, rate)
        if overflowed > 0 { text += ", \(overflowed) not kept (the cache is full: raise model.frozen_layer_cache_mb)" }
        return text
    }

    private func store(_ entry: Entry, _ value: Tensor) {
        let (rows, width, dtype) = (value.size(0), value.size(1), value.dtype)
        var open = openSlabs[dtype]
        var bytes = 0
        if open.map({ $0.used + rows > $0.slab.size(0) || $0.slab.size(1) != width }) ?? true {
            let slabRows = max(rows, min(Self.slabBytes, capacityBytes - storedBytes) / max(1, width * dtype.byteSize))
            bytes = slabRows * width * dtype.byteSize
            guard storedBytes + bytes <= capacityBytes else { overflowed += 1; return }
            open = (Tensor.empty([slabRows, width], dtype: dtype, device: value.device), 0)
        }
        let slot = open!.slab.narrow(dim: 0, start: open!.used, length: rows)
        slot.copy_(value)
        openSlabs[dtype] = (open!.slab, open!.used + rows)
        storedBytes += bytes
        values[entry] = slot
    }

    /// Size of one block of values.
    static var slabBytes: Int { 16 << 20 }

    /// `rows` topped up with repeats to at least `minimumTokenRows` token rows of `tokensPerRow`
    /// each: a matmul over very few rows takes another MKL kernel, which rounds differently (MKL's
    /// sgemm rounds a row the same for any M from about 12 rows on, measured on AVX2 with 1 and 2
    /// threads), and a value must not depend on how many inputs missed with it.
    static func toppedUp(_ rows: [Int], tokensPerRow: Int) -> [Int] {
        let tokensPerRow = max(1, tokensPerRow)
        guard rows.count * tokensPerRow < minimumTokenRows else { return rows }
        return (0..<(minimumTokenRows + tokensPerRow - 1) / tokensPerRow).map { rows[$0 % rows.count] }
    }

    static var minimumTokenRows: Int { 256 }
}
