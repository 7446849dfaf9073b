import Foundation
import Testing
import Datasets
import NN
import TestSupport
import Torch
@testable import Models
@testable import Training

/// Frozen-layer caching of a locked image tower gives the same numbers as computing the locked
/// part every time: pooled outputs and every gradient bit for bit, across batches that repeat
/// images in other sizes and orders, in training mode, with and without autocast.
@Suite("Image prefix cache", .serialized)
struct ImagePrefixCacheTests {
    static let side = 16

    /// A ViT 16/8 (5 tokens: its matmuls take MKL's few-rows kernel unless topped up) of width 32 and 3 layers, locked to its last `unlockedLayers`
    /// (no dropout anywhere: suites run in parallel and share the default RNG).
    static func lockedViT(unlockedLayers: Int) -> CLIPVisionTransformer {
        var config = CLIPVisionConfig()
        config.imageSize = side; config.patchSize = 8; config.hiddenSize = 32; config.numHiddenLayers = 3
        config.numAttentionHeads = 2; config.intermediateSize = 64
        let vit = CLIPVisionTransformer(config)
        ModelBuilder.lock(vit, unlockedLayers: unlockedLayers)
        return vit
    }

    /// Batches of images [n, 3, 16, 16] drawn from a pool of 10, so they repeat within and across
    /// batches; one batch of a single image (a sub-batch that needs topping up).
    static func batches(seed: UInt64) -> [Tensor] {
        let pool = Tensor.randn([10, 3, side, side], generator: Generator(seed: seed))
        var random = SeededRandom(seed: seed)
        return [9, 6, 1, 12, 5, 9].map { size in
            let rows = (0..<size).map { _ in Int64.random(in: 0..<10, using: &random) }
            return pool.indexSelect(dim: 0, index: Tensor(rows, shape: [size]))
        }
    }

    /// The projected output of one batch and the gradients of every trained parameter (the
    /// projection's, as the dual encoder's, and the tower's own).
    static func step(_ tower: any ImageTower, _ projection: Linear, _ pooled: () -> Tensor) -> [Tensor] {
        let trained = tower.trainableParameters().map(\.tensor) + [projection.weight]
        trained.forEach { $0.grad = nil }
        let out = projection(pooled())
        (out * Tensor.linspace(-1, 1, count: out.count).view(out.shape)).sum().backward()
        return [out.detach()] + trained.map { $0.grad! }
    }

