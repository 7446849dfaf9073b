import Foundation
import Testing
import Datasets
import Models
import NN
import Torch
@testable import Training

/// Issue 17 on a GPU: these run only where libtorch sees a CUDA device (a CUDA build on a machine
/// with a GPU: `Scripts/gpu-check run` runs them there) and are skipped everywhere else.
/// Runs that change process-wide switches (deterministic algorithms) run in child processes.
@Suite("CUDA training", .serialized, .enabled(if: Torch.isCUDAAvailable, "needs a CUDA build and a GPU"))
struct CUDATrainingTests {
    static let gpu = Device.cuda(0)

    /// The first validation batch of the tiny data, on the CPU.
    static func validationBatch(_ setup: TrainingSetup) throws -> Batch {
        let validation = try #require(setup.validation)
        let batch = try #require(try validation.epoch(0).next())
        return batch.on(.cpu)
    }

    /// L2-normalised image and text embeddings of `batch` by `encoder`, on the CPU in float64.
    static func embeddings(_ encoder: DualEncoder, _ batch: Batch) throws -> (image: Tensor, text: Tensor) {
        let device = encoder.device
        let ids = try #require(batch.tokenIds), mask = try #require(batch.attentionMask)
        return withNoGrad {
            let image = encoder.imageFeatures(batch.pixels.on(device))
            let text = encoder.textFeatures(ids: ids.on(device), attentionMask: mask.on(device))
            func normalised(_ t: Tensor) -> Tensor {
                let t = t.to(.cpu).to(.float64)
                return t / (t * t).sum(dim: -1, keepDim: true).sqrt()
            }
            return (normalised(image), normalised(text))
        }
    }

    static func loadEncoder(_ folder: String, on device: Device) throws -> DualEncoder {
        guard case .dualEncoder(let encoder) = try Pretrained.load(folder).model else { throw TrainingError(message: "\(folder) is not a dual encoder") }
        encoder.to(device)
        encoder.eval()
        return encoder
    }

    /// Trained on the GPU, saved, loaded on the CPU: the same embeddings within 1e-4; and a
    /// CPU-trained checkpoint loaded onto the GPU computes the CPU's embeddings.
    @Test func checkpointsMoveBetweenGPUAndCPU() throws {
        let runs = temporaryFolder()
        for (name, trainedOn, loadedOn) in [("on-gpu", Self.gpu, Device.cpu), ("on-cpu", Device.cpu, Self.gpu)] {
            let recipe = try tinyRecipe(runs, name: name, steps: 4, extra: ["device=\"\(trainedOn)\"", "early_stopping=null"])
            let setup = try RunBuilder.contrastive(recipe, resolved: nil)
            #expect(setup.device == trainedOn)
            try Trainer(setup, resume: false).run()
            let batch = try Self.validationBatch(setup)
            let saved = try Self.loadEncoder("\(runs)/\(name)/last", on: trainedOn)
            let moved = try Self.loadEncoder("\(runs)/\(name)/last", on: loadedOn)
            #expect(saved.parameters().allSatisfy { $0.device == trainedOn } && moved.parameters().allSatisfy { $0.device == loadedOn })
            let a = try Self.embeddings(saved, batch), b = try Self.embeddings(moved, batch)
            let image = maxDifference(a.image, b.image), text = maxDifference(a.text, b.text)
            print("\(name): image embeddings differ by \(image), text by \(text) (\(trainedOn) vs \(loadedOn))")
            #expect(image <= 1e-4 && text <= 1e-4, "\(name): \(image), \(text)")
            // The trained model in memory computes what its checkpoint does.
            let trained = setup.model as! DualEncoder
            trained.eval()
            let live = try Self.embeddings(trained, batch)
            #expect(maxDifference(live.image, a.image) <= 1e-5 && maxDifference(live.text, a.text) <= 1e-5)
        }
    }

