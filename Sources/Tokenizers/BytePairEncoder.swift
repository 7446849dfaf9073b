import Foundation

/// Byte-level BPE with CLIP's "</w>" end-of-word suffix, working on token ids.
final class BytePairEncoder: Sendable {
    /// Where a vocabulary and its merges came from, for error messages.
    struct Sources {
        let vocab: URL
        let merges: URL
    }

    /// A merge of two adjacent symbols; a lower rank merges first.
    struct Merge {
        let rank: Int32
        let id: Int32
    }

    static let endOfWord = "</w>"

    /// Token strings by id.
    let tokens: [Int: String]
    let vocab: [String: Int]
    private let byteIds: [Int32]
    private let finalByteIds: [Int32]
    private let merges: [UInt64: Merge]
    private let cache = WordCache()

    /// - Parameter merges: the merge pairs in rank order, each with its line in `sources.merges`.
    init(vocab: [String: Int], merges: [(left: String, right: String, line: Int)], sources: Sources) throws(TokenizerError) {
        self.vocab = vocab
        var tokens: [Int: String] = [:]
        for (token, id) in vocab {
            guard id >= 0, id <= Int(Int32.max) else {
                throw TokenizerError(file: sources.vocab, "id \(id) of \(quoted(token)) is out of range")
            }
            tokens[id] = token
        }
        self.tokens = tokens

        var byteIds = [Int32](repeating: 0, count: 256)
        var finalByteIds = byteIds
        for (byte, character) in ByteLevel.characters.enumerated() {
            let symbol = String(character)
            guard let id = vocab[symbol], let finalId = vocab[symbol + Self.endOfWord] else {
                throw TokenizerError(file: sources.vocab, "no entry for the byte symbol \(quoted(symbol)) (or it with \"</w>\")")
            }
            byteIds[byte] = Int32(id)
            finalByteIds[byte] = Int32(finalId)
        }
        self.byteIds = byteIds
        self.finalByteIds = finalByteIds

        var table: [UInt64: Merge] = [:]
        table.reserveCapacity(merges.count)
        for (rank, merge) in merges.enumerated() {
            guard let left = vocab[merge.left], let right = vocab[merge.right] else {
                let missing = vocab[merge.left] == nil ? merge.left : merge.right
                throw TokenizerError(file: sources.merges, line: merge.line, "symbol \(quoted(missing)) is not in \(sources.vocab.lastPathComponent)")
            }
            guard let merged = vocab[merge.left + merge.right] else {
                throw TokenizerError(file: sources.merges, line: merge.line,
                                     "merged token \(quoted(merge.left + merge.right)) is not in \(sources.vocab.lastPathComponent)")
            }
            // A repeated pair takes its later rank, as tokenizers and open_clip do.
            table[Self.key(Int32(left), Int32(right))] = Merge(rank: Int32(rank), id: Int32(merged))
        }
        self.merges = table
    }

    /// Appends the ids of one pre-tokenized word, given as its UTF-8 bytes.
    func encode(word: [UInt8], into ids: inout [Int]) {
        if let cached = cache[word] {
            ids += cached
            return
        }
        let result = merge(word).map(Int.init)
        cache[word] = result
        ids += result
    }

    private func merge(_ word: [UInt8]) -> [Int32] {
        var symbols = word.indices.map { index in
            index == word.count - 1 ? finalByteIds[Int(word[index])] : byteIds[Int(word[index])]
        }
        // The lowest-ranked adjacent pair merges first, every occurrence left to right; merges
        // learned later can only involve symbols that exist by then, so this equals the
        // leftmost-first priority queue of Hugging Face tokenizers.
        while symbols.count > 1 {
            var best: (key: UInt64, merge: Merge)?
            for index in 0..<(symbols.count - 1) {
                let key = Self.key(symbols[index], symbols[index + 1])
                if let merge = merges[key], merge.rank < (best?.merge.rank ?? .max) {
                    best = (key, merge)
                }
            }
            guard let best else { break }
            var merged: [Int32] = []
            merged.reserveCapacity(symbols.count)
            var index = 0
            while index < symbols.count {
                if index + 1 < symbols.count, Self.key(symbols[index], symbols[index + 1]) == best.key {
                    merged.append(best.merge.id)
                    index += 2
                } else {
                    merged.append(symbols[index])
                    index += 1
                }
            }
            symbols = merged
        }
        return symbols
    }

    private static func key(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }
}

/// Words already encoded, keyed by their UTF-8 bytes (not `String`, whose equality is canonical
/// equivalence: "ǰ" and "j\u{30C}" are equal strings but different BPE inputs).
/// Unchecked: every access to `words` holds `lock` (Mutex needs macOS 15; the package targets 14).
final class WordCache: @unchecked Sendable {
    private var words: [[UInt8]: [Int]] = [:]
    private let lock = NSLock()
    /// Bounded so that a long run over diverse text does not grow it without limit.
    private let capacity = 50_000

    subscript(word: [UInt8]) -> [Int]? {
        get { lock.withLock { words[word] } }
        set {
            lock.withLock {
                if words.count >= capacity { words.removeAll(keepingCapacity: true) }
                words[word] = newValue
            }
        }
    }
}

/// A token in quotes with control characters escaped, for messages.
func quoted(_ token: String) -> String {
    "\"" + token.unicodeScalars.map { $0.properties.generalCategory == .control ? $0.escaped(asASCII: true) : String($0) }.joined() + "\""
}
