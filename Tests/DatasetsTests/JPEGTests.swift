import Foundation
import Testing
@testable import Datasets

private func fixtureBytes(_ name: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixture.path("jpeg/\(name)"))))
}

private struct Meta: Decodable { let width: Int?; let height: Int? }
private func meta(_ name: String) throws -> Meta {
    let all = try JSONDecoder().decode([String: Meta].self, from: Data(contentsOf: URL(fileURLWithPath: Fixture.path("jpeg/meta.json"))))
    return all[name]!
}

/// Largest and mean absolute channel difference between our decode and Pillow's.
private func compareWithPillow(_ name: String) throws -> (max: Int, mean: Double, image: RGBImage) {
    let decoder = JPEGDecoder()
    let image = try fixtureBytes("\(name).jpg").withUnsafeBytes { try decoder.decode($0) }
    let expected = try fixtureBytes("\(name).rgb")
    let m = try meta(name)
    #expect(image.width == m.width && image.height == m.height, "\(name): \(image.width)×\(image.height)")
    guard expected.count == image.pixels.count else { return (255, 255, image) }
    let diffs = zip(image.pixels, expected).map { Swift.abs(Int($0) - Int($1)) }
    return (diffs.max() ?? 0, Double(diffs.reduce(0, +)) / Double(diffs.count), image)
}

@Suite("JPEG decoding")
struct JPEGTests {
    @Test func rgbGrayCMYKAndOrientationMatchPillow() throws {
        for name in ["photo", "gray", "cmyk", "exif6"] {
            let (maxDiff, mean, _) = try compareWithPillow(name)
            // Same libjpeg-turbo algorithms; CMYK conversion rounds slightly differently.
            #expect(maxDiff <= 2, "\(name): max difference \(maxDiff)")
            #expect(mean < 0.5, "\(name): mean difference \(mean)")
        }
        let gray = try compareWithPillow("gray").image
        let isGray = stride(from: 0, to: gray.pixels.count, by: 3).allSatisfy { (i: Int) -> Bool in
            gray.pixels[i] == gray.pixels[i + 1] && gray.pixels[i] == gray.pixels[i + 2]
        }
        #expect(isGray)
    }

    @Test func orientationIsReadFromExif() throws {
        let decoder = JPEGDecoder()
        let header = try fixtureBytes("exif6.jpg").withUnsafeBytes { try decoder.header($0) }
        #expect(header.orientation == 6 && header.width == 80 && header.height == 60)
        #expect(try fixtureBytes("photo.jpg").withUnsafeBytes { try decoder.header($0) }.orientation == 1)
        // All eight orientations undo each other's geometry.
        let image = RGBImage(width: 3, height: 2, pixels: (0..<18).map(UInt8.init))
        #expect(image.oriented(exif: 3).oriented(exif: 3) == image)
        #expect(image.oriented(exif: 6).oriented(exif: 8) == image)
        #expect(image.oriented(exif: 6).width == 2)
        #expect(image.oriented(exif: 5).oriented(exif: 5) == image)
        #expect(image.oriented(exif: 7).oriented(exif: 7) == image)
        #expect(image.oriented(exif: 2).oriented(exif: 2) == image)
    }

    @Test func scaledDecodingPicksTheSmallestScaleThatCovers() throws {
        let decoder = JPEGDecoder()
        let bytes = try fixtureBytes("photo.jpg")   // 200×150
        let half = try bytes.withUnsafeBytes { try decoder.decode($0, atLeast: (90, 70)) }
        #expect(half.width == 100 && half.height == 75)
        let quarter = try bytes.withUnsafeBytes { try decoder.decode($0, atLeast: (40, 30)) }
        #expect(quarter.width == 50 && quarter.height == 38)
        let eighth = try bytes.withUnsafeBytes { try decoder.decode($0, atLeast: (10, 10)) }
        #expect(eighth.width == 25 && eighth.height == 19)
        // Less than 2× smaller: full size.
        let full = try bytes.withUnsafeBytes { try decoder.decode($0, atLeast: (120, 90)) }
        #expect(full.width == 200)
    }

    @Test func corruptTruncatedAndForeignPayloadsThrow() throws {
        let decoder = JPEGDecoder()
        let bytes = try fixtureBytes("photo.jpg")
        let cases: [(String, [UInt8])] = [
            ("empty", []), ("text", Array("not an image at all".utf8)), ("png", [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]),
            ("truncated", Array(bytes.prefix(bytes.count / 2))), ("header only", Array(bytes.prefix(200))),
            ("garbage body", Array(bytes.prefix(700)) + [UInt8](repeating: 0x55, count: 4000)),
        ]
        for (name, payload) in cases {
            #expect(throws: ImageDecodeError.self, "\(name)") { try payload.withUnsafeBytes { try decoder.decode($0) } }
        }
        // The decoder is still usable afterwards.
        #expect(try bytes.withUnsafeBytes { try decoder.decode($0) }.width == 200)
    }

    @Test func encodeDecodeRoundTrip() throws {
        let image = RGBImage(width: 16, height: 8, fill: (200, 100, 50))
        let encoded = try JPEGEncoder().encode(image, quality: 95)
        let decoded = try encoded.withUnsafeBytes { try JPEGDecoder().decode($0) }
        #expect(decoded.width == 16 && decoded.height == 8)
        #expect(zip(decoded.pixels, image.pixels).allSatisfy { Swift.abs(Int($0) - Int($1)) <= 3 })
    }
}
