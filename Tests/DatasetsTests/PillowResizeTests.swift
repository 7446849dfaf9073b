import Foundation
import Testing
@testable import Datasets

/// Pillow's own outputs, from `Scripts/fixtures/pillow_resize_fixtures.py`: `pillow_resize.json`
/// indexes raw HWC RGB bytes in `pillow_resize.rgb` (inputs and expected outputs).
struct PillowResizeFixtures: Sendable {
    struct Placement: Decodable, Sendable {
        let offset: Int
        let width: Int
        let height: Int
    }

    struct Case: Decodable, Sendable, CustomTestStringConvertible {
        let name: String
        /// "resize" (`Image.resize`) or "shortest_crop" (HF's PIL-backend CLIP processor).
        let kind: String
        let image: String
        let filter: String
        let box: [Double]?
        let shortest: Int?
        let crop: Int?
        let expected: Placement
        var testDescription: String { name }
    }

    struct Index: Decodable, Sendable {
        let pillow: String
        let images: [String: Placement]
        let cases: [Case]
    }

    let index: Index
    let blob: [UInt8]

    static let shared: PillowResizeFixtures = {
        func read(_ name: String) -> Data {
            guard let bytes = FileManager.default.contents(atPath: Fixture.path(name)) else {
                fatalError("missing fixture \(name): run Scripts/fixtures/pillow_resize_fixtures.py")
            }
            return bytes
        }
        let index = try! JSONDecoder().decode(Index.self, from: read("pillow_resize.json"))
        return PillowResizeFixtures(index: index, blob: [UInt8](read("pillow_resize.rgb")))
    }()

    func image(_ p: Placement) -> RGBImage {
        let bytes = p.width * p.height * 3
        precondition(p.offset + bytes <= blob.count, "fixture blob too short")
        return RGBImage(width: p.width, height: p.height, pixels: Array(blob[p.offset..<p.offset + bytes]))
    }

    func input(of c: Case) -> RGBImage { image(index.images[c.image]!) }
}

/// Per-channel differences between two images of the same size.
struct ChannelDifference {
    var maxAbs = 0
    var differing = 0
    var beyondOne = 0
    var total = 0

    init(_ a: RGBImage, _ b: RGBImage) {
        precondition(a.pixels.count == b.pixels.count)
        total = a.pixels.count
        for (x, y) in zip(a.pixels, b.pixels) {
            let d = abs(Int(x) - Int(y))
            maxAbs = max(maxAbs, d)
            if d > 0 { differing += 1 }
            if d > 1 { beyondOne += 1 }
        }
    }

    var fractionWithinOne: Double { Double(total - beyondOne) / Double(total) }
}

private func filter(named name: String) -> ResampleFilter {
    switch name {
    case "bicubic": .bicubic
    case "bilinear": .bilinear
    default: fatalError("unknown filter \(name) in fixture")
    }
}

private func run(_ c: PillowResizeFixtures.Case, on input: RGBImage) -> RGBImage {
    switch c.kind {
    case "resize":
        let box = c.box.map { (x0: $0[0], y0: $0[1], x1: $0[2], y1: $0[3]) }
        return input.resized(width: c.expected.width, height: c.expected.height, filter: filter(named: c.filter), box: box)
    case "shortest_crop":
        return input.resizedShortestSide(to: c.shortest!, filter: filter(named: c.filter))
            .centerCropped(width: c.crop!, height: c.crop!)
    default:
        fatalError("unknown case kind \(c.kind) in fixture")
    }
}

/// An image whose bytes encode their own position, so crops can be checked by content.
private func coordinateImage(width: Int, height: Int) -> RGBImage {
    var pixels = [UInt8]()
    pixels.reserveCapacity(width * height * 3)
    for y in 0..<height {
        for x in 0..<width {
            pixels.append(UInt8(truncatingIfNeeded: x))
            pixels.append(UInt8(truncatingIfNeeded: y))
            pixels.append(UInt8(truncatingIfNeeded: x + y))
        }
    }
    return RGBImage(width: width, height: height, pixels: pixels)
}

@Suite("Pillow-exact resize")
struct PillowResizeTests {
    @Test("matches Pillow 13 byte for byte", arguments: PillowResizeFixtures.shared.index.cases)
    func matchesPillow(_ c: PillowResizeFixtures.Case) {
        let fixtures = PillowResizeFixtures.shared
        let expected = fixtures.image(c.expected)
        let actual = run(c, on: fixtures.input(of: c))
        #expect(actual.width == expected.width && actual.height == expected.height)
        guard actual.pixels.count == expected.pixels.count else { return }
        let diff = ChannelDifference(actual, expected)
        #expect(diff.fractionWithinOne >= 0.999, "\(c.name): only \(diff.fractionWithinOne) of channels within 1")
        // Exact on every case: any drift from Pillow's arithmetic is a regression.
        #expect(diff.differing == 0, "\(c.name): \(diff.differing)/\(diff.total) channels differ, max |diff| \(diff.maxAbs)")
    }

    @Test("fixtures cover the interesting paths and are discriminative")
    func fixtureSanity() {
        let fixtures = PillowResizeFixtures.shared
        #expect(fixtures.index.pillow == "13.0.0")
        let names = Set(fixtures.index.cases.map(\.name))
        for required in ["noise_odd_bicubic", "noise_box_bicubic", "noise_vertical_only_bicubic",
                         "noise_horizontal_only_bicubic", "mixed_up_bicubic", "hf_clip_noise",
                         "tall_vertical_first_bicubic", "tall_order_tie_horizontal_first"] {
            #expect(names.contains(required), "missing fixture case \(required)")
        }
        // Bilinear and bicubic results must differ clearly, or an exact match would prove little.
        let byName = Dictionary(uniqueKeysWithValues: fixtures.index.cases.map { ($0.name, $0) })
        let bicubic = fixtures.image(byName["noise_half_bicubic"]!.expected)
        let bilinear = fixtures.image(byName["noise_half_bilinear"]!.expected)
        #expect(ChannelDifference(bicubic, bilinear).differing > bicubic.pixels.count / 2)
    }

