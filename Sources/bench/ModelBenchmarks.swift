import ArgumentParser
import Datasets
import Foundation
import Models
import NN
import Optim
import Tokenizers
import Torch
import Training

/// Prints one JSON object (the Python side prints the same keys), for Scripts/bench to collect.
func emit(_ object: [String: Any]) {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}

/// Peak resident set of this process, in MB.
func peakRSSMegabytes() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}

/// The model and fixed batch written by `Benchmarks/model_reference.py make-model`.
struct BenchModel {
    let model: DualEncoder
    let pixels: Tensor, ids: Tensor, mask: Tensor

    init(_ folder: String, device: String = "cpu") throws {
        let device = try Device.parse(device).validated()
        guard case .dualEncoder(let model) = try Pretrained.load(folder).model else { throw ValidationError("\(folder) is not a CLIP") }
        model.to(device)
        self.model = model
        let batch = try SafeTensors.load("\(folder)/batch.safetensors")
        guard let pixels = batch["pixel_values"], let ids = batch["input_ids"], let mask = batch["attention_mask"] else {
            throw ValidationError("\(folder)/batch.safetensors lacks pixel_values, input_ids or attention_mask")
        }
        (self.pixels, self.ids, self.mask) = (pixels.on(device), ids.on(device), mask.on(device))
    }

    /// The fixed batch tiled (or cut) to `size` rows; as stored when nil.
    func batch(_ size: Int?) -> (pixels: Tensor, ids: Tensor, mask: Tensor) {
        guard let size else { return (pixels, ids, mask) }
        func tile(_ t: Tensor) -> Tensor {
            let copies = (size + t.size(0) - 1) / t.size(0)
            return Tensor.cat(Array(repeating: t, count: copies)).narrow(dim: 0, start: 0, length: size).contiguous()
        }
        return (tile(pixels), tile(ids), tile(mask))
    }
}

/// Seconds of each timed call after `warmup` untimed ones. Each call ends by reading a value
/// back (`item`), which waits for the device, so the clock sees the work itself.
func timed(warmup: Int, repetitions: Int, _ body: () -> Void) -> [Double] {
    for _ in 0..<warmup { body() }
    return (0..<repetitions).map { _ in
        let start = DispatchTime.now().uptimeNanoseconds
        body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }
}

struct TrainStep: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "train-step",
        abstract: "Forward + CLIP loss + backward + AdamW step on a fixed batch (one JSON line).")

    @Option(help: "Folder from `Benchmarks/model_reference.py make-model`.") var model: String
    @Option(help: "Untimed steps first.") var warmup = 3
    @Option(help: "Timed steps.") var steps = 10
    @Option(help: "Intra-op threads.") var threads = 2
    @Flag(help: "bf16 autocast for forward and loss.") var bf16 = false
    @Flag(help: "fp16 autocast for forward and loss, with dynamic loss scaling (Optim.GradScaler, torch.amp.GradScaler's).") var fp16 = false
    @Option(help: "cpu, cuda or cuda:N.") var device = "cpu"
    @Option(help: "Samples per step: the fixed batch tiled (default: as stored).") var batch: Int?
    @Flag(help: "Recompute each transformer layer's activations in backward (model.gradient_checkpointing).") var gradientCheckpointing = false
    @Flag(help: "libtorch's default CPU allocator (malloc) instead of the caching one training uses.") var mallocAllocator = false

    func validate() throws {
        guard !(bf16 && fp16) else { throw ValidationError("--bf16 and --fp16 exclude each other") }
        if let batch, batch < 1 { throw ValidationError("--batch must be at least 1") }
    }

    func run() throws {
        Torch.threadCount = threads
        try HostAllocator.use(mallocAllocator ? .malloc : .caching)
        let m = try BenchModel(model, device: device)
        let place = m.model.device
        m.model.train()
        m.model.setGradientCheckpointing(gradientCheckpointing)
        let (pixels, ids, mask) = m.batch(batch)
        // open_clip's groups and the reference side's AdamW settings.
        let optimizer = AdamW(groups: ParameterGroup.standard(m.model, learningRate: 1e-4, weightDecay: 0.1), betas: (0.9, 0.98), eps: 1e-6)
        // torch.amp.GradScaler's defaults (scale 2^16, growth every 2,000 good steps), as the reference side.
        let scaler = fp16 ? GradScaler() : nil
        let autocast: DType? = bf16 ? .bfloat16 : fp16 ? .float16 : nil
        var losses: [Double] = []
        var skipped = 0
        // The optimizer's share (scaler step included): host time, so on a GPU only the launches
        // (no extra synchronisation, which would change the step being measured).
        var stepSeconds: [Double] = []
        // What no step can shrink: the process with model and batch loaded, plus the weights'
        // gradients and AdamW's two moments (the floor under gradient checkpointing's saving).
        let loadedRSS = peakRSSMegabytes()
        let parameterMB = Double(m.model.parameters().reduce(0) { $0 + $1.count * $1.dtype.byteSize }) / 1_048_576
        Torch.resetPeakMemoryStats(place)
        let times = timed(warmup: warmup, repetitions: steps) {
            optimizer.zeroGrad()
            let forward = {
                clipLoss(imageFeatures: m.model.imageFeatures(pixels), textFeatures: m.model.textFeatures(ids: ids, attentionMask: mask),
                         logitScale: m.model.logitScale)
            }
            let loss = autocast.map { withAutocast($0, device: place, forward) } ?? forward()
            (scaler?.scale(loss) ?? loss).backward()
            let start = DispatchTime.now().uptimeNanoseconds
            if let scaler {
                if !scaler.step(optimizer) { skipped += 1 }
                scaler.update()
            } else {
                optimizer.step()
            }
            stepSeconds.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            losses.append(loss.item(Double.self))
        }
        var result: [String: Any] = ["median_s": median(times), "min_s": times.min()!, "steps_s": times, "device": device,
                                     "loss_first": losses.first!, "loss_last": losses.last!, "peak_rss_mb": peakRSSMegabytes(),
                                     "threads": Torch.threadCount, "bf16": bf16, "fp16": fp16, "batch": pixels.size(0),
                                     "gradient_checkpointing": gradientCheckpointing,
                                     "loaded_rss_mb": loadedRSS, "parameters_mb": parameterMB,
                                     "optimizer_step_median_s": median(Array(stepSeconds.suffix(steps)))]
        if let scaler { result["loss_scale"] = scaler.currentScale; result["skipped_steps"] = skipped }
        if let host = HostAllocator.statistics {
            result["host_allocator"] = ["mapped_mb": Double(host.mappedBytes) / 1_048_576, "peak_live_mb": Double(host.peakLiveBytes) / 1_048_576,
                                        "reuses": host.reuses, "maps": host.maps, "unmaps": host.unmaps]
        }
        if let stats = Torch.memoryStats(place) { result["peak_device_memory_mb"] = Double(stats.peakAllocated) / 1_048_576 }
        emit(result)
    }
}

