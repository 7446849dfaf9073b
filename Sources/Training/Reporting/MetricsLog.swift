import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One line of `metrics.jsonl`: a training log step or an evaluation.
public struct MetricsRecord: Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// Written every `logEvery` training steps (losses, lr, throughput...).
        case train
        /// Written after each evaluation (retrieval recall, validation loss, zero-shot accuracy...).
        case eval
    }

    public var kind: Kind
    public var step: Int
    public var epoch: Double
    /// The metrics, flattened into the JSON object next to `kind`, `step` and `epoch` (values
    /// under those three names are not written). Non-finite values are written as `null` and
    /// read back as NaN.
    public var values: [String: Double]

    public init(kind: Kind, step: Int, epoch: Double, values: [String: Double]) {
        self.kind = kind
        self.step = step
        self.epoch = epoch
        self.values = values
    }
}

/// Why `metrics.jsonl` could not be written or read.
public struct MetricsLogError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "\(path): \(reason)" }
}

/// Appends one JSON object per line to a run's `metrics.jsonl` (the open_clip / Hugging Face
/// convention), so runs can be compared with `pandas.read_json(path, lines=True)` or `jq`.
///
/// Appends are serialised by a lock, so evaluation code on another thread may log too.
public final class MetricsLog: @unchecked Sendable {
    public let path: String
    private let lock = NSLock()
    private var fd: Int32

    /// Opens `path` for a fresh run (truncating it) or, with `resumeAt`, for a resumed one: the
    /// records after the resumed checkpoint's step are dropped first (they will be logged again),
    /// by an atomic rewrite so a crash during it cannot lose the earlier history.
    public init(path: String, resumeAt step: Int? = nil) throws {
        self.path = path
        let folder = (path as NSString).deletingLastPathComponent
        if !folder.isEmpty { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        var flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC
        if let step {
            let kept = try Self.linesUpTo(step: step, in: path)
            try ReportFile.writeAtomically(Data(kept.map { $0 + "\n" }.joined().utf8), to: path)
        } else {
            flags |= O_TRUNC
        }
        fd = open(path, flags, 0o644)
        guard fd >= 0 else { throw MetricsLogError(path: path, reason: "cannot open: \(String(cString: strerror(errno)))") }
    }

    deinit { close() }

    /// Appends `record` as one line. Each line goes out in a single `write`, so a killed process
    /// leaves at most one torn last line, which `read` skips.
    public func append(_ record: MetricsRecord) throws {
        let line = Self.encode(record) + "\n"
        lock.lock()
        defer { lock.unlock() }
        guard fd >= 0 else { throw MetricsLogError(path: path, reason: "the log is closed") }
        try ReportFile.writeAll(fd, Array(line.utf8), path: path)
    }

    /// Closes the file; later appends throw.
    public func close() {
        lock.lock()
        defer { lock.unlock() }
        if fd >= 0 { ReportFile.closeDescriptor(fd) }
        fd = -1
    }

    /// Reads a `metrics.jsonl` back. An unterminated last line that does not parse (a write cut
    /// short by a kill) is skipped; any other malformed line is an error.
    public static func read(_ path: String) throws -> [MetricsRecord] {
        try completeLines(path).map { try decode($0.text, line: $0.number, path: path) }
    }

    // MARK: - Encoding

    private static let reservedKeys: Set<String> = ["kind", "step", "epoch"]

    /// Sorted keys and Python's default separators, so our lines look like `json.dumps(..., sort_keys=True)`.
    static func encode(_ record: MetricsRecord) -> String {
        var fields: [(String, String)] = [
            ("kind", jsonString(record.kind.rawValue)),
            ("step", String(record.step)),
            ("epoch", jsonNumber(record.epoch)),
        ]
        for (key, value) in record.values where !reservedKeys.contains(key) {
            fields.append((key, jsonNumber(value)))
        }
        fields.sort { $0.0 < $1.0 }
        return "{" + fields.map { "\(jsonString($0.0)): \($0.1)" }.joined(separator: ", ") + "}"
    }

    /// Swift's shortest round-trip spelling (`1e-05`, `0.25`) is valid JSON; NaN and ±inf are not.
    private static func jsonNumber(_ value: Double) -> String {
        value.isFinite ? "\(value)" : "null"
    }

    private static func jsonString(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    // MARK: - Decoding

    private static func decode(_ text: String, line: Int, path: String) throws -> MetricsRecord {
        let object = try parseObject(text, line: line, path: path)
        func fail(_ reason: String) -> MetricsLogError { MetricsLogError(path: path, reason: "line \(line): \(reason)") }
        guard let kindName = object["kind"] as? String else { throw fail("no \"kind\"") }
        guard let kind = MetricsRecord.Kind(rawValue: kindName) else { throw fail("unknown kind \"\(kindName)\"") }
        guard let step = number(object["step"]).flatMap(Int.init(exactly:)) else { throw fail("no \"step\"") }
        let epoch = number(object["epoch"]) ?? .nan
        var values: [String: Double] = [:]
        for (key, value) in object where !reservedKeys.contains(key) {
            if value is NSNull {
                values[key] = .nan
            } else if let number = number(value) {
                values[key] = number
            }   // Strings and nested objects from other writers carry no curve; leave them out.
        }
        return MetricsRecord(kind: kind, step: step, epoch: epoch, values: values)
    }

    /// JSONSerialization hands numbers back as NSNumber on some platforms and as Swift values on others.
    private static func number(_ value: Any?) -> Double? {
        switch value {
        case let v as Double: v
        case let v as Int: Double(v)
        case let v as NSNumber: v.doubleValue
        default: nil
        }
    }

    private static func parseObject(_ text: String, line: Int, path: String) throws -> [String: Any] {
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw MetricsLogError(path: path, reason: "line \(line) is not a JSON object")
        }
        return object
    }

    /// The non-empty lines, without a torn (unterminated, unparsable) last one.
    private static func completeLines(_ path: String) throws -> [(number: Int, text: String)] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw MetricsLogError(path: path, reason: "cannot read: \(String(cString: strerror(errno)))")
        }
        var lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
            .enumerated().map { (number: $0.offset + 1, text: String($0.element)) }
        if let last = lines.last, data.last != UInt8(ascii: "\n"),
           (try? parseObject(last.text, line: last.number, path: path)) == nil {
            lines.removeLast()
        }
        return lines.filter { !$0.text.allSatisfy(\.isWhitespace) }
    }

    /// The lines to keep on resume, verbatim (keys this version does not know survive).
    private static func linesUpTo(step: Int, in path: String) throws -> [String] {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        return try completeLines(path).compactMap { line in
            let object = try parseObject(line.text, line: line.number, path: path)
            guard let recorded = number(object["step"]).flatMap(Int.init(exactly:)) else {
                throw MetricsLogError(path: path, reason: "line \(line.number): no \"step\"")
            }
            return recorded <= step ? line.text : nil
        }
    }
}

