import Foundation
import Testing
@testable import Datasets

/// Seeded random mutations of valid inputs, fed to every reader of untrusted bytes in the data
/// layer: each input must be read or refused with an error — no trap (which would end the test
/// run, and CI with it), no hang, no allocation beyond the readers' limits
/// (`TarReader.maximumMemberSize`, `ImageDecoder.maximumPixels`, `CSVGrammar.fieldSizeLimit`).
///
/// Each target prints its seed; `CLIPTUNE_TEST_SEED=<seed>` replays a run, and
/// `CLIPTUNE_FUZZ_TRACE=1` prints each case's number before it runs (the last one printed is the
/// one that trapped).
enum FuzzTarget: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case csv, tsv, jsonl, tar, tarZstd, jpeg, png, webp

    /// Mutations per target. The whole suite takes ~15 s on 2 cores in a debug build.
    static let budget = 2_500

    var testDescription: String { rawValue }

    var defaultSeed: UInt64 { 16_000 + UInt64(Self.allCases.firstIndex(of: self)!) }
}

/// Byte-level mutations: bit flips, bytes set to boundary values, truncation, insertion (random
/// bytes or a format's tokens), duplicated and deleted chunks, boundary numbers written over
/// bytes (binary, little- and big-endian, or as decimal/octal text).
struct Mutator {
    var random: TestRandom
    /// Tokens that matter to the format (quotes and separators, magic numbers).
    let tokens: [[UInt8]]

    static let boundaryIntegers: [UInt64] = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFF_FFFF, 0x8000_0000,
                                             0xFFFF_FFFF, 0x1_0000_0000, 0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, UInt64.max, 512, 511, 513]
    static let boundaryTexts = ["0", "-1", "1", "511", "512", "131072", "131073", "2147483648", "4294967296", "9223372036854775807",
                                "18446744073709551616", "77777777777", "777777777777", "10000000000000", "1e309", "-0", "00000000000"]

    init(seed label: String, defaultSeed: UInt64, tokens: [[UInt8]]) {
        random = TestRandom(label, defaultSeed: defaultSeed)
        self.tokens = tokens
    }

    private mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &random) }

    mutating func mutate(_ input: [UInt8]) -> [UInt8] {
        var bytes = input
        for _ in 0..<int(1...4) {
            let position = bytes.isEmpty ? 0 : int(0...(bytes.count - 1))
            switch int(0...9) {
            case 0, 1:   // bit flips
                guard !bytes.isEmpty else { continue }
                bytes[position] ^= 1 << UInt8(int(0...7))
            case 2:      // a byte set to a boundary value or a random one
                guard !bytes.isEmpty else { continue }
                bytes[position] = [0, 1, 0x7F, 0x80, 0xFF, UInt8(int(0...255))][int(0...5)]
            case 3:      // truncation
                bytes = Array(bytes.prefix(int(0...bytes.count)))
            case 4:      // random bytes inserted
                bytes.insert(contentsOf: (0..<int(1...16)).map { _ in UInt8(int(0...255)) }, at: int(0...bytes.count))
            case 5:      // a token inserted or written over
                let token = tokens[int(0...(tokens.count - 1))]
                if Bool.random(using: &random) || bytes.count < token.count {
                    bytes.insert(contentsOf: token, at: int(0...bytes.count))
                } else {
                    let at = int(0...(bytes.count - token.count))
                    bytes.replaceSubrange(at..<(at + token.count), with: token)
                }
            case 6:      // a chunk duplicated somewhere
                guard !bytes.isEmpty else { continue }
                let length = int(1...min(1024, bytes.count - position))
                bytes.insert(contentsOf: bytes[position..<(position + length)], at: int(0...bytes.count))
            case 7:      // a chunk deleted
                guard !bytes.isEmpty else { continue }
                bytes.removeSubrange(position..<(position + int(1...min(256, bytes.count - position))))
            case 8:      // a boundary number in binary, either byte order
                let value = Self.boundaryIntegers[int(0...(Self.boundaryIntegers.count - 1))]
                let width = [1, 2, 4, 8][int(0...3)]
                guard bytes.count >= width else { continue }
                let at = int(0...(bytes.count - width))
                let bigEndian = Bool.random(using: &random)
                for i in 0..<width {
                    let shift = UInt64(8 * (bigEndian ? width - 1 - i : i))
                    bytes[at + i] = UInt8(truncatingIfNeeded: value >> shift)
                }
            default:     // a boundary number as text
                let text = Array(Self.boundaryTexts[int(0...(Self.boundaryTexts.count - 1))].utf8)
                guard bytes.count >= text.count else { continue }
                let at = int(0...(bytes.count - text.count))
                bytes.replaceSubrange(at..<(at + text.count), with: text)
            }
        }
        return bytes
    }
}

