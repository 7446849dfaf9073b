import Datasets
import Foundation
import Models
import NN
import Optim
import Torch

/// One training run, as described by a recipe file (`Recipes/*.json`, snake_case keys).
///
/// Every property starts at its documented default, so a recipe file names only what it changes.
/// Settings are held in the types that use them (`CLIPVisionConfig`, `Activation`, `TextPooling`,
/// `ImageAugmentation`, `TextAugmentationConfig`, `LRSchedule.Kind`, `MetricMode`,
/// `BadSamplePolicy`…), so a setting is defined once: here, with its default, and in
/// `RecipeSchema.swift`, with its key and rules. `Recipe.decode(_:file:defaultName:)` reads and
/// validates a file, `resolvedJSON()` writes the recipe back with every default filled in.
public struct Recipe: Sendable, Equatable {
    /// Run name (logs, checkpoint folder). Default: the recipe file's base name.
    public var name: String
    /// Seed for initialisation, shuffling and augmentation.
    public var seed: Int = 0
    /// What to train: a whole dual encoder, or a vision and a text tower.
    public var model = ModelSection()
    /// Training and validation data, batching and augmentation.
    public var data: DataSection
    /// The contrastive loss.
    public var loss = LossSection()
    /// Optimizer, weight decay, gradient clipping and accumulation.
    public var optimizer = OptimizerSection()
    /// Learning-rate schedule.
    public var schedule = ScheduleSection()
    /// When and what to evaluate.
    public var eval = EvalSection()
    /// Early stopping on an evaluation metric; nil (the default) trains to the end.
    public var earlyStopping: EarlyStoppingSection?
    /// Where and which checkpoints to keep.
    public var checkpoint = CheckpointSection()
    /// Numeric precision of the forward and backward passes.
    public var precision: Precision = .fp32
    /// Where the model, the batches, the losses and the evaluations live: "auto" (the first
    /// CUDA device when there is one, else the CPU), "cpu", "cuda" or "cuda:N".
    public var device = "auto"
    /// TensorFloat-32 matmuls and convolutions on CUDA (Ampere and later): faster fp32, about
    /// 10 bits of mantissa in the products. Off by default, as in PyTorch.
    public var tf32 = false
    /// Deterministic algorithms only (libtorch refuses ops that have none): runs repeat bit for
    /// bit on CUDA too, a little slower.
    public var deterministic = false
    /// Where CPU tensors get their memory: the caching allocator (large blocks mapped apart and
    /// reused, never more kept than was ever live) or libtorch's default malloc.
    public var hostAllocator: HostAllocator.Kind = .caching
    /// Processes training together (data parallel). Filled in by the run (1 for one process);
    /// a recipe that sets it runs only with that many.
    public var worldSize: Int?
    /// Passes over the training data. At least one of `epochs` and `maxSteps` is set; with both,
    /// training stops at whichever comes first.
    public var epochs: Int?
    /// Optimizer steps to train for (see `epochs`).
    public var maxSteps: Int?
    /// Steps between two log lines.
    public var logEverySteps = 10
    /// Steps with a NaN or infinite loss that are skipped before training fails; 0 fails at the first.
    public var maxNonFiniteSteps = 5
    /// Resume from a checkpoint of this run; nil starts afresh.
    public var resume: ResumePolicy?
    /// Teacher and loss weights for `distill`; nil for `train`.
    public var distill: DistillSection?
    /// WiSE-FT at the end of training (the starting model interpolated with `best/`); nil: off.
    public var wiseFT: WiSEFTSection?
    /// TensorBoard event files beside `metrics.jsonl`.
    public var logging = LoggingSection()
    /// The Prometheus endpoint.
    public var monitoring = MonitoringSection()

    /// A recipe with every default; `epochs` or `maxSteps` must still be set for it to be valid.
    public init(name: String, train: Source, epochs: Int? = nil, maxSteps: Int? = nil) {
        self.name = name
        self.data = DataSection(train: train)
        self.epochs = epochs
        self.maxSteps = maxSteps
    }
}

// MARK: - Choices that only a recipe makes

extension Recipe {
    public enum LossType: String, Sendable, CaseIterable {
        /// Softmax cross-entropy in both directions (CLIP / InfoNCE).
        case clip
        /// Pairwise sigmoid loss (SigLIP).
        case siglip
    }

    public enum OptimizerType: String, Sendable, CaseIterable {
        case adamw
        case sgd
    }

    /// The architecture of a text tower built from sizes.
    public enum TextArchitecture: String, Sendable, CaseIterable {
        /// CLIP's causal text transformer (end-of-text pooling).
        case clip
        /// A BERT encoder (WordPiece vocabulary from `tokenizer`; pooling from `pooling`).
        case bert
    }

