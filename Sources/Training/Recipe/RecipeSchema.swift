import Datasets
import Foundation
import Models
import NN
import Optim
import Torch

// The recipe's keys and rules: one `code(_:)` per section. The same function runs in both
// directions: decoding reads the JSON into the section's fields, encoding writes them out for
// `resolvedJSON()`. Defaults live only in the fields' initial values (Recipe.swift and the
// domain types). Every check that needs no file is made here, so that one pass reports every
// problem of a recipe at once; `RecipePaths.swift` checks the files it names.

/// A struct that maps to one JSON object; `code` is both its decoder and its encoder.
protocol RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder)
}

extension Recipe: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("name", &name, RecipeRule(requirement: "must be one folder name (not empty, \".\" or \"..\", no '/', not starting with '.')") { Recipe.isFolderName($0) },
                    help: "Run name: the run folder is `checkpoint.directory/name`. Default: the recipe file's base name.")
        coder.field("seed", &seed, .atLeast(0), help: "Seed of initialisation, shuffling and every augmentation draw.")
        coder.section("model", &model, help: "What to train: a whole dual-encoder checkpoint, or a vision and a text tower.")
        coder.section("data", &data, help: "Training and validation data, batching and augmentation.")
        coder.section("loss", &loss, help: "The contrastive loss.")
        coder.section("optimizer", &optimizer, help: "Optimizer, weight decay, gradient clipping and accumulation.")
        coder.section("schedule", &schedule, help: "Learning rate as a function of the step (`type` picks the kind; each kind has its own keys).")
        coder.section("eval", &eval, help: "When and what to evaluate on `data.val`.")
        coder.section("early_stopping", &earlyStopping, start: EarlyStoppingSection(),
                      help: "Stop when a validation metric has not improved for `patience` evaluations; null (the default) trains to the end.")
        coder.section("checkpoint", &checkpoint, help: "Where checkpoints go and which are kept.")
        coder.field("precision", &precision, help: "Numeric precision of forward and backward: fp32; bf16 autocast (matmuls in bf16, losses in fp32); or fp16 autocast with dynamic loss scaling (torch.amp.GradScaler's: scale 2^16, ×2 after 2,000 good steps, ×0.5 and the step skipped when gradients overflow), CUDA only.")
        coder.field("device", &device, RecipeRule(requirement: "must be \"auto\", \"cpu\", \"cuda\" or \"cuda:N\" (N a device index)") { Device.isWellFormed($0) },
                    help: "Where the run computes: \"auto\" (the first CUDA device when there is one, else the CPU), \"cpu\", \"cuda\" or \"cuda:N\". `--device` sets it.")
        coder.field("tf32", &tf32, help: "TensorFloat-32 matmuls and convolutions on CUDA (Ampere and later): faster fp32 with about 10 bits of mantissa in products. Off by default, as in PyTorch.")
        coder.field("deterministic", &deterministic, help: "Deterministic algorithms only, so that CUDA runs repeat bit for bit (a little slower; an op without a deterministic version is an error). CPU runs are deterministic either way.")
        coder.field("host_allocator", &hostAllocator, help: "Where CPU tensors get their memory. caching: each large block (1 MiB or more) is mapped apart and reused by later tensors of its size class, and no more is kept than was ever live at once, so the peak RSS follows the live tensors (with gradient checkpointing it falls to about 0.4 of an unchecked run, against 0.75 with malloc); malloc: libtorch's default (glibc keeps freed heap, so the peak grows beyond what is live).")
        coder.field("world_size", &worldSize, .atLeast(1), help: "Processes training together (data parallel; torchrun or --nproc-per-node), written into each run's recipe.json: the global batch is batch_size × accumulation_steps × world_size. A recipe that sets it runs only with that many processes; null (the default) takes what the launch gives.")
        coder.field("epochs", &epochs, .atLeast(1), help: "Passes over the training data. Set this, `max_steps` or both (training stops at whichever comes first).")
        coder.field("max_steps", &maxSteps, .atLeast(1), help: "Optimizer steps to train for (see `epochs`).")
        coder.field("log_every_steps", &logEverySteps, .atLeast(1), help: "Steps between two lines of `metrics.jsonl` and the progress display.")
        coder.section("logging", &logging, help: "What a run writes besides `metrics.jsonl` and `curves.svg`.")
        coder.section("monitoring", &monitoring, help: "Watching a run live: a Prometheus endpoint (`swift run train --metrics-port 9400`).")
        coder.field("max_non_finite_steps", &maxNonFiniteSteps, .atLeast(0), help: "Steps with a NaN or infinite loss skipped in a row before the run stops; 0 stops at the first.")
        coder.field("resume", &resume, help: "\"latest\": continue from the run's `last/` (as `--resume`); null starts afresh.")
        coder.section("distill", &distill, start: DistillSection(teacher: ""),
                      help: "`distill` only: the teacher and the weight of each loss term (the student is `model`).")
        coder.section("wise_ft", &wiseFT, start: WiSEFTSection(),
                      help: "`train` only: WiSE-FT at the end of training. The run's starting model (α = 0) and its `best/` (α = 1) are interpolated, θ = (1 − α)·θ_zero-shot + α·θ_best for every float tensor (the logit scale too); each α is evaluated on `data.val` and `extra_val` (retrieval, and zero-shot with `eval.zeroshot`), and `wise_ft.json` (every metric of every α and set) and `wise_ft.svg` (a panel per metric, α across) are written in the run folder. The best α has the best mean over the sets of `best/`'s metric (`checkpoint.best_metric`); ties go to the smaller α. `swift run wise-ft` does the same for any two checkpoints.")
        guard coder.isDecoding else { return }
        checkAcrossSections(&coder)
    }

    /// Checks that read more than one section. A field that already has a problem kept its
    /// default, so checks that read it are skipped to avoid a second, misleading message.
    private func checkAcrossSections(_ coder: inout RecipeCoder) {
        if epochs == nil, maxSteps == nil, !coder.hasProblem(at: "epochs"), !coder.hasProblem(at: "max_steps") {
            coder.report("epochs", "neither epochs nor max_steps is set; set at least one")
        }
        // Sizes that multiply: refuse what overflows (or is absurd) before anything is built.
        let (perStep, overflow) = data.batchSize.multipliedReportingOverflow(by: optimizer.accumulationSteps)
        if overflow || perStep > Self.maximumSamplesPerStep {
            coder.report("data.batch_size", "batch_size × optimizer.accumulation_steps (\(data.batchSize) × \(optimizer.accumulationSteps)) must be at most \(Self.maximumSamplesPerStep) samples per step")
        }
        if let epochs, epochs > Self.maximumEpochs {
            coder.report("epochs", "must be at most \(Self.maximumEpochs), found \(epochs)")
        }
        // A run must keep something: last/, or best/ (which needs evaluations).
        if !checkpoint.keepLast, !checkpoint.keepBest || data.val == nil {
            coder.report("checkpoint.keep_last", "is false and no best/ will be kept (\(checkpoint.keepBest ? "no data.val to evaluate on" : "checkpoint.keep_best is false")): the run would save no weights; keep last/, or keep best/ with validation data")
        }
        // A ViT built here takes images of its own size only (its position embeddings fix it).
        if model.checkpoint == nil, model.vision.checkpoint == nil, let size = data.imageSize, size != model.vision.config.imageSize {
            coder.report("data.image_size", "must equal model.vision.image_size (\(model.vision.config.imageSize)), the size the image tower is built for, found \(size); leave data.image_size null to use the tower's")
        }
        if model.logitScaleInit > loss.logitScaleMax {
            coder.report("model.logit_scale_init", "must be ≤ loss.logit_scale_max (\(formatNumber(loss.logitScaleMax))), found \(formatNumber(model.logitScaleInit))")
        }
        if let maxSteps {
            if schedule.warmupSteps > maxSteps {
                coder.report("schedule.warmup_steps", "must be ≤ max_steps (\(maxSteps)), found \(schedule.warmupSteps)")
            }
            if case .constantCooldown(let cooldown, _, _) = schedule.kind, cooldown > maxSteps {
                coder.report("schedule.cooldown_steps", "must be ≤ max_steps (\(maxSteps)), found \(cooldown)")
            }
        }
        let evaluates = eval.everySteps != nil || eval.everyEpoch
        // What watches an evaluation metric cannot work without evaluations.
        var watchers: [String] = []
        if earlyStopping != nil { watchers.append("early_stopping") }
        if schedule.kind == .plateau { watchers.append("schedule") }
        for watcher in watchers {
            if data.val == nil, !coder.hasProblem(at: "data.val") {
                coder.report(watcher, "needs data.val to evaluate on")
            }
            if !evaluates {
                coder.report(watcher, "needs evaluations: set eval.every_steps or eval.every_epoch")
            }
        }
        checkWiSEFT(&coder)
        if let distill {
            if loss.type == .siglip {
                coder.report("loss.type", "distillation uses the CLIP contrastive loss; remove loss.type \"siglip\"")
            }
            if distill.studentInit == .teacherLayers, model.lora != nil {
                coder.report("distill.student_init", "\"teacher_layers\" changes the student's base weights, which model.lora keeps frozen as its adapter's base; use \"random\" (the pretrained student) with LoRA")
            }
            if distill.studentInit == .teacherLayers, model.checkpoint != nil {
                coder.report("distill.student_init", "\"teacher_layers\" builds the student from the teacher's layers; it cannot start from model.checkpoint too")
            }
            if data.cacheTeacher, !data.textAugmentation.isIdentity {
                coder.report("data.cache_teacher", "needs unaugmented captions (an augmented caption differs each epoch): remove data.text_augmentation, or set data.cache_teacher to false")
            }
        }
    }
}

