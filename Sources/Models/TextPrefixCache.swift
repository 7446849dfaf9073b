import Foundation
import NN
import Torch

/// Frozen-layer caching for a text tower (see `FrozenPrefixCache`): the token states after its
/// embeddings and first `layers` layers, kept per distinct caption (its real token ids).
///
/// Exactness: the prefix runs its attention one row at a time over the row's real tokens
/// (`AttentionMask.rowLengths`); matmuls, LayerNorms and embeddings are row-wise already, so a
/// row's states depend on that row alone. (Batched, libtorch's CPU attention rounds a row
/// differently with the batch's size and padded length.) Checked by `FrozenLayerCacheTests`, and
/// by the default recipe's metrics, identical with and without the cache.
/// Padding positions of an assembled batch hold zeros instead of the pad token's states: they
/// are masked as keys and pooled with weight 0, so no real output or gradient sees them.
public final class TextPrefixCache: FrozenPrefixCache<[Int64]> {
    public let tower: any TextTower
    /// Layers in the locked prefix (the embeddings come with them).
    public let layers: Int

    public init(tower: any TextTower, layers: Int, capacityBytes: Int) {
        precondition(layers >= 0 && layers <= tower.layerCount, "the locked prefix has \(layers) layers; the tower has \(tower.layerCount)")
        self.tower = tower
        self.layers = layers
        super.init(capacityBytes: capacityBytes, inputs: "captions")
    }

    /// The tower's pooled output, as `tower.pooled(ids:attentionMask:)`.
    public func pooled(ids: Tensor, attentionMask: Tensor?) -> Tensor {
        let device = tower.device
        let ids = ids.on(device), attentionMask = attentionMask?.on(device)
        guard let keys = Self.rowKeys(ids: ids, attentionMask: attentionMask) else {
            return tower.pooled(ids: ids, attentionMask: attentionMask)   // a mask with holes: not a prefix of real tokens
        }
        let found = values(for: keys, on: device) { rows in
            prefix(rows: rows, ids: ids, attentionMask: attentionMask, lengths: keys.map(Self.length))
        }
        let states = Tensor.zeros([ids.size(0), ids.size(1), tower.width], dtype: found[0].dtype, device: device)
        for (row, cached) in found.enumerated() {
            states.select(dim: 0, index: row).narrow(dim: 0, start: 0, length: cached.size(0)).copy_(cached)
        }
        return tower.pooled(states: states, afterLayer: layers, ids: ids, attentionMask: attentionMask)
    }

    /// The prefix states of `rows` (a sub-batch padded to its own longest caption), each cut to
    /// its real tokens.
    private func prefix(rows: [Int], ids: Tensor, attentionMask: Tensor?, lengths: [Int]) -> [Tensor] {
        let longest = rows.map { lengths[$0] }.max()!
        let repeats = Self.toppedUp(rows, tokensPerRow: longest)
        let index = Tensor(repeats.map(Int64.init), shape: [repeats.count]).on(ids.device)
        let subIds = ids.indexSelect(dim: 0, index: index).narrow(dim: 1, start: 0, length: longest)
        let subMask = attentionMask?.indexSelect(dim: 0, index: index).narrow(dim: 1, start: 0, length: longest)
        let states = withNoGrad { tower.states(ids: subIds, attentionMask: subMask, throughLayer: layers, rowLengths: repeats.map { lengths[$0] }) }
        return rows.enumerated().map { position, row in
            states.select(dim: 0, index: position).narrow(dim: 0, start: 0, length: lengths[row])
        }
    }

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
