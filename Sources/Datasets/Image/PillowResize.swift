// Pillow-exact resampling. Hugging Face's CLIP preprocessing (PIL backend) resizes with
// `PIL.Image.resize(size, BICUBIC)`; torch's antialiased bicubic differs by up to 7/255 on noisy
// images, so this is a port of Pillow 13's `src/libImaging/Resample.c` (8 bits per channel path),
// including its float32 box, double-precision coefficients, 22-bit fixed point and pass order.

/// The resampling filters of `PIL.Image.resize` that the CLIP pipelines use.
public enum ResampleFilter: Sendable {
    /// Pillow's `Image.BICUBIC`: Keys cubic with a = -0.5, support 2 (grown by the downscale factor).
    case bicubic
    /// Pillow's `Image.BILINEAR`: triangle filter, support 1 (grown by the downscale factor).
    case bilinear

    var support: Double {
        switch self {
        case .bicubic: 2.0
        case .bilinear: 1.0
        }
    }

    /// The filter kernel, with Pillow's exact operation order so the doubles round identically.
    @inline(__always)
    func weight(_ x: Double) -> Double {
        let x = x < 0 ? -x : x
        switch self {
        case .bicubic:
            let a = -0.5
            if x < 1 { return ((a + 2.0) * x - (a + 3.0)) * x * x + 1 }
            if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0
        case .bilinear:
            return x < 1 ? 1 - x : 0
        }
    }
}

extension RGBImage {
    /// Pillow-exact resize: the same bytes as `PIL.Image.resize((width, height), resample, box)`
    /// on an RGB image (Pillow 13, no `reducing_gap`).
    ///
    /// - Parameters:
    ///   - width: Output width, at least 1.
    ///   - height: Output height, at least 1.
    ///   - filter: `.bicubic` (CLIP's choice) or `.bilinear`. Both antialias when downscaling.
    ///   - box: The source region `(x0, y0, x1, y1)` in pixel coordinates; it may be fractional and
    ///     must lie within the image. `nil` means the whole image. Like Pillow, the coordinates are
    ///     rounded to `Float` first.
    public func resized(
        width: Int, height: Int, filter: ResampleFilter = .bicubic,
        box: (x0: Double, y0: Double, x1: Double, y1: Double)? = nil
    ) -> RGBImage {
        precondition(width >= 1 && height >= 1, "resize: height and width must be > 0")
        let region = SourceBox(box, width: self.width, height: self.height)
        if width == self.width && height == self.height && region.isWhole(width: width, height: height) {
            return self
        }
        if self.width == 0 || self.height == 0 {
            return RGBImage(width: width, height: height)  // Pillow gives black too
        }
        if let origin = region.integralCrop(width: width, height: height) {
            return cropped(x: origin.x, y: origin.y, width: width, height: height)
        }
        return PillowResampler.resample(self, width: width, height: height, filter: filter, box: region)
    }

    /// Resizes so the shorter side becomes `shortest`, as Hugging Face's image processors do for
    /// `size={"shortest_edge": shortest}` (`get_resize_output_image_size` with
    /// `default_to_square=False`): the longer side is `Int(Double(shortest * long) / Double(short))`,
    /// truncated. Follow with ``centerCropped(width:height:)`` for CLIP's centre crop.
    public func resizedShortestSide(to shortest: Int, filter: ResampleFilter = .bicubic) -> RGBImage {
        let size = Self.shortestSideSize(width: width, height: height, shortest: shortest)
        return resized(width: size.width, height: size.height, filter: filter)
    }

    /// Crops the centre `width`×`height`, as Hugging Face's `center_crop`: the offset is
    /// `(size - crop) // 2` (floor), and a crop larger than the image is padded with black.
    public func centerCropped(width cropWidth: Int, height cropHeight: Int) -> RGBImage {
        precondition(cropWidth >= 0 && cropHeight >= 0, "centerCropped: negative size")
        // `>> 1` is floor division, like Python's `//`, which matters when the crop is larger.
        let left = (width - cropWidth) >> 1
        let top = (height - cropHeight) >> 1
        if left >= 0 && top >= 0 {
            return cropped(x: left, y: top, width: cropWidth, height: cropHeight)
        }
        return paddedCrop(x: left, y: top, width: cropWidth, height: cropHeight)
    }

