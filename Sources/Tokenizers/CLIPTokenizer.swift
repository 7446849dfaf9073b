import Foundation

/// CLIP's byte-level BPE tokenizer, equal to transformers' `CLIPTokenizerFast` (tokenizers
/// backend) called with `padding="max_length", truncation=True, max_length=contextLength`.
///
/// Pipeline: "<|startoftext|>" / "<|endoftext|>" written in the text are their special ids; the
/// rest is NFC-normalized and lowercased, cut by CLIP's regex
/// `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
/// (whitespace dropped), mapped byte-to-unicode, and merged by BPE with a "</w>" suffix on each
/// word's last symbol. The encoding is `<|startoftext|>` + tokens + `<|endoftext|>`, truncated to
/// `contextLength` (keeping the end token) and padded.
///
/// open_clip's own tokenizer differs on some inputs: it runs ftfy and HTML unescaping (curly
/// quotes, full-width letters, ligatures, "&amp;", control characters), lowercases with Python's
/// final-sigma rule, and does not treat "<|endoftext|>" in text as special.
public final class CLIPTokenizer: TextTokenizer, Sendable {
    /// What fills the positions after the end token.
    public enum Padding: Sendable, Equatable {
        /// `<|endoftext|>` (49407 in CLIP's vocabulary): transformers' default pad token.
        case endToken
        /// Id 0 ("!"), as open_clip's `tokenize` does.
        case zero
        /// Any id, e.g. from a checkpoint's `pad_token`.
        case id(Int)
    }

    static let startToken = "<|startoftext|>"
    static let endToken = "<|endoftext|>"

    public let contextLength: Int
    public let padding: Padding
    /// The id of `<|startoftext|>` (49406 for CLIP).
    public let startTokenId: Int
    /// The id of `<|endoftext|>` (49407 for CLIP).
    public let endTokenId: Int
    /// Entries in the vocabulary (49408 for CLIP).
    public var vocabularySize: Int { bpe.vocab.count }
    /// The largest id the vocabulary gives a token (49407 for CLIP): a model needs that many
    /// rows of token embeddings, plus one.
    public let largestTokenId: Int

    public var padTokenId: Int {
        switch padding {
        case .endToken: endTokenId
        case .zero: 0
        case .id(let id): id
        }
    }

    private let bpe: BytePairEncoder
    private let specials: SpecialTokenMatcher

    /// A tokenizer from Hugging Face's files: `vocab.json` (token → id) and `merges.txt` (one
    /// "left right" pair per line, ranked by line, after an optional "#version" line).
    /// - Throws: `TokenizerError` naming the file that is missing or malformed.
    public convenience init(vocabJSON: URL, merges: URL, contextLength: Int = 77, padding: Padding = .endToken) throws(TokenizerError) {
        let vocab = try Self.readVocab(vocabJSON)
        let pairs = try Self.readMerges(merges)
        try self.init(bpe: BytePairEncoder(vocab: vocab, merges: pairs, sources: .init(vocab: vocabJSON, merges: merges)),
                      contextLength: contextLength, padding: padding, vocabFile: vocabJSON)
    }

    /// A tokenizer from open_clip's `bpe_simple_vocab_16e6.txt.gz`, building the vocabulary as
    /// open_clip's `SimpleTokenizer` does (the 256 byte symbols, the same with "</w>", the first
    /// 48,894 merges joined, then `<|startoftext|>` and `<|endoftext|>`: 49,408 entries).
    /// - Throws: `TokenizerError` naming the file that is missing or malformed.
    public convenience init(openCLIPMergesGz: URL, contextLength: Int = 77, padding: Padding = .zero) throws(TokenizerError) {
        let text = try FileInput.gzipText(openCLIPMergesGz)
        // Split bytes, not Characters: grapheme breaking over the whole 1.3 MB file is slow.
        let lines = text.utf8.split(separator: UInt8(ascii: "\n"), maxSplits: 49152, omittingEmptySubsequences: false)
            .map { Substring($0) }
        // open_clip: merges = lines[1 : 49152 - 256 - 2 + 1]; the first line is a header.
        let mergeCount = 49152 - 256 - 2
        guard lines.count > mergeCount else {
            throw TokenizerError(file: openCLIPMergesGz, "expected \(mergeCount) merges after the header line, found \(max(0, lines.count - 1))")
        }
        var pairs: [(left: String, right: String, line: Int)] = []
        pairs.reserveCapacity(mergeCount)
        for index in 1...mergeCount {
            let parts = lines[index].split(whereSeparator: \.isWhitespace)
            guard parts.count == 2 else {
                throw TokenizerError(file: openCLIPMergesGz, line: index + 1, "expected two symbols")
            }
            pairs.append((String(parts[0]), String(parts[1]), index + 1))
        }
        var tokens = ByteLevel.orderedPairs.map { String(Character($0.1)) }
        tokens += tokens.map { $0 + BytePairEncoder.endOfWord }
        tokens += pairs.map { $0.left + $0.right }
        tokens += [Self.startToken, Self.endToken]
        var vocab: [String: Int] = [:]
        for (id, token) in tokens.enumerated() { vocab[token] = id }
        try self.init(bpe: BytePairEncoder(vocab: vocab, merges: pairs, sources: .init(vocab: openCLIPMergesGz, merges: openCLIPMergesGz)),
                      contextLength: contextLength, padding: padding, vocabFile: openCLIPMergesGz)
    }

