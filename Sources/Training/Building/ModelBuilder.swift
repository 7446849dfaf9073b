import Datasets
import Foundation
import Models
import NN
import Tokenizers

/// The model a recipe's `model` section describes: a whole checkpoint, or a vision and a text
/// tower (each from a checkpoint or built from its config), with LiT-style locking applied.
public enum ModelBuilder {
    /// open_clip's BPE merges, the tokenizer of a CLIP text tower built from sizes.
    public static var defaultCLIPMerges: String { RecipePathResolution.assetsFolder + "/bpe_simple_vocab_16e6.txt.gz" }

    /// A dual encoder with its tokenizer, the folder its tokenizer files come from, its image
    /// preprocessing, and with `model.lora` the adapter its checkpoints are saved as.
    public static func dualEncoder(_ recipe: Recipe) throws -> (DualEncoder, TensorTokenizer, tokenizerFolder: String?, ImagePreprocessing,
                                                                adapter: LoRAAdapterConfig?) {
        let section = recipe.model
        if let path = section.checkpoint {
            let checkpoint = try Pretrained.load(path)   // an adapter folder comes merged into its base
            guard case .dualEncoder(let model) = checkpoint.model else {
                throw TrainingError(message: "model.checkpoint \(path) is a text-only model; give it as model.text.checkpoint with a vision tower")
            }
            if section.lora != nil, checkpoint.adapter != nil {
                throw TrainingError(message: "model.checkpoint \(path) is a LoRA adapter folder, and model.lora needs a plain base model for its own adapter: merge it first (swift run merge --checkpoint \(path) --out DIR) and set model.checkpoint to DIR, or remove model.lora to train the merged model whole")
            }
            let preprocessing = checkpoint.preprocessing ?? ImagePreprocessing(size: recipe.data.imageSize ?? 224)
            try checkImageSize(recipe, tower: model.visionModel, preprocessing.size)
            lock(model.visionModel, unlockedLayers: section.lockVision.unlockedLayers)
            lock(model.textModel, unlockedLayers: section.lockText.unlockedLayers)
            let adapter = try section.lora.map { try LoRATraining.apply($0, to: model, base: path, seed: recipe.seed) }
            model.setGradientCheckpointing(section.gradientCheckpointing)
            return (model, try checkpoint.tokenizer(), checkpoint.directory, preprocessing, adapter)
        }
        if section.lora != nil {
            throw TrainingError(message: "model.lora adapts a whole pretrained dual encoder: set model.checkpoint (towers from separate checkpoints get new projections, so there is no one base model for the adapter to name)")
        }
        let vision: any ImageTower
        if let path = section.vision.checkpoint {
            guard case .dualEncoder(let source) = try Pretrained.load(path).model else {
                throw TrainingError(message: "model.vision.checkpoint \(path) has no vision tower")
            }
            vision = source.visionModel
        } else {
            vision = CLIPVisionTransformer(section.vision.config)
        }
        let (text, tokenizer, tokenizerFolder) = try textTower(section.text)
        let model = DualEncoder(kind: .visionTextDualEncoder, vision: vision, text: text, projectionDim: section.projectionDim,
                                logitScaleInit: section.logitScaleInit)
        lock(model.visionModel, unlockedLayers: section.lockVision.unlockedLayers)
        lock(model.textModel, unlockedLayers: section.lockText.unlockedLayers)
        model.setGradientCheckpointing(section.gradientCheckpointing)
        let size = recipe.data.imageSize ?? (vision as? CLIPVisionTransformer)?.config.imageSize ?? 224
        try checkImageSize(recipe, tower: vision, size)
        return (model, tokenizer, tokenizerFolder, ImagePreprocessing(size: size), nil)
    }

    /// `data.image_size` must be the vision tower's (a different size fails inside its first
    /// forward pass: the position table has one row per patch).
    static func checkImageSize(_ recipe: Recipe, tower: any ImageTower, _ size: Int) throws {
        guard let towerSize = (tower as? CLIPVisionTransformer)?.config.imageSize else { return }
        if let asked = recipe.data.imageSize, asked != towerSize {
            throw TrainingError(message: "data.image_size is \(asked) but the vision tower takes \(towerSize) × \(towerSize) images; remove data.image_size or make them agree")
        }
        if size != towerSize {
            throw TrainingError(message: "the image preprocessing gives \(size) × \(size) images but the vision tower takes \(towerSize) × \(towerSize)")
        }
    }

