import Foundation
import NN
import Torch

/// Frozen-layer caching: the token states after a text tower's locked prefix (its embeddings and
/// first `layers` layers, frozen and pinned to inference) are a function of the caption alone,
/// so they are computed once per distinct caption and reused in later epochs and evaluations.
///
/// Exactness: the prefix runs its attention one row at a time over the row's real tokens
/// (`AttentionMask.rowLengths`); matmuls, LayerNorms and embeddings are row-wise already, so a
/// row's states depend on that row alone and a cached row equals the one computed now, bit for
/// bit. (Batched, libtorch's CPU attention rounds a row differently with the batch's size and
/// padded length.) With the cache off (`capacityBytes` 0) the prefix is computed the same way
/// every step, which is what the cache is checked against: `FrozenPrefixCacheTests`, and the
/// default recipe's metrics, identical with and without it.
/// Padding positions of an assembled batch hold zeros instead of the pad token's states: they
/// are masked as keys and pooled with weight 0, so no real output or gradient sees them.
public final class FrozenPrefixCache {
    public let tower: any TextTower
    /// Layers in the locked prefix (the embeddings come with them).
    public let layers: Int
    /// The most bytes of states kept; inputs beyond it are computed each time (still exact);
    /// 0 keeps nothing: the prefix is computed the same way every time (the reference).
    public let capacityBytes: Int

    /// Real token ids (with whether the batch had a mask) → states [real tokens, width], a view
    /// into one of the slabs.
    private var rows: [[Int64]: Tensor] = [:]
    /// Cached states live in large blocks: thousands of small long-lived allocations between the
    /// step's large short-lived ones fragmented malloc's heap (peak RSS 3.8 GB for a 352 MB
    /// cache on the default recipe).
    private var slabs: [Tensor] = []
    private var slabUsed = 0
    public private(set) var storedBytes = 0
    public private(set) var hits = 0
    public private(set) var misses = 0
    /// Inputs not stored because the cache was full.
    public private(set) var overflowed = 0

    public init(tower: any TextTower, layers: Int, capacityBytes: Int) {
        precondition(layers >= 0 && layers <= tower.layerCount, "the locked prefix has \(layers) layers; the tower has \(tower.layerCount)")
        self.tower = tower
        self.layers = layers
        self.capacityBytes = capacityBytes
    }

    public var storedInputs: Int { rows.count }

    /// The tower's pooled output, as `tower.pooled(ids:attentionMask:)`.
    public func pooled(ids: Tensor, attentionMask: Tensor?) -> Tensor {
        let device = tower.device
        let ids = ids.on(device), attentionMask = attentionMask?.on(device)
        guard let keys = Self.rowKeys(ids: ids, attentionMask: attentionMask) else {
            return tower.pooled(ids: ids, attentionMask: attentionMask)   // a mask with holes: not a prefix of real tokens
        }
        var found: [Tensor?] = keys.map { rows[$0] }
        hits += found.count { $0 != nil }
        // Each missing caption once, in batch order.
        var firstRow: [[Int64]: Int] = [:]
        let missing = keys.indices.filter { found[$0] == nil && firstRow.updateValue($0, forKey: keys[$0]) == nil }
        if !missing.isEmpty {
            misses += missing.count
            let computed = prefix(rows: missing, ids: ids, attentionMask: attentionMask, lengths: keys.map(Self.length))
            for (row, states) in zip(missing, computed) { store(keys[row], states) }
            let byKey = Dictionary(uniqueKeysWithValues: zip(missing.map { keys[$0] }, computed))
            for row in keys.indices where found[row] == nil { found[row] = byKey[keys[row]] }
        }
        let states = Tensor.zeros([ids.size(0), ids.size(1), tower.width], dtype: found[0]!.dtype, device: device)
        for (row, cached) in found.enumerated() {
            states.select(dim: 0, index: row).narrow(dim: 0, start: 0, length: cached!.size(0)).copy_(cached!)
        }
        return tower.pooled(states: states, afterLayer: layers, ids: ids, attentionMask: attentionMask)
    }

