import Foundation

/// Writes samples into numbered `.tar.zst` shards (`train-0000.tar.zst`, ...) of at most
/// `samplesPerShard` samples each, readable by `tar --zstd -x` and by `ShardReader`.
public final class ShardWriter {
    public let folder: String
    public let prefix: String
    public let samplesPerShard: Int
    public private(set) var writtenShards: [String] = []
    private var tar: TarWriter?
    private var zstd: ZstdFileWriter?
    private var inShard = 0

    public init(folder: String, prefix: String, samplesPerShard: Int) throws {
        precondition(samplesPerShard > 0, "shard size must be positive")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        self.folder = folder
        self.prefix = prefix
        self.samplesPerShard = samplesPerShard
    }

    /// Adds one sample: its members are written as `key.<extension>`.
    public func add(key: String, members: [(extension: String, data: [UInt8])]) throws {
        if tar == nil || inShard == samplesPerShard { try startShard() }
        for member in members { try tar!.add(name: "\(key).\(member.extension)", data: member.data) }
        inShard += 1
    }

    /// Finishes the last shard.
    public func close() throws {
        try tar?.finish()
        try zstd?.close()
        tar = nil
        zstd = nil
    }

    private func startShard() throws {
        try close()
        let path = "\(folder)/\(prefix)-\(String(format: "%04d", writtenShards.count)).tar.zst"
        let writer = try ZstdFileWriter(path: path)
        zstd = writer
        tar = TarWriter { try writer.write($0) }
        writtenShards.append(path)
        inShard = 0
    }
}
