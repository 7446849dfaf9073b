import Foundation
import Testing
@testable import Datasets

@Suite("Image pipeline")
struct ImagePipelineTests {
    @Test func evaluationPathMatchesCLIPImageProcessorPil() throws {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixture.path("jpeg/photo.jpg"))))
        let pipeline = ImagePipeline()
        var random = SeededRandom(seed: 0)
        var out = [Float](repeating: 0, count: pipeline.sampleCount)
        try bytes.withUnsafeBytes { b in try out.withUnsafeMutableBufferPointer { try pipeline.process(b, decoder: ImageDecoder(), random: &random, into: $0) } }
        let expected = try Data(contentsOf: URL(fileURLWithPath: Fixture.path("jpeg/photo_clip_pixel_values.f32"))).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        // The fixture keeps every 4th row and column of the 3×224×224 output.
        var worst: Float = 0
        var index = 0
        for c in 0..<3 { for y in stride(from: 0, to: 224, by: 4) { for x in stride(from: 0, to: 224, by: 4) {
            worst = Swift.max(worst, Swift.abs(out[(c * 224 + y) * 224 + x] - expected[index]))
            index += 1
        } } }
        #expect(index == expected.count)
        // Resampling is Pillow-exact; the JPEG decoders (libjpeg-turbo 2.1 here, Pillow's bundled
        // 3.x) may differ by one level, which is 1/255/std ≈ 0.015 in normalised units.
        #expect(worst <= 0.016, "max difference \(worst) from transformers' CLIPImageProcessorPil")
    }

    @Test func randomResizedCropFollowsTorchvision() {
        let crop = ImageAugmentation.RandomResizedCrop(scale: [0.5, 1.0], ratio: [0.75, 4.0 / 3.0])
        var random = SeededRandom(seed: 1)
        for _ in 0..<500 {
            let box = ImagePipeline.randomResizedCropBox(width: 400, height: 300, crop, &random)
            #expect(box.x >= 0 && box.y >= 0 && box.x + box.width <= 400 && box.y + box.height <= 300)
            let area = Double(box.width * box.height) / 120_000
            #expect(area >= 0.49 && area <= 1.0)
        }
        var a = SeededRandom(seed: 5), b = SeededRandom(seed: 5)
        #expect(ImagePipeline.randomResizedCropBox(width: 64, height: 64, crop, &a) == ImagePipeline.randomResizedCropBox(width: 64, height: 64, crop, &b))
    }

    /// Where no draw can succeed, torchvision falls back to a centre crop at the ratio limit; the
    /// boxes come from torchvision itself (`Scripts/fixtures/augmentation_fixtures.py`).
    @Test func randomResizedCropFallbackIsTorchvisions() throws {
        struct Case: Decodable { let width: Int, height: Int; let scale: [Double], ratio: [Double]; let box: [Int] }
        struct Answers: Decodable { let torchvision: String; let random_resized_crop_fallback: [Case] }
        let fixture = try JSONDecoder().decode(Answers.self, from: Data(contentsOf: URL(fileURLWithPath: Fixture.path("augmentation.json"))))
        #expect(fixture.random_resized_crop_fallback.count == 5)
        for c in fixture.random_resized_crop_fallback {
            for seed in 0..<20 as Range<UInt64> {
                var random = SeededRandom(seed: seed)
                let box = ImagePipeline.randomResizedCropBox(width: c.width, height: c.height,
                                                             ImageAugmentation.RandomResizedCrop(scale: c.scale, ratio: c.ratio), &random)
                #expect([box.x, box.y, box.width, box.height] == c.box, "\(c.width)x\(c.height) scale \(c.scale) ratio \(c.ratio): torchvision \(fixture.torchvision) gives \(c.box)")
            }
        }
    }

    /// Augmentation without a random crop (here a flip that never fires) trains on the region
    /// evaluation sees — the centre crop —, not the whole photo squashed into a square.
    @Test func augmentationWithoutCropKeepsTheCentreCrop() throws {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixture.path("jpeg/photo.jpg"))))
        func run(_ augmentation: ImageAugmentation?) throws -> [Float] {
            let pipeline = ImagePipeline(preprocessing: ImagePreprocessing(size: 64), augmentation: augmentation, scaledDecoding: false)
            var random = SeededRandom(seed: 1)
            var out = [Float](repeating: 0, count: pipeline.sampleCount)
            try bytes.withUnsafeBytes { b in try out.withUnsafeMutableBufferPointer { try pipeline.process(b, decoder: ImageDecoder(), random: &random, into: $0) } }
            return out
        }
        let evaluation = try run(nil), augmented = try run(ImageAugmentation(randomResizedCrop: nil, horizontalFlip: 0))
        let mean = zip(evaluation, augmented).map { Swift.abs($0 - $1) }.reduce(0, +) / Float(evaluation.count)
        // One resampling of the crop box against resize-then-crop: the same region, a little
        // apart in rounding; a squashed photo is about 0.3 apart on average.
        #expect(mean < 0.03, "mean difference \(mean) from the evaluation path")
    }

    @Test func augmentationsAreDeterministicAndBounded() throws {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixture.path("jpeg/photo.jpg"))))
        let augmentation = ImageAugmentation(horizontalFlip: 0.5, rotation: .init(probability: 1, degrees: 30, fill: [0, 0, 0]),
                                             colorJitter: .init(probability: 1, brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1))
        let pipeline = ImagePipeline(preprocessing: ImagePreprocessing(size: 64), augmentation: augmentation)
        func run(_ seed: UInt64) throws -> [Float] {
            var random = SeededRandom(seed: seed, epoch: 0, index: 0)
            var out = [Float](repeating: 0, count: pipeline.sampleCount)
            try bytes.withUnsafeBytes { b in try out.withUnsafeMutableBufferPointer { try pipeline.process(b, decoder: ImageDecoder(), random: &random, into: $0) } }
            return out
        }
        let a = try run(1), b = try run(1), c = try run(2)
        #expect(a == b)
        #expect(a != c)
        let low = Float((0 - ImagePreprocessing.clipMean[0]) / ImagePreprocessing.clipStd[0]) - 0.01
        let high = Float((1 - ImagePreprocessing.clipMean[2]) / ImagePreprocessing.clipStd[2]) + 0.01
        #expect(a.allSatisfy { $0 >= low && $0 <= high }, "normalised values outside [\(low), \(high)]")
        #expect(a.allSatisfy { $0 >= low && $0 <= high })
    }

    @Test func flipAndRotationGeometry() {
        var image = RGBImage(width: 3, height: 1, pixels: [1, 1, 1, 2, 2, 2, 3, 3, 3])
        #expect(image.flippedHorizontally().pixels == [3, 3, 3, 2, 2, 2, 1, 1, 1])
        image = RGBImage(width: 7, height: 7, fill: (10, 20, 30))
        #expect(image.rotated(degrees: 0, fill: (0, 0, 0)) == image)
        let turned = image.rotated(degrees: 45, fill: (255, 0, 0))
        #expect(Array(turned.pixels[0..<3]) == [255, 0, 0])            // corner uncovered → fill
        #expect(Array(turned.pixels[72..<75]) == [10, 20, 30])         // centre unchanged
    }

    @Test func configurationProblemsAreListed() throws {
        #expect(ImagePreprocessing(size: 0).problems.count == 1)
        let folder = temporaryFolder()
        try #"{"crop_size": {"height": 336, "width": 336}, "size": {"shortest_edge": 336}, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}"#
            .write(toFile: "\(folder)/preprocessor_config.json", atomically: true, encoding: .utf8)
        let p = try ImagePreprocessing.huggingFace(configAt: "\(folder)/preprocessor_config.json")
        #expect(p.size == 336 && p.shortestEdge == 336 && p.mean == [0.5, 0.5, 0.5])
    }
}
