// Left out of the test binary Scripts/gpu-check carries to a GPU machine (built with
// -DCLIPTUNE_NO_FOUNDATION_XML): FoundationXML needs libxml2 and ICU 72, which that machine may lack
// and which would not fit in what it carries. CI and `swift test` build it as always.
#if !CLIPTUNE_NO_FOUNDATION_XML
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import Training

// MARK: - Fixtures

private func scratchFolder(_ name: String = #function) throws -> String { temporaryFolder("reporting-" + name) }

private func trainRecord(_ step: Int, _ values: [String: Double]) -> MetricsRecord {
    MetricsRecord(kind: .train, step: step, epoch: Double(step) / 100, values: values)
}

private func evalRecord(_ step: Int, _ values: [String: Double]) -> MetricsRecord {
    MetricsRecord(kind: .eval, step: step, epoch: Double(step) / 100, values: values)
}

/// A plausible CLIP fine-tuning run: two loss terms, warm-up/cosine lr, logit scale, evaluations.
private func exampleRun(steps: Int = 3_000, logEvery: Int = 10, evalEvery: Int = 500) -> [MetricsRecord] {
    var records: [MetricsRecord] = []
    var noise = TestRandom("example run", defaultSeed: 3_000)
    for step in stride(from: logEvery, through: steps, by: logEvery) {
        let t = Double(step) / Double(steps)
        let jitter = Double.random(in: -0.15...0.15, using: &noise)
        let contrastive = 0.6 + 2.4 * exp(-5 * t) + jitter
        let distill = 0.3 + 0.5 * exp(-3 * t) + jitter / 3
        let warmup = min(1, Double(step) / 300)
        records.append(trainRecord(step, [
            "loss": contrastive + distill, "contrastive_loss": contrastive, "distill_loss": distill,
            "lr": 5e-5 * warmup * 0.5 * (1 + cos(Double.pi * t)), "logit_scale": 2.6592 + 1.2 * t,
            "samples_per_second": 800 + jitter * 100, "data_time": 0.02,
        ]))
        if step % evalEvery == 0 {
            let r = 0.35 + 0.25 * (1 - exp(-4 * t))
            records.append(evalRecord(step, [
                "image_to_text_R@1": r, "image_to_text_R@5": r + 0.2, "image_to_text_R@10": r + 0.28,
                "text_to_image_R@1": r - 0.03, "text_to_image_R@5": r + 0.17, "text_to_image_R@10": r + 0.25,
                "image_to_text_mean_rank": 12 - 8 * t, "clip_val_loss": 1.2 + 0.9 * exp(-4 * t) + 0.2 * t * t,
                "zeroshot_top1": 0.55 + 0.1 * t, "zeroshot_top5": 0.8 + 0.08 * t, "best_step": Double(min(step, 2_000)),
            ]))
        }
    }
    return records
}

/// A distillation run's log: four loss terms, six recall curves of which R@5 and R@10 climb to
/// just under 1 around the best step and one reaches 1 (the top of the axis, with its marker)
/// from it on, validation loss, zero-shot.
private func distillationRun(steps: Int = 500, best: Int = 400) -> [MetricsRecord] {
    var records: [MetricsRecord] = []
    for step in stride(from: 10, through: steps, by: 10) {
        let t = Double(step) / Double(steps)
        let logit = 0.2 + 1.4 * exp(-4 * t), feature = 0.1 + 0.5 * exp(-6 * t), contrastive = 0.5 + 2.5 * exp(-5 * t)
        records.append(trainRecord(step, ["loss": logit + feature + contrastive, "logit_distill_loss": logit, "feature_distill_loss": feature,
                                          "contrastive_loss": contrastive, "lr": 1e-3 * 0.5 * (1 + cos(Double.pi * t)), "logit_scale": 2.66 + t]))
        if step % 50 == 0 {
            let r = 1 - exp(-4 * t)
            records.append(evalRecord(step, [
                "image_to_text_R@1": 0.52 * r, "image_to_text_R@5": 0.975 * r, "image_to_text_R@10": step >= best ? 1 : 0.99 * r,
                "text_to_image_R@1": 0.54 * r, "text_to_image_R@5": 0.97 * r, "text_to_image_R@10": 0.985 * r,
                "clip_val_loss": 0.4 + 2 * exp(-4 * t), "zeroshot_top1": 0.15 * r, "zeroshot_top5": 0.66 * r,
                "best_step": Double(min(step, best)),
            ]))
        }
    }
    return records
}

/// What an SVG consists of, as seen by a real XML parser.
final class XMLOutline: NSObject, XMLParserDelegate {
    var elements: [(name: String, attributes: [String: String])] = []
    var texts: [String] = []
    private var current = ""

    static func parse(_ text: String) -> XMLOutline? {
        let outline = XMLOutline()
        let parser = XMLParser(data: Data(text.utf8))
        parser.delegate = outline
        return parser.parse() ? outline : nil
    }

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                qualifiedName qName: String?, attributes attributeDict: [String: String] = [:]) {
        elements.append((elementName, attributeDict))
        current = ""
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) { current += string }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?) {
        if elementName == "text" { texts.append(current) }
        current = ""
    }

    func withClass(_ name: String) -> [[String: String]] {
        elements.filter { $0.attributes["class"] == name }.map(\.attributes)
    }

    /// Panel titles are the texts with class "panel-title"; the parser gives texts in order, so
    /// match them by content instead.
    func hasText(_ text: String) -> Bool { texts.contains(text) }
}

