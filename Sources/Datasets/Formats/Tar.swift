import Foundation

/// One regular file in a tar archive.
public struct TarMember: Sendable {
    public let name: String
    /// Its bytes; empty for a member the reader was asked to pass over (see `data(ofMember:)`).
    public let data: [UInt8]
    /// Its size as the archive declares it (also for a member passed over).
    public let size: Int
}

/// Streams the regular files of a tar archive (ustar, GNU and pax: long names from GNU `L`
/// members and pax `path` records, sizes from GNU base-256 fields and pax `size` records), one
/// at a time, never holding more than the member it returns.
///
/// Everything a header declares is checked before it is used: its checksum, its size (octal or
/// base-256, no larger than `maximumMemberSize` for a member that is read), its type. Damage
/// is a `DataFileError` that names the archive and the member; so is a member or header cut
/// short, and an archive that stops without tar's end-of-archive block (a shard cut exactly
/// between two members would otherwise lose its last samples without a word). Directories,
/// links and other special entries are passed over; GNU sparse and multi-volume members are
/// refused (shards never need them).
public final class TarReader {
    /// The largest member read into memory: 256 MiB. Members are images and captions — a
    /// 100-megapixel image (`ImageDecoder.maximumPixels`) is tens of MB even as PNG of real
    /// content, a web-scale shard's images ~100 KB — so only a damaged or hostile header asks
    /// for more, and it must not make us allocate what it declares (a 75-byte file claiming a
    /// 512 GiB member). Larger members are refused with the archive's and member's names.
    public static let maximumMemberSize = 256 << 20
    /// The largest GNU long name or pax header: 1 MiB, far beyond any real path.
    static let maximumMetadataSize = 1 << 20
    /// Bytes read into memory at a time: memory follows the bytes that arrive, not a header's claim.
    private static let chunkSize = 1 << 20

    private let stream: ByteStream
    private let path: String
    private var pendingName: String?
    private var pendingSize: Int?
    private var previousMember: String?
    private var headersRead = 0
    private var finished = false
    /// The member whose header was read when `next` last threw (nil when no header was whole):
    /// whether the sample before it was complete.
    private(set) var failedMember: String?

    public init(_ stream: ByteStream, path: String) {
        self.stream = stream
        self.path = path
    }

    /// The next regular file, or nil at the end of the archive.
    public func next() throws -> TarMember? { try next(loading: { _ in true }) }