    /// A tokenizer from a Hugging Face model folder: `vocab.json` and `merges.txt`, with the
    /// context length from `tokenizer_config.json`'s `model_max_length` and the padding from
    /// `pad_token` (in `special_tokens_map.json` or `tokenizer_config.json`) when present.
    /// Arguments that are not nil take precedence over the folder's settings.
    public static func fromDirectory(_ directory: URL, contextLength: Int? = nil, padding: Padding? = nil) throws(TokenizerError) -> CLIPTokenizer {
        let vocabURL = directory.appendingPathComponent("vocab.json")
        let configURL = directory.appendingPathComponent("tokenizer_config.json")
        let specialsURL = directory.appendingPathComponent("special_tokens_map.json")
        let config = try FileInput.optionalConfig(configURL)
        let specials = try FileInput.optionalConfig(specialsURL)
        let tokenizer = try CLIPTokenizer(vocabJSON: vocabURL, merges: directory.appendingPathComponent("merges.txt"))

        // transformers writes a huge sentinel when a checkpoint sets no limit.
        let configured = (config?["model_max_length"] as? NSNumber)?.doubleValue
        let length = contextLength ?? configured.flatMap { $0 >= 2 && $0 <= 1_000_000 ? Int($0) : nil } ?? 77

        var pad = padding ?? .endToken
        if padding == nil {
            let (source, name) = FileInput.tokenString(specials?["pad_token"]).map { (specialsURL, $0) }
                ?? FileInput.tokenString(config?["pad_token"]).map { (configURL, $0) } ?? (configURL, endToken)
            guard let id = tokenizer.bpe.vocab[name] else {
                throw TokenizerError(file: source, "pad_token \(quoted(name)) is not in vocab.json")
            }
            pad = id == tokenizer.endTokenId ? .endToken : id == 0 ? .zero : .id(id)
        }
        return try CLIPTokenizer(bpe: tokenizer.bpe, contextLength: length, padding: pad, vocabFile: vocabURL)
    }

    private init(bpe: BytePairEncoder, contextLength: Int, padding: Padding, vocabFile: URL) throws(TokenizerError) {
        precondition(contextLength >= 2, "a CLIP context holds at least the start and end tokens")
        guard let start = bpe.vocab[Self.startToken], let end = bpe.vocab[Self.endToken] else {
            throw TokenizerError(file: vocabFile, "no \(Self.startToken) or \(Self.endToken) entry")
        }
        self.bpe = bpe
        self.contextLength = contextLength
        self.padding = padding
        startTokenId = start
        endTokenId = end
        largestTokenId = bpe.vocab.values.max() ?? end
        specials = SpecialTokenMatcher([(Self.startToken, start), (Self.endToken, end)])
    }

    /// `<|startoftext|>` + tokens + `<|endoftext|>`, truncated to `contextLength` and padded to it.
    public func encode(_ text: String) -> Encoding {
        assemble(contentIds(text, limit: contextLength - 2), start: startTokenId, end: endTokenId,
                 length: contextLength, padTo: contextLength, padId: padTokenId)
    }

    /// The token strings of `text`, without start and end tokens or truncation (for inspection).
    public func tokenize(_ text: String) -> [String] {
        contentIds(text).map { bpe.tokens[$0] ?? "" }
    }

    /// The ids of `text` without start and end tokens, stopping once `limit` are found.
    func contentIds(_ text: String, limit: Int = .max) -> [Int] {
        var ids: [Int] = []
        for segment in specials.split(Array(text.unicodeScalars)) {
            guard ids.count < limit else { break }
            switch segment {
            case .special(let id):
                ids.append(id)
            case .text(let scalars):
                let normalized = UnicodeText.lowercase(UnicodeText.nfc(scalars))
                var word: [UInt8] = []
                for piece in CLIPPreTokenizer.pieces(normalized) {
                    guard ids.count < limit else { break }
                    word.removeAll(keepingCapacity: true)
                    for scalar in normalized[piece] { scalar.appendUTF8(to: &word) }
                    bpe.encode(word: word, into: &ids)
                }
            }
        }
        return ids.count > limit ? Array(ids.prefix(limit)) : ids
    }

    private static func readVocab(_ url: URL) throws(TokenizerError) -> [String: Int] {
        let data = try FileInput.data(url)
        guard let vocab = try? JSONDecoder().decode([String: Int].self, from: data), !vocab.isEmpty else {
            throw TokenizerError(file: url, "not a JSON object of token → id")
        }
        if let (token, id) = vocab.first(where: { $0.value < 0 }) {
            throw TokenizerError(file: url, "token \(quoted(token)) has the negative id \(id)")
        }
        return vocab
    }

