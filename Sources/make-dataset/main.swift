import ArgumentParser
import Datasets
import Foundation
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

    func validate() throws {
        guard train > 0, val > 0, shardSize > 0, imageSize >= 32, (1...100).contains(quality) else {
            throw ValidationError("--train, --val and --shard-size must be positive, --image-size ≥ 32, --quality in 1...100")
        }
    }

    func run() throws {
        let world = ShapesWorld(imageSize: imageSize)
        let encoder = JPEGEncoder()
        var total = 0
        for (split, name, count) in [(0, "train", train), (1, "val", val)] {
            let writer = try ShardWriter(folder: out, prefix: name, samplesPerShard: shardSize)
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
        try JSONSerialization.data(withJSONObject: classes, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: "\(out)/classes.json"))
        print(String(format: "%.1f MB of shards in %@", Double(total) / 1e6, out))
    }
}
