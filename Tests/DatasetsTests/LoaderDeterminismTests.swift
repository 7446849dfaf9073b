import Foundation
import Testing
import Torch
@testable import Datasets

/// Thread-count and resume determinism with every augmentation on, on textured images (a wrong
/// crop, flip or rotation changes pixels, unlike the flat images of LoaderTests).
@Suite("Data loader determinism with augmentation")
struct LoaderDeterminismTests {
    static let count = 40
    static let alternatives = [
        "a small red dog runs quickly across the green field near the old house",
        "the happy child holds a bright yellow balloon beside a tall tree",
    ]

    /// Seeded noise over colour gradients and a diagonal stripe, different for every image.
    static func texturedImage(_ i: Int, width: Int = 64, height: Int = 48) -> RGBImage {
        var random = SeededRandom(seed: 1234, epoch: 0, index: i)
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        let stripe = Int(random.next() % 7) + 3
        for y in 0..<height {
            for x in 0..<width {
                let o = (y * width + x) * 3
                let noise = Int(random.next() % 61) - 30
                let band = ((x + 2 * y) / stripe) % 2 == 0 ? 40 : 0
                pixels[o] = UInt8(clamping: x * 255 / width + noise + band)
                pixels[o + 1] = UInt8(clamping: y * 255 / height - noise + (i * 37) % 80)
                pixels[o + 2] = UInt8(clamping: (x + y) * 2 + noise / 2 + band)
            }
        }
        return RGBImage(width: width, height: height, pixels: pixels)
    }

    static func captions(_ i: Int) -> [String] { alternatives.map { "\($0) number \(i)" } }

    /// The same textured samples as WebDataset shards and as a JSONL manifest, both with two
    /// caption alternatives per sample.
    static let sources: [(String, DatasetSource)] = {
        let folder = temporaryFolder("loaderdeterminism")
        let encoder = JPEGEncoder()
        let writer = try! ShardWriter(folder: folder, prefix: "tex", samplesPerShard: 12)
        var manifest = ""
        for i in 0..<count {
            let jpeg = try! encoder.encode(texturedImage(i), quality: 92)
            let json = try! JSONSerialization.data(withJSONObject: ["captions": captions(i)])
            try! writer.add(key: String(format: "%06d", i), members: [("jpg", jpeg), ("json", [UInt8](json))])
            try! Data(jpeg).write(to: URL(fileURLWithPath: "\(folder)/img\(i).jpg"))
            let row = try! JSONSerialization.data(withJSONObject: ["image_path": "img\(i).jpg", "captions": captions(i)])
            manifest += String(decoding: row, as: UTF8.self) + "\n"
        }
        try! writer.close()
        try! manifest.write(toFile: "\(folder)/manifest.jsonl", atomically: true, encoding: .utf8)
        let source = try! ManifestSource(path: "\(folder)/manifest.jsonl", captionColumn: "captions")
        return [("shards", .shards(writer.writtenShards)), ("manifest", .manifest(source))]
    }()

    static let wordNet = Result { try WordNet() }

    static let everyAugmentation = ImageAugmentation(
        randomResizedCrop: .init(scale: [0.3, 1.0]), horizontalFlip: 0.5,
        rotation: .init(probability: 0.6, degrees: 30, fill: [10, 20, 30]),
        colorJitter: .init(probability: 0.8, brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1))