/// A tar-aware mutation: one field of one header of the seed (size, type, name, magic, the
/// checksum itself) set to a value that matters — sizes at and around the limits, octal and
/// base-256, negative, garbage; every member type — with the checksum then made right, so the
/// reader gets past it to the field.
private func mutateTarHeader(_ input: [UInt8], _ random: inout TestRandom) -> [UInt8] {
    var bytes = input
    let headers = stride(from: 0, to: bytes.count - 511, by: 512).filter { bytes[($0 + 257)..<($0 + 262)].elementsEqual("ustar".utf8) }
    guard let start = headers.randomElement(using: &random) else { return bytes }
    func octal(_ n: Int) -> [UInt8] { Array(String(format: "%011o\0", n).utf8) }
    let sizes: [[UInt8]] = [TarBytes.base256(512 << 30), TarBytes.base256(1, negative: true), TarBytes.base256(UInt64(TarReader.maximumMemberSize)),
                            octal(TarReader.maximumMemberSize), octal(TarReader.maximumMemberSize + 1), octal(0), octal(1), octal(511), octal(512), octal(513),
                            Array("77777777777\0".utf8), Array("777777777777".utf8), Array("   1234    \0".utf8), Array("0000001x011\0".utf8),
                            Array("-0000000001\0".utf8), [0x80] + [UInt8](repeating: 0xFF, count: 11), [UInt8](repeating: 0, count: 12),
                            (0..<12).map { _ in UInt8.random(in: 0...255, using: &random) }]
    switch Int.random(in: 0...4, using: &random) {
    case 0, 1: bytes.replaceSubrange((start + 124)..<(start + 136), with: sizes.randomElement(using: &random)!)
    case 2: bytes[start + 156] = Array("0125LKxgSMV7\0".utf8).randomElement(using: &random)!
    case 3: bytes.replaceSubrange((start + 257)..<(start + 265), with: [Array("ustar\u{0}00".utf8), Array("ustar  \u{0}".utf8)].randomElement(using: &random)!)
    default: bytes.replaceSubrange(start..<(start + 100), with: (0..<100).map { _ in [0, 0x2E, 0x2F, 0x61, 0xFF].randomElement(using: &random)! })
    }
    if Int.random(in: 0...9, using: &random) > 0 { fixTarChecksums(&bytes) }
    return bytes
}

/// Tar headers with their checksums made right again, so that mutations reach past the checksum.
private func fixTarChecksums(_ bytes: inout [UInt8]) {
    for start in stride(from: 0, to: bytes.count - 511, by: 512) where bytes[(start + 257)..<(start + 262)].elementsEqual("ustar".utf8) {
        for i in 148..<156 { bytes[start + i] = 0x20 }
        let sum = bytes[start..<(start + 512)].reduce(0) { $0 + Int($1) }
        let text = Array(String(format: "%06o\0 ", sum).utf8)
        bytes.replaceSubrange((start + 148)..<(start + 156), with: text)
    }
}

