import Foundation

/// The deterministic part: resize the shortest side, crop the centre, normalise — as Hugging
/// Face's CLIPImageProcessor (Pillow bicubic), with constants from `preprocessor_config.json`.
public struct ImagePreprocessing: Codable, Sendable, Equatable {
    /// Output height and width.
    public var size: Int
    /// The shortest side is resized to this before the centre crop.
    public var shortestEdge: Int
    public var mean: [Double]
    public var std: [Double]

    public static let clipMean = [0.48145466, 0.4578275, 0.40821073]
    public static let clipStd = [0.26862954, 0.26130258, 0.27577711]

    public init(size: Int = 224, shortestEdge: Int? = nil, mean: [Double] = clipMean, std: [Double] = clipStd) {
        self.size = size
        self.shortestEdge = shortestEdge ?? size
        self.mean = mean
        self.std = std
    }

    /// Reads `crop_size`, `size.shortest_edge`, `image_mean`, `image_std` from a Hugging Face
    /// `preprocessor_config.json`; absent fields keep CLIP's values.
    public static func huggingFace(configAt path: String) throws -> ImagePreprocessing {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), !isFolder.boolValue else {
            throw DataFileError(file: path, reason: isFolder.boolValue ? "is a folder, not a preprocessor_config.json" : "does not exist")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw DataFileError(file: path, reason: "cannot be read") }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw DataFileError(file: path, reason: data.isEmpty ? "is empty (0 bytes); a preprocessor_config.json holds a JSON object"
                                                                : "is not a JSON object, as a preprocessor_config.json must be")
        }
        func side(_ value: Any?) -> Int? {
            if let n = value as? Int { return n }
            if let d = value as? [String: Any] { return (d["shortest_edge"] ?? d["height"]) as? Int }
            return nil
        }
        let crop = side(json["crop_size"]) ?? 224
        return ImagePreprocessing(size: crop, shortestEdge: side(json["size"]) ?? crop,
                                  mean: json["image_mean"] as? [Double] ?? clipMean, std: json["image_std"] as? [Double] ?? clipStd)
    }

    /// The largest output side `problems` accepts: 4,096 pixels (one 4,096² RGB float image is 201 MB).
    public static let maxSize = 4_096

    public var problems: [String] {
        var result: [String] = []
        if size <= 0 { result.append("image size must be > 0, got \(size)") }
        if size > Self.maxSize { result.append("image size must be ≤ \(Self.maxSize), got \(size)") }
        if shortestEdge < size { result.append("shortest edge \(shortestEdge) must be ≥ the crop size \(size)") }
        if size > 0, shortestEdge / 4 > size { result.append("shortest edge \(shortestEdge) must be ≤ 4 × the crop size \(size)") }
        if mean.count != 3 || std.count != 3 { result.append("mean and std need 3 values (RGB)") }
        if (mean + std).contains(where: { !$0.isFinite }) { result.append("mean and std values must be finite") }
        if std.contains(where: { $0 <= 0 }) { result.append("std values must be > 0") }
        return result
    }
}

/// Random augmentations for training, each with its probability. Defaults follow open_clip:
/// random-resized-crop with scale 0.9–1.0 and nothing else.
public struct ImageAugmentation: Codable, Sendable, Equatable {
    public struct RandomResizedCrop: Codable, Sendable, Equatable {
        public var scale: [Double] = [0.9, 1.0]
        public var ratio: [Double] = [3.0 / 4.0, 4.0 / 3.0]
        public init(scale: [Double] = [0.9, 1.0], ratio: [Double] = [3.0 / 4.0, 4.0 / 3.0]) {
            self.scale = scale
            self.ratio = ratio
        }
    }

    public struct Rotation: Codable, Sendable, Equatable {
        public var probability: Double
        /// The angle is uniform in ±degrees.
        public var degrees: Double
        /// RGB fill for the corners the rotation uncovers.
        public var fill: [UInt8] = [0, 0, 0]
        public init(probability: Double, degrees: Double, fill: [UInt8] = [0, 0, 0]) {
            self.probability = probability
            self.degrees = degrees
            self.fill = fill
        }
    }

    /// torchvision's ColorJitter: factors uniform in [1 - x, 1 + x] (hue in ±hue), random order.
    public struct ColorJitter: Codable, Sendable, Equatable {
        public var probability: Double
        public var brightness: Double = 0
        public var contrast: Double = 0
        public var saturation: Double = 0
        public var hue: Double = 0
        public init(probability: Double, brightness: Double = 0, contrast: Double = 0, saturation: Double = 0, hue: Double = 0) {
            self.probability = probability
            self.brightness = brightness
            self.contrast = contrast
            self.saturation = saturation
            self.hue = hue
        }
    }