/// File helpers shared by the reporting types (kept here so Reporting depends on Foundation only)
/// and by the TensorBoard writer.
public enum ReportFile {
    /// Temporary sibling, fsync, rename, fsync the folder: a crash leaves the old file or the new one.
    public static func writeAtomically(_ data: Data, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let temporary = "\(folder)/.\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw MetricsLogError(path: path, reason: "cannot create \(temporary): \(String(cString: strerror(errno)))")
        }
        do {
            try writeAll(fd, Array(data), path: temporary)
            guard fsync(fd) == 0 else {
                throw MetricsLogError(path: temporary, reason: "fsync failed: \(String(cString: strerror(errno)))")
            }
            _ = close(fd)
        } catch {
            _ = close(fd)
            unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw MetricsLogError(path: path, reason: "rename failed: \(reason)")
        }
        let folderFD = open(folder, O_RDONLY | O_DIRECTORY)
        if folderFD >= 0 {
            fsync(folderFD)
            _ = close(folderFD)
        }
    }

    /// For `MetricsLog`, whose own `close()` hides the system call.
    static func closeDescriptor(_ fd: Int32) {
        _ = close(fd)
    }

    /// `write` until everything is out (it may write less than asked, or be interrupted).
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if written < 0 {
                if errno == EINTR { continue }
                throw MetricsLogError(path: path, reason: "write failed: \(String(cString: strerror(errno)))")
            }
            offset += written
        }
    }
}
