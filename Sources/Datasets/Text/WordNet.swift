import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A WordNet database file that is missing, unreadable or malformed.
public struct WordNetError: Error, CustomStringConvertible, Sendable, Equatable {
    public let file: String
    public let reason: String

    public var description: String {
        "WordNet file \(file): \(reason) (WordNet 3.0 is needed for text augmentation: "
            + "`apt-get install wordnet-base`, or pass the folder holding index.noun, data.noun, …)"
    }
}

/// Synonym lookup in the Princeton WordNet 3.0 database files (index.*, data.*, *.exc).
///
/// The index files are parsed up front into lemma → synset offsets; the data files are kept as bytes
/// and a synset's line is parsed only when asked for, so loading costs one pass over ~6 MB of index.
/// Immutable after `init`, so one instance can be shared by every loader thread.
public final class WordNet: Sendable {
    /// The folder the database was read from.
    public let directory: String
    private let tables: [Table]

    /// Reads the database in `directory` (Debian/Ubuntu package wordnet-base puts it in /usr/share/wordnet).
    public init(directory: String = "/usr/share/wordnet") throws {
        self.directory = directory
        tables = try PartOfSpeech.allCases.map { try Table(directory: directory, pos: $0) }
    }

    /// Every lemma of every synset holding `word` (or its base form: "dogs" → "dog", "geese" → "goose"),
    /// lowercased with spaces for `_`, without the word and its base forms, deduplicated and sorted.
    public func synonyms(of word: String) -> [String] {
        let key = Self.key(word)
        guard !key.isEmpty else { return [] }
        var found = Set<String>()
        var excluded: Set<String> = [Self.display(key)]
        for table in tables {
            for form in table.baseForms(of: key) {
                excluded.insert(Self.display(form))
                for offset in table.synsetOffsets(of: form) { found.formUnion(table.lemmas(atOffset: offset)) }
            }
        }
        return found.subtracting(excluded).sorted()
    }

    /// Whether `word` (or its base form) belongs to at least one synset.
    public func hasSynsets(_ word: String) -> Bool {
        let key = Self.key(word)
        guard !key.isEmpty else { return false }
        return tables.contains { !$0.baseForms(of: key).isEmpty }
    }

    /// The spelling used in the index files: lowercase, `_` between the words of a collocation.
    static func key(_ word: String) -> String {
        word.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
            .split(whereSeparator: \.isWhitespace).joined(separator: "_")
    }

    static func display(_ lemma: String) -> String {
        String(lemma.map { $0 == "_" ? " " : $0 })
    }
}

extension WordNet {
    enum PartOfSpeech: String, CaseIterable, Sendable {
        case noun, verb, adj, adv

        /// WordNet's detachment rules (morph.c, as in NLTK's `_morphy`): suffix → replacement.
        var suffixRules: [(suffix: String, replacement: String)] {
            switch self {
            case .noun:
                [("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
                 ("men", "man"), ("ies", "y")]
            case .verb:
                [("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", "")]
            case .adj:
                [("er", ""), ("est", ""), ("er", "e"), ("est", "e")]
            case .adv:
                []
            }
        }
    }

