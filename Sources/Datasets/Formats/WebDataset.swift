import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// WebDataset shards: tar files (plain or `.tar.zst`) whose members are grouped by key
/// (`000123.jpg` — or `.jpeg`, `.png`, `.webp` — + `000123.txt` or `000123.json`), as img2dataset
/// and open_clip write them.
public enum WebDataset {
    /// Members holding a sample's image; the decoder tells JPEG, PNG and WebP apart by content.
    public static let imageExtensions: Set<String> = ["jpg", "jpeg", "png", "webp"]

    /// The most names one pattern may expand to: 1,000,000. The largest public image-text sets
    /// fit (LAION-2B-en in img2dataset's 10,000-sample shards is about 232,000 shards, named
    /// `{000000..231999}.tar`-style; a million names cost ~100 MB for a moment), while a typo
    /// such as `{0..999}{0..9999}` (10 million names) or `{0..99999999999}` is refused before
    /// anything is expanded, instead of growing memory without end. (100,000 would refuse
    /// LAION-2B's one-pattern form.)
    public static let maximumPatternNames = 1_000_000

    /// Expands shard patterns: braces (`train-{0000..0009}.tar.zst`, `{a,b}`), then globs
    /// (`*`, `?`). Relative patterns resolve against `folder`. Throws when a named shard is
    /// missing, nothing matches, or the pattern is malformed or names too many shards.
    public static func shards(_ pattern: String, relativeTo folder: String? = nil) throws -> [String] {
        let match = try self.match(pattern, relativeTo: folder)
        if let missing = match.missing.first {
            throw DataFileError(file: missing, reason: "shard does not exist (from pattern \(pattern))")
        }
        guard !match.files.isEmpty else { throw DataFileError(file: pattern, reason: "matches no shard files") }
        return match.files
    }

    /// What a shard pattern names: the files that exist (sorted) and the ones a brace expansion
    /// names without wildcards that do not. The one implementation of patterns, for the loader
    /// and for recipe checks. Throws for a malformed pattern or one naming more than
    /// `maximumPatternNames` shards.
    public static func match(_ pattern: String, relativeTo folder: String? = nil,
                             fileExists: (String) -> Bool = { FileManager.default.fileExists(atPath: $0) },
                             glob: (String) -> [String] = globFiles) throws -> (files: [String], missing: [String]) {
        let absolute = pattern.hasPrefix("/") || folder == nil ? pattern : "\(folder!)/\(pattern)"
        var files: [String] = [], missing: [String] = []
        for candidate in try expandBraces(absolute) {
            if candidate.contains(where: { "*?[".contains($0) }) {
                files += glob(candidate)
            } else if fileExists(candidate) {
                files.append(candidate)
            } else {
                missing.append(candidate)
            }
        }
        return (files.sorted(), missing)
    }

    /// One piece of a brace pattern.
    private enum BracePart {
        case text(String)
        case choices([String])
        /// `{first..last}`, ascending or descending, zero-padded to `width`.
        case range(first: Int, last: Int, width: Int)

        /// How many strings this part stands for; nil when that does not fit in an `Int`.
        var count: Int? {
            switch self {
            case .text: return 1
            case .choices(let options): return options.count
            case .range(let first, let last, _):
                let (distance, overflow) = last.subtractingReportingOverflow(first)
                guard !overflow, distance.magnitude < UInt(Int.max) else { return nil }
                return Int(distance.magnitude) + 1
            }
        }

        var strings: [String] {
            switch self {
            case .text(let text): return [text]
            case .choices(let options): return options
            case .range(let first, let last, let width):
                return stride(from: first, through: last, by: first <= last ? 1 : -1).map { width > 0 ? String(format: "%0\(width)ld", $0) : String($0) }
            }
        }
    }

