import Models
import NN

/// Whether a run caches its text tower's locked prefix (see `FrozenPrefixCache`), and the line
/// its log prints about it.
enum FrozenLayerCaching {
    /// Sets `model.textPrefixCache` when the text tower's embeddings and first layers are frozen
    /// and pinned to inference and captions are not augmented; the note says what was decided
    /// and why (nil when nothing is locked).
    static func configure(_ recipe: Recipe, _ model: DualEncoder) -> String? {
        let tower = model.textModel
        let layers = lockedPrefixLayers(tower)
        guard layers > 0 else { return nil }
        let prefix = "the text tower's embeddings and \(layers == 1 ? "layer 0" : "layers 0–\(layers - 1)")"
        if !recipe.data.textAugmentation.isIdentity {
            return "frozen-layer cache: off — captions are augmented (data.text_augmentation), so each one is new; \(prefix) run every step"
        }
        if recipe.model.frozenLayerCacheMB == 0 {
            // The same row-at-a-time prefix, kept nowhere: what the cache is compared against.
            model.textPrefixCache = FrozenPrefixCache(tower: tower, layers: layers, capacityBytes: 0)
            return "frozen-layer cache: off (model.frozen_layer_cache_mb is 0); \(prefix) are locked and run every step"
        }
        model.textPrefixCache = FrozenPrefixCache(tower: tower, layers: layers, capacityBytes: recipe.model.frozenLayerCacheMB << 20)
        return "frozen-layer cache: \(prefix) are locked; their output is computed once per distinct caption and reused (at most \(recipe.model.frozenLayerCacheMB) MB)"
    }

    /// How many leading layers of `tower`, with its embeddings, are frozen and pinned to
    /// inference (their output depends on the input alone).
    static func lockedPrefixLayers(_ tower: any TextTower) -> Int {
        var modules: [String: Module] = [:]
        for (path, module) in tower.namedModules() { modules[path] = module }
        // Pinned itself or through an ancestor ("" is the tower), and without trained weights.
        func fixed(_ path: String) -> Bool {
            guard let module = modules[path] else { return false }
            let parts = path.split(separator: ".")
            let ancestors = (0...parts.count).map { parts.prefix($0).joined(separator: ".") }
            return ancestors.contains { modules[$0]?.pinnedToInference == true } && module.parameters().allSatisfy { !$0.requiresGrad }
        }
        guard fixed("embeddings") else { return 0 }
        var count = 0
        while count < tower.layerCount, fixed("encoder.layers.\(count)") || fixed("encoder.layer.\(count)") { count += 1 }
        return count
    }
}