extension Recipe {
    /// The most samples one step may take (batch × accumulation): far above any real run, and
    /// far below what overflows the loader's arithmetic.
    static let maximumSamplesPerStep = 1 << 24
    /// The most epochs a recipe may ask for (times steps per epoch, it must still fit an Int).
    static let maximumEpochs = 1_000_000

    /// One folder name: not empty, "." or "..", without "/" or NUL, not hidden (a leading "."
    /// is how run folders keep their staging copies).
    static func isFolderName(_ name: String) -> Bool {
        !name.isEmpty && !name.hasPrefix(".") && !name.contains("/") && !name.contains("\0") && name.trimmingCharacters(in: .whitespaces) == name
    }
}

extension Recipe.ModelSection: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.pathField("checkpoint", &checkpoint, help: "Folder of a whole Hugging Face dual encoder (CLIP, VisionTextDualEncoder, ours); then `vision` and `text` are not given.")
        // A whole checkpoint fixes both towers, so they are neither read with it nor written.
        if coder.isDecoding || checkpoint == nil {
            coder.section("vision", &vision, help: "The image tower: a checkpoint, or a ViT built from these sizes (ViT-B/32 by default).")
            coder.section("text", &text, help: "The text tower: a checkpoint, or a CLIP or BERT transformer built from these sizes (CLIP's by default).")
        }
        coder.field("projection_dim", &projectionDim, .atLeast(1), help: "Size of the shared embedding space both towers project into.")
        coder.field("logit_scale_init", &logitScaleInit, help: "Initial log of the logit scale (2.6592 = ln(1/0.07), CLIP's).")
        coder.section("lock_vision", &lockVision, help: "Which image-tower layers train (LiT).")
        coder.section("lock_text", &lockText, help: "Which text-tower layers train.")
        coder.field("frozen_layer_cache_mb", &frozenLayerCacheMB, .atLeast(0), help: "Frozen-layer caching: when a tower's first layers are locked (lock_text, lock_vision) and its inputs are not augmented (text_augmentation; augmentation for images), their output is computed once per distinct caption or image and kept, up to this many megabytes per tower (exact: the same numbers as without). 0: off.")
        coder.field("gradient_checkpointing", &gradientCheckpointing, help: "Recompute each transformer layer's activations during backward instead of keeping them from the forward pass, in both towers (torch.utils.checkpoint per layer; dropout draws the same masks): far less activation memory for about one more forward pass of the trained layers. Locked layers are not recomputed.")
        coder.section("lora", &lora, start: Recipe.LoRASection(),
                      help: "LoRA (PEFT's): the pretrained model of `checkpoint` (for text-only distillation, `text.checkpoint`) is frozen; low-rank adapters on the target layers and the `modules_to_save` train. `best/` and `last/` hold PEFT's adapter_config.json and adapter_model.safetensors (not the base weights) beside the training state; eval, embed and export load them with their base, `merge` writes a plain checkpoint. Not with lock_vision / lock_text (choose `towers` instead); null: no adapters.")
        guard coder.isDecoding else { return }

        if lora != nil {
            for key in ["lock_vision", "lock_text"] where coder.has(key) {
                coder.report(key, "not allowed together with model.lora, which freezes the whole base model; choose the adapted towers with model.lora.towers")
            }
            if checkpoint == nil, text.checkpoint == nil {
                coder.report("lora", "adapts a pretrained model: set model.checkpoint (a whole dual encoder; its folder becomes the adapter's base_model_name_or_path)")
            }
        }

        if checkpoint != nil {
            for key in ["vision", "text"] where coder.has(key) {
                coder.report(key, "not allowed together with model.checkpoint, which holds both towers")
            }
        }
        // With a checkpoint the layer count is only known once its config is read.
        if checkpoint == nil, vision.checkpoint == nil, lockVision.unlockedLayers > vision.config.numHiddenLayers {
            coder.report("lock_vision.unlocked_layers", "must be ≤ vision.num_hidden_layers (\(vision.config.numHiddenLayers)), found \(lockVision.unlockedLayers)")
        }
        if checkpoint == nil, text.checkpoint == nil, lockText.unlockedLayers > text.sizes.numHiddenLayers {
            coder.report("lock_text.unlocked_layers", "must be ≤ text.num_hidden_layers (\(text.sizes.numHiddenLayers)), found \(lockText.unlockedLayers)")
        }
    }
}

