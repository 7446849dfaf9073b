import Foundation
import Testing
@testable import Datasets

private let python = "\(repositoryRoot)/.deps/python"
private let hasPython = FileManager.default.isExecutableFile(atPath: python)

/// Writes `bytes` to `name` in a fresh folder; returns the path.
private func file(_ name: String, _ bytes: [UInt8], in folder: String = temporaryFolder()) throws -> String {
    let path = "\(folder)/\(name)"
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
}

private func file(_ name: String, _ text: String, in folder: String = temporaryFolder()) throws -> String {
    try file(name, Array(text.utf8), in: folder)
}

/// The error `body` throws, as the type asked for (nil, recorded as an issue, otherwise).
private func caught<E: Error>(_ type: E.Type, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) -> E? {
    do {
        try body()
        Issue.record("expected \(E.self), nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as E {
        return error
    } catch {
        Issue.record("expected \(E.self), got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

/// Every row of a manifest as (line, fields), through the manifest's own indexer and splitter.
private func rows(_ m: ManifestSource) throws -> [(line: Int, fields: [String])] {
    try (0..<m.count).map { (m.line(ofRow: $0), try m.csvFields($0)) }
}

@Suite("CSV and JSONL manifests: one grammar, clear errors")
struct ManifestGrammarTests {
    /// Issue 16's case: a stray quote in an unquoted caption is a literal character, for the
    /// row indexer as for the field splitter, so no row after it is swallowed.
    @Test func strayQuoteIsLiteralAndSwallowsNothing() throws {
        let path = try file("m.csv", "image_path,caption\na.jpg,a 12\" ruler\nb.jpg,a pen\nc.jpg,3\" nails, \"galvanised\"\nd.jpg,done\n")
        let m = try ManifestSource(path: path)
        #expect(m.count == 4)
        #expect(try m.record(0).captions == ["a 12\" ruler"])
        #expect(try m.record(1).captions == ["a pen"])
        #expect(try m.csvFields(2) == ["c.jpg", "3\" nails", " \"galvanised\""])
        #expect(try m.record(3).origin == "\(path):5")
    }

    /// Quotes, doubled quotes, separators and line breaks inside quotes, text after a closing
    /// quote; a row spanning lines keeps its first line for messages, and the rows after it
    /// keep theirs.
    @Test func quotingAndLineNumbers() throws {
        let text = "image_path,caption,label\n" +
            "a.jpg,\"one, two\",x\n" +                  // line 2
            "b.jpg,\"say \"\"hi\"\"\",y\n" +             // line 3
            "c.jpg,\"first\nsecond\r\nthird\rfourth\",z\n" + // lines 4–7
            ",no image,z\n" +                          // line 8: a bad row, named by its line
            "e.jpg,\"closed\" after,w\n"                 // line 9
        let path = try file("m.csv", text)
        let m = try ManifestSource(path: path, labelColumn: "label")
        #expect(try rows(m).map(\.line) == [2, 3, 4, 8, 9])
        #expect(try m.record(0).captions == ["one, two"])
        #expect(try m.record(1).captions == ["say \"hi\""])
        #expect(try m.record(2).captions == ["first\nsecond\r\nthird\rfourth"] && m.record(2).origin == "\(path):4")
        let bad = caught(SampleIssue.self) { _ = try m.record(3) }
        #expect(bad?.origin == "\(path):8" && bad?.reason.contains("image column") == true)
        #expect(try m.record(4).captions == ["closed after"])
    }

    /// CRLF, lone CR and mixed line ends; blank lines are no rows; a line of spaces is a row
    /// (as in Python) and a bad one, named by its line.
    @Test func lineEndsAndBlankLines() throws {
        let crlf = try ManifestSource(path: try file("crlf.csv", "image_path,caption\r\na.jpg,one\r\n\r\nb.jpg,two\r\n"))
        #expect(crlf.count == 2)
        #expect(try crlf.record(1).captions == ["two"] && crlf.line(ofRow: 1) == 4)
        guard case .file(let image) = try crlf.record(0).image else { Issue.record("no image path"); return }
        #expect(image.hasSuffix("/a.jpg"))   // no \r left on the last field
        let cr = try ManifestSource(path: try file("cr.csv", "image_path,caption\ra.jpg,one\rb.jpg,two"))
        #expect(try rows(cr).map(\.fields) == [["a.jpg", "one"], ["b.jpg", "two"]])
        let spaces = try file("spaces.csv", "image_path,caption\na.jpg,one\n   \nb.jpg,two\n")
        let m = try ManifestSource(path: spaces)
        #expect(m.count == 3)
        let issue = caught(SampleIssue.self) { _ = try m.record(1) }
        #expect(issue?.origin == "\(spaces):3")
    }

    /// A UTF-8 byte order mark before the header (Excel writes one) is not part of the first
    /// column's name; a UTF-16 file is named as such.
    @Test func byteOrderMarks() throws {
        let bom: [UInt8] = [0xEF, 0xBB, 0xBF]
        let m = try ManifestSource(path: try file("bom.csv", bom + Array("image_path,caption\na.jpg,one\n".utf8)))
        #expect(try m.record(0).captions == ["one"])
        let tsv = try ManifestSource(path: try file("bom.tsv", bom + Array("image_path\tcaption\na.jpg\tone\n".utf8)))
        #expect(try tsv.record(0).captions == ["one"])
        let jsonl = try ManifestSource(path: try file("bom.jsonl", bom + Array("{\"image_path\": \"a.jpg\", \"caption\": \"one\"}\n".utf8)))
        #expect(try jsonl.record(0).captions == ["one"])
        let utf16 = caught(DataFileError.self) {
            _ = try ManifestSource(path: try file("utf16.csv", [0xFF, 0xFE] + Array("image_path,caption\n".utf16).flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }))
        }
        #expect(utf16?.reason.contains("UTF-16") == true)
    }

    /// A file that ends inside a quoted field is refused with the line where the field opened
    /// (Python, unless strict, would return the rest of the file as that one field).
    @Test func unterminatedQuoteIsAnErrorWithItsLine() throws {
        let path = try file("m.csv", "image_path,caption\na.jpg,fine\nb.jpg,\"opens here\nc.jpg,swallowed\nd.jpg,too\n")
        let error = caught(DataFileError.self) { _ = try ManifestSource(path: path) }
        #expect(error?.line == 3)
        #expect(error.map { "\($0)" }?.hasPrefix("\(path):3: a quoted field opens here and never closes") == true)
        // Neighbours: at the very end, in the header, in a TSV.
        #expect(caught(DataFileError.self) { _ = try ManifestSource(path: try file("m.csv", "image_path,caption\na.jpg,\"")) }?.line == 2)
        #expect(caught(DataFileError.self) { _ = try ManifestSource(path: try file("m.csv", "image_path,\"caption\na.jpg,x\n")) }?.line == 1)
        #expect(caught(DataFileError.self) { _ = try ManifestSource(path: try file("m.tsv", "image_path\tcaption\na.jpg\tx\n\nb.jpg\t\"x\n")) }?.line == 4)
    }

    /// Python's field size limit (131,072 characters, counted as characters, not bytes) holds
    /// here too: at the limit a row reads, one more is an error naming the row's first line.
    @Test func fieldSizeLimitIsPythons() throws {
        let limit = CSVGrammar.fieldSizeLimit
        let atLimit = try ManifestSource(path: try file("m.csv", "image_path,caption\na.jpg,\(String(repeating: "é", count: limit))\n"))
        #expect(try atLimit.record(0).captions[0].count == limit)
        let quoted = "image_path,caption\na.jpg,ok\nb.jpg,\"\(String(repeating: "x", count: limit))\n\"\n"
        let error = caught(DataFileError.self) { _ = try ManifestSource(path: try file("m.csv", quoted)) }
        #expect(error?.line == 3 && error?.reason.contains("131072 characters") == true)
    }

    /// What is wrong with the file as a whole, in the user's terms.
    @Test func wholeFileProblemsSayWhatHappened() throws {
        let folder = temporaryFolder()
        func reason(_ path: String, format: ManifestSource.Format? = nil) -> String? {
            caught(DataFileError.self) { _ = try ManifestSource(path: path, format: format) }?.reason
        }
        #expect(reason(try file("empty.csv", "", in: folder))?.hasPrefix("is empty (0 bytes)") == true)
        #expect(reason(try file("empty.jsonl", "", in: folder))?.hasPrefix("is empty (0 bytes)") == true)
        #expect(reason(try file("blank.csv", "\n\r\n\n", in: folder))?.hasPrefix("has no rows") == true)
        #expect(reason(try file("blank.jsonl", "\n  \n", in: folder))?.hasPrefix("has no rows") == true)
        #expect(reason(try file("header.csv", "image_path,caption\n", in: folder)) == "has a header row but no data rows")
        try FileManager.default.createDirectory(atPath: "\(folder)/dir.csv", withIntermediateDirectories: true)
        #expect(reason("\(folder)/dir.csv")?.hasPrefix("is a folder, not a manifest file") == true)
        #expect(reason("\(folder)/absent.csv")?.hasPrefix("does not exist") == true)
        // Column names that look right but are not: invisible characters are spelled out.
        let softHyphen = try file("shy.csv", "image_path,cap\u{AD}tion\na.jpg,x\n", in: folder)
        #expect(reason(softHyphen)?.contains("columns: image_path, cap\\u{AD}tion") == true)
        // A tab-separated file read as CSV: the one column is named, and the separator suggested.
        let tabs = try file("tabs.csv", "image_path\tcaption\na.jpg\tx\n", in: folder)
        #expect(reason(tabs)?.contains("columns: image_path\\tcaption") == true)
        #expect(reason(tabs)?.contains("tab-separated") == true)
        // A separator that cannot be one.
        #expect(reason(tabs, format: .csv(separator: UInt8(ascii: "\"")))?.contains("cannot use") == true)
        #expect(reason(tabs, format: .csv(separator: 10))?.contains("cannot use \\n") == true)
    }

    /// Extensions decide the format in any case: `.CSV` is a CSV, `.TSV` a TSV, `.JSONL` JSON Lines.
    @Test func extensionsInAnyCase() throws {
        let folder = temporaryFolder()
        let csv = try file("M.CSV", "image_path,caption\na.jpg,x\n", in: folder)
        #expect(try ManifestSource(path: csv).format == .csv(separator: 44))
        #expect(try ManifestSource(path: try file("M.Tsv", "image_path\tcaption\na.jpg\tx\n", in: folder)).format == .csv(separator: 9))
        #expect(try ManifestSource(path: try file("M.JSONL", "{\"image_path\": \"a\", \"caption\": \"x\"}\n", in: folder)).format == .jsonl)
        #expect(DatasetSource.isManifest("data/M.CSV") && DatasetSource.isManifest("x.Json") && !DatasetSource.isManifest("x.tar"))
        guard case .manifest(let opened) = try DatasetSource.open(csv) else { Issue.record("M.CSV was not opened as a manifest"); return }
        #expect(try opened.record(0).captions == ["x"])
    }

    /// JSON Lines: blank lines, CRLF, a BOM; a line that is not an object is a bad row with its
    /// line; a whole-file JSON document is refused once, not line by line.
    @Test func jsonLinesNeighbours() throws {
        let text = "{\"image_path\": \"a.jpg\", \"caption\": \"one\"}\r\n\r\n   \n" +
            "[1, 2]\n" +                                       // line 4
            "{\"image_path\": 7, \"caption\": \"x\"}\n" +      // line 5
            "not json\n" +                                    // line 6
            "\"a string\"\n" +                                // line 7
            "{\"image_path\": \"b.jpg\", \"caption\": [\"two\", \"2\"]}"
        let path = try file("m.jsonl", text)
        let m = try ManifestSource(path: path)
        #expect(m.count == 6)
        #expect(try m.record(0).captions == ["one"] && m.record(5).captions == ["two", "2"])
        let reasons = (1...4).map { i in caught(SampleIssue.self) { _ = try m.record(i) } }
        #expect(reasons.map { $0?.origin } == [4, 5, 6, 7].map { "\(path):\($0)" })
        #expect(reasons[0]?.reason.contains("is an array, not a JSON object") == true)
        #expect(reasons[1]?.reason.contains("'image_path' is a number or boolean, not a path") == true)
        #expect(reasons[2]?.reason.contains("not valid JSON") == true)
        #expect(reasons[3]?.reason.contains("is a string") == true)
        let array = caught(DataFileError.self) { _ = try ManifestSource(path: try file("a.json", "[\n {\"image_path\": \"a\", \"caption\": \"x\"}\n]\n")) }
        #expect(array?.reason.contains("an array") == true && array?.reason.contains("not JSON Lines") == true)
        let pretty = caught(DataFileError.self) { _ = try ManifestSource(path: try file("p.json", "{\n \"image_path\": \"a\",\n \"caption\": \"x\"\n}\n")) }
        #expect(pretty?.reason.contains("spread over several lines") == true)
        // A first line that is an array (or broken) in a file of lines is a bad row, not a document.
        let lines = try ManifestSource(path: try file("l.jsonl", "[\"a\", \"b\"]\n{\"image_path\": \"a\", \"caption\": \"x\"}\n"))
        #expect(lines.count == 2 && (try? lines.record(1).captions) == ["x"])
        let broken = try ManifestSource(path: try file("b.jsonl", "[\"a\", \n{\"image_path\": \"a\", \"caption\": \"x\"}\n"))
        #expect(broken.count == 2 && (try? broken.record(1).captions) == ["x"])
    }

    /// The committed fixture (`Scripts/fixtures/csv_fixtures.py`): every row, its line and its
    /// fields as Python's csv module reads them — through the manifest's own indexer and splitter.
    @Test(arguments: ["tricky.csv", "tricky.tsv"])
    func fixtureReadsAsPythonReadsIt(name: String) throws {
        let expected = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Fixture.path("csv/expected.json")))) as? [String: Any])
        let file = try #require(expected[name] as? [String: Any])
        let pythonRows = try #require(file["rows"] as? [[String: Any]]).map { ($0["line"] as! Int, $0["fields"] as! [String]) }
        let m = try ManifestSource(path: Fixture.path("csv/\(name)"), labelColumn: "label")
        let ours = try rows(m)
        #expect(ours.count == pythonRows.count - 1)   // Python's first row is the header
        for (a, b) in zip(ours, pythonRows.dropFirst()) {
            #expect(a.line == b.0 && a.fields == b.1, "line \(a.line) \(a.fields) vs Python's line \(b.0) \(b.1)")
        }
        #expect(try m.record(0).captions == ["a 12\" ruler"])
    }

    /// Random documents over the characters that matter (quotes, separators, CR, LF, tabs, NUL,
    /// non-ASCII), read by `CSVGrammar` and by Python's csv module in `.deps/python`: the same
    /// rows on the same lines with the same fields, and an error exactly where Python's reader
    /// would end inside a quoted field.
    @Test(.enabled(if: hasPython, "needs .deps/python (Scripts/bootstrap makes it)"))
    func randomDocumentsReadAsPythonReadsThem() throws {
        var random = TestRandom("CSV grammar vs Python", defaultSeed: 1_604)
        let pieces = ["a", "b", "x y", " ", ",", "\t", "\"", "\"\"", "\n", "\r\n", "\r", "é", "\0", "\"a,b\"", ",\"", "\",", "\"\n"]
        var documents: [(text: String, tab: Bool)] = []
        for _ in 0..<600 {
            let count = Int.random(in: 0...24, using: &random)
            documents.append(((0..<count).map { _ in pieces.randomElement(using: &random)! }.joined(), Bool.random(using: &random)))
        }
        let script = """
        import csv, io, json, sys
        def rows(text, delimiter):
            reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
            out = []
            while True:
                line = reader.line_num + 1
                try:
                    row = next(reader)
                except StopIteration:
                    return out
                if row:
                    out.append([line, row])
        result = []
        for text, tab in json.load(sys.stdin):
            d = "\\t" if tab else ","
            plain = rows(text, d)
            # Python (not strict) ends a document that stops inside quotes as if the quote closed:
            # closing it ourselves then changes nothing, whereas after anything else it does.
            unterminated = [r[1] for r in plain] == [r[1] for r in rows(text + '"\\n', d)]
            result.append({"rows": plain, "unterminated": unterminated})
        json.dump(result, sys.stdout)
        """
        let input = try JSONSerialization.data(withJSONObject: documents.map { [$0.text, $0.tab] as [Any] })
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", script]
        let stdin = Pipe(), stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        try process.run()
        stdin.fileHandleForWriting.write(input)
        try stdin.fileHandleForWriting.close()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0)
        let answers = try #require(try JSONSerialization.jsonObject(with: output) as? [[String: Any]])
        var unterminated = 0
        for (document, answer) in zip(documents, answers) {
            let bytes = Array(document.text.utf8)
            var ours: [(Int, [String])] = []
            var failure: CSVGrammar.Failure?
            bytes.withUnsafeBytes { raw in
                var position = 0, line = 1
                do {
                    while let row = try CSVGrammar.scan(raw, from: position, line: line, separator: document.tab ? 9 : 44, collectFields: true) {
                        if !row.isEmptyLine { ours.append((line, row.fields)) }
                        position = row.end
                        line = row.nextLine
                    }
                } catch {
                    failure = error as? CSVGrammar.Failure
                }
            }
            let theirs = (answer["rows"] as! [[Any]]).map { ($0[0] as! Int, $0[1] as! [String]) }
            if answer["unterminated"] as! Bool {
                unterminated += 1
                guard case .unterminatedQuote = failure else {
                    Issue.record("\(document.text.debugDescription): Python ends inside a quoted field, we read \(ours)")
                    continue
                }
            } else {
                #expect(failure == nil, "\(document.text.debugDescription): \(String(describing: failure))")
                #expect(ours.map(\.0) == theirs.map(\.0) && ours.map(\.1) == theirs.map(\.1),
                        "\(document.text.debugDescription) (\(document.tab ? "tab" : "comma")): ours \(ours), Python's \(theirs)")
            }
        }
        print("CSV grammar vs Python: \(documents.count) random documents, \(unterminated) ending inside quotes")
        #expect(unterminated > 20 && unterminated < documents.count - 200)
    }
}