    /// The output size of ``resizedShortestSide(to:filter:)``.
    static func shortestSideSize(width: Int, height: Int, shortest: Int) -> (width: Int, height: Int) {
        precondition(width > 0 && height > 0 && shortest > 0, "shortest-side resize of an empty image")
        let (short, long) = width <= height ? (width, height) : (height, width)
        // Python's `int(size * long / short)`: true division is correctly rounded, so is this.
        let newLong = Int(Double(shortest * long) / Double(short))
        return width <= height ? (shortest, newLong) : (newLong, shortest)
    }

    /// The sub-image at (x, y), which must lie within the image.
    func cropped(x: Int, y: Int, width cropWidth: Int, height cropHeight: Int) -> RGBImage {
        precondition(x >= 0 && y >= 0 && x + cropWidth <= width && y + cropHeight <= height, "crop outside the image")
        let rowBytes = cropWidth * 3
        let out = [UInt8](unsafeUninitializedCapacity: rowBytes * cropHeight) { dst, count in
            pixels.withUnsafeBufferPointer { src in
                for row in 0..<cropHeight {
                    let from = ((y + row) * width + x) * 3
                    (dst.baseAddress! + row * rowBytes).initialize(from: src.baseAddress! + from, count: rowBytes)
                }
            }
            count = rowBytes * cropHeight
        }
        return RGBImage(width: cropWidth, height: cropHeight, pixels: out)
    }

    /// A crop whose window may stick out of the image; the outside is black.
    private func paddedCrop(x: Int, y: Int, width cropWidth: Int, height cropHeight: Int) -> RGBImage {
        var out = [UInt8](repeating: 0, count: cropWidth * cropHeight * 3)
        let columns = max(0, -x)..<min(cropWidth, width - x)
        let rows = max(0, -y)..<min(cropHeight, height - y)
        guard !columns.isEmpty && !rows.isEmpty else {
            return RGBImage(width: cropWidth, height: cropHeight, pixels: out)
        }
        out.withUnsafeMutableBufferPointer { dst in
            pixels.withUnsafeBufferPointer { src in
                for row in rows {
                    let to = (row * cropWidth + columns.lowerBound) * 3
                    let from = ((row + y) * width + columns.lowerBound + x) * 3
                    (dst.baseAddress! + to).update(from: src.baseAddress! + from, count: columns.count * 3)
                }
            }
        }
        return RGBImage(width: cropWidth, height: cropHeight, pixels: out)
    }
}

/// The source region, in `Float` because Pillow parses the box with `"(ffff)"` and all its
/// arithmetic on it starts from float32 values.
struct SourceBox {
    var x0: Float, y0: Float, x1: Float, y1: Float

    init(_ box: (x0: Double, y0: Double, x1: Double, y1: Double)?, width: Int, height: Int) {
        let b = box ?? (0, 0, Double(width), Double(height))
        (x0, y0, x1, y1) = (Float(b.x0), Float(b.y0), Float(b.x1), Float(b.y1))
        // Pillow's `_resize` checks, with its messages.
        precondition(x0.isFinite && y0.isFinite && x1.isFinite && y1.isFinite, "resize: box must be finite")
        precondition(x0 >= 0 && y0 >= 0, "box offset can't be negative")
        precondition(x1 <= Float(width) && y1 <= Float(height), "box can't exceed original image size")
        precondition(x1 - x0 >= 0 && y1 - y0 >= 0, "box can't be empty")
    }

    func isWhole(width: Int, height: Int) -> Bool {
        x0 == 0 && y0 == 0 && x1 == Float(width) && y1 == Float(height)
    }

    /// Pillow's `_resize` shortcut: an integral box offset with the box size equal to the output
    /// size is a plain crop.
    func integralCrop(width: Int, height: Int) -> (x: Int, y: Int)? {
        guard x0 == x0.rounded(.towardZero), x1 - x0 == Float(width),
              y0 == y0.rounded(.towardZero), y1 - y0 == Float(height) else { return nil }
        return (Int(x0), Int(y0))
    }
}

/// Pillow's `PRECISION_BITS`: 8 bits of result, 2 bits for the overshoot of negative lobes.
private let precisionBits: Int32 = 32 - 8 - 2
/// The accumulator's start value, so the final shift rounds to nearest.
private let roundingHalf: Int32 = 1 << (precisionBits - 1)