    /// One part of speech: its index (lemma → synset offsets), its data file bytes and its exception list.
    fileprivate struct Table: Sendable {
        /// A lemma's synsets: `count` entries of `offsets` from `start`. Flat storage keeps loading to one
        /// allocation per lemma (its key) instead of two.
        struct OffsetRange: Sendable {
            var start: Int32
            var count: Int32
        }

        let pos: PartOfSpeech
        let data: [UInt8]
        let lemmas: [String: OffsetRange]
        let offsets: [UInt32]
        /// Irregular inflections ("geese" → ["goose"]), which the suffix rules cannot produce.
        let exceptions: [String: [String]]

        init(directory: String, pos: PartOfSpeech) throws {
            self.pos = pos
            let indexPath = "\(directory)/index.\(pos.rawValue)"
            let dataPath = "\(directory)/data.\(pos.rawValue)"
            let exceptionPath = "\(directory)/\(pos.rawValue).exc"

            let index = try WordNet.readFile(indexPath)
            var lemmas: [String: OffsetRange] = [:]
            var offsets: [UInt32] = []
            try index.withUnsafeBufferPointer { try Self.parseIndex($0, path: indexPath, into: &lemmas, offsets: &offsets) }
            self.lemmas = lemmas
            self.offsets = offsets

            data = try WordNet.readFile(dataPath)
            let exceptionFile = try WordNet.readFile(exceptionPath)
            exceptions = exceptionFile.withUnsafeBufferPointer(Self.parseExceptions)
        }

        func synsetOffsets(of lemma: String) -> ArraySlice<UInt32> {
            guard let range = lemmas[lemma] else { return [] }
            return offsets[Int(range.start) ..< Int(range.start + range.count)]
        }

        /// The forms of `word` that are lemmas of this part of speech: the word itself, then its exception-list
        /// base forms or, when it has none, what the suffix rules give.
        func baseForms(of word: String) -> [String] {
            var candidates = [word]
            if let irregular = exceptions[word] {
                candidates += irregular
            } else {
                for rule in pos.suffixRules where word.hasSuffix(rule.suffix) && word.count > rule.suffix.count {
                    candidates.append(String(word.dropLast(rule.suffix.count)) + rule.replacement)
                }
            }
            var seen = Set<String>()
            return candidates.filter { lemmas[$0] != nil && seen.insert($0).inserted }
        }

        /// The words of the synset whose line starts at byte `offset` of the data file, lowercased with spaces.
        /// Line: `synset_offset lex_filenum ss_type w_cnt word lex_id [word lex_id…] p_cnt …`, w_cnt in hex.
        func lemmas(atOffset offset: UInt32) -> [String] {
            data.withUnsafeBufferPointer { bytes in
                guard Int(offset) < bytes.count else { return [] }
                var fields = FieldCursor(bytes, from: Int(offset))
                // A wrong offset lands mid-line; the line's own offset field catches that.
                guard let own = fields.next(), WordNet.parseNumber(bytes[own], radix: 10) == Int(offset),
                      fields.next() != nil, fields.next() != nil,
                      let countField = fields.next(), let wordCount = WordNet.parseNumber(bytes[countField], radix: 16)
                else { return [] }
                var words: [String] = []
                for _ in 0 ..< wordCount {
                    guard let word = fields.next(), fields.next() != nil else { break }
                    words.append(Self.displayLemma(bytes[word]))
                }
                return words
            }
        }

        /// `Canis_familiaris` → "canis familiaris"; `galore(ip)` → "galore" (adjective position markers).
        /// Byte-level because it runs for every lemma of every synset looked up, and the database is ASCII.
        static func displayLemma(_ raw: Slice<UnsafeBufferPointer<UInt8>>) -> String {
            var end = raw.endIndex
            if raw.last == UInt8(ascii: ")"), let open = raw.lastIndex(of: UInt8(ascii: "(")) { end = open }
            let word = raw[raw.startIndex ..< end]
            return String(unsafeUninitializedCapacity: word.count) { buffer in
                for (i, byte) in word.enumerated() {
                    switch byte {
                    case UInt8(ascii: "_"): buffer[i] = UInt8(ascii: " ")
                    case UInt8(ascii: "A") ... UInt8(ascii: "Z"): buffer[i] = byte + 32
                    default: buffer[i] = byte
                    }
                }
                return word.count
            }
        }

        /// Index line: `lemma pos synset_cnt p_cnt [ptr_symbol…] sense_cnt tagsense_cnt synset_offset…`;
        /// lines starting with a space are the licence header.
        static func parseIndex(_ bytes: UnsafeBufferPointer<UInt8>, path: String,
                               into lemmas: inout [String: OffsetRange], offsets: inout [UInt32]) throws {
            lemmas.reserveCapacity(bytes.count / 35)
            offsets.reserveCapacity(bytes.count / 25)
            var lineStart = 0
            var lineNumber = 0
            while lineStart < bytes.count {
                lineNumber += 1
                var fields = FieldCursor(bytes, from: lineStart)
                defer { lineStart = fields.lineEnd() + 1 }
                guard bytes[lineStart] != UInt8(ascii: " "), bytes[lineStart] != UInt8(ascii: "\n") else { continue }
                let malformed = WordNetError(file: path, reason: "line \(lineNumber) is not a valid index entry")
                guard let lemma = fields.next(), fields.next() != nil,
                      let synsetCount = fields.next().flatMap({ WordNet.parseNumber(bytes[$0], radix: 10) }),
                      let pointerCount = fields.next().flatMap({ WordNet.parseNumber(bytes[$0], radix: 10) })
                else { throw malformed }
                // Skip the pointer symbols, sense_cnt and tagsense_cnt.
                for _ in 0 ..< pointerCount + 2 {
                    guard fields.next() != nil else { throw malformed }
                }
                let start = offsets.count
                for _ in 0 ..< synsetCount {
                    guard let field = fields.next(), let offset = WordNet.parseNumber(bytes[field], radix: 10) else { throw malformed }
                    offsets.append(UInt32(truncatingIfNeeded: offset))
                }
                let key = String(decoding: UnsafeBufferPointer(rebasing: bytes[lemma]), as: UTF8.self)
                lemmas[key] = OffsetRange(start: Int32(start), count: Int32(synsetCount))
            }
        }

        /// Exception line: `inflected_form base_form [base_form…]`.
        static func parseExceptions(_ bytes: UnsafeBufferPointer<UInt8>) -> [String: [String]] {
            var result: [String: [String]] = [:]
            var lineStart = 0
            while lineStart < bytes.count {
                var fields = FieldCursor(bytes, from: lineStart)
                var words: [String] = []
                while let field = fields.next() {
                    words.append(String(decoding: UnsafeBufferPointer(rebasing: bytes[field]), as: UTF8.self))
                }
                if words.count >= 2 { result[words[0], default: []] += words.dropFirst() }
                lineStart = fields.lineEnd() + 1
            }
            return result
        }
    }