struct EmbedThroughput: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "embed", abstract: "No-grad embedding throughput of one tower (one JSON line).")

    @Option(help: "Folder from `Benchmarks/model_reference.py make-model`.") var model: String
    @Option(help: "image or text.") var tower = "image"
    @Option(help: "Batch size (the fixed batch tiled).") var batch = 64
    @Option var warmup = 2
    @Option var reps = 10
    @Option(help: "Intra-op threads.") var threads = 2
    @Option(help: "cpu, cuda or cuda:N.") var device = "cpu"

    func run() throws {
        Torch.threadCount = threads
        let m = try BenchModel(model, device: device)
        m.model.eval()
        let (pixels, ids, mask) = m.batch(batch)
        let times = timed(warmup: warmup, repetitions: reps) {
            withInferenceMode {
                let out = tower == "image" ? m.model.imageFeatures(pixels) : m.model.textFeatures(ids: ids, attentionMask: mask)
                _ = out.sum().item(Double.self)
            }
        }
        emit(["median_s": median(times), "items_per_s": Double(batch) / median(times), "threads": Torch.threadCount, "device": device])
    }
}

struct MatmulPeak: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "matmul-peak", abstract: "GFLOP/s of an n×n matmul in fp32 and bf16 (one JSON line).")

    @Option var n = 2048
    @Option var reps = 10
    @Option var threads = 2

    func run() throws {
        Torch.threadCount = threads
        var result: [String: Any] = ["n": n, "threads": Torch.threadCount]
        for (key, dtype) in [("fp32_gflops", DType.float32), ("bf16_gflops", DType.bfloat16)] {
            let a = Tensor.randn([n, n]).to(dtype), b = Tensor.randn([n, n]).to(dtype)
            let times = timed(warmup: 2, repetitions: reps) { _ = a.matmul(b).sum().item(Double.self) }
            result[key] = 2 * pow(Double(n), 3) / median(times) / 1e9
        }
        emit(result)
    }
}

struct ExportInputs: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "export-inputs",
        abstract: "A checkpoint's own preprocessing and tokenization of a validation set, as safetensors (ONNX retrieval checks).")

    @Option(help: "Checkpoint folder.") var checkpoint: String
    @Option(help: "Shard pattern of the validation data.") var data = "Data/shapes/val-0000.tar.zst"
    @Option(help: "Output .safetensors file.") var out: String

    func run() throws {
        let loaded = try Pretrained.load(checkpoint)
        let tokenizer = try loaded.tokenizer()
        let preprocessing = loaded.preprocessing ?? ImagePreprocessing(size: 224)
        let loader = DataLoader(source: .shards(try WebDataset.shards(data)), pipeline: ImagePipeline(preprocessing: preprocessing),
                                options: DataLoaderOptions(batchSize: 250, threads: 2, shuffle: false, dropLast: false))
        var pixels: [Tensor] = [], captions: [String] = []
        let epoch = loader.epoch(0)
        while let batch = try epoch.next() {
            pixels.append(batch.pixels)
            captions += batch.captions
        }
        let (ids, mask) = tokenizer.encode(captions)
        try SafeTensors.save(["pixel_values": Tensor.cat(pixels), "input_ids": ids, "attention_mask": mask], to: out)
        emit(["samples": captions.count, "out": out])
    }
}

struct CLIPTokenizerFiles: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "clip-tokenizer",
        abstract: "Writes vocab.json + merges.txt from open_clip's merges file into a model folder (what export copies beside the encoders).")

    @Option(help: "Folder to write into.") var out: String
    @Option(help: "open_clip's bpe_simple_vocab_16e6.txt.gz.") var merges = ".deps/assets/bpe_simple_vocab_16e6.txt.gz"

    func run() throws {
        try CLIPTokenizer.writeHuggingFaceFiles(fromOpenCLIPMerges: URL(fileURLWithPath: merges), to: URL(fileURLWithPath: out))
        emit(["out": out])
    }
}
