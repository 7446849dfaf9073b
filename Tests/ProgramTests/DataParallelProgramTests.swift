// Data-parallel training in real processes over c10d (Gloo, 127.0.0.1): the launcher, torchrun,
// Ctrl-C and resume, a killed peer, and the refusals (issue 18).
import Foundation
import Testing
import NN
import Torch
import TestSupport

/// torchrun's variables for `rank` of `world` on 127.0.0.1:`port`.
private func rankEnvironment(_ rank: Int, of world: Int, port: Int) -> [String: String] {
    ["RANK": "\(rank)", "WORLD_SIZE": "\(world)", "LOCAL_RANK": "\(rank)", "LOCAL_WORLD_SIZE": "\(world)",
     "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "\(port)", "CLIPTUNE_DIST_TIMEOUT_S": "30"]
}

/// Largest absolute difference between two weight files' tensors.
private func largestDifference(_ a: String, _ b: String) throws -> Double {
    let x = try SafeTensors.load(a), y = try SafeTensors.load(b)
    #expect(Set(x.keys) == Set(y.keys))
    return x.reduce(0.0) { worst, entry in max(worst, (entry.value - y[entry.key]!).abs().max().item(Double.self)) }
}

@Suite("Data parallel in processes", .serialized)
struct DataParallelProgramTests {
    func recipe(_ folder: String, _ name: String, batch: Int, steps: Int = 12) throws -> String {
        var r = try tinyRecipe(name: name, directory: "\(folder)/runs", steps: steps)
        r["data"] = ["train": ["shards": try Fixtures.trainShards], "val": ["shards": try Fixtures.valShards], "batch_size": batch, "threads": 1] as [String: Any]
        r["checkpoint"] = ["directory": "\(folder)/runs"]
        r["eval"] = ["every_steps": 6, "every_epoch": false, "zeroshot": ["classes": Fixtures.classes]] as [String: Any]
        r["early_stopping"] = nil
        r["log_every_steps"] = 1
        return try writeRecipe(r, in: folder, file: name)
    }

    /// `train --nproc-per-node 2` (batch 16 each) ends within 1e-5 of one process with batch
    /// 32; Ctrl-C stops both at one step and `--resume` ends bit-identical to the uninterrupted
    /// 2-process run; a resume with another world size is refused.
    @Test func launchedRunsEqualOneProcessAndResumeExactly() throws {
        let folder = temporaryFolder()
        let one = try run("train", ["--recipe", try recipe(folder, "one", batch: 32)], environment: ["OMP_NUM_THREADS": "1"])
        try #require(one.succeeded, "\(one)")
        let twoRecipe = try recipe(folder, "two", batch: 16)
        let two = try run("train", ["--recipe", twoRecipe, "--nproc-per-node", "2"], environment: ["OMP_NUM_THREADS": "1"])
        try #require(two.succeeded, "\(two)")
        #expect(two.stderr.contains("global batch: 32 samples per step (batch_size 16 × accumulation_steps 1 × 2 processes)"), "\(two)")
        #expect(two.stdout.components(separatedBy: "run two: ").count == 2, "rank 0 alone prints\n\(two)")
        let difference = try largestDifference("\(folder)/runs/one/last/model.safetensors", "\(folder)/runs/two/last/model.safetensors")
        #expect(difference < 1e-5, "2 processes × 16 vs 1 × 32 after 12 steps: \(difference)")
        #expect(try trainSteps("\(folder)/runs/two") == Array(1...12), "one writer of metrics.jsonl")
        let recorded = try readObject("\(folder)/runs/two/recipe.json")
        #expect(recorded["world_size"] as? Int == 2)

        let refused = try run("train", ["--recipe", twoRecipe, "--resume"])
        #expect(refused.status == 1 && refused.stderr.contains("world_size: 2 → 1"), "\(refused)")

        let cutRecipe = try recipe(folder, "cut", batch: 16)
        let child = try RunningProgram("train", ["--recipe", cutRecipe, "--nproc-per-node", "2"], environment: ["OMP_NUM_THREADS": "1"])
        let progressed = poll(timeout: 300) { ((try? trainSteps("\(folder)/runs/cut")) ?? []).contains { $0 >= 3 } || !child.isRunning }
        try #require(progressed && child.isRunning, "the 2-process run did not reach step 3\n\(child.wait(timeout: 10))")
        child.send(SIGINT)
        let interrupted = child.wait(timeout: 120)
        #expect(interrupted.status == 130 && !interrupted.signaled, "\(interrupted)")
        let step = try savedStep("\(folder)/runs/cut/last")
        #expect(step >= 3 && step < 12)
        let resumed = try run("train", ["--recipe", cutRecipe, "--nproc-per-node", "2", "--resume"], environment: ["OMP_NUM_THREADS": "1"])
        try #require(resumed.succeeded, "\(resumed)")
        try expectIdenticalTensors("\(folder)/runs/cut/last/model.safetensors", "\(folder)/runs/two/last/model.safetensors")
        print("2 processes: within \(difference) of one; Ctrl-C at step \(step), resumed bit-identically")
    }

    /// Workers started by hand with torchrun's variables: a killed peer makes the other exit
    /// non-zero, naming it, well within the timeout; a rank with another recipe is refused.
    @Test func aKilledPeerOrAnotherRecipeStopsEveryRank() throws {
        let folder = temporaryFolder()
        let path = try recipe(folder, "peers", batch: 16, steps: 400)
        let port = freePort()
        let ranks = try (0..<2).map { try RunningProgram("train", ["--recipe", path], environment: rankEnvironment($0, of: 2, port: port)) }
        let progressed = poll(timeout: 300) { ((try? trainSteps("\(folder)/runs/peers")) ?? []).contains { $0 >= 2 } || !ranks[0].isRunning }
        try #require(progressed && ranks[0].isRunning, "rank 0 did not reach step 2\n\(ranks[0].wait(timeout: 10))")
        ranks[1].send(SIGKILL)
        let started = Date()
        let survivor = ranks[0].wait(timeout: 120)
        let seconds = Date().timeIntervalSince(started)
        #expect(!survivor.timedOut && !survivor.signaled && survivor.status != 0, "\(survivor)")
        #expect(survivor.stderr.contains("rank 1"), "the message names the dead rank: \(survivor.stderr.suffix(800))")
        #expect(seconds < 60, "noticed after \(seconds) s")

        let port2 = freePort()
        let a = try RunningProgram("train", ["--recipe", path, "--set", "max_steps=2", "--set", "name=\"differ\""], environment: rankEnvironment(0, of: 2, port: port2))
        let b = try RunningProgram("train", ["--recipe", path, "--set", "max_steps=2", "--set", "name=\"differ\"", "--set", "optimizer.lr=0.5"],
                                   environment: rankEnvironment(1, of: 2, port: port2))
        let (ra, rb) = (a.wait(timeout: 120), b.wait(timeout: 120))
        #expect(ra.status == 1 && rb.status == 1, "\(ra)\n\(rb)")
        #expect(rb.stderr.contains("rank 1 runs another recipe than rank 0"), "\(rb)")
    }

    /// What cannot work is refused at once, and no rank waits forever.
    @Test func badLaunchesAreRefused() throws {
        let folder = temporaryFolder()
        let path = try recipe(folder, "bad", batch: 16)
        let zero = try run("train", ["--recipe", path, "--nproc-per-node", "0"])
        #expect(zero.status == 64 && zero.stderr.contains("--nproc-per-node must be at least 1"), "\(zero)")
        let noAddress = try run("train", ["--recipe", path], environment: ["RANK": "0", "WORLD_SIZE": "2", "MASTER_PORT": "29999"])
        #expect(noAddress.status == 1 && noAddress.stderr.contains("MASTER_ADDR"), "\(noAddress)")
        // 96 training samples cannot make a step of 2 × 64.
        let large = try run("train", ["--recipe", path, "--nproc-per-node", "2", "--batch-size", "64"], timeout: 300)
        #expect(large.status == 1 && large.stderr.contains("× 2 processes"), "\(large)")
        let nodes = try run("train", ["--recipe", path, "--nproc-per-node", "1", "--nnodes", "2"])
        #expect(nodes.status == 64 && nodes.stderr.contains("--master-addr and --master-port"), "\(nodes)")
    }

    /// `torchrun --no-python` launches the built binary (when a torch with torchrun is at hand).
    @Test func torchrunLaunchesTheBinary() throws {
        let python = "\(repositoryRoot)/.deps/python"
        guard FileManager.default.isExecutableFile(atPath: python) else {
            print("skipped: no .deps/python (Scripts/bootstrap makes it)")
            return
        }
        let folder = temporaryFolder()
        let path = try recipe(folder, "torchrun", batch: 16, steps: 4)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-m", "torch.distributed.run", "--no-python", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
                             "--master-port", "\(freePort())", try Programs.path("train"), "--recipe", path]
        process.environment = ProcessInfo.processInfo.environment.merging(["OMP_NUM_THREADS": "1", "TORCH_CPP_LOG_LEVEL": "ERROR"]) { _, b in b }
        try process.run()
        let finished = poll(timeout: 600) { !process.isRunning }
        if !finished { process.terminate() }
        process.waitUntilExit()
        #expect(finished && process.terminationStatus == 0, "torchrun exited with \(process.terminationStatus)")
        #expect(try savedStep("\(folder)/runs/torchrun/last") == 4)
        #expect(try readObject("\(folder)/runs/torchrun/recipe.json")["world_size"] as? Int == 2)
    }
}
