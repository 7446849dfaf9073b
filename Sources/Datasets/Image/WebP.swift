import CWebP

/// WebP decoding through libwebp, the way Pillow reads WebP: libwebpdemux's `WebPAnimDecoder`
/// with its default options (RGBA, no premultiplication) for every file, the first frame of
/// an animation; an image whose bitstream has alpha is composited onto white (transformers'
/// `convert_to_rgb`), one without keeps its colours; the orientation of an EXIF chunk is
/// applied. Lossless files decode exactly as Pillow decodes them; lossy ones may differ by the
/// libwebp version's rounding.
enum WebPDecoder {
    static func isWebP(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count >= 12 && bytes.prefix(4).elementsEqual("RIFF".utf8) && bytes[8..<12].elementsEqual("WEBP".utf8)
    }

    struct Header {
        let width: Int
        let height: Int
        let hasAlpha: Bool
        let orientation: Int
    }

    static func header(_ bytes: UnsafeRawBufferPointer) throws -> Header {
        var features = WebPBitstreamFeatures()
        let status = WebPGetFeatures(bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count, &features)
        guard status == VP8_STATUS_OK else {
            throw ImageDecodeError(reason: "corrupt or truncated WebP (\(counted(bytes.count, "byte"))): its header does not read (\(describe(status)))")
        }
        try ImageFormat.checkSize(.webp, width: Int(features.width), height: Int(features.height), bytes: bytes.count)
        return Header(width: Int(features.width), height: Int(features.height), hasAlpha: features.has_alpha != 0,
                      orientation: orientation(bytes))
    }

    static func decode(_ bytes: UnsafeRawBufferPointer) throws -> RGBImage {
        let head = try header(bytes)
        var data = WebPData(bytes: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), size: bytes.count)
        guard let decoder = WebPAnimDecoderNew(&data, nil) else {
            throw ImageDecodeError(reason: "corrupt or truncated WebP (\(counted(bytes.count, "byte"))): its chunks do not parse")
        }
        defer { WebPAnimDecoderDelete(decoder) }
        var info = WebPAnimInfo()
        guard WebPAnimDecoderGetInfo(decoder, &info) != 0 else {
            throw ImageDecodeError(reason: "corrupt WebP (\(counted(bytes.count, "byte"))): no canvas information")
        }
        var frame: UnsafeMutablePointer<UInt8>?
        var timestamp: Int32 = 0
        guard WebPAnimDecoderGetNext(decoder, &frame, &timestamp) != 0, let frame else {
            throw ImageDecodeError(reason: "corrupt or truncated WebP (\(counted(bytes.count, "byte"))): its image data does not decode")
        }
        let (w, h) = (Int(info.canvas_width), Int(info.canvas_height))
        let rgba = Array(UnsafeBufferPointer(start: frame, count: w * h * 4))
        var image: RGBImage
        if head.hasAlpha {
            image = AlphaComposite.rgb(from: rgba, width: w, height: h, channels: 4)
        } else {
            // Pillow's RGBX: the fourth byte is dropped.
            var rgb = [UInt8](repeating: 0, count: w * h * 3)
            for i in 0..<(w * h) {
                rgb[i * 3] = rgba[i * 4]; rgb[i * 3 + 1] = rgba[i * 4 + 1]; rgb[i * 3 + 2] = rgba[i * 4 + 2]
            }
            image = RGBImage(width: w, height: h, pixels: rgb)
        }
        if head.orientation != 1 { image = image.oriented(exif: head.orientation) }
        return image
    }

    /// The orientation in the EXIF chunk of an extended (VP8X) file; 1 without one.
    static func orientation(_ bytes: UnsafeRawBufferPointer) -> Int {
        var offset = 12
        while offset + 8 <= bytes.count {
            let size = Int(bytes[offset + 4]) | Int(bytes[offset + 5]) << 8 | Int(bytes[offset + 6]) << 16 | Int(bytes[offset + 7]) << 24
            let dataStart = offset + 8
            guard dataStart + size <= bytes.count else { break }
            if bytes[offset..<(offset + 4)].elementsEqual("EXIF".utf8) {
                return exifOrientation(tiffOrExif: UnsafeRawBufferPointer(rebasing: bytes[dataStart..<(dataStart + size)]))
            }
            offset = dataStart + size + (size & 1)
        }
        return 1
    }

    private static func describe(_ status: VP8StatusCode) -> String {
        switch status {
        case VP8_STATUS_OUT_OF_MEMORY: "out of memory"
        case VP8_STATUS_INVALID_PARAM: "invalid parameter"
        case VP8_STATUS_BITSTREAM_ERROR: "bitstream error"
        case VP8_STATUS_UNSUPPORTED_FEATURE: "unsupported feature"
        case VP8_STATUS_SUSPENDED: "suspended"
        case VP8_STATUS_USER_ABORT: "aborted"
        case VP8_STATUS_NOT_ENOUGH_DATA: "not enough data"
        default: "status \(status.rawValue)"
        }
    }
}