private final class Capture {
    var text = ""
    var now = 0.0
}

// MARK: - MetricsLog

@Suite("Metrics log")
struct MetricsLogTests {
    @Test func roundTripWritesSortedFlatJSONLines() throws {
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/metrics.jsonl"
        let records = [
            trainRecord(10, ["loss": 1.23, "lr": 1e-5, "contrastive_loss": 1.0 / 3]),
            evalRecord(20, ["image_to_text_R@1": 0.5, "clip_val_loss": 2.25]),
            trainRecord(30, [:]),
        ]
        let log = try MetricsLog(path: path)
        for record in records { try log.append(record) }
        // Visible to readers before close: each append is written through.
        #expect(try MetricsLog.read(path) == records)
        log.close()

        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 3)
        #expect(lines[0] == #"{"contrastive_loss": 0.3333333333333333, "epoch": 0.1, "kind": "train", "loss": 1.23, "lr": 1e-05, "step": 10}"#)
        #expect(lines[1] == #"{"clip_val_loss": 2.25, "epoch": 0.2, "image_to_text_R@1": 0.5, "kind": "eval", "step": 20}"#)
        // Every line is a JSON object another tool can read.
        for line in lines { #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) is [String: Any]) }
        #expect(throws: MetricsLogError.self) { try log.append(trainRecord(40, [:])) }
    }

    @Test func nonFiniteValuesAreWrittenAsNull() throws {
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/metrics.jsonl"
        let log = try MetricsLog(path: path)
        try log.append(trainRecord(1, ["loss": .nan, "grad_norm": .infinity, "lr": -.infinity, "ok": 2]))
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text == #"{"epoch": 0.01, "grad_norm": null, "kind": "train", "loss": null, "lr": null, "ok": 2.0, "step": 1}"# + "\n")
        #expect(!text.lowercased().contains("nan") && !text.lowercased().contains("inf"))
        let back = try #require(try MetricsLog.read(path).first)
        #expect(back.values["loss"]!.isNaN && back.values["grad_norm"]!.isNaN && back.values["ok"] == 2)
    }

    @Test func resumeKeepsOnlyRecordsUpToTheCheckpointStep() throws {
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/metrics.jsonl"
        do {
            let log = try MetricsLog(path: path)
            for step in stride(from: 10, through: 50, by: 10) { try log.append(trainRecord(step, ["loss": Double(step)])) }
            try log.append(evalRecord(30, ["clip_val_loss": 1]))   // logged after step 30's train line
            try log.append(evalRecord(50, ["clip_val_loss": 0.5]))
        }
        // A line from a newer writer with unknown fields survives verbatim.
        let foreign = #"{"kind": "train", "note": "hello", "step": 20}"#
        try (String(contentsOfFile: path, encoding: .utf8) + foreign + "\n").write(toFile: path, atomically: false, encoding: .utf8)

        let resumed = try MetricsLog(path: path, resumeAt: 30)
        #expect(try MetricsLog.read(path).map(\.step) == [10, 20, 30, 30, 20])
        #expect(try String(contentsOfFile: path, encoding: .utf8).hasSuffix(foreign + "\n"))
        try resumed.append(trainRecord(40, ["loss": 40]))
        let steps = try MetricsLog.read(path).map { "\($0.kind.rawValue)@\($0.step)" }
        #expect(steps == ["train@10", "train@20", "train@30", "eval@30", "train@20", "train@40"])
        // The rewrite went through a temporary file that is gone now.
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["metrics.jsonl"])