    /// How the student's weights start.
    public enum StudentInit: String, Sendable, CaseIterable {
        /// Fresh initialisation (or the student checkpoint, when `model` names one).
        case random
        /// Embeddings and evenly spaced layers copied from the teacher's text tower (DistilBERT /
        /// TinyBERT style); the student's text tower must have the teacher's width.
        case teacherLayers = "teacher_layers"
    }

    public enum ResumePolicy: String, Sendable, CaseIterable {
        /// The newest checkpoint in the run's checkpoint folder.
        case latest
    }
}

// MARK: - model

extension Recipe {
    /// `model`: either one Hugging Face dual-encoder checkpoint (`checkpoint`), or two towers.
    public struct ModelSection: Sendable, Equatable {
        /// Folder of a whole CLIP-style dual encoder. When set, `vision` and `text` are not read
        /// from the recipe (they keep their defaults and are ignored).
        public var checkpoint: String?
        public var vision = VisionTower()
        public var text = TextTower()
        /// Size of the shared embedding space both towers project into.
        public var projectionDim = 512
        /// Initial log of the logit scale (2.6592 = ln(1 / 0.07), CLIP's).
        public var logitScaleInit = 2.6592
        /// Which vision layers train.
        public var lockVision = TowerLock()
        /// Which text layers train.
        public var lockText = TowerLock()
        /// Most megabytes of cached locked-prefix outputs per tower (frozen-layer caching); 0 turns it off.
        public var frozenLayerCacheMB = 1024
        /// Recompute each transformer layer's activations in backward instead of keeping them
        /// (both towers): much less activation memory for one more forward pass of what trains.
        public var gradientCheckpointing = false
        /// LoRA adapters on the checkpoint's layers instead of training its weights; nil: none.
        public var lora: LoRASection?

        public init() {}
    }

    /// `model.lora`: PEFT's LoRA. The base model is frozen; low-rank adapters on the target
    /// layers and the `modulesToSave` train, and checkpoints hold PEFT's adapter files.
    public struct LoRASection: Sendable, Equatable {
        /// r, alpha, dropout and rsLoRA (PEFT's defaults: r 8, alpha 8, no dropout).
        public var settings = LoRASettings()
        /// Linear layers to adapt, by name: a layer whose path is a name or ends with `.name`.
        public var targetModules = ["q_proj", "k_proj", "v_proj", "out_proj"]
        /// Which towers get adapters; a tower without them is frozen whole and runs as in inference.
        public var towers: LoRATowers = .both
        /// Modules (or the bare `logit_scale` / `logit_bias`) trained whole beside the adapters.
        public var modulesToSave: [String] = []

        public init() {}
    }

    public enum LoRATowers: String, Sendable, CaseIterable {
        case both
        case vision
        case text
    }

    /// `model.vision`: a ViT, from a checkpoint or built from its config (ViT-B/32 by default,
    /// transformers' `CLIPVisionConfig` defaults).
    public struct VisionTower: Sendable, Equatable {
        /// Folder of a Hugging Face vision model; when set, its `config.json` decides the architecture.
        public var checkpoint: String?
        /// The keys `image_size`, `patch_size`, `hidden_size`, `num_hidden_layers`,
        /// `num_attention_heads`, `intermediate_size` and `hidden_act`.
        public var config = CLIPVisionConfig()

        public init() {}
    }

    /// `model.text`: a text transformer, from a checkpoint or built from its sizes (CLIP's text
    /// tower by default, transformers' `CLIPTextConfig` defaults).
    public struct TextTower: Sendable, Equatable {
        /// Folder of a Hugging Face text model (CLIP text, BERT…); when set, its `config.json`
        /// decides the architecture.
        public var checkpoint: String?
        public var pooling: TextPooling = .pooler
        /// Which transformer to build (when no checkpoint is given).
        public var type: TextArchitecture = .clip
        /// The keys `vocab_size`, `hidden_size`, `num_hidden_layers`, `num_attention_heads`,
        /// `intermediate_size`, `max_position_embeddings` and `hidden_act`. A BERT tower takes
        /// these sizes too (its vocabulary comes from its tokenizer).
        public var sizes = CLIPTextConfig()
        /// A tokenizer folder (`vocab.json` + `merges.txt`, or `vocab.txt`) or open_clip's
        /// `bpe_simple_vocab_16e6.txt.gz`; nil uses the checkpoint's.
        public var tokenizer: String?

        public init() {}
    }

