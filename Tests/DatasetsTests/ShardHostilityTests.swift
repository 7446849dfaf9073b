import Foundation
import Testing
@testable import Datasets

/// Hand-made tar archives: every header field under the test's control.
enum TarBytes {
    /// A 512-byte header. `size` is written in octal unless `sizeField` gives the raw 12 bytes;
    /// the checksum is computed (unsigned, or signed) unless `checksum` gives the raw 8 bytes.
    static func header(_ name: String, size: Int, type: Character = "0", sizeField: [UInt8]? = nil, magic: String = "ustar\u{0}00",
                       prefix: String = "", prefixArea: [UInt8]? = nil, signedChecksum: Bool = false, checksum: [UInt8]? = nil) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ bytes: [UInt8], at offset: Int) { for (i, b) in bytes.enumerated() { h[offset + i] = b } }
        put(Array(name.utf8.prefix(100)), at: 0)
        put(Array("0000644\0".utf8), at: 100)
        put(Array("0000000\0".utf8), at: 108)
        put(Array("0000000\0".utf8), at: 116)
        put(sizeField ?? Array(String(format: "%011o\0", size).utf8), at: 124)
        put(Array("00000000000\0".utf8), at: 136)
        h[156] = type.asciiValue!
        put(Array(magic.utf8), at: 257)
        put(prefixArea ?? Array(prefix.utf8), at: 345)
        if let checksum {
            put(checksum, at: 148)
        } else {
            for i in 148..<156 { h[i] = 0x20 }
            let sum = signedChecksum ? h.reduce(0) { $0 + Int(Int8(bitPattern: $1)) } : h.reduce(0) { $0 + Int($1) }
            put(Array(String(format: "%06o\0 ", sum).utf8), at: 148)
        }
        return h
    }

    static func padded(_ data: [UInt8]) -> [UInt8] { data + [UInt8](repeating: 0, count: (512 - data.count % 512) % 512) }

    /// A member: its header and padded data.
    static func member(_ name: String, _ data: [UInt8], type: Character = "0") -> [UInt8] {
        header(name, size: data.count, type: type) + padded(data)
    }

    static let end = [UInt8](repeating: 0, count: 1024)

    /// A pax record "<length> key=value\n".
    static func paxRecord(_ key: String, _ value: String) -> String {
        let body = " \(key)=\(value)\n"
        var length = body.utf8.count + 1
        while "\(length)\(body)".utf8.count != length { length += 1 }
        return "\(length)\(body)"
    }

    /// A GNU base-256 size field.
    static func base256(_ value: UInt64, negative: Bool = false) -> [UInt8] {
        var field = [UInt8](repeating: negative ? 0xFF : 0, count: 12)
        field[0] = negative ? 0xFF : 0x80
        var v = value
        for i in stride(from: 11, to: 3, by: -1) { field[i] = UInt8(v & 0xFF); v >>= 8 }
        return field
    }

    static let jpeg: [UInt8] = try! JPEGEncoder().encode(RGBImage(width: 8, height: 8, fill: (10, 20, 30)))

    /// `count` complete samples (jpg + txt), with the end-of-archive blocks.
    static func samples(_ count: Int) -> [UInt8] {
        (0..<count).flatMap { member("\($0).jpg", jpeg) + member("\($0).txt", Array("caption \($0)".utf8)) } + end
    }
}

private func write(_ bytes: [UInt8], _ name: String, in folder: String = temporaryFolder()) throws -> String {
    let path = "\(folder)/\(name)"
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
}

private func zstd(_ bytes: [UInt8], _ name: String, in folder: String = temporaryFolder()) throws -> String {
    let path = "\(folder)/\(name)"
    let writer = try ZstdFileWriter(path: path, level: 3)
    try writer.write(bytes)
    try writer.close()
    return path
}

