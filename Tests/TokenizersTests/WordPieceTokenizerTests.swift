import Foundation
import Testing
@testable import Tokenizers

@Suite("WordPieceTokenizer")
struct WordPieceTokenizerTests {
    let fixture = TokenizerFixture.shared

    @Test("matches BertTokenizerFast (all-MiniLM-L6-v2) on every fixture string")
    func fixtureStrings() throws {
        guard let tokenizer = Shared.bert() else { return }
        #expect(tokenizer.vocabularySize == 30522 && tokenizer.padTokenId == 0 && tokenizer.unknownTokenId == 100)
        #expect(fixture.bert.contains { $0.count == 128 }, "the fixture should hold texts longer than 128 tokens")
        expectAllEqual("BERT", fixture.strings, expected: { padded(fixture.bert[$0], to: 0, with: 0) }, got: tokenizer.encode)
    }

    @Test("padding to max_length: [PAD] ids with mask 0")
    func paddingToMaxLength() throws {
        guard let vocab = Assets.require(Assets.miniLM.appendingPathComponent("vocab.txt")) else { return }
        let tokenizer = try WordPieceTokenizer(vocab: vocab, maxLength: 128, padToMaxLength: true)
        expectAllEqual("BERT padded", fixture.strings, expected: { padded(fixture.bert[$0], to: 128, with: 0) }, got: tokenizer.encode)
    }

    @Test("shorter max lengths keep the leading tokens and [SEP]", arguments: [2, 5, 32])
    func truncation(maxLength: Int) throws {
        guard let vocab = Assets.require(Assets.miniLM.appendingPathComponent("vocab.txt")) else { return }
        let tokenizer = try WordPieceTokenizer(vocab: vocab, maxLength: maxLength)
        for (index, string) in fixture.strings.enumerated() {
            let content = fixture.bert[index].dropFirst().dropLast()
            let expected = [101] + content.prefix(maxLength - 2) + [102]
            #expect(tokenizer.encode(string) == padded(expected, to: 0, with: 0), "\(string.debugDescription)")
        }
    }

    @Test("a batch is padded to its longest text")
    func batch() throws {
        guard let tokenizer = Shared.bert() else { return }
        let batch = tokenizer.encode(batch: ["hello", "a much longer sentence than the first", ""])
        #expect(batch.map(\.ids.count) == [9, 9, 9])
        #expect(batch[0] == padded([101, 7592, 102], to: 9, with: 0))
        #expect(batch[2] == padded([101, 102], to: 9, with: 0))
        #expect(batch[1].tokenCount == 9)
        #expect(tokenizer.encode(batch: []).isEmpty)
    }

    @Test("special tokens in text, accents, CJK, punctuation, long words")
    func tokens() throws {
        guard let tokenizer = Shared.bert() else { return }
        #expect(tokenizer.tokenize("Hello [MASK] world[SEP]") == ["hello", "[MASK]", "world", "[SEP]"])
        #expect(tokenizer.tokenize("[mask]") == ["[", "mask", "]"])
        #expect(tokenizer.tokenize("Crème Brûlée") == ["cr", "##eme", "br", "##ule", "##e"])
        #expect(tokenizer.tokenize("中文ok") == ["中", "文", "ok"])
        #expect(tokenizer.tokenize("don't!!") == ["don", "'", "t", "!", "!"])
        #expect(tokenizer.tokenize(String(repeating: "a", count: 101)) == ["[UNK]"])
        #expect(tokenizer.tokenize("nul\u{0}byte\u{200B}") == ["nu", "##lby", "##te"])
    }

    @Test("without lowercasing, case and accents are kept")
    func cased() throws {
        guard let vocab = Assets.require(Assets.miniLM.appendingPathComponent("vocab.txt")) else { return }
        let tokenizer = try WordPieceTokenizer(vocab: vocab, lowercase: false)
        #expect(!tokenizer.stripAccents)
        #expect(tokenizer.tokenize("Hello hello") == ["[UNK]", "hello"])
        let stripping = try WordPieceTokenizer(vocab: vocab, lowercase: false, stripAccents: true)
        #expect(stripping.tokenize("café") == ["cafe"])
    }

    @Test("fromDirectory reads tokenizer_config.json and sentence_bert_config.json")
    func fromDirectory() throws {
        guard Assets.require(Assets.miniLM.appendingPathComponent("vocab.txt")) != nil else { return }
        let tokenizer = try WordPieceTokenizer.fromDirectory(Assets.miniLM)
        #expect(tokenizer.lowercase && tokenizer.stripAccents && tokenizer.tokenizeChineseCharacters)
        #expect(tokenizer.maxLength == 256)  // sentence_bert_config.json's max_seq_length
        let limited = try WordPieceTokenizer.fromDirectory(Assets.miniLM, maxLength: 128, padToMaxLength: true)
        expectAllEqual("BERT fromDirectory", fixture.strings, expected: { padded(fixture.bert[$0], to: 128, with: 0) }, got: limited.encode)

        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.copyItem(at: Assets.miniLM.appendingPathComponent("vocab.txt"), to: folder.appendingPathComponent("vocab.txt"))
        try Data(#"{"do_lower_case": false, "model_max_length": 64, "tokenize_chinese_chars": false}"#.utf8)
            .write(to: folder.appendingPathComponent("tokenizer_config.json"))
        let configured = try WordPieceTokenizer.fromDirectory(folder)
        #expect(!configured.lowercase && !configured.stripAccents && !configured.tokenizeChineseCharacters && configured.maxLength == 64)
    }
}
