import Foundation
import Testing
import Datasets
import Torch
@testable import Training

/// Per-sample evaluation results, the metrics of subsets and resamples, the paired bootstrap of
/// A/B comparisons and its table, and the zero-shot label checks.
@Suite("Per-sample evaluation and the A/B bootstrap")
struct EvaluationSamplesTests {
    /// open_clip's metrics straight from a list of 0-based ranks, by the textbook definitions.
    private func reference(_ ranks: [Int], prefix: String) -> [String: Double] {
        let n = Double(ranks.count), sorted = ranks.sorted()
        let middle = sorted.count % 2 == 1 ? Double(sorted[sorted.count / 2]) : Double(sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        var m = ["\(prefix)_mean_rank": Double(ranks.reduce(0, +)) / n + 1, "\(prefix)_median_rank": middle.rounded(.down) + 1]
        for k in [1, 5, 10] { m["\(prefix)_R@\(k)"] = Double(ranks.filter { $0 < k }.count) / n }
        return m
    }

    private func samples(_ n: Int, seed: UInt64, maxRank: Int = 30, hitRate: Double? = nil) -> EvaluationSamples {
        var random = SeededRandom(seed: seed)
        func rank() -> Int {
            if let hitRate { return random.chance(hitRate) ? 0 : 1 + Int(random.next() % UInt64(maxRank)) }
            return Int(random.next() % UInt64(maxRank))
        }
        return EvaluationSamples(origins: (0..<n).map { "s\($0)" }, imageToTextRanks: (0..<n).map { _ in rank() },
                                 textToImageRanks: (0..<n).map { _ in rank() },
                                 zeroShotRanks: (0..<n).map { i in i % 7 == 3 ? nil : Int(random.next() % 7) },
                                 losses: (0..<n).map { _ in random.uniform(0.5, 3) })
    }

    @Test func metricsOfAllSubsetsAndResamplesFollowTheDefinitions() throws {
        let s = samples(37, seed: 1)
        let whole = s.metrics()
        var expected = reference(s.imageToTextRanks!, prefix: "image_to_text").merging(reference(s.textToImageRanks!, prefix: "text_to_image")) { a, _ in a }
        let labelled = s.zeroShotRanks!.compactMap { $0 }
        expected["zeroshot_top1"] = Double(labelled.filter { $0 == 0 }.count) / Double(labelled.count)
        expected["zeroshot_top5"] = Double(labelled.filter { $0 < 5 }.count) / Double(labelled.count)
        expected["clip_val_loss"] = s.losses.compactMap { $0 }.reduce(0, +) / 37
        expected["val_samples"] = 37
        #expect(Set(whole.keys) == Set(expected.keys))
        for (key, value) in expected { #expect(abs(whole[key]! - value) <= 1e-12, "\(key): \(whole[key]!) vs \(value)") }
        #expect(s.metrics(of: Array(0..<37)) == whole)

        // A resample counts a repeated sample as often as it appears: the same as a list of its ranks.
        let resample = [0, 0, 0, 5, 9, 9, 36, 12, 3, 3]
        let m = s.metrics(of: resample)
        for (key, value) in reference(resample.map { s.imageToTextRanks![$0] }, prefix: "image_to_text") {
            #expect(abs(m[key]! - value) <= 1e-12, "\(key)")
        }
        #expect(m["val_samples"] == 10)
        #expect(abs(m["clip_val_loss"]! - resample.map { s.losses[$0]! }.reduce(0, +) / 10) <= 1e-12)
        let zeroShot = resample.compactMap { s.zeroShotRanks![$0] }   // 3 is unlabelled (3 % 7 == 3)
        #expect(zeroShot.count == 8 && m["zeroshot_top1"] == Double(zeroShot.filter { $0 == 0 }.count) / 8)
        #expect(s.metrics(of: []) == [:])
    }

    @Test func ranksAndLossesFromFeaturesMatchTheWholeSetFunctions() {
        let image = Tensor.randn([9, 6], generator: Generator(seed: 4)), text = Tensor.randn([9, 6], generator: Generator(seed: 5))
        let scale = Tensor(scalar: Float(2.5))
        let ranks = Evaluation.retrievalRanks(imageFeatures: image, textFeatures: text, logitScale: scale)
        let metrics = Evaluation.retrievalMetrics(imageFeatures: image, textFeatures: text, logitScale: scale)
        #expect(metrics == reference(ranks.imageToText, prefix: "image_to_text").merging(reference(ranks.textToImage, prefix: "text_to_image")) { a, _ in a })
        // Ranks by hand: how many captions score strictly higher than the image's own.
        let logits = contrastiveLogits(image, text, logitScale: scale).toArray(Float.self)
        for i in 0..<9 { #expect(ranks.imageToText[i] == (0..<9).filter { logits[i * 9 + $0] > logits[i * 9 + i] }.count) }
        for j in 0..<9 { #expect(ranks.textToImage[j] == (0..<9).filter { logits[$0 * 9 + j] > logits[j * 9 + j] }.count) }
        // Each pair's share of the loss averages to the batch's CLIP loss.
        let shares = Evaluation.clipLossPerSample(imageFeatures: image, textFeatures: text, logitScale: scale)
        let batch = clipLoss(imageFeatures: image, textFeatures: text, logitScale: scale).item(Double.self)
        #expect(shares.count == 9 && abs(shares.reduce(0, +) / 9 - batch) <= 1e-5)
    }

    @Test func zeroShotRanksPlaceTheTrueClass() {
        let classes = ZeroShotClasses(classes: ["a", "b", "c", "d", "e", "f", "g"], templates: ["{}"])
        let classifier = Tensor.eye(7)
        var rows = [Float](repeating: 0, count: 4 * 7)
        for (row, scores) in [[9, 1, 0, 0, 0, 0, 0], [1, 9, 0, 0, 0, 0, 0], [7, 6, 5, 4, 3, 2, 1], [1, 2, 3, 4, 5, 6, 7]].enumerated() {
            for (c, v) in scores.enumerated() { rows[row * 7 + c] = Float(v) }
        }
        let images = Tensor(rows, shape: [4, 7])
        let ranks = Evaluation.zeroShotRanks(imageFeatures: images, labels: ["a", "b", "c", "a"], classifier: classifier, classes: classes)
        #expect(ranks == [0, 0, 2, 5])   // the last: class a is 7th of 7, beyond the top 5
        let none = Evaluation.zeroShotRanks(imageFeatures: images, labels: ["x", nil, "", "y"], classifier: classifier, classes: classes)
        #expect(none == [nil, nil, nil, nil])
        #expect(Evaluation.zeroShotMetrics(imageFeatures: images, labels: ["x", nil, "", "y"], classifier: classifier, classes: classes).isEmpty)
    }

    // MARK: bootstrap

    @Test func identicalModelsGiveAZeroInterval() throws {
        let a = samples(200, seed: 2)
        let intervals = try Evaluation.bootstrapDifference(a: a, b: a, options: BootstrapOptions(resamples: 300))
        #expect(Set(intervals.keys) == Set(a.metrics().keys).subtracting(["val_samples"]))
        for (key, interval) in intervals { #expect(interval == 0...0, "\(key): \(interval)") }
    }

    @Test func aConstantShiftGivesThatShiftAsTheInterval() throws {
        let a = samples(150, seed: 3, hitRate: 0.3)
        var b = a
        b.imageToTextRanks = a.imageToTextRanks!.map { $0 + 1 }
        b.textToImageRanks = a.textToImageRanks!.map { $0 + 3 }
        b.losses = a.losses.map { $0.map { $0 + 0.25 } }
        let intervals = try Evaluation.bootstrapDifference(a: a, b: b, options: BootstrapOptions(resamples: 300))
        func isPoint(_ interval: ClosedRange<Double>?, _ value: Double) -> Bool {
            guard let interval else { return false }
            return abs(interval.lowerBound - value) <= 1e-12 && abs(interval.upperBound - value) <= 1e-12
        }
        // (Means of shifted values differ from the shift by rounding only.)
        #expect(isPoint(intervals["image_to_text_mean_rank"], 1) && intervals["image_to_text_median_rank"] == 1...1)
        #expect(isPoint(intervals["text_to_image_mean_rank"], 3) && intervals["text_to_image_median_rank"] == 3...3)
        #expect(isPoint(intervals["clip_val_loss"], 0.25), "\(intervals["clip_val_loss"]!)")
        #expect(intervals["zeroshot_top1"] == 0...0)
        // Ranks one worse can only lose recall.
        #expect(intervals["image_to_text_R@1"]!.upperBound < 0)
    }

    /// A known answer: B retrieves every second query at rank 0 and A none, so B − A in R@1 is a
    /// resampled proportion of 1/2: about 0.5 ± 1.96 · √(0.25 / n).
    @Test func theIntervalOfAProportionIsTheBinomialOne() throws {
        let n = 400
        let a = EvaluationSamples(origins: (0..<n).map { "\($0)" }, imageToTextRanks: [Int](repeating: 7, count: n))
        let b = EvaluationSamples(origins: a.origins, imageToTextRanks: (0..<n).map { $0 % 2 == 0 ? 0 : 7 })
        let interval = try #require(try Evaluation.bootstrapDifference(a: a, b: b, options: BootstrapOptions(resamples: 2_000))["image_to_text_R@1"])
        let half = 1.96 * (0.25 / Double(n)).squareRoot()
        #expect(abs(interval.lowerBound - (0.5 - half)) < 0.008 && abs(interval.upperBound - (0.5 + half)) < 0.008, "\(interval)")
    }

    @Test func theIntervalShrinksWithMoreSamples() throws {
        func width(_ n: Int) throws -> Double {
            let a = samples(n, seed: 10, hitRate: 0.4), b = samples(n, seed: 11, hitRate: 0.5)
            let interval = try #require(try Evaluation.bootstrapDifference(a: a, b: b, options: BootstrapOptions(resamples: 400))["image_to_text_R@1"])
            return interval.upperBound - interval.lowerBound
        }
        let small = try width(50), large = try width(2_000)
        // √(2000 / 50) ≈ 6.3 times narrower.
        #expect(large > 0 && large < small / 3, "width \(small) at 50 samples, \(large) at 2,000")
    }

    @Test func theBootstrapIsSeededAndPaired() throws {
        let a = samples(120, seed: 20), b = samples(120, seed: 21)
        let first = try Evaluation.bootstrapDifference(a: a, b: b, options: BootstrapOptions(resamples: 200, seed: 7))
        #expect(try Evaluation.bootstrapDifference(a: a, b: b, options: BootstrapOptions(resamples: 200, seed: 7)) == first)
        #expect(try Evaluation.bootstrapDifference(a: a, b: b, options: BootstrapOptions(resamples: 200, seed: 8)) != first)
        // Different samples (another order) cannot be compared pair by pair.
        var shuffled = b
        shuffled.origins.swapAt(4, 5)
        do {
            _ = try Evaluation.bootstrapDifference(a: a, b: shuffled)
            Issue.record("A and B on different samples were compared")
        } catch let error as EvaluationError {
            #expect(error.message.contains("different samples") && error.message.contains("sample 5"), "\(error)")
        }
    }

    @Test func percentilesInterpolateBetweenOrderStatistics() {
        // numpy.percentile([1, 2, 3, 4], [0, 25, 50, 97.5, 100]) = 1, 1.75, 2.5, 3.925, 4
        for (p, expected) in [(0.0, 1.0), (0.25, 1.75), (0.5, 2.5), (0.975, 3.925), (1.0, 4.0)] {
            #expect(abs(Evaluation.percentile([1, 2, 3, 4], p) - expected) < 1e-12, "\(p)")
        }
        #expect(Evaluation.percentile([5], 0.025) == 5)
    }

    // MARK: the A/B table

    @Test func theABTableOrdersMetricsAndSaysWhichWayIsBetter() throws {
        let a = samples(300, seed: 30)
        var b = a
        b.imageToTextRanks = a.imageToTextRanks!.map { $0 + 2 }   // B retrieves images' captions worse
        let comparison = try ABComparison(a: a, b: b, options: BootstrapOptions(resamples: 200))
        let order = Evaluation.metrics(retrieval: true, zeroShot: true).map(\.name)
        #expect(comparison.rows.map(\.name) == order)
        #expect(comparison.rows.first { $0.name == "image_to_text_mean_rank" }?.better == "A")
        #expect(comparison.rows.first { $0.name == "image_to_text_R@10" }?.better == "A")
        #expect(comparison.rows.first { $0.name == "text_to_image_R@1" }?.better == nil)

        let lines = comparison.table.split(separator: "\n").map(String.init)
        #expect(lines[0] == "300 validation pairs; 95% interval of B − A from 200 paired bootstrap resamples (seed 0)", "\(lines[0])")
        #expect(lines[1].hasPrefix("metric") && lines[1].contains("better") && lines[1].hasSuffix("95% interval of B − A"), "\(lines[1])")
        #expect(lines.count == 2 + order.count)
        for (line, name) in zip(lines.dropFirst(2), order) {
            #expect(line.hasPrefix(name + " "), "\(line)")
            let lower = name.hasSuffix("rank") || name.hasSuffix("loss")
            #expect(line.contains(lower ? "↓ lower" : "↑ higher"), "\(line)")
        }
        let meanRank = try #require(lines.first { $0.hasPrefix("image_to_text_mean_rank ") })
        #expect(meanRank.contains("+2.0000   [+2.0000, +2.0000]  A better"), "\(meanRank)")
        let same = try #require(lines.first { $0.hasPrefix("text_to_image_R@1 ") })
        #expect(same.hasSuffix("+0.0000   [+0.0000, +0.0000]"), "\(same)")

        let json = comparison.json
        let intervals = try #require(json["difference_b_minus_a_ci95"] as? [String: [Double]])
        #expect(Set(intervals.keys) == Set(order))
        #expect(intervals["image_to_text_mean_rank"]!.allSatisfy { abs($0 - 2) < 1e-12 }, "\(intervals["image_to_text_mean_rank"]!)")
        let differences = try #require(json["difference_b_minus_a"] as? [String: Double])
        #expect(abs(differences["image_to_text_mean_rank"]! - 2) < 1e-12 && differences["val_samples"] == 0)
        let bootstrap = try #require(json["bootstrap"] as? [String: Any])
        #expect(bootstrap["resamples"] as? Int == 200 && bootstrap["pairs"] as? Int == 300 && bootstrap["level"] as? Double == 0.95)
    }

    // MARK: labels for zero-shot evaluation

    @Test func zeroShotNeedsLabelsThatAreClasses() throws {
        let folder = temporaryFolder()
        let classes = ZeroShotClasses(classes: ["cat", "dog", "fish"], templates: ["{}"])
        func message(_ source: DatasetSource, _ name: String = "data") -> String? {
            do {
                try classes.checkLabels(in: source, name: name, labelSetting: "--label-column")
                return nil
            } catch {
                return "\(error)"
            }
        }
        try "image_path,caption,kind\na.jpg,a cat,cat\nb.jpg,a dog,\n".write(toFile: "\(folder)/m.csv", atomically: true, encoding: .utf8)
        try "image_path,caption,kind\na.jpg,a cat,\nb.jpg,a dog,\n".write(toFile: "\(folder)/empty.csv", atomically: true, encoding: .utf8)
        try "image_path,caption,kind\na.jpg,a cat,lion\nb.jpg,a dog,wolf\nc.jpg,a cow,lion\n".write(toFile: "\(folder)/other.csv", atomically: true, encoding: .utf8)
        try #"{"image_path": "a.jpg", "caption": "a cat"}"#.write(toFile: "\(folder)/m.jsonl", atomically: true, encoding: .utf8)

        // Labels that are classes: fine, found on the first row.
        let good = try classes.checkLabels(in: .manifest(try ManifestSource(path: "\(folder)/m.csv", labelColumn: "kind")), name: "m.csv", labelSetting: "--label-column")
        #expect(good.firstClassLabel == "cat" && good.read == 1)
        // No label column named.
        let unnamed = try #require(message(.manifest(try ManifestSource(path: "\(folder)/m.csv")), "m.csv"))
        #expect(unnamed.hasPrefix("m.csv: ") && unnamed.contains("no label column was named") && unnamed.contains("set --label-column"), "\(unnamed)")
        // A column without values, a JSONL field no row has.
        let empty = try #require(message(.manifest(try ManifestSource(path: "\(folder)/empty.csv", labelColumn: "kind"))))
        #expect(empty.contains("no row has a value in the label column 'kind' (2 rows read)"), "\(empty)")
        let field = try #require(message(.manifest(try ManifestSource(path: "\(folder)/m.jsonl", labelColumn: "label"))))
        #expect(field.contains("label field 'label' (1 row read)"), "\(field)")
        // Labels, but none a class.
        let other = try #require(message(.manifest(try ManifestSource(path: "\(folder)/other.csv", labelColumn: "kind"))))
        #expect(other.contains("none of its 3 labelled samples has one of the 3 classes as its label (labels seen: lion, wolf; classes: cat, dog, fish)"), "\(other)")
        // A column the manifest lacks is refused when the manifest is opened.
        #expect(throws: DataFileError.self) { try ManifestSource(path: "\(folder)/m.csv", labelColumn: "class") }

        // Shards: labels in .cls members (or "label" in .json), or none at all.
        let writer = try ShardWriter(folder: folder, prefix: "plain", samplesPerShard: 10)
        try writer.add(key: "0", members: [("jpg", [1]), ("txt", Array("a cat".utf8))])
        try writer.add(key: "1", members: [("jpg", [1]), ("txt", Array("a dog".utf8))])
        try writer.close()
        let shards = try #require(message(.shards(writer.writtenShards), "plain-*.tar.zst"))
        #expect(shards.hasPrefix("plain-*.tar.zst: none of its 2 samples carries a class label"), "\(shards)")
        let labelled = try ShardWriter(folder: folder, prefix: "labelled", samplesPerShard: 10)
        try labelled.add(key: "0", members: [("jpg", [1]), ("txt", Array("a cow".utf8)), ("cls", Array("cow".utf8))])
        try labelled.add(key: "1", members: [("jpg", [1]), ("json", Array(#"{"caption": "a dog", "label": "dog"}"#.utf8))])
        try labelled.close()
        let survey = try classes.checkLabels(in: .shards(labelled.writtenShards), name: "labelled", labelSetting: "--label-column")
        #expect(survey.read == 2 && survey.labelled == 2 && survey.firstClassLabel == "dog" && survey.otherLabels == ["cow"])
    }
}
