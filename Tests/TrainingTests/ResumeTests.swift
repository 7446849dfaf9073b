import Foundation
import Testing
import NN
import Optim
import Torch
@testable import Training

/// A small classifier with dropout, trained on random batches: every source of randomness a
/// real run has (initialisation, batch sampling, dropout) plus AdamW, a schedule and clipping.
final class SmallNet: Module {
    let fc1: Linear
    let dropout = Dropout(0.2)
    let fc2: Linear
    init(seed: UInt64) {
        let g = Generator(seed: seed)
        fc1 = Linear(8, 32, generator: g)
        fc2 = Linear(32, 4, generator: g)
    }
    func callAsFunction(_ x: Tensor) -> Tensor { fc2(dropout(F.gelu(fc1(x)))) }
}

struct Run {
    static let totalSteps = 200
    let model: SmallNet
    let optimizer: AdamW
    let data: Generator
    let schedule = LRSchedule(.cosine, warmupSteps: 20, totalSteps: totalSteps)
    let inputs: Tensor
    let labels: Tensor

    init(modelSeed: UInt64) {
        let fixed = Generator(seed: 1234)
        inputs = Tensor.randn([256, 8], generator: fixed)
        labels = Tensor.randint(0, 4, [256], generator: fixed)
        model = SmallNet(seed: modelSeed)
        optimizer = AdamW(groups: ParameterGroup.standard(model, learningRate: 3e-3, weightDecay: 0.1))
        data = Generator(seed: 77)
    }

    func train(from start: Int, to end: Int) {
        model.train()
        for step in start..<end {
            optimizer.setLearningRates { schedule.learningRate(at: step, base: $0) }
            let batch = Tensor.randint(0, 256, [32], generator: data)
            let loss = F.crossEntropy(model(inputs.indexSelect(dim: 0, index: batch)), labels.indexSelect(dim: 0, index: batch))
            optimizer.zeroGrad()
            loss.backward()
            clipGradientNorm(model.parameters(), maxNorm: 1.0)
            optimizer.step()
        }
    }

    func save(to path: String, step: Int) throws {
        var state = TrainerState(globalStep: step)
        state.captureRandomState(["data": data])
        try Checkpoint.save(to: path, model: model, optimizer: optimizer, state: state)
    }
}

@Suite("Exact resume")
struct ResumeTests {
    /// Every phase runs in its own process: the default generator (dropout) and the thread count
    /// of the test process are shared with tests running in parallel.
    @Test func resumedRunIsBitIdenticalToAnUninterruptedOne() async throws {
        let folder = temporaryFolder()
        // Steps 0..<117 and the checkpoint.
        await #expect(processExitsWith: .success) { [folder = folder as String] in
            Torch.manualSeed(42)
            let run = Run(modelSeed: 1)
            run.train(from: 0, to: 117)
            try run.save(to: "\(folder)/step-117", step: 117)
        }
        // A model initialised differently, restored in a new process and continued to 200.
        await #expect(processExitsWith: .success) { [folder = folder as String] in
            Torch.manualSeed(999)
            let resumed = Run(modelSeed: 2)
            let state = try Checkpoint.load(from: "\(folder)/step-117", into: resumed.model, optimizer: resumed.optimizer)
            guard state.globalStep == 117 else { exit(3) }
            try state.restoreRandomState(["data": resumed.data])
            resumed.train(from: state.globalStep, to: Run.totalSteps)
            try SafeTensors.save(resumed.model.stateDict(), to: "\(folder)/resumed.safetensors")
        }
        // The same 200 steps without interruption.
        await #expect(processExitsWith: .success) { [folder = folder as String] in
            Torch.manualSeed(42)
            let uninterrupted = Run(modelSeed: 1)
            uninterrupted.train(from: 0, to: Run.totalSteps)
            try SafeTensors.save(uninterrupted.model.stateDict(), to: "\(folder)/uninterrupted.safetensors")
        }
        let a = try SafeTensors.load("\(folder)/resumed.safetensors"), b = try SafeTensors.load("\(folder)/uninterrupted.safetensors")
        #expect(Set(a.keys) == Set(b.keys) && !a.isEmpty)
        for (name, t) in a { #expect(t.equal(b[name]!), "\(name) differs after resuming") }
        // And the run did train: the weights moved away from the initial ones.
        #expect(!b["fc1.weight"]!.equal(SmallNet(seed: 1).fc1.weight))
    }
}
