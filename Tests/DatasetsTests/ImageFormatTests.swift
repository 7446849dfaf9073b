import Foundation
import Testing
@testable import Datasets

/// The PNG and WebP fixtures of `Scripts/fixtures/png_fixtures.py`: each file with what
/// transformers' `convert_to_rgb(ImageOps.exif_transpose(Image.open(f)))` gives (Pillow 13).
private enum Images {
    struct Case: Decodable {
        let file: String
        let width: Int
        let height: Int
        let pillow_mode: String?
        let orientation: Int?
        let lossy: Bool?
        let differs_from_pillow: String?
        var name: String { String(file.split(separator: ".")[0]) }
    }

    static let cases: [Case] = {
        let url = URL(fileURLWithPath: Fixture.path("images/meta.json"))
        let json = try! JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        return json.filter { !$0.key.hasPrefix("_") && ($0.value as? [String: Any])?["file"] != nil && ($0.value as? [String: Any])?["expected"] == nil }
            .map { try! JSONDecoder().decode(Case.self, from: JSONSerialization.data(withJSONObject: $0.value)) }
            .sorted { $0.file < $1.file }
    }()

    static func bytes(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixture.path("images/\(name)"))))
    }
}

private func decode(_ bytes: [UInt8], with decoder: ImageDecoder = ImageDecoder()) throws -> RGBImage {
    try bytes.withUnsafeBytes { try decoder.decode($0) }
}

/// A `reason` that mentions every one of `words`.
private func mentions(_ error: ImageDecodeError?, _ words: String...) -> Bool {
    guard let reason = error?.reason else { return false }
    return words.allSatisfy { reason.contains($0) }
}

@Suite("PNG and WebP decoding")
struct ImageFormatTests {
    /// Every colour type and bit depth, tRNS keys and palette alpha, Adam7, eXIf orientation:
    /// PNG is lossless, so every byte must equal Pillow's.
    @Test func pngDecodesExactlyAsTransformersSeesIt() throws {
        let pngs = Images.cases.filter { $0.file.hasSuffix(".png") }
        #expect(pngs.count >= 30)
        let decoder = ImageDecoder()
        for c in pngs {
            let image = try decode(try Images.bytes(c.file), with: decoder)
            let expected = try Images.bytes("\(c.name).rgb")
            #expect(image.width == c.width && image.height == c.height, "\(c.file): \(image.width)×\(image.height)")
            let differing = zip(image.pixels, expected).filter { $0 != $1 }.count
            #expect(image.pixels.count == expected.count, "\(c.file): \(image.pixels.count) bytes, Pillow \(expected.count)")
            #expect(differing == 0, "\(c.file) (Pillow mode \(c.pillow_mode ?? "?")): \(differing) bytes differ")
        }
    }

    /// Pillow's `alpha_composite` onto white, for all 256 × 256 (value, alpha) pairs.
    @Test func alphaCompositeIsPillowsForEveryValueAndAlpha() throws {
        let image = try decode(try Images.bytes("alpha_all.png"))
        let expected = try decode(try Images.bytes("alpha_all.expected.png"))   // plain 8-bit RGB, written by Pillow
        #expect(image.width == 256 && image.height == 256)
        #expect(image == expected)
        // Fully transparent is white, opaque is unchanged.
        #expect(Array(image.pixels[0..<3]) == [255, 255, 255])
        let lastRow = 255 * 256 * 3
        #expect(Array(image.pixels[(lastRow + 10 * 3)..<(lastRow + 11 * 3)]) == [10, 245, UInt8((10 + 255) % 256)])
    }

