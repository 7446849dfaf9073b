import Datasets
import Foundation

/// Draws a run's metrics as one self-contained SVG (no scripts, no web fonts), so `curves.svg`
/// next to `metrics.jsonl` opens in any browser, on a laptop or straight from a remote run folder.
///
/// Panels, each only when its data exists: training loss terms (raw and smoothed), learning rate,
/// logit scale, retrieval recall, validation loss, zero-shot accuracy. All panels share the
/// step axis; the best step is a dashed line in each, labelled "best" above the plot area, where
/// no curve is drawn.
public enum CurvesPlot {
    /// Most points drawn per polyline; longer series keep each bucket's minimum and maximum,
    /// so spikes survive while the file stays small enough to redraw on every log step.
    public static let maxPointsPerSeries = 2_000

    /// The SVG text. `bestStep` overrides the last `best_step` value found in `records`.
    public static func svg(_ records: [MetricsRecord], title: String, bestStep: Int? = nil) -> String {
        let panels = makePanels(records)
        guard !panels.isEmpty else { return emptySVG(title: title, hasRecords: !records.isEmpty) }
        let best = bestStep ?? records.last(where: { $0.values["best_step"]?.isFinite == true })
            .flatMap { Int(exactly: $0.values["best_step"]!.rounded()) }
        return render(panels, title: title, subtitle: subtitle(records, best: best), axis: stepAxis(panels, best: best))
    }

    /// The step axis: from step 0 (a run's start, and a resumed run in context), and never
    /// narrower than ten steps so an early plot gets whole-number ticks.
    private static func stepAxis(_ panels: [Panel], best: Int?) -> XAxis {
        let steps = panels.flatMap { $0.series.flatMap { $0.points.map(\.x) } }
        let firstStep = min(0, steps.min()!)
        let ticks = niceTicks(firstStep, max(steps.max()!, firstStep + 10), count: panels.count == 1 ? 10 : 6)
        return XAxis(name: "step", ticks: ticks, labels: tickLabels(ticks, isStep: true), best: best.map(Double.init)) { String(Int($0)) }
    }

    /// Writes `svg(...)` to `path` atomically, so a browser refreshing it never sees half a file.
    public static func write(_ records: [MetricsRecord], title: String, bestStep: Int? = nil, to path: String) throws {
        try ReportFile.writeAtomically(Data(svg(records, title: title, bestStep: bestStep).utf8), to: path)
    }

    // MARK: - Data

    struct Point: Equatable {
        var x: Double
        var y: Double
    }

    struct Series {
        var name: String
        var points: [Point]
        /// Exponential moving average drawn bold over a faint raw line; nil draws the raw line bold.
        var smoothed: [Point]?
        /// Evaluations are sparse: a dot per point shows where each one happened.
        var markers: Bool
        var color: String
        /// Tells apart a second family of curves sharing colours (text-to-image next to image-to-text).
        var dashed = false
        /// The legend shows the latest value after the name (a run's curves; not α sweeps,
        /// whose last point is just α = 1).
        var latestInLegend = true
    }

    struct Panel {
        var title: String
        var series: [Series]
    }

    /// The shared horizontal axis: training steps here, α in `WiSEFTPlot`.
    struct XAxis {
        /// Written under the axis and in tooltips ("step", "α").
        var name: String
        /// Tick positions; the first and last are the axis bounds.
        var ticks: [Double]
        var labels: [String]
        /// Where the dashed "best" line goes (nil: none; outside the ticks: not drawn).
        var best: Double?
        var bestLabel = "best"
        /// A point's x in its tooltip ("at step 200").
        var format: (Double) -> String
    }

    // Tableau 10: distinct, colour-blind friendly and calm on white.
    static let palette = ["#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1", "#76b7b2",
                          "#edc948", "#9c755f", "#ff9da7", "#bab0ac"]

