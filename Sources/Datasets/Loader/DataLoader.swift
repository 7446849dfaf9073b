import Foundation
import Torch

/// What to do with a sample that cannot be used (missing file, corrupt JPEG, empty caption,
/// truncated shard): `skip` warns, counts it and goes on; `fail` stops with the message.
public enum BadSamplePolicy: String, Codable, Sendable, CaseIterable { case skip, fail }

/// Turns captions into token ids and an attention mask (the model's tokenizer).
public protocol CaptionTokenizer: Sendable {
    func encode(_ captions: [String]) -> (ids: Tensor, attentionMask: Tensor)
}

/// Where samples come from.
public enum DatasetSource: Sendable {
    case manifest(ManifestSource)
    /// WebDataset shard paths (see `WebDataset.shards`).
    case shards([String])
}

public struct DataLoaderOptions: Sendable {
    public var batchSize: Int
    /// Decode-and-augment threads.
    public var threads: Int
    public var seed: UInt64
    public var shuffle: Bool
    public var dropLast: Bool
    /// Batches decoded ahead of the consumer.
    public var prefetchBatches: Int
    public var badSamples: BadSamplePolicy
    /// Shards: samples held for shuffling (manifests are shuffled exactly).
    public var shuffleBuffer: Int
    /// Data-parallel training: this process's share of each global batch (see `LoaderShard`).
    public var shard = LoaderShard(rank: 0, count: 1)

    public init(batchSize: Int, threads: Int = 2, seed: UInt64 = 0, shuffle: Bool = true, dropLast: Bool = false,
                prefetchBatches: Int = 4, badSamples: BadSamplePolicy = .skip, shuffleBuffer: Int = 2_000) {
        self.batchSize = batchSize
        self.threads = threads
        self.seed = seed
        self.shuffle = shuffle
        self.dropLast = dropLast
        self.prefetchBatches = prefetchBatches
        self.badSamples = badSamples
        self.shuffleBuffer = shuffleBuffer
    }
}

/// One collated batch.
public struct Batch: @unchecked Sendable {
    /// [batch, 3, size, size] float32, normalised; [batch, 0] for a text-only loader.
    public let pixels: Tensor
    /// The same augmented images through the loader's second pipeline (a teacher's own size and
    /// normalisation), when it has one.
    public let teacherPixels: Tensor?
    public let captions: [String]
    /// [batch, tokens] int64 and its mask, when a tokenizer was given.
    public let tokenIds: Tensor?
    public let attentionMask: Tensor?
    public let labels: [String?]
    public let origins: [String]
    public let epoch: Int
    /// Samples of this epoch consumed after this batch, counting skipped ones: resume here.
    public let position: Int
    public var count: Int { captions.count }

    public init(pixels: Tensor, teacherPixels: Tensor?, captions: [String], tokenIds: Tensor?, attentionMask: Tensor?,
                labels: [String?], origins: [String], epoch: Int, position: Int) {
        self.pixels = pixels
        self.teacherPixels = teacherPixels
        self.captions = captions
        self.tokenIds = tokenIds
        self.attentionMask = attentionMask
        self.labels = labels
        self.origins = origins
        self.epoch = epoch
        self.position = position
    }

    /// The batch with its tensors on `device` (itself on the CPU). `nonBlocking` copies from
    /// pinned memory return at once and overlap whatever the host does next.
    public func on(_ device: Device, nonBlocking: Bool = false) -> Batch {
        guard device != pixels.device else { return self }
        return Batch(pixels: pixels.on(device, nonBlocking: nonBlocking), teacherPixels: teacherPixels?.on(device, nonBlocking: nonBlocking),
                     captions: captions, tokenIds: tokenIds?.on(device, nonBlocking: nonBlocking),
                     attentionMask: attentionMask?.on(device, nonBlocking: nonBlocking),
                     labels: labels, origins: origins, epoch: epoch, position: position)
    }
}

/// One process's share of the samples when `count` processes train together: the epoch's order
/// is the same on every process, cut into global batches of `batchSize × count` samples, and
/// process `rank` takes block `rank` of each (`batchSize` consecutive samples). The blocks in
/// rank order are the batch a single process would take, so N processes see every sample once
/// per epoch, and each decodes only its own. Resume positions are global.
public struct LoaderShard: Sendable, Equatable {
    public var rank: Int
    public var count: Int

    public init(rank: Int, count: Int) {
        precondition(count >= 1 && (0..<count).contains(rank), "rank \(rank) of \(count)")
        self.rank = rank
        self.count = count
    }

    /// Whether the sample at `sequence` in the epoch's order is this process's, for batches of `batchSize`.
    func owns(_ sequence: Int, batchSize: Int) -> Bool {
        count == 1 || (sequence % (batchSize * count)) / batchSize == rank
    }
}