extension Recipe.LoRASection: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        let names = RecipeRule<[String]>(requirement: "must be a non-empty list of non-empty names") { !$0.isEmpty && !$0.contains(where: \.isEmpty) }
        coder.field("r", &settings.rank, .atLeast(1), help: "Rank of each adapter: A is [r, in], B is [out, r].")
        coder.field("alpha", &settings.alpha, .above(0), help: "The adapter's output is scaled by alpha / r (alpha / √r with `use_rslora`).")
        coder.field("dropout", &settings.dropout, .within(0..<1), help: "Dropout on each adapter's input (PEFT's lora_dropout).")
        coder.field("target_modules", &targetModules, names, help: "Linear layers to adapt: a layer whose path is a name or ends with `.name` (PEFT's rule). CLIP towers: q_proj, k_proj, v_proj, out_proj, fc1, fc2; BERT: query, key, value, dense; also visual_projection, text_projection. A name that matches no layer of the adapted towers is an error listing the names there are.")
        coder.field("towers", &towers, help: "The towers that get adapters: both, vision or text. A tower without adapters is frozen whole and runs as in inference (no dropout), like a locked tower.")
        coder.field("use_rslora", &settings.rsLoRA, help: "Rank-stabilised LoRA: scale by alpha / √r instead of alpha / r.")
        coder.field("modules_to_save", &modulesToSave, RecipeRule(requirement: "must be a list of non-empty names") { !$0.contains(where: \.isEmpty) },
                    help: "Modules trained whole beside the adapters and saved in adapter_model.safetensors (PEFT's modules_to_save), e.g. visual_projection, text_projection; also the bare parameters logit_scale and logit_bias (saved as base_model.model.logit_scale, which PeftModel.from_pretrained loads). A layer named here gets no adapter.")
    }
}

