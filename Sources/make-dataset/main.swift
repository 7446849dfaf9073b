import ArgumentParser
import Datasets
import Foundation
import NN
import Torch

/// Generates the embedded dataset (Data/shapes): deterministic, so anyone can re-create the
/// committed shards byte for byte.
@main
struct MakeDataset: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate the synthetic shapes dataset as .tar.zst shards.", version: ClipTune.versionLine)

    @Option(help: "Output folder.") var out = "Data/shapes"
    @Option(help: "Training pairs.") var train = 4_000
    @Option(help: "Validation pairs.") var val = 1_000
    @Option(help: "Samples per shard.") var shardSize = 1_000
    @Option(help: "Image side in pixels.") var imageSize = 64
    @Option(help: "JPEG quality.") var quality = 85
    @Option(help: "Random seed.") var seed: UInt64 = 2026
    @Flag(help: ArgumentHelp("Replace the train-/val- shards and classes.json an earlier make-dataset left in --out.",
                             discussion: "Without it they are refused; other files in --out (a README) are never touched."))
    var overwrite = false

    func validate() throws {
        guard train > 0, val > 0, shardSize > 0, imageSize >= 32, (1...100).contains(quality) else {
            throw ValidationError("--train, --val and --shard-size must be positive, --image-size ≥ 32, --quality in 1...100")
        }
    }

    /// The names this command writes: `train-NNNN.tar.zst`, `val-NNNN.tar.zst`, `classes.json`.
    static func isOwnName(_ name: String) -> Bool {
        if name == "classes.json" { return true }
        for split in ["train-", "val-"] where name.hasPrefix(split) && name.hasSuffix(".tar.zst") {
            let number = name.dropFirst(split.count).dropLast(".tar.zst".count)
            return number.count >= 4 && number.allSatisfy { $0.isASCII && $0.isNumber }
        }
        return false
    }

    /// An earlier output: a Zstandard shard, or a classes.json with classes and templates.
    static func isEarlierOutput(_ path: String) -> Bool {
        if path.hasSuffix("/classes.json") {
            guard let data = FileManager.default.contents(atPath: path), data.count < 1 << 20,
                  let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return false }
            return json["classes"] is [Any] && json["templates"] is [Any]
        }
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        return (try? handle.read(upToCount: 4)).map { [UInt8]($0) } == [0x28, 0xB5, 0x2F, 0xFD]
    }

    func run() throws {
        // Written into a temporary sibling and moved in at the end: a failed run leaves --out as it was.
        let plan = try OutputLocation.check(out, kind: .files(owns: Self.isOwnName, isPrevious: Self.isEarlierOutput,
                                                              previous: "a shapes dataset (train-/val- shards, classes.json)"), overwrite: overwrite)
        let temporary = try OutputLocation.temporarySibling(of: plan)
        do {
            try make(into: temporary)
            try OutputLocation.commit(temporary, to: plan, wholeFolder: false)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
    }

    func make(into folder: String) throws {
        let world = ShapesWorld(imageSize: imageSize)
        let encoder = JPEGEncoder()
        var total = 0
        for (split, name, count) in [(0, "train", train), (1, "val", val)] {
            let writer = try ShardWriter(folder: folder, prefix: name, samplesPerShard: shardSize)
            for i in 0..<count {
                let sample = world.sample(seed: seed, split: split, index: i)
                let json = try JSONSerialization.data(withJSONObject: ["captions": sample.captions, "label": sample.label], options: [.sortedKeys])
                try writer.add(key: String(format: "%@-%06d", name, i),
                               members: [("jpg", try encoder.encode(sample.image, quality: quality)), ("json", [UInt8](json))])
            }
            try writer.close()
            for shard in writer.writtenShards {
                total += (try FileManager.default.attributesOfItem(atPath: shard)[.size] as? Int) ?? 0
            }
            print("\(name): \(counted(count, "pair")) in \(counted(writer.writtenShards.count, "shard"))")
        }
        let classes: [String: Any] = ["classes": ShapesWorld.shapes, "templates": ShapesWorld.templates, "label_field": "label"]
        try JSONSerialization.data(withJSONObject: classes, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: "\(folder)/classes.json"))
        print(String(format: "%.1f MB of shards in %@", Double(total) / 1e6, out))
    }
}
