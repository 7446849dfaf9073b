import Foundation
import Torch

extension ImagePipeline {
    /// Image files (JPEG, PNG or WebP) decoded and preprocessed as for evaluation (this pipeline's preprocessing, no
    /// randomness), as float batches [n, 3, size, size] of at most `batchSize` images. An
    /// unreadable or undecodable file is an error that names it.
    public func pixels(ofFiles paths: [String], batchSize: Int) throws -> [Tensor] {
        let decoder = ImageDecoder()
        var random = SeededRandom(seed: 0)
        var batches: [Tensor] = []
        for start in stride(from: 0, to: paths.count, by: batchSize) {
            let chunk = paths[start..<min(start + batchSize, paths.count)]
            var floats = [Float](repeating: 0, count: chunk.count * sampleCount)
            for (i, path) in chunk.enumerated() {
                guard let data = FileManager.default.contents(atPath: path) else { throw DataFileError(file: path, reason: "cannot read the image") }
                do {
                    try [UInt8](data).withUnsafeBytes { bytes in
                        try floats.withUnsafeMutableBufferPointer { all in
                            let slice = UnsafeMutableBufferPointer(rebasing: all[(i * sampleCount)..<((i + 1) * sampleCount)])
                            try process(bytes, decoder: decoder, random: &random, into: slice)
                        }
                    }
                } catch {
                    throw DataFileError(file: path, reason: "\(error)")
                }
            }
            batches.append(Tensor(floats, shape: [chunk.count, 3, preprocessing.size, preprocessing.size]))
        }
        return batches
    }
}
