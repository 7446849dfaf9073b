import Foundation
import Testing
import Models
import NN
import Optim
import Torch
@testable import Training

/// fp16 cannot run end to end on these machines (no GPU). The loop around the loss scaler is
/// tested by forcing fp16 onto the CPU (`allowFP16OnCPUForTesting`; CPU autocast does float16).
enum FP16Run {
    /// A tiny fp16 run (clipping on, a log line every step) whose scaler starts at 256 and grows
    /// every 3 good steps. `overflowAt`: global steps whose gradients get an inf after backward;
    /// `firstStep`: the step this process starts at (a resumed run's).
    static func setup(_ runs: String, name: String, steps: Int, overflowAt: Set<Int>, firstStep: Int = 0) throws -> TrainingSetup {
        var recipe = try tinyRecipe(runs, name: name, steps: steps, extra: ["optimizer.grad_clip=1.0", "log_every_steps=1"])
        recipe.precision = .fp16   // after decoding, which refuses fp16 on the CPU
        // No recipe.json: each process cuts its own copy of the data (another path), which
        // --resume would take for a changed recipe.
        var setup = try RunBuilder.contrastive(recipe, resolved: nil)
        let hooked = HookedObjective(setup.objective)
        let projection = (setup.model as! DualEncoder).visualProjection.weight
        hooked.afterBackward = { call in
            if overflowAt.contains(firstStep + call) { withNoGrad { projection.grad![0, 0].fill_(Double.infinity) } }
        }
        setup.objective = hooked
        setup.allowFP16OnCPUForTesting = true
        setup.gradScaler = GradScaler(initScale: 256, growthInterval: 3)
        return setup
    }

    static func lossScales(_ folder: String) throws -> [Int: Double] {
        let train = try MetricsLog.read("\(folder)/metrics.jsonl").filter { $0.kind == .train }
        return Dictionary(uniqueKeysWithValues: train.map { ($0.step, $0.values["loss_scale"] ?? .nan) })
    }
}