        // Resuming where no log exists yet starts an empty one.
        let fresh = folder + "/other/metrics.jsonl"
        _ = try MetricsLog(path: fresh, resumeAt: 100)
        #expect(try MetricsLog.read(fresh).isEmpty)
    }

    @Test func tornLastLineIsSkippedButCorruptionElsewhereIsAnError() throws {
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/metrics.jsonl"
        let good = MetricsLog.encode(trainRecord(10, ["loss": 1])) + "\n" + MetricsLog.encode(trainRecord(20, ["loss": 0.5])) + "\n"
        try (good + #"{"kind": "train", "loss": 0.4, "st"#).write(toFile: path, atomically: false, encoding: .utf8)
        #expect(try MetricsLog.read(path).map(\.step) == [10, 20])

        // Resuming drops the torn line too, so appends start on a clean line.
        let log = try MetricsLog(path: path, resumeAt: 1_000)
        try log.append(trainRecord(30, ["loss": 0.3]))
        #expect(try MetricsLog.read(path).map(\.step) == [10, 20, 30])

        // A complete last line without its newline is still a record.
        try (good + MetricsLog.encode(trainRecord(30, ["loss": 0.3]))).write(toFile: path, atomically: false, encoding: .utf8)
        #expect(try MetricsLog.read(path).count == 3)

        try ("garbage\n" + good).write(toFile: path, atomically: false, encoding: .utf8)
        #expect(throws: MetricsLogError.self) { try MetricsLog.read(path) }
        #expect(throws: MetricsLogError.self) { try MetricsLog(path: path, resumeAt: 10) }
        #expect(throws: MetricsLogError.self) { try MetricsLog.read(path + ".missing") }
    }

    @Test func freshRunTruncatesAnOldLog() throws {
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/metrics.jsonl"
        try (MetricsLog.encode(trainRecord(99, [:])) + "\n").write(toFile: path, atomically: false, encoding: .utf8)
        let log = try MetricsLog(path: path)
        try log.append(trainRecord(1, ["loss": 1]))
        #expect(try MetricsLog.read(path).map(\.step) == [1])
    }
}

// MARK: - CurvesPlot

@Suite("Curves plot")
struct CurvesPlotTests {
    @Test func wellFormedSVGWithAPanelPerKindOfData() throws {
        let svg = CurvesPlot.svg(exampleRun(), title: "vit-b32 on flickr30k")
        let outline = try #require(XMLOutline.parse(svg), "the SVG is not well-formed XML")
        #expect(outline.elements.first?.name == "svg")
        #expect(!outline.elements.contains { ["script", "foreignObject", "image", "style"].contains($0.name) })
        #expect(outline.withClass("panel").count == 6)
        for title in ["training loss", "learning rate", "logit scale (exp)", "retrieval recall (validation)",
                      "validation loss", "zero-shot accuracy (validation)"] {
            #expect(outline.hasText(title), "missing panel \(title)")
        }
        // Raw + smoothed line for each of the three loss terms.
        let lossLegend = outline.texts.filter { $0.hasPrefix("loss ") || $0.hasPrefix("contrastive_loss ") || $0.hasPrefix("distill_loss ") }
        #expect(lossLegend.count == 3)
        for key in ["image_to_text_R@1", "text_to_image_R@10", "clip_val_loss", "zeroshot_top1", "zeroshot_top5"] {
            #expect(outline.texts.contains { $0.hasPrefix(key + " ") }, "no legend entry for \(key)")
        }
        // Rank metrics are on another scale and not plotted.
        #expect(!svg.contains("mean_rank"))
        #expect(outline.withClass("best-marker").count == 6)
        #expect(outline.texts.filter { $0 == "best" }.count == 6)
        #expect(svg.contains("best step 2,000"))
    }

