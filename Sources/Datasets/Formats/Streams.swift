import CZstd
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A problem with one input file (manifest, shard): names the file (and the line, for a
/// manifest) and what to do.
public struct DataFileError: Error, CustomStringConvertible, Sendable {
    public let file: String
    /// The line of a text file (a manifest) the problem is on, counted from 1.
    public let line: Int?
    public let reason: String
    public init(file: String, line: Int? = nil, reason: String) {
        self.file = file
        self.line = line
        self.reason = reason
    }
    public var description: String { line.map { "\(file):\($0): \(reason)" } ?? "\(file): \(reason)" }
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

/// Opens a shard for reading, telling the compression by content (not by name): zstd is
/// decompressed on the fly, a plain tar is read as it is, and anything else (gzip, bzip2, xz,
/// zip, an empty file) is refused with a message that says what the file is.
public func openByteStream(_ path: String) throws -> ByteStream {
    let file = try FileStream(path: path)
    var head = [UInt8](repeating: 0, count: 8)
    let n = try head.withUnsafeMutableBytes { try file.readFully(into: $0.baseAddress!, count: $0.count) }
    head.removeLast(head.count - n)
    let stream = PrefixedStream(prefix: head, rest: file)
    switch StreamContent.of(head) {
    case .zstd: return ZstdDecompressingStream(stream, path: path)
    case .tar: return stream
    case .empty:
        throw DataFileError(file: path, reason: "is empty (0 bytes); a shard is a .tar or .tar.zst archive")
    case .other(let kind, let hint):
        throw DataFileError(file: path, reason: "is \(kind), not a .tar or .tar.zst shard (the formats read here)\(hint)")
    }
}

/// What the first bytes of a shard file say it is.
enum StreamContent: Equatable {
    case zstd, tar, empty
    /// Compressed or archived some other way: what it is and how to convert it.
    case other(String, String)

    static func of(_ head: [UInt8]) -> StreamContent {
        func starts(_ magic: [UInt8]) -> Bool { head.count >= magic.count && head.prefix(magic.count).elementsEqual(magic) }
        let recompress = "; recompress it: zstd -d, gunzip, bunzip2 or unxz to a .tar, then zstd (shard.tar → shard.tar.zst)"
        if head.isEmpty { return .empty }
        // A zstd frame, or a skippable frame (0x184D2A50 ... 0x184D2A5F, little-endian).
        if starts([0x28, 0xB5, 0x2F, 0xFD]) || (head.count >= 4 && head[0] & 0xF0 == 0x50 && head[1...3].elementsEqual([0x2A, 0x4D, 0x18])) { return .zstd }
        if starts([0x1F, 0x8B]) { return .other("gzip-compressed (a .tar.gz?)", recompress) }
        if starts(Array("BZh".utf8)) { return .other("bzip2-compressed (a .tar.bz2?)", recompress) }
        if starts([0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]) { return .other("xz-compressed (a .tar.xz?)", recompress) }
        if starts([0x04, 0x22, 0x4D, 0x18]) { return .other("lz4-compressed", "; decompress it (lz4 -d) and compress the tar with zstd") }
        if starts([0x50, 0x4B, 0x03, 0x04]) || starts([0x50, 0x4B, 0x05, 0x06]) { return .other("a zip archive", "; repack its files with tar (and zstd)") }
        if starts([0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C]) { return .other("a 7-Zip archive", "; repack its files with tar (and zstd)") }
        return .tar
    }
}

/// Bytes already read (to look at them), then the rest of a stream.
final class PrefixedStream: ByteStream {
    private var prefix: [UInt8]
    private var offset = 0
    private let rest: ByteStream

    init(prefix: [UInt8], rest: ByteStream) {
        self.prefix = prefix
        self.rest = rest
    }

    func read(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int {
        if offset < prefix.count {
            let n = min(count, prefix.count - offset)
            prefix.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress! + offset, byteCount: n) }
            offset += n
            return n
        }
        return try rest.read(into: buffer, count: count)
    }
}

public final class FileStream: ByteStream {
    private let fd: Int32
    let path: String

    public init(path: String) throws {
        fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            let reason = errno == ENOENT ? "does not exist; check the path or shard pattern"
                : "cannot open (\(String(cString: strerror(errno)))); check the path or shard pattern"
            throw DataFileError(file: path, reason: reason)
        }
        var info = stat()
        if fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFDIR {
            close(fd)
            throw DataFileError(file: path, reason: "is a folder, not a shard file (.tar or .tar.zst); a pattern such as folder/*.tar.zst names the shards in it")
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
                if ZSTD_getErrorCode(result) == ZSTD_error_frameParameter_windowTooLarge {
                    throw DataFileError(file: path, reason: "was compressed with a zstd window over 128 MiB (zstd --long=28 or more), more than is read here; recompress it without --long, or with --long=27 at most")
                }
                throw DataFileError(file: path, reason: "corrupt zstd data (\(String(cString: ZSTD_getErrorName(result)))); the shard is damaged: re-create or re-download it")
            }
            frameRemainder = result
            if outBuffer.pos > 0 { return outBuffer.pos }
        }
    }
}

/// `bytes` as one zstd frame (for tests and small payloads; shards use `ZstdFileWriter`).
func zstdCompress(_ bytes: [UInt8], level: Int32 = 3) throws -> [UInt8] {
    var out = [UInt8](repeating: 0, count: ZSTD_compressBound(bytes.count))
    let size = bytes.withUnsafeBytes { src in
        out.withUnsafeMutableBytes { ZSTD_compress($0.baseAddress, $0.count, src.baseAddress, src.count, level) }
    }
    if ZSTD_isError(size) != 0 {
        throw DataFileError(file: "(memory)", reason: "zstd compression failed (\(String(cString: ZSTD_getErrorName(size))))")
    }
    out.removeLast(out.count - size)
    return out
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