extension Recipe.VisionTower: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.pathField("checkpoint", &checkpoint, help: "Folder of a Hugging Face model with a vision tower; its config.json decides the architecture.")
        coder.field("image_size", &config.imageSize, .atLeast(1), help: "Side of the square input images, in pixels.")
        coder.field("patch_size", &config.patchSize, .atLeast(1), help: "Side of the square patches (divides `image_size`).")
        coder.field("hidden_size", &config.hiddenSize, .atLeast(1), help: "Width of the transformer.")
        coder.field("num_hidden_layers", &config.numHiddenLayers, .atLeast(1), help: "Transformer layers.")
        coder.field("num_attention_heads", &config.numAttentionHeads, .atLeast(1), help: "Attention heads (divide `hidden_size`).")
        coder.field("intermediate_size", &config.intermediateSize, .atLeast(1), help: "Width of each layer's MLP.")
        coder.field("hidden_act", &config.hiddenAct, help: "The MLP's activation (Hugging Face `hidden_act` names).")
        guard coder.isDecoding else { return }
        if config.imageSize % config.patchSize != 0 {
            coder.report("image_size", "must be a multiple of patch_size (\(config.patchSize)), found \(config.imageSize)")
        }
        if config.hiddenSize % config.numAttentionHeads != 0 {
            coder.report("hidden_size", "must be a multiple of num_attention_heads (\(config.numAttentionHeads)), found \(config.hiddenSize)")
        }
    }
}

extension Recipe.TextTower: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.pathField("checkpoint", &checkpoint, help: "Folder of a Hugging Face text model (CLIP text, BERT, a sentence-transformers folder); its config.json decides the architecture.")
        coder.field("pooling", &pooling, help: "How token states become one embedding: the model's own pooler (CLIP: end-of-text token; BERT: its pooler layer), the mean over real tokens (sentence-transformers), or the first token.")
        coder.field("vocab_size", &sizes.vocabSize, .atLeast(1), help: "Vocabulary size of a CLIP tower (a BERT tower takes its tokenizer's).")
        coder.field("hidden_size", &sizes.hiddenSize, .atLeast(1), help: "Width of the transformer.")
        coder.field("num_hidden_layers", &sizes.numHiddenLayers, .atLeast(1), help: "Transformer layers.")
        coder.field("num_attention_heads", &sizes.numAttentionHeads, .atLeast(1), help: "Attention heads (divide `hidden_size`).")
        coder.field("intermediate_size", &sizes.intermediateSize, .atLeast(1), help: "Width of each layer's MLP.")
        coder.field("max_position_embeddings", &sizes.maxPositionEmbeddings, .within(2...8192), help: "Longest token sequence, start and end tokens included (captions are truncated to it).")
        coder.field("hidden_act", &sizes.hiddenAct, help: "The MLP's activation (Hugging Face `hidden_act` names).")
        coder.field("type", &type, help: "Which transformer to build when no checkpoint is given: CLIP's causal text transformer, or a BERT encoder.")
        coder.pathField("tokenizer", &tokenizer, help: "A tokenizer folder (vocab.json + merges.txt, or vocab.txt) or open_clip's bpe_simple_vocab_16e6.txt.gz; null: the checkpoint's, or open_clip's merges for a CLIP tower.")
        guard coder.isDecoding else { return }
        if type == .bert, checkpoint == nil, tokenizer == nil || tokenizer!.hasSuffix(".gz"), !coder.hasProblem(at: coder.path(of: "tokenizer")) {
            coder.report("tokenizer", "a BERT text tower needs a WordPiece tokenizer folder (with vocab.txt), e.g. \".deps/assets/all-MiniLM-L6-v2\"")
        }
        if sizes.hiddenSize % sizes.numAttentionHeads != 0 {
            coder.report("hidden_size", "must be a multiple of num_attention_heads (\(sizes.numAttentionHeads)), found \(sizes.hiddenSize)")
        }
    }
}

