import Foundation
import Testing
@testable import Datasets

/// Writes `count` small JPEG samples (key i, caption "caption i") into shards.
func makeShards(_ folder: String, prefix: String = "train", count: Int, perShard: Int, imageSize: Int = 32) throws -> [String] {
    let writer = try ShardWriter(folder: folder, prefix: prefix, samplesPerShard: perShard)
    let encoder = JPEGEncoder()
    for i in 0..<count {
        let image = RGBImage(width: imageSize, height: imageSize, fill: (UInt8(i % 256), UInt8((i * 7) % 256), 128))
        try writer.add(key: String(format: "%06d", i), members: [("jpg", try encoder.encode(image)), ("txt", Array("caption \(i)".utf8))])
    }
    try writer.close()
    return writer.writtenShards
}

@Suite("Shards and manifests")
struct SourceTests {
    @Test func shardsRoundTripAndStockTarReadsThem() throws {
        let folder = temporaryFolder()
        let shards = try makeShards(folder, count: 25, perShard: 10)
        #expect(shards.map { URL(fileURLWithPath: $0).lastPathComponent } == ["train-0000.tar.zst", "train-0001.tar.zst", "train-0002.tar.zst"])
        var keys: [String] = []
        for shard in shards {
            let reader = try ShardReader(path: shard)
            while let next = try reader.next() {
                let record = try next.get()
                keys.append(record.origin)
                #expect(record.captions.count == 1 && record.captions[0].hasPrefix("caption "))
            }
        }
        #expect(keys.count == 25)
        #expect(keys.first!.hasSuffix("train-0000.tar.zst:000000"))
        // GNU tar extracts them.
        let extract = temporaryFolder()
        let tar = Process()
        tar.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        tar.arguments = ["tar", "--zstd", "-xf", shards[1], "-C", extract]
        try tar.run()
        tar.waitUntilExit()
        #expect(tar.terminationStatus == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: extract).sorted().prefix(2) == ["000010.jpg", "000010.txt"])
        #expect(try String(contentsOfFile: "\(extract)/000013.txt", encoding: .utf8) == "caption 13")
    }

    @Test func patternsExpand() throws {
        let folder = temporaryFolder()
        _ = try makeShards(folder, count: 30, perShard: 10)
        #expect(try WebDataset.shards("train-{0000..0002}.tar.zst", relativeTo: folder).count == 3)
        #expect(try WebDataset.shards("train-{0001,0002}.tar.zst", relativeTo: folder).count == 2)
        #expect(try WebDataset.shards("\(folder)/train-*.tar.zst").count == 3)
        #expect(try WebDataset.expandBraces("a-{08..11}.tar") == ["a-08.tar", "a-09.tar", "a-10.tar", "a-11.tar"])
        let missing = #expect(throws: DataFileError.self) { try WebDataset.shards("train-{0000..0005}.tar.zst", relativeTo: folder) }
        #expect(missing?.file.hasSuffix("train-0003.tar.zst") == true)
        #expect(throws: DataFileError.self) { try WebDataset.shards("nothing-*.tar", relativeTo: folder) }
        #expect(WebDataset.split("dir/abc.def.jpg") == ("dir/abc", "def.jpg"))
    }

    @Test func truncatedShardIsReportedWithItsFile() throws {
        let folder = temporaryFolder()
        let shard = try makeShards(folder, count: 10, perShard: 10)[0]
        let bytes = try Data(contentsOf: URL(fileURLWithPath: shard))
        for cut in [bytes.count / 2, bytes.count - 20] {
            try bytes.prefix(cut).write(to: URL(fileURLWithPath: shard))
            let reader = try ShardReader(path: shard)
            let error = #expect(throws: DataFileError.self) { while try reader.next() != nil {} }
            #expect(error?.file == shard)
            #expect(error?.reason.contains("truncated") == true)
        }
    }

