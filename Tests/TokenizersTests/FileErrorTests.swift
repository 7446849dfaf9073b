import Foundation
import Testing
@testable import Tokenizers

/// Missing and malformed files throw errors that name the file (and line).
@Suite("File errors")
struct FileErrorTests {
    /// A tiny valid CLIP vocabulary: the byte symbols, "ab", "ab</w>" and the special tokens.
    static func writeTinyCLIP(to folder: URL, merges: String = "#version: 0.2\na b\na b</w>\n") throws {
        var tokens = ByteLevel.orderedPairs.map { String(Character($0.1)) }
        tokens += tokens.map { $0 + "</w>" }
        tokens += ["ab", "ab</w>", "<|startoftext|>", "<|endoftext|>"]
        let vocab = Dictionary(uniqueKeysWithValues: tokens.enumerated().map { ($1, $0) })
        try JSONSerialization.data(withJSONObject: vocab).write(to: folder.appendingPathComponent("vocab.json"))
        try Data(merges.utf8).write(to: folder.appendingPathComponent("merges.txt"))
    }

    func clipError(_ folder: URL) -> TokenizerError? {
        #expect(throws: TokenizerError.self) {
            try CLIPTokenizer(vocabJSON: folder.appendingPathComponent("vocab.json"), merges: folder.appendingPathComponent("merges.txt"))
        }
    }

    @Test("a tiny vocabulary loads and merges")
    func tinyVocabulary() throws {
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        try Self.writeTinyCLIP(to: folder)
        let tokenizer = try CLIPTokenizer(vocabJSON: folder.appendingPathComponent("vocab.json"), merges: folder.appendingPathComponent("merges.txt"))
        #expect(tokenizer.tokenize("AB ab a") == ["ab</w>", "ab</w>", "a</w>"])
        #expect(tokenizer.startTokenId == 514 && tokenizer.endTokenId == 515)
    }

    @Test("missing vocab.json")
    func missingVocab() throws {
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        try Self.writeTinyCLIP(to: folder)
        try FileManager.default.removeItem(at: folder.appendingPathComponent("vocab.json"))
        let error = clipError(folder)
        #expect(error?.file == "vocab.json")
        #expect(error?.description.hasPrefix("vocab.json: no such file") == true)
        #expect(error?.description.contains(folder.path) == true)
    }

    @Test("corrupt vocab.json", arguments: ["[1, 2, 3]", "{\"a\": \"b\"}", "{not json", ""])
    func corruptVocab(contents: String) throws {
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        try Self.writeTinyCLIP(to: folder)
        try Data(contents.utf8).write(to: folder.appendingPathComponent("vocab.json"))
        let error = clipError(folder)
        #expect(error?.description.hasPrefix("vocab.json: not a JSON object of token → id") == true, "\(String(describing: error))")
    }

    @Test("vocab.json without the byte symbols")
    func incompleteVocab() throws {
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        try Self.writeTinyCLIP(to: folder)
        try Data(#"{"a": 0, "b": 1}"#.utf8).write(to: folder.appendingPathComponent("vocab.json"))
        let error = clipError(folder)
        #expect(error?.file == "vocab.json" && error?.reason.contains("byte symbol") == true, "\(String(describing: error))")
    }

    @Test("merges.txt problems name the line", arguments: [
        ("#version: 0.2\na b\nab\n", 3, "expected two symbols"),
        ("#version: 0.2\na b c\n", 2, "expected two symbols"),
        ("a b\nx yz\n", 2, #"symbol "yz" is not in vocab.json"#),
        ("a b\nb a\n", 2, #"merged token "ba" is not in vocab.json"#),
    ])
    func corruptMerges(contents: String, line: Int, reason: String) throws {
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        try Self.writeTinyCLIP(to: folder, merges: contents)
        let error = clipError(folder)
        #expect(error?.file == "merges.txt" && error?.line == line)
        #expect(error?.description.hasPrefix("merges.txt line \(line): \(reason)") == true, "\(String(describing: error))")
    }

    @Test("missing, non-gzip and truncated open_clip merges files")
    func corruptGzip() throws {
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("bpe_simple_vocab_16e6.txt.gz")
        func error() -> TokenizerError? { #expect(throws: TokenizerError.self) { try CLIPTokenizer(openCLIPMergesGz: url) } }

        #expect(error()?.description.hasPrefix("bpe_simple_vocab_16e6.txt.gz: no such file") == true)
        try Data("plain text".utf8).write(to: url)
        #expect(error()?.description.hasPrefix("bpe_simple_vocab_16e6.txt.gz: not a valid gzip file") == true)

        guard let real = Shared.openCLIP() else { return }
        try Data(contentsOf: real).prefix(50_000).write(to: url)
        #expect(error()?.description.hasPrefix("bpe_simple_vocab_16e6.txt.gz: not a valid gzip file") == true)
    }

    @Test("missing vocab.txt, and vocab.txt without [UNK]")
    func corruptWordPieceVocab() throws {
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("vocab.txt")
        let missing = #expect(throws: TokenizerError.self) { try WordPieceTokenizer(vocab: url) }
        #expect(missing?.description.hasPrefix("vocab.txt: no such file") == true)
        let fromFolder = #expect(throws: TokenizerError.self) { try WordPieceTokenizer.fromDirectory(folder) }
        #expect(fromFolder?.file == "vocab.txt")

        try Data("[PAD]\n[CLS]\n[SEP]\nhello\n".utf8).write(to: url)
        let noUnknown = #expect(throws: TokenizerError.self) { try WordPieceTokenizer(vocab: url) }
        #expect(noUnknown?.description.hasPrefix("vocab.txt: no [UNK], [CLS] or [SEP] token") == true)

        try Data("[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\nhello\r\n##s\r\n".utf8).write(to: url)
        let tokenizer = try WordPieceTokenizer(vocab: url)
        #expect(tokenizer.encode("Hellos HI").ids == [2, 4, 5, 1, 3])

        try Data("{".utf8).write(to: folder.appendingPathComponent("tokenizer_config.json"))
        let badConfig = #expect(throws: TokenizerError.self) { try WordPieceTokenizer.fromDirectory(folder) }
        #expect(badConfig?.file == "tokenizer_config.json")
    }
}
