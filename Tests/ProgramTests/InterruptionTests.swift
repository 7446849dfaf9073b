// `train` interrupted for real: Ctrl-C (SIGINT) and SIGKILL at random moments while it saves,
// each followed by `train --resume` and a bit-for-bit comparison with an uninterrupted run.
import Foundation
import Testing
import Datasets
import NN
import Torch
import TestSupport

/// A small seeded generator (SplitMix64), so a failing kill schedule can be replayed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension ProgramTests {
    /// Ctrl-C saves last/ at the step it reached and exits 130; `--resume` finishes the run
    /// bit-identical to one that was never interrupted.
    @Test func ctrlCSavesLastAndExits130ThenResumesExactly() throws {
        let folder = temporaryFolder()
        let steps = 30
        func recipe(_ directory: String) throws -> String {
            var r = try tinyRecipe(name: "sigint", directory: "\(folder)/\(directory)", steps: steps)
            r["checkpoint"] = ["directory": "\(folder)/\(directory)"]   // no periodic saves: only Ctrl-C writes last/ before the end
            r["eval"] = ["every_steps": NSNull(), "every_epoch": false, "zeroshot": ["classes": Fixtures.classes]] as [String: Any]
            r["early_stopping"] = nil   // it needs periodic evaluations; this run evaluates once, at the end
            r["log_every_steps"] = 1
            return try writeRecipe(r, in: folder, file: directory)
        }
        let whole = try run("train", ["--recipe", try recipe("whole")])
        try #require(whole.succeeded, "\(whole)")

        let interruptedRecipe = try recipe("interrupted")
        let runFolder = "\(folder)/interrupted/sigint"
        let child = try RunningProgram("train", ["--recipe", interruptedRecipe])
        // Interrupt once it has made progress (a training record for step ≥ 3).
        let progressed = poll(timeout: 300) { ((try? trainSteps(runFolder)) ?? []).contains { $0 >= 3 } || !child.isRunning }
        try #require(progressed && child.isRunning, "train did not reach step 3 while running\n\(child.wait(timeout: 10))")
        child.send(SIGINT)
        let interrupted = child.wait(timeout: 300)
        print("ran \(interrupted.command), interrupted with SIGINT")
        #expect(!interrupted.signaled && interrupted.status == 130, "Ctrl-C should exit 130: \(interrupted)")
        let message = try #require(capture(#"interrupted: saved (.*)/last at step (\d+); continue with --resume"#, in: interrupted.stderr),
                                   "no 'interrupted: saved …' message\n\(interrupted)")
        let step = try #require(Int(message[1]))
        #expect(message[0] == runFolder)
        #expect(step >= 3 && step < steps, "interrupted at step \(step)")
        #expect(try savedStep("\(runFolder)/last") == step)
        for file in ["model.safetensors", "optimizer.safetensors", "config.json"] { #expect(exists("\(runFolder)/last/\(file)"), "\(file)") }
        #expect(try trainSteps(runFolder).last == step, "metrics.jsonl should end at the interrupted step")
        #expect(interrupted.stdout.contains("run sigint: \(steps) steps"), "stdout is flushed on the way out\n\(interrupted)")

        let resumed = try run("train", ["--recipe", interruptedRecipe, "--resume"])
        try #require(resumed.succeeded, "\(resumed)")
        #expect(resumed.stderr.contains("resumed at step \(step) "), "\(resumed)")
        #expect(!resumed.stderr.contains("step \(step)/\(steps) ") && resumed.stderr.contains("step \(step + 1)/\(steps) "), "the resumed run must start after step \(step)\n\(resumed)")
        #expect(try savedStep("\(runFolder)/last") == steps)
        try expectIdenticalTensors("\(runFolder)/last/model.safetensors", "\(folder)/whole/sigint/last/model.safetensors")
        #expect(try trainSteps(runFolder) == Array(1...steps))
        print("Ctrl-C at step \(step) of \(steps); resumed run is bit-identical")
    }

    /// SIGKILL at seeded random moments inside the save path (`checkpoint.every_steps: 1`, a
    /// text tower whose 3.2M-parameter embedding table makes each save ~38 MB): every case must
    /// leave a whole last/ (never a half-written one), and `train --resume` must end bit-identical
    /// to an uninterrupted run. Set CLIPTUNE_KILL_SEED to replay a schedule.
    @Test func killsDuringSavesLeaveAWholeCheckpointThatResumesExactly() throws {
        let seed = ProcessInfo.processInfo.environment["CLIPTUNE_KILL_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 0...UInt64(UInt32.max))
        print("kill test seed: \(seed) (CLIPTUNE_KILL_SEED=\(seed) replays it)")
        var random = SplitMix64(state: seed)
        let folder = temporaryFolder()
        let steps = 16
        func recipe(_ directory: String) throws -> String {
            var r = try tinyRecipe(name: "kill", directory: "\(folder)/\(directory)", steps: steps, textWidth: 64)
            r["checkpoint"] = ["directory": "\(folder)/\(directory)", "every_steps": 1] as [String: Any]
            r["eval"] = ["every_steps": NSNull(), "every_epoch": false] as [String: Any]   // evaluated once, at the end
            r["early_stopping"] = nil
            r["log_every_steps"] = 1
            return try writeRecipe(r, in: folder, file: directory)
        }
        let whole = try run("train", ["--recipe", try recipe("whole")])
        try #require(whole.succeeded, "\(whole)")
        let reference = "\(folder)/whole/kill/last"
        let expectedFiles = Set(try FileManager.default.contentsOfDirectory(atPath: reference))
        let referenceWeights = try SafeTensors.load("\(reference)/model.safetensors")

        func stagingFolders(_ runFolder: String) -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: runFolder)) ?? []).filter { $0.hasPrefix(".last.") }
        }
        let cases = 4
        var landedInSave = 0
        for number in 0..<cases {
            var done = false
            for attempt in 0..<4 where !done {
                // After step k has been saved, time one whole save (its staging folder appearing and
                // going), then kill at a random fraction f ∈ [0, 1.5) of that time after the next
                // save starts: from the first file written to just after the swap.
                let k = Int.random(in: 1...(steps - 5), using: &random)
                let fraction = Double.random(in: 0..<1.5, using: &random)
                let name = "case\(number)-\(attempt)"
                let runFolder = "\(folder)/\(name)/kill"
                let child = try RunningProgram("train", ["--recipe", try recipe(name)])
                let reached = poll(timeout: 300, interval: 0.002) { ((try? savedStep("\(runFolder)/last")) ?? 0) >= k || !child.isRunning }
                var saveSeconds = 0.0
                if reached && child.isRunning {
                    // (The save that reached step k may still be removing the old copy.)
                    _ = poll(timeout: 60, interval: 0.001) { stagingFolders(runFolder).isEmpty || !child.isRunning }
                    _ = poll(timeout: 60, interval: 0.001) { !stagingFolders(runFolder).isEmpty || !child.isRunning }
                    let started = Date()
                    _ = poll(timeout: 60, interval: 0.001) { stagingFolders(runFolder).isEmpty || !child.isRunning }
                    saveSeconds = Date().timeIntervalSince(started)
                    _ = poll(timeout: 60, interval: 0.001) { !stagingFolders(runFolder).isEmpty || !child.isRunning }
                    usleep(useconds_t(fraction * saveSeconds * 1e6))
                }
                let duringSave = !stagingFolders(runFolder).isEmpty
                child.send(SIGKILL)
                let killed = child.wait(timeout: 60)
                guard killed.signaled && killed.status == SIGKILL else {
                    // It finished (or failed) before the kill: not a case; draw again.
                    #expect(killed.succeeded, "train failed before it was killed: \(killed)")
                    print("case \(number): step \(k), f \(fraction): the run ended before the kill; drawn again")
                    continue
                }
                // A checkpoint must have been observed: last/ with a readable state, step ≥ k ≥ 1.
                let saved = try #require(try? savedStep("\(runFolder)/last"), "case \(number) (seed \(seed)): no readable last/trainer_state.json after the kill")
                #expect(saved >= k, "case \(number) (seed \(seed)): last/ went back to step \(saved) < \(k)")
                print(String(format: "case %d: after step %d, killed %.0f%% into a %.0f ms save (%@); last/ holds step %d", number, k, 100 * fraction,
                             1000 * saveSeconds, duringSave ? "staging folder present" : "no staging folder", saved))
                if duringSave { landedInSave += 1 }

                // last/ is whole: every file of a finished checkpoint, weights that load, and an
                // optimizer state from the same step as trainer_state.json.
                let last = "\(runFolder)/last"
                #expect(Set(try FileManager.default.contentsOfDirectory(atPath: last)) == expectedFiles, "case \(number): last/ is not a whole checkpoint")
                let weights = try SafeTensors.load("\(last)/model.safetensors")
                #expect(Set(weights.keys) == Set(referenceWeights.keys) && weights.allSatisfy { $0.value.shape == referenceWeights[$0.key]?.shape })
                let optimizer = try SafeTensors.load("\(last)/optimizer.safetensors")
                let optimizerSteps = Set(optimizer.filter { $0.key.hasSuffix(".step") }.map { Int($0.value.item(Float.self)) })
                #expect(optimizerSteps == [saved], "case \(number): optimizer state is at steps \(optimizerSteps), trainer_state.json at \(saved)")
                _ = try readObject("\(last)/config.json")

                let resumed = try run("train", ["--recipe", try recipe(name), "--resume"])
                try #require(resumed.succeeded, "case \(number) (seed \(seed)): \(resumed)")
                #expect(resumed.stderr.contains("resumed at step \(saved) "), "\(resumed)")
                #expect(!resumed.stderr.contains("step \(saved)/\(steps) ") && resumed.stderr.contains("step \(saved + 1)/\(steps) "), "\(resumed)")
                #expect(try savedStep(last) == steps)
                try expectIdenticalTensors("\(last)/model.safetensors", "\(reference)/model.safetensors")
                #expect(try trainSteps(runFolder) == Array(1...steps), "case \(number): metrics.jsonl steps")
                #expect(stagingFolders(runFolder).isEmpty, "case \(number): staging folders left after the resumed run: \(stagingFolders(runFolder))")
                try? FileManager.default.removeItem(atPath: "\(folder)/\(name)")
                done = true
            }
            #expect(done, "case \(number) (seed \(seed)): every draw ended before the kill")
        }
        print("\(landedInSave) of \(cases) kills landed while a save was in progress")
    }
}