    /// 16-bit grayscale keeps the high byte, like every other 16-bit PNG; Pillow's conversion
    /// of its `I;16` mode clips to 255 instead, which turns real 16-bit images white.
    @Test func sixteenBitGrayKeepsTheHighByteWherePillowClips() throws {
        for name in ["gray16", "gray16_trns"] {
            let ours = try decode(try Images.bytes("\(name).png"))
            #expect(ours.pixels == (try Images.bytes("\(name).rgb")), "\(name)")
            let pillow = try Images.bytes("\(name).pillow.rgb")
            // Where Pillow is below 255 the value was < 256, whose high byte is 0.
            #expect(zip(ours.pixels, pillow).allSatisfy { $0 == 0 || $1 == 255 }, "\(name)")
            #expect(pillow.filter { $0 == 255 }.count > pillow.count / 2, "\(name): Pillow no longer clips?")
        }
    }

    @Test func webpMatchesPillow() throws {
        let webps = Images.cases.filter { $0.file.hasSuffix(".webp") }
        #expect(webps.count == 6)
        for c in webps {
            let image = try decode(try Images.bytes(c.file))
            let expected = try Images.bytes("\(c.name).rgb")
            #expect(image.width == c.width && image.height == c.height, "\(c.file): \(image.width)×\(image.height)")
            guard image.pixels.count == expected.count else { continue }
            let worst = zip(image.pixels, expected).map { abs(Int($0) - Int($1)) }.max() ?? 0
            if c.lossy == true {
                // Lossy decoding may round differently between libwebp versions (the fixtures come
                // from Pillow's libwebp 1.6; Debian 12 has 1.2.4): at most 2 levels allowed.
                #expect(worst <= 2, "\(c.file): max difference \(worst)")
                print("\(c.file): max difference \(worst) from Pillow's libwebp")
            } else {
                #expect(worst == 0, "\(c.file): max difference \(worst)")
            }
        }
    }