/// Everything a shard yields: the samples read, then the error that stopped it (nil at a clean end).
private func readAll(_ path: String) -> (samples: [Result<SampleRecord, SampleIssue>], error: Error?) {
    var samples: [Result<SampleRecord, SampleIssue>] = []
    do {
        let reader = try ShardReader(path: path)
        while let next = try reader.next() { samples.append(next) }
        return (samples, nil)
    } catch {
        return (samples, error)
    }
}

/// The `DataFileError` a shard stops with; records an issue when it ends otherwise.
private func failure(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) -> DataFileError? {
    let (_, error) = readAll(path)
    guard let error = error as? DataFileError else {
        Issue.record("expected a DataFileError, got \(String(describing: error))", sourceLocation: sourceLocation)
        return nil
    }
    #expect(error.file == path, sourceLocation: sourceLocation)
    return error
}

@Suite("Tar shards: sizes, headers, truncation, formats")
struct ShardHostilityTests {
    /// Issue 16: a tiny `.tar.zst` whose header claims a 512 GiB member made the reader allocate
    /// the declared size first. Now a member over 256 MiB is refused, naming shard and member,
    /// before anything is allocated; up to the limit, memory follows the bytes that arrive.
    @Test func declaredSizesAreBoundedBeforeAllocating() throws {
        let folder = temporaryFolder()
        let huge = TarBytes.header("000000.jpg", size: 0, sizeField: TarBytes.base256(512 << 30)) + [UInt8](repeating: 0xAB, count: 100)
        let compressed = try zstd(huge, "hostile.tar.zst", in: folder)
        #expect(try Data(contentsOf: URL(fileURLWithPath: compressed)).count < 100)
        let error = failure(compressed)
        #expect(error?.reason.contains("member 000000.jpg declares 549,755,813,888 bytes (512 GiB), more than the 256 MiB") == true, "\(String(describing: error))")
        // Neighbours: just over the limit in octal (refused); exactly at it (read, so truncated here).
        let over = TarBytes.header("1.jpg", size: TarReader.maximumMemberSize + 1) + [UInt8](repeating: 1, count: 512)
        #expect(failure(try write(over, "over.tar", in: folder))?.reason.contains("more than the 256 MiB") == true)
        let at = TarBytes.header("1.jpg", size: TarReader.maximumMemberSize) + [UInt8](repeating: 1, count: 5000)
        let atLimit = failure(try write(at, "at.tar", in: folder))
        #expect(atLimit?.reason.contains("ends in the middle of member 1.jpg (5000 of its 268435456 bytes)") == true, "\(String(describing: atLimit))")
        // The largest octal size a header can hold (8 GiB − 1) in a member that is passed over
        // (a directory entry) streams to the end of the file: truncated, nothing held.
        let skipped = TarBytes.header("d/", size: 0o77777777777, type: "5") + [UInt8](repeating: 0, count: 2048)
        #expect(failure(try write(skipped, "dir.tar", in: folder))?.reason.contains("truncated") == true)
        // Metadata is held to 1 MiB.
        let longName = TarBytes.header("././@LongLink", size: 2 << 20, type: "L") + [UInt8](repeating: 0x61, count: 512)
        #expect(failure(try write(longName, "long.tar", in: folder))?.reason.contains("a GNU long-name header declares") == true)
    }

