/// The one CSV grammar of the framework: the manifest's row indexer and its field splitter both
/// call `CSVGrammar.scan`, so a row ends exactly where its fields say it does.
///
/// It is RFC 4180 as Python's `csv` module reads it with its default dialect (`excel`,
/// `strict=False`), which is what a Python pipeline reading the same manifest sees
/// (`Scripts/fixtures/csv_fixtures.py` and a live comparison in the tests hold us to it):
///
/// - A row ends at `\n`, `\r\n` or a lone `\r` outside quotes; an empty line is no row.
/// - A field that *starts* with `"` is quoted: it runs to the next lone `"`, and may hold
///   separators, line breaks and doubled quotes (`""` → `"`).
/// - A `"` anywhere else is an ordinary character: `a 12" ruler` is read as written.
/// - Text after a closing quote is appended to the field (`"ab"cd` → `abcd`), as Python does
///   unless `strict=True`.
/// - A field may hold at most `fieldSizeLimit` characters (Python's `csv.field_size_limit()`).
///
/// Two differences, both refusals of input Python would read into something else: a file that
/// ends inside a quoted field is an error naming the line where the field opened (Python,
/// unless strict, returns the rest of the file as that field — every row after it silently
/// swallowed), and `ManifestSource` skips a UTF-8 byte order mark (Python's `utf-8-sig`).
enum CSVGrammar {
    /// Python's default `csv.field_size_limit()`: a longer field is an error there and here.
    /// (A field that long is almost always an opening quote whose closing quote comes rows
    /// later; the limit also bounds what one row can make us allocate.)
    static let fieldSizeLimit = 131_072

    static let quote = UInt8(ascii: "\"")
    static let lineFeed = UInt8(ascii: "\n")
    static let carriageReturn = UInt8(ascii: "\r")

    enum Failure: Error, Equatable {
        /// The input ends inside a quoted field that opened on `line`.
        case unterminatedQuote(line: Int)
        /// A field of the row starting on `line` is longer than `fieldSizeLimit` characters.
        case fieldTooLarge(line: Int)
    }

    /// One row as `scan` read it.
    struct Row {
        /// Where the next row starts (after this row's line break).
        var end: Int
        /// The line the next row starts on.
        var nextLine: Int
        /// An empty line (Python's `[]`): no row at all.
        var isEmptyLine: Bool
        /// The fields, when asked for.
        var fields: [String]
    }

    /// Whether `byte` can separate fields (not a quote or a line break).
    static func isValidSeparator(_ byte: UInt8) -> Bool {
        byte != quote && byte != lineFeed && byte != carriageReturn && byte < 0x80
    }

    /// Reads the row that starts at `start` (on line `line`); nil at the end of the input.
    /// With `collectFields` the fields are returned too (the indexer only wants the end).
    static func scan(_ bytes: UnsafeRawBufferPointer, from start: Int, line: Int, separator: UInt8,
                     collectFields: Bool) throws(Failure) -> Row? {
        let n = bytes.count
        guard start < n else { return nil }
        func lineBreakEnd(_ i: Int) -> Int {
            bytes[i] == carriageReturn && i + 1 < n && bytes[i + 1] == lineFeed ? i + 2 : i + 1
        }
        if bytes[start] == lineFeed || bytes[start] == carriageReturn {
            return Row(end: lineBreakEnd(start), nextLine: line + 1, isEmptyLine: true, fields: [])
        }
        enum State { case startField, inField, inQuotedField, quoteInQuotedField }
        var state = State.startField
        var fields: [String] = []
        var field: [UInt8] = []
        var characters = 0
        var currentLine = line, quoteLine = line
        func save() {
            if collectFields { fields.append(String(decoding: field, as: UTF8.self)) }
            field.removeAll(keepingCapacity: true)
            characters = 0
        }
        func add(_ c: UInt8) throws(Failure) {
            if c & 0xC0 != 0x80 {   // a character starts (UTF-8 continuation bytes do not count)
                characters += 1
                if characters > fieldSizeLimit { throw .fieldTooLarge(line: line) }
            }
            if collectFields { field.append(c) }
        }
        var i = start
        while i < n {
            let c = bytes[i]
            switch state {
            case .startField:
                if c == lineFeed || c == carriageReturn {
                    save()
                    return Row(end: lineBreakEnd(i), nextLine: currentLine + 1, isEmptyLine: false, fields: fields)
                } else if c == quote {
                    state = .inQuotedField
                    quoteLine = currentLine
                } else if c == separator {
                    save()
                } else {
                    try add(c)
                    state = .inField
                }
            case .inField:
                if c == lineFeed || c == carriageReturn {
                    save()
                    return Row(end: lineBreakEnd(i), nextLine: currentLine + 1, isEmptyLine: false, fields: fields)
                } else if c == separator {
                    save()
                    state = .startField
                } else {
                    try add(c)
                }
            case .inQuotedField:
                if c == quote {
                    state = .quoteInQuotedField
                } else {
                    // A line break inside quotes is part of the field; it still counts as a line.
                    if c == lineFeed || (c == carriageReturn && (i + 1 == n || bytes[i + 1] != lineFeed)) { currentLine += 1 }
                    try add(c)
                }
            case .quoteInQuotedField:
                if c == quote {
                    try add(c)
                    state = .inQuotedField
                } else if c == separator {
                    save()
                    state = .startField
                } else if c == lineFeed || c == carriageReturn {
                    save()
                    return Row(end: lineBreakEnd(i), nextLine: currentLine + 1, isEmptyLine: false, fields: fields)
                } else {
                    try add(c)
                    state = .inField
                }
            }
            i += 1
        }
        // The input ends without a line break: that ends the row, unless a quote is open.
        if state == .inQuotedField { throw .unterminatedQuote(line: quoteLine) }
        save()
        return Row(end: n, nextLine: currentLine + 1, isEmptyLine: false, fields: fields)
    }
}
