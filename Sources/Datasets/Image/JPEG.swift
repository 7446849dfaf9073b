import CTurboJPEG
import Foundation

/// JPEG decoding through libjpeg-turbo's TurboJPEG API. One instance per thread (a TurboJPEG
/// handle is not thread-safe); reuse it across images.
public final class JPEGDecoder {
    private let handle: tjhandle

    public init() {
        guard let h = tjInitDecompress() else { fatalError("TurboJPEG: cannot create a decompressor") }
        handle = h
    }

    deinit { tjDestroy(handle) }

    public struct Header: Sendable, Equatable {
        public let width: Int
        public let height: Int
        /// EXIF orientation 1...8 (1 = as stored).
        public let orientation: Int
    }

    public static func isJPEG(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF
    }

    /// Reads dimensions and orientation without decoding pixels.
    public func header(_ bytes: UnsafeRawBufferPointer) throws -> Header {
        guard Self.isJPEG(bytes) else { throw ImageDecodeError(reason: "not a JPEG (no SOI marker)") }
        var w: Int32 = 0, h: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
        let base = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        guard tjDecompressHeader3(handle, base, UInt(bytes.count), &w, &h, &subsampling, &colorspace) == 0 else {
            throw ImageDecodeError(reason: "corrupt or truncated JPEG (\(counted(bytes.count, "byte"))): its header does not read (\(errorMessage()))")
        }
        try ImageFormat.checkSize(.jpeg, width: Int(w), height: Int(h), bytes: bytes.count)
        return Header(width: Int(w), height: Int(h), orientation: exifOrientation(bytes))
    }

    /// Decodes to RGB with EXIF orientation applied. With `atLeast`, decodes at the smallest DCT
    /// scale (1/8 … 1/2) whose output still covers that size (in the upright orientation) when
    /// the image is at least twice as large; otherwise at full size.
    public func decode(_ bytes: UnsafeRawBufferPointer, atLeast minimum: (width: Int, height: Int)? = nil) throws -> RGBImage {
        let head = try header(bytes)
        var w: Int32 = 0, h: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
        let base = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        _ = tjDecompressHeader3(handle, base, UInt(bytes.count), &w, &h, &subsampling, &colorspace)
        try ImageFormat.checkSize(.jpeg, width: Int(w), height: Int(h), bytes: bytes.count)
        // Targets are upright; the stored image is rotated for orientations 5...8.
        let swapped = head.orientation >= 5
        var target = minimum.map { swapped ? ($0.height, $0.width) : ($0.width, $0.height) }
        if let t = target, !(Int(w) >= 2 * t.0 && Int(h) >= 2 * t.1) { target = nil }
        let (outW, outH) = target.map { scaledSize(width: Int(w), height: Int(h), covering: $0) } ?? (Int(w), Int(h))

        let isCMYK = colorspace == Int32(TJCS_CMYK.rawValue) || colorspace == Int32(TJCS_YCCK.rawValue)
        let channels = isCMYK ? 4 : 3
        var raw = [UInt8](repeating: 0, count: outW * outH * channels)
        let format = isCMYK ? TJPF_CMYK : TJPF_RGB
        let status = raw.withUnsafeMutableBufferPointer { out in
            tjDecompress2(handle, base, UInt(bytes.count), out.baseAddress, Int32(outW), 0, Int32(outH), Int32(format.rawValue),
                          Self.decodeFlags)
        }
        // A warning (e.g. a truncated scan) means the data is damaged: stop there (the image is
        // refused either way; a damaged 100-megapixel header then costs no full decode).
        if status != 0 {
            throw ImageDecodeError(reason: "corrupt or truncated JPEG (\(counted(bytes.count, "byte"))): \(errorMessage())")
        }
        var image = RGBImage(width: outW, height: outH, pixels: isCMYK ? Self.invertedCMYKToRGB(raw) : raw)
        if head.orientation != 1 { image = image.oriented(exif: head.orientation) }
        return image
    }

    /// Adobe CMYK JPEGs store inverted inks (what libjpeg returns as "CMYK"); RGB = c·k / 255
    /// on the stored values, as Pillow converts them.
    static func invertedCMYKToRGB(_ cmyk: [UInt8]) -> [UInt8] {
        var rgb = [UInt8](repeating: 0, count: cmyk.count / 4 * 3)
        for i in 0..<(cmyk.count / 4) {
            let k = Int(cmyk[i * 4 + 3])
            for c in 0..<3 {
                let v = Int(cmyk[i * 4 + c]) * k
                rgb[i * 3 + c] = UInt8((v + (v >> 8) + 128) >> 8)   // ≈ v / 255, rounded
            }
        }
        return rgb
    }

    /// Stop at the first warning; at most 500 progressive scans (a JPEG with thousands of tiny
    /// scans otherwise takes minutes to decode: libjpeg-turbo's guard against that).
    static let decodeFlags = Int32(TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS)