/// PNG chunks with their CRCs made right again.
private func fixPNGChecksums(_ bytes: inout [UInt8]) {
    var offset = 8
    while offset + 12 <= bytes.count {
        let length = Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
        guard offset + 12 + length <= bytes.count else { return }
        let crc = crc32(Array(bytes[(offset + 4)..<(offset + 8 + length)]))
        for i in 0..<4 { bytes[offset + 8 + length + i] = UInt8(truncatingIfNeeded: crc >> UInt32(24 - 8 * i)) }
        offset += 12 + length
    }
}

private func fixture(_ name: String) -> [UInt8] {
    [UInt8](try! Data(contentsOf: URL(fileURLWithPath: Fixture.path(name))))
}

/// Valid inputs to start from, and the tokens each format cares about.
private enum Seeds {
    static let bom: [UInt8] = [0xEF, 0xBB, 0xBF]
    static let csv: [[UInt8]] = [
        bom + Array("image_path,caption,label\na.jpg,\"a caption, quoted\",x\r\nb.jpg,a 12\" ruler,y\n\"c.jpg\",\"two\nlines \"\"quoted\"\"\",z\n\nd.jpg,plain,\n".utf8),
        Array("image_path,caption,label\r\ne.jpg,é ü 📷,\r\nf.jpg,\"quoted\",\"\"\r\n".utf8),
    ]
    static let tsv = csv.map { $0.map { $0 == UInt8(ascii: ",") ? 9 : $0 } }
    static let csvTokens = [",", "\t", "\"", "\"\"", "\n", "\r\n", "\r", "\0", "é", "image_path", "caption", "label", " "].map { Array($0.utf8) } + [bom]
    static let jsonl: [[UInt8]] = [
        bom + Array(("{\"image_path\": \"a.jpg\", \"caption\": \"one\", \"label\": \"x\"}\r\n\n" +
                     "{\"image_path\": \"b.jpg\", \"caption\": [\"two\", \"deux\"]}\n" +
                     "{\"image_path\": \"c.jpg\", \"caption\": {\"captions\": [\"three\"]}, \"n\": [1, 2.5e3, null, true]}\n").utf8),
    ]
    static let jsonTokens = ["{", "}", "[", "]", "\"", ":", ",", "\n", "\r\n", "null", "true", "1e999", "-0", "\\u0000", "\\ud800", "\\", "é", "{\"caption\":"]
        .map { Array($0.utf8) } + [bom]
    /// Samples with images, captions, JSON and labels, a GNU long name, a pax header, a
    /// directory entry, and the end blocks.
    static let tar: [UInt8] = {
        let jpeg = TarBytes.jpeg
        let long = "long/\(String(repeating: "l", count: 124))", paxed = "pax/\(String(repeating: "p", count: 120))"
        func gnuLongName(_ name: String) -> [UInt8] {
            TarBytes.header("././@LongLink", size: name.utf8.count + 1, type: "L") + TarBytes.padded(Array(name.utf8) + [0])
        }
        func paxHeader(_ records: String) -> [UInt8] {
            TarBytes.header("PaxHeaders/0", size: records.utf8.count, type: "x") + TarBytes.padded(Array(records.utf8))
        }
        return TarBytes.member("000000.jpg", jpeg) + TarBytes.member("000000.txt", Array("a caption".utf8))
            + TarBytes.member("000000.cls", Array("circle".utf8))
            + TarBytes.member("dir/", [], type: "5")
            + TarBytes.member("000001.png", fixture("images/gray1.png")) + TarBytes.member("000001.json", Array("{\"captions\": [\"a\", \"b\"], \"label\": \"c\"}".utf8))
            + gnuLongName("\(long).jpg") + TarBytes.member("x.jpg", jpeg)
            + gnuLongName("\(long).txt") + TarBytes.member("x.txt", Array("long".utf8))
            + paxHeader(TarBytes.paxRecord("path", "\(paxed).webp")) + TarBytes.member("y.webp", fixture("images/webp_lossless.webp"))
            + paxHeader(TarBytes.paxRecord("path", "\(paxed).txt") + TarBytes.paxRecord("size", "4")) + TarBytes.header("y.txt", size: 0) + TarBytes.padded(Array("pax!".utf8))
            + TarBytes.end
    }()
    static let tarTokens: [[UInt8]] = [Array("ustar\u{0}00".utf8), Array("ustar  \u{0}".utf8), [0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0], [0xFF, 0xFF],
                                       Array("0".utf8), Array("L".utf8), Array("x".utf8), Array("5".utf8), Array("S".utf8), Array("30 path=".utf8), Array(" size=".utf8),
                                       [UInt8](repeating: 0, count: 512), [0x28, 0xB5, 0x2F, 0xFD]]
    static let jpegs = ["jpeg/gray.jpg", "jpeg/cmyk.jpg", "jpeg/exif6.jpg", "jpeg/photo.jpg"].map(fixture)
    static let jpegTokens: [[UInt8]] = [[0xFF, 0xD8], [0xFF, 0xD9], [0xFF, 0xDA], [0xFF, 0xC0], [0xFF, 0xC2], [0xFF, 0xC4], [0xFF, 0xDB], [0xFF, 0xE1],
                                        Array("Exif\0\0MM\0*".utf8), [0xFF, 0xFF, 0xFF]]
    static let pngs = ["images/rgb8.png", "images/palette8_trns.png", "images/gray1_interlaced.png", "images/rgba16.png", "images/exif6.png",
                       "images/gray_alpha8.png", "images/gray2_trns.png"].map(fixture)
    static let pngTokens = ["IHDR", "IDAT", "IEND", "PLTE", "tRNS", "eXIf", "\u{89}PNG"].map { Array($0.utf8) } + [[0, 0, 0, 0], [0xFF, 0xFF, 0xFF, 0xFF]]
    static let webps = ["images/webp_lossy.webp", "images/webp_lossless.webp", "images/webp_lossy_alpha.webp", "images/webp_animated.webp",
                        "images/webp_exif6.webp"].map(fixture)
    static let webpTokens = ["RIFF", "WEBP", "VP8 ", "VP8L", "VP8X", "ALPH", "ANIM", "ANMF", "EXIF"].map { Array($0.utf8) } + [[0xFF, 0xFF, 0xFF, 0xFF], [0x2F]]
}