    /// Size fields: octal with spaces, empty, base-256 — read; negative, garbage, overflowing — refused.
    @Test func sizeFieldsOctalAndBase256() throws {
        let folder = temporaryFolder()
        let captionBytes = Array("a caption".utf8)
        func shard(_ sizeField: [UInt8], data: [UInt8] = captionBytes) throws -> String {
            try write(TarBytes.member("0.jpg", TarBytes.jpeg) + TarBytes.header("0.txt", size: 0, sizeField: sizeField) + TarBytes.padded(data) + TarBytes.end,
                      "s\(UInt32.random(in: 0...UInt32.max)).tar", in: folder)
        }
        func caption(of path: String) -> [String]? { (try? readAll(path).samples.first?.get())?.captions }
        #expect(caption(of: try shard(Array("    11 \0\0\0\0\0".utf8))) == ["a caption"])   // leading spaces (octal 11 = 9)
        #expect(caption(of: try shard(Array("00000000011 ".utf8))) == ["a caption"])       // space-terminated
        #expect(caption(of: try shard(TarBytes.base256(9))) == ["a caption"])             // GNU base-256
        let empty = readAll(try shard([UInt8](repeating: 0, count: 12), data: []))       // an all-NUL field: size 0
        #expect(empty.error == nil && (try? empty.samples.first?.get()) == nil)          // ... an empty caption: a bad sample
        for (field, words) in [(TarBytes.base256(9, negative: true), "negative"), ([0x81] + [UInt8](repeating: 0, count: 11), "over 2^62"), (Array("0000001x011\0".utf8), "'0000001x011' is not an octal number"),
                               (Array("-0000000011\0".utf8), "not an octal number"), ([0x80] + [UInt8](repeating: 0xFF, count: 11), "over 2^62")] {
            let error = failure(try shard(field))
            #expect(error?.reason.contains("damaged tar header for member 0.txt: its size field") == true && error?.reason.contains(words) == true,
                    "\(words): \(String(describing: error))")
        }
        // Twelve octal digits and no terminator (GNU tar reads them): a number, here too large.
        #expect(failure(try shard(Array("777777777777".utf8)))?.reason.contains("member 0.txt declares 68,719,476,735 bytes (64 GiB)") == true)
    }

    /// Checksums: a file whose first header does not check out is not a tar at all; a later
    /// one is damage after the member it follows. A signed sum (old tars) is accepted.
    @Test func headerChecksums() throws {
        let folder = temporaryFolder()
        var first = TarBytes.samples(1)
        first[20] ^= 0x01
        #expect(failure(try write(first, "first.tar", in: folder))?.reason.hasPrefix("is not a tar archive (its first 512 bytes are no tar header") == true)
        var second = TarBytes.samples(2)
        second[512 + TarBytes.padded(TarBytes.jpeg).count + 3] ^= 0x40   // in the header of 0.txt
        let error = failure(try write(second, "second.tar", in: folder))
        #expect(error?.reason == "damaged tar header after member 0.jpg (its checksum does not match); the shard is corrupt: re-create or re-download it")
        var bad = TarBytes.header("0.jpg", size: TarBytes.jpeg.count, checksum: Array("0000000\0".utf8))
        #expect(failure(try write(bad + TarBytes.padded(TarBytes.jpeg) + TarBytes.end, "zero.tar", in: folder))?.reason.hasPrefix("is not a tar archive") == true)
        bad = TarBytes.header("é.jpg", size: TarBytes.jpeg.count, signedChecksum: true)
        let signed = readAll(try write(bad + TarBytes.padded(TarBytes.jpeg) + TarBytes.member("é.txt", Array("x".utf8)) + TarBytes.end, "signed.tar", in: folder))
        #expect(signed.error == nil && (try? signed.samples.first?.get())?.captions == ["x"])
    }

    /// Long names (GNU `L`, pax `path`), pax sizes, ustar prefixes, entries passed over, and
    /// what is refused clearly (GNU sparse and multi-volume members, malformed pax records).
    @Test func longNamesPaxAndSpecialEntries() throws {
        let folder = temporaryFolder()
        let longKey = String(repeating: "k", count: 150)
        let gnu = TarBytes.header("././@LongLink", size: longKey.utf8.count + 5, type: "L") + TarBytes.padded(Array("\(longKey).jpg\0".utf8))
            + TarBytes.member("truncated-name.jpg", TarBytes.jpeg)
            + TarBytes.member("\(longKey.prefix(90)).txt", Array("short".utf8))   // another key: no caption for the long one
        let gnuRead = readAll(try write(gnu + TarBytes.end, "gnu.tar", in: folder))
        #expect(gnuRead.error == nil && gnuRead.samples.count == 2)
        if case .failure(let issue) = gnuRead.samples.first { #expect(issue.origin.hasSuffix(":\(longKey)")) } else { Issue.record("the long name was not used") }

        func paxHeader(_ records: String) -> [UInt8] {
            TarBytes.header("PaxHeaders/x", size: records.utf8.count, type: "x") + TarBytes.padded(Array(records.utf8))
        }
        let paxTar = paxHeader(TarBytes.paxRecord("path", "dir/\(longKey).jpg")) + TarBytes.member("placeholder.jpg", TarBytes.jpeg)
            + paxHeader(TarBytes.paxRecord("path", "dir/\(longKey).txt") + TarBytes.paxRecord("comment", "a value\nwith a newline") + TarBytes.paxRecord("size", "7"))
            + TarBytes.header("placeholder.txt", size: 0) + TarBytes.padded(Array("caption".utf8))   // the pax size (7) wins
            + TarBytes.member("dir/", [], type: "5") + TarBytes.member("link.jpg", [], type: "2")
            + TarBytes.header("global", size: 30, type: "g") + TarBytes.padded([UInt8](repeating: 0x20, count: 30))
            + TarBytes.end
        let paxRead = readAll(try write(paxTar, "pax.tar", in: folder))
        #expect(paxRead.error == nil && paxRead.samples.count == 1)
        #expect((try? paxRead.samples.first?.get())?.captions == ["caption"])
        #expect((try? paxRead.samples.first?.get())?.origin.hasSuffix(":dir/\(longKey)") == true)

        // ustar's prefix field is joined to the name; an old GNU header's is not a prefix.
        let prefixed = TarBytes.header("0.jpg", size: TarBytes.jpeg.count, prefix: "some/dir") + TarBytes.padded(TarBytes.jpeg)
            + TarBytes.header("0.txt", size: 1, magic: "ustar  \0", prefixArea: Array("12345670123".utf8)) + TarBytes.padded([0x78]) + TarBytes.end
        let prefixRead = readAll(try write(prefixed, "prefix.tar", in: folder))
        #expect(prefixRead.samples.count == 2)
        let keys: [String] = prefixRead.samples.map { (sample: Result<SampleRecord, SampleIssue>) -> String in
            guard case .failure(let issue) = sample else { return "accepted" }
            return String(issue.origin.split(separator: ":").last!)
        }
        #expect(keys == ["some/dir/0", "0"])

        for (type, words) in [("S", "GNU sparse entry"), ("M", "GNU multi-volume entry")] {
            let t = TarBytes.member("0.jpg", TarBytes.jpeg, type: Character(type)) + TarBytes.end
            #expect(failure(try write(t, "\(type).tar", in: folder))?.reason.contains("member 0.jpg is a \(words), which shards do not support") == true)
        }
        let sparsePax = TarBytes.paxRecord("GNU.sparse.major", "1")
        let sparse = TarBytes.header("p", size: sparsePax.utf8.count, type: "x") + TarBytes.padded(Array(sparsePax.utf8)) + TarBytes.member("0.jpg", TarBytes.jpeg) + TarBytes.end
        #expect(failure(try write(sparse, "sparse.tar", in: folder))?.reason.contains("GNU sparse member") == true)
        for record in ["12 path=a\n", "x path=a.jpg\n", "9 path\n\n\n", "5 size=9x\n", "99999999999999999999 a=b\n"] {
            let t = TarBytes.header("p", size: record.utf8.count, type: "x") + TarBytes.padded(Array(record.utf8)) + TarBytes.member("0.jpg", TarBytes.jpeg) + TarBytes.end
            #expect(failure(try write(t, "malformed.tar", in: folder))?.reason.contains("damaged pax header") == true, "\(record.debugDescription)")
        }
        let paxTooLarge = TarBytes.paxRecord("size", "\(TarReader.maximumMemberSize + 1)")
        let tooLarge = TarBytes.header("p", size: paxTooLarge.utf8.count, type: "x") + TarBytes.padded(Array(paxTooLarge.utf8)) + TarBytes.member("0.jpg", TarBytes.jpeg) + TarBytes.end
        #expect(failure(try write(tooLarge, "paxsize.tar", in: folder))?.reason.contains("member 0.jpg declares 268,435,457 bytes") == true)
    }

    /// GNU tar's own long-name forms (gnu: `L` members; pax: `x` headers) read back.
    @Test(arguments: ["gnu", "pax"])
    func gnuTarLongNamesReadBack(format: String) throws {
        let folder = temporaryFolder()
        let source = "\(folder)/files", dir = String(repeating: "d", count: 80), key = String(repeating: "s", count: 90)
        try FileManager.default.createDirectory(atPath: "\(source)/\(dir)", withIntermediateDirectories: true)
        try Data(TarBytes.jpeg).write(to: URL(fileURLWithPath: "\(source)/\(dir)/\(key).jpg"))
        try Data("a long-named caption".utf8).write(to: URL(fileURLWithPath: "\(source)/\(dir)/\(key).txt"))
        let tar = Process()
        tar.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        tar.arguments = ["tar", "--format=\(format)", "--zstd", "-cf", "\(folder)/out.tar.zst", "-C", source, dir]
        try tar.run()
        tar.waitUntilExit()
        try #require(tar.terminationStatus == 0)
        let read = readAll("\(folder)/out.tar.zst")
        #expect(read.error == nil)
        let record = try #require(try read.samples.first?.get())
        #expect(record.captions == ["a long-named caption"] && record.origin.hasSuffix(":\(dir)/\(key)"))
    }

    /// A shard cut anywhere — inside a header, inside a member, inside padding, exactly between
    /// two members — gives the samples before the cut and then an error: never a partial
    /// sample, never a silent end.
    @Test func truncationNeverGivesAPartialSampleOrASilentEnd() throws {
        let folder = temporaryFolder()
        let whole = TarBytes.samples(3)
        let complete = try readAll(try write(whole, "whole.tar", in: folder)).samples.map { try $0.get() }
        #expect(complete.count == 3)
        let memberBytes = 512 + TarBytes.padded(TarBytes.jpeg).count + 1024   // one sample: two headers, two padded members
        var cuts = Array(stride(from: 0, to: whole.count - 1024, by: 512))      // every header boundary
        cuts += stride(from: 1, to: whole.count - 1024, by: 97)                 // and places in between
        var checked = 0
        for cut in cuts {
            let path = try write(Array(whole.prefix(cut)), "cut.tar", in: folder)
            let (samples, error) = readAll(path)
            let message = (error as? DataFileError)?.reason ?? "no error"
            #expect(error is DataFileError, "cut at \(cut): \(message)")
            #expect(message.contains("truncated") || message.contains("is empty") || cut == 0, "cut at \(cut): \(message)")
            // Only whole samples: those before the cut whose next key's header is whole (which shows
            // that nothing of theirs is missing); the last one lacks the end-of-archive block.
            let read = samples.compactMap { try? $0.get() }
            #expect(read.count == samples.count && read.count == min(2, max(0, (cut - 512) / memberBytes)), "cut at \(cut): \(read.count) samples")
            #expect(zip(read, complete).allSatisfy { $0.origin.hasSuffix(String($1.origin.split(separator: ":").last!)) && $0.captions == $1.captions })
            checked += 1
        }
        // The same cut through zstd (the frame ends cleanly, the tar inside does not).
        let zst = failure(try zstd(Array(whole.prefix(2 * memberBytes)), "cut.tar.zst", in: folder))
        #expect(zst?.reason.contains("without tar's end-of-archive block") == true, "\(String(describing: zst))")
        print("truncated shards: \(checked) cut positions")
    }

    /// Compression is told by content: gzip, bzip2, xz, lz4, zip and 7-Zip are named (and
    /// what to do); an empty file, a folder, a missing file say so; a plain tar named
    /// `.tar.zst` and a zstd one named `.tar` both read.
    @Test func formatsAreToldByContentAndNamed() throws {
        let folder = temporaryFolder()
        let tar = try write(TarBytes.samples(2), "plain.tar", in: folder)
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        gzip.arguments = ["tar", "-czf", "\(folder)/real.tar.gz", "-C", folder, "plain.tar"]
        try gzip.run()
        gzip.waitUntilExit()
        try #require(gzip.terminationStatus == 0)
        let expectations: [(String, String)] = [
            ("\(folder)/real.tar.gz", "is gzip-compressed (a .tar.gz?), not a .tar or .tar.zst shard"),
            (try write(Array("BZh91AY&SY".utf8) + [UInt8](repeating: 0, count: 600), "x.tar.bz2", in: folder), "bzip2-compressed"),
            (try write([0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00] + [UInt8](repeating: 0, count: 600), "x.TAR.XZ", in: folder), "xz-compressed"),
            (try write([0x04, 0x22, 0x4D, 0x18, 0, 0, 0, 0], "x.tar.lz4", in: folder), "lz4-compressed"),
            (try write([0x50, 0x4B, 0x03, 0x04] + [UInt8](repeating: 0, count: 100), "x.zip", in: folder), "a zip archive"),
            (try write([0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C, 0, 4], "x.7z", in: folder), "a 7-Zip archive"),
            (try write([], "empty.tar.zst", in: folder), "is empty (0 bytes)"),
            (try zstd([], "nothing.tar.zst", in: folder), "holds no tar data"),
            (try write(Array("image_path,caption\n".utf8) + [UInt8](repeating: 0x20, count: 600), "text.tar", in: folder), "is not a tar archive"),
            ("\(folder)/absent.tar", "does not exist"),
            (folder, "is a folder, not a shard file"),
        ]
        for (path, words) in expectations {
            let error = failure(path)
            #expect(error?.reason.contains(words) == true, "\(path): \(String(describing: error))")
        }
        // Named the other way round: read by content.
        let misnamedPlain = "\(folder)/plain-named.tar.zst", misnamedZstd = try zstd(TarBytes.samples(2), "zstd-named.tar", in: folder)
        try FileManager.default.copyItem(atPath: tar, toPath: misnamedPlain)
        for path in [misnamedPlain, misnamedZstd, tar] {
            let read = readAll(path)
            #expect(read.error == nil && read.samples.count == 2, "\(path)")
        }
    }

    /// Sample-level messages name the member: an empty image, an empty caption, a `.json` that
    /// is not JSON or has no caption. Members a sample does not use are not loaded.
    @Test func sampleMessagesNameTheMember() throws {
        let folder = temporaryFolder()
        let t = TarBytes.member("a.jpg", []) + TarBytes.member("a.txt", Array("x".utf8))
            + TarBytes.member("b.jpg", TarBytes.jpeg) + TarBytes.member("b.txt", Array(" \n".utf8))
            + TarBytes.member("c.jpg", TarBytes.jpeg) + TarBytes.member("c.json", Array("{not json".utf8))
            + TarBytes.member("d.jpg", TarBytes.jpeg) + TarBytes.member("d.json", Array("{\"label\": \"cat\"}".utf8))
            + TarBytes.member("e.jpg", TarBytes.jpeg) + TarBytes.member("e.npy", [UInt8](repeating: 7, count: 3000)) + TarBytes.member("e.txt", Array("fine".utf8))
            + TarBytes.end
        let (samples, error) = readAll(try write(t, "s.tar", in: folder))
        #expect(error == nil && samples.count == 5)
        let reasons = samples.prefix(4).map { if case .failure(let issue) = $0 { issue.reason } else { "accepted" } }
        #expect(reasons == ["its image member a.jpg is empty (0 bytes)", "its caption member b.txt is empty",
                            "its c.json is not valid JSON", "its d.json has no caption (\"caption\", \"captions\" or \"text\")"])
        #expect((try? samples[4].get())?.captions == ["fine"])
        // The loader's view: TarReader passes over members it is told not to load.
        let reader = TarReader(try openByteStream("\(folder)/s.tar"), path: "\(folder)/s.tar")
        var sizes: [String: (Int, Int)] = [:]
        while let m = try reader.next(loading: { !$0.hasSuffix(".npy") }) { sizes[m.name] = (m.data.count, m.size) }
        #expect(sizes["e.npy"]! == (0, 3000) && sizes["e.txt"]! == (4, 4))
    }
}

