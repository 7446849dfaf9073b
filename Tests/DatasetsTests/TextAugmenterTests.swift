import Foundation
import Testing
@testable import Datasets

/// WordNet is loaded once for the whole suite; a load failure is reported by every test that needs it.
enum WordNetFixture {
    static let loaded = Result { try WordNet() }
    static func wordNet() throws -> WordNet { try loaded.get() }
}

@Suite struct WordNetTests {
    @Test func nounSynonyms() throws {
        let wordNet = try WordNetFixture.wordNet()
        let dog = wordNet.synonyms(of: "dog")
        #expect(dog.contains("domestic dog"))
        #expect(dog.contains("canis familiaris"))
        #expect(!dog.contains("dog"))
        #expect(dog == dog.sorted() && Set(dog).count == dog.count)
        #expect(wordNet.synonyms(of: "car").contains("automobile"))
        #expect(wordNet.synonyms(of: "Car").contains("automobile"))
    }

    @Test func adjectiveSynonymsDropPositionMarkers() throws {
        let wordNet = try WordNetFixture.wordNet()
        #expect(wordNet.synonyms(of: "big").contains("large"))
        // "galore(ip)" in data.adj.
        #expect(wordNet.synonyms(of: "abounding").contains("galore"))
        #expect(!wordNet.synonyms(of: "abounding").contains { $0.contains("(") })
    }

    @Test func unknownAndEmptyWords() throws {
        let wordNet = try WordNetFixture.wordNet()
        #expect(wordNet.synonyms(of: "qzxvbnmw") == [])
        #expect(wordNet.synonyms(of: "") == [])
        #expect(wordNet.synonyms(of: "   ") == [])
        #expect(!wordNet.hasSynsets("qzxvbnmw"))
        #expect(wordNet.hasSynsets("dog"))
    }

    @Test func multiWordLemmasAndBaseForms() throws {
        let wordNet = try WordNetFixture.wordNet()
        #expect(wordNet.hasSynsets("ice cream"))
        #expect(wordNet.synonyms(of: "ice cream").contains("icecream"))
        // Regular plural through the suffix rules, irregular one through noun.exc.
        #expect(wordNet.synonyms(of: "dogs").contains("domestic dog"))
        #expect(!wordNet.synonyms(of: "dogs").contains("dog"))
        #expect(wordNet.hasSynsets("geese"))
        #expect(wordNet.synonyms(of: "geese") == wordNet.synonyms(of: "goose"))
        #expect(!wordNet.synonyms(of: "goose").isEmpty)
        #expect(wordNet.hasSynsets("running"))
    }

    @Test func missingDatabaseNamesTheFile() {
        #expect {
            _ = try WordNet(directory: "/nonexistent/wordnet")
        } throws: { error in
            let message = "\(error)"
            return message.contains("/nonexistent/wordnet/index.noun") && message.contains("apt-get install wordnet-base")
        }
    }
}

@Suite struct TextAugmenterTests {
    static let allOperations = TextAugmentationConfig(
        synonymReplacement: 0.3, randomInsertion: 0.3, randomSwap: 0.3, randomDeletion: 0.3)

    /// Short COCO-like captions; each has at least one replaceable word.
    static let captions = [
        "a dog runs across the green grass",
        "two children are playing with a red ball in the park",
        "a man rides a bicycle down a busy city street",
        "an old car parked next to a small house",
        "a woman holding an umbrella walks in the rain",
        "a big brown horse eats hay in the barn",
        "the cat sleeps on a soft chair near the window",
        "people watch the boats on the quiet lake at sunset",
        "a young boy jumps into the swimming pool",
        "a plate of food with rice and vegetables on a wooden table",
    ]

    @Test func zeroRatesLeaveCaptionsUntouched() throws {
        let augment = try augmenter(TextAugmentationConfig())
        for caption in Self.captions + ["  spaced   out  ", ""] {
            #expect(augment.augment(caption, seed: 1, epoch: 0, index: 0) == caption)
        }
    }

