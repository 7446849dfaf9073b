import Foundation
import Testing
@testable import Datasets

private func bytes(_ fixture: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixture.path(fixture))))
}

/// The message decoding `payload` fails with: its header, else the full decode.
private func message(_ payload: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> String? {
    let decoder = ImageDecoder()
    do {
        _ = try payload.withUnsafeBytes { try decoder.header($0) }
        _ = try payload.withUnsafeBytes { try decoder.decode($0) }
        Issue.record("\(payload.count) bytes decoded", sourceLocation: sourceLocation)
        return nil
    } catch {
        return "\(error)"
    }
}

/// A PNG with a valid signature and IHDR (CRC included) claiming `width`×`height`, then a
/// token IDAT and IEND.
private func pngHeader(width: UInt32, height: UInt32) -> [UInt8] {
    func be(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
    func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        return be(UInt32(data.count)) + body + be(crc32(body))
    }
    return PNGDecoder.signature + chunk("IHDR", be(width) + be(height) + [8, 2, 0, 0, 0]) + chunk("IDAT", [0x78, 0x9C, 0x03, 0, 0, 0, 0, 1]) + chunk("IEND", [])
}

/// zlib's CRC-32 (PNG chunk checksums).
func crc32(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for b in bytes {
        crc ^= UInt32(b)
        for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return ~crc
}

@Suite("Image and file messages in the user's terms")
struct ImageMessageTests {
    /// Issue 16: a 40-byte JPEG was "a JPEG of 0×0 pixels". It is a truncated (or corrupt) file;
    /// so are its neighbours — a few bytes of any format, a header without data.
    @Test func truncatedImagesSayTheyAreTruncated() throws {
        let jpeg = try bytes("jpeg/photo.jpg"), png = try bytes("images/rgb8.png"), webp = try bytes("images/webp_lossy.webp")
        for (name, payload) in [("JPEG", Array(jpeg.prefix(40))), ("JPEG", Array(jpeg.prefix(200))), ("PNG", Array(png.prefix(40))),
                                ("PNG", Array(png.prefix(60))), ("WebP", Array(webp.prefix(20))), ("WebP", Array(webp.prefix(40)))] {
            let text = message(payload) ?? ""
            #expect(text.hasPrefix("corrupt or truncated \(name) (\(payload.count) bytes): "), "\(payload.count) bytes of \(name): \(text)")
            #expect(!text.contains("0×0"), "\(text)")
        }
        for (name, payload) in [("JPEG", Array(jpeg.prefix(2))), ("PNG", Array(png.prefix(5))), ("WebP", Array(webp.prefix(10))), ("WebP", Array(webp.prefix(3)))] {
            #expect(message(payload) == "truncated \(name): the file holds only \(payload.count) bytes")
        }
        #expect(message([]) == "the image is empty (0 bytes)")
        #expect(message(Array("GIF89a".utf8) + [UInt8](repeating: 0, count: 20))?.contains("looks like a GIF") == true)
        // A size in the header over the limit, before anything is allocated.
        #expect(message(pngHeader(width: 20_000, height: 20_000)) == "PNG of 20000×20000 pixels is larger than the 100-megapixel limit; resize it (or the header is damaged)")
        #expect(message(pngHeader(width: 0, height: 10))?.hasPrefix("corrupt or truncated PNG") == true)
    }

    /// Evaluation resizes the shortest side first: an image too elongated for that is refused
    /// (1×20,000 would become 224×4,480,000 — 3 GB) instead of allocated; training's random
    /// crop resizes only its box and reads it.
    @Test func elongatedImagesAreRefusedBeforeTheResize() throws {
        let strip = try JPEGEncoder().encode(RGBImage(width: 1, height: 20_000, fill: (90, 90, 90)))
        var out = [Float](repeating: 0, count: 3 * 224 * 224)
        var random = SeededRandom(seed: 0)
        let eval = ImagePipeline(preprocessing: ImagePreprocessing(size: 224))
        let error = #expect(throws: ImageDecodeError.self) {
            try strip.withUnsafeBytes { b in try out.withUnsafeMutableBufferPointer { try eval.process(b, decoder: ImageDecoder(), random: &random, into: $0) } }
        }
        #expect(error?.reason == "an image of 1×20000 pixels is too elongated: resizing its shortest side to 224 would make it 224×4480000, over the 100-megapixel limit")
        let train = ImagePipeline(preprocessing: ImagePreprocessing(size: 224), augmentation: ImageAugmentation())
        try strip.withUnsafeBytes { b in try out.withUnsafeMutableBufferPointer { try train.process(b, decoder: ImageDecoder(), random: &random, into: $0) } }
        // A long but sane image still goes through the evaluation path.
        let wide = try JPEGEncoder().encode(RGBImage(width: 2_000, height: 100, fill: (1, 2, 3)))
        try wide.withUnsafeBytes { b in try out.withUnsafeMutableBufferPointer { try eval.process(b, decoder: ImageDecoder(), random: &random, into: $0) } }
    }

    /// A preprocessor_config.json that is missing, a folder, empty or not an object says which.
    @Test func preprocessorConfigProblems() throws {
        let folder = temporaryFolder()
        try FileManager.default.createDirectory(atPath: "\(folder)/dir.json", withIntermediateDirectories: true)
        try Data().write(to: URL(fileURLWithPath: "\(folder)/empty.json"))
        try Data("[1, 2]".utf8).write(to: URL(fileURLWithPath: "\(folder)/list.json"))
        func reason(_ name: String) -> String? {
            do { _ = try ImagePreprocessing.huggingFace(configAt: "\(folder)/\(name)") } catch let error as DataFileError { return error.reason } catch { return "\(error)" }
            return nil
        }
        #expect(reason("absent.json") == "does not exist")
        #expect(reason("dir.json") == "is a folder, not a preprocessor_config.json")
        #expect(reason("empty.json")?.hasPrefix("is empty (0 bytes)") == true)
        #expect(reason("list.json") == "is not a JSON object, as a preprocessor_config.json must be")
    }

    /// Image files named by manifests: missing, a folder, a device (which would be read without
    /// end), and an empty file, each said as such — through the loader and through pack.
    @Test func imageFilesThatAreNotImages() throws {
        let folder = temporaryFolder()
        try FileManager.default.createDirectory(atPath: "\(folder)/dir.jpg", withIntermediateDirectories: true)
        try Data().write(to: URL(fileURLWithPath: "\(folder)/empty.jpg"))
        #expect(throws: Never.self) { _ = try readImageFile(Fixture.path("jpeg/gray.jpg")) }
        func problem(_ path: String) -> String? {
            do { _ = try readImageFile(path) } catch { return error.problem }
            return nil
        }
        #expect(problem("\(folder)/absent.jpg") == "does not exist")
        #expect(problem("\(folder)/dir.jpg") == "is a folder, not an image")
        #expect(problem("/dev/zero") == "is not a regular file (a device, pipe or socket), not an image")
        #expect(try readImageFile("\(folder)/empty.jpg").isEmpty)

        let manifest = "image_path,caption\nabsent.jpg,a\ndir.jpg,b\n/dev/zero,c\nempty.jpg,d\n"
        try manifest.write(toFile: "\(folder)/m.csv", atomically: true, encoding: .utf8)
        let report = try ShardPacker.pack(try ManifestSource(path: "\(folder)/m.csv"), into: "\(folder)/shards", prefix: "p", samplesPerShard: 10)
        #expect(report.packed == 0)
        #expect(report.rejected.map(\.issue.reason) == [
            "image file \(folder)/absent.jpg does not exist", "image file \(folder)/dir.jpg is a folder, not an image",
            "image file /dev/zero is not a regular file (a device, pipe or socket), not an image", "image \(folder)/empty.jpg: the image is empty (0 bytes)",
        ])
        let loader = DataLoader(source: .manifest(try ManifestSource(path: "\(folder)/m.csv")), pipeline: ImagePipeline(preprocessing: ImagePreprocessing(size: 8)),
                                options: DataLoaderOptions(batchSize: 4, threads: 1, shuffle: false))
        let epoch = loader.epoch(0)
        #expect(try epoch.next() == nil)
        #expect(epoch.issues.map(\.reason) == [
            "image file \(folder)/absent.jpg does not exist", "image file \(folder)/dir.jpg is a folder, not an image",
            "image file /dev/zero is not a regular file (a device, pipe or socket), not an image", "\(folder)/empty.jpg: the image is empty (0 bytes)",
        ])
    }
}
