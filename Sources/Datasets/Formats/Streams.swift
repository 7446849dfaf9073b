import CZstd
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A problem with one input file (manifest, shard): names the file and what to do.
public struct DataFileError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let reason: String
    public init(file: String, reason: String) {
        self.file = file
        self.reason = reason
    }
    public var description: String { "\(file): \(reason)" }
}

/// Sequential bytes from a file, plain or zstd-compressed, read in chunks: a shard is never
/// held in memory whole.
public protocol ByteStream: AnyObject {
    /// Fills up to `count` bytes into `buffer`; returns how many were read (0 at the end).
    func read(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int
}

extension ByteStream {
    /// Reads exactly `count` bytes, or fewer only at the end of the stream.
    func readFully(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int {
        var total = 0
        while total < count {
            let n = try read(into: buffer + total, count: count - total)
            if n == 0 { break }
            total += n
        }
        return total
    }
}

/// Opens a shard for reading: `.tar.zst`/`.zst` files are decompressed on the fly.
public func openByteStream(_ path: String) throws -> ByteStream {
    let file = try FileStream(path: path)
    return path.hasSuffix(".zst") ? ZstdDecompressingStream(file, path: path) : file
}

public final class FileStream: ByteStream {
    private let fd: Int32
    let path: String

    public init(path: String) throws {
        fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw DataFileError(file: path, reason: "cannot open (\(String(cString: strerror(errno)))); check the path or shard pattern")
        }
        self.path = path
    }

    deinit { close(fd) }

    public func read(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int {
        while true {
            let n = Glibc.read(fd, buffer, count)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw DataFileError(file: path, reason: "read failed (\(String(cString: strerror(errno))))")
        }
    }
}

/// libzstd's streaming decompression over another stream.
public final class ZstdDecompressingStream: ByteStream {
    private let source: ByteStream
    private let path: String
    private let context: OpaquePointer
    private var input: [UInt8]
    private var inputStart = 0, inputEnd = 0
    private var sourceDone = false
    /// 0 once a frame has been fully decoded (libzstd's "hint" otherwise).
    private var frameRemainder = 0

    init(_ source: ByteStream, path: String) {
        self.source = source
        self.path = path
        context = ZSTD_createDStream()
        ZSTD_initDStream(context)
        input = [UInt8](repeating: 0, count: ZSTD_DStreamInSize())
    }

    deinit { ZSTD_freeDStream(context) }

    public func read(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int {
        while true {
            if inputStart == inputEnd && !sourceDone {
                inputEnd = try input.withUnsafeMutableBytes { try source.read(into: $0.baseAddress!, count: $0.count) }
                inputStart = 0
                if inputEnd == 0 { sourceDone = true }
            }
            if inputStart == inputEnd && sourceDone {
                if frameRemainder != 0 {
                    throw DataFileError(file: path, reason: "the zstd stream ends in the middle of a frame: the shard is truncated; re-create or re-download it")
                }
                return 0
            }
            var outBuffer = ZSTD_outBuffer(dst: buffer, size: count, pos: 0)
            let result = input.withUnsafeBytes { bytes -> Int in
                var inBuffer = ZSTD_inBuffer(src: bytes.baseAddress! + inputStart, size: inputEnd - inputStart, pos: 0)
                let r = ZSTD_decompressStream(context, &outBuffer, &inBuffer)
                inputStart += inBuffer.pos
                return r
            }
            if ZSTD_isError(result) != 0 {
                throw DataFileError(file: path, reason: "corrupt zstd data (\(String(cString: ZSTD_getErrorName(result))))")
            }
            frameRemainder = result
            if outBuffer.pos > 0 { return outBuffer.pos }
        }
    }
}

/// Writes a zstd-compressed file through libzstd's streaming API.
public final class ZstdFileWriter {
    private let handle: FileHandle
    private let context: OpaquePointer
    private var output: [UInt8]
    public let path: String

    public init(path: String, level: Int32 = 10) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil),
              let handle = FileHandle(forWritingAtPath: path) else {
            throw DataFileError(file: path, reason: "cannot create the file; check the output folder")
        }
        self.handle = handle
        self.path = path
        context = ZSTD_createCCtx()
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level)
        ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1)
        output = [UInt8](repeating: 0, count: ZSTD_CStreamOutSize())
    }

    deinit { ZSTD_freeCCtx(context) }

    public func write(_ bytes: [UInt8]) throws { try compress(bytes, end: false) }

    /// Ends the frame, flushes and syncs the file.
    public func close() throws {
        try compress([], end: true)
        try handle.synchronize()
        try handle.close()
    }

    private func compress(_ bytes: [UInt8], end: Bool) throws {
        try bytes.withUnsafeBytes { src in
            var input = ZSTD_inBuffer(src: src.baseAddress, size: src.count, pos: 0)
            while true {
                var out = output.withUnsafeMutableBytes { ZSTD_outBuffer(dst: $0.baseAddress, size: $0.count, pos: 0) }
                let remaining = ZSTD_compressStream2(context, &out, &input, end ? ZSTD_e_end : ZSTD_e_continue)
                if ZSTD_isError(remaining) != 0 {
                    throw DataFileError(file: path, reason: "zstd compression failed (\(String(cString: ZSTD_getErrorName(remaining))))")
                }
                if out.pos > 0 { try handle.write(contentsOf: output[0..<out.pos]) }
                if end ? remaining == 0 : input.pos == input.size { break }
            }
        }
    }
}