@Suite("Mixed precision (fp16 loss scaling)", .serialized)
struct MixedPrecisionTests {
    /// Scale 256, growth every 3 good steps; the gradients of step 4 overflow: that step is
    /// skipped (weights unchanged), the scale halves, the run goes on and logs the scale.
    @Test func anOverflowIsSkippedTheScaleHalvedAndTheRunGoesOn() async throws {
        let runs = temporaryFolder()
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) { [runs = runs as String] in
            let setup = try FP16Run.setup(runs, name: "fp16", steps: 8, overflowAt: [4])
            let hooked = setup.objective as! HookedObjective
            var before: [Int: [Tensor]] = [:]
            hooked.beforeForward = { call, _ in before[call] = setup.model.parameters().map { $0.detach().clone() } }
            try Trainer(setup, resume: false).run()
            let unchanged = { (a: Int, b: Int) in zip(before[a]!, before[b]!).allSatisfy { $0.equal($1) } }
            guard unchanged(4, 5) else { exit(4) }   // the overflowed step changed no weight
            guard !unchanged(3, 4) else { exit(5) }  // the others did
        }
        let stderr = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(stderr.contains("fp16: gradients overflowed at step 4; loss scale lowered to 256; step skipped"), "\(stderr)")
        #expect(!stderr.contains("non-finite loss"))
        // 256 ×2 after steps 0-2, ×0.5 at step 4, ×2 after steps 5-7; every step counted.
        let scales = try FP16Run.lossScales("\(runs)/fp16")
        #expect(scales == [1: 256, 2: 256, 3: 512, 4: 512, 5: 256, 6: 256, 7: 256, 8: 512])
        let train = try MetricsLog.read("\(runs)/fp16/metrics.jsonl").filter { $0.kind == .train }
        #expect(train.filter { $0.values["grad_norm"] == nil }.map(\.step) == [5], "only the skipped step has no (unscaled, clipped) norm")
        let state = try Checkpoint.readState("\(runs)/fp16/last")
        #expect(state.globalStep == 8 && state.gradScaler == GradScaler.State(scale: 512, growthTracker: 0))
    }

    /// Killed after step 5 (last checkpoint: step 4, scale 128 with 2 good steps counted) and
    /// resumed: the weights, the logged scales and the scaler's state end bit-identical to an
    /// uninterrupted run. A scaler restarted from scratch would log other scales (and end at 256).
    @Test func aResumedRunContinuesTheScalerExactly() async throws {
        let runs = temporaryFolder()
        let overflows: Set<Int> = [1, 7]
        await #expect(processExitsWith: .success) { [runs = runs as String, overflows = overflows as Set<Int>] in
            try Trainer(try FP16Run.setup(runs, name: "uninterrupted", steps: 8, overflowAt: overflows), resume: false).run()
        }
        await #expect(processExitsWith: .signal(SIGKILL)) { [runs = runs as String, overflows = overflows as Set<Int>] in
            var setup = try FP16Run.setup(runs, name: "interrupted", steps: 8, overflowAt: overflows)
            setup.onStep = { step in if step == 5 { kill(getpid(), SIGKILL) } }
            try Trainer(setup, resume: false).run()
        }
        let saved = try Checkpoint.readState("\(runs)/interrupted/last")
        #expect(saved.globalStep == 4 && saved.gradScaler == GradScaler.State(scale: 128, growthTracker: 2))
        await #expect(processExitsWith: .success) { [runs = runs as String, overflows = overflows as Set<Int>] in
            let setup = try FP16Run.setup(runs, name: "interrupted", steps: 8, overflowAt: overflows, firstStep: 4)
            try Trainer(setup, resume: true).run()
        }
        let a = try weights("\(runs)/uninterrupted/last"), b = try weights("\(runs)/interrupted/last")
        #expect(Set(a.keys) == Set(b.keys) && !a.isEmpty)
        for (key, t) in a { #expect(b[key]!.equal(t), "\(key) differs after resume") }
        let scales = try FP16Run.lossScales("\(runs)/uninterrupted")
        #expect(scales == [1: 256, 2: 128, 3: 128, 4: 128, 5: 256, 6: 256, 7: 256, 8: 128])
        #expect(try FP16Run.lossScales("\(runs)/interrupted") == scales)
        let end = try Checkpoint.readState("\(runs)/interrupted/last").gradScaler
        #expect(end == GradScaler.State(scale: 128, growthTracker: 0))
        #expect(end == (try Checkpoint.readState("\(runs)/uninterrupted/last")).gradScaler)
    }

    @Test func fp16IsRefusedOnTheCPUBeforeTrainingStarts() throws {
        let message = "fp16 needs a CUDA device (loss scaling of float16 is for GPUs); use bf16 on the CPU"
        #expect(Precision.fp16.problems(on: .cpu) == [message])
        #expect(Precision.fp16.problems(on: .cuda).isEmpty && Precision.bf16.problems(on: .cpu).isEmpty && Precision.fp32.problems(on: .cpu).isEmpty)
        let runs = temporaryFolder()
        var recipe = try tinyRecipe(runs, name: "refused", steps: 2)
        recipe.precision = .fp16
        let setup = try RunBuilder.contrastive(recipe, resolved: nil)
        let error = #expect(throws: TrainingError.self) { try Trainer(setup, resume: false) }
        #expect(error?.message == "precision \(message)")
        #expect(!FileManager.default.fileExists(atPath: "\(runs)/refused"), "the run folder was made before the refusal")
    }

    /// trainer_state.json written before fp16 existed (no "gradScaler") still loads; a scaler's
    /// state round-trips exactly.
    @Test func trainerStateWithAndWithoutTheScaler() throws {
        let old = #"{"globalStep": 12, "epoch": 1, "samplesSeenInEpoch": 32, "rngStates": {}, "libraryVersion": "0.2.0", "torchVersion": "2.15.0"}"#
        let state = try JSONDecoder().decode(TrainerState.self, from: Data(old.utf8))
        #expect(state.globalStep == 12 && state.gradScaler == nil)
        var scaled = state
        scaled.gradScaler = GradScaler.State(scale: Double(Float(3.0517578e-05)), growthTracker: 1999)
        let decoded = try JSONDecoder().decode(TrainerState.self, from: try JSONEncoder().encode(scaled))
        #expect(decoded == scaled)
    }
}