    @Test func degenerateCaptionsDoNotCrash() throws {
        let augment = try augmenter(Self.allOperations)
        for caption in ["", "   ", "dog", "the", "...", "- , !", "Dog.", "a a a a", "ice-cream!"] {
            for index in 0 ..< 20 {
                _ = augment.augment(caption, seed: 7, epoch: 0, index: index)
            }
        }
        #expect(augment.augment("", seed: 7, epoch: 0, index: 0) == "")
    }

    @Test func deterministicForEqualSeeds() throws {
        let augment = try augmenter(Self.allOperations)
        var differences = 0
        for (index, caption) in Self.captions.enumerated() {
            for epoch in 0 ..< 5 {
                let first = augment.augment(caption, seed: 42, epoch: epoch, index: index)
                #expect(first == augment.augment(caption, seed: 42, epoch: epoch, index: index))
                var random = SeededRandom(seed: 42, epoch: epoch, index: index, stream: 1)
                #expect(first == augment.augment(caption, random: &random))
                if first != augment.augment(caption, seed: 43, epoch: epoch, index: index) { differences += 1 }
            }
        }
        #expect(differences > 40, "different seeds should give different augmentations (\(differences) of 50 differ)")
    }

    @Test func synonymReplacementKeepsStopWordsInPlace() throws {
        let wordNet = try WordNetFixture.wordNet()
        let augment = try augmenter(TextAugmentationConfig(synonymReplacement: 0.3))
        var changed = 0
        for (index, caption) in Self.captions.enumerated() {
            for epoch in 0 ..< 5 {
                let output = augment.augment(caption, seed: 3, epoch: epoch, index: index)
                if output != caption { changed += 1 }
                #expect(isReplacement(of: words(caption), by: words(output), wordNet: wordNet), "\(caption) → \(output)")
            }
        }
        #expect(changed == Self.captions.count * 5, "every caption has a replaceable word")
    }

    @Test func synonymReplacementKeepsPunctuationAndCapitals() throws {
        let augment = try augmenter(TextAugmentationConfig(synonymReplacement: 1))
        let output = augment.augment("Dog, (car).", seed: 0, epoch: 0, index: 0)
        #expect(output.first?.isUppercase == true)
        #expect(output.contains(", ("))
        #expect(output.hasSuffix(")."))
        #expect(!output.lowercased().hasPrefix("dog,") && !output.contains("(car)"))
    }

    @Test func randomInsertionOnlyAddsSynonyms() throws {
        let wordNet = try WordNetFixture.wordNet()
        let augment = try augmenter(TextAugmentationConfig(randomInsertion: 0.3))
        for (index, caption) in Self.captions.enumerated() {
            let original = words(caption)
            let allowed = Set(original.filter { !TextAugmenter.stopWords.contains($0) }
                .flatMap { wordNet.synonyms(of: $0) }.flatMap(words))
            for epoch in 0 ..< 5 {
                let output = words(augment.augment(caption, seed: 5, epoch: epoch, index: index))
                #expect(output.count > original.count, "\(output)")
                #expect(isSubsequence(original, of: output), "\(caption) → \(output)")
                let added = subtracting(original, from: output)
                #expect(added.allSatisfy(allowed.contains), "\(caption): inserted \(added)")
            }
        }
    }

    @Test func randomSwapKeepsTheWords() throws {
        let augment = try augmenter(TextAugmentationConfig(randomSwap: 0.3))
        var changed = 0
        for (index, caption) in Self.captions.enumerated() {
            for epoch in 0 ..< 5 {
                let output = augment.augment(caption, seed: 9, epoch: epoch, index: index)
                #expect(words(output).sorted() == words(caption).sorted())
                if output != caption { changed += 1 }
            }
        }
        // A swap of two equal words ("a" … "a") leaves a caption as it was, so not every one changes.
        #expect(changed > 40)
    }