    /// `model.lock_vision` / `model.lock_text`: how much of a tower trains.
    public struct TowerLock: Sendable, Equatable {
        /// -1: everything trains; 0: the whole tower is frozen; k > 0: the last k layers and the
        /// final norms train, the rest is frozen (LiT style).
        public var unlockedLayers = -1

        public init(unlockedLayers: Int = -1) { self.unlockedLayers = unlockedLayers }
    }
}

// MARK: - data

extension Recipe {
    /// `data`: where samples come from and how they are batched and augmented.
    public struct DataSection: Sendable, Equatable {
        /// Training samples (required).
        public var train: Source
        /// Validation samples for evaluation; nil: no validation set.
        public var val: Source?
        /// Side of the square training images; nil: the vision tower's image size.
        public var imageSize: Int?
        public var batchSize = 64
        /// Decoding threads.
        public var threads = 2
        /// Samples held for shuffling a shard stream.
        public var shuffleBuffer = 2000
        /// What the loader does with an unreadable sample: `skip` (warn and go on) or `fail`.
        public var badSamples: BadSamplePolicy = .skip
        /// Random image transforms (torchvision's): random resized crop, flip, rotation, colour jitter.
        public var augmentation = ImageAugmentation()
        /// Caption edits (EDA): synonym replacement, random insertion, random swap, random deletion.
        public var textAugmentation = TextAugmentationConfig()
        /// Precompute the teacher's embeddings once (distillation).
        public var cacheTeacher = false

        public init(train: Source) { self.train = train }
    }

    /// A data source: WebDataset shards, or a CSV/TSV/JSONL manifest.
    public enum Source: Sendable, Equatable {
        /// A shard pattern with braces and globs, e.g. `train-{0000..0003}.tar.zst`.
        case shards(String)
        case manifest(Manifest)
    }

    /// A manifest file listing image paths and captions.
    public struct Manifest: Sendable, Equatable {
        public var path: String
        /// null: a text-only manifest (sentences for text distillation).
        public var imageColumn: String? = "image_path"
        public var captionColumn = "caption"
        /// Class labels for zero-shot evaluation, when present.
        public var labelColumn: String?
        /// CSV field separator; nil: chosen from the file extension (`,`, or tab for `.tsv`).
        public var separator: Character?

        public init(path: String) { self.path = path }
    }
}

// MARK: - loss, optimizer, schedule

extension Recipe {
    /// `loss`.
    public struct LossSection: Sendable, Equatable {
        public var type: LossType = .clip
        /// The learned log logit scale is clamped to this (ln 100, CLIP's).
        public var logitScaleMax = 4.605170185988092

        public init() {}
    }

    /// `optimizer`. `betas` and `eps` apply to AdamW, `momentum` and `nesterov` to SGD.
    public struct OptimizerSection: Sendable, Equatable {
        public var type: OptimizerType = .adamw
        /// Base (peak) learning rate.
        public var lr = 5e-4
        /// AdamW's (β1, β2), two values.
        public var betas: [Double] = [0.9, 0.98]
        public var eps = 1e-6
        public var weightDecay = 0.2
        public var momentum = 0.9
        public var nesterov = false
        /// Exempt embedding tables from weight decay too (biases, norms and the logit scale
        /// always are).
        public var noDecayEmbeddings = false
        /// Largest global gradient norm; nil: no clipping.
        public var gradClip: Double? = 1.0
        /// Batches whose gradients add up to one optimizer step.
        public var accumulationSteps = 1

        public init() {}
    }

    /// `schedule`: learning rate as a function of the step, after `warmupSteps` of linear warmup.
    /// The `type` key names the kind; each kind has its own keys (`cooldown_steps`…).
    public struct ScheduleSection: Sendable, Equatable {
        public var kind: LRSchedule.Kind = .cosine
        public var warmupSteps = 0
        /// `type: "plateau"`: the metric watched and how the rate drops when it stalls.
        public var plateau = PlateauSettings()

        public init() {}
    }

    /// `schedule` keys of `type: "plateau"` (torch's ReduceLROnPlateau, at each evaluation).
    public struct PlateauSettings: Sendable, Equatable {
        public var watch = WatchedMetric()
        /// The rate is multiplied by this when the metric stalls.
        public var factor = 0.1
        /// Evaluations without improvement before the rate drops.
        public var patience = 10
        /// Relative change that counts as an improvement.
        public var threshold = 1e-4
        /// Evaluations after a drop during which stalls are not counted.
        public var cooldown = 0
        /// The rate never drops below this fraction of the base rate.
        public var minLRScale = 0.0

        public init() {}
    }
}

