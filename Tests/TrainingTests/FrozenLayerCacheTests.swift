import Foundation
import Testing
import Datasets
import Models
import NN
import TestSupport
import Torch
@testable import Training

/// Frozen-layer caching gives the same numbers as computing the locked prefix every time: the
/// pooled outputs and every gradient bit for bit, across batches that repeat captions, pad to
/// other lengths and mix them differently, in training mode with dropout in the trained layers.
@Suite("Frozen-layer cache", .serialized)
struct FrozenLayerCacheTests {
    /// Batches of token ids [batch, longest] with masks; captions drawn from a small pool, so
    /// they repeat within and across batches.
    static func batches(vocabulary: Int, seed: UInt64, padTo fixed: Int? = nil) -> [(ids: Tensor, mask: Tensor)] {
        var random = SeededRandom(seed: seed)
        let pool: [[Int64]] = (0..<12).map { _ in (0..<Int.random(in: 3...11, using: &random)).map { _ in Int64.random(in: 3..<Int64(vocabulary), using: &random) } }
        return [9, 6, 12, 5, 9].map { size in
            let captions = (0..<size).map { _ in pool.randomElement(using: &random)! }
            let longest = fixed ?? captions.map(\.count).max()!
            let ids = captions.flatMap { $0 + Array(repeating: 0, count: longest - $0.count) }
            let mask = captions.flatMap { Array(repeating: Int64(1), count: $0.count) + Array(repeating: 0, count: longest - $0.count) }
            return (Tensor(ids, shape: [size, longest]), Tensor(mask, shape: [size, longest]))
        }
    }

    /// A small BERT with the given sizes, its last layer trainable and the rest locked.
    static func lockedBert(hidden: Int, layers: Int, vocabulary: Int, heads: Int = 2, positions: Int = 16, pooling: TextPooling = .mean) -> BertModel {
        var config = BertConfig()
        config.vocabSize = vocabulary; config.hiddenSize = hidden; config.numHiddenLayers = layers; config.numAttentionHeads = heads
        config.intermediateSize = 2 * hidden; config.maxPositionEmbeddings = positions
        // No dropout in the trained layer: suites run in parallel and share the default RNG.
        config.hiddenDropoutProb = 0; config.attentionProbsDropoutProb = 0
        let bert = BertModel(config, pooling: pooling, withPooler: false)
        ModelBuilder.lock(bert, unlockedLayers: 1)
        return bert
    }

    /// The pooled output and the gradients of every trained parameter, for one batch.
    static func step(_ tower: any TextTower, _ pooled: () -> Tensor) -> [Tensor] {
        tower.namedParameters().forEach { $0.tensor.grad = nil }
        Torch.manualSeed(7)   // the same dropout masks in the trained layers
        let out = pooled()
        (out * Tensor.linspace(-1, 1, count: out.count).view(out.shape)).sum().backward()
        return [out.detach()] + tower.trainableParameters().map { $0.tensor.grad! }
    }