/// One axis of a separable resample: for each output index, the first source index, the tap count
/// and the fixed-point weights (`Resample.c`'s `bounds` and `kk`).
struct ResampleKernel {
    /// Weights per output index (the stride of `weights`), Pillow's `ksize`.
    let taps: Int
    var first: [Int]
    var count: [Int]
    var weights: [Int32]

    var outSize: Int { first.count }

    /// `precompute_coeffs` then `normalize_coeffs_8bpc`.
    init(inSize: Int, in0: Float, in1: Float, outSize: Int, filter: ResampleFilter) {
        // The box extent is a float subtraction, widened afterwards, as in C.
        let scale = Double(in1 - in0) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let support = filter.support * filterScale
        taps = Int(support.rounded(.up)) * 2 + 1
        first = [Int](repeating: 0, count: outSize)
        count = [Int](repeating: 0, count: outSize)
        weights = [Int32](repeating: 0, count: outSize * taps)

        var row = [Double](repeating: 0, count: taps)
        let inverseScale = 1.0 / filterScale
        for xx in 0..<outSize {
            let center = Double(in0) + (Double(xx) + 0.5) * scale
            // `(int)` truncates toward zero, and so does `Int(_:)`.
            let xmin = max(Int(center - support + 0.5), 0)
            let n = max(min(Int(center + support + 0.5), inSize) - xmin, 0)
            var total = 0.0
            for x in 0..<n {
                let w = filter.weight((Double(x + xmin) - center + 0.5) * inverseScale)
                row[x] = w
                total += w
            }
            for x in 0..<n {
                let k = total != 0 ? row[x] / total : row[x]
                weights[xx * taps + x] = Self.fixedPoint(k)
            }
            first[xx] = xmin
            count[xx] = n
        }
    }

    /// `normalize_coeffs_8bpc`: round half away from zero into 22-bit fixed point.
    @inline(__always)
    static func fixedPoint(_ k: Double) -> Int32 {
        let scaled = k * Double(1 << precisionBits)
        return Int32(k < 0 ? -0.5 + scaled : 0.5 + scaled)
    }

    /// Shifts the source indices down by `offset` (the vertical pass then reads a cropped band).
    mutating func shift(by offset: Int) {
        for i in first.indices { first[i] -= offset }
    }
}

/// `clip8`: Pillow looks `v >> PRECISION_BITS` up in a table clamped to 0...255.
@inline(__always)
private func clip8(_ v: Int32) -> UInt8 {
    UInt8(clamping: v >> precisionBits)
}

/// `ImagingResampleInner` for 8-bit RGB, as of Pillow 13.
enum PillowResampler {
    static func resample(_ image: RGBImage, width: Int, height: Int, filter: ResampleFilter, box: SourceBox) -> RGBImage {
        // Pillow compares the box's far edge with the *output* size here (equal to the input's
        // whenever the first test is false).
        let needHorizontal = width != image.width || box.x0 != 0 || box.x1 != Float(width)
        let needVertical = height != image.height || box.y0 != 0 || box.y1 != Float(height)
        guard needHorizontal || needVertical else { return image }

        var vertical = ResampleKernel(inSize: image.height, in0: box.y0, in1: box.y1, outSize: height, filter: filter)
        let horizontal = needHorizontal
            ? ResampleKernel(inSize: image.width, in0: box.x0, in1: box.x1, outSize: width, filter: filter) : nil

        guard let horizontal else { return resampleVertical(image, kernel: vertical) }
        guard needVertical else { return resampleHorizontal(image, rows: 0..<image.height, kernel: horizontal) }

        // Each pass rounds to 8 bits, so the order changes the bytes and must be Pillow's.
        if verticalFirst(image, width: width, height: height) {
            let shrunk = resampleVertical(image, kernel: vertical)
            return resampleHorizontal(shrunk, rows: 0..<shrunk.height, kernel: horizontal)
        }
        // Only the source rows the vertical pass reads go through the horizontal pass.
        let firstRow = vertical.first[0]
        let lastRow = vertical.first[height - 1] + vertical.count[height - 1]
        vertical.shift(by: firstRow)
        return resampleVertical(resampleHorizontal(image, rows: firstRow..<lastRow, kernel: horizontal), kernel: vertical)
    }