    /// The "best" label is drawn where no curve is: its box (estimated from the font size, as a
    /// browser would lay it out, with a margin) crosses no segment of any polyline and no marker
    /// of its panel, nor a legend entry, at the start, middle and end of a run.
    @Test func theBestLabelOverlapsNoCurve() throws {
        struct Box { var left, top, right, bottom: Double }
        func intersects(_ box: Box, _ a: (Double, Double), _ b: (Double, Double)) -> Bool {
            // Liang–Barsky clipping of the segment against the box.
            var t0 = 0.0, t1 = 1.0
            let dx = b.0 - a.0, dy = b.1 - a.1
            for (p, q) in [(-dx, a.0 - box.left), (dx, box.right - a.0), (-dy, a.1 - box.top), (dy, box.bottom - a.1)] {
                if p == 0 { if q < 0 { return false }; continue }
                let r = q / p
                if p < 0 { t0 = max(t0, r) } else { t1 = min(t1, r) }
                if t0 > t1 { return false }
            }
            return true
        }
        func number(_ s: String?) -> Double { Double(s ?? "") ?? .nan }
        var checked = 0
        for (name, records, best) in [("distillation", distillationRun(), nil as Int?), ("distillation, best at the start", distillationRun(best: 50), nil),
                                      ("distillation, best at the end", distillationRun(best: 500), nil), ("distillation, best between evaluations", distillationRun(), 130),
                                      ("fine-tuning", exampleRun(), nil)] {
            let outline = try #require(XMLOutline.parse(CurvesPlot.svg(records, title: name, bestStep: best)))
            var offset = (0.0, 0.0), textIndex = 0
            var labels: [Box] = [], legends: [Box] = [], segments: [((Double, Double), (Double, Double))] = [], markers: [(Double, Double, Double)] = []
            func flush() {
                for label in labels {
                    checked += 1
                    for (a, b) in segments { #expect(!intersects(label, a, b), "\(name): the best label \(label) crosses the segment \(a)–\(b)") }
                    for (x, y, r) in markers {
                        let nearX = min(max(x, label.left), label.right), nearY = min(max(y, label.top), label.bottom)
                        #expect((nearX - x) * (nearX - x) + (nearY - y) * (nearY - y) > r * r, "\(name): the best label \(label) covers a marker at \(x), \(y)")
                    }
                    for legend in legends {
                        #expect(label.right < legend.left || legend.right < label.left || label.bottom < legend.top || legend.bottom < label.top,
                                "\(name): the best label \(label) overlaps the legend entry \(legend)")
                    }
                }
                (labels, legends, segments, markers) = ([], [], [], [])
            }
            for (element, attributes) in outline.elements {
                if attributes["class"] == "panel" {
                    flush()
                    let numbers = (attributes["transform"] ?? "").split { !"0123456789.-".contains($0) }.compactMap { Double($0) }
                    offset = (numbers[0], numbers[1])
                }
                switch element {
                case "polyline":
                    let points = attributes["points"]!.split(separator: " ").map { pair -> (Double, Double) in
                        let xy = pair.split(separator: ",")
                        return (offset.0 + number(String(xy[0])), offset.1 + number(String(xy[1])))
                    }
                    segments += zip(points, points.dropFirst()).map { ($0, $1) }
                case "circle":
                    markers.append((offset.0 + number(attributes["cx"]), offset.1 + number(attributes["cy"]), number(attributes["r"]) + 1))
                case "text":
                    defer { textIndex += 1 }
                    let text = outline.texts[textIndex], size = number(attributes["font-size"])
                    let x = offset.0 + number(attributes["x"]), y = offset.1 + number(attributes["y"])
                    // Sans-serif: about 0.62 em a character (bold), cap height 0.75 em, descent 0.25 em.
                    let width = Double(text.count) * 0.62 * size
                    let left = attributes["text-anchor"] == "middle" ? x - width / 2 : attributes["text-anchor"] == "end" ? x - width : x
                    let box = Box(left: left - 1, top: y - 0.8 * size - 1, right: left + width + 1, bottom: y + 0.25 * size + 1)
                    if text == "best" { labels.append(box) }
                    if size == 11.5 { legends.append(box) }   // legend entries
                default: break
                }
            }
            flush()
        }
        #expect(checked >= 5 * 5, "\(checked) best labels checked")
    }