    static func expectCachedEqualsUncached(_ tower: any TextTower, lockedLayers: Int, batches: [(ids: Tensor, mask: Tensor?)]) throws {
        let cache = TextPrefixCache(tower: tower, layers: lockedLayers, capacityBytes: 1 << 30)
        let uncached = TextPrefixCache(tower: tower, layers: lockedLayers, capacityBytes: 0)
        tower.train()
        for _ in 0..<2 {
            for (ids, mask) in batches {
                let plain = step(tower) { uncached.pooled(ids: ids, attentionMask: mask) }
                let cached = step(tower) { cache.pooled(ids: ids, attentionMask: mask) }
                #expect(plain.count == cached.count && plain.count > 1)
                for (a, b) in zip(plain, cached) { #expect(a.equal(b), "cached differs by \(maxDifference(a, b)) (shape \(a.shape))") }
                // The batched forward agrees to rounding (its attention rounds rows by batch).
                let batched = step(tower) { tower.pooled(ids: ids, attentionMask: mask) }
                for (a, b) in zip(plain, batched) { #expect(maxDifference(a, b) < 1e-5 * max(1, b.abs().max().item(Double.self))) }
            }
        }
        #expect(uncached.storedInputs == 0 && uncached.hits == 0)
        #expect(cache.hits > cache.misses && cache.storedInputs == cache.misses, "\(cache.summary)")
    }

    @Test func bertWithALockedPrefixMatchesBitForBit() throws {
        Torch.manualSeed(1)
        let bert = Self.lockedBert(hidden: 32, layers: 3, vocabulary: 50, heads: 4)
        #expect(FrozenLayerCaching.lockedPrefixLayers(bert) == 2)
        bert.train()
        #expect(!bert.encoder.layer[1].isTraining && !bert.embeddings.dropout.isTraining, "locked layers run without dropout")
        #expect(bert.encoder.layer[2].output.dropout.isTraining, "the trained layer keeps its training mode")
        #expect(bert.encoder.layer[2].isTraining && bert.isTraining)
        try Self.expectCachedEqualsUncached(bert, lockedLayers: 2, batches: Self.batches(vocabulary: 50, seed: 11).map { ($0.ids, $0.mask) })
    }

    @Test func clipTextWithAndWithoutMaskMatchesBitForBit() throws {
        Torch.manualSeed(2)
        var config = CLIPTextConfig()
        config.vocabSize = 60; config.hiddenSize = 32; config.numHiddenLayers = 3; config.numAttentionHeads = 2
        config.intermediateSize = 64; config.maxPositionEmbeddings = 16
        let text = CLIPTextTransformer(config)
        ModelBuilder.lock(text, unlockedLayers: 2)
        #expect(FrozenLayerCaching.lockedPrefixLayers(text) == 1)
        let batches = Self.batches(vocabulary: 60, seed: 12)
        try Self.expectCachedEqualsUncached(text, lockedLayers: 1, batches: batches.map { ($0.ids, $0.mask) })
        // open_clip's way: padded to the context length, no mask (padding is part of the key).
        try Self.expectCachedEqualsUncached(text, lockedLayers: 1, batches: Self.batches(vocabulary: 60, seed: 13, padTo: 16).map { ($0.ids, nil) })
    }

    @Test func aFullCacheStaysExactAndSaysSo() throws {
        Torch.manualSeed(3)
        let bert = Self.lockedBert(hidden: 16, layers: 2, vocabulary: 50, pooling: .cls)
        let cache = TextPrefixCache(tower: bert, layers: 1, capacityBytes: 3 * 11 * 16 * 4)   // room for about three captions
        bert.eval()
        let uncached = TextPrefixCache(tower: bert, layers: 1, capacityBytes: 0)
        for (ids, mask) in Self.batches(vocabulary: 50, seed: 14) {
            #expect(cache.pooled(ids: ids, attentionMask: mask).equal(uncached.pooled(ids: ids, attentionMask: mask)))
        }
        #expect(cache.storedBytes <= cache.capacityBytes && cache.storedInputs > 0 && cache.overflowed > 0)
        #expect(cache.summary.contains("not kept (the cache is full: raise model.frozen_layer_cache_mb)"), "\(cache.summary)")
    }

    @Test func aMaskWithHolesIsComputedPlainly() throws {
        Torch.manualSeed(4)
        let bert = Self.lockedBert(hidden: 16, layers: 2, vocabulary: 30, positions: 8)
        bert.eval()
        let cache = TextPrefixCache(tower: bert, layers: 1, capacityBytes: 1 << 20)
        let ids = Tensor([Int64](arrayLiteral: 2, 5, 7, 9, 2, 6, 0, 0), shape: [2, 4])
        let mask = Tensor([Int64](arrayLiteral: 1, 0, 1, 1, 1, 1, 0, 0), shape: [2, 4])
        #expect(cache.pooled(ids: ids, attentionMask: mask).equal(bert.pooled(ids: ids, attentionMask: mask)))
        #expect(cache.storedInputs == 0)
    }

    /// Two short runs of the tiny recipe with `extra` from the same start, the second with the
    /// cache off (`frozen_layer_cache_mb` 0): their metrics and weights must be identical.
    static func trainCachedAndUncached(_ runs: String, extra: [String]) throws -> (cached: TrainingSetup, plain: TrainingSetup) {
        let cachedSetup = try RunBuilder.contrastive(try tinyRecipe(runs, name: "cached", steps: 8, extra: extra), resolved: nil)
        let plainSetup = try RunBuilder.contrastive(try tinyRecipe(runs, name: "plain", steps: 8, extra: extra + ["model.frozen_layer_cache_mb=0"]), resolved: nil)
        // The same start (suites run in parallel and share the default RNG that initialises models).
        try plainSetup.model.load(Dictionary(uniqueKeysWithValues: cachedSetup.model.stateDict().map { ($0.name, $0.tensor.clone()) }))
        try Trainer(cachedSetup, resume: false).run()
        try Trainer(plainSetup, resume: false).run()

        let timing: Set<String> = ["samples_per_second", "data_time", "data_wait_fraction", "peak_host_memory_gib"]
        let cached = try MetricsLog.read("\(runs)/cached/metrics.jsonl"), plain = try MetricsLog.read("\(runs)/plain/metrics.jsonl")
        #expect(cached.count == plain.count && !cached.isEmpty)
        for (a, b) in zip(cached, plain) {
            #expect(a.values.filter { !timing.contains($0.key) } == b.values.filter { !timing.contains($0.key) }, "step \(a.step)")
        }
        let (a, b) = (try weights("\(runs)/cached/last"), try weights("\(runs)/plain/last"))
        for (name, tensor) in a { #expect(tensor.equal(b[name]!), "\(name)") }
        return (cachedSetup, plainSetup)
    }

    /// A short run with a locked text prefix: the cached run's metrics and weights equal the
    /// uncached run's exactly; augmented captions turn the cache off and the log says why.
    @Test func aCachedRunEqualsAnUncachedOne() throws {
        let runs = temporaryFolder()
        let locked = ["model.text.num_hidden_layers=3", "model.lock_text.unlocked_layers=1"]
        let (cachedSetup, plainSetup) = try Self.trainCachedAndUncached(runs, extra: locked)
        #expect(cachedSetup.notes.contains { $0.hasPrefix("frozen-layer cache: the text tower's embeddings and layers 0–1 are locked") }, "\(cachedSetup.notes)")
        #expect(plainSetup.notes.contains { $0.hasPrefix("frozen-layer cache: off (model.frozen_layer_cache_mb is 0)") }, "\(plainSetup.notes)")
        #expect((plainSetup.model as? DualEncoder)?.textPrefixCache?.capacityBytes == 0)
        let cache = try #require((cachedSetup.model as? DualEncoder)?.textPrefixCache)
        #expect(cache.hits > 0, "\(cache.summary)")

        let augmented = try RunBuilder.contrastive(try tinyRecipe(runs, name: "eda", steps: 2, extra: locked + ["data.text_augmentation.random_swap=0.2"]), resolved: nil)
        #expect((augmented.model as? DualEncoder)?.textPrefixCache == nil)
        #expect(augmented.notes.contains { $0.contains("off — captions are augmented") }, "\(augmented.notes)")
    }
}
