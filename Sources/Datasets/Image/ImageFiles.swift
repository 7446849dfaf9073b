import Foundation
import Torch
#if canImport(Glibc)
import Glibc
#endif

/// An image file that cannot be read (as opposed to one that does not decode).
public struct ImageFileError: Error, CustomStringConvertible, Sendable {
    public let path: String
    /// What is wrong, without the path: "does not exist", "is a folder, not an image file".
    public let problem: String
    public var description: String { "image file \(path) \(problem)" }
}

/// The bytes of an image file named by a manifest or on a command line, with what is wrong in
/// the user's terms: missing, a folder, not a regular file (a device or pipe would be read
/// without end), larger than an image may be (`TarReader.maximumMemberSize`, the same limit as
/// an image inside a shard), unreadable.
public func readImageFile(_ path: String) throws(ImageFileError) -> [UInt8] {
    var info = stat()
    guard stat(path, &info) == 0 else {
        throw ImageFileError(path: path, problem: errno == ENOENT ? "does not exist" : "cannot be read (\(String(cString: strerror(errno))))")
    }
    switch info.st_mode & S_IFMT {
    case S_IFREG: break
    case S_IFDIR: throw ImageFileError(path: path, problem: "is a folder, not an image")
    default: throw ImageFileError(path: path, problem: "is not a regular file (a device, pipe or socket), not an image")
    }
    guard Int(info.st_size) <= TarReader.maximumMemberSize else {
        throw ImageFileError(path: path, problem: "has \(TarReader.describe(bytes: Int(info.st_size))), more than the \(TarReader.maximumMemberSize >> 20) MiB an image may have here")
    }
    guard let data = FileManager.default.contents(atPath: path) else {
        throw ImageFileError(path: path, problem: "cannot be read")
    }
    return [UInt8](data)
}

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
                let data: [UInt8]
                do { data = try readImageFile(path) } catch { throw DataFileError(file: path, reason: "the image file \(error.problem)") }
                do {
                    try data.withUnsafeBytes { bytes in
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
