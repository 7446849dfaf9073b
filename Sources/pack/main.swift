import ArgumentParser
import Datasets
import Foundation
import NN
import Torch

/// Packs a CSV/JSONL manifest into WebDataset `.tar.zst` shards (`tar --zstd -x` reads them).
@main
struct Pack: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pack a manifest of image paths and captions into .tar.zst shards.",
        discussion: """
        Every image is decoded before it is packed (JPEG, PNG or WebP, told apart by content; JPEGs \
        at 1/8 scale, which still reads every coded block), so the shards hold no sample that \
        training would skip. Each row becomes <row>.jpg, .png or .webp (after the decoded format) \
        and <row>.txt, or <row>.json for several captions. Rows that cannot be packed are named \
        by manifest file and line, and the summary says how many were rejected and why.
        """,
        version: ClipTune.versionLine)

    @Option(help: "CSV, TSV or JSONL manifest.") var manifest: String
    @Option(help: "Output folder for the shards.") var out: String
    @Option(help: "Samples per shard.") var shardSize = 10_000
    @Option(help: "Shard file name prefix.") var prefix = "shard"
    @Option(help: "Image column.") var imageColumn = "image_path"
    @Option(help: "Caption column.") var captionColumn = "caption"
    @Option(help: "Class label column (JSONL: field), written as each sample's .cls member for zero-shot evaluation.") var labelColumn: String?
    @Option(help: "CSV separator (one character; default: ',' or tab for .tsv).") var separator: String?
    @Option(help: ArgumentHelp("What to do with a bad row (missing image file, image that does not decode, empty caption).",
                               discussion: "skip: leave it out with a warning naming its manifest file and line; fail: stop there and remove the shards written so far."))
    var badSamples: BadSamplePolicy = .skip
    @Flag(help: ArgumentHelp("Replace the <prefix>-NNNN.tar.zst shards an earlier pack left in --out.",
                             discussion: "Without it such shards are refused; files of other names in --out are never touched."))
    var overwrite = false

    func validate() throws {
        guard shardSize > 0 else { throw ValidationError("--shard-size must be positive") }
        if let separator, separator.utf8.count != 1 { throw ValidationError("--separator must be one character") }
        if prefix.isEmpty || prefix.contains("/") || prefix.hasPrefix(".") {
            throw ValidationError("--prefix must be a plain file name (no '/', not starting with '.'), got '\(prefix)'")
        }
    }

    /// `<prefix>-NNNN.tar.zst`, the names this command writes.
    func isShardName(_ name: String) -> Bool {
        guard name.hasPrefix(prefix + "-"), name.hasSuffix(".tar.zst") else { return false }
        let number = name.dropFirst(prefix.count + 1).dropLast(".tar.zst".count)
        return number.count >= 4 && number.allSatisfy(\.isASCII) && number.allSatisfy(\.isNumber)
    }

    func run() throws {
        let format: ManifestSource.Format? = separator.map { .csv(separator: $0.utf8.first!) }
        let source = try ManifestSource(path: manifest, format: format, imageColumn: imageColumn, captionColumn: captionColumn,
                                        labelColumn: labelColumn)
        // Shards are written into a temporary sibling and moved in only when all are done, so a
        // failed or interrupted pack leaves --out as it was.
        let plan = try OutputLocation.check(out, kind: .files(owns: isShardName, isPrevious: isZstandardFile,
                                                              previous: "shards named \(prefix)-NNNN.tar.zst"), overwrite: overwrite)
        let temporary = try OutputLocation.temporarySibling(of: plan)
        let report: ShardPacker.Report
        do {
            report = try ShardPacker.pack(source, into: temporary, prefix: prefix, samplesPerShard: shardSize, badSamples: badSamples) {
                FileHandle.standardError.write(Data("\($0)\n".utf8))
            }
            try OutputLocation.commit(temporary, to: plan, wholeFolder: false)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
        print("packed \(counted(report.packed, "pair")) into \(counted(report.shards.count, "shard")) in \(out)" + (report.rejected.isEmpty ? "" : "; \(report.rejectionSummary)"))
    }
}

extension BadSamplePolicy: ExpressibleByArgument {}

/// Whether `path` starts with the Zstandard frame magic (what pack and make-dataset write).
func isZstandardFile(_ path: String) -> Bool {
    guard let handle = FileHandle(forReadingAtPath: path) else { return false }
    defer { try? handle.close() }
    return (try? handle.read(upToCount: 4)).map { [UInt8]($0) } == [0x28, 0xB5, 0x2F, 0xFD]
}