    public var randomResizedCrop: RandomResizedCrop? = RandomResizedCrop()
    public var horizontalFlip: Double = 0
    public var rotation: Rotation?
    public var colorJitter: ColorJitter?

    public init(randomResizedCrop: RandomResizedCrop? = RandomResizedCrop(), horizontalFlip: Double = 0,
                rotation: Rotation? = nil, colorJitter: ColorJitter? = nil) {
        self.randomResizedCrop = randomResizedCrop
        self.horizontalFlip = horizontalFlip
        self.rotation = rotation
        self.colorJitter = colorJitter
    }
}

/// Decode → (augment) → resize/crop → normalise, for one sample, into CHW floats.
public struct ImagePipeline: Sendable {
    public var preprocessing: ImagePreprocessing
    /// nil: the deterministic evaluation path (Pillow-exact resize of the full-size decode).
    public var augmentation: ImageAugmentation?
    /// Decode JPEGs at a reduced DCT scale when the crop will shrink by 2× or more (training only).
    public var scaledDecoding: Bool

    public init(preprocessing: ImagePreprocessing = ImagePreprocessing(), augmentation: ImageAugmentation? = nil, scaledDecoding: Bool = true) {
        self.preprocessing = preprocessing
        self.augmentation = augmentation
        self.scaledDecoding = scaledDecoding
    }

    /// The part of a w×h image, in its own pixels, that the evaluation path keeps: the shortest
    /// side resized to `shortestEdge`, then a centre crop of `size` at whole resized pixels.
    static func centerCropBox(width w: Int, height h: Int, _ p: ImagePreprocessing) -> (x0: Double, y0: Double, x1: Double, y1: Double) {
        let resized = RGBImage.shortestSideSize(width: w, height: h, shortest: p.shortestEdge)
        let left = (resized.width - p.size) >> 1, top = (resized.height - p.size) >> 1
        let sx = Double(w) / Double(resized.width), sy = Double(h) / Double(resized.height)
        return (x0: Double(left) * sx, y0: Double(top) * sy, x1: Double(left + p.size) * sx, y1: Double(top + p.size) * sy)
    }

    /// Floats per processed image (3 × size × size).
    public var sampleCount: Int { 3 * preprocessing.size * preprocessing.size }

    /// Processes one encoded image (JPEG, PNG or WebP, told apart by content) into `output`
    /// (CHW, normalised). `random` drives the augmentations.
    public func process(_ encoded: UnsafeRawBufferPointer, decoder: ImageDecoder, random: inout SeededRandom,
                        into output: UnsafeMutableBufferPointer<Float>) throws {
        let size = preprocessing.size
        var image: RGBImage
        if let augmentation {
            let (w, h) = try decoder.header(encoded).uprightSize
            // Without a random crop, the region evaluation sees: what survives resizing the
            // shortest side to `shortestEdge` and centre cropping `size` (not the whole image
            // squashed into a square, which would train on other shapes than it evaluates).
            let box = augmentation.randomResizedCrop.map { crop in
                let b = Self.randomResizedCropBox(width: w, height: h, crop, &random)
                return (x0: Double(b.x), y0: Double(b.y), x1: Double(b.x + b.width), y1: Double(b.y + b.height))
            } ?? Self.centerCropBox(width: w, height: h, preprocessing)
            // The decode must still cover the crop at the output size.
            let needed = (width: Int((Double(w * size) / (box.x1 - box.x0)).rounded(.up)), height: Int((Double(h * size) / (box.y1 - box.y0)).rounded(.up)))
            let decoded = try decoder.decode(encoded, atLeast: scaledDecoding ? needed : nil)
            let sx = Double(decoded.width) / Double(w), sy = Double(decoded.height) / Double(h)
            image = decoded.resized(width: size, height: size, filter: .bicubic,
                                    box: (x0: box.x0 * sx, y0: box.y0 * sy, x1: box.x1 * sx, y1: box.y1 * sy))
            if random.chance(augmentation.horizontalFlip) { image = image.flippedHorizontally() }
            if let r = augmentation.rotation, random.chance(r.probability) {
                image = image.rotated(degrees: random.uniform(-r.degrees, r.degrees), fill: (r.fill[0], r.fill[1], r.fill[2]))
            }
            Self.normalize(image, preprocessing, into: output)
            if let j = augmentation.colorJitter, random.chance(j.probability) {
                Self.colorJitter(output, size: size, j, preprocessing, &random)
            }
        } else {
            // The shortest side is resized to `shortestEdge` before the crop: refuse an image so
            // elongated that the resized whole would be enormous (1×20,000 px → 224×4,480,000).
            let (w, h) = try decoder.header(encoded).uprightSize
            let resized = RGBImage.shortestSideSize(width: w, height: h, shortest: preprocessing.shortestEdge)
            let pixels = resized.width.multipliedReportingOverflow(by: resized.height)
            guard !pixels.overflow, pixels.partialValue <= ImageDecoder.maximumPixels else {
                throw ImageDecodeError(reason: "an image of \(w)×\(h) pixels is too elongated: resizing its shortest side to \(preprocessing.shortestEdge) would make it \(resized.width)×\(resized.height), over the \(ImageDecoder.maximumPixels / 1_000_000)-megapixel limit")
            }
            image = try decoder.decode(encoded).resizedShortestSide(to: preprocessing.shortestEdge, filter: .bicubic)
                .centerCropped(width: size, height: size)
            Self.normalize(image, preprocessing, into: output)
        }
    }