    /// The next regular file; its bytes are read into memory only when `load` accepts its name
    /// (the others are streamed past: a reader that needs images and captions does not hold a
    /// shard's other members).
    func next(loading load: (String) -> Bool) throws -> TarMember? {
        guard !finished else { return nil }
        failedMember = nil
        var header = [UInt8](repeating: 0, count: 512)
        while true {
            let n = try header.withUnsafeMutableBytes { try stream.readFully(into: $0.baseAddress!, count: 512) }
            if n == 0 {
                if headersRead == 0 {
                    throw DataFileError(file: path, reason: "holds no tar data (0 bytes once decompressed); a shard is a tar archive of samples")
                }
                throw DataFileError(file: path, reason: "ends \(afterPrevious) without tar's end-of-archive block: the shard is truncated (its last samples may be missing); re-create or re-download it")
            }
            guard n == 512 else { throw truncated("a header \(afterPrevious)") }
            if header.allSatisfy({ $0 == 0 }) { finished = true; return nil }
            headersRead += 1
            guard Self.checksumMatches(header) else {
                if headersRead == 1 {
                    let head = header.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ")
                    throw DataFileError(file: path, reason: "is not a tar archive (its first 512 bytes are no tar header; they start with \(head)); a shard is a .tar or .tar.zst archive")
                }
                throw DataFileError(file: path, reason: "damaged tar header \(afterPrevious) (its checksum does not match); the shard is corrupt: re-create or re-download it")
            }
            let type = header[156]
            let isMetadata = [UInt8(ascii: "L"), UInt8(ascii: "K"), UInt8(ascii: "x"), UInt8(ascii: "g")].contains(type)
            let name = isMetadata ? Self.headerName(header) : pendingName ?? Self.headerName(header)
            let declared = try parseSize(header, member: name)
            switch type {
            case UInt8(ascii: "L"):   // GNU long name for the next member
                let data = try readData(size: declared, what: "a GNU long-name header", limit: Self.maximumMetadataSize)
                pendingName = String(decoding: data.prefix { $0 != 0 }, as: UTF8.self)
                continue
            case UInt8(ascii: "x"):   // pax extended header for the next member
                let data = try readData(size: declared, what: "a pax header", limit: Self.maximumMetadataSize)
                let records = try paxRecords(data)
                pendingName = records.path ?? pendingName
                pendingSize = records.size ?? pendingSize
                continue
            case UInt8(ascii: "K"), UInt8(ascii: "g"):   // a GNU long link name, a global pax header: not needed
                try skip(declared, member: name)
                continue
            default:
                break
            }
            let size = pendingSize ?? declared
            pendingName = nil
            pendingSize = nil
            failedMember = name
            switch type {
            case UInt8(ascii: "S"), UInt8(ascii: "M"):
                throw DataFileError(file: path, reason: "member \(name) is a GNU \(type == UInt8(ascii: "S") ? "sparse" : "multi-volume") entry, which shards do not support; re-create the shard with plain members (tar --format=pax or ustar)")
            case UInt8(ascii: "0"), 0, UInt8(ascii: "7"):
                previousMember = name
                if name.hasSuffix("/") {   // an old-style directory entry
                    try skip(size, member: name)
                    continue
                }
                guard load(name) else {
                    try skip(size, member: name)
                    failedMember = nil
                    return TarMember(name: name, data: [], size: size)
                }
                let data = try readData(size: size, what: "member \(name)", limit: Self.maximumMemberSize)
                failedMember = nil
                return TarMember(name: name, data: data, size: size)
            default:                   // directories, links, devices, FIFOs, volume labels: passed over
                previousMember = name
                try skip(size, member: name)
            }
        }
    }

    private var afterPrevious: String {
        previousMember.map { "after member \($0)" } ?? (headersRead <= 1 ? "at its start" : "before its first member")
    }

    /// Reads a member's bytes and its padding, in chunks: what is allocated follows what arrives.
    private func readData(size: Int, what: String, limit: Int) throws -> [UInt8] {
        guard size <= limit else {
            let why = limit == Self.maximumMemberSize
                ? "a member may have here (images and captions are far smaller); the tar header is damaged or the shard holds something other than samples"
                : "such a header may have; the tar header is damaged"
            throw DataFileError(file: path, reason: "\(what) declares \(Self.describe(bytes: size)), more than the \(limit >> 20) MiB \(why)")
        }
        var data = [UInt8](repeating: 0, count: min(size, Self.chunkSize))
        var filled = 0
        while filled < size {
            if filled == data.count { data += [UInt8](repeating: 0, count: min(size - filled, max(data.count, Self.chunkSize))) }
            let want = data.count - filled
            let n = try data.withUnsafeMutableBytes { try stream.readFully(into: $0.baseAddress! + filled, count: want) }
            guard n == want else { throw truncated("\(what) (\(filled + n) of its \(size) bytes)") }
            filled += n
        }
        try skipPadding(after: size, what: what)
        return data
    }

    /// Streams past a member's bytes and padding without keeping them.
    private func skip(_ size: Int, member: String) throws {
        var scratch = [UInt8](repeating: 0, count: 64 << 10)
        var left = size
        while left > 0 {
            let want = min(left, scratch.count)
            let n = try scratch.withUnsafeMutableBytes { try stream.readFully(into: $0.baseAddress!, count: want) }
            guard n == want else { throw truncated("member \(member)") }
            left -= n
        }
        try skipPadding(after: size, what: "member \(member)")
    }

