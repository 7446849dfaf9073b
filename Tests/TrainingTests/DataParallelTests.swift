import Foundation
import Testing
import Datasets
import Models
import NN
import Torch
@testable import Training

/// Data-parallel training equals one process with the global batch (issue 18): 2 ranks ×
/// batch 16 against 1 × 32, on threads standing in for processes.
@Suite("Data parallel", .serialized)
struct DataParallelTests {
    static func compare(_ name: String, extra: [String], steps: Int = 20, distill: Bool = false) throws {
        let runs = temporaryFolder()
        var teacher: [String] = []
        if distill {
            try Trainer(try RunBuilder.contrastive(try tinyRecipe(runs, name: "teacher", steps: 2, extra: ["early_stopping=null"]), resolved: nil), resume: false).run()
            teacher = [#"distill={"teacher": "\#(runs)/teacher/last", "feature_weight": 1, "logit_weight": 1}"#]
        }
        let common = ["early_stopping=null", "eval.every_steps=10", "checkpoint.every_steps=null", "log_every_steps=1"] + teacher + extra
        func setup(_ recipe: Recipe, group: (any DataParallelGroup)?) throws -> TrainingSetup {
            distill ? try RunBuilder.distillation(recipe, resolved: recipe.resolvedJSON(), group: group).setup
                    : try RunBuilder.contrastive(recipe, resolved: recipe.resolvedJSON(), group: group)
        }
        let single = try setup(try tinyRecipe(runs, name: "\(name)-one", steps: steps, extra: common + ["data.batch_size=32"]), group: nil)
        let hub = ThreadGroupHub(size: 2)
        let recipe = try tinyRecipe(runs, name: "\(name)-two", steps: steps, extra: common + ["data.batch_size=16"])
        let setups = try (0..<2).map { try setup(recipe, group: hub.group($0)) }
        // One starting point for both runs: rank 0's initialisation (the one the ranks broadcast).
        // Seeding alone is not enough while other tests draw from libtorch's global generator.
        try single.model.load(Dictionary(uniqueKeysWithValues: setups[0].model.stateDict().map { ($0.name, $0.tensor) }))
        if let heads = single.objective.trainingHeads, let rankHeads = setups[0].objective.trainingHeads {
            try heads.load(Dictionary(uniqueKeysWithValues: rankHeads.stateDict().map { ($0.name, $0.tensor) }))
        }
        try Trainer(single, resume: false).run()
        nonisolated(unsafe) let shared = setups
        _ = try onThreads(2) { rank in try Trainer(shared[rank], resume: false).run() }

        let one = try weights("\(runs)/\(name)-one/last"), two = try weights("\(runs)/\(name)-two/last")
        #expect(Set(one.keys) == Set(two.keys))
        var worst = 0.0
        for (key, a) in one { worst = max(worst, (a - two[key]!).abs().max().item(Double.self)) }
        #expect(worst < 1e-5, "\(name): largest weight difference after \(steps) steps: \(worst)")
        let logOne = try MetricsLog.read("\(runs)/\(name)-one/metrics.jsonl").filter { $0.kind == .train }
        let logTwo = try MetricsLog.read("\(runs)/\(name)-two/metrics.jsonl").filter { $0.kind == .train }
        #expect(logOne.count == steps && logTwo.count == steps, "rank 0 alone writes the log")
        for (a, b) in zip(logOne, logTwo) {
            #expect(abs(a.values["loss"]! - b.values["loss"]!) <= 1e-4 * max(1, abs(a.values["loss"]!)), "step \(a.step): \(a.values["loss"]!) vs \(b.values["loss"]!)")
        }
    }

    @Test func clipLossOverTwoProcessesEqualsOneWithTheGlobalBatch() throws { try Self.compare("clip", extra: []) }

    @Test func sigLIPOverTwoProcessesEqualsOne() throws { try Self.compare("siglip", extra: [#"loss={"type": "siglip"}"#]) }

    @Test func accumulationOverTwoProcessesEqualsOne() throws { try Self.compare("accumulation", extra: ["optimizer.accumulation_steps=2"], steps: 8) }

    @Test func distillationOverTwoProcessesEqualsOne() throws { try Self.compare("distill", extra: [], steps: 12, distill: true) }
}