    /// torchvision's RandomResizedCrop.get_params: ten tries at a random area and aspect ratio,
    /// then a centre crop clamped to the ratio range.
    static func randomResizedCropBox(width: Int, height: Int, _ c: ImageAugmentation.RandomResizedCrop,
                                     _ random: inout SeededRandom) -> (x: Int, y: Int, width: Int, height: Int) {
        let area = Double(width * height)
        let logRatio = (Foundation.log(c.ratio[0]), Foundation.log(c.ratio[1]))
        for _ in 0..<10 {
            let target = area * random.uniform(c.scale[0], c.scale[1])
            let aspect = Foundation.exp(random.uniform(logRatio.0, logRatio.1))
            let w = Int((target * aspect).squareRoot().rounded()), h = Int((target / aspect).squareRoot().rounded())
            if w > 0, w <= width, h > 0, h <= height {
                let y = Int(random.next() % UInt64(height - h + 1)), x = Int(random.next() % UInt64(width - w + 1))
                return (x, y, w, h)
            }
        }
        let inRatio = Double(width) / Double(height)
        var w = width, h = height
        if inRatio < c.ratio[0] {
            h = Int((Double(w) / c.ratio[0]).rounded())
        } else if inRatio > c.ratio[1] {
            w = Int((Double(h) * c.ratio[1]).rounded())
        }
        return ((width - w) / 2, (height - h) / 2, w, h)
    }

    /// uint8 HWC → normalised float CHW.
    static func normalize(_ image: RGBImage, _ p: ImagePreprocessing, into output: UnsafeMutableBufferPointer<Float>) {
        let plane = image.width * image.height
        precondition(output.count == 3 * plane, "output holds \(output.count) floats, the image needs \(3 * plane)")
        for c in 0..<3 {
            let scale = Float(1 / (255 * p.std[c])), shift = Float(-p.mean[c] / p.std[c])
            image.pixels.withUnsafeBufferPointer { px in
                for i in 0..<plane { output[c * plane + i] = Float(px[i * 3 + c]) * scale + shift }
            }
        }
    }

