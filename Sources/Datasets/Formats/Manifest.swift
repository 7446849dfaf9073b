import Foundation

/// A CSV or JSONL file listing images and captions (the columns of transformers' `run_clip.py`:
/// `image_path`, `caption`; names configurable). Relative paths resolve against the manifest's
/// folder. Only where each row starts is kept in memory (16 bytes a row: offset and line), so
/// million-row manifests are fine. Without an image column (`imageColumn` nil) it lists
/// sentences only, for text-only training.
///
/// CSV and TSV follow `CSVGrammar` (Python's `csv` module, one grammar for finding rows and
/// splitting them into fields); JSONL is one JSON object per line. Both may start with a UTF-8
/// byte order mark, use `\n` or `\r\n` line breaks and hold blank lines; CSV column names are
/// matched with surrounding spaces trimmed. Problems with the
/// file as a whole (unreadable, empty, no header column of that name, a quote that never
/// closes) are thrown by `init` with the line; a bad row is a `SampleIssue` from `record`,
/// named by file and line, and the other rows stay usable.
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
    /// Where each data row starts (the CSV header excluded) and the line it starts on.
    private var starts: [Int] = []
    private var lines: [Int] = []
    private var columnIndex: [String: Int] = [:]
    private let folder: String

    public var count: Int { starts.count }

    /// The format a manifest's name implies: `.jsonl`/`.json` JSON Lines, `.tsv` tab-separated,
    /// anything else comma-separated (case does not matter: `.CSV` is a CSV).
    public static func format(forPath path: String) -> Format {
        let lower = path.lowercased()
        if lower.hasSuffix(".jsonl") || lower.hasSuffix(".json") { return .jsonl }
        return lower.hasSuffix(".tsv") ? .csv(separator: 9) : .csv(separator: 44)
    }

    public init(path: String, format: Format? = nil, imageColumn: String? = "image_path", captionColumn: String = "caption",
                labelColumn: String? = nil) throws {
        self.path = path
        self.format = format ?? Self.format(forPath: path)
        self.imageColumn = imageColumn
        self.captionColumn = captionColumn
        self.labelColumn = labelColumn
        folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
        if case .csv(let separator) = self.format, !CSVGrammar.isValidSeparator(separator) {
            throw DataFileError(file: path, reason: "cannot use \(Self.visible(String(decoding: [separator], as: UTF8.self))) as the CSV separator: it must be one ASCII character other than a quote or a line break")
        }
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw DataFileError(file: path, reason: "does not exist; check the manifest path")
        }
        if isFolder.boolValue {
            throw DataFileError(file: path, reason: "is a folder, not a manifest file (a .csv, .tsv or .jsonl file listing images and captions)")
        }
        do {
            bytes = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch {
            throw DataFileError(file: path, reason: "cannot read the manifest (\(error.localizedDescription))")
        }
        try bytes.withUnsafeBytes { try index($0) }
    }

    /// The length of a UTF-8 byte order mark at the start, or 0.
    private static func byteOrderMarkLength(_ raw: UnsafeRawBufferPointer) -> Int {
        raw.count >= 3 && raw[0] == 0xEF && raw[1] == 0xBB && raw[2] == 0xBF ? 3 : 0
    }

    private var columnsWanted: String {
        [imageColumn, captionColumn].compactMap { $0.map { "'\($0)'" } }.joined(separator: " and ")
    }

    /// Finds where rows start and checks what can be checked of the file as a whole.
    private func index(_ raw: UnsafeRawBufferPointer) throws {
        if raw.isEmpty {
            throw DataFileError(file: path, reason: "is empty (0 bytes); a manifest lists one image and caption per row" +
                                (format == .jsonl ? "" : " after a header row naming \(columnsWanted)"))
        }
        if raw.count >= 2, (raw[0] == 0xFF && raw[1] == 0xFE) || (raw[0] == 0xFE && raw[1] == 0xFF) {
            throw DataFileError(file: path, reason: "is UTF-16 text; manifests are read as UTF-8: save it as UTF-8")
        }
        let begin = Self.byteOrderMarkLength(raw)
        switch format {
        case .jsonl: try indexJSONLines(raw, from: begin)
        case .csv(let separator): try indexCSV(raw, from: begin, separator: separator)
        }
    }

    private func indexCSV(_ raw: UnsafeRawBufferPointer, from begin: Int, separator: UInt8) throws {
        var header: [String]?
        var headerLine = 1
        var position = begin, line = 1
        do throws(CSVGrammar.Failure) {
            while let row = try CSVGrammar.scan(raw, from: position, line: line, separator: separator, collectFields: header == nil) {
                if !row.isEmptyLine {
                    if header == nil {
                        header = row.fields
                        headerLine = line
                    } else {
                        starts.append(position)
                        lines.append(line)
                    }
                }
                position = row.end
                line = row.nextLine
            }
        } catch {
            switch error {
            case .unterminatedQuote(let at):
                throw DataFileError(file: path, line: at, reason: "a quoted field opens here and never closes: the file ends inside it, so every row after it would be read as part of one field. Close the quote; inside a quoted field write a quote twice (\"\"), and a quote inside an unquoted field (a 12\" ruler) needs no escaping")
            case .fieldTooLarge(let at):
                throw DataFileError(file: path, line: at, reason: "this row has a field of more than \(CSVGrammar.fieldSizeLimit) characters (the limit of Python's csv module, which reads manifests the same way); most often a quote that opens a field closes only rows later")
            }
        }
        guard let header else {
            throw DataFileError(file: path, reason: "has no rows (only blank lines); a CSV manifest needs a header row naming \(columnsWanted), then one row per sample")
        }
        columnIndex = Dictionary(header.enumerated().map { ($1.trimmingCharacters(in: .whitespaces), $0) }, uniquingKeysWith: { a, _ in a })
        let roles = [("image", imageColumn), ("caption", captionColumn), ("label", labelColumn)].compactMap { role, column in column.map { (role, $0) } }
        for (role, column) in roles where columnIndex[column] == nil {
            var hint = ""
            if header.count == 1, let other = [("\t", "tab"), (",", "comma"), (";", "semicolon")].first(where: { header[0].contains($0.0) && $0.0.utf8.first != separator }) {
                hint = "; the header has one column with \(other.1)s in it: is the file \(other.1)-separated? (set the separator: separator in a recipe, --separator for pack)"
            }
            throw DataFileError(file: path, line: headerLine, reason: "has no \(role) column '\(column)' (columns: \(header.map { Self.visible($0) }.joined(separator: ", ")))\(hint); name the \(role) column with \(role)_column in a recipe, --\(role)-column for pack and eval")
        }
        if starts.isEmpty {
            throw DataFileError(file: path, reason: "has a header row but no data rows")
        }
    }

    private func indexJSONLines(_ raw: UnsafeRawBufferPointer, from begin: Int) throws {
        var position = begin, line = 1
        while position < raw.count {
            let end = Self.lineEnd(raw, from: position)
            if !raw[position..<end].allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) {
                starts.append(position)
                lines.append(line)
            }
            position = end + 1
            line += 1
        }
        guard let first = starts.first else {
            throw DataFileError(file: path, reason: "has no rows (only blank lines); JSON Lines manifests hold one JSON object per line")
        }
        // A pretty-printed JSON document is not JSON Lines: say so once rather than once a line.
        // (Only when the first line is no JSON value at all; whether the whole file is one
        // document is tried on files up to 64 MiB, larger ones starting with '[' are presumed.)
        let firstLine = Data(UnsafeRawBufferPointer(rebasing: raw[first..<Self.lineEnd(raw, from: first)]))
        if (try? JSONSerialization.jsonObject(with: firstLine, options: [.fragmentsAllowed])) == nil {
            let isArray = raw[first] == UInt8(ascii: "["), small = raw.count - first <= 64 << 20
            if (small && (try? JSONSerialization.jsonObject(with: Data(UnsafeRawBufferPointer(rebasing: raw[first...])))) != nil) || (!small && isArray) {
                throw DataFileError(file: path, reason: "is one JSON document (\(isArray ? "an array" : "spread over several lines")), not JSON Lines: a manifest holds one JSON object per line (jq -c '.[]' turns an array into JSON Lines)")
            }
        }
    }

    /// The index of the `\n` ending the line that starts at `start`, or the end of the bytes.
    private static func lineEnd(_ raw: UnsafeRawBufferPointer, from start: Int) -> Int {
        guard start < raw.count, let base = raw.baseAddress,
              let found = memchr(base + start, Int32(CSVGrammar.lineFeed), raw.count - start) else { return raw.count }
        return base.distance(to: UnsafeRawPointer(found))
    }

    /// A name as written, with characters one cannot see spelled out (`\u{FEFF}image_path`).
    static func visible(_ name: String) -> String {
        var out = ""
        for scalar in name.unicodeScalars {
            switch scalar {
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            case "\n": out += "\\n"
            default:
                switch scalar.properties.generalCategory {
                case .control, .format, .lineSeparator, .paragraphSeparator, .unassigned, .privateUse, .surrogate:
                    out += "\\u{\(String(scalar.value, radix: 16, uppercase: true))}"
                case .spaceSeparator where scalar != " ":
                    out += "\\u{\(String(scalar.value, radix: 16, uppercase: true))}"
                default:
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }

    /// JSON row `i` parsed as an object; throws a `SampleIssue` saying what it is instead.
    private func jsonObject(row i: Int) throws -> [String: Any] {
        let origin = "\(path):\(lines[i])"
        let parsed: Any
        do {
            parsed = try bytes.withUnsafeBytes { raw in
                let end = Self.lineEnd(raw, from: starts[i])
                return try JSONSerialization.jsonObject(with: Data(UnsafeRawBufferPointer(rebasing: raw[starts[i]..<end])), options: [.fragmentsAllowed])
            }
        } catch {
            throw SampleIssue(origin: origin, reason: "line is not valid JSON (each line of a JSON Lines manifest holds one object)")
        }
        guard let object = parsed as? [String: Any] else {
            throw SampleIssue(origin: origin, reason: "line is \(Self.describe(parsed)), not a JSON object with the sample's fields")
        }
        return object
    }

    /// What a JSON value is, in words.
    static func describe(_ value: Any?) -> String {
        switch value {
        case nil, is NSNull: "null"
        case is String: "a string"
        case is NSNumber: "a number or boolean"
        case is [Any]: "an array"
        case is [String: Any]: "an object"
        default: "a value of another kind"
        }
    }

    /// The fields of CSV row `i` (0-based, header excluded), split by the grammar that found it.
    func csvFields(_ i: Int) throws -> [String] {
        guard case .csv(let separator) = format else { return [] }
        do {
            return try bytes.withUnsafeBytes { raw throws(CSVGrammar.Failure) in
                try CSVGrammar.scan(raw, from: starts[i], line: lines[i], separator: separator, collectFields: true)?.fields ?? []
            }
        } catch {
            // The indexer read the same bytes with the same grammar: this cannot happen.
            throw SampleIssue(origin: "\(path):\(lines[i])", reason: "the row does not parse (\(error))")
        }
    }

    /// The line row `i` (0-based, header excluded) starts on.
    func line(ofRow i: Int) -> Int { lines[i] }

    /// Row `i` (0-based, header excluded) as a record; throws a `SampleIssue` for a bad row.
    public func record(_ i: Int) throws -> SampleRecord {
        let origin = "\(path):\(lines[i])"
        let image: String?, caption: [String]?, label: String?
        switch format {
        case .jsonl:
            let object = try jsonObject(row: i)
            if let imageColumn, let value = object[imageColumn], !(value is String) {
                throw SampleIssue(origin: origin, reason: "the image field '\(imageColumn)' is \(Self.describe(value)), not a path")
            }
            image = imageColumn.flatMap { object[$0] as? String }
            caption = captions(fromJSON: object[captionColumn])
            label = labelColumn.flatMap { object[$0] as? String }
        case .csv:
            let fields = try csvFields(i)
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
        guard let image, !image.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw SampleIssue(origin: origin, reason: "no value in the image column '\(imageColumn)'")
        }
        guard !usable.isEmpty else { throw SampleIssue(origin: origin, reason: "empty caption in column '\(captionColumn)'") }
        let resolved = image.hasPrefix("/") ? image : "\(folder)/\(image)"
        return SampleRecord(origin: origin, image: .file(resolved), captions: usable, label: label)
    }
}