    /// With `deterministic: true`, a GPU run killed after step 5 (last checkpoint: step 4) and
    /// resumed ends with weights bit-identical to an uninterrupted run.
    @Test func deterministicResumeOnTheGPUIsBitIdentical() async throws {
        let runs = temporaryFolder()
        let steps = 8
        let extra = ["device=\"cuda\"", "deterministic=true"]
        await #expect(processExitsWith: .success) { [runs = runs as String, steps = steps as Int, extra = extra as [String]] in
            try Trainer(try RunBuilder.contrastive(try tinyRecipe(runs, name: "uninterrupted", steps: steps, extra: extra), resolved: nil), resume: false).run()
        }
        await #expect(processExitsWith: .signal(SIGKILL)) { [runs = runs as String, steps = steps as Int, extra = extra as [String]] in
            var setup = try RunBuilder.contrastive(try tinyRecipe(runs, name: "interrupted", steps: steps, extra: extra), resolved: nil)
            setup.onStep = { step in if step == 5 { kill(getpid(), SIGKILL) } }
            try Trainer(setup, resume: false).run()
        }
        #expect(try Checkpoint.readState("\(runs)/interrupted/last").globalStep == 4)
        await #expect(processExitsWith: .success) { [runs = runs as String, steps = steps as Int, extra = extra as [String]] in
            let trainer = try Trainer(try RunBuilder.contrastive(try tinyRecipe(runs, name: "interrupted", steps: steps, extra: extra), resolved: nil), resume: true)
            guard trainer.state.globalStep == 4, Torch.deterministicAlgorithms else { exit(3) }
            try trainer.run()
        }
        let a = try weights("\(runs)/uninterrupted/last"), b = try weights("\(runs)/interrupted/last")
        #expect(Set(a.keys) == Set(b.keys) && !a.isEmpty)
        for (key, t) in a { #expect(b[key]!.equal(t), "\(key) differs after resume") }
        #expect(try Checkpoint.readState("\(runs)/interrupted/last").globalStep == steps)
        // And the two runs logged the same losses, step for step.
        let losses = { (name: String) in try MetricsLog.read("\(runs)/\(name)/metrics.jsonl").filter { $0.kind == .train }.map { $0.values["loss"] ?? .nan } }
        #expect(try losses("uninterrupted").suffix(2) == losses("interrupted").suffix(2))
    }

    /// fp16 on the GPU: autocast float16 with loss scaling; every step logs its finite loss, the
    /// loss scale and the peak device memory; the saved weights are float32.
    @Test func fp16RunsWithLossScaling() throws {
        let runs = temporaryFolder()
        let recipe = try tinyRecipe(runs, name: "fp16", steps: 6, extra: ["device=\"cuda\"", "precision=\"fp16\"", "log_every_steps=1", "early_stopping=null"])
        let metrics = try Trainer(try RunBuilder.contrastive(recipe, resolved: nil), resume: false).run().metrics
        #expect(metrics["clip_val_loss"]?.isFinite == true)
        let train = try MetricsLog.read("\(runs)/fp16/metrics.jsonl").filter { $0.kind == .train }
        #expect(train.map(\.step) == Array(1...6))
        for record in train {
            #expect(record.values["loss"]?.isFinite == true, "step \(record.step): \(record.values)")
            #expect((record.values["loss_scale"] ?? 0) >= 1, "step \(record.step) has no loss_scale: \(record.values)")
            #expect((record.values["peak_device_memory_gib"] ?? 0) > 0, "step \(record.step) has no peak_device_memory_gib")
        }
        print("fp16 loss scales: \(train.map { $0.values["loss_scale"] ?? .nan })")
        let saved = try SafeTensorsFile(path: "\(runs)/fp16/last/model.safetensors")
        #expect(saved.entries.values.allSatisfy { $0.dtype == .float32 })
        #expect(try Checkpoint.readState("\(runs)/fp16/last").gradScaler != nil)
    }

    /// bf16 autocast on the GPU trains (finite, the loss goes down), needs no loss scale, and
    /// logs the peak device memory.
    @Test func bf16RunsOnTheGPU() throws {
        let runs = temporaryFolder()
        let recipe = try tinyRecipe(runs, name: "bf16", steps: 8, extra: ["device=\"cuda\"", "precision=\"bf16\"", "early_stopping=null"])
        let metrics = try Trainer(try RunBuilder.contrastive(recipe, resolved: nil), resume: false).run().metrics
        #expect(metrics["clip_val_loss"]?.isFinite == true && metrics["image_to_text_R@1"] != nil)
        let train = try MetricsLog.read("\(runs)/bf16/metrics.jsonl").filter { $0.kind == .train }
        let losses = train.compactMap { $0.values["contrastive_loss"] ?? $0.values["loss"] }
        #expect(losses.count == 4 && losses.allSatisfy(\.isFinite) && losses.last! < losses.first!, "\(losses)")
        #expect(train.allSatisfy { $0.values["loss_scale"] == nil })
        let peak = train.last?.values["peak_device_memory_gib"] ?? 0
        #expect(peak > 0 && peak < 20, "peak_device_memory_gib \(peak)")
    }

    /// An allocation larger than the GPU is a TorchError that says out of memory (not a trap),
    /// and the device works afterwards.
    @Test func aHugeAllocationIsOutOfMemory() throws {
        var failure: TorchError?
        do { _ = try withTorchErrors { Tensor.empty([1 << 45], device: Self.gpu) } } catch let error as TorchError { failure = error }
        let error = try #require(failure, "a 128 TiB allocation succeeded")
        #expect(error.isOutOfMemory, "\(error)")
        let after = Tensor.ones([1024], device: Self.gpu).sum().item(Double.self)
        #expect(after == 1024)
    }

    /// A loader told its batches go to the GPU makes their pixels page-locked (token ids are
    /// small and stay pageable); they arrive unchanged.
    @Test func batchesArePinnedForTheGPU() throws {
        let runs = temporaryFolder()
        let setup = try RunBuilder.contrastive(try tinyRecipe(runs, name: "pinned", steps: 2, extra: ["device=\"cuda\""]), resolved: nil)
        #expect(setup.train.pinFor == Self.gpu)
        let batch = try #require(try setup.train.epoch(0).next())
        #expect(batch.pixels.isPinned, "pixels are not pinned")

        let plain = DataLoader(source: .shards(try WebDataset.shards("\(TinyShapes.folder)/val-0000.tar.zst")),
                               pipeline: ImagePipeline(preprocessing: ImagePreprocessing(size: 32)),
                               options: DataLoaderOptions(batchSize: 8, threads: 2, shuffle: false))
        let unpinned = try #require(try plain.epoch(0).next())
        #expect(!unpinned.pixels.isPinned)
        plain.pinFor = Self.gpu
        let pinned = try #require(try plain.epoch(0).next())
        #expect(pinned.pixels.isPinned && pinned.pixels.equal(unpinned.pixels))
        let moved = pinned.on(Self.gpu, nonBlocking: true)
        #expect(moved.pixels.device == Self.gpu && moved.pixels.to(.cpu).equal(unpinned.pixels))
    }
}