@Suite("Shard patterns: counted before they are expanded")
struct ShardPatternTests {
    /// Issue 16: `{0..999}{0..9999}` was expanded in full during validation. Now the names are
    /// counted first (without overflow) and a pattern naming more than 1,000,000 is refused.
    @Test func hugePatternsAreRefusedBeforeExpanding() throws {
        let folder = temporaryFolder()
        for pattern in ["train-{0..999}{0..9999}.tar", "{0..9223372036854775807}", "{-9223372036854775808..9223372036854775807}",
                        "{0..9223372036854775807}{0..9223372036854775807}{0..9}", "{000000..999999}{a,b}", "{0..1000000}"] {
            let error = caught { _ = try WebDataset.shards(pattern, relativeTo: folder) }
            #expect(error?.reason.contains("more than the 1,000,000 shards one pattern may name") == true, "\(pattern): \(String(describing: error))")
            #expect(throws: DataFileError.self) { try WebDataset.match(pattern, fileExists: { _ in true }) }
        }
        #expect(caught { _ = try WebDataset.expandBraces("t-{0..999}{0..9999}") }?.reason.hasPrefix("expands to 10,000,000 names") == true)
        #expect(caught { _ = try WebDataset.expandBraces("{0..9223372036854775807}{0..9}") }?.reason.hasPrefix("expands to more than 2^63 names") == true)
        // At the limit: counted, accepted.
        #expect(try WebDataset.braceExpansionCount("{000000..999999}") == 1_000_000)
        #expect(try WebDataset.braceExpansionCount("{0..9223372036854775807}{0..1}") == nil)
    }