    static func makePanels(_ records: [MetricsRecord]) -> [Panel] {
        let train = records.filter { $0.kind == .train }
        let eval = records.filter { $0.kind == .eval }
        var panels: [Panel] = []
        func add(_ title: String, _ keys: [String], from records: [MetricsRecord], smooth: Bool = false,
                 markers: Bool = false, transform: (Double) -> Double = { $0 }, name: (String) -> String = { $0 },
                 style: (_ index: Int, _ key: String) -> (color: String, dashed: Bool) = { i, _ in (palette[i % palette.count], false) }) {
            let series = keys.enumerated().compactMap { index, key -> Series? in
                let points = points(key, in: records, transform: transform)
                guard !points.isEmpty else { return nil }
                let (color, dashed) = style(index, key)
                return Series(name: name(key), points: points, smoothed: smooth ? ema(points) : nil,
                              markers: markers, color: color, dashed: dashed)
            }
            if !series.isEmpty { panels.append(Panel(title: title, series: series)) }
        }

        add("training loss", keys(in: train) { $0.hasSuffix("loss") }.sorted(by: lossFirst), from: train, smooth: true)
        add("learning rate", keys(in: train) { $0 == "lr" || $0.hasPrefix("lr_") || $0.hasSuffix("_lr") }.sorted(), from: train)
        // The trainer logs the learnable log-temperature; exp of it (capped at 100 by CLIP) reads better.
        let logitScales = points("logit_scale", in: train)
        if logitScales.contains(where: { $0.y > log(100) + 0.01 }) {
            add("logit scale", ["logit_scale"], from: train)
        } else {
            add("logit scale (exp)", ["logit_scale"], from: train, transform: exp, name: { "exp(\($0))" })
        }
        let recallKeys = keys(in: eval) { $0.contains("R@") }.sorted(by: recallOrder)
        add("retrieval recall (validation)", recallKeys, from: eval, markers: true, style: recallStyle(recallKeys))
        add("validation loss", keys(in: eval) { $0.hasSuffix("loss") }.sorted(by: lossFirst), from: eval, markers: true)
        add("zero-shot accuracy (validation)", keys(in: eval) { $0.contains("zeroshot") || $0.contains("zero_shot") }.sorted(),
            from: eval, markers: true)
        return panels
    }

    private static func keys(in records: [MetricsRecord], where include: (String) -> Bool) -> [String] {
        var keys = Set<String>()
        for record in records { for key in record.values.keys where include(key) { keys.insert(key) } }
        return Array(keys)
    }

    /// The total "loss" first, then its terms.
    private static func lossFirst(_ a: String, _ b: String) -> Bool {
        a == "loss" || b == "loss" ? a == "loss" && b != "loss" : a < b
    }

    /// image_to_text before text_to_image, and R@1 < R@5 < R@10 (not R@1 < R@10 < R@5).
    private static func recallOrder(_ a: String, _ b: String) -> Bool {
        func parts(_ key: String) -> (String, Int, String) {
            guard let range = key.range(of: "R@") else { return (key, 0, "") }
            let digits = key[range.upperBound...].prefix(while: \.isNumber)
            return (String(key[..<range.lowerBound]), Int(digits) ?? 0, key)
        }
        return parts(a) < parts(b)
    }

    /// One colour per k, solid for the first direction (image-to-text) and dashed for the other,
    /// so six recall curves read as three pairs.
    private static func recallStyle(_ keys: [String]) -> (Int, String) -> (color: String, dashed: Bool) {
        func parts(_ key: String) -> (direction: String, k: String) {
            guard let range = key.range(of: "R@") else { return (key, "") }
            return (String(key[..<range.lowerBound]), String(key[range.upperBound...]))
        }
        var directions: [String] = [], ks: [String] = []
        for key in keys {
            let (direction, k) = parts(key)
            if !directions.contains(direction) { directions.append(direction) }
            if !ks.contains(k) { ks.append(k) }
        }
        // Beyond two directions dashes stop helping; fall back to a colour per curve.
        guard directions.count <= 2 else { return { i, _ in (palette[i % palette.count], false) } }
        return { _, key in
            let (direction, k) = parts(key)
            return (palette[ks.firstIndex(of: k)! % palette.count], direction != directions[0])
        }
    }

    /// Finite points sorted by step (a stable sort keeps a resumed run's order within a step).
    private static func points(_ key: String, in records: [MetricsRecord], transform: (Double) -> Double = { $0 }) -> [Point] {
        let points = records.compactMap { record -> Point? in
            guard let raw = record.values[key] else { return nil }
            let y = transform(raw)
            return y.isFinite ? Point(x: Double(record.step), y: y) : nil
        }
        return points.enumerated().sorted { ($0.element.x, $0.offset) < ($1.element.x, $1.offset) }.map(\.element)
    }