    @Test func panelsOnlyForDataThatExists() throws {
        let records = (1...50).map { trainRecord($0 * 10, ["loss": 1 / Double($0), "samples_per_second": 100]) }
        let outline = try #require(XMLOutline.parse(CurvesPlot.svg(records, title: "run")))
        #expect(outline.withClass("panel").count == 1)
        #expect(outline.hasText("training loss"))
        #expect(outline.withClass("best-marker").isEmpty)
        // An explicit best step draws the marker even without a best_step value.
        let marked = try #require(XMLOutline.parse(CurvesPlot.svg(records, title: "run", bestStep: 200)))
        #expect(marked.withClass("best-marker").count == 1)
        // Outside the plotted steps there is nothing to mark.
        let outside = try #require(XMLOutline.parse(CurvesPlot.svg(records, title: "run", bestStep: 10_000_000)))
        #expect(outside.withClass("best-marker").isEmpty)
    }

    @Test func logitScaleIsExponentiatedOnlyWhenItIsTheLogParameter() throws {
        let raw = CurvesPlot.svg([trainRecord(1, ["logit_scale": 2.6592]), trainRecord(2, ["logit_scale": log(100)])], title: "t")
        #expect(raw.contains("logit scale (exp)") && raw.contains("exp(logit_scale) 100"))
        let exponentiated = CurvesPlot.svg([trainRecord(1, ["logit_scale": 14.29]), trainRecord(2, ["logit_scale": 30])], title: "t")
        #expect(!exponentiated.contains("(exp)") && exponentiated.contains("logit_scale 30"))
    }

    @Test func nonFiniteValuesAreSkipped() throws {
        var records = exampleRun(steps: 400)
        records[3].values["loss"] = .nan
        records[5].values["lr"] = .infinity
        records.append(evalRecord(400, ["clip_val_loss": -.infinity, "zeroshot_top1": .nan]))
        records.append(trainRecord(410, ["logit_scale": .nan]))
        let svg = CurvesPlot.svg(records, title: "run")
        #expect(XMLOutline.parse(svg) != nil)
        #expect(!svg.contains("NaN") && !svg.lowercased().contains("nan") && !svg.lowercased().contains("inf"))
        // A series with no finite value at all gets no panel.
        let onlyNaN = CurvesPlot.svg([trainRecord(1, ["loss": .nan]), trainRecord(2, ["loss": .infinity])], title: "run")
        #expect(onlyNaN.contains("no plottable metrics yet") && !onlyNaN.contains("training loss"))
    }

    @Test func emptySinglePointAndConstantSeries() throws {
        let empty = CurvesPlot.svg([], title: "fresh run")
        #expect(XMLOutline.parse(empty) != nil && empty.contains("no data yet") && empty.contains("fresh run"))

        let single = CurvesPlot.svg([trainRecord(0, ["loss": 2])], title: "run")
        let singleOutline = try #require(XMLOutline.parse(single))
        #expect(singleOutline.elements.contains { $0.name == "circle" })   // one point: a dot, not an invisible line
        #expect(!single.lowercased().contains("nan"))

        let constant = CurvesPlot.svg((1...20).map { trainRecord($0, ["loss": 0.7, "lr": 1e-4]) }, title: "run")
        let outline = try #require(XMLOutline.parse(constant))
        #expect(!constant.lowercased().contains("nan") && !constant.contains("inf"))
        #expect(outline.texts.contains("0.70"))   // the value sits on a labelled tick mid-axis
        #expect(outline.texts.contains("9e-5") && outline.texts.contains("1e-4") && outline.texts.contains("1.05e-4"))
    }

