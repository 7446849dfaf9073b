import Datasets
import Models
import NN

/// Whether a run caches its towers' locked prefixes (see `FrozenPrefixCache`), and the lines its
/// log prints about it. Each tower's cache has its own budget of `model.frozen_layer_cache_mb`.
enum FrozenLayerCaching {
    /// Sets `model.textPrefixCache` / `model.imagePrefixCache` when a tower's embeddings and first
    /// layers are frozen and pinned to inference and its inputs are not augmented; one note per
    /// locked tower says what was decided and why.
    static func configure(_ recipe: Recipe, _ model: DualEncoder) -> [String] {
        var notes: [String] = []
        let text = model.textModel
        let textLayers = lockedPrefixLayers(text)
        if textLayers > 0 {
            let augmented = recipe.data.textAugmentation.isIdentity ? nil : "captions are augmented (data.text_augmentation), so each one is new"
            let (note, capacity) = decide(recipe, locked: "the text tower's embeddings and \(layerNames(textLayers))", inputs: "caption", augmented: augmented)
            model.textPrefixCache = capacity.map { TextPrefixCache(tower: text, layers: textLayers, capacityBytes: $0) }
            notes.append(note)
        }
        let vision = model.visionModel
        let (imageLayers, whole) = lockedPrefix(vision)
        if imageLayers > 0 {
            let random = recipe.data.augmentation.randomTransforms
            let augmented = random.isEmpty ? nil
                : "training images are augmented (data.augmentation: \(random.joined(separator: ", "))), so each one is new"
            let locked = whole ? "the image tower's embeddings, pre_layrnorm, \(layerNames(imageLayers)) and post_layernorm (all of it)"
                : "the image tower's embeddings, pre_layrnorm and \(layerNames(imageLayers))"
            let (note, capacity) = decide(recipe, locked: locked, inputs: "image", augmented: augmented)
            model.imagePrefixCache = capacity.map { ImagePrefixCache(tower: vision, layers: imageLayers, wholeTower: whole, capacityBytes: $0) }
            notes.append(note)
        }
        return notes
    }

    /// A locked prefix's note, and its cache's capacity in bytes (nil: no cache).
    private static func decide(_ recipe: Recipe, locked: String, inputs: String, augmented: String?) -> (String, Int?) {
        if let augmented { return ("frozen-layer cache: off — \(augmented); \(locked) run every step", nil) }
        let megabytes = recipe.model.frozenLayerCacheMB
        // 0: the same prefix computation, kept nowhere: what the cache is compared against.
        if megabytes == 0 { return ("frozen-layer cache: off (model.frozen_layer_cache_mb is 0); \(locked) are locked and run every step", 0) }
        return ("frozen-layer cache: \(locked) are locked; their output is computed once per distinct \(inputs) and reused (at most \(megabytes) MB)", megabytes << 20)
    }

    private static func layerNames(_ count: Int) -> String { count == 1 ? "layer 0" : "layers 0–\(count - 1)" }

    /// How many leading layers of a text tower, with its embeddings, are frozen and pinned to
    /// inference (their output depends on the input alone).
    static func lockedPrefixLayers(_ tower: any TextTower) -> Int {
        lockedPrefix(tower, layerCount: tower.layerCount, stem: ["embeddings"]).layers
    }

    /// The same for an image tower (its stem: embeddings and `pre_layrnorm`), and whether all of
    /// it is (its pooled output then depends on the image alone).
    static func lockedPrefix(_ tower: any ImageTower) -> (layers: Int, whole: Bool) {
        lockedPrefix(tower, layerCount: tower.layerCount, stem: ["embeddings", "pre_layrnorm"])
    }

    private static func lockedPrefix(_ tower: Module, layerCount: Int, stem: [String]) -> (layers: Int, whole: Bool) {
        var modules: [String: Module] = [:]
        for (path, module) in tower.namedModules() { modules[path] = module }
        // Pinned itself or through an ancestor ("" is the tower), and without trained weights.
        func fixed(_ path: String) -> Bool {
            guard let module = modules[path] else { return false }
            let parts = path.split(separator: ".")
            let ancestors = (0...parts.count).map { parts.prefix($0).joined(separator: ".") }
            return ancestors.contains { modules[$0]?.pinnedToInference == true } && module.parameters().allSatisfy { !$0.requiresGrad }
        }
        guard stem.allSatisfy(fixed) else { return (0, false) }
        var count = 0
        while count < layerCount, fixed("encoder.layers.\(count)") || fixed("encoder.layer.\(count)") { count += 1 }
        return (count, fixed(""))
    }
}

extension ImageAugmentation {
    /// The keys under `data.augmentation` of the transforms that draw at random; with none, an
    /// image's training pixels are the same every epoch.
    var randomTransforms: [String] {
        var keys: [String] = []
        if randomResizedCrop != nil { keys.append("random_resized_crop") }
        if horizontalFlip > 0 { keys.append("horizontal_flip") }
        if let rotation, rotation.probability > 0 { keys.append("rotation") }
        if let colorJitter, colorJitter.probability > 0 { keys.append("color_jitter") }
        return keys
    }
}
