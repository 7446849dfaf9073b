/// A payload that is not a decodable image.
public struct ImageDecodeError: Error, CustomStringConvertible, Sendable {
    public let reason: String
    public init(reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// The encodings the framework reads, recognised by their first bytes (never by file name).
public enum ImageFormat: String, Sendable, CaseIterable {
    case jpeg, png, webp

    /// The format of an encoded image, or nil for anything else.
    public static func of(_ bytes: UnsafeRawBufferPointer) -> ImageFormat? {
        if JPEGDecoder.isJPEG(bytes) { return .jpeg }
        if PNGDecoder.isPNG(bytes) { return .png }
        if WebPDecoder.isWebP(bytes) { return .webp }
        return nil
    }

    /// The usual file extension (WebDataset member suffix).
    public var fileExtension: String {
        switch self {
        case .jpeg: "jpg"
        case .png: "png"
        case .webp: "webp"
        }
    }

    var name: String {
        switch self {
        case .jpeg: "JPEG"
        case .png: "PNG"
        case .webp: "WebP"
        }
    }

    /// Refuses a size read from a header before anything is allocated for it: none at all means
    /// the file is cut short or damaged; more than `ImageDecoder.maximumPixels` is too large.
    static func checkSize(_ format: ImageFormat, width: Int, height: Int, bytes: Int) throws {
        guard width > 0, height > 0 else {
            throw ImageDecodeError(reason: "corrupt or truncated \(format.name) (\(counted(bytes, "byte"))): its header gives no image size")
        }
        guard width * height <= ImageDecoder.maximumPixels else {
            throw ImageDecodeError(reason: "\(format.name) of \(width)×\(height) pixels is larger than the \(ImageDecoder.maximumPixels / 1_000_000)-megapixel limit; resize it (or the header is damaged)")
        }
    }

    /// Why `bytes` is not a readable image: the format it looks like, or its first bytes.
    static func foreign(_ bytes: UnsafeRawBufferPointer) -> ImageDecodeError {
        func starts(_ prefix: String, at offset: Int = 0) -> Bool {
            let p = Array(prefix.utf8)
            return bytes.count >= offset + p.count && zip(bytes[offset..<(offset + p.count)], p).allSatisfy { $0 == $1 }
        }
        // A file cut short within the signature of a format read here.
        func isCutShort(_ signature: [UInt8], from offset: Int = 0) -> Bool {
            bytes.count <= offset || (bytes.count < offset + signature.count && bytes[offset...].elementsEqual(signature.prefix(bytes.count - offset)))
        }
        let cutShort: String? = bytes.count < 2 ? nil
            : isCutShort([0xFF, 0xD8, 0xFF]) ? "JPEG"
            : isCutShort(PNGDecoder.signature) ? "PNG"
            : bytes.count < 12 && (isCutShort(Array("RIFF".utf8)) || starts("RIFF")) && isCutShort(Array("WEBP".utf8), from: 8) ? "WebP"
            : nil
        let kind: String?
        if bytes.isEmpty {
            return ImageDecodeError(reason: "the image is empty (0 bytes)")
        } else if let cutShort {
            return ImageDecodeError(reason: "truncated \(cutShort): the file holds only \(counted(bytes.count, "byte"))")
        } else if starts("GIF87a") || starts("GIF89a") {
            kind = "a GIF"
        } else if starts("BM") {
            kind = "a BMP"
        } else if starts("II*\0") || starts("MM\0*") {
            kind = "a TIFF"
        } else if starts("ftyp", at: 4) {
            kind = starts("avif", at: 8) || starts("avis", at: 8) ? "an AVIF" : "a HEIF/HEIC or other ISO-media file"
        } else if starts("RIFF") {
            kind = "a RIFF file that is not WebP"
        } else if starts("<") || starts("\u{FEFF}<") {
            kind = "text (HTML, XML or SVG?)"
        } else {
            kind = nil
        }
        let head = bytes.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ")
        return ImageDecodeError(reason: "not a JPEG, PNG or WebP image (\(kind.map { "looks like \($0); convert it" } ?? "starts with \(head)"))")
    }
}

/// Decodes JPEG, PNG and WebP, chosen by content, to upright 8-bit RGB — what transformers'
/// `CLIPImageProcessor` (Pillow backend) gives the model for the image Pillow opens: EXIF
/// orientation applied (`ImageOps.exif_transpose`, as transformers' `load_image` does), then
/// `convert_to_rgb`, which composites any transparency (an alpha channel, a tRNS chunk) onto
/// white with Pillow's `alpha_composite` arithmetic. One instance per thread; reuse it.
public final class ImageDecoder {
    private let jpeg = JPEGDecoder()

    public init() {}

    public struct Header: Sendable, Equatable {
        public let format: ImageFormat
        /// As stored (before orientation).
        public let width: Int
        public let height: Int
        /// EXIF orientation 1...8 (1 = as stored).
        public let orientation: Int
        /// Width and height once upright.
        public var uprightSize: (width: Int, height: Int) { orientation >= 5 ? (height, width) : (width, height) }
    }

    /// Images larger than this many pixels are refused before anything is allocated.
    public static let maximumPixels = 100_000_000

    /// Format, size and orientation without decoding pixels.
    public func header(_ bytes: UnsafeRawBufferPointer) throws -> Header {
        switch ImageFormat.of(bytes) {
        case .jpeg:
            let h = try jpeg.header(bytes)
            return Header(format: .jpeg, width: h.width, height: h.height, orientation: h.orientation)
        case .png:
            let h = try PNGDecoder.header(bytes)
            return Header(format: .png, width: h.width, height: h.height, orientation: h.orientation)
        case .webp:
            let h = try WebPDecoder.header(bytes)
            return Header(format: .webp, width: h.width, height: h.height, orientation: h.orientation)
        case nil:
            throw ImageFormat.foreign(bytes)
        }
    }

    /// Decodes to upright RGB. `atLeast` (in the upright orientation) lets JPEGs decode at a
    /// reduced DCT scale that still covers that size; PNG and WebP always decode at full size.
    public func decode(_ bytes: UnsafeRawBufferPointer, atLeast minimum: (width: Int, height: Int)? = nil) throws -> RGBImage {
        switch ImageFormat.of(bytes) {
        case .jpeg: return try jpeg.decode(bytes, atLeast: minimum)
        case .png: return try PNGDecoder.decode(bytes)
        case .webp: return try WebPDecoder.decode(bytes)
        case nil: throw ImageFormat.foreign(bytes)
        }
    }

    /// Checks that an image decodes completely, as cheaply as the format allows (JPEGs at 1/8
    /// scale, which still reads every coded block); returns its header.
    @discardableResult
    public func check(_ bytes: UnsafeRawBufferPointer) throws -> Header {
        let head = try header(bytes)
        _ = try decode(bytes, atLeast: head.format == .jpeg ? (1, 1) : nil)
        return head
    }
}

/// Pillow's `Image.alpha_composite(white, image)` for one channel value `v` of alpha `a`: its
/// fixed-point formula (7 extra bits, divisions by 255 by shifts) with an opaque white
/// destination, tabulated for all 256 × 256 inputs (index `a << 8 | v`). (It equals
/// (v·a + 255·(255 − a)) / 255 rounded half up; transparent pixels become white.)
enum AlphaComposite {
    static let overWhite: [UInt8] = {
        var table = [UInt8](repeating: 255, count: 65536)
        for a in 1...255 as ClosedRange<UInt32> {
            let blend = 255 * (255 - a)                 // dst.a × (255 − src.a), dst.a = 255
            let outA255 = a * 255 + blend
            let coef1 = a * 255 * 255 * 128 / outA255
            let coef2 = 255 * 128 - coef1
            for v in 0...255 as ClosedRange<UInt32> {
                let tmp = v * coef1 + 255 * coef2 + (0x80 << 7)
                table[Int(a << 8 | v)] = UInt8((((tmp >> 8) + tmp) >> 8) >> 7)
            }
        }
        return table
    }()

    /// RGBA (or gray + alpha with `channels` 2) rows → RGB composited onto white.
    static func rgb(from data: [UInt8], width: Int, height: Int, channels: Int) -> RGBImage {
        precondition(channels == 2 || channels == 4)
        let count = width * height
        var out = [UInt8](repeating: 0, count: count * 3)
        overWhite.withUnsafeBufferPointer { table in
            data.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    for i in 0..<count {
                        let s = i * channels
                        let a = Int(src[s + channels - 1]) << 8
                        if channels == 2 {
                            let v = table[a | Int(src[s])]
                            dst[i * 3] = v; dst[i * 3 + 1] = v; dst[i * 3 + 2] = v
                        } else {
                            dst[i * 3] = table[a | Int(src[s])]
                            dst[i * 3 + 1] = table[a | Int(src[s + 1])]
                            dst[i * 3 + 2] = table[a | Int(src[s + 2])]
                        }
                    }
                }
            }
        }
        return RGBImage(width: width, height: height, pixels: out)
    }
}

/// The orientation tag of an EXIF block held in a PNG eXIf or WebP EXIF chunk: TIFF data,
/// optionally after an "Exif\0\0" prefix (which Pillow strips). 1 when absent or unreadable.
func exifOrientation(tiffOrExif bytes: UnsafeRawBufferPointer) -> Int {
    let prefix: [UInt8] = [0x45, 0x78, 0x69, 0x66, 0, 0]
    let start = bytes.count >= 6 && bytes.prefix(6).elementsEqual(prefix) ? 6 : 0
    return tiffOrientation(UnsafeRawBufferPointer(rebasing: bytes[start...])) ?? 1
}
