import Foundation
import Testing
import Datasets
import Models
import NN
import Torch
@testable import Training

/// Issue 17 on the CPU machine: the recipe's device, what this machine refuses, checkpoints in
/// another precision, out-of-memory steps, peak memory in the log. (What needs a GPU is in
/// `Scripts/gpu-check`.)
@Suite("Device placement", .serialized)
struct DevicePlacementTests {
    /// `device` is spelled-checked with the other values; a device this machine lacks is
    /// reported with them, and so is fp16 where the run would be on the CPU.
    @Test func devicesAreCheckedWithTheRestOfTheRecipe() throws {
        let folder = temporaryFolder()
        let path = "\(folder)/r.json"
        try (try tinyRecipe(folder, name: "r", steps: 2)).resolvedJSON().write(to: URL(fileURLWithPath: path))
        func problems(_ overrides: [String]) -> [String: String] {
            do {
                _ = try RunBuilder.load(path, overrides: overrides)
                return [:]
            } catch let errors as RecipeErrors {
                return Dictionary(errors.errors.map { ($0.path, $0.message) }, uniquingKeysWith: { a, _ in a })
            } catch {
                return ["?": "\(error)"]
            }
        }
        #expect(problems(["device=\"gpu\"", "optimizer.lr=-1"]).keys.sorted() == ["device", "optimizer.lr"], "one report for both")
        #expect(problems(["device=\"cuda:-1\""])["device"]?.contains("cuda:N") == true)
        #expect(problems(["device=\"cpu\""]).isEmpty && problems(["device=\"auto\""]).isEmpty)
        if !Torch.isCUDAAvailable {
            let cuda = problems(["device=\"cuda\""])["device"] ?? ""
            #expect(cuda.contains("Scripts/bootstrap --cuda"), "\(cuda)")
            #expect(problems(["precision=\"fp16\""])["precision"]?.contains("fp16 needs a CUDA device") == true)
            #expect(problems(["precision=\"fp16\"", "device=\"cpu\""])["precision"] != nil)
        } else {
            let count = Torch.cudaDeviceCount
            #expect(problems(["device=\"cuda:\(count)\""])["device"]?.contains("does not exist") == true)
            #expect(problems(["device=\"cuda\"", "precision=\"fp16\""]).isEmpty)
        }
    }

    /// `auto` is the CPU here; the run says where it computes, and its parts are there.
    @Test func autoPlacesTheRunAndSaysSo() throws {
        let folder = temporaryFolder()
        let recipe = try tinyRecipe(folder, name: "placed", steps: 2)
        let setup = try RunBuilder.contrastive(recipe, resolved: nil)
        let expected: Device = Torch.isCUDAAvailable ? .cuda(0) : .cpu
        #expect(setup.device == expected && setup.model.parameters().allSatisfy { $0.device == expected })
        #expect(setup.train.pinFor == expected)
        let lines = RunSummary.lines(recipe, setup)
        #expect(lines.contains { $0.hasPrefix("device: \(expected) (auto)") }, "\(lines)")
    }

    /// A checkpoint stored in float16 trains in float32 (converted, and said), and is saved back
    /// in float32; the log records peak memory.
    @Test func halfPrecisionCheckpointsAreConvertedAndSaid() throws {
        let folder = temporaryFolder()
        try Trainer(try RunBuilder.contrastive(try tinyRecipe(folder, name: "source", steps: 2, extra: ["early_stopping=null"]), resolved: nil), resume: false).run()
        let half = "\(folder)/half"
        try FileManager.default.copyItem(atPath: "\(folder)/source/last", toPath: half)
        for name in ["optimizer.safetensors", "trainer_state.json", "training_heads.safetensors"] { try? FileManager.default.removeItem(atPath: "\(half)/\(name)") }
        let stored = try weights(half).mapValues { $0.dtype == .float32 ? $0.to(.float16) : $0 }
        try SafeTensors.save(stored, to: "\(half)/model.safetensors")

        let recipe = try tinyRecipe(folder, name: "from-half", steps: 2, extra: [#"model={"checkpoint": "\#(half)"}"#, "early_stopping=null"])
        let setup = try RunBuilder.contrastive(recipe, resolved: nil)
        #expect(setup.notes.contains { $0.contains("model.checkpoint \(half) stores float16 weights; they are converted to float32") }, "\(setup.notes)")
        #expect(setup.model.parameters().allSatisfy { $0.dtype == .float32 })
        #expect(RunSummary.lines(recipe, setup).contains { $0.contains("stores float16 weights") })
        let trainer = try Trainer(setup, resume: false)
        try trainer.run()
        let saved = try SafeTensorsFile(path: "\(folder)/from-half/last/model.safetensors")
        #expect(saved.entries.values.allSatisfy { $0.dtype == .float32 })
        let records = try MetricsLog.read("\(folder)/from-half/metrics.jsonl").filter { $0.kind == .train }
        #expect(records.last.flatMap { $0.values["peak_host_memory_gib"] }.map { $0 > 0.01 } == true, "peak memory is logged")
        #expect(records.last?.values["loss"]?.isFinite == true)
    }

    /// A step that runs out of memory names the batch size and what lowers the memory a step needs
    /// (a real libtorch allocation failure on the CPU stands in for the GPU's).
    @Test func outOfMemoryStepsSayWhatToChange() throws {
        var failure: TorchError?
        do { _ = try withTorchErrors { Tensor.empty([1 << 52]) } } catch let error as TorchError { failure = error }
        let error = try #require(failure)
        #expect(error.isOutOfMemory)
        let fp32 = StepFailure.explain(error, step: 7, batchSize: 256, microBatches: 1, device: .cpu, precision: .fp32).description
        for fragment in ["step 7", "ran out of memory with 256 samples", "data.batch_size (now 256)", "batch_size 128 × 2 trains on the same 256 samples", "precision \"bf16\""] {
            #expect(fp32.contains(fragment), "'\(fragment)' missing: \(fp32)")
        }
        let bf16 = StepFailure.explain(error, step: 7, batchSize: 256, microBatches: 1, device: .cuda(1), precision: .bf16).description
        #expect(bf16.contains("cuda:1 ran out of memory") && !bf16.contains("precision \"bf16\""), "\(bf16)")
        var other: TorchError?
        do { _ = try withTorchErrors { Tensor.zeros([2, 3]).matmul(Tensor.zeros([4, 5])) } } catch let error as TorchError { other = error }
        let plain = StepFailure.explain(try #require(other), step: 3, batchSize: 8, microBatches: 1, device: .cpu, precision: .fp32).description
        #expect(plain.hasPrefix("step 3 failed in libtorch on cpu") && !plain.contains("batch_size"), "\(plain)")
    }

    /// Batches already on the run's device are not copied; models take inputs from anywhere.
    @Test func batchesAndInputsFindTheModelsDevice() throws {
        let folder = temporaryFolder()
        let setup = try RunBuilder.contrastive(try tinyRecipe(folder, name: "inputs", steps: 2), resolved: nil)
        let epoch = setup.train.epoch(0)
        let batch = try #require(try epoch.next())
        let moved = batch.on(setup.device, nonBlocking: true)
        #expect(moved.pixels.device == setup.device && moved.captions == batch.captions && moved.position == batch.position)
        guard let encoder = setup.model as? DualEncoder else { Issue.record("not a dual encoder"); return }
        #expect(encoder.device == setup.device)
        let features = withNoGrad { encoder.imageFeatures(batch.pixels) }
        #expect(features.device == setup.device && features.shape == [batch.count, 16])
    }
}