    private func skipPadding(after size: Int, what: String) throws {
        let padding = (512 - size % 512) % 512
        guard padding > 0 else { return }
        var skip = [UInt8](repeating: 0, count: padding)
        let n = try skip.withUnsafeMutableBytes { try stream.readFully(into: $0.baseAddress!, count: padding) }
        guard n == padding else { throw truncated(what) }
    }

    /// "549,755,813,888 bytes (512 GiB)".
    static func describe(bytes: Int) -> String {
        let digits = String(bytes)
        var grouped = ""
        for (i, c) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { grouped.append(",") }
            grouped.append(c)
        }
        guard bytes >= 1 << 20 else { return "\(grouped) bytes" }
        let (value, unit) = bytes >= 1 << 30 ? (Double(bytes) / Double(1 << 30), "GiB") : (Double(bytes) / Double(1 << 20), "MiB")
        let whole = value >= 100 || abs(value - value.rounded()) < 0.05
        return "\(grouped) bytes (\(String(format: whole ? "%.0f" : "%.1f", value)) \(unit))"
    }

    private func truncated(_ what: String) -> DataFileError {
        DataFileError(file: path, reason: "ends in the middle of \(what): the shard is truncated; re-create or re-download it")
    }

    static func headerName(_ h: [UInt8]) -> String {
        let name = String(decoding: h[0..<100].prefix { $0 != 0 }, as: UTF8.self)
        // POSIX ustar ("ustar\0") has a name prefix; old GNU headers ("ustar  ") keep other data there.
        let isPOSIX = h[257..<263].elementsEqual("ustar\0".utf8)
        let prefix = isPOSIX ? String(decoding: h[345..<500].prefix { $0 != 0 }, as: UTF8.self) : ""
        return prefix.isEmpty ? name : "\(prefix)/\(name)"
    }

    /// Sizes above this are refused outright, so that size + padding never overflows.
    private static let largestSize = 1 << 62

    /// The size field: octal digits (leading spaces allowed, ended by a space or NUL) or GNU
    /// base-256 (first byte 0x80, big-endian; 0xFF, a negative number, is refused).
    private func parseSize(_ h: [UInt8], member: String) throws -> Int {
        let field = h[124..<136]
        func damaged(_ what: String) -> DataFileError {
            DataFileError(file: path, reason: "damaged tar header for member \(member): its size field \(what); the shard is corrupt")
        }
        if field.first! & 0x80 != 0 {
            // GNU base-256: bit 6 of the first byte is the sign, its low 6 bits the top of the number.
            guard field.first! & 0x40 == 0 else { throw damaged("holds a negative base-256 number") }
            guard field.first! == 0x80 else { throw damaged("holds a base-256 number over 2^62") }
            var value = 0
            for byte in field.dropFirst() {
                guard value <= Self.largestSize >> 8 else { throw damaged("holds a base-256 number over 2^62") }
                value = value << 8 | Int(byte)
            }
            return value
        }
        guard let value = Self.octal(field) else {
            let text = String(decoding: field.prefix { $0 != 0 }.map { $0 >= 0x20 && $0 < 0x7F ? $0 : UInt8(ascii: "?") }, as: UTF8.self)
            throw damaged("'\(text)' is not an octal number")
        }
        return value
    }

    /// An octal number field as tar writes it: optional leading spaces, octal digits, then
    /// only spaces or NULs. An empty field is 0; nil for anything else.
    static func octal(_ field: ArraySlice<UInt8>) -> Int? {
        var i = field.startIndex
        while i < field.endIndex, field[i] == 0x20 { i += 1 }
        var value = 0
        while i < field.endIndex, (0x30...0x37).contains(field[i]) {
            guard value <= largestSize >> 3 else { return nil }
            value = value << 3 | Int(field[i] - 0x30)
            i += 1
        }
        guard field[i...].allSatisfy({ $0 == 0 || $0 == 0x20 }) else { return nil }
        return value
    }

    /// The header checksum: the sum of its bytes with the checksum field read as spaces, as
    /// unsigned bytes (POSIX) or signed ones (some old tars); either is accepted, as GNU tar does.
    static func checksumMatches(_ h: [UInt8]) -> Bool {
        guard let stored = octal(h[148..<156]) else { return false }
        var unsigned = 0, signed = 0
        for (i, byte) in h.enumerated() {
            let b = (148..<156).contains(i) ? 0x20 : byte
            unsigned += Int(b)
            signed += Int(Int8(bitPattern: b))
        }
        return stored == unsigned || stored == signed
    }

    /// The `path` and `size` of a pax extended header. Records are "<length> <key>=<value>\n",
    /// the length counting the whole record (values may hold newlines).
    private func paxRecords(_ data: [UInt8]) throws -> (path: String?, size: Int?) {
        var path: String?, size: Int?
        var i = 0
        func damaged(_ what: String) -> DataFileError {
            DataFileError(file: self.path, reason: "damaged pax header \(afterPrevious) (\(what)); the shard is corrupt")
        }
        while i < data.count {
            if data[i] == 0 { break }   // padding
            var length = 0, j = i
            while j < data.count, (0x30...0x39).contains(data[j]) {
                guard length < 1 << 30 else { throw damaged("a record length is too large") }
                length = length * 10 + Int(data[j] - 0x30)
                j += 1
            }
            guard j > i, j < data.count, data[j] == 0x20, length > j - i + 1, i + length <= data.count, data[i + length - 1] == 0x0A else {
                throw damaged("a record is not '<length> <key>=<value>'")
            }
            let record = data[(j + 1)..<(i + length - 1)]
            guard let equals = record.firstIndex(of: UInt8(ascii: "=")) else { throw damaged("a record has no '='") }
            let key = String(decoding: record[..<equals], as: UTF8.self)
            let value = record[(equals + 1)...]
            switch key {
            case "path": path = String(decoding: value, as: UTF8.self)
            case "size":
                guard !value.isEmpty, value.count <= 18, value.allSatisfy({ (0x30...0x39).contains($0) }) else {
                    throw damaged("its size is not a number")
                }
                size = value.reduce(0) { $0 * 10 + Int($1 - 0x30) }
            default:
                if key.hasPrefix("GNU.sparse.") {
                    throw DataFileError(file: self.path, reason: "holds a GNU sparse member \(afterPrevious), which shards do not support; re-create the shard with plain members")
                }
            }
            i += length
        }
        return (path, size)
    }
}