    /// Walks the space-separated fields of one line, never past its newline.
    fileprivate struct FieldCursor {
        let bytes: UnsafeBufferPointer<UInt8>
        var position: Int

        init(_ bytes: UnsafeBufferPointer<UInt8>, from position: Int) {
            self.bytes = bytes
            self.position = position
        }

        mutating func next() -> Range<Int>? {
            while position < bytes.count, bytes[position] == UInt8(ascii: " ") { position += 1 }
            let start = position
            while position < bytes.count, bytes[position] != UInt8(ascii: " "), bytes[position] != UInt8(ascii: "\n") {
                position += 1
            }
            return position > start ? start ..< position : nil
        }

        /// The index of the newline ending the line (or the end of the buffer).
        mutating func lineEnd() -> Int {
            while position < bytes.count, bytes[position] != UInt8(ascii: "\n") { position += 1 }
            return position
        }
    }

    /// A decimal or hexadecimal field; nil when it holds anything else or is implausibly long.
    fileprivate static func parseNumber(_ digits: Slice<UnsafeBufferPointer<UInt8>>, radix: Int) -> Int? {
        guard !digits.isEmpty, digits.count <= 12 else { return nil }
        var value = 0
        for byte in digits {
            let digit: Int
            switch byte {
            case UInt8(ascii: "0") ... UInt8(ascii: "9"): digit = Int(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a") ... UInt8(ascii: "f"): digit = Int(byte - UInt8(ascii: "a")) + 10
            case UInt8(ascii: "A") ... UInt8(ascii: "F"): digit = Int(byte - UInt8(ascii: "A")) + 10
            default: return nil
            }
            guard digit < radix else { return nil }
            value = value * radix + digit
        }
        return value
    }

    /// The whole file, read with POSIX calls so a failure can say why (errno), not just that it failed.
    fileprivate static func readFile(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw WordNetError(file: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw WordNetError(file: path, reason: String(cString: strerror(errno))) }
        guard info.st_mode & S_IFMT == S_IFREG else { throw WordNetError(file: path, reason: "not a regular file") }
        let size = Int(info.st_size)
        return try [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
            guard let base = buffer.baseAddress else { return }
            while initialized < size {
                let count = read(fd, base + initialized, size - initialized)
                if count < 0, errno == EINTR { continue }
                guard count > 0 else {
                    throw WordNetError(file: path, reason: count < 0 ? String(cString: strerror(errno)) : "file shrank while reading")
                }
                initialized += count
            }
        }
    }
}