    @Test("same size and whole box is a copy")
    func identity() {
        let image = coordinateImage(width: 9, height: 7)
        #expect(image.resized(width: 9, height: 7) == image)
        #expect(image.resized(width: 9, height: 7, box: (0, 0, 9, 7)) == image)
    }

    /// Pillow's answers from `Scripts/fixtures/augmentation_fixtures.py`.
    @Test("an empty source resizes to black, as in Pillow")
    func emptySource() throws {
        struct Case: Decodable { let width: Int, height: Int; let size: [Int]; let pixels: [UInt8] }
        struct Answers: Decodable { let pillow: String; let empty_resize: [Case] }
        let fixture = try JSONDecoder().decode(Answers.self, from: Data(contentsOf: URL(fileURLWithPath: Fixture.path("augmentation.json"))))
        #expect(fixture.empty_resize.count == 3)
        for c in fixture.empty_resize {
            let empty = RGBImage(width: c.width, height: c.height, pixels: [])
            #expect(empty.resized(width: c.size[0], height: c.size[1]).pixels == c.pixels, "\(c.width)x\(c.height), Pillow \(fixture.pillow)")
        }
    }

    @Test("an integral box of the output's size is a crop")
    func integralBoxIsCrop() {
        let image = coordinateImage(width: 20, height: 10)
        let out = image.resized(width: 5, height: 4, box: (x0: 3, y0: 2, x1: 8, y1: 6))
        #expect(out == image.cropped(x: 3, y: 2, width: 5, height: 4))
        #expect(out.pixels[0] == 3 && out.pixels[1] == 2)
    }

    @Test("a constant image stays constant")
    func constant() {
        let image = RGBImage(width: 31, height: 17, fill: (200, 3, 255))
        for filter in [ResampleFilter.bicubic, .bilinear] {
            for (w, h) in [(7, 5), (31, 40), (64, 9)] {
                #expect(image.resized(width: w, height: h, filter: filter) == RGBImage(width: w, height: h, fill: (200, 3, 255)))
            }
        }
    }

    /// Hugging Face's `get_resize_output_image_size(image, 224, default_to_square=False)`,
    /// as (width, height) in and out, recorded from transformers 5.23.
    @Test("shortest-side size follows Hugging Face's rounding", arguments: [
        (640, 480, 298, 224), (480, 640, 224, 298), (224, 224, 224, 224), (500, 333, 336, 224),
        (333, 500, 224, 336), (1000, 3, 74666, 224), (300, 200, 336, 224), (97, 61, 356, 224),
        (1920, 1080, 398, 224), (1080, 1920, 224, 398), (350, 300, 261, 224), (7, 5, 313, 224),
    ])
    func shortestSideSize(_ sizes: (Int, Int, Int, Int)) {
        let size = RGBImage.shortestSideSize(width: sizes.0, height: sizes.1, shortest: 224)
        #expect(size.width == sizes.2 && size.height == sizes.3)
    }

    @Test("640×480 → 298×224 → centre 224×224")
    func clipPipelineShape() {
        let image = coordinateImage(width: 640, height: 480)
        let resized = image.resizedShortestSide(to: 224)
        #expect(resized.width == 298 && resized.height == 224)
        let cropped = resized.centerCropped(width: 224, height: 224)
        #expect(cropped.width == 224 && cropped.height == 224)
        // HF's left offset is (298 - 224) // 2 = 37.
        #expect(cropped == resized.cropped(x: 37, y: 0, width: 224, height: 224))
    }

    @Test("centre crop offsets floor like Python's //")
    func centerCropOffsets() {
        let image = coordinateImage(width: 11, height: 8)
        let out = image.centerCropped(width: 4, height: 3)
        // left = (11 - 4) // 2 = 3, top = (8 - 3) // 2 = 2
        #expect(out.width == 4 && out.height == 3)
        #expect(out.pixels[0] == 3 && out.pixels[1] == 2)
        #expect(out == image.cropped(x: 3, y: 2, width: 4, height: 3))
    }

    /// HF's `center_crop` pads with zeros when the crop is larger; recorded from transformers 5.23
    /// for a 5×3 image whose red channel is 1 + 3 * (y * 5 + x).
    @Test("a crop larger than the image is padded like Hugging Face's")
    func centerCropPadding() {
        let pixels = (0..<(5 * 3 * 3)).map { UInt8($0 + 1) }
        let image = RGBImage(width: 5, height: 3, pixels: pixels)
        let red: (RGBImage) -> [UInt8] = { img in stride(from: 0, to: img.pixels.count, by: 3).map { img.pixels[$0] } }

        let big = image.centerCropped(width: 8, height: 6)
        #expect(big.width == 8 && big.height == 6)
        #expect(red(big) == [
            0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 1, 4, 7, 10, 13, 0,
            0, 0, 16, 19, 22, 25, 28, 0,
            0, 0, 31, 34, 37, 40, 43, 0,
            0, 0, 0, 0, 0, 0, 0, 0,
        ])

        let wide = image.centerCropped(width: 8, height: 2)
        #expect(red(wide) == [
            0, 0, 1, 4, 7, 10, 13, 0,
            0, 0, 16, 19, 22, 25, 28, 0,
        ])
    }
}
