import CPNGDecode

/// PNG decoding through libpng (all colour types and bit depths, Adam7 interlacing), to what
/// transformers' `convert_to_rgb` makes of the image Pillow opens:
///
/// - 16-bit samples keep their high byte (Pillow's `RGB;16B`, `RGBA;16B`, `LA;16B`); low bit
///   depths are scaled to 8 bits; palettes are looked up.
/// - Transparency — an alpha channel, palette alpha (tRNS), or a tRNS colour key on gray or RGB
///   images — is composited onto white (`AlphaComposite`). A colour key is compared with the
///   8-bit decoded sample, as Pillow compares it (so on 2- and 4-bit gray and on 16-bit RGB it
///   matches only where the raw key equals the 8-bit value, as in Pillow).
/// - The EXIF orientation of an eXIf chunk is applied (before or after the image data).
///
/// One deliberate difference: 16-bit grayscale keeps its high byte like every other 16-bit
/// PNG. Pillow opens it as `I;16` and `convert("RGB")` clips each value to 255 (almost every
/// pixel of a real 16-bit image turns white), ignoring its tRNS key; we do not copy that.
enum PNGDecoder {
    static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    static func isPNG(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count >= 8 && bytes.prefix(8).elementsEqual(signature)
    }

    struct Header {
        let info: cliptune_png_info
        var width: Int { Int(info.width) }
        var height: Int { Int(info.height) }
        let orientation: Int
    }

    static func header(_ bytes: UnsafeRawBufferPointer) throws -> Header {
        var info = cliptune_png_info()
        try read(bytes, &info, into: nil)
        try ImageFormat.checkSize(.png, width: Int(info.width), height: Int(info.height), bytes: bytes.count)
        return Header(info: info, orientation: orientation(bytes))
    }

    static func decode(_ bytes: UnsafeRawBufferPointer) throws -> RGBImage {
        let head = try header(bytes)
        var info = head.info
        let (w, h, channels) = (head.width, head.height, Int(info.channels))
        var raw = [UInt8](repeating: 0, count: w * h * channels)
        try raw.withUnsafeMutableBufferPointer { try read(bytes, &info, into: $0) }
        var image: RGBImage
        switch channels {
        case 1:
            let key = grayKey(info)
            var rgb = [UInt8](repeating: 0, count: w * h * 3)
            for i in 0..<(w * h) {
                let v = raw[i]
                let out: UInt8 = Int(v) == key ? 255 : v
                rgb[i * 3] = out; rgb[i * 3 + 1] = out; rgb[i * 3 + 2] = out
            }
            image = RGBImage(width: w, height: h, pixels: rgb)
        case 3:
            if let key = rgbKey(info) {
                for i in 0..<(w * h) where Int(raw[i * 3]) == key.red && Int(raw[i * 3 + 1]) == key.green && Int(raw[i * 3 + 2]) == key.blue {
                    raw[i * 3] = 255; raw[i * 3 + 1] = 255; raw[i * 3 + 2] = 255
                }
            }
            image = RGBImage(width: w, height: h, pixels: raw)
        case 2, 4:
            image = AlphaComposite.rgb(from: raw, width: w, height: h, channels: channels)
        default:
            throw ImageDecodeError(reason: "PNG decoded to \(channels) channels")
        }
        if head.orientation != 1 { image = image.oriented(exif: head.orientation) }
        return image
    }

    /// The 8-bit value a gray image's tRNS key makes transparent, as Pillow applies it: a 1-bit
    /// key names black or white, 2- to 8-bit keys are compared as stored (with the 8-bit
    /// value), 16-bit keys are ignored (see the type's note); nil without a key.
    private static func grayKey(_ info: cliptune_png_info) -> Int? {
        guard info.has_trns != 0, info.color_type == 0 else { return nil }
        switch info.bit_depth {
        case 16: return nil
        case 1: return info.trns_gray != 0 ? 255 : 0
        default: return Int(info.trns_gray)
        }
    }

    /// An RGB image's tRNS key as stored, compared with the 8-bit values (as Pillow does, even
    /// for 16-bit images); nil without a key.
    private static func rgbKey(_ info: cliptune_png_info) -> (red: Int, green: Int, blue: Int)? {
        guard info.has_trns != 0, info.color_type == 2 else { return nil }
        return (Int(info.trns_red), Int(info.trns_green), Int(info.trns_blue))
    }

    private static func read(_ bytes: UnsafeRawBufferPointer, _ info: inout cliptune_png_info,
                             into pixels: UnsafeMutableBufferPointer<UInt8>?) throws {
        var message = [CChar](repeating: 0, count: 256)
        let status = message.withUnsafeMutableBufferPointer { text in
            cliptune_png_read(bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count, &info,
                              pixels?.baseAddress, pixels?.count ?? 0, text.baseAddress, text.count)
        }
        guard status == 0 else {
            let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw ImageDecodeError(reason: "corrupt or truncated PNG (\(counted(bytes.count, "byte"))): \(text)")
        }
    }

    /// The orientation in an eXIf chunk, wherever it is; 1 without one. Walks the chunk list
    /// (lengths only; the image data is not inflated).
    static func orientation(_ bytes: UnsafeRawBufferPointer) -> Int {
        var offset = 8
        while offset + 12 <= bytes.count {
            let length = Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
            let type = bytes[(offset + 4)..<(offset + 8)]
            let dataStart = offset + 8
            guard length >= 0, dataStart + length + 4 <= bytes.count else { break }
            if type.elementsEqual("eXIf".utf8) {
                return exifOrientation(tiffOrExif: UnsafeRawBufferPointer(rebasing: bytes[dataStart..<(dataStart + length)]))
            }
            if type.elementsEqual("IEND".utf8) { break }
            offset = dataStart + length + 4
        }
        return 1
    }
}