    /// "1234 captions, 45.6 MB, 92% of lookups hit".
    public var summary: String {
        if capacityBytes == 0 { return "nothing (model.frozen_layer_cache_mb is 0: the locked prefix runs every step)" }
        let looked = hits + misses
        let rate = looked == 0 ? 0 : Double(hits) / Double(looked) * 100
        var text = String(format: "%d captions, %.1f MB, %.0f%% of lookups hit", rows.count, Double(storedBytes) / 1e6, rate)
        if overflowed > 0 { text += ", \(overflowed) not kept (the cache is full: raise model.frozen_layer_cache_mb)" }
        return text
    }

    /// The prefix states of `rows` (a sub-batch padded to its own longest caption), each cut to
    /// its real tokens.
    private func prefix(rows: [Int], ids: Tensor, attentionMask: Tensor?, lengths: [Int]) -> [Tensor] {
        let longest = rows.map { lengths[$0] }.max()!
        // A matmul over very few rows takes another MKL kernel, which rounds differently: the
        // sub-batch is topped up with repeats to at least `minimumTokenRows` token rows.
        let repeats = rows.count * longest >= Self.minimumTokenRows ? rows : (0..<(Self.minimumTokenRows + longest - 1) / longest).map { rows[$0 % rows.count] }
        let index = Tensor(repeats.map(Int64.init), shape: [repeats.count]).on(ids.device)
        let subIds = ids.indexSelect(dim: 0, index: index).narrow(dim: 1, start: 0, length: longest)
        let subMask = attentionMask?.indexSelect(dim: 0, index: index).narrow(dim: 1, start: 0, length: longest)
        let states = withNoGrad { tower.states(ids: subIds, attentionMask: subMask, throughLayer: layers, rowLengths: repeats.map { lengths[$0] }) }
        return rows.enumerated().map { position, row in
            states.select(dim: 0, index: position).narrow(dim: 0, start: 0, length: lengths[row])
        }
    }

    /// Token rows below which a sub-batch is topped up (MKL's sgemm rounds a row the same for
    /// any M from about 12 rows on, measured on AVX2 with 1 and 2 threads).
    static let minimumTokenRows = 256

    private func store(_ key: [Int64], _ states: Tensor) {
        let (tokens, width) = (states.size(0), states.size(1))
        let slabTokens = max(tokens, min(Self.slabBytes, capacityBytes - storedBytes) / max(1, width * states.dtype.byteSize))
        let needsSlab = slabs.last.map { $0.dtype != states.dtype || slabUsed + tokens > $0.size(0) } ?? true
        let bytes = needsSlab ? slabTokens * width * states.dtype.byteSize : 0
        guard storedBytes + bytes <= capacityBytes else { overflowed += 1; return }
        if needsSlab {
            slabs.append(Tensor.empty([slabTokens, width], dtype: states.dtype, device: states.device))
            slabUsed = 0
            storedBytes += bytes
        }
        let slot = slabs[slabs.count - 1].narrow(dim: 0, start: slabUsed, length: tokens)
        slot.copy_(states)
        slabUsed += tokens
        rows[key] = slot
    }

    /// Size of one block of cached states.
    static let slabBytes = 16 << 20

    /// Each row's key: its real token ids, then 1 if the batch had a mask (0 if not); nil when a
    /// mask is not a run of ones followed by zeros.
    static func rowKeys(ids: Tensor, attentionMask: Tensor?) -> [[Int64]]? {
        let (batch, tokens) = (ids.size(0), ids.size(1))
        let hostIds = ids.toArray(Int64.self)
        let hostMask = attentionMask?.toArray(Int64.self)
        var keys: [[Int64]] = []
        keys.reserveCapacity(batch)
        for row in 0..<batch {
            var length = tokens
            if let hostMask {
                let mask = hostMask[row * tokens..<(row + 1) * tokens]
                length = mask.prefix { $0 != 0 }.count
                guard mask.dropFirst(length).allSatisfy({ $0 == 0 }) else { return nil }
            }
            keys.append(Array(hostIds[row * tokens..<row * tokens + length]) + [hostMask == nil ? 0 : 1])
        }
        return keys
    }

    static func length(_ key: [Int64]) -> Int { key.count - 1 }
}
