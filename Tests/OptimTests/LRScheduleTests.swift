import Foundation
import Testing
@testable import Optim

/// Schedules against open_clip's formulas, evaluated independently here at every step.
@Suite("Learning-rate schedules")
struct LRScheduleTests {
    let base = 5e-4

    func warmup(_ step: Int, _ w: Int) -> Double { base * Double(step + 1) / Double(w) }

    @Test func cosineWithWarmup() {
        let s = LRSchedule(.cosine, warmupSteps: 100, totalSteps: 1000)
        for step in 0..<1000 {
            let expected = step < 100 ? warmup(step, 100) : 0.5 * (1 + cos(Double.pi * Double(step - 100) / 900)) * base
            #expect(Swift.abs(s.learningRate(at: step, base: base) - expected) < 1e-15)
        }
        #expect(s.learningRate(at: 0, base: base) == base / 100)
        #expect(s.learningRate(at: 99, base: base) == base)
        #expect(s.learningRate(at: 100, base: base) == base)
        #expect(Swift.abs(s.learningRate(at: 550, base: base) - base / 2) < 1e-15)
        #expect(s.learningRate(at: 1000, base: base) == 0)
    }

    @Test func constantAndConstantCooldown() {
        let c = LRSchedule(.constant, warmupSteps: 10, totalSteps: 100)
        #expect(c.learningRate(at: 4, base: base) == warmup(4, 10))
        #expect((10..<100).allSatisfy { c.learningRate(at: $0, base: base) == base })
        for power in [1.0, 0.5, 2.0] {
            let s = LRSchedule(.constantCooldown(cooldownSteps: 30, power: power, endLR: 1e-5), warmupSteps: 10, totalSteps: 100)
            for step in 0..<100 {
                let expected: Double
                if step < 10 { expected = warmup(step, 10) }
                else if step < 70 { expected = base }
                else { expected = pow(1 - Double(step - 70) / 30, power) * (base - 1e-5) + 1e-5 }
                #expect(Swift.abs(s.learningRate(at: step, base: base) - expected) < 1e-15, "power \(power) step \(step)")
            }
            #expect(Swift.abs(s.learningRate(at: 100, base: base) - 1e-5) < 1e-18)
        }
    }

    @Test func stepAndLinearDecay() {
        let s = LRSchedule(.step(every: 25, gamma: 0.5), warmupSteps: 5, totalSteps: 100)
        #expect(s.learningRate(at: 5, base: base) == base)
        #expect(s.learningRate(at: 29, base: base) == base)
        #expect(s.learningRate(at: 30, base: base) == base / 2)
        #expect(s.learningRate(at: 80, base: base) == base / 8)
        let l = LRSchedule(.linear(endLR: 0), warmupSteps: 0, totalSteps: 200)
        for step in 0...200 { #expect(Swift.abs(l.learningRate(at: step, base: base) - base * (1 - Double(step) / 200)) < 1e-15) }
        #expect(l.learningRate(at: 300, base: base) == 0)
    }

    @Test func invalidParametersAreReported() {
        #expect(LRSchedule(.cosine, warmupSteps: -1, totalSteps: 0).problems.count == 2)
        #expect(LRSchedule(.constantCooldown(cooldownSteps: 500, power: 0, endLR: 0), totalSteps: 100).problems.count == 2)
        #expect(LRSchedule(.step(every: 0, gamma: 0.1), totalSteps: 10).problems.count == 1)
        #expect(LRSchedule(.cosine, warmupSteps: 10, totalSteps: 100).problems.isEmpty)
    }

    /// Cases and torch's answers come from `Scripts/fixtures/optim_fixtures.py` (plateau.json):
    /// thresholds inside and outside, cooldown, the min_lr floor, both modes.
    @Test func reduceOnPlateauAsTorch() throws {
        struct Case: Decodable {
            let mode: String, factor: Double, patience: Int, threshold: Double, cooldown: Int, min_lr: Double
            let losses: [Double], scales: [Double]
        }
        struct Fixture: Decodable { let torch: String; let cases: [Case] }
        let url = try #require(Bundle.module.url(forResource: "plateau", withExtension: "json", subdirectory: "Fixtures"))
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
        #expect(fixture.cases.count == 2)
        for c in fixture.cases {
            var p = ReduceOnPlateau(mode: try #require(ReduceOnPlateau.Mode(rawValue: c.mode)), factor: c.factor, patience: c.patience,
                                    threshold: c.threshold, cooldown: c.cooldown, minScale: c.min_lr)
            var scales: [Double] = []
            for loss in c.losses { p.update(loss); scales.append(p.scale) }
            #expect(scales == c.scales, "torch \(fixture.torch) gives \(c.scales)")
            let restored = try JSONDecoder().decode(ReduceOnPlateau.self, from: JSONEncoder().encode(p))
            #expect(restored == p)
        }
    }
}
