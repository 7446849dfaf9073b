import Foundation
import Testing
@testable import Tokenizers

@Suite("CLIPTokenizer")
struct CLIPTokenizerTests {
    let fixture = TokenizerFixture.shared

    @Test("matches CLIPTokenizerFast on every fixture string (open_clip's merges file)")
    func fixtureFromOpenCLIPFile() throws {
        guard let tokenizer = Shared.clip() else { return }
        #expect(fixture.strings.count >= 300)
        #expect(tokenizer.vocabularySize == 49408 && tokenizer.startTokenId == 49406 && tokenizer.endTokenId == 49407)
        expectAllEqual("CLIP (open_clip file)", fixture.strings, expected: { padded(fixture.clip[$0], to: 77, with: 49407) },
                       got: tokenizer.encode)
    }

    @Test("matches CLIPTokenizerFast on every fixture string (Hugging Face vocab.json + merges.txt)")
    func fixtureFromHuggingFaceFiles() throws {
        guard let gz = Shared.openCLIP() else { return }
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        try writeHuggingFaceCLIPFiles(from: gz, to: folder)
        let tokenizer = try CLIPTokenizer(vocabJSON: folder.appendingPathComponent("vocab.json"),
                                          merges: folder.appendingPathComponent("merges.txt"))
        #expect(tokenizer.padding == .endToken && tokenizer.padTokenId == 49407 && tokenizer.contextLength == 77)
        expectAllEqual("CLIP (vocab.json + merges.txt)", fixture.strings, expected: { padded(fixture.clip[$0], to: 77, with: 49407) },
                       got: tokenizer.encode)
    }

    @Test("open_clip mode pads with zeros and equals open_clip.tokenize where open_clip agrees with transformers")
    func openCLIPZeroPadding() throws {
        guard let gz = Shared.openCLIP() else { return }
        let tokenizer = try CLIPTokenizer(openCLIPMergesGz: gz)
        #expect(tokenizer.padding == .zero && tokenizer.padTokenId == 0)
        let agreeing = fixture.strings.indices.filter { fixture.open_clip[$0] == nil }
        #expect(agreeing.count > 300)
        expectAllEqual("CLIP zero padding", agreeing.map { fixture.strings[$0] },
                       expected: { padded(fixture.clip[agreeing[$0]], to: 77, with: 0) }, got: tokenizer.encode)
    }

    @Test("every encoding is 77 long, starts and ends with the special tokens, and long texts truncate")
    func truncationAndPadding() throws {
        guard let tokenizer = Shared.clip() else { return }
        var truncated = 0
        for string in fixture.strings {
            let encoding = tokenizer.encode(string)
            let count = encoding.tokenCount
            #expect(encoding.ids.count == 77 && encoding.attentionMask.count == 77)
            #expect(encoding.attentionMask == Array(repeating: 1, count: count) + Array(repeating: 0, count: 77 - count))
            #expect(encoding.ids.first == 49406 && encoding.ids[count - 1] == 49407)
            #expect(encoding.ids[count...].allSatisfy { $0 == 49407 })
            if tokenizer.contentIds(string).count > 75 {
                truncated += 1
                #expect(count == 77 && encoding.ids[76] == 49407)
            }
        }
        #expect(truncated >= 5, "the fixture should hold texts longer than the context")
    }

    @Test("a shorter context keeps the leading tokens and a final end token", arguments: [2, 3, 16, 40])
    func customContextLength(length: Int) throws {
        guard let gz = Shared.openCLIP() else { return }
        let tokenizer = try CLIPTokenizer(openCLIPMergesGz: gz, contextLength: length, padding: .endToken)
        for (index, string) in fixture.strings.enumerated() {
            let content = Array(fixture.clip[index].dropFirst().dropLast())
            let expected = padded([49406] + content.prefix(length - 2) + [49407], to: length, with: 49407)
            #expect(tokenizer.encode(string) == expected, "\(string.debugDescription)")
        }
    }