/// Writes a ustar archive that any tar reads (deterministic: zero owners and times).
public final class TarWriter {
    private let sink: ([UInt8]) throws -> Void

    public init(sink: @escaping ([UInt8]) throws -> Void) { self.sink = sink }

    public func add(name: String, data: [UInt8]) throws {
        let nameBytes = Array(name.utf8)
        guard nameBytes.count <= 100 else {
            throw DataFileError(file: name, reason: "tar member names are limited to 100 bytes here; use shorter keys")
        }
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ s: String, at offset: Int) { for (i, b) in s.utf8.enumerated() { h[offset + i] = b } }
        h.replaceSubrange(0..<nameBytes.count, with: nameBytes)
        put("0000644\0", at: 100)
        put("0000000\0", at: 108)
        put("0000000\0", at: 116)
        put(String(format: "%011o\0", data.count), at: 124)
        put("00000000000\0", at: 136)
        h[156] = UInt8(ascii: "0")
        put("ustar\0", at: 257)
        put("00", at: 263)
        for i in 148..<156 { h[i] = 0x20 }
        let sum = h.reduce(0) { $0 + Int($1) }
        put(String(format: "%06o\0 ", sum), at: 148)
        try sink(h)
        try sink(data)
        let padding = (512 - data.count % 512) % 512
        if padding > 0 { try sink([UInt8](repeating: 0, count: padding)) }
    }

    /// The two zero blocks that end an archive.
    public func finish() throws { try sink([UInt8](repeating: 0, count: 1024)) }
}
