/// Rates of the four EDA caption operations (Wei & Zou 2019); all zero leaves captions untouched.
public struct TextAugmentationConfig: Sendable, Equatable {
    /// Fraction of words replaced by a WordNet synonym (EDA's α_sr).
    public var synonymReplacement: Double
    /// Fraction of words for which a synonym is inserted at a random position (α_ri).
    public var randomInsertion: Double
    /// Fraction of words for which two random words swap places (α_rs).
    public var randomSwap: Double
    /// Probability that each word is deleted (p_rd).
    public var randomDeletion: Double

    /// A configuration; every rate defaults to 0 (off).
    public init(synonymReplacement: Double = 0, randomInsertion: Double = 0, randomSwap: Double = 0,
                randomDeletion: Double = 0) {
        self.synonymReplacement = synonymReplacement
        self.randomInsertion = randomInsertion
        self.randomSwap = randomSwap
        self.randomDeletion = randomDeletion
    }

    /// Whether every rate is zero.
    public var isIdentity: Bool {
        synonymReplacement == 0 && randomInsertion == 0 && randomSwap == 0 && randomDeletion == 0
    }
}

/// EDA caption augmentation after the reference eda.py: synonym replacement, random insertion, random swap
/// and random deletion, applied in that order.
///
/// Unlike eda.py the caption is not lowercased or stripped of punctuation: words are compared
/// case-insensitively, and punctuation around a word stays in place when the word is replaced or swapped.
public struct TextAugmenter: Sendable {
    public let wordNet: WordNet
    public let config: TextAugmentationConfig

    /// An augmenter; every rate of `config` is in [0, 1] (the recipe decoder checks this).
    public init(wordNet: WordNet, config: TextAugmentationConfig) {
        precondition([config.synonymReplacement, config.randomInsertion, config.randomSwap, config.randomDeletion].allSatisfy { (0...1).contains($0) },
                     "text augmentation rates must be in [0, 1]: \(config)")
        self.wordNet = wordNet
        self.config = config
    }

    /// Augments one caption; the output depends only on the caption and the state of `random`.
    public func augment(_ caption: String, random: inout SeededRandom) -> String {
        guard !config.isIdentity else { return caption }
        var tokens = caption.split(whereSeparator: \.isWhitespace).map { Token(String($0)) }
        let wordCount = tokens.count(where: \.isWord)
        guard wordCount > 0 else { return caption }
        // eda.py: n = max(1, int(alpha * num_words)), with num_words counted before any operation.
        func operations(_ rate: Double) -> Int { max(1, Int(rate * Double(wordCount))) }
        var lookup = SynonymCache(wordNet: wordNet)

        if config.synonymReplacement > 0 {
            replaceSynonyms(in: &tokens, count: operations(config.synonymReplacement), lookup: &lookup, random: &random)
        }
        if config.randomInsertion > 0 {
            insertSynonyms(into: &tokens, count: operations(config.randomInsertion), lookup: &lookup, random: &random)
        }
        if config.randomSwap > 0 {
            swapWords(in: &tokens, count: operations(config.randomSwap), random: &random)
        }
        if config.randomDeletion > 0 {
            deleteWords(from: &tokens, probability: config.randomDeletion, random: &random)
        }
        return tokens.map(\.text).joined(separator: " ")
    }

    /// Augments caption `index` of `epoch`, independently of every other sample and of thread count.
    public func augment(_ caption: String, seed: UInt64, epoch: Int, index: Int) -> String {
        var random = SeededRandom(seed: seed, epoch: epoch, index: index, stream: 1)
        return augment(caption, random: &random)
    }