    @Test func randomDeletionOnlyRemoves() throws {
        let augment = try augmenter(TextAugmentationConfig(randomDeletion: 0.3))
        var shorter = 0
        for (index, caption) in Self.captions.enumerated() {
            for epoch in 0 ..< 5 {
                let output = words(augment.augment(caption, seed: 11, epoch: epoch, index: index))
                #expect(!output.isEmpty)
                #expect(isSubsequence(output, of: words(caption)), "\(caption) → \(output)")
                if output.count < words(caption).count { shorter += 1 }
            }
        }
        #expect(shorter > 40)
        // Certain deletion still keeps one word of the caption.
        let all = try augmenter(TextAugmentationConfig(randomDeletion: 1))
        let kept = words(all.augment("a dog runs fast", seed: 1, epoch: 0, index: 0))
        #expect(kept.count == 1 && words("a dog runs fast").contains(kept[0]))
        #expect(all.augment("dog", seed: 1, epoch: 0, index: 0) == "dog")
    }

    @Test func stopWordsAreNeverReplaced() throws {
        let augment = try augmenter(TextAugmentationConfig(synonymReplacement: 1, randomInsertion: 1))
        let caption = "i am in the out of it was not so"
        for index in 0 ..< 20 {
            #expect(augment.augment(caption, seed: 2, epoch: 0, index: index) == caption)
        }
    }

    @Test func pickCyclesThroughAlternatives() {
        let alternatives = ["first", "second", "third", "fourth"]
        for index in 0 ..< 10 {
            let picked = (0 ..< 4).map { TextAugmenter.pick(alternatives, epoch: $0, index: index, seed: 1) }
            #expect(Set(picked) == Set(alternatives))
            #expect(TextAugmenter.pick(alternatives, epoch: 4, index: index, seed: 1) == picked[0])
            #expect(TextAugmenter.pick(alternatives, epoch: -1, index: index, seed: 1) == picked[3])
        }
        let starts = Set((0 ..< 40).map { TextAugmenter.pick(alternatives, epoch: 0, index: $0, seed: 1) })
        #expect(starts.count > 1, "the first alternative should vary between samples")
        #expect(TextAugmenter.pick(["only"], epoch: 3, index: 5, seed: 1) == "only")
        #expect(TextAugmenter.pick([], epoch: 0, index: 0, seed: 1) == "")
    }
}

// Helpers are members, not file-level functions, so they cannot clash with other test files' names.
extension TextAugmenterTests {
    func words(_ text: String) -> [String] { text.split(separator: " ").map(String.init) }

    func augmenter(_ config: TextAugmentationConfig) throws -> TextAugmenter {
        TextAugmenter(wordNet: try WordNetFixture.wordNet(), config: config)
    }

    /// Whether `output` is `original` with some non-stop words replaced by (possibly multi-word) synonyms.
    func isReplacement(of original: [String], by output: [String], wordNet: WordNet) -> Bool {
        // Memoised on (i, j): a failing alignment would otherwise retry every split exponentially often.
        var failed = Set<[Int]>()
        func match(_ i: Int, _ j: Int) -> Bool {
            if i == original.count { return j == output.count }
            guard j < output.count, !failed.contains([i, j]) else { return false }
            let word = original[i]
            if output[j] == word, match(i + 1, j + 1) { return true }
            if !TextAugmenter.stopWords.contains(word) {
                for synonym in wordNet.synonyms(of: word) {
                    let parts = words(synonym)
                    if j + parts.count <= output.count, Array(output[j ..< j + parts.count]) == parts,
                       match(i + 1, j + parts.count) { return true }
                }
            }
            failed.insert([i, j])
            return false
        }
        return match(0, 0)
    }

    func isSubsequence(_ short: [String], of long: [String]) -> Bool {
        var remaining = long[...]
        for word in short {
            guard let found = remaining.firstIndex(of: word) else { return false }
            remaining = remaining[(found + 1)...]
        }
        return true
    }

    /// `long` without one occurrence of each word of `short` (multiset difference).
    func subtracting(_ short: [String], from long: [String]) -> [String] {
        var result = long
        for word in short {
            if let found = result.firstIndex(of: word) { result.remove(at: found) }
        }
        return result
    }
}
