import Foundation

/// One regular file in a tar archive.
public struct TarMember: Sendable {
    public let name: String
    public let data: [UInt8]
}

/// Streams the regular files of a tar archive (ustar, GNU long names, pax `path`), one at a time.
public final class TarReader {
    private let stream: ByteStream
    private let path: String
    private var pendingName: String?
    private var finished = false

    public init(_ stream: ByteStream, path: String) {
        self.stream = stream
        self.path = path
    }

    /// The next regular file, or nil at the end of the archive.
    public func next() throws -> TarMember? {
        guard !finished else { return nil }
        var header = [UInt8](repeating: 0, count: 512)
        while true {
            let n = try header.withUnsafeMutableBytes { try stream.readFully(into: $0.baseAddress!, count: 512) }
            if n == 0 { finished = true; return nil }   // archive without end blocks: accepted, as GNU tar does
            guard n == 512 else { throw truncated("a header") }
            if header.allSatisfy({ $0 == 0 }) { finished = true; return nil }
            guard verifyChecksum(header) else {
                throw DataFileError(file: path, reason: "damaged tar header (bad checksum) after \(pendingName ?? "the previous member"); the shard is corrupt")
            }
            let size = try parseSize(header)
            let type = header[156]
            let name = pendingName ?? headerName(header)
            let data = try readData(size: size, member: name)
            switch type {
            case UInt8(ascii: "L"):   // GNU long name for the next member
                pendingName = String(decoding: data.prefix { $0 != 0 }, as: UTF8.self)
            case UInt8(ascii: "x"):   // pax extended header: only `path` matters here
                pendingName = paxPath(data) ?? pendingName
            case UInt8(ascii: "0"), 0, UInt8(ascii: "7"):
                pendingName = nil
                return TarMember(name: name, data: data)
            default:                   // directories, links, global pax headers: skipped
                pendingName = nil
            }
        }
    }

    private func readData(size: Int, member: String) throws -> [UInt8] {
        var data = [UInt8](repeating: 0, count: size)
        if size > 0 {
            let n = try data.withUnsafeMutableBytes { try stream.readFully(into: $0.baseAddress!, count: size) }
            guard n == size else { throw truncated("member \(member)") }
        }
        let padding = (512 - size % 512) % 512
        if padding > 0 {
            var skip = [UInt8](repeating: 0, count: padding)
            let n = try skip.withUnsafeMutableBytes { try stream.readFully(into: $0.baseAddress!, count: padding) }
            guard n == padding else { throw truncated("member \(member)") }
        }
        return data
    }

    private func truncated(_ what: String) -> DataFileError {
        DataFileError(file: path, reason: "ends in the middle of \(what): the shard is truncated; re-create or re-download it")
    }

    private func headerName(_ h: [UInt8]) -> String {
        let name = String(decoding: h[0..<100].prefix { $0 != 0 }, as: UTF8.self)
        let isUstar = h[257..<262].elementsEqual("ustar".utf8)
        let prefix = isUstar ? String(decoding: h[345..<500].prefix { $0 != 0 }, as: UTF8.self) : ""
        return prefix.isEmpty ? name : "\(prefix)/\(name)"
    }

    private func parseSize(_ h: [UInt8]) throws -> Int {
        let field = h[124..<136]
        if field.first! & 0x80 != 0 {   // GNU base-256 for sizes over 8 GB
            return field.dropFirst().reduce(0) { $0 << 8 | Int($1) }
        }
        let text = String(decoding: field.prefix { $0 != 0 && $0 != 0x20 }, as: UTF8.self)
        guard let size = Int(text.isEmpty ? "0" : text, radix: 8), size >= 0, size < 1 << 40 else {
            throw DataFileError(file: path, reason: "damaged tar header (size field '\(text)'); the shard is corrupt")
        }
        return size
    }

    private func verifyChecksum(_ h: [UInt8]) -> Bool {
        let stored = Int(String(decoding: h[148..<156].prefix { $0 != 0 && $0 != 0x20 }, as: UTF8.self), radix: 8)
        let sum = h.enumerated().reduce(0) { $0 + ((148..<156).contains($1.offset) ? 0x20 : Int($1.element)) }
        return stored == sum
    }

    private func paxPath(_ data: [UInt8]) -> String? {
        // Records: "<length> <key>=<value>\n"
        for record in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            guard let space = record.firstIndex(of: " ") else { continue }
            let pair = record[record.index(after: space)...]
            if pair.hasPrefix("path=") { return String(pair.dropFirst(5)) }
        }
        return nil
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