    /// torchvision's ColorJitter on [0, 1] RGB, applied to normalised CHW data in place.
    static func colorJitter(_ data: UnsafeMutableBufferPointer<Float>, size: Int, _ j: ImageAugmentation.ColorJitter,
                            _ p: ImagePreprocessing, _ random: inout SeededRandom) {
        let plane = size * size
        // Back to [0, 1] RGB.
        var rgb = [Float](repeating: 0, count: 3 * plane)
        for c in 0..<3 { for i in 0..<plane { rgb[c * plane + i] = data[c * plane + i] * Float(p.std[c]) + Float(p.mean[c]) } }
        func factor(_ x: Double) -> Float { Float(random.uniform(Swift.max(0, 1 - x), 1 + x)) }
        func gray(_ i: Int) -> Float { 0.299 * rgb[i] + 0.587 * rgb[plane + i] + 0.114 * rgb[2 * plane + i] }
        func blend(_ f: Float, with other: (Int) -> Float) {
            for i in 0..<plane {
                let o = other(i)
                for c in 0..<3 { rgb[c * plane + i] = Swift.min(1, Swift.max(0, f * rgb[c * plane + i] + (1 - f) * o)) }
            }
        }
        var order = [0, 1, 2, 3]
        order.shuffle(using: &random)
        for op in order {
            switch op {
            case 0 where j.brightness > 0: blend(factor(j.brightness)) { _ in 0 }
            case 1 where j.contrast > 0:
                let f = factor(j.contrast)
                var total: Float = 0
                for i in 0..<plane { total += gray(i) }
                let mean = total / Float(plane)
                blend(f) { _ in mean }
            case 2 where j.saturation > 0:
                let f = factor(j.saturation)
                let grays = (0..<plane).map(gray)
                blend(f) { grays[$0] }
            case 3 where j.hue > 0:
                let shift = Float(random.uniform(-j.hue, j.hue))
                for i in 0..<plane {
                    var (h, s, v) = rgbToHSV(rgb[i], rgb[plane + i], rgb[2 * plane + i])
                    h = (h + shift).truncatingRemainder(dividingBy: 1)
                    if h < 0 { h += 1 }
                    (rgb[i], rgb[plane + i], rgb[2 * plane + i]) = hsvToRGB(h, s, v)
                }
            default: break
            }
        }
        for c in 0..<3 { for i in 0..<plane { data[c * plane + i] = (rgb[c * plane + i] - Float(p.mean[c])) / Float(p.std[c]) } }
    }
}

func rgbToHSV(_ r: Float, _ g: Float, _ b: Float) -> (Float, Float, Float) {
    let maxc = Swift.max(r, g, b), minc = Swift.min(r, g, b)
    let delta = maxc - minc
    let s = maxc == 0 ? 0 : delta / maxc
    guard delta > 0 else { return (0, s, maxc) }
    var h: Float
    if maxc == r { h = (g - b) / delta } else if maxc == g { h = 2 + (b - r) / delta } else { h = 4 + (r - g) / delta }
    h /= 6
    if h < 0 { h += 1 }
    return (h, s, maxc)
}

func hsvToRGB(_ h: Float, _ s: Float, _ v: Float) -> (Float, Float, Float) {
    let i = Int(h * 6) % 6
    let f = h * 6 - Float(Int(h * 6))
    let p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f))
    switch i {
    case 0: return (v, t, p)
    case 1: return (q, v, p)
    case 2: return (p, v, t)
    case 3: return (p, q, v)
    case 4: return (t, p, v)
    default: return (v, p, q)
    }
}

extension RGBImage {
    public func flippedHorizontally() -> RGBImage {
        var out = pixels
        for y in 0..<height {
            for x in 0..<width {
                let s = (y * width + x) * 3, d = (y * width + (width - 1 - x)) * 3
                out[d] = pixels[s]; out[d + 1] = pixels[s + 1]; out[d + 2] = pixels[s + 2]
            }
        }
        return RGBImage(width: width, height: height, pixels: out)
    }

    /// Rotates about the centre by `degrees` (counter-clockwise), bilinear, same size, `fill` outside.
    public func rotated(degrees: Double, fill: (UInt8, UInt8, UInt8)) -> RGBImage {
        let angle = degrees * Double.pi / 180
        let cosA = Foundation.cos(angle), sinA = Foundation.sin(angle)
        let cx = Double(width - 1) / 2, cy = Double(height - 1) / 2
        var out = [UInt8](repeating: 0, count: pixels.count)
        let fills = [fill.0, fill.1, fill.2]
        for y in 0..<height {
            for x in 0..<width {
                // Inverse mapping: where in the source does output (x, y) come from?
                let dx = Double(x) - cx, dy = Double(y) - cy
                let sx = cosA * dx - sinA * dy + cx, sy = sinA * dx + cosA * dy + cy
                let x0 = Int(sx.rounded(.down)), y0 = Int(sy.rounded(.down))
                let fx = sx - Double(x0), fy = sy - Double(y0)
                for c in 0..<3 {
                    func at(_ px: Int, _ py: Int) -> Double {
                        px >= 0 && px < width && py >= 0 && py < height ? Double(pixels[(py * width + px) * 3 + c]) : Double(fills[c])
                    }
                    let v = (at(x0, y0) * (1 - fx) + at(x0 + 1, y0) * fx) * (1 - fy) + (at(x0, y0 + 1) * (1 - fx) + at(x0 + 1, y0 + 1) * fx) * fy
                    out[(y * width + x) * 3 + c] = UInt8(Swift.min(255, Swift.max(0, v.rounded())))
                }
            }
        }
        return RGBImage(width: width, height: height, pixels: out)
    }
}
