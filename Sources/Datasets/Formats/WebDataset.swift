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

    /// Expands shard patterns: braces (`train-{0000..0009}.tar.zst`, `{a,b}`), then globs
    /// (`*`, `?`). Relative patterns resolve against `folder`. Throws when a named shard is
    /// missing or nothing matches.
    public static func shards(_ pattern: String, relativeTo folder: String? = nil) throws -> [String] {
        let match = self.match(pattern, relativeTo: folder)
        if let missing = match.missing.first {
            throw DataFileError(file: missing, reason: "shard does not exist (from pattern \(pattern))")
        }
        guard !match.files.isEmpty else { throw DataFileError(file: pattern, reason: "matches no shard files") }
        return match.files
    }

    /// What a shard pattern names: the files that exist (sorted) and the ones a brace expansion
    /// names without wildcards that do not. The one implementation of patterns, for the loader
    /// and for recipe checks.
    public static func match(_ pattern: String, relativeTo folder: String? = nil,
                             fileExists: (String) -> Bool = { FileManager.default.fileExists(atPath: $0) },
                             glob: (String) -> [String] = globFiles) -> (files: [String], missing: [String]) {
        let absolute = pattern.hasPrefix("/") || folder == nil ? pattern : "\(folder!)/\(pattern)"
        var files: [String] = [], missing: [String] = []
        for candidate in expandBraces(absolute) {
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

    /// Shell-style brace expansion: `a{1..3}b` → a1b a2b a3b (zero padding follows the first
    /// bound: `{08..10}` → 08 09 10), `{x,y}` → x y; several groups multiply out, nested braces
    /// are not supported.
    public static func expandBraces(_ s: String) -> [String] {
        guard let open = s.firstIndex(of: "{"), let close = s[open...].firstIndex(of: "}") else { return [s] }
        let head = String(s[..<open]), body = String(s[s.index(after: open)..<close]), tail = String(s[s.index(after: close)...])
        var options: [String]
        let range = body.components(separatedBy: "..")
        if range.count == 2, let a = Int(range[0]), let b = Int(range[1]), a <= b {
            let width = range[0].count
            options = (a...b).map { String(format: "%0\(width)d", $0) }
        } else {
            options = body.components(separatedBy: ",")
        }
        return options.flatMap { expandBraces(head + $0 + tail) }
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

/// Reads one shard as a stream of samples, never holding more than one sample in memory.
/// Bad samples (no image, no caption) come back as `.failure` with the shard and key.
public final class ShardReader {
    private let tar: TarReader
    private let path: String
    private let name: String
    private var pending: TarMember?

    public init(path: String) throws {
        self.path = path
        name = URL(fileURLWithPath: path).lastPathComponent
        tar = TarReader(try openByteStream(path), path: path)
    }

    /// The next sample; nil at the end. A damaged archive throws `DataFileError` (the rest of the
    /// shard is unreadable); a bad sample is returned as a failure and reading goes on.
    public func next() throws -> Result<SampleRecord, SampleIssue>? {
        guard let first = try pending ?? tar.next() else { return nil }
        pending = nil
        let key = WebDataset.split(first.name).key
        var members = [first]
        while let member = try tar.next() {
            if WebDataset.split(member.name).key == key {
                members.append(member)
            } else {
                pending = member
                break
            }
        }
        do {
            return .success(try record(key: key, members: members))
        } catch let issue as SampleIssue {
            return .failure(issue)
        }
    }

    private func record(key: String, members: [TarMember]) throws -> SampleRecord {
        let origin = "\(path):\(key)"
        var image: [UInt8]?, captionList: [String]?, label: String?
        for member in members {
            let ext = WebDataset.split(member.name).ext
            if WebDataset.imageExtensions.contains(ext) {
                image = member.data
            } else if ext == "txt" {
                captionList = (captionList ?? []) + [String(decoding: member.data, as: UTF8.self)]
            } else if ext == "json" {
                let parsed = try? JSONSerialization.jsonObject(with: Data(member.data), options: [.fragmentsAllowed])
                if let c = captions(fromJSON: parsed), captionList == nil { captionList = c }
                label = (parsed as? [String: Any])?["label"] as? String ?? label
            } else if ext == "cls" || ext == "label" {
                label = String(decoding: member.data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }
        guard let image else { throw SampleIssue(origin: origin, reason: "has no image member (.jpg, .jpeg, .png or .webp)") }
        let usable = (captionList ?? []).map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
        guard !usable.isEmpty else { throw SampleIssue(origin: origin, reason: "has no caption (.txt, or .json with a caption)") }
        return SampleRecord(origin: origin, image: .bytes(image), captions: usable, label: label)
    }
}