    @Test func badSamplesInShardsNameTheKey() throws {
        let folder = temporaryFolder()
        let writer = try ShardWriter(folder: folder, prefix: "x", samplesPerShard: 10)
        try writer.add(key: "noimage", members: [("txt", Array("a caption".utf8))])
        try writer.add(key: "nocaption", members: [("jpg", try JPEGEncoder().encode(RGBImage(width: 8, height: 8)))])
        try writer.add(key: "emptycaption", members: [("jpg", [1, 2, 3]), ("txt", Array("  \n".utf8))])
        try writer.add(key: "json", members: [("jpg", [1]), ("json", Array(#"{"captions": ["one", "two"], "label": "cat"}"#.utf8))])
        try writer.close()
        let reader = try ShardReader(path: writer.writtenShards[0])
        var results: [Result<SampleRecord, SampleIssue>] = []
        while let r = try reader.next() { results.append(r) }
        #expect(results.count == 4)
        for (i, key) in ["noimage", "nocaption", "emptycaption"].enumerated() {
            guard case .failure(let issue) = results[i] else { Issue.record("\(key) was accepted"); continue }
            #expect(issue.origin.hasSuffix(":\(key)"))
        }
        let record = try results[3].get()
        #expect(record.captions == ["one", "two"] && record.label == "cat")
    }

    @Test func csvAndJSONLManifests() throws {
        let folder = temporaryFolder()
        let csv = """
        image_path,caption,label
        a.jpg,"a caption, with a comma",x
        /abs/b.jpg,"she said ""hi""
        on two lines",y
        c.jpg,,z
        ,no image,z

        """
        try csv.write(toFile: "\(folder)/m.csv", atomically: true, encoding: .utf8)
        let m = try ManifestSource(path: "\(folder)/m.csv", labelColumn: "label")
        #expect(m.count == 4)
        let first = try m.record(0)
        guard case .file(let path) = first.image else { Issue.record("expected a file"); return }
        #expect(path == "\(folder)/a.jpg")
        #expect(first.captions == ["a caption, with a comma"] && first.label == "x")
        #expect(try m.record(1).captions == ["she said \"hi\"\non two lines"])
        let empty = #expect(throws: SampleIssue.self) { try m.record(2) }
        #expect(empty?.origin == "\(folder)/m.csv:5")
        #expect(empty?.reason.contains("empty caption") == true)
        let noImage = #expect(throws: SampleIssue.self) { try m.record(3) }
        #expect(noImage?.reason.contains("image column") == true)

        try "file\ttext\nx.jpg\thello\n".write(toFile: "\(folder)/m.tsv", atomically: true, encoding: .utf8)
        let tsv = try ManifestSource(path: "\(folder)/m.tsv", imageColumn: "file", captionColumn: "text")
        #expect(try tsv.record(0).captions == ["hello"])

        let missing = #expect(throws: DataFileError.self) { try ManifestSource(path: "\(folder)/m.csv", captionColumn: "text") }
        #expect(missing?.reason.contains("no caption column 'text'") == true)
        #expect(missing?.reason.contains("image_path, caption, label") == true)

        let jsonl = """
        {"image_path": "a.jpg", "caption": ["one", "two"]}
        {"image_path": "b.jpg", "caption": ""}
        not json
        """
        try jsonl.write(toFile: "\(folder)/m.jsonl", atomically: true, encoding: .utf8)
        let j = try ManifestSource(path: "\(folder)/m.jsonl")
        #expect(j.count == 3)
        #expect(try j.record(0).captions == ["one", "two"])
        #expect(throws: SampleIssue.self) { try j.record(1) }
        let notJSON = #expect(throws: SampleIssue.self) { try j.record(2) }
        #expect(notJSON?.origin == "\(folder)/m.jsonl:3")
        #expect(throws: DataFileError.self) { try ManifestSource(path: "\(folder)/absent.csv") }
    }
}

@Suite("pack")
struct PackTests {
    @Test func manifestBecomesShardsThatReadBack() throws {
        let folder = temporaryFolder()
        let encoder = JPEGEncoder()
        for i in 0..<5 { try Data(try encoder.encode(RGBImage(width: 8, height: 8, fill: (UInt8(i * 40), 0, 0)))).write(to: URL(fileURLWithPath: "\(folder)/\(i).jpg")) }
        try "image_path,caption\n0.jpg,zero\n1.jpg,one\nmissing.jpg,gone\n3.jpg,three\n4.jpg,four\n".write(toFile: "\(folder)/m.csv", atomically: true, encoding: .utf8)
        let report = try ShardPacker.pack(try ManifestSource(path: "\(folder)/m.csv"), into: "\(folder)/shards", prefix: "train", samplesPerShard: 3)
        #expect(report.packed == 4 && report.rejected.count == 1 && report.shards.count == 2)
        #expect(report.rejected[0].kind == .missingImage && report.rejected[0].issue.origin == "\(folder)/m.csv:4")
        #expect(report.rejectionSummary == "rejected 1 row: 1 missing image file")
        var captions: [String] = []
        for shard in report.shards {
            let reader = try ShardReader(path: shard)
            while let r = try reader.next() { captions += try r.get().captions }
        }
        #expect(captions == ["zero", "one", "three", "four"])
        #expect(throws: SampleIssue.self) {
            try ShardPacker.pack(try ManifestSource(path: "\(folder)/m.csv"), into: "\(folder)/strict", prefix: "x", samplesPerShard: 3, badSamples: .fail)
        }
    }

    /// Every image is decoded at pack time: members are named after the format the content
    /// shows, and undecodable images are rejected with their manifest line.
    @Test func everyImageIsCheckedAndNamedByItsContent() throws {
        let folder = temporaryFolder()
        func fixture(_ name: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: Fixture.path(name))) }
        let png = try fixture("images/rgba8.png"), webp = try fixture("images/webp_lossy_alpha.webp"), jpeg = try fixture("jpeg/photo.jpg")
        let files: [(String, Data)] = [
            ("a.jpg", jpeg), ("b.PNG", png), ("misnamed.jpg", png), ("c.webp", webp),
            ("truncated.jpg", jpeg.prefix(jpeg.count - 300)), ("corrupt.png", png.prefix(png.count - 50)),
            ("text.png", Data("not an image".utf8)), ("animation.gif", Data("GIF89a".utf8) + Data(count: 40)),
        ]
        for (name, data) in files { try data.write(to: URL(fileURLWithPath: "\(folder)/\(name)")) }
        var manifest = "image_path,caption\n"
        for (name, _) in files { manifest += "\(name),picture \(name)\n" }
        manifest += "a.jpg,\n"   // an empty caption
        try manifest.write(toFile: "\(folder)/m.csv", atomically: true, encoding: .utf8)
        var warnings: [String] = []
        let report = try ShardPacker.pack(try ManifestSource(path: "\(folder)/m.csv"), into: "\(folder)/shards", prefix: "p",
                                          samplesPerShard: 10) { warnings.append($0) }
        #expect(report.packed == 4)
        #expect(report.rejected.map(\.issue.origin) == [6, 7, 8, 9, 10].map { "\(folder)/m.csv:\($0)" })
        #expect(report.rejected.map(\.kind) == [.undecodableImage, .undecodableImage, .undecodableImage, .undecodableImage, .badRow])
        #expect(report.rejected[0].issue.reason.contains("truncated.jpg") && report.rejected[0].issue.reason.contains("JPEG"))
        #expect(report.rejected[1].issue.reason.contains("corrupt.png") && report.rejected[1].issue.reason.contains("PNG"))
        #expect(report.rejected[2].issue.reason.contains("not a JPEG, PNG or WebP"))
        #expect(report.rejected[3].issue.reason.contains("GIF"))
        #expect(report.rejectionSummary == "rejected 5 rows: 4 images that do not decode, 1 bad row")
        #expect(warnings.count == 5 && warnings.allSatisfy { $0.hasPrefix("warning: skipped \(folder)/m.csv:") })
        // The members: extensions from the content, bytes unchanged; every sample reads back and decodes.
        let reader = try ShardReader(path: report.shards[0])
        var members: [String] = []
        let decoder = ImageDecoder()
        while let next = try reader.next() {
            let record = try next.get()
            guard case .bytes(let bytes) = record.image else { Issue.record("no image bytes"); continue }
            members.append("\(record.origin.split(separator: ":").last!).\(try bytes.withUnsafeBytes { try decoder.header($0) }.format.fileExtension)")
        }
        #expect(members == ["000000000.jpg", "000000001.png", "000000002.png", "000000003.webp"])
        let extract = temporaryFolder()
        let tar = Process()
        tar.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        tar.arguments = ["tar", "--zstd", "-xf", report.shards[0], "-C", extract]
        try tar.run()
        tar.waitUntilExit()
        #expect(try FileManager.default.contentsOfDirectory(atPath: extract).filter { !$0.hasSuffix(".txt") }.sorted() == members)
        #expect(try Data(contentsOf: URL(fileURLWithPath: "\(extract)/000000002.png")) == png)

        // Under `fail` the first bad row stops the pack, and no shard is left behind.
        let failure = #expect(throws: SampleIssue.self) {
            try ShardPacker.pack(try ManifestSource(path: "\(folder)/m.csv"), into: "\(folder)/strict", prefix: "x", samplesPerShard: 2, badSamples: .fail)
        }
        #expect(failure?.origin == "\(folder)/m.csv:6")
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(folder)/strict").isEmpty)
    }