    /// One of a sample's alternative captions: a seeded start per sample, then the next one each epoch,
    /// so every alternative is seen once per `captions.count` epochs. Empty input gives "".
    public static func pick(_ captions: [String], epoch: Int, index: Int, seed: UInt64) -> String {
        guard !captions.isEmpty else { return "" }
        let count = UInt64(captions.count)
        var random = SeededRandom(seed: seed, epoch: 0, index: index, stream: 2)
        let start = random.next() % count
        // Non-negative remainder, so negative epochs rotate too.
        let shift = UInt64((epoch % captions.count + captions.count) % captions.count)
        return captions[Int((start + shift) % count)]
    }

    // MARK: - Operations

    /// Replaces up to `count` distinct non-stop words (every occurrence of each) with one random synonym.
    func replaceSynonyms(in tokens: inout [Token], count: Int, lookup: inout SynonymCache, random: inout SeededRandom) {
        var seen = Set<String>()
        var candidates = tokens.filter { $0.isWord && !Self.stopWords.contains($0.key) && seen.insert($0.key).inserted }
            .map(\.key)
        Self.shuffle(&candidates, random: &random)
        var replaced = 0
        for key in candidates where replaced < count {
            let synonyms = lookup.synonyms(of: key)
            guard !synonyms.isEmpty else { continue }
            let synonym = synonyms[Self.randomIndex(synonyms.count, &random)]
            // Replaced words are marked so that a later candidate equal to this synonym leaves them alone.
            tokens = tokens.flatMap { $0.isWord && !$0.isNew && $0.key == key ? $0.replaced(by: synonym) : [$0] }
            replaced += 1
        }
    }

    /// Inserts `count` synonyms of random non-stop words of the caption at random positions.
    func insertSynonyms(into tokens: inout [Token], count: Int, lookup: inout SynonymCache, random: inout SeededRandom) {
        // Sources are drawn per occurrence, as eda.py draws a random position; drawing only among words
        // that have synonyms replaces eda.py's ten blind attempts. Words put there by replacement are not
        // sources, so insertions stay synonyms of the caption's own words.
        let sources = tokens.filter {
            $0.isWord && !$0.isNew && !Self.stopWords.contains($0.key) && !lookup.synonyms(of: $0.key).isEmpty
        }
        guard !sources.isEmpty else { return }
        for _ in 0 ..< count {
            let synonyms = lookup.synonyms(of: sources[Self.randomIndex(sources.count, &random)].key)
            let synonym = synonyms[Self.randomIndex(synonyms.count, &random)]
            let position = Self.randomIndex(tokens.count + 1, &random)
            tokens.insert(contentsOf: synonym.split(separator: " ").map { Token(inserted: String($0)) }, at: position)
        }
    }

    /// Swaps two distinct random words `count` times; punctuation stays where it was.
    func swapWords(in tokens: inout [Token], count: Int, random: inout SeededRandom) {
        let words = tokens.indices.filter { tokens[$0].isWord }
        guard words.count >= 2 else { return }
        for _ in 0 ..< count {
            let first = Self.randomIndex(words.count, &random)
            // Drawing from the other count - 1 words guarantees two different positions.
            var second = Self.randomIndex(words.count - 1, &random)
            if second >= first { second += 1 }
            let (a, b) = (words[first], words[second])
            (tokens[a].core, tokens[b].core) = (tokens[b].core, tokens[a].core)
            (tokens[a].isNew, tokens[b].isNew) = (tokens[b].isNew, tokens[a].isNew)
        }
    }

    /// Deletes each word with `probability`, keeping one random word if all would go (as eda.py does).
    func deleteWords(from tokens: inout [Token], probability: Double, random: inout SeededRandom) {
        let words = tokens.indices.filter { tokens[$0].isWord }
        guard words.count > 1 else { return }
        var deleted = Set(words.filter { _ in random.chance(probability) })
        if deleted.count == words.count { deleted.remove(words[Self.randomIndex(words.count, &random)]) }
        tokens = tokens.indices.filter { !deleted.contains($0) }.map { tokens[$0] }
    }

    // MARK: - Helpers

