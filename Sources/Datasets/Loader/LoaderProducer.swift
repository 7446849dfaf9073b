/// Emits the epoch's samples in their fixed order.
struct Producer {
    let loader: DataLoader
    let epoch: Int
    let start: Int
    let pipe: SamplePipe

    /// Whether the sample at `sequence` is this process's (always, unless sharded).
    func owns(_ sequence: Int) -> Bool { loader.options.shard.owns(sequence, batchSize: loader.options.batchSize) }

    func run() {
        defer { pipe.finishProducing() }
        let options = loader.options
        switch loader.source {
        case .manifest(let manifest):
            var order = Array(0..<manifest.count)
            if options.shuffle {
                var random = SeededRandom(seed: options.seed, epoch: epoch, index: -1)
                order.shuffle(using: &random)
            }
            for (offset, row) in order.dropFirst(start).enumerated() where !pipe.put(owns(start + offset) ? .row(row) : .elsewhere) { return }
        case .shards(let paths):
            var random = SeededRandom(seed: options.seed, epoch: epoch, index: -2)
            var shards = paths
            if options.shuffle { shards.shuffle(using: &random) }
            var buffer: [WorkItem] = []
            var emitted = 0
            // Samples before `start` are read but not decoded.
            func emit(_ item: WorkItem) -> Bool {
                defer { emitted += 1 }
                // A fatal failure reaches every process, whoever's sample it was.
                if case .failed(.fatal) = item { return emitted < start || pipe.put(item) }
                return emitted < start || pipe.put(owns(emitted) ? item : .elsewhere)
            }
            for path in shards {
                do {
                    let reader = try ShardReader(path: path)
                    while let next = try reader.next() {
                        let item: WorkItem
                        switch next {
                        case .success(let record): item = .record(record)
                        case .failure(let issue): item = .failed(.sample(issue))
                        }
                        guard options.shuffle else {
                            if !emit(item) { return }
                            continue
                        }
                        buffer.append(item)
                        if buffer.count >= options.shuffleBuffer {
                            let pick = Int(random.next() % UInt64(buffer.count))
                            buffer.swapAt(pick, buffer.count - 1)
                            if !emit(buffer.removeLast()) { return }
                        }
                    }
                } catch {
                    // A damaged shard: the rest of it is lost; under `fail` the epoch stops.
                    let issue = SampleIssue(origin: path, reason: "\(error); the rest of this shard was skipped")
                    let failure: LoadFailure = options.badSamples == .fail ? .fatal(error) : .sample(issue)
                    if !emit(.failed(failure)) { return }
                    if options.badSamples == .fail { return }
                }
            }
            buffer.shuffle(using: &random)
            for item in buffer where !emit(item) { return }
        }
    }
}