    private static func readMerges(_ url: URL) throws(TokenizerError) -> [(left: String, right: String, line: Int)] {
        let text = try FileInput.text(url)
        var pairs: [(left: String, right: String, line: Int)] = []
        for (index, rawLine) in text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = Substring(rawLine)
            if line.unicodeScalars.last == "\r" { line = Substring(line.unicodeScalars.dropLast()) }
            if line.isEmpty || (index == 0 && line.hasPrefix("#version")) { continue }
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw TokenizerError(file: url, line: index + 1, "expected two symbols")
            }
            pairs.append((String(parts[0]), String(parts[1]), index + 1))
        }
        guard !pairs.isEmpty else { throw TokenizerError(file: url, "no merges") }
        return pairs
    }
}

/// CLIP's pre-tokenizer regex, by hand over Unicode scalars.
enum CLIPPreTokenizer {
    private static let literals: [[Unicode.Scalar]] = [CLIPTokenizer.startToken, CLIPTokenizer.endToken].map { Array($0.unicodeScalars) }
    private static let contractions: [[Unicode.Scalar]] = ["s", "t", "re", "ve", "m", "ll", "d"].map { Array($0.unicodeScalars) }

    /// The matches of `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|
    /// [^\s\p{L}\p{N}]+` in `scalars`, in order (the whitespace between them is dropped).
    ///
    /// A literal "<|endoftext|>" (here only from lowercasing, e.g. "<|EndOfText|>") comes out as
    /// "<|", "endoftext", "|>": transformers' ByteLevel pre-tokenizer re-splits every match with
    /// GPT-2's regex, which changes no other match of this one.
    static func pieces(_ scalars: [Unicode.Scalar]) -> [Range<Int>] {
        var pieces: [Range<Int>] = []
        var index = 0
        let end = scalars.count
        while index < end {
            let scalar = scalars[index]
            if scalar == "<", let literal = literals.first(where: { starts(scalars, at: index, with: $0) }) {
                pieces += [index..<(index + 2), (index + 2)..<(index + literal.count - 2), (index + literal.count - 2)..<(index + literal.count)]
                index += literal.count
                continue
            }
            if scalar == "'", let suffix = contractions.first(where: { starts(scalars, at: index + 1, with: $0) }) {
                pieces.append(index..<(index + 1 + suffix.count))
                index += 1 + suffix.count
                continue
            }
            let start = index
            switch UnicodeText.clipClass(scalar) {
            case .space:
                index += 1
                continue
            case .number:
                index += 1
            case .letter:
                repeat { index += 1 } while index < end && UnicodeText.clipClass(scalars[index]) == .letter
            case .other:
                repeat { index += 1 } while index < end && UnicodeText.clipClass(scalars[index]) == .other
            }
            pieces.append(start..<index)
        }
        return pieces
    }

    private static func starts(_ scalars: [Unicode.Scalar], at index: Int, with prefix: [Unicode.Scalar]) -> Bool {
        index + prefix.count <= scalars.count && scalars[index..<(index + prefix.count)].elementsEqual(prefix)
    }
}

extension CLIPTokenizer {
    /// Writes Hugging Face's `vocab.json` and `merges.txt` for open_clip's merges file, so a
    /// model trained with open_clip's tokenizer is saved with the files transformers loads, and a
    /// `tokenizer_config.json` naming the class, so that `AutoTokenizer` loads them whatever the
    /// model's `config.json` says (it looks there only when the tokenizer's config names no class).
    public static func writeHuggingFaceFiles(fromOpenCLIPMerges gz: URL, to folder: URL) throws {
        let lines = try FileInput.gzipText(gz).split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count > 48894 else { throw TokenizerError(file: gz, "has \(lines.count) lines; open_clip's merges file has 262,146") }
        let merges = lines[1...48894].map(String.init)
        var tokens = ByteLevel.orderedPairs.map { String(Character($0.1)) }
        tokens += tokens.map { $0 + "</w>" }
        tokens += merges.map { $0.split(separator: " ").joined() }
        tokens += ["<|startoftext|>", "<|endoftext|>"]
        let vocab = Dictionary(tokens.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        try JSONSerialization.data(withJSONObject: vocab, options: [.sortedKeys]).write(to: folder.appendingPathComponent("vocab.json"))
        try Data(("#version: 0.2\n" + merges.joined(separator: "\n") + "\n").utf8).write(to: folder.appendingPathComponent("merges.txt"))
        let config = ["tokenizer_class": "CLIPTokenizer", "bos_token": startToken, "eos_token": endToken, "unk_token": endToken, "pad_token": endToken]
        try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys]).write(to: folder.appendingPathComponent("tokenizer_config.json"))
    }
}
