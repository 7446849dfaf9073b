import ArgumentParser
import Data
import Foundation

/// Packs a CSV/JSONL manifest into WebDataset `.tar.zst` shards (`tar --zstd -x` reads them).
@main
struct Pack: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Pack a manifest of image paths and captions into .tar.zst shards.")

    @Option(help: "CSV, TSV or JSONL manifest.") var manifest: String
    @Option(help: "Output folder for the shards.") var out: String
    @Option(help: "Samples per shard.") var shardSize = 10_000
    @Option(help: "Shard file name prefix.") var prefix = "shard"
    @Option(help: "Image column.") var imageColumn = "image_path"
    @Option(help: "Caption column.") var captionColumn = "caption"
    @Option(help: "CSV separator (one character; default: ',' or tab for .tsv).") var separator: String?
    @Option(help: "What to do with a bad row: skip or fail.") var badSamples: BadSamplePolicy = .skip

    func validate() throws {
        guard shardSize > 0 else { throw ValidationError("--shard-size must be positive") }
        if let separator, separator.utf8.count != 1 { throw ValidationError("--separator must be one character") }
    }

    func run() throws {
        let format: ManifestSource.Format? = separator.map { .csv(separator: $0.utf8.first!) }
        let source = try ManifestSource(path: manifest, format: format, imageColumn: imageColumn, captionColumn: captionColumn)
        let writer = try ShardWriter(folder: out, prefix: prefix, samplesPerShard: shardSize)
        var skipped = 0
        for row in 0..<source.count {
            do {
                let record = try source.record(row)
                guard case .file(let path) = record.image else { continue }
                guard let data = FileManager.default.contents(atPath: path) else {
                    throw SampleIssue(origin: record.origin, reason: "image file \(path) is missing or unreadable")
                }
                let ext = URL(fileURLWithPath: path).pathExtension.lowercased()
                let captions = record.captions.count == 1 ? [UInt8](record.captions[0].utf8) : [UInt8](try JSONSerialization.data(withJSONObject: record.captions))
                try writer.add(key: String(format: "%09d", row),
                               members: [(ext.isEmpty ? "jpg" : ext, [UInt8](data)), (record.captions.count == 1 ? "txt" : "json", captions)])
            } catch let issue as SampleIssue {
                if badSamples == .fail { throw ValidationError("\(issue)") }
                skipped += 1
                FileHandle.standardError.write(Data("warning: skipped \(issue)\n".utf8))
            }
        }
        try writer.close()
        print("packed \(source.count - skipped) pairs into \(writer.writtenShards.count) shards in \(out)\(skipped > 0 ? " (\(skipped) rows skipped)" : "")")
    }
}

extension BadSamplePolicy: ExpressibleByArgument {}