    /// The text tower of `model.text`: from a checkpoint, or built from its sizes (CLIP or BERT),
    /// with its tokenizer and the folder its tokenizer files come from. `adapted`: the tower is
    /// the base of a LoRA student, so it must be the checkpoint's whole model, as it is saved.
    static func textTower(_ tower: Recipe.TextTower, adapted: Bool = false) throws -> (any TextTower, TensorTokenizer, tokenizerFolder: String?) {
        if let path = tower.checkpoint {
            let checkpoint = try Pretrained.load(path)
            if adapted {
                guard case .textEncoder(let bert, _) = checkpoint.model, checkpoint.adapter == nil else {
                    throw TrainingError(message: "model.lora adapts model.text.checkpoint \(path) as the student's base, so it must be a plain text-only (BERT / sentence-transformers) folder" + (checkpoint.adapter != nil ? "; it is a LoRA adapter folder: merge it first (swift run merge)" : "; it is a dual encoder"))
                }
                if bert.pooling != tower.pooling {
                    throw TrainingError(message: "model.text.pooling is \"\(tower.pooling.rawValue)\" but \(path) pools by \"\(bert.pooling.rawValue)\"; an adapter keeps its base's pooling, so set model.text.pooling to \"\(bert.pooling.rawValue)\"")
                }
            }
            let text: any TextTower
            switch checkpoint.model {
            case .textEncoder(let bert, _):
                bert.pooling = tower.pooling
                if bert.pooling == .pooler && bert.pooler == nil {
                    throw TrainingError(message: "model.text.pooling is 'pooler' but \(path) has no pooler weights; use \"mean\" or \"cls\"")
                }
                text = bert
            case .dualEncoder(let source): text = source.textModel
            }
            return (text, try checkpoint.tokenizer(), checkpoint.directory)
        }
        let sizes = tower.sizes
        switch tower.type {
        case .clip:
            let source = tower.tokenizer ?? defaultCLIPMerges
            let tokenizer = source.hasSuffix(".gz")
                ? try TensorTokenizer.openCLIP(mergesGz: source, contextLength: sizes.maxPositionEmbeddings)
                : try TensorTokenizer.fromDirectory(source, contextLength: sizes.maxPositionEmbeddings)
            return (CLIPTextTransformer(sizes), tokenizer, source)   // a .gz becomes vocab.json + merges.txt in checkpoints
        case .bert:
            guard let folder = tower.tokenizer else {
                throw TrainingError(message: "model.text.tokenizer: a BERT text tower needs a WordPiece tokenizer folder (with vocab.txt)")
            }
            let tokenizer = try TensorTokenizer.fromDirectory(folder, contextLength: sizes.maxPositionEmbeddings)
            guard let wordPiece = tokenizer.tokenizer as? WordPieceTokenizer else {
                throw TrainingError(message: "model.text.tokenizer: '\(folder)' is not a WordPiece (vocab.txt) tokenizer, which a BERT text tower needs")
            }
            var config = BertConfig()
            config.vocabSize = wordPiece.vocabularySize
            config.hiddenSize = sizes.hiddenSize
            config.numHiddenLayers = sizes.numHiddenLayers
            config.numAttentionHeads = sizes.numAttentionHeads
            config.intermediateSize = sizes.intermediateSize
            config.maxPositionEmbeddings = sizes.maxPositionEmbeddings
            config.hiddenAct = sizes.hiddenAct
            return (BertModel(config, pooling: tower.pooling, withPooler: tower.pooling == .pooler), tokenizer, folder)
        }
    }

    /// LiT-style locking: -1 leaves the tower trainable; k ≥ 0 freezes all but its last k
    /// transformer layers (and, when k > 0, the norms and pooler after them). What is frozen
    /// before the first trained layer (embeddings, locked layers) is pinned to inference — no
    /// dropout —, a fixed feature extractor as in LiT, which frozen-layer caching relies on.
    static func lock(_ tower: Module, unlockedLayers: Int) {
        guard unlockedLayers >= 0 else { return }
        tower.freeze()
        guard unlockedLayers > 0 else {
            tower.pinnedToInference = true
            return
        }
        let names = tower.namedParameters().map(\.name)
        let layers = (names.compactMap(layerIndex).max() ?? -1) + 1
        tower.unfreeze { name in
            if let index = layerIndex(name) { return index >= layers - unlockedLayers }
            return ["post_layernorm", "final_layer_norm", "pooler"].contains { name.hasPrefix($0) }
        }
        for (path, module) in tower.namedModules() {
            let locked = layerIndex(path + ".").map { $0 < layers - unlockedLayers } ?? ["embeddings", "pre_layrnorm"].contains(path)
            if locked { module.pinnedToInference = true }
        }
    }

    /// N in a parameter or module path under `encoder.layers.N.` (CLIP) or `encoder.layer.N.` (BERT).
    static func layerIndex(_ name: String) -> Int? {
        for marker in ["encoder.layers.", "encoder.layer."] {
            if let range = name.range(of: marker), let index = Int(name[range.upperBound...].prefix { $0.isNumber }) { return index }
        }
        return nil
    }
}

extension ModelBuilder {
    /// Notes on checkpoints stored in another precision than the model trains in: their weights
    /// are converted to float32 on load (training keeps fp32 master weights whatever the
    /// `precision`, which only sets the compute type), and the run says so.
    static func conversionNotes(_ recipe: Recipe) -> [String] {
        let model = recipe.model
        let folders = [("model.checkpoint", model.checkpoint), ("model.vision.checkpoint", model.vision.checkpoint),
                       ("model.text.checkpoint", model.text.checkpoint)]
        return folders.compactMap { key, folder in
            guard let folder else { return nil }
            let stored = ShardedSafeTensors.storedFloatTypes(folder).subtracting([.float32]).sorted { $0.description < $1.description }
            guard !stored.isEmpty else { return nil }
            return "note: \(key) \(folder) stores \(stored.map(\.description).joined(separator: " and ")) weights; they are converted to float32 for training (precision \(recipe.precision.rawValue) sets only the compute type), and checkpoints are saved in float32"
        }
    }
}