    /// Splits a pattern into text and brace groups, refusing what cannot be meant.
    private static func braceParts(_ s: String) throws -> [BracePart] {
        func malformed(_ why: String) -> DataFileError {
            DataFileError(file: s, reason: "\(why); a shard pattern takes ranges such as {0000..0099} and lists such as {a,b}")
        }
        var parts: [BracePart] = []
        var rest = Substring(s)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            let body = rest[rest.index(after: open)..<close]
            if body.contains("{") { throw malformed("nested braces are not supported") }
            parts.append(.text(String(rest[..<open])))
            if body.contains(",") {
                parts.append(.choices(body.components(separatedBy: ",")))
            } else if body.contains("..") {
                let bounds = body.components(separatedBy: "..")
                let isInteger = { (text: String) in !text.isEmpty && text.drop { $0 == "-" }.allSatisfy(\.isASCII) && Int(text) != nil }
                guard bounds.count == 2, isInteger(bounds[0]), isInteger(bounds[1]) else {
                    let digitsOnly = bounds.count == 2 && bounds.allSatisfy { !$0.isEmpty && $0.allSatisfy(\.isNumber) }
                    throw malformed("{\(body)} is not a range of integers\(digitsOnly ? " that fit in 64 bits" : "")")
                }
                // Zero padding to the first bound's width when it has a leading zero ({08..10}).
                let padded = bounds[0].drop { $0 == "-" }.hasPrefix("0")
                parts.append(.range(first: Int(bounds[0])!, last: Int(bounds[1])!, width: padded ? bounds[0].count : 0))
            } else {
                parts.append(.choices([String(body)]))
            }
            rest = rest[rest.index(after: close)...]
        }
        parts.append(.text(String(rest)))   // an unmatched brace is text
        return parts
    }

    /// How many names a pattern's braces expand to, counted without expanding them; nil when
    /// that does not fit in an `Int`.
    public static func braceExpansionCount(_ s: String) throws -> Int? {
        var total = 1
        for part in try braceParts(s) {
            guard let count = part.count else { return nil }
            let (product, overflow) = total.multipliedReportingOverflow(by: count)
            if overflow { return nil }
            total = product
        }
        return total
    }

    /// Shell-style brace expansion: `a{1..3}b` → a1b a2b a3b (a first bound with a leading zero
    /// sets the width: `{08..10}` → 08 09 10; `{3..1}` counts down), `{x,y}` → x y; several groups
    /// multiply out. The names are counted first: more than `maximumPatternNames` is an error
    /// (nothing is expanded), and so are nested braces and ranges of anything but integers.
    public static func expandBraces(_ s: String) throws -> [String] {
        guard let count = try braceExpansionCount(s), count <= maximumPatternNames else {
            let many = try braceExpansionCount(s).map { "\(counted($0, "name", number: { Self.grouped($0) }))" } ?? "more than 2^63 names"
            throw DataFileError(file: s, reason: "expands to \(many), more than the \(grouped(maximumPatternNames)) shards one pattern may name; check its braces (a range is {0000..0099}, a list {a,b})")
        }
        var names = [""]
        for part in try braceParts(s) {
            let strings = part.strings
            names = names.flatMap { head in strings.map { head + $0 } }
        }
        return names
    }

    /// 10000000 → "10,000,000".
    private static func grouped(_ n: Int) -> String {
        let digits = String(n.magnitude)
        var out = n < 0 ? "-" : ""
        for (i, c) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return out
    }

    /// Files matching a wildcard pattern (`*`, `?`, `[…]`), via the C library's glob().
    public static func globFiles(_ pattern: String) -> [String] {
        var matches = glob_t()
        defer { globfree(&matches) }
        guard glob(pattern, 0, nil, &matches) == 0 else { return [] }
        return (0..<Int(matches.gl_pathc)).compactMap { i in matches.gl_pathv[i].map { String(cString: $0) } }
    }

    /// Splits a member name into (key, extension) as webdataset does: the key runs to the first
    /// dot of the file name.
    static func split(_ name: String) -> (key: String, ext: String) {
        let slash = name.lastIndex(of: "/").map { name.index(after: $0) } ?? name.startIndex
        guard let dot = name[slash...].firstIndex(of: ".") else { return (name, "") }
        return (String(name[..<dot]), String(name[name.index(after: dot)...]).lowercased())
    }
}

/// Reads one shard as a stream of samples, never holding more than one sample in memory (and
/// of it only the members a sample uses: images, `.txt`, `.json`, `.cls`/`.label`).
/// Bad samples (no image, no caption, an empty member) come back as `.failure` with the shard
/// and key; a damaged archive is thrown as a `DataFileError` naming the shard and member.
public final class ShardReader {
    /// The most one sample's kept members may add up to: an image and its captions at
    /// `TarReader.maximumMemberSize` each. A key repeated over many members (a shard whose
    /// members are not grouped by sample) is refused rather than held whole.
    public static let maximumSampleSize = 2 * TarReader.maximumMemberSize

    private let tar: TarReader
    private let path: String
    private var pending: TarMember?
    /// An error met after a complete sample, thrown by the next call.
    private var pendingError: Error?

    public init(path: String) throws {
        self.path = path
        tar = TarReader(try openByteStream(path), path: path)
    }