    /// Bias-corrected EMA (as TensorBoard's smoothing) over about a thirtieth of the series; nil
    /// when the series is too short for smoothing to help.
    static func ema(_ points: [Point]) -> [Point]? {
        let window = min(50, Double(points.count) / 30)
        guard window >= 2 else { return nil }
        let weight = 1 - 1 / window
        var average = 0.0, correction = 1.0
        return points.map { point in
            average = weight * average + (1 - weight) * point.y
            correction *= weight
            return Point(x: point.x, y: average / (1 - correction))
        }
    }

    /// At most `maxPoints` points: first, last and each bucket's min and max in their order.
    static func thin(_ points: [Point], maxPoints: Int = maxPointsPerSeries) -> [Point] {
        guard points.count > maxPoints, maxPoints >= 4 else { return points }
        let interior = points.count - 2, buckets = (maxPoints - 2) / 2
        var out = [points[0]]
        out.reserveCapacity(maxPoints)
        for bucket in 0..<buckets {
            let lower = 1 + bucket * interior / buckets, upper = 1 + (bucket + 1) * interior / buckets
            guard lower < upper else { continue }
            var low = lower, high = lower
            for i in lower..<upper {
                if points[i].y < points[low].y { low = i }
                if points[i].y > points[high].y { high = i }
            }
            out.append(points[min(low, high)])
            if low != high { out.append(points[max(low, high)]) }
        }
        out.append(points[points.count - 1])
        return out
    }

    // MARK: - Axes

    /// Tick positions at 1, 2 or 5 × 10^k covering `low...high`; the first and last are the
    /// axis bounds. A zero range is widened so constant series still get an axis.
    static func niceTicks(_ low: Double, _ high: Double, count: Int = 5) -> [Double] {
        var (low, high) = (min(low, high), max(low, high))
        if high - low <= max(abs(low), abs(high)) * 1e-12 {
            let pad = low == 0 ? 1 : abs(low) * 0.1
            (low, high) = (low - pad, high + pad)
        }
        guard (high - low).isFinite else { return [low, high] }
        let raw = (high - low) / Double(max(1, count))
        let exponent = Int(floor(log10(raw)))
        let fraction = raw / pow(10, Double(exponent))
        let mantissa: Double = fraction < 1.5 ? 1 : fraction < 3 ? 2 : fraction < 7 ? 5 : 10
        // k × mantissa / 10^-e keeps 0.3 as 0.3 rather than 3 × 0.1 = 0.30000000000000004.
        func tick(_ k: Int) -> Double {
            exponent < 0 ? Double(k) * mantissa / pow(10, Double(-exponent)) : Double(k) * mantissa * pow(10, Double(exponent))
        }
        let spacing = tick(1)
        // Subnormal ranges underflow the spacing; keep the bare bounds rather than trap.
        guard spacing > 0, spacing.isFinite, max(abs(low), abs(high)) / spacing < 1e15 else { return [low, high] }
        let first = Int((low / spacing).rounded(.down)), last = Int((high / spacing).rounded(.up))
        return (first...max(last, first + 1)).map(tick)
    }

    /// Labels with just enough decimals to tell the ticks apart; steps as 10k / 1.5M, tiny or huge
    /// values (learning rates) as 2e-5.
    static func tickLabels(_ ticks: [Double], isStep: Bool = false) -> [String] {
        let largest = ticks.map(abs).max() ?? 0
        guard largest > 0 else { return ticks.map { _ in "0" } }
        if isStep {
            let (scale, suffix) = largest >= 1e6 ? (1e6, "M") : largest >= 1e4 ? (1e3, "k") : (1.0, "")
            return zip(ticks, fixed(ticks.map { $0 / scale })).map { $0 == 0 ? "0" : $1 + suffix }
        }
        if largest >= 1e5 || largest < 1e-3 { return ticks.map(scientific) }
        return fixed(ticks)
    }