    @Test func longRunsAreThinnedToAtMost2000PointsPerLine() throws {
        var points = (0..<100_000).map { CurvesPlot.Point(x: Double($0), y: sin(Double($0) / 500)) }
        points[51_234].y = 50      // a loss spike
        points[77_777].y = -40
        let thinned = CurvesPlot.thin(points)
        #expect(thinned.count <= 2_000 && thinned.count > 1_900)
        #expect(thinned.first == points.first && thinned.last == points.last)
        #expect(thinned.contains(points[51_234]) && thinned.contains(points[77_777]))
        #expect(zip(thinned, thinned.dropFirst()).allSatisfy { $0.x < $1.x })
        #expect(CurvesPlot.thin(Array(points.prefix(2_000))).count == 2_000)

        let svg = CurvesPlot.svg(exampleRun(steps: 500_000, logEvery: 10, evalEvery: 50_000), title: "long run")
        let outline = try #require(XMLOutline.parse(svg))
        let polylines = outline.elements.filter { $0.name == "polyline" }
        #expect(!polylines.isEmpty)
        for line in polylines {
            #expect(line.attributes["points"]!.split(separator: " ").count <= 2_000)
        }
        #expect(outline.texts.contains("500k"))
    }

    @Test func niceTicksAreOneTwoOrFiveTimesAPowerOfTen() {
        #expect(CurvesPlot.niceTicks(0, 0.93) == [0, 0.2, 0.4, 0.6, 0.8, 1.0])
        #expect(CurvesPlot.niceTicks(0.37, 0.61) == [0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65])
        #expect(CurvesPlot.niceTicks(10, 30_000, count: 6) == [0, 5_000, 10_000, 15_000, 20_000, 25_000, 30_000])
        #expect(CurvesPlot.niceTicks(0, 5e-5) == [0, 1e-5, 2e-5, 3e-5, 4e-5, 5e-5])
        #expect(CurvesPlot.niceTicks(-1.3, 2.1) == [-1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2, 2.5])
        for (low, high) in [(0.0012, 0.0097), (3.0, 7_777.0), (-50.0, -49.2), (1e-7, 3e-7), (123_456.0, 9_876_543.0)] {
            let ticks = CurvesPlot.niceTicks(low, high)
            #expect(ticks.first! <= low && ticks.last! >= high)
            #expect((3...12).contains(ticks.count), "\(ticks)")
            let spacing = ticks[1] - ticks[0]
            let mantissa = spacing / pow(10, floor(log10(spacing)))
            #expect([1.0, 2, 5].contains { abs(mantissa - $0) < 1e-9 }, "spacing \(spacing)")
        }
        // Degenerate ranges give an axis instead of trapping.
        #expect(CurvesPlot.niceTicks(0, .leastNonzeroMagnitude * 1_000).count >= 2)
        #expect(CurvesPlot.niceTicks(-1e308, 1e308).count >= 2)
        // Constant and single values still get a non-empty range.
        for value in [0.0, 0.7, -3.0, 1e-9, 1e12] {
            let ticks = CurvesPlot.niceTicks(value, value)
            #expect(ticks.count >= 2 && ticks.first! < value && ticks.last! > value, "\(value): \(ticks)")
        }
    }

    @Test func tickLabelsAreShortAndDistinct() {
        #expect(CurvesPlot.tickLabels([0, 0.2, 0.4]) == ["0.0", "0.2", "0.4"])
        #expect(CurvesPlot.tickLabels([1, 2, 3]) == ["1", "2", "3"])
        #expect(CurvesPlot.tickLabels([0, 1e-5, 2e-5]) == ["0", "1e-5", "2e-5"])
        #expect(CurvesPlot.tickLabels([5e-6, 1e-5, 1.5e-5, 3e-5]) == ["5e-6", "1e-5", "1.5e-5", "3e-5"])
        #expect(CurvesPlot.tickLabels([0, 2e5, 4e5]) == ["0", "2e5", "4e5"])
        #expect(CurvesPlot.tickLabels([0, 5_000, 10_000, 15_000], isStep: true) == ["0", "5k", "10k", "15k"])
        #expect(CurvesPlot.tickLabels([0, 500_000, 1_000_000, 1_500_000], isStep: true) == ["0", "0.5M", "1.0M", "1.5M"])
        #expect(CurvesPlot.tickLabels([-0.5, 0, 0.5]) == ["-0.5", "0.0", "0.5"])
    }

