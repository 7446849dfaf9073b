import Foundation

/// Token ids of one text and which of them are real tokens (1) rather than padding (0).
public struct Encoding: Sendable, Equatable, Hashable {
    public var ids: [Int]
    public var attentionMask: [Int]

    public init(ids: [Int], attentionMask: [Int]) {
        self.ids = ids
        self.attentionMask = attentionMask
    }

    /// Real (non-padding) tokens, special tokens included.
    public var tokenCount: Int { attentionMask.reduce(0, +) }
}

/// A text tokenizer producing model inputs.
public protocol TextTokenizer: Sendable {
    /// The ids and attention mask of one text, with special tokens, truncated (and padded where the
    /// tokenizer pads) to `contextLength`.
    func encode(_ text: String) -> Encoding
    /// The encodings of several texts (see each tokenizer for how a batch is padded).
    func encode(batch: [String]) -> [Encoding]
    /// The most tokens an encoding holds, special tokens included.
    var contextLength: Int { get }
    /// The id written in padded positions.
    var padTokenId: Int { get }
}

extension TextTokenizer {
    public func encode(batch: [String]) -> [Encoding] { batch.map { encode($0) } }
}

/// A tokenizer file that is missing or malformed; `description` starts with the file's name.
public struct TokenizerError: Error, Equatable, CustomStringConvertible, LocalizedError {
    /// The file's name, e.g. "merges.txt".
    public let file: String
    /// The file's full path.
    public let path: String
    /// The 1-based line the problem is on, for line-based files.
    public let line: Int?
    public let reason: String

    public init(file url: URL, line: Int? = nil, _ reason: String) {
        self.file = url.lastPathComponent
        self.path = url.path
        self.line = line
        self.reason = reason
    }

    public var description: String {
        "\(file)\(line.map { " line \($0)" } ?? ""): \(reason) (\(path))"
    }

    public var errorDescription: String? { description }
}

/// Adds the start and end tokens around `content`, truncating it so the result holds at most
/// `length` ids (the end token is always kept, as transformers does), and pads to `padTo`.
func assemble(_ content: [Int], start: Int, end: Int, length: Int, padTo: Int?, padId: Int) -> Encoding {
    var ids = [start]
    ids.reserveCapacity(max(padTo ?? 0, min(content.count + 2, length)))
    ids += content.prefix(max(0, length - 2))
    ids.append(end)
    var mask = [Int](repeating: 1, count: ids.count)
    if let padTo, padTo > ids.count {
        let extra = padTo - ids.count
        ids += repeatElement(padId, count: extra)
        mask += repeatElement(0, count: extra)
    }
    return Encoding(ids: ids, attentionMask: mask)
}

/// Pads every encoding to the longest one (transformers' `padding="longest"`).
func padToLongest(_ encodings: [Encoding], padId: Int) -> [Encoding] {
    let longest = encodings.map(\.ids.count).max() ?? 0
    return encodings.map { encoding in
        var padded = encoding
        let extra = longest - encoding.ids.count
        padded.ids += repeatElement(padId, count: extra)
        padded.attentionMask += repeatElement(0, count: extra)
        return padded
    }
}