extension Recipe.TowerLock: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("unlocked_layers", &unlockedLayers, .atLeast(-1), help: "-1: everything trains; 0: the tower is frozen; k > 0: its last k layers and final norms train, the rest is frozen (LiT). Frozen layers run as in inference (no dropout): a fixed feature extractor.")
    }
}

extension Recipe.DataSection: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        var trainFields = RecipeSourceFields(train)
        coder.section("train", &trainFields, required: "an object with shards or manifest, or a path",
                      help: "Training samples: `{\"shards\": pattern}`, `{\"manifest\": file, …}`, or a plain path (a .csv/.tsv/.json/.jsonl file is a manifest, anything else a shard pattern).",
                      shorthand: RecipeSourceFields.object(forPath:))
        if let source = trainFields.source { train = source }
        var valFields = val.map(RecipeSourceFields.init)
        coder.section("val", &valFields, start: RecipeSourceFields(),
                      help: "Validation samples (as `train`); null: no evaluation.", shorthand: RecipeSourceFields.object(forPath:))
        val = valFields?.source

        coder.field("image_size", &imageSize, .atLeast(1), help: "Side of the square training images; null: the vision tower's image size.")
        coder.field("batch_size", &batchSize, .atLeast(1), help: "Samples per micro-batch (per process).")
        coder.field("threads", &threads, .atLeast(1), help: "Decoding and augmentation threads.")
        coder.field("shuffle_buffer", &shuffleBuffer, .atLeast(0), help: "Samples held to shuffle a shard stream.")
        coder.field("bad_samples", &badSamples, help: "An unreadable sample is skipped with a warning, or fails the run.")
        coder.section("augmentation", &augmentation, help: "Random image transforms (torchvision's), each with its probability.")
        coder.section("text_augmentation", &textAugmentation, help: "EDA caption edits (Wei & Zou 2019), applied in this order; all 0 leaves captions alone.")
        coder.field("cache_teacher", &cacheTeacher, help: "`distill`: compute the teacher's embeddings once per image and caption, and keep them beside the run.")
    }
}

/// `Source` as the JSON object it is written as: exactly one of `shards` and `manifest`.
struct RecipeSourceFields: RecipeCoding {
    var shards: String?
    var manifest = Recipe.Manifest(path: "")
    var hasManifest = false

    init() {}

    init(_ source: Recipe.Source) {
        switch source {
        case .shards(let pattern): shards = pattern
        case .manifest(let m): manifest = m; hasManifest = true
        }
    }

    /// The source, when the fields name exactly one kind.
    var source: Recipe.Source? {
        switch (shards, hasManifest) {
        case (let pattern?, false): .shards(pattern)
        case (nil, true): .manifest(manifest)
        default: nil
        }
    }

    static let manifestOnlyKeys = ["image_column", "caption_column", "label_column", "separator"]

    /// A plain path given where a source object goes: a manifest by its suffix, else shards.
    static func object(forPath path: String) -> [String: Any]? {
        DatasetSource.manifestSuffixes.contains(where: path.lowercased().hasSuffix) ? ["manifest": path] : ["shards": path]
    }