    static func expectCachedEqualsUncached(_ tower: CLIPVisionTransformer, layers: Int, whole: Bool, batches: [Tensor]) {
        let cache = ImagePrefixCache(tower: tower, layers: layers, wholeTower: whole, capacityBytes: 1 << 30)
        let uncached = ImagePrefixCache(tower: tower, layers: layers, wholeTower: whole, capacityBytes: 0)
        let projection = Linear(tower.width, 8, bias: false, generator: Generator(seed: 9))
        tower.train()
        for _ in 0..<2 {
            for pixels in batches {
                let plain = step(tower, projection) { uncached.pooled(pixels) }
                let cached = step(tower, projection) { cache.pooled(pixels) }
                #expect(plain.count == cached.count && plain.count == (whole ? 2 : 2 + tower.trainableParameters().count))
                for (a, b) in zip(plain, cached) { #expect(a.equal(b), "cached differs by \(maxDifference(a, b)) (shape \(a.shape))") }
                // The ordinary batched forward agrees to rounding.
                let batched = step(tower, projection) { tower.pooled(pixels) }
                for (a, b) in zip(plain, batched) { #expect(maxDifference(a, b) < 1e-5 * max(1, b.abs().max().item(Double.self))) }
            }
        }
        let distinct = Set(batches.flatMap { ContentHash.rows(of: $0) }).count
        #expect(uncached.storedInputs == 0 && uncached.hits == 0)
        #expect(cache.storedInputs == distinct && cache.storedInputs == cache.misses && cache.hits > cache.misses, "\(cache.summary)")
        let perImage = whole ? tower.width : tower.tokenCount * tower.width
        #expect(cache.storedBytes >= distinct * perImage * 4 && cache.summary.hasPrefix("\(distinct) images"), "\(cache.summary)")
    }

    @Test func lockedPrefixMatchesBitForBit() {
        let vit = Self.lockedViT(unlockedLayers: 1)
        #expect(FrozenLayerCaching.lockedPrefix(vit) == (2, false))
        vit.train()
        #expect(!vit.encoder.layers[1].isTraining && !vit.preLayrnorm.isTraining && vit.encoder.layers[2].isTraining)
        Self.expectCachedEqualsUncached(vit, layers: 2, whole: false, batches: Self.batches(seed: 21))
    }

    @Test func wholeLockedTowerKeepsItsPooledOutput() {
        let vit = Self.lockedViT(unlockedLayers: 0)
        #expect(FrozenLayerCaching.lockedPrefix(vit) == (3, true))
        Self.expectCachedEqualsUncached(vit, layers: 3, whole: true, batches: Self.batches(seed: 22))
    }

    /// Under bf16 autocast (training) the prefix computes other values than without (evaluation):
    /// each is kept apart and equals the uncached one.
    @Test func autocastValuesAreKeptApart() {
        let vit = Self.lockedViT(unlockedLayers: 1)
        vit.eval()
        let cache = ImagePrefixCache(tower: vit, layers: 2, wholeTower: false, capacityBytes: 1 << 30)
        let uncached = ImagePrefixCache(tower: vit, layers: 2, wholeTower: false, capacityBytes: 0)
        let batches = Self.batches(seed: 23)
        for pixels in batches {
            let (low, lowReference) = withNoGrad { withAutocast(.bfloat16) { (cache.pooled(pixels), uncached.pooled(pixels)) } }
            let (full, fullReference) = withNoGrad { (cache.pooled(pixels), uncached.pooled(pixels)) }
            #expect(low.equal(lowReference) && full.equal(fullReference))
            #expect(!low.to(.float32).equal(full), "autocast changes nothing here: the test would not see values mixed up")
        }
        #expect(cache.storedInputs == 2 * Set(batches.flatMap { ContentHash.rows(of: $0) }).count, "each image once per precision: \(cache.summary)")
    }

    @Test func aFullCacheStaysExactAndSaysSo() {
        let vit = Self.lockedViT(unlockedLayers: 1)
        vit.eval()
        let perImage = vit.tokenCount * vit.width * 4
        let cache = ImagePrefixCache(tower: vit, layers: 2, wholeTower: false, capacityBytes: 3 * perImage)   // room for three images
        let uncached = ImagePrefixCache(tower: vit, layers: 2, wholeTower: false, capacityBytes: 0)
        for pixels in Self.batches(seed: 24) {
            #expect(withNoGrad { cache.pooled(pixels).equal(uncached.pooled(pixels)) })
        }
        #expect(cache.storedBytes <= cache.capacityBytes && cache.storedInputs == 3 && cache.overflowed > 0)
        #expect(cache.summary.contains("not kept (the cache is full: raise model.frozen_layer_cache_mb)"), "\(cache.summary)")
    }

    @Test func contentHashIsXXH64UnderTwoSeeds() {
        for (text, expected) in [("", 0xEF46_DB37_51D8_E999 as UInt64), ("abc", 0x44BC_2CF5_AD77_0999),
                                 ("Nobody inspects the spammish repetition", 0xFBCE_A83C_8A37_8BF1)] {
            #expect(Array(text.utf8).withUnsafeBytes { ContentHash.xxh64($0, seed: 0) } == expected, "XXH64(\"\(text)\")")
        }
        let pixels = Tensor.randn([3, 3, 4, 4], generator: Generator(seed: 5))
        pixels.select(dim: 0, index: 2).copy_(pixels.select(dim: 0, index: 0))
        let hashes = ContentHash.rows(of: pixels)
        #expect(hashes[0] == hashes[2] && hashes[0] != hashes[1] && hashes[0].low != hashes[0].high)
        pixels.select(dim: 0, index: 2).view([-1]).narrow(dim: 0, start: 47, length: 1).mul_(-1)   // one sign bit
        #expect(ContentHash.rows(of: pixels)[2] != hashes[0])
    }

    /// A short run with both towers locked on unaugmented images: the cached run's metrics and
    /// weights equal the uncached run's exactly; augmented images turn the image cache off and
    /// the log says why.
    @Test func aCachedRunEqualsAnUncachedOne() throws {
        let runs = temporaryFolder()
        let locked = ["model.lock_vision.unlocked_layers=1", "data.augmentation.random_resized_crop=null",
                      "model.text.num_hidden_layers=3", "model.lock_text.unlocked_layers=1"]
        let (cachedSetup, plainSetup) = try FrozenLayerCacheTests.trainCachedAndUncached(runs, extra: locked)
        #expect(cachedSetup.notes.contains { $0.hasPrefix("frozen-layer cache: the image tower's embeddings, pre_layrnorm and layer 0 are locked") },
                "\(cachedSetup.notes)")
        #expect(plainSetup.notes.filter { $0.hasPrefix("frozen-layer cache: off (model.frozen_layer_cache_mb is 0)") }.count == 2, "\(plainSetup.notes)")
        #expect((plainSetup.model as? DualEncoder)?.imagePrefixCache?.capacityBytes == 0)
        let cache = try #require((cachedSetup.model as? DualEncoder)?.imagePrefixCache)
        #expect(cache.hits > 0 && cache.storedInputs > 0, "\(cache.summary)")

        let whole = try RunBuilder.contrastive(try tinyRecipe(runs, name: "lit", steps: 2, extra: ["model.lock_vision.unlocked_layers=0", "data.augmentation.random_resized_crop=null"]),
                                               resolved: nil)
        #expect((whole.model as? DualEncoder)?.imagePrefixCache?.keepsPooled == true, "\(whole.notes)")
        let augmented = try RunBuilder.contrastive(try tinyRecipe(runs, name: "flip", steps: 2, extra: ["model.lock_vision.unlocked_layers=0", "data.augmentation.horizontal_flip=0.5"]),
                                                   resolved: nil)
        #expect((augmented.model as? DualEncoder)?.imagePrefixCache == nil)
        #expect(augmented.notes.contains { $0.contains("off — training images are augmented (data.augmentation: random_resized_crop, horizontal_flip)") }, "\(augmented.notes)")
    }
}
