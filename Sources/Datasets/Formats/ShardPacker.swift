import Foundation

/// Packs a manifest into WebDataset `.tar.zst` shards (what `swift run pack` does): each row
/// becomes `<row>.jpg` (or the image's own extension) plus `<row>.txt`, or `<row>.json` when the
/// row has several captions, plus `<row>.cls` holding its class label when the manifest is read
/// with a label column and the row has one.
public enum ShardPacker {
    public struct Report: Sendable, Equatable {
        public var packed = 0
        public var skipped: [String] = []
        public var shards: [String] = []
    }

    public static func pack(_ source: ManifestSource, into folder: String, prefix: String, samplesPerShard: Int,
                            badSamples: BadSamplePolicy = .skip, warn: (String) -> Void = { _ in }) throws -> Report {
        let writer = try ShardWriter(folder: folder, prefix: prefix, samplesPerShard: samplesPerShard)
        var report = Report()
        for row in 0..<source.count {
            do {
                let record = try source.record(row)
                guard case .file(let path) = record.image else { continue }
                guard let data = FileManager.default.contents(atPath: path) else {
                    throw SampleIssue(origin: record.origin, reason: "image file \(path) is missing or unreadable")
                }
                let ext = URL(fileURLWithPath: path).pathExtension.lowercased()
                let caption: (String, [UInt8]) = record.captions.count == 1
                    ? ("txt", Array(record.captions[0].utf8))
                    : ("json", [UInt8](try JSONSerialization.data(withJSONObject: record.captions)))
                var members: [(extension: String, data: [UInt8])] = [(ext.isEmpty ? "jpg" : ext, [UInt8](data)), caption]
                if let label = record.label, !label.isEmpty { members.append(("cls", Array(label.utf8))) }
                try writer.add(key: String(format: "%09d", row), members: members)
                report.packed += 1
            } catch let issue as SampleIssue {
                if badSamples == .fail { throw issue }
                report.skipped.append(issue.description)
                warn("warning: skipped \(issue)")
            }
        }
        try writer.close()
        report.shards = writer.writtenShards
        return report
    }
}