/// Tallies how a target's cases ended.
private struct Outcomes {
    var read = 0
    var refused = 0
    var cases: Int { read + refused }
    /// How refusals began (their first words), counted: what the mutations reached.
    var reasons: [String: Int] = [:]

    mutating func note(_ reason: String) {
        // Numbers and member names do not make a different kind of error.
        let words = reason.split(separator: " ", omittingEmptySubsequences: false)
        var general: [Substring] = []
        for (i, word) in words.enumerated() {
            general.append(i > 0 && ["member", "its"].contains(words[i - 1]) && word.contains(".") ? "…" : word)
        }
        // Parenthesised details (sizes, column lists) left out.
        var text = "", depth = 0
        for c in general.joined(separator: " ") {
            if c == "(" { depth += 1 } else if c == ")" { depth = max(0, depth - 1) } else if depth == 0 { text.append(c.isNumber ? "#" : c) }
        }
        let kind = String(text.prefix { $0 != ";" }.prefix(72)).replacingOccurrences(of: "  ", with: " ").replacingOccurrences(of: " :", with: ":")
            .trimmingCharacters(in: .whitespaces)
        reasons[kind, default: 0] += 1
    }

    static let shown = Int(ProcessInfo.processInfo.environment["CLIPTUNE_FUZZ_KINDS"] ?? "") ?? 5

    var summary: String {
        reasons.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }.prefix(Self.shown).map { "\($0.value)× \($0.key)" }.joined(separator: ", ")
    }
}

