import Datasets
import Foundation
import Models
import Torch

/// Zero-shot classes and the prompt templates that turn a class name into captions
/// (`{"classes": [...], "templates": ["a photo of a {}.", ...]}`).
public struct ZeroShotClasses: Sendable, Equatable {
    public let classes: [String]
    public let templates: [String]

    public init(classes: [String], templates: [String]) {
        self.classes = classes
        self.templates = templates
    }

    public static func load(_ path: String) throws -> ZeroShotClasses {
        guard let data = FileManager.default.contents(atPath: path),
              let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw DataFileError(file: path, reason: "is not a JSON object with \"classes\" and \"templates\"")
        }
        guard let classes = json["classes"] as? [String], !classes.isEmpty else {
            throw DataFileError(file: path, reason: "needs a non-empty \"classes\" list of strings")
        }
        let templates = json["templates"] as? [String] ?? ["a photo of a {}."]
        guard !templates.isEmpty, templates.allSatisfy({ $0.contains("{}") }) else {
            throw DataFileError(file: path, reason: "every template needs a {} where the class name goes")
        }
        return ZeroShotClasses(classes: classes, templates: templates)
    }
}

/// Retrieval and zero-shot evaluation with open_clip's metric names.
public enum Evaluation {
    /// What `evaluate` reports, main metric first: retrieval (when on), zero-shot accuracy (with
    /// classes) and the validation loss. (`val_samples`, a count, is logged but not a metric.)
    public static func metrics(retrieval: Bool, zeroShot: Bool) -> [MetricDefinition] {
        var result: [MetricDefinition] = []
        if retrieval {   // image_to_text_R@1 first: the main metric, as in open_clip's reports
            for direction in ["image_to_text", "text_to_image"] {
                result += [MetricDefinition("\(direction)_R@1", .max, summary: true), MetricDefinition("\(direction)_R@5", .max, summary: true),
                           MetricDefinition("\(direction)_R@10", .max),
                           MetricDefinition("\(direction)_mean_rank", .min), MetricDefinition("\(direction)_median_rank", .min)]
            }
        }
        if zeroShot { result += [MetricDefinition("zeroshot_top1", .max, summary: true), MetricDefinition("zeroshot_top5", .max)] }
        result.append(MetricDefinition("clip_val_loss", .min, summary: true))
        return result
    }

    /// open_clip's get_clip_metrics: for each image the rank of its own caption among all
    /// captions (and the reverse); R@k is the share ranked in the top k; ranks are 1-based.
    public static func retrievalMetrics(imageFeatures: Tensor, textFeatures: Tensor, logitScale: Tensor) -> [String: Double] {
        withNoGrad {
            let logits = contrastiveLogits(imageFeatures, textFeatures, logitScale: logitScale)
            var metrics: [String: Double] = [:]
            for (name, l) in [("image_to_text", logits), ("text_to_image", logits.mT)] {
                let n = l.size(0)
                // Rank of the diagonal entry = number of entries scoring strictly higher (ties count for it).
                let own = l.diagonal().unsqueeze(1)
                let ranks = l.gt(own).sum(dim: 1).toArray(Int.self)
                let sorted = ranks.sorted()
                metrics["\(name)_mean_rank"] = Double(ranks.reduce(0, +)) / Double(n) + 1
                let median = n % 2 == 1 ? Double(sorted[n / 2]) : Double(sorted[n / 2 - 1] + sorted[n / 2]) / 2
                metrics["\(name)_median_rank"] = median.rounded(.down) + 1
                for k in [1, 5, 10] { metrics["\(name)_R@\(k)"] = Double(ranks.filter { $0 < k }.count) / Double(n) }
            }
            return metrics
        }
    }

