import Foundation

/// BERT's WordPiece tokenizer, equal to transformers' `BertTokenizerFast` (tokenizers backend)
/// called with `truncation=True, max_length=maxLength` (and `padding="max_length"` when
/// `padToMaxLength`).
///
/// Pipeline: special tokens written in the text ("[CLS]", "[SEP]", "[MASK]", ...) are their ids;
/// the rest goes through BERT's normalizer (drop control characters, whitespace to spaces, spaces
/// around CJK ideographs, accents stripped via NFD when lowercasing, lowercase), is split on
/// whitespace and around each punctuation character, and each word is matched greedily
/// longest-first against the vocabulary ("##" marks a word's later pieces; a word that cannot be
/// covered, or is over 100 characters, is [UNK]). The encoding is [CLS] + tokens + [SEP],
/// truncated to `maxLength` keeping [SEP].
public final class WordPieceTokenizer: TextTokenizer, Sendable {
    /// The names of the special tokens in the vocabulary.
    public struct SpecialTokens: Sendable, Equatable {
        public var unknown = "[UNK]"
        public var classifier = "[CLS]"
        public var separator = "[SEP]"
        public var padding = "[PAD]"
        public var mask = "[MASK]"
        public init() {}
    }

    /// Longer words become [UNK] whole (tokenizers' `max_input_chars_per_word`).
    static let maxCharactersPerWord = 100
    static let continuationPrefix = "##"

    /// The most tokens an encoding holds, [CLS] and [SEP] included.
    public let maxLength: Int
    public var contextLength: Int { maxLength }
    /// Whether `encode` pads every text to `maxLength`; otherwise only `encode(batch:)` pads,
    /// to the batch's longest text.
    public let padToMaxLength: Bool
    public let lowercase: Bool
    /// Whether accents (nonspacing marks after NFD) are removed; defaults to `lowercase`.
    public let stripAccents: Bool
    /// Whether CJK ideographs are split into single characters.
    public let tokenizeChineseCharacters: Bool
    public let unknownTokenId: Int
    public let classifierTokenId: Int
    public let separatorTokenId: Int
    /// The id of [PAD] (0 in BERT vocabularies).
    public let padTokenId: Int
    public var vocabularySize: Int { tokens.count }

    /// Token strings by id (line number in vocab.txt).
    private let tokens: [String]
    /// Whole-word-start pieces and "##" pieces (prefix removed), keyed by UTF-8 bytes so that
    /// canonically equivalent spellings stay distinct, as in the reference.
    private let wordStarts: [[UInt8]: Int]
    private let continuations: [[UInt8]: Int]
    private let longestPieceBytes: Int
    private let specials: SpecialTokenMatcher

    /// A tokenizer from a BERT `vocab.txt` (one token per line; the line number is the id).
    /// - Parameters:
    ///   - stripAccents: nil follows `lowercase`, as in BERT.
    ///   - maxLength: tokens per text including [CLS] and [SEP]. all-MiniLM-L6-v2's tokenizer.json
    ///     truncates at 128; its sentence_bert_config.json says 256; BERT models allow 512.
    /// - Throws: `TokenizerError` naming the file that is missing or malformed.
    public convenience init(vocab: URL, lowercase: Bool = true, stripAccents: Bool? = nil, maxLength: Int = 128,
                            padToMaxLength: Bool = false, tokenizeChineseCharacters: Bool = true) throws(TokenizerError) {
        try self.init(vocab: vocab, lowercase: lowercase, stripAccents: stripAccents, maxLength: maxLength,
                      padToMaxLength: padToMaxLength, tokenizeChineseCharacters: tokenizeChineseCharacters, specialTokens: SpecialTokens())
    }

    /// - Throws: `TokenizerError` naming the file that is missing or malformed.
    public init(vocab: URL, lowercase: Bool, stripAccents: Bool?, maxLength: Int, padToMaxLength: Bool,
                tokenizeChineseCharacters: Bool, specialTokens: SpecialTokens) throws(TokenizerError) {
        precondition(maxLength >= 2, "a BERT encoding holds at least [CLS] and [SEP]")
        let text = try FileInput.text(vocab)
        var lines = text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            String(String.UnicodeScalarView(line.last == "\r" ? line.dropLast() : line))
        }
        if lines.last == "" { lines.removeLast() }
        guard !lines.isEmpty else { throw TokenizerError(file: vocab, "empty vocabulary") }

