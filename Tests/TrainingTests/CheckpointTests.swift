import Foundation
import Testing
import NN
import Optim
import Torch
@testable import Training
@_exported import TestSupport

/// Writes checkpoint number `version`: every tensor and the trainer state say `version`.
func writeVersion(_ version: Int, to path: String) throws {
    let model = Linear(64, 64)
    withNoGrad { model.weight.fill_(Double(version)); model.bias!.fill_(Double(version)) }
    var state = TrainerState(globalStep: version)
    state.bestMetric = Double(version)
    try Checkpoint.save(to: path, model: model, optimizer: nil, state: state,
                        files: ["config.json": Data("{\"version\": \(version)}".utf8),
                                "padding.bin": Data(repeating: UInt8(version % 256), count: 256 * 1024)])
}

/// Reads a checkpoint and checks that all its parts come from one version; returns it.
func readConsistentVersion(_ path: String) throws -> Int {
    let state = try Checkpoint.readState(path)
    let model = Linear(64, 64)
    try model.load(checkpoint: path)
    let v = state.globalStep
    #expect(model.weight.eq(Double(v)).all().item(Bool.self), "weights are not all \(v)")
    #expect(model.bias!.eq(Double(v)).all().item(Bool.self))
    #expect(state.bestMetric == Double(v))
    let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(path)/config.json"))) as! [String: Int]
    #expect(config["version"] == v)
    let padding = try Data(contentsOf: URL(fileURLWithPath: "\(path)/padding.bin"))
    #expect(padding.count == 256 * 1024 && padding.allSatisfy { $0 == UInt8(v % 256) })
    return v
}

@Suite("Checkpoints")
struct CheckpointTests {
    @Test func saveAndLoadModelOptimizerAndState() throws {
        let folder = temporaryFolder()
        let model = Linear(3, 2)
        let optimizer = AdamW(groups: ParameterGroup.standard(model, learningRate: 1e-2, weightDecay: 0.1))
        F.mseLoss(model(Tensor.randn([4, 3])), Tensor.zeros([4, 2])).backward()
        optimizer.step()
        var state = TrainerState(globalStep: 1, epoch: 0, samplesSeenInEpoch: 4)
        state.earlyStopping = EarlyStopping(metric: "clip_val_loss", mode: .min, patience: 2)
        state.plateau = ReduceOnPlateau(patience: 1)
        state.plateau?.update(3.0)
        state.bestMetric = 3.0
        state.bestStep = 1
        let data = Generator(seed: 5)
        state.captureRandomState(["data": data])
        try Checkpoint.save(to: "\(folder)/last", model: model, optimizer: optimizer, state: state, files: ["config.json": Data("{}".utf8)])
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: "\(folder)/last"))
                == ["config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json"])

        let expectedNext = Tensor.rand([3], generator: data)
        let restoredModel = Linear(3, 2)
        let restoredOptimizer = AdamW(groups: ParameterGroup.standard(restoredModel, learningRate: 1e-2, weightDecay: 0.1))
        let restored = try Checkpoint.load(from: "\(folder)/last", into: restoredModel, optimizer: restoredOptimizer)
        #expect(restored == state)
        #expect(restoredModel.weight.equal(model.weight))
        #expect(restoredOptimizer.stateDict().keys.sorted() == optimizer.stateDict().keys.sorted())
        let freshData = Generator(seed: 99)
        try restored.restoreRandomState(["data": freshData])
        #expect(Tensor.rand([3], generator: freshData).equal(expectedNext))
    }

    @Test func loadErrorsNameTheProblem() throws {
        let folder = temporaryFolder()
        #expect(throws: CheckpointError.self) { try Checkpoint.readState(folder) }
        try Checkpoint.save(to: "\(folder)/c", model: Linear(3, 2), optimizer: nil, state: TrainerState(globalStep: 3))
        let wrongShape = Linear(4, 2)
        let before = wrongShape.weight.clone()
        let error = #expect(throws: StateDictError.self) { try Checkpoint.load(from: "\(folder)/c", into: wrongShape, optimizer: nil) }
        #expect("\(error!)".contains("weight: checkpoint [2, 3] vs model [2, 4]"))
        #expect(wrongShape.weight.equal(before))
        let missingOptimizer = #expect(throws: CheckpointError.self) {
            let m = Linear(3, 2)
            _ = try Checkpoint.load(from: "\(folder)/c", into: m, optimizer: SGD(groups: ParameterGroup.standard(m, learningRate: 0.1, weightDecay: 0)))
        }
        #expect(missingOptimizer?.reason.contains("optimizer.safetensors") == true)
    }

    @Test func overwritingReplacesTheWholeFolder() throws {
        let path = temporaryFolder() + "/best"
        try writeVersion(1, to: path)
        try writeVersion(2, to: path)
        #expect(try readConsistentVersion(path) == 2)
        let siblings = try FileManager.default.contentsOfDirectory(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path)
        #expect(siblings == ["best"])   // no staging or old copies left behind
    }

    /// A writer process is killed at a random moment while it rewrites the same checkpoint
    /// again and again; what remains must always be one whole version. Version 1 is complete
    /// before the killer starts, so every case has a checkpoint to check (none passes vacuously).
    /// The end-to-end form of this test kills `train` itself during real saves (ProgramTests).
    @Test(arguments: 0..<10)
    func killedWriterLeavesAWholeCheckpoint(trial: Int) async throws {
        var random = TestRandom("checkpoint kill \(trial)", defaultSeed: 117 + UInt64(trial))
        let delay = Int.random(in: 5...250, using: &random)
        let path = temporaryFolder() + "/last"
        await #expect(processExitsWith: .signal(SIGKILL)) { [path = path as String, delay = delay as Int] in
            try writeVersion(1, to: path)
            let killer = Thread {
                usleep(useconds_t(delay * 1000))
                kill(getpid(), SIGKILL)
            }
            killer.start()
            var version = 2
            while true {
                try writeVersion(version, to: path)
                version += 1
            }
        }
        let version = try readConsistentVersion(path)
        #expect(version >= 1)
        print("killed after \(delay) ms: checkpoint holds version \(version)")
        let parent = URL(fileURLWithPath: path).deletingLastPathComponent().path
        try CheckpointDirectory.recover(path)
        #expect(try FileManager.default.contentsOfDirectory(atPath: parent).allSatisfy { $0 == "last" })
    }
}
