import Datasets

/// What one evaluation pass measured, sample by sample: every metric `Evaluation.evaluate`
/// reports, for all the samples or for any subset or resample of them (`metrics(of:)`), and
/// the paired bootstrap of an A/B comparison (`Evaluation.bootstrapDifference`).
///
/// Ranks are per query and were computed once, among all the pairs of the pass: a subset's
/// R@k is the share of *its* queries whose own caption (image) ranked in the top k among *all*
/// the candidates, not a rank recomputed among the subset's pairs.
public struct EvaluationSamples: Sendable, Equatable {
    /// Where each sample came from ("shard:key", "manifest:line"), in loader order.
    public var origins: [String]
    /// Per image, the rank of its own caption among all captions (0-based: the number of
    /// captions scoring strictly higher, so ties count for it); nil without retrieval.
    public var imageToTextRanks: [Int]?
    /// Per caption, the rank of its own image among all images; nil without retrieval.
    public var textToImageRanks: [Int]?
    /// Per image, where its true class is among the zero-shot classifier's top 5 (0 = top-1,
    /// 5 = not among them); nil for an image whose label is not a class. nil without classes.
    public var zeroShotRanks: [Int?]?
    /// Each pair's share of the CLIP loss of its batch; nil in a batch of one (no loss). Empty:
    /// no loss was measured.
    public var losses: [Double?]

    public init(origins: [String], imageToTextRanks: [Int]? = nil, textToImageRanks: [Int]? = nil,
                zeroShotRanks: [Int?]? = nil, losses: [Double?] = []) {
        self.origins = origins
        self.imageToTextRanks = imageToTextRanks
        self.textToImageRanks = textToImageRanks
        self.zeroShotRanks = zeroShotRanks
        self.losses = losses
    }

    public var count: Int { origins.count }

    /// The metrics of all the samples, under `Evaluation.metrics`' names, and `val_samples`.
    public func metrics() -> [String: Double] {
        metrics(weights: [Int](repeating: 1, count: count))
    }

    /// The metrics of the samples at `indices`: a subset, or a resample in which a sample may
    /// appear several times (it then counts that many times). `val_samples` is `indices.count`.
    public func metrics(of indices: [Int]) -> [String: Double] {
        var weights = [Int](repeating: 0, count: count)
        for i in indices { weights[i] += 1 }
        return metrics(weights: weights)
    }

    /// Each sample counted `weights[i]` times.
    func metrics(weights: [Int]) -> [String: Double] {
        precondition(weights.count == count, "\(weights.count) weights for \(count) samples")
        let total = weights.reduce(0, +)
        guard total > 0 else { return [:] }
        var metrics: [String: Double] = ["val_samples": Double(total)]
        for (direction, ranks) in [("image_to_text", imageToTextRanks), ("text_to_image", textToImageRanks)] {
            guard let ranks else { continue }
            Self.addRankMetrics(ranks, weights: weights, total: total, prefix: direction, to: &metrics)
        }
        if let zeroShotRanks {
            var labelled = 0, top1 = 0, top5 = 0
            for (rank, weight) in zip(zeroShotRanks, weights) where weight > 0 {
                guard let rank else { continue }
                labelled += weight
                if rank == 0 { top1 += weight }
                if rank < 5 { top5 += weight }
            }
            if labelled > 0 {
                metrics["zeroshot_top1"] = Double(top1) / Double(labelled)
                metrics["zeroshot_top5"] = Double(top5) / Double(labelled)
            }
        }
        if !losses.isEmpty {
            var sum = 0.0, counted = 0
            for (loss, weight) in zip(losses, weights) where weight > 0 {
                guard let loss else { continue }
                sum += loss * Double(weight)
                counted += weight
            }
            if counted > 0 { metrics["clip_val_loss"] = sum / Double(counted) }
        }
        return metrics
    }

    /// open_clip's R@1/5/10 and 1-based mean and median rank (the median of an even count is the
    /// mean of the middle two, rounded down), over weighted ranks.
    private static func addRankMetrics(_ ranks: [Int], weights: [Int], total: Int, prefix: String, to metrics: inout [String: Double]) {
        var sum = 0, within = [0, 0, 0]
        var histogram = [Int](repeating: 0, count: (ranks.max() ?? 0) + 1)
        for (rank, weight) in zip(ranks, weights) where weight > 0 {
            sum += rank * weight
            histogram[rank] += weight
            if rank < 1 { within[0] += weight }
            if rank < 5 { within[1] += weight }
            if rank < 10 { within[2] += weight }
        }
        /// The k-th smallest rank (0-based) of the weighted list.
        func smallest(_ k: Int) -> Int {
            var seen = 0
            for (rank, n) in histogram.enumerated() {
                seen += n
                if seen > k { return rank }
            }
            return histogram.count - 1
        }
        let median = total % 2 == 1 ? Double(smallest(total / 2)) : Double(smallest(total / 2 - 1) + smallest(total / 2)) / 2
        metrics["\(prefix)_mean_rank"] = Double(sum) / Double(total) + 1
        metrics["\(prefix)_median_rank"] = median.rounded(.down) + 1
        for (k, n) in zip([1, 5, 10], within) { metrics["\(prefix)_R@\(k)"] = Double(n) / Double(total) }
    }
}