    /// `2e-5`, `1.5e-5`: each tick gets its own exponent, so 9.5e-5 and 1e-4 both read naturally.
    private static func scientific(_ value: Double) -> String {
        guard value != 0 else { return "0" }
        var exponent = Int(floor(log10(abs(value)) + 1e-9))
        var mantissa = fixed([value / pow(10, Double(exponent))])[0]
        if let m = Double(mantissa), abs(m) >= 10 {   // 9.9999999 rounded up to 10
            exponent += 1
            mantissa = fixed([value / pow(10, Double(exponent))])[0]
        }
        return "\(mantissa)e\(exponent)"
    }

    private static func fixed(_ values: [Double]) -> [String] {
        let decimals = (0...8).first { d in
            values.allSatisfy { value in
                let scaled = value * pow(10, Double(d))
                return abs(scaled - scaled.rounded()) < 1e-6 * max(1, abs(scaled))
            }
        } ?? 8
        return values.map { String(format: "%.\(decimals)f", $0 + 0) }   // + 0 turns -0 into 0
    }

    // MARK: - Rendering

    private enum Layout {
        static let width = 1200.0
        static let margin = 24.0
        static let header = 72.0
        static let gap = 20.0
        static let panelHeight = 320.0
        static let plotLeft = 62.0, plotRight = 20.0, plotBottom = 40.0
        static let titleHeight = 30.0, legendRow = 17.0
        /// Room above the plot area for the "best" label, so it never sits on a curve.
        static let bestLabelRow = 18.0
        static let font = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
    }

