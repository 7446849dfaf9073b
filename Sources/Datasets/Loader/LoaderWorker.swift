import Foundation

/// Decodes and augments samples; one image decoder per thread.
struct Worker {
    let loader: DataLoader
    let epoch: Int
    let pipe: SamplePipe

    func run() {
        let decoder = ImageDecoder()
        while let (sequence, item) = pipe.work() {
            pipe.deliver(sequence, process(item, sequence: sequence, decoder: decoder))
        }
    }

    func process(_ item: WorkItem, sequence: Int, decoder: ImageDecoder) -> Result<ProcessedSample, LoadFailure> {
        let record: SampleRecord
        // The sample's identity for its randomness: its manifest row, or its place in the stream.
        let id: Int
        // Caption alternatives rotate per sample from epoch to epoch, so they need an identity
        // that survives the shuffle: the row, or (shards) a stable hash of the shard's file name
        // and the sample's key (not of the folder, so that moved data resumes the same).
        let captionID: Int
        switch item {
        case .failed(let failure): return .failure(failure)
        case .elsewhere: return .failure(.elsewhere)
        case .record(let r):
            record = r
            id = sequence
            captionID = SeededRandom.stableHash(r.origin.split(separator: "/").last.map(String.init) ?? r.origin)
        case .row(let row):
            guard case .manifest(let manifest) = loader.source else { fatalError("rows come from manifests") }
            do { record = try manifest.record(row) } catch let issue as SampleIssue { return .failure(.sample(issue)) } catch {
                return .failure(.sample(SampleIssue(origin: "\(manifest.path), row \(row + 1)", reason: "\(error)")))
            }
            id = row
            captionID = row
        }
        let options = loader.options
        do {
            var random = SeededRandom(seed: options.seed, epoch: epoch, index: id)
            var pixels: [Float] = [], teacherViewPixels: [Float] = []
            if let pipeline = loader.pipeline {
                let bytes: [UInt8]
                switch record.image {
                case .bytes(let b): bytes = b
                case .file(let path):
                    do { bytes = try readImageFile(path) } catch { throw ImageDecodeError(reason: error.description) }
                case .none: throw ImageDecodeError(reason: "the sample has no image (a text-only source) but the model needs one")
                }
                // The teacher view replays the same random draws: same crop, flip and jitter.
                var replay = random
                do {
                    pixels = try Self.run(pipeline, bytes, decoder, &random)
                    if let teacherView = loader.teacherView { teacherViewPixels = try Self.run(teacherView, bytes, decoder, &replay) }
                } catch let error as ImageDecodeError {
                    // A manifest row names its image file too.
                    guard case .file(let path) = record.image else { throw error }
                    throw ImageDecodeError(reason: "\(path): \(error)")
                }
            }
            var caption = TextAugmenter.pick(record.captions, epoch: epoch, index: captionID, seed: options.seed)
            if let augmenter = loader.captionAugmenter {
                caption = augmenter.augment(caption, seed: options.seed, epoch: epoch, index: id)
            }
            return .success(ProcessedSample(pixels: pixels, teacherPixels: teacherViewPixels, caption: caption, label: record.label, origin: record.origin))
        } catch {
            return .failure(.sample(SampleIssue(origin: record.origin, reason: "\(error)")))
        }
    }

    private static func run(_ pipeline: ImagePipeline, _ bytes: [UInt8], _ decoder: ImageDecoder, _ random: inout SeededRandom) throws -> [Float] {
        var pixels = [Float](repeating: 0, count: pipeline.sampleCount)
        try bytes.withUnsafeBytes { encoded in
            try pixels.withUnsafeMutableBufferPointer { out in try pipeline.process(encoded, decoder: decoder, random: &random, into: out) }
        }
        return pixels
    }
}