    /// Malformed braces are errors that say what a pattern takes; ranges count down as well as
    /// up; unmatched braces are text.
    @Test func malformedAndNeighbourPatterns() throws {
        for (pattern, words) in [("{a,{b,c}}.tar", "nested braces"), ("{a..e}.tar", "{a..e} is not a range of integers"),
                                 ("{1..2..3}", "not a range of integers"), ("{0..99999999999999999999}", "that fit in 64 bits"),
                                 ("{..5}", "not a range"), ("{5..}", "not a range")] {
            let error = caught { _ = try WebDataset.expandBraces(pattern) }
            #expect(error?.reason.contains(words) == true && error?.reason.contains("{0000..0099}") == true, "\(pattern): \(String(describing: error))")
        }
        #expect(try WebDataset.expandBraces("s-{3..1}") == ["s-3", "s-2", "s-1"])
        #expect(try WebDataset.expandBraces("{08..11}") == ["08", "09", "10", "11"])
        #expect(try WebDataset.expandBraces("{-1..1}") == ["-1", "0", "1"])
        #expect(try WebDataset.expandBraces("a}b{c") == ["a}b{c"])
        #expect(try WebDataset.expandBraces("{x}{}") == ["x"])
        #expect(try WebDataset.expandBraces("{a,b}{1..2}") == ["a1", "a2", "b1", "b2"])
    }

    private func caught(_ body: () throws -> Void) -> DataFileError? {
        do { try body() } catch let error as DataFileError { return error } catch { Issue.record("\(error)") }
        return nil
    }
}
