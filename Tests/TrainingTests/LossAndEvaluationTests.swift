import Foundation
import Testing
import Torch
@testable import Training

@Suite("Losses and evaluation metrics")
struct LossAndEvaluationTests {
    @Test func clipLossIsSymmetricCrossEntropy() {
        let image = Tensor.randn([4, 8], dtype: .float64), text = Tensor.randn([4, 8], dtype: .float64)
        let scale = Tensor(scalar: 2.0)
        let loss = clipLoss(imageFeatures: image, textFeatures: text, logitScale: scale).item(Double.self)
        // By hand, in float64.
        let i = image.toArray(Double.self), t = text.toArray(Double.self)
        func unit(_ v: ArraySlice<Double>) -> [Double] { let n = v.reduce(0) { $0 + $1 * $1 }.squareRoot(); return v.map { $0 / n } }
        let ii = (0..<4).map { unit(i[($0 * 8)..<($0 * 8 + 8)]) }, tt = (0..<4).map { unit(t[($0 * 8)..<($0 * 8 + 8)]) }
        let logits = (0..<4).map { a in (0..<4).map { b in Foundation.exp(2.0) * zip(ii[a], tt[b]).reduce(0) { $0 + $1.0 * $1.1 } } }
        func ce(_ rows: [[Double]]) -> Double {
            rows.enumerated().reduce(0) { acc, r in acc - r.element[r.offset] + Foundation.log(r.element.reduce(0) { $0 + Foundation.exp($1) }) } / Double(rows.count)
        }
        let transposed = (0..<4).map { b in (0..<4).map { a in logits[a][b] } }
        #expect(Swift.abs(loss - (ce(logits) + ce(transposed)) / 2) < 1e-4)   // logits are computed in fp32
    }

    @Test func sigLIPLossMatchesItsFormula() {
        let siglip = SigLIPLoss(biasInit: -1)
        let image = Tensor.randn([3, 5]), text = Tensor.randn([3, 5])
        let loss = siglip(imageFeatures: image, textFeatures: text, logitScale: Tensor(scalar: Float(1))).item(Double.self)
        let logits = contrastiveLogits(image, text, logitScale: Tensor(scalar: Float(1))) + siglip.logitBias
        let signs = Tensor.eye(3) * 2.0 - 1.0
        let expected = (logits * signs).sigmoid().log().sum().neg().item(Double.self) / 3
        #expect(Swift.abs(loss - expected) < 1e-5)
    }

    @Test func retrievalMetricsCountRanks() {
        // Image i matches text i except images 2 and 3, whose captions are swapped.
        let image = Tensor.eye(4)
        let text = Tensor.eye(4).indexSelect(dim: 0, index: Tensor([0, 1, 3, 2]))
        let m = Evaluation.retrievalMetrics(imageFeatures: image, textFeatures: text, logitScale: Tensor(scalar: Float(1)))
        #expect(m["image_to_text_R@1"] == 0.5)
        #expect(m["text_to_image_R@1"] == 0.5)
        #expect(m["image_to_text_R@5"] == 1.0)
        // Ranks: 1, 1, 2 (ties count in favour), 2 → mean 1.5, median floor(1.5)+... as open_clip.
        #expect(m["image_to_text_mean_rank"] == 1.5)
        #expect(m["image_to_text_median_rank"] == 1.0)
    }

    @Test func zeroShotAccuracy() {
        let classes = ZeroShotClasses(classes: ["a", "b", "c"], templates: ["{}"])
        let classifier = Tensor.eye(3)
        let images = Tensor([1.0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0.9, 0.1] as [Float], shape: [4, 3])
        let m = Evaluation.zeroShotMetrics(imageFeatures: images, labels: ["a", "b", "c", nil], classifier: classifier, classes: classes)
        #expect(Swift.abs(m["zeroshot_top1"]! - 2.0 / 3.0) < 1e-12)
        #expect(m["zeroshot_top5"] == 1.0)
    }

    @Test func classesFileIsValidated() throws {
        let folder = temporaryFolder()
        try #"{"classes": ["x"], "templates": ["no placeholder"]}"#.write(toFile: "\(folder)/c.json", atomically: true, encoding: .utf8)
        #expect(throws: (any Error).self) { try ZeroShotClasses.load("\(folder)/c.json") }
        let shapes = try ZeroShotClasses.load("\(repositoryRoot)/Data/shapes/classes.json")
        #expect(shapes.classes.count == 8 && shapes.templates.count == 5)
    }
}