    /// Panels in two columns (one when there is one panel) sharing `axis`.
    static func render(_ panels: [Panel], title: String, subtitle: String, axis: XAxis) -> String {
        let columns = panels.count == 1 ? 1 : 2
        let rows = (panels.count + columns - 1) / columns
        let panelWidth = (Layout.width - 2 * Layout.margin - Double(columns - 1) * Layout.gap) / Double(columns)
        let height = Layout.header + Double(rows) * Layout.panelHeight + Double(rows - 1) * Layout.gap + Layout.margin

        var svg = SVGText()
        svg.open(width: Layout.width, height: height)
        svg.line(##"<rect width="100%" height="100%" fill="#f6f7f9"/>"##)
        svg.line(##"<text x="\##(n(Layout.margin))" y="36" font-size="20" font-weight="600" fill="#1f2328">\##(escape(title))</text>"##)
        svg.line(##"<text x="\##(n(Layout.margin))" y="58" font-size="12.5" fill="#656d76">\##(escape(subtitle))</text>"##)
        for (index, panel) in panels.enumerated() {
            let x = Layout.margin + Double(index % columns) * (panelWidth + Layout.gap)
            let y = Layout.header + Double(index / columns) * (Layout.panelHeight + Layout.gap)
            drawPanel(panel, into: &svg, x: x, y: y, width: panelWidth, axis: axis)
        }
        svg.line("</svg>")
        return svg.text
    }

    private static func drawPanel(_ panel: Panel, into svg: inout SVGText, x: Double, y: Double, width: Double, axis: XAxis) {
        let plotWidth = width - Layout.plotLeft - Layout.plotRight
        let legend = legendLayout(panel.series, width: plotWidth)
        let xTicks = axis.ticks
        let (x0, x1) = (xTicks.first!, xTicks.last!)
        let best = axis.best.flatMap { (x0...x1).contains($0) ? $0 : nil }
        let top = Layout.titleHeight + Double(legend.rows) * Layout.legendRow + 8 + (best == nil ? 0 : Layout.bestLabelRow)
        let plotHeight = Layout.panelHeight - top - Layout.plotBottom
        let values = panel.series.flatMap { $0.points.map(\.y) }
        let yTicks = niceTicks(values.min()!, values.max()!, count: 5)
        let (y0, y1) = (yTicks.first!, yTicks.last!)
        func px(_ v: Double) -> Double { Layout.plotLeft + (v - x0) / (x1 - x0) * plotWidth }
        func py(_ v: Double) -> Double { top + plotHeight - (v - y0) / (y1 - y0) * plotHeight }

        svg.line(##"<g class="panel" transform="translate(\##(n(x)),\##(n(y)))">"##)
        svg.line(##"<rect width="\##(n(width))" height="\##(n(Layout.panelHeight))" rx="6" fill="#ffffff" stroke="#d8dee4"/>"##)
        svg.line(##"<text class="panel-title" x="\##(n(Layout.plotLeft))" y="21" font-size="14" font-weight="600" fill="#1f2328">\##(escape(panel.title))</text>"##)
        for (entry, series) in zip(legend.entries, panel.series) {
            let ly = Layout.titleHeight + Double(entry.row) * Layout.legendRow + 9
            let lx = Layout.plotLeft + entry.x
            svg.line(##"<g class="legend"><line x1="\##(n(lx))" y1="\##(n(ly - 4))" x2="\##(n(lx + 14))" y2="\##(n(ly - 4))" stroke="\##(series.color)" stroke-width="3"\##(series.dashed ? #" stroke-dasharray="4 2.5""# : "")/>"##
                + ##"<text x="\##(n(lx + 19))" y="\##(n(ly))" font-size="11.5" fill="#31363c">\##(escape(legendLabel(series)))</text></g>"##)
        }

        // Grid and tick labels.
        let xLabels = axis.labels, yLabels = tickLabels(yTicks)
        for (tick, label) in zip(yTicks, yLabels) {
            let ty = py(tick)
            svg.line(##"<line x1="\##(n(Layout.plotLeft))" y1="\##(n(ty))" x2="\##(n(Layout.plotLeft + plotWidth))" y2="\##(n(ty))" stroke="#eaeef2"/>"##
                + ##"<text x="\##(n(Layout.plotLeft - 7))" y="\##(n(ty + 3.5))" font-size="10.5" fill="#656d76" text-anchor="end">\##(escape(label))</text>"##)
        }
        for (tick, label) in zip(xTicks, xLabels) {
            let tx = px(tick)
            svg.line(##"<line x1="\##(n(tx))" y1="\##(n(top))" x2="\##(n(tx))" y2="\##(n(top + plotHeight))" stroke="#eaeef2"/>"##
                + ##"<text x="\##(n(tx))" y="\##(n(top + plotHeight + 15))" font-size="10.5" fill="#656d76" text-anchor="middle">\##(escape(label))</text>"##)
        }
        svg.line(##"<path d="M\##(n(Layout.plotLeft)),\##(n(top))V\##(n(top + plotHeight))H\##(n(Layout.plotLeft + plotWidth))" fill="none" stroke="#8c959f"/>"##)
        svg.line(##"<text x="\##(n(Layout.plotLeft + plotWidth))" y="\##(n(top + plotHeight + 31))" font-size="10.5" fill="#8c959f" text-anchor="end">\##(escape(axis.name))</text>"##)

        if let best {
            // The label sits above the plot area (curves and their markers stay inside it),
            // centred on the line, and within the plot's width.
            let bx = px(best)
            let lx = min(max(bx, Layout.plotLeft + 16), Layout.plotLeft + plotWidth - 16)
            svg.line(##"<g class="best-marker"><line x1="\##(n(bx))" y1="\##(n(top - 4))" x2="\##(n(bx))" y2="\##(n(top + plotHeight))" stroke="#1a7f37" stroke-width="1.2" stroke-dasharray="5 4"/>"##
                + ##"<text x="\##(n(lx))" y="\##(n(top - 8))" font-size="10.5" font-weight="600" fill="#1a7f37" text-anchor="middle">\##(escape(axis.bestLabel))</text></g>"##)
        }

        for series in panel.series {
            svg.line(##"<g class="series" fill="none" stroke="\##(series.color)" stroke-linejoin="round" stroke-linecap="round">"##)
            let raw = thin(series.points)
            let dash = series.dashed ? #" stroke-dasharray="6 4""# : ""
            if raw.count > 1 {
                let style = series.smoothed == nil ? ##"stroke-width="\##(series.markers ? 1.5 : 1.8)""## : ##"stroke-width="1" stroke-opacity="0.3""##
                svg.line(##"<polyline \##(style)\##(dash) points="\##(polyline(raw, px, py))"/>"##)
            }
            if let smoothed = series.smoothed {
                svg.line(##"<polyline stroke-width="2.2"\##(dash) points="\##(polyline(thin(smoothed), px, py))"/>"##)
            }
            if series.markers || raw.count == 1 {
                for point in raw {
                    svg.line(##"<circle cx="\##(n(px(point.x)))" cy="\##(n(py(point.y)))" r="3.2" fill="\##(series.color)" stroke="#ffffff" stroke-width="1">"##
                        + ##"<title>\##(escape(series.name)) = \##(format(point.y)) at \##(escape(axis.name)) \##(escape(axis.format(point.x)))</title></circle>"##)
                }
            }
            svg.line("</g>")
        }
        svg.line("</g>")
    }

    /// The series name and its latest (smoothed, when smoothing) value, e.g. "contrastive_loss 0.4121"
    /// (the name alone when `latestInLegend` is off).
    private static func legendLabel(_ series: Series) -> String {
        series.latestInLegend ? "\(series.name) \(format((series.smoothed ?? series.points).last!.y))" : series.name
    }

    /// Flows legend entries left to right, wrapping at the plot width. Text width is estimated
    /// (no font metrics in an SVG writer); 6.4 px per character suits 11.5 px sans-serif.
    private static func legendLayout(_ series: [Series], width: Double) -> (entries: [(x: Double, row: Int)], rows: Int) {
        var entries: [(x: Double, row: Int)] = []
        var x = 0.0, row = 0
        for item in series {
            let entryWidth = 19 + Double(legendLabel(item).count) * 6.4 + 16
            if x > 0, x + entryWidth > width { (x, row) = (0, row + 1) }
            entries.append((x, row))
            x += entryWidth
        }
        return (entries, series.isEmpty ? 0 : row + 1)
    }

    private static func polyline(_ points: [Point], _ px: (Double) -> Double, _ py: (Double) -> Double) -> String {
        var text = ""
        text.reserveCapacity(points.count * 12)
        for (i, point) in points.enumerated() {
            if i > 0 { text += " " }
            text += n(px(point.x)) + "," + n(py(point.y))
        }
        return text
    }

    private static func subtitle(_ records: [MetricsRecord], best: Int?) -> String {
        guard let last = records.max(by: { $0.step < $1.step }) else { return "" }
        var parts = ["step \(grouped(last.step))"]
        if last.epoch.isFinite { parts.append("epoch \(String(format: "%.2f", last.epoch))") }
        let evaluations = records.filter { $0.kind == .eval }.count
        parts.append(counted(records.count - evaluations, "log point", number: grouped))
        parts.append(counted(evaluations, "evaluation", number: grouped))
        if let best { parts.append("best step \(grouped(best))") }
        return parts.joined(separator: "  ·  ")
    }

    private static func emptySVG(title: String, hasRecords: Bool) -> String {
        var svg = SVGText()
        svg.open(width: 640, height: 200)
        svg.line(##"<rect width="100%" height="100%" fill="#f6f7f9"/>"##)
        svg.line(##"<text x="24" y="36" font-size="20" font-weight="600" fill="#1f2328">\##(escape(title))</text>"##)
        let message = hasRecords ? "no plottable metrics yet" : "no data yet"
        svg.line(##"<text x="320" y="118" font-size="15" fill="#8c959f" text-anchor="middle">\##(message)</text>"##)
        svg.line("</svg>")
        return svg.text
    }

    /// Legend and tooltip values: four significant digits.
    static func format(_ value: Double) -> String {
        String(format: "%.4g", value)
    }

    private static func grouped(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0, (digits.count - i) % 3 == 0 { out += "," }
            out.append(c)
        }
        return (value < 0 ? "-" : "") + out
    }

    /// Coordinates to 0.1 px: plenty for a screen, and far shorter than `Double.description`.
    static func n(_ value: Double) -> String {
        let tenths = Int((value * 10).rounded())
        let whole = String(tenths.magnitude / 10), fraction = tenths.magnitude % 10
        return (tenths < 0 ? "-" : "") + whole + (fraction == 0 ? "" : ".\(fraction)")
    }

    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            // XML 1.0 forbids most control characters even when escaped.
            case _ where scalar.value < 0x20 && scalar != "\t" && scalar != "\n": out += " "
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    private struct SVGText {
        var text = ""
        mutating func open(width: Double, height: Double) {
            line(##"<?xml version="1.0" encoding="UTF-8"?>"##)
            line(##"<svg xmlns="http://www.w3.org/2000/svg" width="\##(n(width))" height="\##(n(height))" viewBox="0 0 \##(n(width)) \##(n(height))" font-family="\##(Layout.font)">"##)
        }
        mutating func line(_ s: String) {
            text += s
            text += "\n"
        }
    }
}