    /// Whether a member with this extension is part of a sample as this reader builds it.
    static func isUsed(extension ext: String) -> Bool {
        WebDataset.imageExtensions.contains(ext) || ["txt", "json", "cls", "label"].contains(ext)
    }

    private func nextMember() throws -> TarMember? {
        try tar.next(loading: { Self.isUsed(extension: WebDataset.split($0).ext) })
    }

    /// The next sample; nil at the end. A damaged archive throws `DataFileError` (the rest of the
    /// shard is unreadable, and the sample being read is never returned in part); a bad sample
    /// is returned as a failure and reading goes on.
    public func next() throws -> Result<SampleRecord, SampleIssue>? {
        if let error = pendingError {
            pendingError = nil
            throw error
        }
        guard let first = try pending ?? nextMember() else { return nil }
        pending = nil
        let key = WebDataset.split(first.name).key
        var sample = SampleParts(origin: "\(path):\(key)")
        sample.add(first)
        do {
            while let member = try nextMember() {
                if WebDataset.split(member.name).key == key {
                    sample.add(member)
                } else {
                    pending = member
                    break
                }
            }
        } catch {
            // Damage in a member of the next sample (its header read whole, so its key known):
            // this sample is complete — return it, and the error next time. Otherwise (damage
            // within this sample's key, or a header cut short) it may lack a member: lost.
            guard let failed = tar.failedMember, WebDataset.split(failed).key != key else { throw error }
            pendingError = error
        }
        do {
            return .success(try sample.record())
        } catch let issue as SampleIssue {
            return .failure(issue)
        }
    }
}

/// The members of one sample as they arrive.
private struct SampleParts {
    let origin: String
    var image: (name: String, bytes: [UInt8])?
    var texts: [(name: String, bytes: [UInt8])] = []
    var json: (name: String, bytes: [UInt8])?
    var label: String?
    var kept = 0
    var tooLarge = false

    init(origin: String) { self.origin = origin }

    mutating func add(_ member: TarMember) {
        let ext = WebDataset.split(member.name).ext
        guard ShardReader.isUsed(extension: ext), !tooLarge else { return }
        kept += member.data.count
        if kept > ShardReader.maximumSampleSize {
            tooLarge = true
            image = nil
            texts = []
            json = nil
            return
        }
        if WebDataset.imageExtensions.contains(ext) {
            if let old = image { kept -= old.bytes.count }
            image = (member.name, member.data)
        } else if ext == "txt" {
            texts.append((member.name, member.data))
        } else if ext == "json" {
            if let old = json { kept -= old.bytes.count }
            json = (member.name, member.data)
        } else {   // cls, label
            label = String(decoding: member.data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    func record() throws -> SampleRecord {
        if tooLarge {
            throw SampleIssue(origin: origin, reason: "its members add up to more than \(TarReader.describe(bytes: ShardReader.maximumSampleSize)); a sample is one image and its captions (are the shard's members grouped by key?)")
        }
        guard let image else { throw SampleIssue(origin: origin, reason: "has no image member (.jpg, .jpeg, .png or .webp)") }
        guard !image.bytes.isEmpty else { throw SampleIssue(origin: origin, reason: "its image member \(image.name) is empty (0 bytes)") }
        var captionList = texts.map { String(decoding: $0.bytes, as: UTF8.self) }
        var label = self.label
        var jsonProblem: String?
        if let json {
            let parsed = try? JSONSerialization.jsonObject(with: Data(json.bytes), options: [.fragmentsAllowed])
            if parsed == nil {
                jsonProblem = "its \(json.name) is not valid JSON"
            } else if let c = captions(fromJSON: parsed) {
                if texts.isEmpty { captionList = c }
            } else {
                jsonProblem = "its \(json.name) has no caption (\"caption\", \"captions\" or \"text\")"
            }
            label = (parsed as? [String: Any])?["label"] as? String ?? label
        }
        let usable = captionList.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
        guard !usable.isEmpty else {
            let reason: String
            if !texts.isEmpty {
                reason = "its caption member\(texts.count == 1 ? "" : "s") \(texts.map(\.name).joined(separator: ", ")) \(texts.count == 1 ? "is" : "are") empty"
            } else if let jsonProblem {
                reason = jsonProblem
            } else {
                reason = "has no caption (.txt, or .json with a caption)"
            }
            throw SampleIssue(origin: origin, reason: reason)
        }
        return SampleRecord(origin: origin, image: .bytes(image.bytes), captions: usable, label: label)
    }
}
