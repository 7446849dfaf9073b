import Datasets
import Foundation

/// A checkpoint's `preprocessor_config.json` (transformers' CLIPImageProcessor), read strictly:
/// every field of the wrong kind, out of range or disagreeing with the vision tower is an error
/// naming the file and key, found before any model is built.
enum PreprocessorConfig {
    /// `imageSize`: the side the vision tower takes (`sizeKey` in config.json), which the crop must equal.
    static func read(_ path: String, imageSize: Int, sizeKey: String) throws -> ImagePreprocessing {
        let r = try ConfigReader.load(path, missing: "is missing")

        // transformers' defaults: resize, centre-crop, rescale by 1/255 and normalise, all on.
        for key in ["do_resize", "do_center_crop", "do_rescale", "do_normalize"] {
            if try !r.bool(key, true) {
                throw r.fail(key, "is false; ClipTune always resizes, centre-crops, rescales to [0, 1] and normalises (CLIPImageProcessor's defaults)")
            }
        }
        if let factor = try r.optionalDouble("rescale_factor"), Swift.abs(factor * 255 - 1) > 1e-6 {
            throw r.fail("rescale_factor", "must be 1/255 (0.00392156862745098), found \(factor); ClipTune rescales 8-bit pixels to [0, 1]")
        }
        let crop = try side(r, "crop_size", allowHeightWidth: true, max: ImagePreprocessing.maxSize) ?? 224
        let shortestEdge = try side(r, "size", allowHeightWidth: false, max: ImagePreprocessing.maxSize * 4) ?? crop
        let mean = try channels(r, "image_mean", ImagePreprocessing.clipMean)
        let std = try channels(r, "image_std", ImagePreprocessing.clipStd)
        guard crop == imageSize else {
            throw r.fail("crop_size", "is \(crop)\(r.values["crop_size"] == nil ? " (transformers' default)" : "") but the vision tower takes \(imageSize) × \(imageSize) images (config.json \(sizeKey)); they must agree")
        }
        if shortestEdge < crop { throw r.fail("size", "shortest edge \(shortestEdge) must be ≥ the crop size \(crop)") }
        if shortestEdge / 4 > crop { throw r.fail("size", "shortest edge \(shortestEdge) must be ≤ 4 × the crop size \(crop)") }
        if let bad = std.firstIndex(where: { $0 <= 0 }) { throw r.fail("image_std", "std values must be > 0, found \(std[bad])") }
        let preprocessing = ImagePreprocessing(size: crop, shortestEdge: shortestEdge, mean: mean, std: std)
        if let problem = preprocessing.problems.first { throw ModelConfigError(file: path, reason: problem) }
        return preprocessing
    }

    /// `crop_size` / `size`: an integer, `{"shortest_edge": n}`, or (crops) `{"height": n, "width": n}`.
    static func side(_ r: ConfigReader, _ key: String, allowHeightWidth: Bool, max: Int) throws -> Int? {
        guard let value = r.values[key], !(value is NSNull) else { return nil }
        if value is NSNumber { return try r.int(key, 0, in: 1...max) }
        guard let object = value as? [String: Any] else {
            throw r.fail(key, "expected an integer or an object with shortest_edge, found \(ConfigReader.describe(value))")
        }
        let sub = ConfigReader(object, file: r.file, prefix: r.prefix + key + ".")
        if let edge = try sub.optionalInt("shortest_edge") { return try sub.check("shortest_edge", edge, in: 1...max) }
        let height = try sub.optionalInt("height"), width = try sub.optionalInt("width")
        guard let height, let width else { throw r.fail(key, "needs shortest_edge\(allowHeightWidth ? ", or height and width" : "")") }
        guard allowHeightWidth else {
            throw r.fail(key, "gives height and width (a resize that ignores the aspect ratio); ClipTune resizes the shortest edge: give {\"shortest_edge\": n}")
        }
        guard height == width else { throw r.fail(key, "height \(height) and width \(width) differ; only square crops are supported") }
        return try sub.check("height", height, in: 1...max)
    }

    /// `image_mean` / `image_std`: three finite numbers (R, G, B), or one number for all three (as transformers reads it).
    static func channels(_ r: ConfigReader, _ key: String, _ fallback: [Double]) throws -> [Double] {
        guard let value = r.values[key], !(value is NSNull) else { return fallback }
        if value is NSNumber, let single = try r.optionalDouble(key) { return [single, single, single] }
        guard let list = value as? [Any] else { throw r.fail(key, "expected 3 numbers (R, G, B), found \(ConfigReader.describe(value))") }
        guard list.count == 3 else { throw r.fail(key, "needs 3 values (R, G, B), found \(list.count)") }
        return try list.enumerated().map { i, item in
            guard let n = item as? NSNumber, !ConfigReader.isBoolean(n), n.doubleValue.isFinite else {
                throw r.fail(key, "value \(i + 1) must be a finite number, found \(ConfigReader.describe(item))")
            }
            return n.doubleValue
        }
    }
}
