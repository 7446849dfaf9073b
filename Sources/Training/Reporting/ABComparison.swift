import Datasets
import Foundation
import Optim

/// Two checkpoints evaluated on the same pairs, side by side (what `eval --checkpoint A
/// --checkpoint B` prints and writes): each metric of A and of B in `Evaluation.metrics`' order
/// with the direction it improves in, B − A, and a paired bootstrap interval of B − A
/// (`Evaluation.bootstrapDifference`), so a difference within the noise reads as one.
public struct ABComparison: Sendable {
    public struct Row: Sendable, Equatable {
        public let name: String
        /// The direction in which the metric improves.
        public let mode: MetricMode
        public let a: Double
        public let b: Double
        public var difference: Double { b - a }
        /// The bootstrap interval of B − A; nil when no resample measured the metric.
        public let interval: ClosedRange<Double>?

        /// "B" or "A" when the interval excludes 0 (that one is better, as far as the bootstrap
        /// can tell); nil when it includes 0.
        public var better: String? {
            guard let interval else { return nil }
            let higher = interval.lowerBound > 0 ? "B" : interval.upperBound < 0 ? "A" : nil
            guard let higher else { return nil }
            return mode == .max ? higher : higher == "B" ? "A" : "B"
        }
    }

    /// Every metric of `Evaluation.metrics` that both report, in its order.
    public let rows: [Row]
    /// The metrics of each side as `evaluate` reports them (with `val_samples`).
    public let metricsA: [String: Double]
    public let metricsB: [String: Double]
    /// The number of validation pairs both were evaluated on.
    public let pairs: Int
    public let options: BootstrapOptions

    public init(a: EvaluationSamples, b: EvaluationSamples, options: BootstrapOptions = BootstrapOptions()) throws {
        let intervals = try Evaluation.bootstrapDifference(a: a, b: b, options: options)
        let metricsA = a.metrics(), metricsB = b.metrics()
        self.metricsA = metricsA
        self.metricsB = metricsB
        pairs = a.count
        self.options = options
        rows = Evaluation.metrics(retrieval: true, zeroShot: true).compactMap { definition in
            guard let x = metricsA[definition.name], let y = metricsB[definition.name] else { return nil }
            return Row(name: definition.name, mode: definition.mode, a: x, b: y, interval: intervals[definition.name])
        }
    }

    /// "95%" for a level of 0.95.
    var levelText: String { String(format: "%g%%", options.level * 100) }

    /// The table as `eval` prints it:
    ///
    ///     32 validation pairs; 95% interval of B − A from 1000 paired bootstrap resamples (seed 0)
    ///     metric                  better        A         B     B − A   95% interval of B − A
    ///     image_to_text_R@1       ↑ higher  0.1250    0.2188   +0.0938  [-0.0312, +0.2188]
    ///     image_to_text_mean_rank ↓ lower   5.2188    3.1250   -2.0938  [-3.4062, -0.8750]  B better
    public var table: String {
        let width = max(6, rows.map(\.name.count).max() ?? 0)
        func pad(_ s: String, _ n: Int) -> String { s.padding(toLength: max(n, s.count), withPad: " ", startingAt: 0) }
        func right(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(0, n - s.count)) + s }
        var lines = ["\(counted(pairs, "validation pair")); \(levelText) interval of B − A from \(counted(options.resamples, "paired bootstrap resample")) (seed \(options.seed))"]
        lines.append(pad("metric", width) + "  better  " + right("A", 9) + " " + right("B", 9) + " " + right("B − A", 9) + "   \(levelText) interval of B − A")
        for row in rows {
            var line = pad(row.name, width) + "  " + (row.mode == .max ? "↑ higher" : "↓ lower ") + "  "
            line += String(format: "%9.4f %9.4f %+9.4f", row.a, row.b, row.difference)
            if let interval = row.interval {
                line += String(format: "   [%+.4f, %+.4f]", interval.lowerBound, interval.upperBound)
                if let better = row.better { line += "  \(better) better" }
            } else {
                line += "   –"
            }
            lines.append(line)
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The comparison's JSON fields: `difference_b_minus_a` (every value both report, as before),
    /// `difference_b_minus_a_ci95` (metric → [lower, upper]; the key names the default level)
    /// and `bootstrap` (how the intervals were drawn).
    public var json: [String: Any] {
        let shared = Set(metricsA.keys).intersection(metricsB.keys)
        var intervals: [String: [Double]] = [:]
        for row in rows { if let interval = row.interval { intervals[row.name] = [interval.lowerBound, interval.upperBound] } }
        return [
            "difference_b_minus_a": Dictionary(uniqueKeysWithValues: shared.map { ($0, metricsB[$0]! - metricsA[$0]!) }),
            "difference_b_minus_a_ci95": intervals,
            "bootstrap": ["resamples": options.resamples, "seed": options.seed, "level": options.level, "pairs": pairs,
                          "method": "paired: the same resamples of the validation pairs for A and B; each query keeps its rank among all the pairs"] as [String: Any],
        ]
    }
}