/// A seeded, multi-threaded image-text loader. Threads decode and augment samples into a
/// bounded window; the consumer takes them in a fixed order, so batches are identical whatever
/// the thread count: every random choice derives from (seed, epoch, sample).
public final class DataLoader: @unchecked Sendable {
    public let source: DatasetSource
    /// nil: text only (images are neither read nor decoded).
    public let pipeline: ImagePipeline?
    /// The teacher's view: a second preprocessing of each image with the same random
    /// augmentation (distillation teachers with their own image size or normalisation).
    public let teacherView: ImagePipeline?
    public let captionAugmenter: TextAugmenter?
    public let tokenizer: CaptionTokenizer?
    public let options: DataLoaderOptions
    /// The device batches go to: CUDA makes them page-locked ("pinned"), so that copies to the
    /// GPU can be asynchronous. Set before an epoch starts.
    public var pinFor: Device = .cpu

    public init(source: DatasetSource, pipeline: ImagePipeline?, teacherView: ImagePipeline? = nil, captionAugmenter: TextAugmenter? = nil,
                tokenizer: CaptionTokenizer? = nil, options: DataLoaderOptions) {
        precondition(options.batchSize > 0 && options.threads > 0 && options.prefetchBatches > 0, "batch size, threads and prefetch must be positive")
        precondition(pipeline != nil || teacherView == nil, "a teacher view needs images")
        self.source = source
        self.pipeline = pipeline
        self.teacherView = teacherView
        self.captionAugmenter = captionAugmenter
        self.tokenizer = tokenizer
        self.options = options
    }

    /// Samples per epoch, when known without reading the data (manifests).
    public var sampleCount: Int? {
        if case .manifest(let m) = source { return m.count }
        return nil
    }

    /// Iterates one epoch, from `position` samples in (for resuming).
    public func epoch(_ epoch: Int, startingAt position: Int = 0) -> EpochIterator {
        EpochIterator(loader: self, epoch: epoch, start: position)
    }
}

/// Thrown by `EpochIterator.next(stopWhen:)` when asked to stop while waiting for data.
public struct LoadingInterrupted: Error, CustomStringConvertible {
    public var description: String { "interrupted while waiting for data" }
}

/// The batches of one epoch. Stops its threads when finished or released.
public final class EpochIterator {
    public let epoch: Int
    /// Bad samples seen so far (their messages name file and row or shard and key).
    public private(set) var issues: [SampleIssue] = []
    public var skippedCount: Int { issues.count }
    /// Seconds the consumer spent waiting for decoded samples.
    public private(set) var waitSeconds = 0.0

    private let loader: DataLoader
    private let pipe: SamplePipe
    private var position: Int
    private var finished = false

    init(loader: DataLoader, epoch: Int, start: Int) {
        self.loader = loader
        self.epoch = epoch
        position = start
        pipe = SamplePipe(window: loader.options.batchSize * loader.options.prefetchBatches, firstSequence: start)
        let producer = Thread { [pipe] in Producer(loader: loader, epoch: epoch, start: start, pipe: pipe).run() }
        producer.name = "cliptune-data-producer"
        producer.start()
        for i in 0..<loader.options.threads {
            let worker = Thread { [pipe] in Worker(loader: loader, epoch: epoch, pipe: pipe).run() }
            worker.name = "cliptune-data-worker-\(i)"
            worker.start()
        }
    }

    deinit { pipe.cancel() }

    /// The next batch; nil at the end of the epoch. Throws the first bad sample under `fail`,
    /// or a damaged manifest/shard. While it waits for samples it asks `stopWhen` a few times a
    /// second, and throws `LoadingInterrupted` when it says yes (Ctrl-C during a slow read).
    public func next(stopWhen: (() -> Bool)? = nil) throws -> Batch? {
        guard !finished else { return nil }
        // Asked before anything is taken too, so an interrupt never depends on whether samples happen to be ready.
        if stopWhen?() == true { throw LoadingInterrupted() }
        let options = loader.options
        var pixels = [Float](), teacherViewPixels = [Float]()
        pixels.reserveCapacity(options.batchSize * (loader.pipeline?.sampleCount ?? 0))
        var captions: [String] = [], labels: [String?] = [], origins: [String] = []
        // Sharded: exactly one global batch of positions, whatever was skipped in it, so every
        // process ends its batch at the same place (a bad sample makes this process's batch
        // shorter, not another process's later). Unsharded: the next `batchSize` good samples.
        let windowEnd = options.shard.count > 1 ? position + options.batchSize * options.shard.count : nil
        while windowEnd.map({ position < $0 }) ?? (captions.count < options.batchSize) {
            let started = Date()
            let taken = pipe.take(position, stopWhen: stopWhen)
            waitSeconds += Date().timeIntervalSince(started)
            guard case .item(let item) = taken else {
                if case .stopped = taken { throw LoadingInterrupted() }
                finished = true
                break
            }
            position += 1
            switch item {
            case .success(let sample):
                pixels += sample.pixels
                teacherViewPixels += sample.teacherPixels
                captions.append(sample.caption)
                labels.append(sample.label)
                origins.append(sample.origin)
            case .failure(let failure):
                if case .fatal(let error) = failure {
                    finished = true
                    pipe.cancel()
                    throw error
                }
                guard case .sample(let issue) = failure else { continue }
                if options.badSamples == .fail {
                    finished = true
                    pipe.cancel()
                    throw issue
                }
                issues.append(issue)
                if issues.count <= 20 { FileHandle.standardError.write(Data("warning: skipped \(issue)\n".utf8)) }
            }
        }
        if windowEnd != nil {
            // The end of the data inside a global batch drops it on every process alike.
            // A block whose samples were all bad is an empty batch: every process takes a step
            // together (its loss terms are sums over its rows, so none adds nothing).
            if finished && (options.dropLast || captions.isEmpty) { return nil }
        } else if captions.isEmpty || (options.dropLast && captions.count < options.batchSize) { return nil }
        func images(_ pipeline: ImagePipeline?, _ floats: [Float]) -> Tensor? {
            pipeline.map { Tensor(floats, shape: [captions.count, 3, $0.preprocessing.size, $0.preprocessing.size]) }
        }
        let tokens = loader.tokenizer?.encode(captions)
        let pin = loader.pinFor
        return Batch(pixels: (images(loader.pipeline, pixels) ?? Tensor.zeros([captions.count, 0])).pinnedIfUseful(for: pin),
                     teacherPixels: images(loader.teacherView, teacherViewPixels)?.pinnedIfUseful(for: pin),
                     captions: captions, tokenIds: tokens?.ids, attentionMask: tokens?.attentionMask,
                     labels: labels, origins: origins, epoch: epoch, position: position)
    }
}

