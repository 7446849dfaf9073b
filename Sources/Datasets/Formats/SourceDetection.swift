import Foundation

extension DatasetSource {
    /// The manifest suffixes; anything else is a shard pattern.
    public static let manifestSuffixes = [".csv", ".tsv", ".jsonl", ".json"]

    /// A source from a path as people give it on a command line: a CSV/TSV/JSON(L) manifest by
    /// its suffix, else a WebDataset shard pattern (`train-{0000..0009}.tar.zst`).
    public static func open(_ path: String, imageColumn: String? = "image_path", captionColumn: String = "caption",
                            labelColumn: String? = nil) throws -> DatasetSource {
        if manifestSuffixes.contains(where: path.hasSuffix) {
            return .manifest(try ManifestSource(path: path, imageColumn: imageColumn, captionColumn: captionColumn, labelColumn: labelColumn))
        }
        return .shards(try WebDataset.shards(path))
    }
}