    mutating func code(_ coder: inout RecipeCoder) {
        // A source has no defaults: decoding starts from nothing, not from the value it replaces.
        if coder.isDecoding { self = RecipeSourceFields() }
        let documenting = coder.isDocumenting
        if coder.isDecoding || shards != nil || documenting {
            coder.pathField("shards", &shards, help: "WebDataset shards: a pattern with braces and globs, e.g. `train-{0000..0099}.tar.zst`.")
        }
        guard coder.isDecoding || hasManifest || documenting else { return }
        var path: String? = hasManifest ? manifest.path : nil
        coder.pathField("manifest", &path, help: "A CSV/TSV/JSONL file with an image path (relative to the file) and a caption per row.")
        coder.field("image_column", &manifest.imageColumn, .nonEmpty, help: "The manifest's image column; null: a text-only manifest (sentences for text distillation).")
        coder.field("caption_column", &manifest.captionColumn, .nonEmpty, help: "The manifest's caption column.")
        coder.field("label_column", &manifest.labelColumn, .nonEmpty, help: "Class labels for zero-shot evaluation.")
        coder.field("separator", &manifest.separator, help: "CSV field separator; null: `,`, or tab for .tsv.")
        guard coder.isDecoding else { return }

        if let path { manifest.path = path }
        hasManifest = path != nil || coder.hasProblem(at: coder.path(of: "manifest"))
        switch (shards != nil || coder.hasProblem(at: coder.path(of: "shards")), hasManifest) {
        case (true, true): coder.report(nil, "set either shards or manifest, not both")
        case (false, false): coder.report(nil, "needs shards (a shard pattern) or manifest (a CSV/TSV/JSONL file)")
        case (true, false):
            for key in Self.manifestOnlyKeys where coder.has(key) {
                coder.report(key, "only applies to a manifest source, not to shards")
            }
        case (false, true): break
        }
    }
}

extension ImageAugmentation: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.section("random_resized_crop", &randomResizedCrop, start: RandomResizedCrop(),
                      help: "torchvision's RandomResizedCrop (open_clip's default scale 0.9–1); null: resize and centre-crop.")
        coder.field("horizontal_flip", &horizontalFlip, .probability, help: "Probability of a horizontal flip.")
        coder.section("rotation", &rotation, start: Rotation(probability: 0, degrees: 0), help: "A random rotation; null: none.")
        coder.section("color_jitter", &colorJitter, start: ColorJitter(probability: 0), help: "torchvision's ColorJitter; null: none.")
    }
}

extension ImageAugmentation.RandomResizedCrop: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("scale", &scale, .orderedPair(lowAbove: 0, highAtMost: 1), help: "[low, high]: the crop's area as a fraction of the image.")
        coder.field("ratio", &ratio, .orderedPair(lowAbove: 0, highAtMost: nil), help: "[low, high]: the crop's aspect ratio (width / height).")
    }
}

extension ImageAugmentation.Rotation: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("probability", &probability, .probability, required: true, help: "Probability of a rotation.")
        coder.field("degrees", &degrees, .within(0...180), required: true, help: "The angle is uniform in ±degrees.")
        coder.field("fill", &fill, RecipeRule(requirement: "must be 3 values (RGB)") { $0.count == 3 }, help: "RGB of the corners the rotation uncovers.")
    }
}

extension ImageAugmentation.ColorJitter: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("probability", &probability, .probability, required: true, help: "Probability of jittering an image.")
        coder.field("brightness", &brightness, .atLeast(0), help: "Brightness factor uniform in [1 − x, 1 + x].")
        coder.field("contrast", &contrast, .atLeast(0), help: "Contrast factor uniform in [1 − x, 1 + x].")
        coder.field("saturation", &saturation, .atLeast(0), help: "Saturation factor uniform in [1 − x, 1 + x].")
        coder.field("hue", &hue, .within(0...0.5), help: "Hue shift uniform in ±x (fraction of the colour wheel).")
    }
}

extension TextAugmentationConfig: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("synonym_replacement", &synonymReplacement, .probability, help: "Synonym replacement: this fraction of a caption's words is replaced by a WordNet synonym (EDA's α_sr).")
        coder.field("random_insertion", &randomInsertion, .probability, help: "Random insertion: for this fraction of the words, a synonym of a random word is inserted at a random place (α_ri).")
        coder.field("random_swap", &randomSwap, .probability, help: "Random swap: for this fraction of the words, two random words swap places (α_rs).")
        coder.field("random_deletion", &randomDeletion, .probability, help: "Random deletion: each word is deleted with this probability (p_rd).")
    }
}

extension Recipe.LossSection: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("type", &type, help: "clip: softmax cross-entropy in both directions (open_clip's ClipLoss); siglip: the pairwise sigmoid loss with a learned bias (SigLipLoss).")
        coder.field("logit_scale_max", &logitScaleMax, .above(0), help: "The learned log logit scale is clamped to this (ln 100, CLIP's).")
    }
}

