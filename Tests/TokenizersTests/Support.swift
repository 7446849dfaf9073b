import Foundation
import Testing
@testable import Tokenizers

/// Assets that Scripts/bootstrap downloads into .deps/assets (never committed). These tests keep
/// their own helpers rather than TestSupport's, which links libtorch.
enum Assets {
    /// The repository root, from this source file's location (Tests/TokenizersTests/…).
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let directory = repositoryRoot.appendingPathComponent(".deps/assets")
    static let openCLIPMerges = directory.appendingPathComponent("bpe_simple_vocab_16e6.txt.gz")
    static let miniLM = directory.appendingPathComponent("all-MiniLM-L6-v2")

    /// `url` if it exists; otherwise records an issue (a missing asset must not pass silently).
    static func require(_ url: URL, sourceLocation: SourceLocation = #_sourceLocation) -> URL? {
        if FileManager.default.fileExists(atPath: url.path) { return url }
        Issue.record("missing asset \(url.path): run Scripts/bootstrap", sourceLocation: sourceLocation)
        return nil
    }
}

/// The reference outputs of `Scripts/fixtures/tokenizer_fixtures.py`.
struct TokenizerFixture: Decodable, Sendable {
    let versions: [String: String]
    let strings: [String]
    /// CLIPTokenizerFast input_ids without padding (the mask is all ones there).
    let clip: [[Int]]
    /// open_clip.tokenize's ids where they differ from `clip`, else nil.
    let open_clip: [[Int]?]
    /// BertTokenizerFast input_ids at max_length 128, without padding.
    let bert: [[Int]]

    static let shared: TokenizerFixture = {
        let url = fixtureURL("tokenizers.json")
        do {
            return try JSONDecoder().decode(TokenizerFixture.self, from: Data(contentsOf: url))
        } catch {
            fatalError("cannot read \(url.path) (\(error)): run Scripts/fixtures/tokenizer_fixtures.py")
        }
    }()
}

func fixtureURL(_ name: String) -> URL {
    URL(fileURLWithPath: Bundle.module.bundlePath).appendingPathComponent("Fixtures").appendingPathComponent(name)
}

/// A fresh empty folder under the system temporary directory.
func scratchFolder(_ label: String = #function) throws -> URL {
    let safe = label.filter { $0.isLetter || $0.isNumber }
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("tokenizers-\(safe)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Compares encodings of every fixture string and records the first mismatch in full.
func expectAllEqual(_ name: String, _ strings: [String], expected: (Int) -> Encoding, got: (String) -> Encoding,
                    sourceLocation: SourceLocation = #_sourceLocation) {
    var mismatches = 0
    for (index, string) in strings.enumerated() {
        let want = expected(index)
        let have = got(string)
        guard want != have else { continue }
        mismatches += 1
        if mismatches == 1 {
            Issue.record("""
                \(name): first mismatch at fixture string #\(index) \(string.debugDescription) \
                (scalars \(string.unicodeScalars.map { String($0.value, radix: 16) }))
                expected ids \(want.ids)
                     got ids \(have.ids)
                expected mask \(want.attentionMask)
                     got mask \(have.attentionMask)
                """, sourceLocation: sourceLocation)
        }
    }
    #expect(mismatches == 0, "\(name): \(mismatches) of \(strings.count) fixture strings differ", sourceLocation: sourceLocation)
}

/// `ids` padded to `length` with `padId`, mask 1 for the real ids.
func padded(_ ids: [Int], to length: Int, with padId: Int) -> Encoding {
    Encoding(ids: ids + Array(repeating: padId, count: max(0, length - ids.count)),
             attentionMask: Array(repeating: 1, count: ids.count) + Array(repeating: 0, count: max(0, length - ids.count)))
}

/// Tokenizers loaded once per test run. Every accessor checks its asset again, so each test that
/// needs a missing asset records its own issue.
enum Shared {
    private static let clipResult = Result { () throws(TokenizerError) in
        try CLIPTokenizer(openCLIPMergesGz: Assets.openCLIPMerges, padding: .endToken)
    }
    private static let bertResult = Result { () throws(TokenizerError) in
        try WordPieceTokenizer(vocab: Assets.miniLM.appendingPathComponent("vocab.txt"), maxLength: 128)
    }

    /// open_clip's merges file, if present.
    static func openCLIP(sourceLocation: SourceLocation = #_sourceLocation) -> URL? {
        Assets.require(Assets.openCLIPMerges, sourceLocation: sourceLocation)
    }

    /// From open_clip's merges file, with transformers' end-token padding.
    static func clip(sourceLocation: SourceLocation = #_sourceLocation) -> CLIPTokenizer? {
        guard Assets.require(Assets.openCLIPMerges, sourceLocation: sourceLocation) != nil else { return nil }
        return loaded(clipResult, sourceLocation)
    }

    /// all-MiniLM-L6-v2's vocab.txt, lowercasing, max length 128, no padding.
    static func bert(sourceLocation: SourceLocation = #_sourceLocation) -> WordPieceTokenizer? {
        guard Assets.require(Assets.miniLM.appendingPathComponent("vocab.txt"), sourceLocation: sourceLocation) != nil else { return nil }
        return loaded(bertResult, sourceLocation)
    }

    private static func loaded<T>(_ result: Result<T, TokenizerError>, _ sourceLocation: SourceLocation) -> T? {
        switch result {
        case .success(let tokenizer): return tokenizer
        case .failure(let error):
            Issue.record("cannot load the tokenizer: \(error)", sourceLocation: sourceLocation)
            return nil
        }
    }
}

/// Writes Hugging Face's vocab.json and merges.txt for open_clip's merges (the library's own function).
func writeHuggingFaceCLIPFiles(from gz: URL, to folder: URL) throws {
    try CLIPTokenizer.writeHuggingFaceFiles(fromOpenCLIPMerges: gz, to: folder)
}