    /// With a label column, each sample's class label travels as a `.cls` member (none for an
    /// empty label), and the shards read back with the same labels.
    @Test func labelsTravelAsClsMembers() throws {
        let folder = temporaryFolder()
        let encoder = JPEGEncoder()
        for i in 0..<3 { try Data(try encoder.encode(RGBImage(width: 8, height: 8, fill: (UInt8(i * 40), 0, 0)))).write(to: URL(fileURLWithPath: "\(folder)/\(i).jpg")) }
        try "image_path,caption,kind\n0.jpg,zero,circle\n1.jpg,one,\n2.jpg,two,square\n".write(toFile: "\(folder)/m.csv", atomically: true, encoding: .utf8)
        let report = try ShardPacker.pack(try ManifestSource(path: "\(folder)/m.csv", labelColumn: "kind"), into: "\(folder)/shards", prefix: "p", samplesPerShard: 10)
        let reader = try ShardReader(path: report.shards[0])
        var labels: [String?] = []
        while let r = try reader.next() { labels.append(try r.get().label) }
        #expect(labels == ["circle", nil, "square"])
        // Without one, no labels.
        let plain = try ShardPacker.pack(try ManifestSource(path: "\(folder)/m.csv"), into: "\(folder)/plain", prefix: "p", samplesPerShard: 10)
        let plainReader = try ShardReader(path: plain.shards[0])
        while let r = try plainReader.next() { #expect(try r.get().label == nil) }
    }
}

@Suite("counted")
struct CountedTests {
    @Test func nounsAgreeWithTheirCount() {
        #expect(counted(1, "step") == "1 step")
        #expect(counted(2, "step") == "2 steps")
        #expect(counted(0, "sample") == "0 samples")
        #expect(counted(1, "class", plural: "classes") == "1 class" && counted(3, "class", plural: "classes") == "3 classes")
        // The number formatted as the caller likes (thousands separators, say).
        #expect(counted(12_345, "log point", number: { $0 == 12_345 ? "12,345" : "\($0)" }) == "12,345 log points")
        #expect(counted(1, "evaluation", number: { "one (\($0))" }) == "one (1) evaluation")
    }
}