    /// Embeds every class with every template, averages per class and normalises (open_clip's
    /// zero-shot classifier): [classes, projection].
    public static func zeroShotClassifier(_ model: DualEncoder, tokenizer: CaptionTokenizer, classes: ZeroShotClasses) -> Tensor {
        withNoGrad {
            let weights = classes.classes.map { name -> Tensor in
                let captions = classes.templates.map { $0.replacingOccurrences(of: "{}", with: name) }
                let (ids, mask) = tokenizer.encode(captions)
                let features = F.normalize(model.textFeatures(ids: ids, attentionMask: mask).to(.float32), dim: -1)
                return F.normalize(features.mean(dim: 0), dim: 0)
            }
            return Tensor.stack(weights)
        }
    }

    /// Top-1 and top-5 accuracy of images against the classifier; images whose label is not a
    /// class are left out.
    public static func zeroShotMetrics(imageFeatures: Tensor, labels: [String?], classifier: Tensor, classes: ZeroShotClasses) -> [String: Double] {
        withNoGrad {
            let index = Dictionary(uniqueKeysWithValues: classes.classes.enumerated().map { ($1, $0) })
            let keep = labels.enumerated().compactMap { i, l in l.flatMap { index[$0] }.map { (i, $0) } }
            guard !keep.isEmpty else { return [:] }
            let rows = Tensor(keep.map { $0.0 })
            let image = F.normalize(imageFeatures.to(.float32).indexSelect(dim: 0, index: rows), dim: -1)
            let logits = image.matmul(classifier.mT)
            let k = Swift.min(5, classes.classes.count)
            let top = logits.topk(k, dim: 1).indices.toArray(Int.self)
            var top1 = 0, top5 = 0
            for (row, (_, label)) in keep.enumerated() {
                let predictions = top[(row * k)..<((row + 1) * k)]
                if predictions.first == label { top1 += 1 }
                if predictions.contains(label) { top5 += 1 }
            }
            return ["zeroshot_top1": Double(top1) / Double(keep.count), "zeroshot_top5": Double(top5) / Double(keep.count)]
        }
    }

    /// Runs a model over a whole (unshuffled, unaugmented) loader: retrieval metrics, the mean
    /// contrastive loss over its batches (`clip_val_loss`) and, with classes, zero-shot accuracy.
    public static func evaluate(_ model: DualEncoder, loader: DataLoader, tokenizer: CaptionTokenizer,
                                zeroShot: ZeroShotClasses? = nil, retrieval: Bool = true) throws -> [String: Double] {
        model.eval()
        defer { model.train() }
        var images: [Tensor] = [], texts: [Tensor] = [], labels: [String?] = []
        var lossSum = 0.0, count = 0
        let epoch = loader.epoch(0)
        try withNoGrad {
            while let batch = try epoch.next() {
                let (ids, mask) = tokenizer.encode(batch.captions)
                let image = model.imageFeatures(batch.pixels), text = model.textFeatures(ids: ids, attentionMask: mask)
                if batch.count > 1 {
                    lossSum += clipLoss(imageFeatures: image, textFeatures: text, logitScale: model.logitScale).item(Double.self) * Double(batch.count)
                    count += batch.count
                }
                images.append(image.to(.float32))
                texts.append(text.to(.float32))
                labels += batch.labels
            }
        }
        guard !images.isEmpty else {
            throw DataFileError(file: "validation data", reason: "has no usable samples (\(epoch.skippedCount) skipped)")
        }
        let imageFeatures = Tensor.cat(images), textFeatures = Tensor.cat(texts)
        var metrics = retrieval ? retrievalMetrics(imageFeatures: imageFeatures, textFeatures: textFeatures, logitScale: model.logitScale) : [:]
        if count > 0 { metrics["clip_val_loss"] = lossSum / Double(count) }
        metrics["val_samples"] = Double(imageFeatures.size(0))
        if let zeroShot {
            let classifier = zeroShotClassifier(model, tokenizer: tokenizer, classes: zeroShot)
            metrics.merge(zeroShotMetrics(imageFeatures: imageFeatures, labels: labels, classifier: classifier, classes: zeroShot)) { a, _ in a }
        }
        return metrics
    }
}
