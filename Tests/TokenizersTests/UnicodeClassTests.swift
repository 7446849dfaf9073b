import Foundation
import Testing
@testable import Tokenizers

/// Every code point's class against the reference libraries' own tables
/// (`unicode_classes.json`, probed by Scripts/fixtures/tokenizer_fixtures.py).
@Suite("Unicode classes")
struct UnicodeClassTests {
    static let classes: [String: [[UInt32]]] = {
        let url = fixtureURL("unicode_classes.json")
        do {
            return try JSONDecoder().decode([String: [[UInt32]]].self, from: Data(contentsOf: url))
        } catch {
            fatalError("cannot read \(url.path) (\(error)): run Scripts/fixtures/tokenizer_fixtures.py")
        }
    }()

    static let cases: [(name: String, predicate: @Sendable (Unicode.Scalar) -> Bool)] = [
        ("clip_letter", { UnicodeText.clipClass($0) == .letter }),
        ("clip_number", { UnicodeText.clipClass($0) == .number }),
        ("clip_space", { UnicodeText.clipClass($0) == .space }),
        ("bert_control", UnicodeText.isBertRemoved),
        ("bert_whitespace", UnicodeText.isBertWhitespace),
        ("bert_punctuation", UnicodeText.isBertPunctuation),
        ("bert_chinese", UnicodeText.isBertChineseCharacter),
        // Singletons that survive NFD unchanged and are dropped by accent stripping.
        ("bert_stripped_mark", { scalar in
            UnicodeText.isBertStrippedMark(scalar) && UnicodeText.nfd([scalar]) == [scalar]
        }),
    ]

    @Test("each class matches the reference on every code point", arguments: cases.map(\.name))
    func codePoints(name: String) throws {
        let ranges = try #require(Self.classes[name], "no \(name) in unicode_classes.json")
        let predicate = try #require(Self.cases.first { $0.name == name }).predicate
        var expected = [Bool](repeating: false, count: 0x110000)
        for range in ranges where range.count == 2 {
            for value in range[0]...range[1] { expected[Int(value)] = true }
        }
        var differing: [String] = []
        for value in UInt32(0)..<0x110000 {
            guard let scalar = Unicode.Scalar(value) else { continue }
            if predicate(scalar) != expected[Int(value)] { differing.append(String(value, radix: 16, uppercase: true)) }
        }
        #expect(differing.isEmpty, "\(name): \(differing.count) code points differ, e.g. U+\(differing.prefix(12).joined(separator: " U+"))")
    }

    @Test("NFC and NFD with the reference's exceptions")
    func normalization() {
        #expect(UnicodeText.nfc(Array("e\u{301}".unicodeScalars)) == ["\u{E9}"])
        #expect(UnicodeText.nfd(Array("\u{E9}".unicodeScalars)) == ["e", "\u{301}"])
        #expect(UnicodeText.nfc(["\u{11935}", "\u{11930}"]) == ["\u{11935}", "\u{11930}"])
        #expect(UnicodeText.nfd(["a", "\u{11938}", "\u{E9}"]) == ["a", "\u{11938}", "e", "\u{301}"])
        #expect(UnicodeText.lowercase(Array("ΟΔΟΣ İ".unicodeScalars)) == Array("οδοσ i\u{307}".unicodeScalars))
    }
}