// MARK: - eval, early stopping, checkpoints

extension Recipe {
    /// A metric the run watches (early stopping, `best/`, the plateau schedule). Unset fields
    /// take the objective's: its main metric, and the direction that metric improves in.
    public struct WatchedMetric: Sendable, Equatable {
        /// nil: the objective's main metric (`image_to_text_R@1` for contrastive training,
        /// `teacher_cosine` for text distillation).
        public var metric: String?
        /// nil: the metric's own direction (`max` for recalls and accuracies, `min` for losses and ranks).
        public var mode: MetricMode?

        public init(metric: String? = nil, mode: MetricMode? = nil) {
            self.metric = metric
            self.mode = mode
        }
    }

    /// `eval`: evaluations on `data.val`.
    public struct EvalSection: Sendable, Equatable {
        /// Also evaluate every this many steps; nil: only at epoch ends (if `everyEpoch`).
        public var everySteps: Int?
        /// Evaluate at the end of every epoch.
        public var everyEpoch = true
        /// Image-text retrieval metrics (R@k in both directions).
        public var retrieval = true
        /// Zero-shot classification; nil: off.
        public var zeroshot: ZeroShot?
        /// Evaluation batch size; nil: `data.batchSize`.
        public var batchSize: Int?

        public init() {}
    }

    /// `eval.zeroshot`.
    public struct ZeroShot: Sendable, Equatable {
        /// JSON file `{"classes": [...], "templates": [...]}`.
        public var classes: String

        public init(classes: String) { self.classes = classes }
    }

    /// `early_stopping`: stop when `metric` has not improved by `minDelta` for `patience` evaluations.
    public struct EarlyStoppingSection: Sendable, Equatable {
        public var watch = WatchedMetric()
        public var patience = 5
        public var minDelta = 0.0

        public init() {}
    }

    /// `checkpoint`.
    public struct CheckpointSection: Sendable, Equatable {
        /// Folder that holds the run's checkpoints (how runs are laid out in it is the trainer's choice).
        public var directory = "Checkpoints"
        /// Keep the checkpoint that scored best in evaluation (`best/`).
        public var keepBest = true
        /// What "best" means (`best_metric`, `best_mode`); unset: early stopping's metric when
        /// early stopping is on, else the objective's main metric.
        public var best = WatchedMetric()
        /// Keep the newest checkpoint (what `resume: latest` reads).
        public var keepLast = true
        /// Also save every this many steps; nil: only after evaluations and at the end.
        public var everySteps: Int?

        public init() {}
    }
}

// MARK: - distill

extension Recipe {
    /// `distill`: the teacher and the weight of each loss term. The student is `model`.
    public struct DistillSection: Sendable, Equatable {
        /// Checkpoint folder of the teacher: a CLIP / dual encoder, or a text-only model
        /// (sentence-transformers BERT) for text-tower distillation.
        public var teacher: String
        /// Softening temperature T of the logit distillation (the term is scaled by T²).
        public var temperature = 1.0
        /// KL between the teacher's and the student's image-text similarity distributions over
        /// the batch, both directions (text-only: sentence-sentence similarities).
        public var logitWeight = 1.0
        /// Distance between student and teacher embeddings.
        public var featureWeight = 0.0
        public var featureLoss: FeatureDistance = .cosine
        /// A learned linear map from the student's embedding size to the teacher's when they
        /// differ (training only; not part of the saved student).
        public var featureProjection = true
        /// The student's own contrastive loss on the true pairs (text-only: in-batch contrastive
        /// loss between student and teacher sentence embeddings).
        public var contrastiveWeight = 1.0
        public var studentInit: StudentInit = .random

        public init(teacher: String) { self.teacher = teacher }
    }
}

// MARK: - wise_ft

extension Recipe {
    /// `wise_ft`: at the end of training, θ(α) = (1 − α)·θ_zero-shot + α·θ_best is evaluated for
    /// every α on `data.val` and `extraVal`, and `wise_ft.json` + `wise_ft.svg` are written in
    /// the run folder. The best α is the one with the best mean (over the sets) of the metric
    /// `best/` keeps (`checkpoint.best_metric`).
    public struct WiSEFTSection: Sendable, Equatable {
        public var alphas = WiSEFT.defaultAlphas
        /// The zero-shot end; nil: the run's starting checkpoint (`model.checkpoint`).
        public var zeroShot: String?
        /// Validation sets besides `data.val`.
        public var extraVal: [Source] = []
        /// Also write the best α's interpolation as a Hugging Face checkpoint, `wise_ft_best/`.
        public var saveBest = false

        public init() {}
    }
}
