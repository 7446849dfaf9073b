import Foundation
import NN
import Torch

/// Frozen-layer caching for an image tower (see `FrozenPrefixCache`), LiT's case: a locked
/// vision tower on unaugmented images. Each image is keyed by a 128-bit hash of its pixels'
/// bytes (`ContentHash`); kept is the token states after the embeddings, `pre_layrnorm` and the
/// first `layers` layers ([tokens, width] per image) or, when the whole tower is locked, its
/// pooled output (`width` floats per image).
///
/// Exactness: all images have the same tokens and no mask, and measured on CPU (AVX2, 1 and 2
/// threads, libtorch 2.15) an image's patch-embedding convolution (oneDNN), attention and
/// matmuls give the same bits in batches of 1 to 128 images, except that a batch of fewer than
/// ~12 token rows takes another MKL sgemm kernel (ViT 16/8: 5 tokens, 3.6e-7 apart at batch 1
/// with 2 threads); sub-batches are topped up to 256 token rows as on the text side.
/// `ImagePrefixCacheTests` check outputs and gradients bit for bit against capacity 0.
public final class ImagePrefixCache: FrozenPrefixCache<ContentHash> {
    public let tower: any ImageTower
    /// Layers in the locked prefix (the embeddings and `pre_layrnorm` come with them).
    public let layers: Int
    /// The whole tower is locked (its post-LayerNorm too): kept is the pooled output.
    public let keepsPooled: Bool

    public init(tower: any ImageTower, layers: Int, wholeTower: Bool, capacityBytes: Int) {
        precondition(layers >= 0 && layers <= tower.layerCount, "the locked prefix has \(layers) layers; the tower has \(tower.layerCount)")
        precondition(!wholeTower || layers == tower.layerCount, "a whole locked tower has all \(tower.layerCount) layers locked")
        self.tower = tower
        self.layers = layers
        keepsPooled = wholeTower
        super.init(capacityBytes: capacityBytes, inputs: "images")
    }

    /// The tower's pooled output, as `tower.pooled(_:)`.
    public func pooled(_ pixels: Tensor) -> Tensor {
        guard pixels.size(0) > 0 else { return tower.pooled(pixels) }
        let keys = ContentHash.rows(of: pixels)   // before moving: pixels usually arrive on the host
        let pixels = pixels.on(tower.device)
        let found = Tensor.stack(values(for: keys, on: tower.device) { prefix(rows: $0, pixels: pixels) })
        return keepsPooled ? found.squeeze(1) : tower.pooled(states: found, afterLayer: layers)
    }

    /// The locked part's output for `rows`: states [tokens, width] or pooled [1, width] each.
    private func prefix(rows: [Int], pixels: Tensor) -> [Tensor] {
        let repeats = Self.toppedUp(rows, tokensPerRow: tower.tokenCount)
        let sub = pixels.indexSelect(dim: 0, index: Tensor(repeats.map(Int64.init), shape: [repeats.count]).on(pixels.device))
        let out = withNoGrad { keepsPooled ? tower.pooled(sub).unsqueeze(1) : tower.states(sub, throughLayer: layers) }
        return rows.indices.map { out.select(dim: 0, index: $0) }
    }
}