/// How an A/B comparison's bootstrap is drawn.
public struct BootstrapOptions: Sendable, Equatable {
    /// Resamples of the validation pairs.
    public var resamples = 1_000
    /// The seed of the resampling: the same seed gives the same intervals.
    public var seed: UInt64 = 0
    /// The interval's coverage: 0.95 reports the 2.5th and 97.5th percentiles.
    public var level = 0.95

    public init(resamples: Int = 1_000, seed: UInt64 = 0, level: Double = 0.95) {
        self.resamples = resamples
        self.seed = seed
        self.level = level
    }
}

extension Evaluation {
    /// A paired bootstrap interval of B − A for every metric both report (`val_samples` aside):
    /// the validation pairs are resampled with replacement `resamples` times (seeded; the same
    /// indices for A and B), each metric is computed for A and for B on each resample, and the
    /// interval runs between the (1 − level)/2 and (1 + level)/2 percentiles of B − A (linear
    /// interpolation between order statistics, numpy's default).
    ///
    /// Retrieval ranks are *not* recomputed among each resample's pairs: every query keeps the
    /// rank it had among all the candidates, and the queries are what is resampled. Recomputing
    /// them would measure a different task — a resample holds about 63% distinct pairs, so each
    /// query competes with fewer candidates and R@k rises — and cost O(n²) per resample instead of
    /// O(n). The interval therefore reflects the variation due to which queries were drawn, with
    /// the candidate set fixed (the standard per-query bootstrap of retrieval evaluation); the
    /// validation loss is resampled the same way, with each pair's share of its batch's loss.
    ///
    /// Both evaluations must cover the same samples in the same order (the same data and loader
    /// settings), or the comparison is not paired: that is an `EvaluationError`.
    public static func bootstrapDifference(a: EvaluationSamples, b: EvaluationSamples,
                                           options: BootstrapOptions = BootstrapOptions()) throws -> [String: ClosedRange<Double>] {
        guard a.origins == b.origins else {
            let first = (0..<min(a.count, b.count)).first { a.origins[$0] != b.origins[$0] } ?? min(a.count, b.count)
            throw EvaluationError("A and B were evaluated on different samples (\(counted(a.count, "sample")) and \(counted(b.count, "sample")); they first differ at sample \(first + 1)); a paired comparison needs the same samples in the same order")
        }
        guard options.resamples > 0, options.level > 0, options.level < 1 else {
            throw EvaluationError("the bootstrap needs at least one resample and a level between 0 and 1 (got \(options.resamples), \(options.level))")
        }
        let n = a.count
        let fullA = a.metrics(), fullB = b.metrics()
        let names = Set(fullA.keys).intersection(fullB.keys).subtracting(["val_samples"]).sorted()
        guard n > 0, !names.isEmpty else { return [:] }
        var differences = Dictionary(uniqueKeysWithValues: names.map { ($0, [Double]()) })
        var random = SeededRandom(seed: options.seed)
        var weights = [Int](repeating: 0, count: n)
        for _ in 0..<options.resamples {
            for i in 0..<n { weights[i] = 0 }
            // Lemire's multiply-high: uniform in 0..<n up to a bias of n / 2⁶⁴, and the same
            // draws on every platform and Swift version.
            for _ in 0..<n { weights[Int(random.next().multipliedFullWidth(by: UInt64(n)).high)] += 1 }
            let metricsA = a.metrics(weights: weights), metricsB = b.metrics(weights: weights)
            for name in names {
                // A resample may hold no sample with a class label: it says nothing about zero-shot.
                // A non-finite loss has no interval either.
                guard let x = metricsA[name], let y = metricsB[name], (y - x).isFinite else { continue }
                differences[name]!.append(y - x)
            }
        }
        var intervals: [String: ClosedRange<Double>] = [:]
        for (name, values) in differences where !values.isEmpty {
            let sorted = values.sorted()
            intervals[name] = percentile(sorted, (1 - options.level) / 2)...percentile(sorted, (1 + options.level) / 2)
        }
        return intervals
    }

    /// The p-th quantile (0...1) of sorted values, interpolating linearly between order statistics.
    static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        let position = p * Double(sorted.count - 1)
        let lower = Int(position.rounded(.down)), upper = min(lower + 1, sorted.count - 1)
        let fraction = position - Double(lower)
        return fraction == 0 ? sorted[lower] : sorted[lower] + fraction * (sorted[upper] - sorted[lower])
    }
}