    @Test func titlesAndLabelsAreEscaped() throws {
        let svg = CurvesPlot.svg([trainRecord(1, ["loss": 1, "a<b>&\"c\"_loss": 2])], title: #"<script>alert("x")</script> & 'run'"#)
        let outline = try #require(XMLOutline.parse(svg))
        #expect(!svg.contains("<script>") && outline.elements.allSatisfy { $0.name != "script" })
        #expect(outline.texts.contains(#"<script>alert("x")</script> & 'run'"#))
        #expect(outline.texts.contains(#"a<b>&"c"_loss 2"#))
    }

    @Test func writeIsAtomicAndComplete() throws {
        let folder = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try CurvesPlot.write(exampleRun(steps: 200), title: "run", to: folder + "/curves.svg")
        try CurvesPlot.write(exampleRun(steps: 300), title: "run", to: folder + "/curves.svg")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["curves.svg"])
        let text = try String(contentsOfFile: folder + "/curves.svg", encoding: .utf8)
        #expect(text.hasSuffix("</svg>\n") && XMLOutline.parse(text) != nil)
    }
}

// MARK: - ProgressReporter

@Suite("Progress reporter")
struct ProgressReporterTests {
    private func reporter(total: Int?, terminal: Bool, logEvery: Int = 10, width: Int = 120,
                          _ capture: Capture) -> ProgressReporter {
        ProgressReporter(totalSteps: total, isTerminal: terminal, logEvery: logEvery, terminalWidth: width,
                         now: { capture.now }, output: { capture.text += $0 })
    }