    @Test("special-token literals: exact ones are special ids, other spellings are text")
    func specialTokenLiterals() throws {
        guard let tokenizer = Shared.clip() else { return }
        func ids(_ text: String) -> [Int] { Array(tokenizer.encode(text).ids.prefix(tokenizer.encode(text).tokenCount)) }
        #expect(ids("a<|endoftext|>b") == [49406, 320, 49407, 321, 49407])
        #expect(ids("<|startoftext|>") == [49406, 49406, 49407])
        // Lowercased into the literal, then split "<|", "endoftext", "|>" by the byte-level regex.
        #expect(tokenizer.tokenize("<|ENDOFTEXT|>") == ["<", "|</w>", "endof", "text</w>", "|", "></w>"])
        #expect(tokenizer.tokenize("<|EndOfText|>>>") == ["<", "|</w>", "endof", "text</w>", "|", "></w>", ">></w>"])
    }

    @Test("tokens: lowercase, contractions, digits one by one, NFC")
    func tokens() throws {
        guard let tokenizer = Shared.clip() else { return }
        #expect(tokenizer.tokenize("A photo of a CAT'S tail") == ["a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>", "'s</w>", "tail</w>"])
        #expect(tokenizer.tokenize("2024") == ["2</w>", "0</w>", "2</w>", "4</w>"])
        #expect(tokenizer.tokenize("cafe\u{301}") == tokenizer.tokenize("caf\u{E9}"))
        #expect(tokenizer.tokenize("  \t\n ").isEmpty)
    }

    @Test("batches equal single encodings, also from concurrent tasks")
    func batchAndConcurrency() async throws {
        guard let gz = Shared.openCLIP() else { return }
        let tokenizer = try CLIPTokenizer(openCLIPMergesGz: gz, padding: .endToken)  // cold cache
        let strings = fixture.strings
        let expected = strings.indices.map { padded(fixture.clip[$0], to: 77, with: 49407) }
        let results = await withTaskGroup(of: [Encoding].self) { group in
            for _ in 0..<4 { group.addTask { tokenizer.encode(batch: strings) } }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.count == 4)
        for result in results { #expect(result == expected) }
    }

    @Test("fromDirectory reads model_max_length and pad_token")
    func fromDirectory() throws {
        guard let gz = Shared.openCLIP() else { return }
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        try writeHuggingFaceCLIPFiles(from: gz, to: folder)

        let plain = try CLIPTokenizer.fromDirectory(folder)
        #expect(plain.contextLength == 77 && plain.padding == .endToken)

        try Data(#"{"model_max_length": 1000000000000000019884624838656, "pad_token": "<|endoftext|>"}"#.utf8)
            .write(to: folder.appendingPathComponent("tokenizer_config.json"))
        #expect(try CLIPTokenizer.fromDirectory(folder).contextLength == 77)

        try Data(#"{"model_max_length": 32, "pad_token": "<|endoftext|>"}"#.utf8).write(to: folder.appendingPathComponent("tokenizer_config.json"))
        try Data(#"{"pad_token": {"content": "!", "lstrip": false}}"#.utf8).write(to: folder.appendingPathComponent("special_tokens_map.json"))
        let configured = try CLIPTokenizer.fromDirectory(folder)
        #expect(configured.contextLength == 32 && configured.padding == .zero)
        let encoding = configured.encode("a photo")
        #expect(encoding.ids == [49406, 320, 1125, 49407] + Array(repeating: 0, count: 28))

        let overridden = try CLIPTokenizer.fromDirectory(folder, contextLength: 10, padding: .id(7))
        #expect(overridden.contextLength == 10 && overridden.padTokenId == 7)

        try Data(#"{"pad_token": "<pad>"}"#.utf8).write(to: folder.appendingPathComponent("special_tokens_map.json"))
        let error = #expect(throws: TokenizerError.self) { try CLIPTokenizer.fromDirectory(folder) }
        #expect(error?.file == "special_tokens_map.json")
        #expect(error?.description.hasPrefix(#"special_tokens_map.json: pad_token "<pad>" is not in vocab.json"#) == true)
    }
}