extension Recipe.OptimizerSection: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("type", &type, help: "AdamW or SGD (torch.optim's).")
        coder.field("lr", &lr, .above(0), help: "Base (peak) learning rate.")
        coder.field("betas", &betas, RecipeRule(requirement: "must be two values in [0, 1)") { $0.count == 2 && $0.allSatisfy { (0..<1).contains($0) } },
                    help: "AdamW's (β1, β2).")
        coder.field("eps", &eps, .above(0), help: "AdamW's ε.")
        coder.field("weight_decay", &weightDecay, .atLeast(0), help: "Decoupled weight decay; biases, norms and the logit scale never decay.")
        coder.field("momentum", &momentum, .within(0..<1), help: "SGD's momentum.")
        coder.field("nesterov", &nesterov, help: "SGD with Nesterov momentum.")
        coder.field("no_decay_embeddings", &noDecayEmbeddings, help: "Exempt embedding tables from weight decay too.")
        coder.field("grad_clip", &gradClip, .above(0), help: "Largest global gradient norm; null: no clipping.")
        coder.field("accumulation_steps", &accumulationSteps, .atLeast(1),
                    help: "Micro-batches per optimizer step; earlier micro-batches' features stay in the loss as negatives (open_clip's --accum-freq).")
        guard coder.isDecoding else { return }
        if type == .sgd, nesterov, momentum == 0 {
            coder.report("nesterov", "needs momentum > 0")
        }
    }
}

extension Recipe.ScheduleSection: RecipeCoding {
    /// The keys of each kind besides `type` and `warmup_steps`.
    static let kindKeys: [LRSchedule.Kind.Name: [String]] = [
        .constCooldown: ["cooldown_steps", "cooldown_power", "end_lr"],
        .step: ["step_every", "gamma"],
        .linear: ["end_lr"],
        .plateau: ["metric", "mode", "factor", "patience", "threshold", "cooldown", "min_lr_scale"],
    ]

    mutating func code(_ coder: inout RecipeCoder) {
        var name = kind.name
        coder.field("type", &name, help: "cosine: down to 0 at the last step; constant; const_cooldown: constant, then a decay over the last `cooldown_steps`; step: × `gamma` every `step_every` steps; linear: a line to `end_lr`; plateau: × `factor` when `metric` stalls (ReduceLROnPlateau).")
        coder.field("warmup_steps", &warmupSteps, .atLeast(0), help: "Steps of linear warmup from 0 to the base rate.")
        if coder.isDocumenting { documentEveryKind(&coder); return }
        // A key of another kind is a mistake worth naming (a typo gets "unknown key" instead).
        let own = Self.kindKeys[name] ?? []
        for (other, keys) in Self.kindKeys where other != name {
            for key in keys where !own.contains(key) && coder.has(key) {
                coder.report(key, "only applies to schedule type \"\(other.rawValue)\", not \"\(name.rawValue)\"")
                coder.accept(key)
            }
        }
        codeKindKeys(name, &coder)
    }

    /// The keys of one kind (decoding: read into `kind`; encoding: written from it).
    private mutating func codeKindKeys(_ name: LRSchedule.Kind.Name, _ coder: inout RecipeCoder) {
        switch name {
        case .cosine: kind = .cosine
        case .constant: kind = .constant
        case .constCooldown:
            var (steps, power, endLR) = (1, 1.0, 0.0)
            if case .constantCooldown(let s, let p, let e) = kind { (steps, power, endLR) = (s, p, e) }
            coder.requireKey("cooldown_steps", because: "type is \"const_cooldown\"")
            coder.field("cooldown_steps", &steps, .atLeast(1), help: "const_cooldown: length of the final decay.")
            coder.field("cooldown_power", &power, .above(0), help: "const_cooldown: exponent of the decay.")
            coder.field("end_lr", &endLR, .atLeast(0), help: "const_cooldown and linear: the rate at the last step.")
            kind = .constantCooldown(cooldownSteps: steps, power: power, endLR: endLR)
        case .step:
            var (every, gamma) = (1, 0.1)
            if case .step(let e, let g) = kind { (every, gamma) = (e, g) }
            coder.requireKey("step_every", because: "type is \"step\"")
            coder.field("step_every", &every, .atLeast(1), help: "step: steps between two decays.")
            coder.field("gamma", &gamma, .above(0), help: "step: factor applied at each decay.")
            kind = .step(every: every, gamma: gamma)
        case .linear:
            var endLR = 0.0
            if case .linear(let e) = kind { endLR = e }
            coder.field("end_lr", &endLR, .atLeast(0), help: "const_cooldown and linear: the rate at the last step.")
            kind = .linear(endLR: endLR)
        case .plateau:
            kind = .plateau
            codePlateau(&coder)
        }
    }
}

extension Recipe.ScheduleSection {
    private mutating func codePlateau(_ coder: inout RecipeCoder) {
        coder.field("metric", &plateau.watch.metric, .nonEmpty, help: "plateau: the validation metric watched; null: the run's main metric.")
        coder.field("mode", &plateau.watch.mode, help: "plateau: whether larger or smaller is better; null: the metric's own direction.")
        coder.field("factor", &plateau.factor, RecipeRule(requirement: "must be in (0, 1)") { $0 > 0 && $0 < 1 }, help: "plateau: the rate is multiplied by this when the metric stalls.")
        coder.field("patience", &plateau.patience, .atLeast(0), help: "plateau: evaluations without improvement before the rate drops.")
        coder.field("threshold", &plateau.threshold, .atLeast(0), help: "plateau: relative change that counts as an improvement.")
        coder.field("cooldown", &plateau.cooldown, .atLeast(0), help: "plateau: evaluations after a drop during which stalls are not counted.")
        coder.field("min_lr_scale", &plateau.minLRScale, .within(0...1), help: "plateau: the rate never drops below this fraction of the base rate.")
    }