    @Test func headersGiveFormatSizeAndOrientationWithoutDecoding() throws {
        let decoder = ImageDecoder()
        func header(_ name: String) throws -> ImageDecoder.Header {
            let bytes = name.hasSuffix(".jpg") ? [UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixture.path("jpeg/\(name)"))))
                                               : try Images.bytes(name)
            return try bytes.withUnsafeBytes { try decoder.header($0) }
        }
        #expect(try header("rgb8.png") == .init(format: .png, width: 37, height: 23, orientation: 1))
        #expect(try header("exif6.png") == .init(format: .png, width: 37, height: 23, orientation: 6))
        #expect(try header("exif6.png").uprightSize == (23, 37))
        #expect(try header("exif8_after_idat.png").orientation == 8)
        #expect(try header("exif3_prefixed.png").orientation == 3)
        #expect(try header("webp_exif6.webp") == .init(format: .webp, width: 37, height: 23, orientation: 6))
        #expect(try header("webp_lossy.webp") == .init(format: .webp, width: 64, height: 48, orientation: 1))
        #expect(try header("exif6.jpg") == .init(format: .jpeg, width: 80, height: 60, orientation: 6))
    }

    /// What a file is called does not matter: a PNG named `.jpg` is a PNG.
    @Test func formatIsDecidedByContent() throws {
        let folder = temporaryFolder()
        let png = try Images.bytes("rgba8.png"), webp = try Images.bytes("webp_lossless.webp")
        try Data(png).write(to: URL(fileURLWithPath: "\(folder)/actually-png.jpg"))
        try Data(webp).write(to: URL(fileURLWithPath: "\(folder)/no-extension"))
        #expect(png.withUnsafeBytes { ImageFormat.of($0) } == .png)
        #expect(webp.withUnsafeBytes { ImageFormat.of($0) } == .webp)
        let pipeline = ImagePipeline(preprocessing: ImagePreprocessing(size: 16))
        let files = try pipeline.pixels(ofFiles: ["\(folder)/actually-png.jpg", "\(folder)/no-extension"], batchSize: 8)
        #expect(files.count == 1 && files[0].shape == [2, 3, 16, 16])
    }

    @Test func corruptTruncatedAndForeignPayloadsThrowAClearReason() throws {
        let decoder = ImageDecoder()
        let png = try Images.bytes("rgb8_interlaced.png"), webp = try Images.bytes("webp_lossy_alpha.webp")
        func error(_ bytes: [UInt8]) -> ImageDecodeError? {
            #expect(throws: ImageDecodeError.self) { try bytes.withUnsafeBytes { try decoder.decode($0) } }
        }
        var badCRC = png
        badCRC[20] ^= 0x40   // inside IHDR: its CRC no longer matches
        var badData = png
        badData[png.count - 40] ^= 0xFF   // inside the last IDAT
        #expect(mentions(error(Array(png.prefix(png.count / 2))), "PNG", "truncated"))
        #expect(mentions(error(Array(png.prefix(30))), "PNG"))
        #expect(mentions(error(badCRC), "PNG"))
        #expect(mentions(error(badData), "PNG"))
        #expect(mentions(error(Array(webp.prefix(webp.count / 2))), "WebP"))
        #expect(mentions(error(Array(webp.prefix(20))), "WebP"))
        #expect(mentions(error(Array("GIF89a".utf8) + [UInt8](repeating: 0, count: 30)), "not a JPEG, PNG or WebP", "GIF"))
        #expect(mentions(error(Array("BM".utf8) + [UInt8](repeating: 0, count: 30)), "BMP"))
        #expect(mentions(error([0, 0, 0, 0x20] + Array("ftypheic".utf8)), "HEIF"))
        #expect(mentions(error(Array("<!DOCTYPE html>".utf8)), "HTML"))
        #expect(mentions(error(Array("plain text here".utf8)), "starts with 70 6c 61 69"))
        #expect(mentions(error([]), "empty"))
        // Every truncation of a PNG and a WebP either decodes or throws; none traps or hangs.
        for bytes in [png, webp] {
            for cut in stride(from: 0, to: bytes.count, by: 7) {
                _ = try? Array(bytes.prefix(cut)).withUnsafeBytes { try decoder.decode($0) }
            }
        }
        // The decoder still works afterwards.
        #expect(try decode(png, with: decoder).width == 37)
    }

    /// `check` (what `pack` runs) reads the whole image, even of a JPEG it decodes at 1/8 scale.
    @Test func checkFindsDamageAnywhereInTheImage() throws {
        let decoder = ImageDecoder()
        let jpeg = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixture.path("jpeg/photo.jpg"))))
        #expect(try jpeg.withUnsafeBytes { try decoder.check($0) }.format == .jpeg)
        #expect(throws: ImageDecodeError.self) { try Array(jpeg.prefix(jpeg.count - 200)).withUnsafeBytes { try decoder.check($0) } }
        let png = try Images.bytes("rgba16.png")
        #expect(try png.withUnsafeBytes { try decoder.check($0) }.format == .png)
        #expect(throws: ImageDecodeError.self) { try Array(png.prefix(png.count - 30)).withUnsafeBytes { try decoder.check($0) } }
    }

    /// The whole evaluation path on an RGBA PNG equals CLIPImageProcessorPil, which composites
    /// the transparency itself (`do_convert_rgb`).
    @Test func evaluationOfAnRGBAPNGMatchesCLIPImageProcessorPil() throws {
        let bytes = try Images.bytes("rgba8_photo.png")
        let pipeline = ImagePipeline()
        var random = SeededRandom(seed: 0)
        var out = [Float](repeating: 0, count: pipeline.sampleCount)
        try bytes.withUnsafeBytes { b in try out.withUnsafeMutableBufferPointer { try pipeline.process(b, decoder: ImageDecoder(), random: &random, into: $0) } }
        let expected = try Data(contentsOf: URL(fileURLWithPath: Fixture.path("images/rgba_clip_pixel_values.f32"))).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        var worst: Float = 0, index = 0
        for c in 0..<3 { for y in stride(from: 0, to: 224, by: 8) { for x in stride(from: 0, to: 224, by: 8) {
            worst = max(worst, abs(out[(c * 224 + y) * 224 + x] - expected[index]))
            index += 1
        } } }
        #expect(index == expected.count)
        // Decoding and resampling are exact; only float rounding of the normalisation remains.
        #expect(worst <= 1e-5, "max difference \(worst) from transformers' CLIPImageProcessorPil")
    }
}
