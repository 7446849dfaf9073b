import Datasets
import Foundation
import NN
import Optim

/// What a WiSE-FT sweep measured: every metric of every α on every set, the best α, and the
/// table, JSON (`wise_ft.json`) and plot (`wise_ft.svg`, `WiSEFTPlot`) made from them.
public struct WiSEFTResult: Sendable {
    public struct EvaluatedSet: Sendable, Equatable {
        public var name: String
        /// Where the data came from, as given.
        public var data: String
        public var samples: Int
        /// Whether zero-shot accuracy was measured on it.
        public var zeroShot: Bool
    }

    public var zeroShot: String
    public var fineTuned: String
    /// Ascending, each in [0, 1].
    public var alphas: [Double]
    public var sets: [EvaluatedSet]
    /// `metrics[a][s]`: θ(alphas[a]) on sets[s], under `Evaluation.metrics`' names (and `val_samples`).
    public var metrics: [[[String: Double]]]
    /// What picks the best α.
    public var watched: MetricDefinition
    /// A checkpoint written from the sweep: its α and folder.
    public var saved: (alpha: Double, path: String)?

    public static let jsonFile = "wise_ft.json"
    public static let plotFile = "wise_ft.svg"

    /// The watched metric averaged over the sets that report it (each set counts once,
    /// whatever its size), per α; nil where no set reports a finite value.
    public var watchedMeans: [Double?] {
        metrics.map { row in
            let values = row.compactMap { $0[watched.name] }.filter(\.isFinite)
            return values.isEmpty ? nil : values.reduce(0, +) / Double(values.count)
        }
    }

    /// The best α: the best mean of the watched metric over the sets (in its direction); a tie
    /// goes to the smaller α, the mix nearer the zero-shot model (WiSE-FT's point is to keep its
    /// robustness unless fine-tuning buys something). nil when no α has a value.
    public var bestIndex: Int? {
        var best: Int?
        for (index, mean) in watchedMeans.enumerated() {
            guard let mean else { continue }
            if let current = best, let value = watchedMeans[current] {
                if watched.mode == .max ? mean > value : mean < value { best = index }
            } else {
                best = index
            }
        }
        return best
    }

    public var bestAlpha: Double? { bestIndex.map { alphas[$0] } }

    /// The metric names to report, in `Evaluation.metrics`' order (`val_samples` left out).
    public var metricNames: [String] {
        let order = Evaluation.metrics(retrieval: true, zeroShot: true).map(\.name)
        let present = Set(metrics.flatMap { $0.flatMap(\.keys) }).subtracting(["val_samples"])
        return order.filter(present.contains) + present.subtracting(order).sorted()
    }

    // MARK: JSON

    /// `wise_ft.json`: the pair, the α values, the sets, every result row (`{"alpha", "set",
    /// "metrics"}`), the watched metric's mean per α and the best α. Non-finite values are null.
    public func json() -> [String: Any] {
        func number(_ value: Double?) -> Any { value.flatMap { $0.isFinite ? $0 : nil } ?? NSNull() }
        var rows: [[String: Any]] = []
        for (a, alpha) in alphas.enumerated() {
            for (s, set) in sets.enumerated() {
                rows.append(["alpha": alpha, "set": set.name, "metrics": metrics[a][s].mapValues { number($0) }])
            }
        }
        var object: [String: Any] = [
            "zero_shot": zeroShot, "fine_tuned": fineTuned,
            "interpolation": "(1 - alpha) * zero_shot + alpha * fine_tuned for every float tensor (logit_scale included), computed in float32 (float64 for float64 tensors); other tensors must be equal in both",
            "alphas": alphas,
            "sets": sets.map { ["name": $0.name, "data": $0.data, "samples": $0.samples, "zero_shot": $0.zeroShot] as [String: Any] },
            "metric": watched.name, "mode": watched.mode.rawValue,
            "mean": zip(alphas, watchedMeans).map { ["alpha": $0, "value": number($1)] as [String: Any] },
            "results": rows,
        ]
        object["best"] = bestIndex.map { ["alpha": alphas[$0], "value": number(watchedMeans[$0])] as [String: Any] } ?? NSNull()
        if let saved { object["saved"] = ["alpha": saved.alpha, "path": saved.path] as [String: Any] }
        return object
    }

    public func jsonData() -> Data {
        // Cannot fail: only strings, finite numbers, booleans, NSNull, arrays and objects.
        (try? JSONSerialization.data(withJSONObject: json(), options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
    }

    // MARK: Table

    /// A block per set: a row per α with the summary metrics (and the watched one), 4 decimals,
    /// the best α marked; then the best α and its mean.
    public func table() -> String {
        let summary = Evaluation.metrics(retrieval: true, zeroShot: true).filter { $0.summary || $0.name == watched.name }.map(\.name)
        var lines: [String] = []
        let best = bestIndex
        for (s, set) in sets.enumerated() {
            let columns = summary.filter { name in metrics.contains { $0[s][name] != nil } }
            lines.append("\(set.name) (\(set.data), \(counted(set.samples, "pair")))")
            let widths = columns.map { max($0.count, 7) }
            lines.append(pad("α", 5) + zip(columns, widths).map { "  " + pad($0, $1, right: true) }.joined())
            for (a, alpha) in alphas.enumerated() {
                let cells = zip(columns, widths).map { name, width in
                    "  " + pad(metrics[a][s][name].map { String(format: "%.4f", $0) } ?? "—", width, right: true)
                }
                lines.append(pad(String(format: "%.2f", alpha), 5) + cells.joined() + (a == best ? "  ← best" : ""))
            }
            lines.append("")
        }
        let over = sets.count == 1 ? "on \(sets[0].name)" : "mean over \(sets.count) sets"
        if let best, let value = watchedMeans[best] {
            var line = "best α \(formatNumber(alphas[best])): \(watched.name) \(String(format: "%.4f", value)) (\(over), \(watched.mode == .max ? "higher" : "lower") is better)"
            let ends = [(0.0, "zero-shot"), (1.0, "fine-tuned")].compactMap { alpha, name in
                alphas.firstIndex(of: alpha).flatMap { watchedMeans[$0] }.map { "\(name) \(String(format: "%.4f", $0))" }
            }
            if !ends.isEmpty { line += "; " + ends.joined(separator: ", ") }
            lines.append(line)
        } else {
            lines.append("no best α: \(watched.name) was not measured (\(over))")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(0, width - text.count))
        return right ? fill + text : text + fill
    }
}