    /// The recipe reference lists the keys of every kind, with their defaults.
    private mutating func documentEveryKind(_ coder: inout RecipeCoder) {
        for kind in [LRSchedule.Kind.constantCooldown(cooldownSteps: 1, power: 1, endLR: 0), .step(every: 1, gamma: 0.1), .linear(endLR: 0), .plateau] {
            var copy = self
            copy.kind = kind
            copy.codeKindKeys(kind.name, &coder)
        }
    }
}

extension Recipe.EvalSection: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("every_steps", &everySteps, .atLeast(1), help: "Also evaluate every this many steps; null: only at epoch ends (with `every_epoch`).")
        coder.field("every_epoch", &everyEpoch, help: "Evaluate at the end of every epoch.")
        coder.field("retrieval", &retrieval, help: "Image-text retrieval metrics (R@1/5/10 and ranks, both directions, open_clip's names).")
        coder.section("zeroshot", &zeroshot, start: Recipe.ZeroShot(classes: ""), help: "Zero-shot classification on labelled validation data; null: off.")
        coder.field("batch_size", &batchSize, .atLeast(1), help: "Evaluation batch size; null: `data.batch_size`.")
    }
}

extension Recipe.ZeroShot: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.pathField("classes", &classes, required: true, help: "JSON file `{\"classes\": [...], \"templates\": [\"a photo of a {}.\", ...]}`.")
    }
}

extension Recipe.EarlyStoppingSection: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("metric", &watch.metric, .nonEmpty, help: "The validation metric watched; null: the run's main metric (image_to_text_R@1, or teacher_cosine for text distillation).")
        coder.field("mode", &watch.mode, help: "Whether larger or smaller is better; null: the metric's own direction.")
        coder.field("patience", &patience, .atLeast(1), help: "Evaluations without improvement before the run stops.")
        coder.field("min_delta", &minDelta, .atLeast(0), help: "The least change that counts as an improvement.")
    }
}

extension Recipe.DistillSection: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.pathField("teacher", &teacher, required: true, help: "Checkpoint folder of the teacher: a CLIP / dual encoder, or a text-only model (sentence-transformers BERT) for text-tower distillation.")
        coder.field("temperature", &temperature, .above(0), help: "Softening temperature T of the logit distillation (the term is scaled by T²).")
        coder.field("logit_weight", &logitWeight, .atLeast(0), help: "Weight of the KL between the teacher's and the student's image-text similarities over the batch, both directions (text-only: sentence-sentence).")
        coder.field("feature_weight", &featureWeight, .atLeast(0), help: "Weight of the distance between student and teacher embeddings.")
        coder.field("feature_loss", &featureLoss, help: "cosine: 1 − cosine similarity; mse: mean squared error.")
        coder.field("feature_projection", &featureProjection, help: "A learned linear map from the student's embedding size to the teacher's when they differ (training only; never exported).")
        coder.field("contrastive_weight", &contrastiveWeight, .atLeast(0), help: "Weight of the student's own contrastive loss (text-only: in-batch contrastive loss against the teacher's embeddings).")
        coder.field("student_init", &studentInit, help: "random, or teacher_layers: embeddings and evenly spaced layers copied from a text-only teacher (6 → 2: layers 2 and 5).")
        guard coder.isDecoding else { return }
        if logitWeight == 0, featureWeight == 0, contrastiveWeight == 0 {
            coder.report("logit_weight", "logit_weight, feature_weight and contrastive_weight are all 0: nothing to train on")
        }
    }
}

extension Recipe.CheckpointSection: RecipeCoding {
    mutating func code(_ coder: inout RecipeCoder) {
        coder.field("directory", &directory, .nonEmpty, help: "Folder of run folders (relative to the working directory: an output, not an input).")
        coder.field("keep_best", &keepBest, help: "Keep the checkpoint that scored best in evaluation as `best/`.")
        coder.field("best_metric", &best.metric, .nonEmpty, help: "The metric `best/` keeps the best of; null: early stopping's metric, else the run's main metric.")
        coder.field("best_mode", &best.mode, help: "Whether larger or smaller is better; null: the metric's own direction.")
        coder.field("keep_last", &keepLast, help: "Keep the newest checkpoint as `last/` (what `--resume` continues).")
        coder.field("every_steps", &everySteps, .atLeast(1), help: "Also save `last/` every this many steps; null: after evaluations and at the end.")
    }
}