        var wordStarts: [[UInt8]: Int] = [:]
        var continuations: [[UInt8]: Int] = [:]
        var longest = 0
        for (id, token) in lines.enumerated() {
            // A repeated token keeps its last line, as Python's dict-based load_vocab does.
            let bytes = Array(token.utf8)
            wordStarts[bytes] = id
            if bytes.starts(with: Self.continuationPrefix.utf8) {
                continuations[Array(bytes.dropFirst(Self.continuationPrefix.utf8.count))] = id
            }
            longest = max(longest, bytes.count)
        }
        func id(_ name: String) -> Int? { wordStarts[Array(name.utf8)] }
        guard let unknown = id(specialTokens.unknown), let classifier = id(specialTokens.classifier),
              let separator = id(specialTokens.separator) else {
            throw TokenizerError(file: vocab, "no \(specialTokens.unknown), \(specialTokens.classifier) or \(specialTokens.separator) token")
        }

        tokens = lines
        self.wordStarts = wordStarts
        self.continuations = continuations
        longestPieceBytes = longest
        self.maxLength = maxLength
        self.padToMaxLength = padToMaxLength
        self.lowercase = lowercase
        self.stripAccents = stripAccents ?? lowercase
        self.tokenizeChineseCharacters = tokenizeChineseCharacters
        unknownTokenId = unknown
        classifierTokenId = classifier
        separatorTokenId = separator
        padTokenId = id(specialTokens.padding) ?? 0
        let names = [specialTokens.unknown, specialTokens.classifier, specialTokens.separator, specialTokens.padding, specialTokens.mask]
        specials = SpecialTokenMatcher(names.compactMap { name in id(name).map { (name, $0) } })
    }

    /// A tokenizer from a Hugging Face model folder: `vocab.txt`, with `do_lower_case`,
    /// `strip_accents`, `tokenize_chinese_chars`, special-token names and `model_max_length` from
    /// `tokenizer_config.json` (and `special_tokens_map.json`) when present. Without `maxLength`,
    /// the length is sentence-transformers' `max_seq_length` (sentence_bert_config.json) when
    /// present, else `model_max_length`, else 512.
    public static func fromDirectory(_ directory: URL, maxLength: Int? = nil, padToMaxLength: Bool = false) throws(TokenizerError) -> WordPieceTokenizer {
        let config = try FileInput.optionalConfig(directory.appendingPathComponent("tokenizer_config.json")) ?? [:]
        let specialsMap = try FileInput.optionalConfig(directory.appendingPathComponent("special_tokens_map.json")) ?? [:]
        let sentenceBert = try FileInput.optionalConfig(directory.appendingPathComponent("sentence_bert_config.json")) ?? [:]

        func setting(_ key: String) -> String? {
            FileInput.tokenString(specialsMap[key]) ?? FileInput.tokenString(config[key])
        }
        var names = SpecialTokens()
        names.unknown = setting("unk_token") ?? names.unknown
        names.classifier = setting("cls_token") ?? names.classifier
        names.separator = setting("sep_token") ?? names.separator
        names.padding = setting("pad_token") ?? names.padding
        names.mask = setting("mask_token") ?? names.mask

        func length(_ value: Any?) -> Int? {
            // transformers writes a huge sentinel when a checkpoint sets no limit.
            (value as? NSNumber).map(\.doubleValue).flatMap { $0 >= 2 && $0 <= 1_000_000 ? Int($0) : nil }
        }
        let lowercase = (config["do_lower_case"] as? Bool) ?? true
        return try WordPieceTokenizer(
            vocab: directory.appendingPathComponent("vocab.txt"),
            lowercase: lowercase,
            stripAccents: config["strip_accents"] as? Bool,
            maxLength: maxLength ?? length(sentenceBert["max_seq_length"]) ?? length(config["model_max_length"]) ?? 512,
            padToMaxLength: padToMaxLength,
            tokenizeChineseCharacters: (config["tokenize_chinese_chars"] as? Bool) ?? true,
            specialTokens: names)
    }

    /// [CLS] + tokens + [SEP], truncated to `maxLength`, padded to it when `padToMaxLength`.
    public func encode(_ text: String) -> Encoding {
        assemble(contentIds(text, limit: maxLength - 2), start: classifierTokenId, end: separatorTokenId,
                 length: maxLength, padTo: padToMaxLength ? maxLength : nil, padId: padTokenId)
    }

    /// The encodings of `batch`, padded with [PAD] to the longest one unless `padToMaxLength`
    /// already pads them all to `maxLength` (transformers' `padding="longest"`).
    public func encode(batch: [String]) -> [Encoding] {
        padToLongest(batch.map { encode($0) }, padId: padTokenId)
    }

    /// The token strings of `text`, without [CLS], [SEP] or truncation (for inspection).
    public func tokenize(_ text: String) -> [String] {
        contentIds(text).map { tokens[$0] }
    }

    /// The ids of `text` without [CLS] and [SEP], stopping once `limit` are found.
    func contentIds(_ text: String, limit: Int = .max) -> [Int] {
        var ids: [Int] = []
        for segment in specials.split(Array(text.unicodeScalars)) {
            guard ids.count < limit else { break }
            switch segment {
            case .special(let id):
                ids.append(id)
            case .text(let scalars):
                let normalized = normalize(scalars)
                for word in BertPreTokenizer.words(normalized) {
                    guard ids.count < limit else { break }
                    appendWordPieces(normalized[word], to: &ids)
                }
            }
        }
        return ids.count > limit ? Array(ids.prefix(limit)) : ids
    }

    /// BERT's normalizer, in tokenizers' order: clean, CJK spacing, strip accents, lowercase.
    func normalize(_ scalars: ArraySlice<Unicode.Scalar>) -> [Unicode.Scalar] {
        var cleaned: [Unicode.Scalar] = []
        cleaned.reserveCapacity(scalars.count)
        for scalar in scalars {
            if UnicodeText.isBertRemoved(scalar) { continue }
            let mapped: Unicode.Scalar = UnicodeText.isBertWhitespace(scalar) ? " " : scalar
            if tokenizeChineseCharacters, UnicodeText.isBertChineseCharacter(mapped) {
                cleaned += [" ", mapped, " "]
            } else {
                cleaned.append(mapped)
            }
        }
        if stripAccents {
            cleaned = UnicodeText.nfd(cleaned).filter { !UnicodeText.isBertStrippedMark($0) }
        }
        return lowercase ? UnicodeText.lowercase(cleaned) : cleaned
    }

    /// Greedy longest-match WordPiece over scalar boundaries.
    private func appendWordPieces(_ word: ArraySlice<Unicode.Scalar>, to ids: inout [Int]) {
        guard word.count <= Self.maxCharactersPerWord else {
            ids.append(unknownTokenId)
            return
        }
        var bytes: [UInt8] = []
        var boundaries = [0]  // byte offset of each scalar boundary
        for scalar in word {
            scalar.appendUTF8(to: &bytes)
            boundaries.append(bytes.count)
        }
        var pieces: [Int] = []
        var start = 0
        while start < word.count {
            var end = word.count
            // No piece is longer than the vocabulary's longest token.
            while end > start && boundaries[end] - boundaries[start] > longestPieceBytes { end -= 1 }
            var found: Int?
            while end > start {
                let key = Array(bytes[boundaries[start]..<boundaries[end]])
                if let id = start == 0 ? wordStarts[key] : continuations[key] {
                    found = id
                    break
                }
                end -= 1
            }
            guard let found else {
                ids.append(unknownTokenId)
                return
            }
            pieces.append(found)
            start = end
        }
        ids += pieces
    }
}

/// BERT's pre-tokenizer: split on whitespace, and around every punctuation character.
enum BertPreTokenizer {
    static func words(_ scalars: [Unicode.Scalar]) -> [Range<Int>] {
        var words: [Range<Int>] = []
        var start = 0
        for (index, scalar) in scalars.enumerated() {
            let isSpace = UnicodeText.isBertWhitespace(scalar)
            guard isSpace || UnicodeText.isBertPunctuation(scalar) else { continue }
            if index > start { words.append(start..<index) }
            if !isSpace { words.append(index..<(index + 1)) }
            start = index + 1
        }
        if scalars.count > start { words.append(start..<scalars.count) }
        return words
    }
}