    @Test func plainModePrintsEveryLogEveryStepsWithoutControlCharacters() {
        let capture = Capture()
        let progress = reporter(total: 25, terminal: false, capture)
        progress.message("resumed at step 0")
        for step in 1...25 {
            capture.now = Double(step)
            progress.update(step: step, epoch: Double(step) / 10, loss: 1 / Double(step), samplesPerSecond: 256, lr: 1e-5,
                            extra: ["grad_norm": 0.5])
        }
        progress.finish()
        progress.finish()
        let lines = capture.text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 5 && lines.last == "")   // message, steps 10, 20, 25 (the last), trailing newline
        #expect(lines[0] == "resumed at step 0")
        #expect(lines[1] == "step 10/25 (40.0%)  elapsed 0:00:10  ETA 0:00:15  loss 0.1000  256.0 samples/s  lr 1.00e-05  epoch 1.00  grad_norm 0.5")
        #expect(lines[2].hasPrefix("step 20/25 ") && lines[3].hasPrefix("step 25/25 (100.0%)"))
        #expect(!capture.text.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" || $0.value == 0x7F })
    }

    @Test func plainModeFinishPrintsAnUnloggedLastStep() {
        let capture = Capture()
        let progress = reporter(total: nil, terminal: false, logEvery: 10, capture)
        for step in 1...13 { progress.update(step: step, epoch: 0, loss: 1, samplesPerSecond: 1, lr: 1) }
        progress.finish()
        #expect(capture.text.split(separator: "\n").map { $0.prefix(7) } == ["step 10", "step 13"])
    }

    @Test func terminalModeRedrawsInPlaceWithETAFromTheClock() {
        let capture = Capture()
        let progress = reporter(total: 100, terminal: true, capture)
        capture.now = 10
        progress.update(step: 10, epoch: 0.5, loss: 0.4123, samplesPerSecond: 812.34, lr: 2e-5)
        #expect(capture.text.hasPrefix("\r["))
        #expect(capture.text.hasSuffix("\u{1B}[K"))
        #expect(capture.text.contains("10/100 10.0% ETA 0:01:30"))
        #expect(capture.text.contains("loss 0.4123") && capture.text.contains("812.3 samples/s") && capture.text.contains("lr 2.00e-05"))
        #expect(!capture.text.contains("\n"))
        let bar = capture.text.dropFirst(2).prefix { $0 != "]" }
        #expect(bar.count >= 10 && bar.filter { $0 == "#" }.count == bar.count / 10)   // 10% filled

        capture.text = ""
        capture.now = 40   // 50 steps in 40 s: 50 left take 40 s more
        progress.update(step: 50, epoch: 2.5, loss: 0.3, samplesPerSecond: 800, lr: 1e-5)
        #expect(capture.text.contains("50/100 50.0% ETA 0:00:40"))

        // A resumed run's ETA counts only this session's steps.
        let resumed = Capture()
        let second = ProgressReporter(totalSteps: 1_000, isTerminal: true, startStep: 900, terminalWidth: 120,
                                      now: { resumed.now }, output: { resumed.text += $0 })
        resumed.now = 5
        second.update(step: 950, epoch: 0, loss: 0, samplesPerSecond: 0, lr: 0)
        #expect(resumed.text.contains("ETA 0:00:05"))
    }

    @Test func terminalRedrawsAreThrottledButTheLastStepAlwaysShows() {
        let capture = Capture()
        let progress = reporter(total: 1_000, terminal: true, capture)
        var draws: Int { capture.text.filter { $0 == "\r" }.count }
        for step in 1...100 {
            capture.now = Double(step) * 0.001   // 100 steps in 0.1 s
            progress.update(step: step, epoch: 0, loss: 1, samplesPerSecond: 1, lr: 1)
        }
        #expect(draws == 1)
        capture.now = 0.2
        progress.update(step: 101, epoch: 0, loss: 1, samplesPerSecond: 1, lr: 1)
        #expect(draws == 2)
        progress.update(step: 1_000, epoch: 0, loss: 1, samplesPerSecond: 1, lr: 1)
        #expect(draws == 3 && capture.text.hasSuffix("\u{1B}[K"))
        progress.finish()
        #expect(capture.text.hasSuffix("\n"))
        let length = capture.text.count
        progress.finish()
        #expect(capture.text.count == length)
    }

    @Test func terminalLineFitsTheWidth() {
        for width in [40, 60, 80, 100, 200] {
            let capture = Capture()
            let progress = reporter(total: 123_456, terminal: true, width: width, capture)
            capture.now = 3
            progress.update(step: 61_728, epoch: 12.5, loss: 0.123456, samplesPerSecond: 12_345.6, lr: 3e-4,
                            extra: ["grad_norm": 1.5, "distill_loss": 0.25])
            let visible = capture.text.replacingOccurrences(of: "\r", with: "").replacingOccurrences(of: "\u{1B}[K", with: "")
            #expect(visible.count <= width - 1, "\(width): \(visible)")
            #expect(visible.contains("61728/123456"))
            #expect(width < 80 || visible.contains("loss 0.1235"))
            #expect(width < 200 || visible.contains("grad_norm 1.5"))
        }
    }

    @Test func messagesPrintAboveTheBar() {
        let capture = Capture()
        let progress = reporter(total: 10, terminal: true, capture)
        progress.message("before any bar")
        #expect(capture.text == "before any bar\n")
        capture.now = 1
        progress.update(step: 1, epoch: 0, loss: 1, samplesPerSecond: 1, lr: 1)
        capture.text = ""
        progress.message("evaluating at step 1…")
        #expect(capture.text.hasPrefix("\r\u{1B}[Kevaluating at step 1…\n\r["))
        #expect(capture.text.contains("1/10 10.0%") && capture.text.hasSuffix("\u{1B}[K"))
    }

    @Test func withoutATotalThereIsNoBarOrETA() {
        let capture = Capture()
        let progress = reporter(total: nil, terminal: true, capture)
        capture.now = 65
        progress.update(step: 7, epoch: 0, loss: 1, samplesPerSecond: 1, lr: 1)
        #expect(capture.text.hasPrefix("\rstep 7 elapsed 0:01:05"))
        #expect(!capture.text.contains("#") && !capture.text.contains("] ") && !capture.text.contains("ETA"))
    }

    @Test func durationsAreHoursMinutesSeconds() {
        #expect(ProgressReporter.duration(0) == "0:00:00")
        #expect(ProgressReporter.duration(90) == "0:01:30")
        #expect(ProgressReporter.duration(3_599.6) == "1:00:00")
        #expect(ProgressReporter.duration(100 * 3_600 + 61) == "100:01:01")
        #expect(ProgressReporter.duration(.nan) == "-:--:--")
    }
}
#endif
