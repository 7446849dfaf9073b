// Watching a run from the command line (issue 21): --metrics-port, --metrics-host, --tensorboard.
import Foundation
import Testing
import TestSupport

@Suite("Monitoring in processes", .serialized)
struct MonitoringProgramTests {
    /// A port another server holds stops `train` before anything loads or is written.
    @Test func aBusyMetricsPortStopsTheRunAtStart() throws {
        let folder = temporaryFolder()
        let path = try writeRecipe(try tinyRecipe(name: "busy", directory: "\(folder)/runs", steps: 2), in: folder, file: "busy")
        let holder = loopbackSocket(listen: true)
        defer { close(holder.fd) }
        try #require(holder.fd >= 0)
        let busy = try run("train", ["--recipe", path, "--metrics-port", "\(holder.port)"], in: folder)
        #expect(busy.status == 1, "\(busy)")
        #expect(busy.stderr.contains("127.0.0.1:\(holder.port)") && busy.stderr.contains("in use") && busy.stderr.contains("--metrics-port"), "\(busy)")
        #expect(!exists("\(folder)/runs/busy"), "the run started anyway")
        let badPort = try run("train", ["--recipe", path, "--metrics-port", "70000"], in: folder)
        #expect(badPort.status != 0 && badPort.stderr.contains("monitoring.prometheus_port") && badPort.stderr.contains("65535"), "\(badPort)")
    }

    /// Two ranks: each serves its own endpoint at the recipe's port + its local rank, and rank 0
    /// alone writes the TensorBoard file, which holds metrics.jsonl's steps.
    @Test func eachRankServesItsOwnEndpoint() throws {
        let folder = temporaryFolder()
        var recipe = try tinyRecipe(name: "ranks", directory: "\(folder)/runs", steps: 4)
        recipe["data"] = ["train": ["shards": try Fixtures.trainShards], "val": ["shards": try Fixtures.valShards], "batch_size": 8, "threads": 1] as [String: Any]
        recipe["early_stopping"] = nil
        let path = try writeRecipe(recipe, in: folder, file: "ranks")
        // Two free ports in a row.
        var base = freePort()
        while !portIsFree(base + 1) { base = freePort() }
        let result = try run("train", ["--recipe", path, "--nproc-per-node", "2", "--metrics-port", "\(base)", "--tensorboard"],
                             in: folder, environment: ["OMP_NUM_THREADS": "1"])
        try #require(result.succeeded, "\(result)")
        #expect(result.stderr.contains("rank 0 metrics: http://127.0.0.1:\(base)/metrics"), "\(result)")
        #expect(result.stderr.contains("rank 1 metrics: http://127.0.0.1:\(base + 1)/metrics"), "\(result)")
        let runFolder = "\(folder)/runs/ranks"
        let files = try FileManager.default.contentsOfDirectory(atPath: runFolder).filter { $0.hasPrefix("events.out.tfevents.") }
        #expect(files.count == 1, "\(files)")
        #expect(result.stderr.components(separatedBy: "tensorboard: \(runFolder)/events.out.tfevents.").count == 2, "rank 0 alone writes events\n\(result)")
        let scalars = try readWithTensorBoard(runFolder)
        #expect(scalars["train/loss"]?.map(\.step) == (try trainSteps(runFolder)))
        #expect(scalars["eval/image_to_text_R@1"]?.map(\.step) == [4])
    }
}
