/// Where a sample's image comes from.
public enum ImagePayload: Sendable {
    case bytes([UInt8])
    case file(String)
    /// A text-only sample (a sentence list for text distillation).
    case none
}

/// One image-text pair as a source yields it, before decoding.
public struct SampleRecord: Sendable {
    /// "manifest.csv:12" or "train-0003.tar.zst:000123": used in every message about the sample.
    public let origin: String
    public let image: ImagePayload
    /// One or more captions; one is used per epoch.
    public let captions: [String]
    /// A class name for zero-shot evaluation, when the data has one.
    public let label: String?

    public init(origin: String, image: ImagePayload, captions: [String], label: String? = nil) {
        self.origin = origin
        self.image = image
        self.captions = captions
        self.label = label
    }
}

/// A sample that cannot be used, with the file/row or shard/key it came from.
public struct SampleIssue: Error, CustomStringConvertible, Sendable, Equatable {
    public let origin: String
    public let reason: String
    public init(origin: String, reason: String) {
        self.origin = origin
        self.reason = reason
    }
    public var description: String { "\(origin): \(reason)" }
}

/// Parses a caption field that is a plain string, a JSON list of strings, or a JSON object
/// with "caption"/"captions"; returns nil when there is no usable caption.
func captions(fromJSON value: Any?) -> [String]? {
    switch value {
    case let s as String: return [s]
    case let list as [Any]: return list.compactMap { $0 as? String }
    case let object as [String: Any]: return captions(fromJSON: object["captions"] ?? object["caption"] ?? object["text"])
    default: return nil
    }
}