    static func loader(_ source: DatasetSource, threads: Int, augment: Bool = true, eda: Bool = true) throws -> DataLoader {
        let augmentation = augment ? everyAugmentation : ImageAugmentation(randomResizedCrop: nil)
        let pipeline = ImagePipeline(preprocessing: ImagePreprocessing(size: 24), augmentation: augmentation)
        // A teacher's view (other size and normalisation) replays the same draws.
        let second = ImagePipeline(preprocessing: ImagePreprocessing(size: 16, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]), augmentation: augmentation)
        let augmenter = eda ? TextAugmenter(wordNet: try wordNet.get(), config: TextAugmentationConfig(
            synonymReplacement: 0.2, randomInsertion: 0.1, randomSwap: 0.1, randomDeletion: 0.1)) : nil
        return DataLoader(source: source, pipeline: pipeline, teacherView: second, captionAugmenter: augmenter,
                          options: DataLoaderOptions(batchSize: 6, threads: threads, seed: 17, shuffle: true, dropLast: false, shuffleBuffer: 9))
    }

    struct Sample {
        let origin: String
        let caption: String
        let pixels: Tensor
        let second: Tensor
    }

    static func samples(_ iterator: EpochIterator) throws -> [Sample] {
        var out: [Sample] = []
        while let batch = try iterator.next() {
            for i in 0..<batch.count {
                out.append(Sample(origin: batch.origins[i], caption: batch.captions[i], pixels: batch.pixels[i], second: batch.teacherPixels![i]))
            }
        }
        #expect(iterator.skippedCount == 0)
        return out
    }

    static func expectSame(_ a: [Sample], _ b: [Sample], _ what: String) {
        #expect(a.count == b.count, "\(what): \(a.count) vs \(b.count) samples")
        for (i, (x, y)) in zip(a, b).enumerated() {
            #expect(x.origin == y.origin, "\(what): sample \(i) is \(x.origin) vs \(y.origin)")
            #expect(x.caption == y.caption, "\(what): sample \(i) caption '\(x.caption)' vs '\(y.caption)'")
            let samePixels = x.pixels.equal(y.pixels), sameSecondView = x.second.equal(y.second)
            #expect(samePixels, "\(what): sample \(i) (\(x.origin)) pixels differ")
            #expect(sameSecondView, "\(what): sample \(i) (\(x.origin)) second-view pixels differ")
        }
    }

    @Test(arguments: [0, 1])
    func augmentedSamplesDoNotDependOnThreadsOrResume(_ which: Int) throws {
        let (name, source) = Self.sources[which]
        let one = try Self.samples(Self.loader(source, threads: 1).epoch(2))
        #expect(one.count == Self.count)
        for threads in [2, 4] {
            Self.expectSame(one, try Self.samples(Self.loader(source, threads: threads).epoch(2)), "\(name), 1 vs \(threads) threads")
        }
        // Resume mid-epoch, not on a batch boundary, with another thread count.
        for start in [13, 30] {
            let resumed = try Self.samples(Self.loader(source, threads: 4).epoch(2, startingAt: start))
            Self.expectSame(Array(one.dropFirst(start)), resumed, "\(name), resumed at \(start)")
        }
    }

    /// The same shards in another folder give the same samples (a resumed run may see its data
    /// under another path); origins differ only in the folder.
    @Test func movedShardsGiveTheSameSamples() throws {
        guard case .shards(let paths) = Self.sources[0].1 else { Issue.record("not shards"); return }
        let moved = temporaryFolder("moved")
        for path in paths { try FileManager.default.copyItem(atPath: path, toPath: "\(moved)/\(URL(fileURLWithPath: path).lastPathComponent)") }
        let there = try Self.samples(Self.loader(.shards(paths), threads: 2).epoch(3))
        let here = try Self.samples(Self.loader(.shards(paths.map { "\(moved)/\(URL(fileURLWithPath: $0).lastPathComponent)" }), threads: 2).epoch(3))
        #expect(there.count == Self.count && there.map(\.origin) != here.map(\.origin))
        func relocated(_ s: [Sample]) -> [Sample] {
            s.map { Sample(origin: String($0.origin.split(separator: "/").last!), caption: $0.caption, pixels: $0.pixels, second: $0.second) }
        }
        Self.expectSame(relocated(there), relocated(here), "moved shards")
    }

    /// The comparisons above can fail: augmentation really changes pixels and captions, per
    /// epoch, and two epochs differ.
    @Test(arguments: [0, 1])
    func augmentationChangesPixelsAndCaptionsPerEpoch(_ which: Int) throws {
        let (name, source) = Self.sources[which]
        func byOrigin(_ s: [Sample]) -> [String: Sample] { Dictionary(uniqueKeysWithValues: s.map { ($0.origin, $0) }) }
        let epoch0 = try Self.samples(Self.loader(source, threads: 2).epoch(0))
        let epoch1 = try Self.samples(Self.loader(source, threads: 2).epoch(1))
        #expect(epoch0.map(\.origin) != epoch1.map(\.origin), "\(name): two epochs have the same order")
        #expect(Set(epoch0.map(\.origin)) == Set(epoch1.map(\.origin)))
        let a = byOrigin(epoch0), b = byOrigin(epoch1)
        let plainA = byOrigin(try Self.samples(Self.loader(source, threads: 2, augment: false, eda: false).epoch(0)))
        let plainB = byOrigin(try Self.samples(Self.loader(source, threads: 2, augment: false, eda: false).epoch(1)))
        var changedByEpoch = 0, changedByAugmentation = 0, edited = 0, alternativeChanged = 0
        for (origin, sample) in a {
            let other = try #require(b[origin]), plain = try #require(plainA[origin]), plainNext = try #require(plainB[origin])
            // Without augmentation a sample's pixels are the same every epoch...
            let unchanged = plain.pixels.equal(plainNext.pixels)
            #expect(unchanged, "\(name): \(origin) unaugmented pixels changed between epochs")
            // ...with it, they differ between epochs and from the unaugmented image.
            if !sample.pixels.equal(other.pixels) { changedByEpoch += 1 }
            if !sample.pixels.equal(plain.pixels) { changedByAugmentation += 1 }
            // Each epoch takes the other caption alternative; EDA edits most captions.
            if plain.caption != plainNext.caption { alternativeChanged += 1 }
            let index = Int(plain.caption.split(separator: " ").last!)!
            #expect(Self.captions(index).contains(plain.caption))
            if !Self.captions(index).contains(sample.caption) { edited += 1 }
        }
        #expect(changedByEpoch >= Self.count - 2, "\(name): only \(changedByEpoch) samples changed between epochs")
        #expect(changedByAugmentation >= Self.count - 2, "\(name): only \(changedByAugmentation) samples changed by augmentation")
        #expect(alternativeChanged == Self.count, "\(name): caption alternatives did not rotate")
        #expect(edited >= Self.count / 2, "\(name): EDA changed only \(edited) captions")
    }
}
