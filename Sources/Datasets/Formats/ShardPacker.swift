import Foundation

/// Packs a manifest into WebDataset `.tar.zst` shards (what `swift run pack` does): each row
/// becomes `<row>.jpg`, `<row>.png` or `<row>.webp` — named after the image's format as its
/// content shows, whatever the file is called — plus `<row>.txt`, or `<row>.json` when the row
/// has several captions. Every image is decoded before it is packed (JPEGs at 1/8 scale, which
/// still reads every coded block), so shards never carry a sample the loader would skip.
/// A manifest read with a label column adds `<row>.cls` holding the row's class label (when it has one).
public enum ShardPacker {
    /// A row left out, with its manifest file and line (as the loader names rows).
    public struct Rejection: Sendable, Equatable, CustomStringConvertible {
        public enum Kind: Sendable, Equatable {
            /// The image file is missing or unreadable (or a folder, or larger than an image may be).
            case missingImage
            /// The file is there but is no decodable JPEG, PNG or WebP.
            case undecodableImage
            /// The row itself (no image path, empty caption, not JSON).
            case badRow
        }
        public let kind: Kind
        public let issue: SampleIssue
        public var description: String { issue.description }
    }

    public struct Report: Sendable, Equatable {
        public var packed = 0
        public var rejected: [Rejection] = []
        public var shards: [String] = []

        /// "rejected 2 rows: 1 missing image file, 1 image that does not decode".
        public var rejectionSummary: String {
            func count(_ kind: Rejection.Kind) -> Int { rejected.filter { $0.kind == kind }.count }
            let parts = [(count(.missingImage), "missing image file", "missing image files"),
                         (count(.undecodableImage), "image that does not decode", "images that do not decode"),
                         (count(.badRow), "bad row", "bad rows")]
                .filter { $0.0 > 0 }.map { counted($0.0, $0.1, plural: $0.2) }
            return "rejected \(counted(rejected.count, "row"))" + (parts.isEmpty ? "" : ": " + parts.joined(separator: ", "))
        }
    }

    /// With `badSamples: .skip` a bad row is left out and reported through `warn`; with `.fail`
    /// the first one is thrown (a `SampleIssue`) and the shards written so far are removed.
    public static func pack(_ source: ManifestSource, into folder: String, prefix: String, samplesPerShard: Int,
                            badSamples: BadSamplePolicy = .skip, warn: (String) -> Void = { _ in }) throws -> Report {
        let writer = try ShardWriter(folder: folder, prefix: prefix, samplesPerShard: samplesPerShard)
        let decoder = ImageDecoder()
        var report = Report()
        do {
            for row in 0..<source.count {
                let member: (extension: String, data: [UInt8]), caption: (extension: String, data: [UInt8])
                var label: String?
                do {
                    let record: SampleRecord
                    do { record = try source.record(row) } catch let issue as SampleIssue { throw Rejection(kind: .badRow, issue: issue) }
                    let origin = record.origin
                    guard case .file(let path) = record.image else { continue }
                    let bytes: [UInt8]
                    do { bytes = try readImageFile(path) } catch {
                        throw Rejection(kind: .missingImage, issue: SampleIssue(origin: origin, reason: error.description))
                    }
                    do {
                        let format = try bytes.withUnsafeBytes { try decoder.check($0).format }
                        member = (format.fileExtension, bytes)
                    } catch {
                        throw Rejection(kind: .undecodableImage, issue: SampleIssue(origin: origin, reason: "image \(path): \(error)"))
                    }
                    caption = record.captions.count == 1
                        ? ("txt", Array(record.captions[0].utf8))
                        : ("json", [UInt8](try JSONSerialization.data(withJSONObject: record.captions)))
                    label = record.label
                } catch let rejection as Rejection {
                    if badSamples == .fail { throw rejection.issue }
                    report.rejected.append(rejection)
                    warn("warning: skipped \(rejection.issue)")
                    continue
                }
                var members: [(extension: String, data: [UInt8])] = [member, caption]
                if let label, !label.isEmpty { members.append(("cls", Array(label.utf8))) }
                try writer.add(key: String(format: "%09d", row), members: members)
                report.packed += 1
            }
            try writer.close()
        } catch {
            // Under `fail` (or when writing fails) no incomplete set of shards is left behind.
            try? writer.close()
            for shard in writer.writtenShards { try? FileManager.default.removeItem(atPath: shard) }
            throw error
        }
        report.shards = writer.writtenShards
        return report
    }
}

extension ShardPacker.Rejection: Error {}
