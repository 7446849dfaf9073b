import Foundation
import Testing
@testable import Training

@Suite("Early stopping")
struct EarlyStoppingTests {
    @Test func maxModeWithPatienceAndMinDelta() {
        var e = EarlyStopping(metric: "image_to_text_R@1", mode: .max, patience: 3, minDelta: 0.01)
        #expect(e.update(0.40, step: 100) == .improved)
        #expect(e.update(0.405, step: 200) == .wait(remaining: 2))   // below min_delta
        #expect(e.update(0.42, step: 300) == .improved)
        #expect(e.update(0.41, step: 400) == .wait(remaining: 2))
        #expect(e.update(.nan, step: 500) == .wait(remaining: 1))
        #expect(e.update(0.425, step: 600) == .stop)
        #expect(e.best == 0.42 && e.bestStep == 300)
    }

    @Test func minModeAndRoundTrip() throws {
        var e = EarlyStopping(metric: "clip_val_loss", mode: .min, patience: 1)
        #expect(e.update(2.0, step: 1) == .improved)
        #expect(e.update(1.5, step: 2) == .improved)
        let saved = try JSONEncoder().encode(e)
        var restored = try JSONDecoder().decode(EarlyStopping.self, from: saved)
        #expect(restored == e)
        #expect(restored.update(1.6, step: 3) == .stop)
        #expect(restored.bestStep == 2)
    }
}