    /// A uniform index below `count` (> 0). Own arithmetic rather than `Int.random(in:using:)`, whose
    /// algorithm the standard library may change, so augmentations stay reproducible across toolchains.
    static func randomIndex(_ count: Int, _ random: inout SeededRandom) -> Int {
        Int(random.next() % UInt64(count))
    }

    /// Fisher–Yates with `randomIndex`, for the same reason.
    static func shuffle<T>(_ items: inout [T], random: inout SeededRandom) {
        guard items.count > 1 else { return }
        for i in stride(from: items.count - 1, to: 0, by: -1) {
            items.swapAt(i, randomIndex(i + 1, &random))
        }
    }

    /// eda.py's stop words (a subset of NLTK's English list), which are never replaced or used for insertion.
    static let stopWords: Set<String> = [
        "i", "me", "my", "myself", "we", "our", "ours", "ourselves", "you", "your", "yours", "yourself",
        "yourselves", "he", "him", "his", "himself", "she", "her", "hers", "herself", "it", "its", "itself",
        "they", "them", "their", "theirs", "themselves", "what", "which", "who", "whom", "this", "that", "these",
        "those", "am", "is", "are", "was", "were", "be", "been", "being", "have", "has", "had", "having", "do",
        "does", "did", "doing", "a", "an", "the", "and", "but", "if", "or", "because", "as", "until", "while",
        "of", "at", "by", "for", "with", "about", "against", "between", "into", "through", "during", "before",
        "after", "above", "below", "to", "from", "up", "down", "in", "out", "on", "off", "over", "under",
        "again", "further", "then", "once", "here", "there", "when", "where", "why", "how", "all", "any", "both",
        "each", "few", "more", "most", "other", "some", "such", "no", "nor", "not", "only", "own", "same", "so",
        "than", "too", "very", "s", "t", "can", "will", "just", "don", "should", "now", "",
    ]
}

extension TextAugmenter {
    /// One whitespace-separated piece of a caption: a word with the punctuation around it ("(dog)," is
    /// "(" + "dog" + "),"), or pure punctuation ("-"), which has an empty core and is never a word.
    struct Token: Equatable {
        var prefix: String
        var core: String
        var suffix: String
        /// Set on words that augmentation put there, so synonym replacement does not replace them again.
        var isNew = false

        init(_ text: String) {
            let isWordCharacter: (Character) -> Bool = { $0.isLetter || $0.isNumber }
            guard let first = text.firstIndex(where: isWordCharacter), let last = text.lastIndex(where: isWordCharacter) else {
                (prefix, core, suffix) = (text, "", "")
                return
            }
            prefix = String(text[..<first])
            core = String(text[first ... last])
            suffix = String(text[text.index(after: last)...])
        }

        init(inserted word: String) {
            (prefix, core, suffix, isNew) = ("", word, "", true)
        }

        var isWord: Bool { !core.isEmpty }
        /// The word as looked up and compared: case-insensitive.
        var key: String { core.lowercased() }
        var text: String { prefix + core + suffix }

        /// This token with its word replaced by `synonym` (several tokens for "domestic dog"); the punctuation
        /// stays around the whole, and a capitalised word gives a capitalised synonym.
        func replaced(by synonym: String) -> [Token] {
            var words = synonym.split(separator: " ").map { Token(inserted: String($0)) }
            guard !words.isEmpty else { return [self] }
            if core.first?.isUppercase == true { words[0].core = words[0].core.prefix(1).uppercased() + words[0].core.dropFirst() }
            words[0].prefix = prefix
            words[words.count - 1].suffix = suffix
            return words
        }
    }

    /// Per-caption memo of WordNet lookups: replacement and insertion ask about the same words repeatedly.
    struct SynonymCache {
        let wordNet: WordNet
        private var cache: [String: [String]] = [:]

        init(wordNet: WordNet) { self.wordNet = wordNet }

        mutating func synonyms(of key: String) -> [String] {
            if let known = cache[key] { return known }
            let found = wordNet.synonyms(of: key)
            cache[key] = found
            return found
        }
    }
}
