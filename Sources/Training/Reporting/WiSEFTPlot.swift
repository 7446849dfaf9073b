import Datasets
import Foundation
import NN

/// `wise_ft.svg`: one panel per metric, a line per validation set, α on the horizontal axis and
/// the best α dashed in every panel. Drawn by `CurvesPlot`'s renderer, so it looks like a run's
/// `curves.svg`.
public enum WiSEFTPlot {
    public static func svg(_ result: WiSEFTResult) -> String {
        let panels = result.metricNames.compactMap { name -> CurvesPlot.Panel? in
            let direction = Evaluation.metrics(retrieval: true, zeroShot: true).first { $0.name == name }
                .map { $0.mode == .max ? " (higher is better)" : " (lower is better)" } ?? ""
            let series = result.sets.enumerated().compactMap { s, set -> CurvesPlot.Series? in
                let points = result.alphas.enumerated().compactMap { a, alpha in
                    result.metrics[a][s][name].flatMap { $0.isFinite ? CurvesPlot.Point(x: alpha, y: $0) : nil }
                }
                guard !points.isEmpty else { return nil }
                return CurvesPlot.Series(name: set.name, points: points, smoothed: nil, markers: true,
                                         color: CurvesPlot.palette[s % CurvesPlot.palette.count], latestInLegend: false)
            }
            return series.isEmpty ? nil : CurvesPlot.Panel(title: name + direction, series: series)
        }
        let ticks = CurvesPlot.niceTicks(0, 1, count: 5)
        let axis = CurvesPlot.XAxis(name: "α", ticks: ticks, labels: CurvesPlot.tickLabels(ticks), best: result.bestAlpha,
                                    bestLabel: "best α", format: { formatNumber($0) })
        let title = "WiSE-FT: \(result.zeroShot) → \(result.fineTuned)"
        guard !panels.isEmpty else { return CurvesPlot.svg([], title: title) }
        return CurvesPlot.render(panels, title: title, subtitle: subtitle(result), axis: axis)
    }

    /// Writes `svg(result)` to `path` atomically.
    public static func write(_ result: WiSEFTResult, to path: String, option: String = "--output") throws {
        try OutputLocation.write(Data(svg(result).utf8), to: path, option: option)
    }

    private static func subtitle(_ result: WiSEFTResult) -> String {
        var parts = ["θ = (1 − α)·zero-shot + α·fine-tuned", counted(result.alphas.count, "α value"),
                     result.sets.map { "\($0.name) (\(counted($0.samples, "pair")))" }.joined(separator: ", ")]
        if let best = result.bestIndex, let value = result.watchedMeans[best] {
            let over = result.sets.count == 1 ? "" : " mean over \(result.sets.count) sets"
            parts.append("best α \(formatNumber(result.alphas[best])) by \(result.watched.name)\(over) \(CurvesPlot.format(value))")
        }
        return parts.joined(separator: "  ·  ")
    }
}
