/// Special tokens written literally in the input, found in the raw text before any normalization,
/// as transformers does for added tokens with `normalized: false` (so "[CLS]" in a sentence is the
/// [CLS] id, while "[cls]" is ordinary text).
struct SpecialTokenMatcher: Sendable {
    struct Token: Sendable {
        let scalars: [Unicode.Scalar]
        let id: Int
    }

    enum Segment: Equatable {
        case text(ArraySlice<Unicode.Scalar>)
        case special(Int)
    }

    /// Longest first, so the leftmost match is also the longest.
    private let tokens: [Token]
    private let firstScalars: Set<Unicode.Scalar>

    init(_ tokens: [(text: String, id: Int)]) {
        self.tokens = tokens
            .filter { !$0.text.isEmpty }
            .map { Token(scalars: Array($0.text.unicodeScalars), id: $0.id) }
            .sorted { $0.scalars.count > $1.scalars.count }
        firstScalars = Set(self.tokens.compactMap(\.scalars.first))
    }

    /// `scalars` cut into text and special tokens, in order; empty text segments are left out.
    func split(_ scalars: [Unicode.Scalar]) -> [Segment] {
        var segments: [Segment] = []
        var textStart = 0
        var index = 0
        while index < scalars.count {
            if firstScalars.contains(scalars[index]), let token = tokens.first(where: { matches($0.scalars, scalars, at: index) }) {
                if index > textStart { segments.append(.text(scalars[textStart..<index])) }
                segments.append(.special(token.id))
                index += token.scalars.count
                textStart = index
            } else {
                index += 1
            }
        }
        if scalars.count > textStart { segments.append(.text(scalars[textStart...])) }
        return segments
    }

    private func matches(_ token: [Unicode.Scalar], _ scalars: [Unicode.Scalar], at index: Int) -> Bool {
        index + token.count <= scalars.count && scalars[index..<(index + token.count)].elementsEqual(token)
    }
}