@Suite("Fuzzing: mutated inputs are read or refused, never trap")
struct FuzzTests {
    @Test(arguments: FuzzTarget.allCases)
    func mutatedInputsAreReadOrRefused(target: FuzzTarget) throws {
        let folder = temporaryFolder()
        let trace = ProcessInfo.processInfo.environment["CLIPTUNE_FUZZ_TRACE"] == "1"
        let seeds: [[UInt8]], tokens: [[UInt8]]
        switch target {
        case .csv: (seeds, tokens) = (Seeds.csv, Seeds.csvTokens)
        case .tsv: (seeds, tokens) = (Seeds.tsv, Seeds.csvTokens)
        case .jsonl: (seeds, tokens) = (Seeds.jsonl, Seeds.jsonTokens)
        case .tar, .tarZstd: (seeds, tokens) = ([Seeds.tar], Seeds.tarTokens)
        case .jpeg: (seeds, tokens) = (Seeds.jpegs, Seeds.jpegTokens)
        case .png: (seeds, tokens) = (Seeds.pngs, Seeds.pngTokens)
        case .webp: (seeds, tokens) = (Seeds.webps, Seeds.webpTokens)
        }
        // The unmutated seeds are read without complaint (else the fuzzing proves little).
        var outcomes = Outcomes()
        for seed in seeds { #expect(try run(target, seed, compress: true, folder: folder, outcomes: &outcomes), "\(target) seed") }
        #expect(outcomes.refused == 0, "\(target): a seed input was refused")
        outcomes = Outcomes()
        var mutator = Mutator(seed: "fuzz \(target.rawValue)", defaultSeed: target.defaultSeed, tokens: tokens)
        let compressedSeed = target == .tarZstd ? try zstdBytes(Seeds.tar, folder: folder) : []
        for n in 0..<FuzzTarget.budget {
            var input = mutator.mutate(seeds[n % seeds.count])
            var compress = true
            switch target {
            case .tar, .tarZstd:
                // A quarter of the cases change one header field; half of the rest get their
                // checksums fixed after the byte-level mutation.
                if n % 4 == 1 {
                    input = mutateTarHeader(seeds[0], &mutator.random)
                } else if n % 2 == 0 {
                    fixTarChecksums(&input)
                }
                // .tar.zst: half the cases mutate the tar inside, half the compressed bytes.
                if target == .tarZstd && n % 4 >= 2 {
                    input = mutator.mutate(compressedSeed)
                    compress = false
                }
            case .png:
                if n % 2 == 0 { fixPNGChecksums(&input) }
            default: break
            }
            if trace { print("fuzz \(target.rawValue) case \(n) (\(input.count) bytes)") }
            _ = try run(target, input, compress: compress, folder: folder, outcomes: &outcomes)
        }
        print("fuzz \(target.rawValue): \(outcomes.cases) mutated inputs, \(outcomes.read) read, \(outcomes.refused) refused with an error, 0 traps (seed \(mutator.random.seed)); most frequent errors: \(outcomes.summary)")
        #expect(outcomes.cases == FuzzTarget.budget)
        #expect(outcomes.refused > FuzzTarget.budget / 20, "\(target): the mutations hardly ever break the input")
    }

    private func zstdBytes(_ bytes: [UInt8], folder: String) throws -> [UInt8] { try zstdCompress(bytes, level: 1) }

    /// Feeds one input to its reader; true when it was read through, false when refused.
    @discardableResult
    private func run(_ target: FuzzTarget, _ input: [UInt8], compress: Bool, folder: String, outcomes: inout Outcomes) throws -> Bool {
        let read: Bool
        switch target {
        case .csv, .tsv, .jsonl:
            let path = "\(folder)/m.\(target.rawValue)"
            try Data(input).write(to: URL(fileURLWithPath: path))
            read = readManifest(path, &outcomes)
        case .tar, .tarZstd:
            let path = "\(folder)/s.\(target == .tar ? "tar" : "tar.zst")"
            try Data(target == .tarZstd && compress ? try zstdBytes(input, folder: folder) : input).write(to: URL(fileURLWithPath: path))
            read = readShard(path, &outcomes)
        case .jpeg, .png, .webp:
            read = decode(input, &outcomes)
        }
        if read { outcomes.read += 1 } else { outcomes.refused += 1 }
        return read
    }

    /// A manifest: opened (or refused as a file), then every row read (or refused as a row).
    private func readManifest(_ path: String, _ outcomes: inout Outcomes) -> Bool {
        let manifest: ManifestSource
        do {
            manifest = try ManifestSource(path: path, labelColumn: path.hasSuffix("jsonl") ? nil : "label")
        } catch let error as DataFileError {
            #expect(error.file == path && !error.reason.isEmpty)
            outcomes.note(error.reason)
            return false
        } catch {
            Issue.record("a manifest was refused with \(type(of: error)), not a DataFileError: \(error)")
            return false
        }
        var bad = 0
        for i in 0..<manifest.count {
            do {
                let record = try manifest.record(i)
                #expect(!record.captions.isEmpty && record.captions.allSatisfy { !$0.isEmpty })
            } catch let issue as SampleIssue {
                #expect(issue.origin.hasPrefix("\(path):"))
                if bad == 0 { outcomes.note(issue.reason) }
                bad += 1
            } catch {
                Issue.record("a row was refused with \(type(of: error)), not a SampleIssue: \(error)")
            }
        }
        return bad == 0
    }

    /// A shard: every sample read; a damaged archive ends it with a `DataFileError`.
    private func readShard(_ path: String, _ outcomes: inout Outcomes) -> Bool {
        do {
            let reader = try ShardReader(path: path)
            var bad = 0
            while let next = try reader.next() {
                switch next {
                case .success(let record):
                    guard case .bytes(let image) = record.image else { Issue.record("a shard sample without image bytes"); continue }
                    #expect(!image.isEmpty && image.count <= TarReader.maximumMemberSize && !record.captions.isEmpty)
                case .failure(let issue):
                    #expect(issue.origin.hasPrefix("\(path):"))
                    if bad == 0 { outcomes.note(issue.reason) }
                    bad += 1
                }
            }
            return bad == 0
        } catch let error as DataFileError {
            #expect(error.file == path && !error.reason.isEmpty)
            outcomes.note(error.reason)
            return false
        } catch {
            Issue.record("a shard was refused with \(type(of: error)), not a DataFileError: \(error)")
            return false
        }
    }

    /// An image: header, full decode (and JPEG's reduced-scale decode), then both pipelines.
    private func decode(_ input: [UInt8], _ outcomes: inout Outcomes) -> Bool {
        let decoder = ImageDecoder()
        do {
            try input.withUnsafeBytes { bytes in
                let header = try decoder.header(bytes)
                #expect(header.width > 0 && header.height > 0 && header.width * header.height <= ImageDecoder.maximumPixels)
                let image = try decoder.decode(bytes)
                #expect(image.width == header.uprightSize.width && image.height == header.uprightSize.height)
                #expect(image.pixels.count == image.width * image.height * 3)
                if header.format == .jpeg { _ = try decoder.decode(bytes, atLeast: (1, 1)) }
                var random = SeededRandom(seed: 1)
                var out = [Float](repeating: 0, count: 3 * 8 * 8)
                for pipeline in [ImagePipeline(preprocessing: ImagePreprocessing(size: 8)),
                                 ImagePipeline(preprocessing: ImagePreprocessing(size: 8), augmentation: ImageAugmentation(horizontalFlip: 0.5))] {
                    try out.withUnsafeMutableBufferPointer { try pipeline.process(bytes, decoder: decoder, random: &random, into: $0) }
                }
            }
            return true
        } catch let error as ImageDecodeError {
            #expect(!error.reason.isEmpty)
            outcomes.note(error.reason)
            return false
        } catch {
            Issue.record("an image was refused with \(type(of: error)), not an ImageDecodeError: \(error)")
            return false
        }
    }
}