    private func scaledSize(width: Int, height: Int, covering target: (Int, Int)) -> (Int, Int) {
        var count: Int32 = 0
        guard let factors = tjGetScalingFactors(&count) else { return (width, height) }
        var best = (width, height)
        for i in 0..<Int(count) {
            let f = factors[i]
            guard f.num < f.denom else { continue }   // only reductions
            let sw = (width * Int(f.num) + Int(f.denom) - 1) / Int(f.denom)
            let sh = (height * Int(f.num) + Int(f.denom) - 1) / Int(f.denom)
            if sw >= target.0, sh >= target.1, sw * sh < best.0 * best.1 { best = (sw, sh) }
        }
        return best
    }

    private func errorMessage() -> String { String(cString: tjGetErrorStr2(handle)) }
}

/// JPEG encoding (for generated datasets and fixtures).
public final class JPEGEncoder {
    private let handle: tjhandle

    public init() {
        guard let h = tjInitCompress() else { fatalError("TurboJPEG: cannot create a compressor") }
        handle = h
    }

    deinit { tjDestroy(handle) }

    /// Baseline JPEG with 4:2:0 chroma subsampling at `quality` (1...100).
    public func encode(_ image: RGBImage, quality: Int = 90) throws -> [UInt8] {
        var buffer: UnsafeMutablePointer<UInt8>?
        var size: UInt = 0
        let status = image.pixels.withUnsafeBufferPointer { px in
            tjCompress2(handle, px.baseAddress, Int32(image.width), 0, Int32(image.height), Int32(TJPF_RGB.rawValue),
                        &buffer, &size, Int32(TJSAMP_420.rawValue), Int32(quality), 0)
        }
        defer { if let buffer { tjFree(buffer) } }
        guard status == 0, let buffer else {
            throw ImageDecodeError(reason: "JPEG encoding failed: \(String(cString: tjGetErrorStr2(handle)))")
        }
        return Array(UnsafeBufferPointer(start: buffer, count: Int(size)))
    }
}

/// The EXIF orientation tag (0x0112) of a JPEG's APP1 segment, 1 when absent or unreadable.
func exifOrientation(_ bytes: UnsafeRawBufferPointer) -> Int {
    var i = 2
    while i + 4 <= bytes.count, bytes[i] == 0xFF {
        let marker = bytes[i + 1]
        if marker == 0xDA || marker == 0xD9 { break }   // start of scan: no more metadata
        let length = Int(bytes[i + 2]) << 8 | Int(bytes[i + 3])
        guard length >= 2, i + 2 + length <= bytes.count else { break }
        let segment = i + 4
        if marker == 0xE1, length >= 16, Array(bytes[segment..<(segment + 6)]) == [0x45, 0x78, 0x69, 0x66, 0, 0] {
            return tiffOrientation(UnsafeRawBufferPointer(rebasing: bytes[(segment + 6)..<(i + 2 + length)])) ?? 1
        }
        i += 2 + length
    }
    return 1
}

func tiffOrientation(_ tiff: UnsafeRawBufferPointer) -> Int? {
    guard tiff.count >= 8 else { return nil }
    let little: Bool
    switch (tiff[0], tiff[1]) {
    case (0x49, 0x49): little = true
    case (0x4D, 0x4D): little = false
    default: return nil
    }
    func u16(_ o: Int) -> Int? {
        guard o >= 0, o + 2 <= tiff.count else { return nil }
        return little ? Int(tiff[o]) | Int(tiff[o + 1]) << 8 : Int(tiff[o]) << 8 | Int(tiff[o + 1])
    }
    func u32(_ o: Int) -> Int? {
        guard let a = u16(o), let b = u16(o + 2) else { return nil }
        return little ? a | b << 16 : a << 16 | b
    }
    guard let ifd = u32(4), let entries = u16(ifd) else { return nil }
    for e in 0..<min(entries, 512) {
        let entry = ifd + 2 + e * 12
        guard let tag = u16(entry) else { return nil }
        if tag == 0x0112, let value = u16(entry + 8), (1...8).contains(value) { return value }
    }
    return nil
}

extension RGBImage {
    /// Applies an EXIF orientation (1...8) so the image is upright.
    public func oriented(exif orientation: Int) -> RGBImage {
        guard (2...8).contains(orientation) else { return self }
        let swapped = orientation >= 5
        let outW = swapped ? height : width, outH = swapped ? width : height
        var out = [UInt8](repeating: 0, count: pixels.count)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<outH {
                    for x in 0..<outW {
                        // (x, y) in the upright image comes from (sx, sy) in the stored one.
                        let (sx, sy): (Int, Int)
                        switch orientation {
                        case 2: (sx, sy) = (width - 1 - x, y)
                        case 3: (sx, sy) = (width - 1 - x, height - 1 - y)
                        case 4: (sx, sy) = (x, height - 1 - y)
                        case 5: (sx, sy) = (y, x)
                        case 6: (sx, sy) = (y, height - 1 - x)
                        case 7: (sx, sy) = (width - 1 - y, height - 1 - x)
                        default: (sx, sy) = (width - 1 - y, x)   // 8
                        }
                        let s = (sy * width + sx) * 3, d = (y * outW + x) * 3
                        dst[d] = src[s]; dst[d + 1] = src[s + 1]; dst[d + 2] = src[s + 2]
                    }
                }
            }
        }
        return RGBImage(width: outW, height: outH, pixels: out)
    }
}
