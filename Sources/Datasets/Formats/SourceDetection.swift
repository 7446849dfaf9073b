import Foundation

extension DatasetSource {
    /// The manifest suffixes (in any case: `.CSV` is a CSV); anything else is a shard pattern.
    public static let manifestSuffixes = [".csv", ".tsv", ".jsonl", ".json"]

    /// Whether a path as people give it on a command line names a manifest (by its suffix, in
    /// any case) rather than a shard pattern.
    public static func isManifest(_ path: String) -> Bool {
        let lower = path.lowercased()
        return manifestSuffixes.contains(where: lower.hasSuffix)
    }

    /// A source from a path as people give it on a command line: a CSV/TSV/JSON(L) manifest by
    /// its suffix, else a WebDataset shard pattern (`train-{0000..0009}.tar.zst`). The columns
    /// name a manifest's image, caption and label columns (JSONL: fields); shards name their
    /// members by extension instead.
    public static func open(_ path: String, imageColumn: String? = "image_path", captionColumn: String = "caption",
                            labelColumn: String? = nil) throws -> DatasetSource {
        if isManifest(path) {
            return .manifest(try ManifestSource(path: path, imageColumn: imageColumn, captionColumn: captionColumn, labelColumn: labelColumn))
        }
        return .shards(try WebDataset.shards(path))
    }

    /// What a source holds in the way of class labels, as `surveyLabels` found it.
    public struct LabelSurvey: Sendable, Equatable {
        /// Records read, bad ones included.
        public var read = 0
        /// Records read that have a non-empty label.
        public var labelled = 0
        /// The first label that was a class; nil when none was (then every record was read).
        public var firstClassLabel: String?
        /// Up to five distinct labels that were not classes, in the order met.
        public var otherLabels: [String] = []

        public init() {}
    }

    /// Reads records in order, without decoding images, until one has a label `isClass` accepts
    /// (usually the first record), else to the end: enough to tell data that zero-shot evaluation
    /// can score from data it cannot, before any model runs. A manifest read without a label
    /// column has no labels (nothing is read); a damaged shard is passed over (the loader reports it).
    public func surveyLabels(isClass: (String) -> Bool) -> LabelSurvey {
        var survey = LabelSurvey()
        func found(_ record: SampleRecord) -> Bool {
            guard let label = record.label, !label.isEmpty else { return false }
            survey.labelled += 1
            if isClass(label) {
                survey.firstClassLabel = label
                return true
            }
            if survey.otherLabels.count < 5, !survey.otherLabels.contains(label) { survey.otherLabels.append(label) }
            return false
        }
        switch self {
        case .manifest(let manifest):
            guard manifest.labelColumn != nil else { return survey }
            for row in 0..<manifest.count {
                survey.read += 1
                if let record = try? manifest.record(row), found(record) { return survey }
            }
        case .shards(let paths):
            for path in paths {
                guard let reader = try? ShardReader(path: path) else { continue }
                while let next = try? reader.next() {
                    survey.read += 1
                    if case .success(let record) = next, found(record) { return survey }
                }
            }
        }
        return survey
    }
}