// MARK: - Internals

struct ProcessedSample: Sendable {
    let pixels: [Float]
    let teacherPixels: [Float]
    let caption: String
    let label: String?
    let origin: String
}

enum LoadFailure: Error {
    case sample(SampleIssue)
    /// Another process's sample (`LoaderShard`): neither decoded nor reported.
    case elsewhere
    /// Not a sample: the whole source failed (fail policy) — stops the epoch.
    case fatal(Error)
}

enum WorkItem: @unchecked Sendable {
    case row(Int)
    case record(SampleRecord)
    case failed(LoadFailure)
    /// Another process's sample: only its place in the order matters here.
    case elsewhere
}

/// The bounded hand-over between producer, workers and consumer, ordered by sequence number.
final class SamplePipe: @unchecked Sendable {
    private let condition = NSCondition()
    private let window: Int
    private var queue: [(Int, WorkItem)] = []
    private var queueHead = 0
    private var results: [Int: Result<ProcessedSample, LoadFailure>] = [:]
    private var nextToProduce: Int
    private var consumed: Int
    private var producedTotal: Int?
    private(set) var cancelled = false

    init(window: Int, firstSequence: Int) {
        self.window = window
        nextToProduce = firstSequence
        consumed = firstSequence
    }

    /// Producer: blocks while the window is full; false once cancelled.
    func put(_ item: WorkItem) -> Bool {
        condition.lock(); defer { condition.unlock() }
        while nextToProduce - consumed >= window && !cancelled { condition.wait() }
        guard !cancelled else { return false }
        queue.append((nextToProduce, item))
        nextToProduce += 1
        condition.broadcast()
        return true
    }

    func finishProducing() {
        condition.lock(); defer { condition.unlock() }
        producedTotal = nextToProduce
        condition.broadcast()
    }

    /// Worker: the next item to process, or nil when there is nothing more.
    func work() -> (Int, WorkItem)? {
        condition.lock(); defer { condition.unlock() }
        while queueHead == queue.count && producedTotal == nil && !cancelled { condition.wait() }
        guard !cancelled, queueHead < queue.count else { return nil }
        let item = queue[queueHead]
        queueHead += 1
        if queueHead > 1024 { queue.removeFirst(queueHead); queueHead = 0 }
        return item
    }

    func deliver(_ sequence: Int, _ result: Result<ProcessedSample, LoadFailure>) {
        condition.lock(); defer { condition.unlock() }
        results[sequence] = result
        condition.broadcast()
    }

    enum Taken {
        case item(Result<ProcessedSample, LoadFailure>)
        /// After the last sample (or cancelled).
        case end
        /// `stopWhen` said to stop while waiting.
        case stopped
    }

    /// Consumer: the result for `sequence`, in order. Waits in slices of 0.1 s when there is a
    /// `stopWhen` to ask.
    func take(_ sequence: Int, stopWhen: (() -> Bool)? = nil) -> Taken {
        condition.lock(); defer { condition.unlock() }
        while results[sequence] == nil && !cancelled {
            if let total = producedTotal, sequence >= total { return .end }
            if let stopWhen {
                if stopWhen() { return .stopped }
                _ = condition.wait(until: Date(timeIntervalSinceNow: 0.1))
            } else {
                condition.wait()
            }
        }
        guard let result = results.removeValue(forKey: sequence) else { return .end }
        consumed = sequence + 1
        condition.broadcast()
        return .item(result)
    }

    func cancel() {
        condition.lock(); defer { condition.unlock() }
        cancelled = true
        condition.broadcast()
    }
}