    /// Pillow 13 (python-pillow/Pillow#9549) runs the vertical pass first when the height loses
    /// more than twice as many pixels as the width (whole-image sizes; the box plays no part).
    /// Pillow 12 and earlier always go horizontal first.
    static func verticalFirst(_ image: RGBImage, width: Int, height: Int) -> Bool {
        let heightLoss = image.height - height
        return heightLoss > 0 && heightLoss > 2 * (image.width - width)
    }

    /// `ImagingResampleHorizontal_8bpc` over the source rows `rows`.
    static func resampleHorizontal(_ image: RGBImage, rows: Range<Int>, kernel: ResampleKernel) -> RGBImage {
        let outWidth = kernel.outSize
        let outBytes = outWidth * rows.count * 3
        let out = [UInt8](unsafeUninitializedCapacity: outBytes) { dst, initialized in
            image.pixels.withUnsafeBufferPointer { src in
                kernel.first.withUnsafeBufferPointer { first in
                    kernel.count.withUnsafeBufferPointer { count in
                        kernel.weights.withUnsafeBufferPointer { weights in
                            for (outRow, row) in rows.enumerated() {
                                horizontalRow(
                                    src: src.baseAddress! + row * image.width * 3,
                                    dst: dst.baseAddress! + outRow * outWidth * 3,
                                    outWidth: outWidth, taps: kernel.taps,
                                    first: first.baseAddress!, count: count.baseAddress!, weights: weights.baseAddress!)
                            }
                        }
                    }
                }
            }
            initialized = outBytes
        }
        return RGBImage(width: outWidth, height: rows.count, pixels: out)
    }

    @inline(__always)
    private static func horizontalRow(
        src: UnsafePointer<UInt8>, dst: UnsafeMutablePointer<UInt8>, outWidth: Int, taps: Int,
        first: UnsafePointer<Int>, count: UnsafePointer<Int>, weights: UnsafePointer<Int32>
    ) {
        for xx in 0..<outWidth {
            let k = weights + xx * taps
            var p = src + first[xx] * 3
            var r = roundingHalf, g = roundingHalf, b = roundingHalf
            for t in 0..<count[xx] {
                let w = k[t]
                r &+= Int32(p[0]) &* w
                g &+= Int32(p[1]) &* w
                b &+= Int32(p[2]) &* w
                p += 3
            }
            dst[xx * 3] = clip8(r)
            dst[xx * 3 + 1] = clip8(g)
            dst[xx * 3 + 2] = clip8(b)
        }
    }

    /// `ImagingResampleVertical_8bpc`. Each output row accumulates whole source rows at a time:
    /// the sums are the same Int32 sums as Pillow's per-pixel loop, in a vectorisable order.
    static func resampleVertical(_ image: RGBImage, kernel: ResampleKernel) -> RGBImage {
        let rowBytes = image.width * 3
        let outHeight = kernel.outSize
        var accumulator = [Int32](repeating: 0, count: rowBytes)
        let out = [UInt8](unsafeUninitializedCapacity: rowBytes * outHeight) { dst, initialized in
            image.pixels.withUnsafeBufferPointer { src in
                kernel.weights.withUnsafeBufferPointer { weights in
                    accumulator.withUnsafeMutableBufferPointer { acc in
                        for yy in 0..<outHeight {
                            let k = weights.baseAddress! + yy * kernel.taps
                            acc.update(repeating: roundingHalf)
                            for t in 0..<kernel.count[yy] {
                                accumulateRow(src.baseAddress! + (kernel.first[yy] + t) * rowBytes, weight: k[t], into: acc.baseAddress!, count: rowBytes)
                            }
                            let row = dst.baseAddress! + yy * rowBytes
                            for i in 0..<rowBytes { row[i] = clip8(acc[i]) }
                        }
                    }
                }
            }
            initialized = rowBytes * outHeight
        }
        return RGBImage(width: image.width, height: outHeight, pixels: out)
    }

    @inline(__always)
    private static func accumulateRow(_ src: UnsafePointer<UInt8>, weight: Int32, into acc: UnsafeMutablePointer<Int32>, count: Int) {
        for i in 0..<count { acc[i] &+= Int32(src[i]) &* weight }
    }
}
