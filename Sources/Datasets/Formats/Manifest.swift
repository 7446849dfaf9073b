import Foundation

/// A CSV or JSONL file listing images and captions (the columns of transformers' `run_clip.py`:
/// `image_path`, `caption`; names configurable). Relative paths resolve against the manifest's
/// folder. Only row offsets are kept in memory (8 bytes a row), so million-row manifests are fine.
/// Without an image column (`imageColumn` nil) it lists sentences only, for text-only training.
public final class ManifestSource: @unchecked Sendable {
    public enum Format: Sendable, Equatable {
        case csv(separator: UInt8)
        case jsonl
    }

    public let path: String
    public let format: Format
    public let imageColumn: String?
    public let captionColumn: String
    public let labelColumn: String?
    private let bytes: Data
    /// Byte ranges of the data rows (the CSV header excluded) and the line each starts on.
    private var rows: [Range<Int>] = []
    private var lines: [Int32] = []
    private var columnIndex: [String: Int] = [:]
    private let folder: String

    public var count: Int { rows.count }

    public init(path: String, format: Format? = nil, imageColumn: String? = "image_path", captionColumn: String = "caption",
                labelColumn: String? = nil) throws {
        self.path = path
        self.format = format ?? (path.hasSuffix(".jsonl") || path.hasSuffix(".json") ? .jsonl : path.hasSuffix(".tsv") ? .csv(separator: 9) : .csv(separator: 44))
        self.imageColumn = imageColumn
        self.captionColumn = captionColumn
        self.labelColumn = labelColumn
        folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
        do {
            bytes = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch {
            throw DataFileError(file: path, reason: "cannot read the manifest (\(error.localizedDescription))")
        }
        try index()
    }

    /// Finds row boundaries (quoted CSV fields may contain newlines) and checks the header.
    private func index() throws {
        var records: [Range<Int>] = []
        var startLines: [Int32] = []
        bytes.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            var start = 0, inQuotes = false, line: Int32 = 1, startLine: Int32 = 1
            let isCSV = format != .jsonl
            for i in 0..<raw.count {
                let b = raw[i]
                if isCSV && b == UInt8(ascii: "\"") { inQuotes.toggle() }
                guard b == UInt8(ascii: "\n") else { continue }
                line += 1
                if !inQuotes {
                    if !Self.isBlank(raw[start..<i]) {
                        records.append(start..<i)
                        startLines.append(startLine)
                    }
                    start = i + 1
                    startLine = line
                }
            }
            if start < raw.count && !Self.isBlank(raw[start..<raw.count]) {
                records.append(start..<raw.count)
                startLines.append(startLine)
            }
        }
        guard case .csv(let separator) = format else {
            rows = records
            lines = startLines
            return
        }
        guard let header = records.first else {
            throw DataFileError(file: path, reason: "is empty; a CSV manifest needs a header row naming \([imageColumn, captionColumn].compactMap { $0.map { "'\($0)'" } }.joined(separator: " and "))")
        }
        let names = Self.splitCSV(bytes[header], separator: separator)
        columnIndex = Dictionary(names.enumerated().map { ($1.trimmingCharacters(in: .whitespaces), $0) }, uniquingKeysWith: { a, _ in a })
        let roles = [("image", imageColumn), ("caption", captionColumn), ("label", labelColumn)].compactMap { role, column in column.map { (role, $0) } }
        for (role, column) in roles where columnIndex[column] == nil {
            throw DataFileError(file: path, reason: "has no \(role) column '\(column)' (columns: \(names.joined(separator: ", "))); name the \(role) column with \(role)_column in a recipe, --\(role)-column for pack and eval")
        }
        rows = Array(records.dropFirst())
        lines = Array(startLines.dropFirst())
    }

    private static func isBlank(_ bytes: Slice<UnsafeRawBufferPointer>) -> Bool {
        bytes.allSatisfy { $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }
    }

    /// Row `i` (0-based, header excluded) as a record; throws a `SampleIssue` for a bad row.
    public func record(_ i: Int) throws -> SampleRecord {
        let range = rows[i]
        let origin = "\(path):\(lines[i])"
        let image: String?, caption: [String]?, label: String?
        switch format {
        case .jsonl:
            guard let object = try? JSONSerialization.jsonObject(with: bytes[range]) as? [String: Any] else {
                throw SampleIssue(origin: origin, reason: "row is not a JSON object")
            }
            image = imageColumn.flatMap { object[$0] as? String }
            caption = captions(fromJSON: object[captionColumn])
            label = labelColumn.flatMap { object[$0] as? String }
        case .csv(let separator):
            let fields = Self.splitCSV(bytes[range], separator: separator)
            func field(_ name: String) -> String? {
                columnIndex[name].flatMap { $0 < fields.count ? fields[$0] : nil }
            }
            image = imageColumn.flatMap(field)
            caption = field(captionColumn).map { [$0] }
            label = labelColumn.flatMap(field)
        }
        let usable = (caption ?? []).map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
        guard let imageColumn else {
            guard !usable.isEmpty else { throw SampleIssue(origin: origin, reason: "empty caption in column '\(captionColumn)'") }
            return SampleRecord(origin: origin, image: .none, captions: usable, label: label)
        }
        guard let image, !image.isEmpty else { throw SampleIssue(origin: origin, reason: "no value in the image column '\(imageColumn)'") }
        guard !usable.isEmpty else { throw SampleIssue(origin: origin, reason: "empty caption in column '\(captionColumn)'") }
        let resolved = image.hasPrefix("/") ? image : "\(folder)/\(image)"
        return SampleRecord(origin: origin, image: .file(resolved), captions: usable, label: label)
    }

    /// RFC 4180 fields: quotes around fields, doubled quotes inside them.
    static func splitCSV(_ line: Data, separator: UInt8) -> [String] {
        var fields: [String] = []
        var current = [UInt8]()
        var inQuotes = false
        var i = line.startIndex
        while i < line.endIndex {
            let b = line[i]
            if inQuotes {
                if b == UInt8(ascii: "\"") {
                    if line.index(after: i) < line.endIndex && line[line.index(after: i)] == UInt8(ascii: "\"") {
                        current.append(b)
                        i = line.index(after: i)
                    } else {
                        inQuotes = false
                    }
                } else {
                    current.append(b)
                }
            } else if b == UInt8(ascii: "\"") && current.isEmpty {
                inQuotes = true
            } else if b == separator {
                fields.append(String(decoding: current, as: UTF8.self))
                current.removeAll(keepingCapacity: true)
            } else if b != 0x0D {
                current.append(b)
            }
            i = line.index(after: i)
        }
        fields.append(String(decoding: current, as: UTF8.self))
        return fields
    }
}
