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
        var seen = Set<String>(), duplicates: [String] = []
        for name in classes where !seen.insert(name).inserted && !duplicates.contains(name) { duplicates.append(name) }
        guard duplicates.isEmpty else {
            throw DataFileError(file: path, reason: "lists \(duplicates.map { "\"\($0)\"" }.joined(separator: ", ")) more than once in \"classes\"; each class must appear once (a label must name one class)")
        }
        guard classes.allSatisfy({ !$0.trimmingCharacters(in: .whitespaces).isEmpty }) else {
            throw DataFileError(file: path, reason: "has an empty class name in \"classes\"")
        }
        let templates = json["templates"] as? [String] ?? ["a photo of a {}."]
        guard !templates.isEmpty, templates.allSatisfy({ $0.contains("{}") }) else {
            throw DataFileError(file: path, reason: "every template needs a {} where the class name goes")
        }
        return ZeroShotClasses(classes: classes, templates: templates)
    }
}

extension ZeroShotClasses {
    /// Checks, before any model runs, that zero-shot evaluation of `source` will score something:
    /// its samples carry class labels and at least one is a class here. Reads records in order
    /// (no image decoding) until the first such label, usually the first record. Throws an
    /// `EvaluationError` naming the source (`name`) and, for manifests, the setting that names
    /// the label column (`labelSetting`: `--label-column`, `data.val.label_column`).
    @discardableResult
    public func checkLabels(in source: DatasetSource, name: String, labelSetting: String) throws -> DatasetSource.LabelSurvey {
        let known = Set(classes)
        let survey = source.surveyLabels(isClass: known.contains)
        guard survey.firstClassLabel == nil else { return survey }
        let needs = "zero-shot evaluation needs each sample's class name"
        if survey.labelled == 0 {
            switch source {
            case .manifest(let manifest):
                guard let column = manifest.labelColumn else {
                    throw EvaluationError("\(name): \(needs), and no label column was named for this manifest; set \(labelSetting) to the column that holds the class names")
                }
                let kind = manifest.format == .jsonl ? "field" : "column"
                throw EvaluationError("\(name): no row has a value in the label \(kind) '\(column)' (\(counted(survey.read, "row")) read); \(needs) there, or set \(labelSetting) to the \(kind) that holds it")
            case .shards:
                throw EvaluationError("\(name): none of its \(counted(survey.read, "sample")) carries a class label (a .cls or .label member, or \"label\" in its .json); \(needs) (`pack --label-column` writes them from a manifest)")
            }
        }
        let shown = classes.prefix(8).joined(separator: ", ") + (classes.count > 8 ? ", …" : "")
        let check: String
        if case .manifest = source { check = "check \(labelSetting) and the classes file" } else { check = "check the shards' labels and the classes file" }
        throw EvaluationError("\(name): none of its \(counted(survey.labelled, "labelled sample")) has one of the \(counted(classes.count, "class", plural: "classes")) as its label (labels seen: \(survey.otherLabels.joined(separator: ", ")); classes: \(shown)); \(check)")
    }
}

/// A problem with what is being evaluated (data without labels, models compared on different
/// samples): a plain error, reported with its message.
public struct EvaluationError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
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

    /// open_clip's get_clip_metrics, per query: for each image the rank of its own caption among
    /// all captions, and for each caption the rank of its own image (0-based: the number of
    /// candidates scoring strictly higher, so ties count for it).
    public static func retrievalRanks(imageFeatures: Tensor, textFeatures: Tensor, logitScale: Tensor) -> (imageToText: [Int], textToImage: [Int]) {
        withNoGrad {
            let logits = contrastiveLogits(imageFeatures, textFeatures, logitScale: logitScale)
            func ranks(_ l: Tensor) -> [Int] { l.gt(l.diagonal().unsqueeze(1)).sum(dim: 1).toArray(Int.self) }
            return (ranks(logits), ranks(logits.mT))
        }
    }

    /// open_clip's get_clip_metrics: R@1/5/10 (the share ranked in the top k), mean and median
    /// rank (1-based) in both directions.
    public static func retrievalMetrics(imageFeatures: Tensor, textFeatures: Tensor, logitScale: Tensor) -> [String: Double] {
        let ranks = retrievalRanks(imageFeatures: imageFeatures, textFeatures: textFeatures, logitScale: logitScale)
        var samples = EvaluationSamples(origins: Array(repeating: "", count: ranks.imageToText.count))
        samples.imageToTextRanks = ranks.imageToText
        samples.textToImageRanks = ranks.textToImage
        var metrics = samples.metrics()
        metrics["val_samples"] = nil
        return metrics
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

    /// Per image: where its true class is among the classifier's top 5 (0 = top-1; 5 = not among
    /// them), or nil when its label is not a class.
    public static func zeroShotRanks(imageFeatures: Tensor, labels: [String?], classifier: Tensor, classes: ZeroShotClasses) -> [Int?] {
        withNoGrad {
            let index = Dictionary(classes.classes.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
            let keep = labels.enumerated().compactMap { i, l in l.flatMap { index[$0] }.map { (i, $0) } }
            var result = [Int?](repeating: nil, count: labels.count)
            guard !keep.isEmpty else { return result }
            let rows = Tensor(keep.map { $0.0 })
            let image = F.normalize(imageFeatures.to(.float32).indexSelect(dim: 0, index: rows), dim: -1)
            let logits = image.matmul(classifier.mT)
            let k = Swift.min(5, classes.classes.count)
            let top = logits.topk(k, dim: 1).indices.toArray(Int.self)
            for (row, (sample, label)) in keep.enumerated() {
                result[sample] = top[(row * k)..<((row + 1) * k)].firstIndex(of: label).map { $0 - row * k } ?? 5
            }
            return result
        }
    }

    /// Top-1 and top-5 accuracy of images against the classifier; images whose label is not a
    /// class are left out (no metrics when none is).
    public static func zeroShotMetrics(imageFeatures: Tensor, labels: [String?], classifier: Tensor, classes: ZeroShotClasses) -> [String: Double] {
        var samples = EvaluationSamples(origins: Array(repeating: "", count: labels.count))
        samples.zeroShotRanks = zeroShotRanks(imageFeatures: imageFeatures, labels: labels, classifier: classifier, classes: classes)
        var metrics = samples.metrics()
        metrics["val_samples"] = nil
        return metrics
    }

    /// Each pair's share of the CLIP loss of its batch: the cross-entropy of its image's row and
    /// of its caption's column, halved (computed in fp64 from the fp32 logits). Their mean over
    /// the batch is `clipLoss`.
    public static func clipLossPerSample(imageFeatures: Tensor, textFeatures: Tensor, logitScale: Tensor) -> [Double] {
        withNoGrad {
            let logits = contrastiveLogits(imageFeatures, textFeatures, logitScale: logitScale).to(.float64)
            let labels = Tensor.arange(0, logits.size(0), device: logits.device)
            let rows = F.crossEntropy(logits, labels, reduction: .none), columns = F.crossEntropy(logits.mT, labels, reduction: .none)
            return ((rows + columns) * 0.5).toArray(Double.self)
        }
    }

    /// Runs a model over a whole (unshuffled, unaugmented) loader once and keeps what each sample
    /// scored: retrieval ranks among all the pairs, its share of the validation loss (the CLIP
    /// loss of its batch; batches of one have none) and, with classes, its zero-shot rank.
    /// `metrics()` of the result is what `evaluate` reports; `metrics(of:)` gives the same
    /// metrics for any subset or resample. Throws when zero-shot evaluation would score nothing.
    public static func evaluateSamples(_ model: DualEncoder, loader: DataLoader, tokenizer: CaptionTokenizer,
                                       zeroShot: ZeroShotClasses? = nil, retrieval: Bool = true) throws -> EvaluationSamples {
        model.eval()
        defer { model.train() }
        var images: [Tensor] = [], texts: [Tensor] = [], labels: [String?] = [], origins: [String] = [], losses: [Double?] = []
        let epoch = loader.epoch(0)
        try withNoGrad {
            while let batch = try epoch.next() {
                let (ids, mask) = tokenizer.encode(batch.captions)
                let image = model.imageFeatures(batch.pixels), text = model.textFeatures(ids: ids, attentionMask: mask)
                if batch.count > 1 {
                    losses += clipLossPerSample(imageFeatures: image, textFeatures: text, logitScale: model.logitScale).map { $0 }
                } else {
                    losses += [nil]
                }
                images.append(image.to(.float32))
                texts.append(text.to(.float32))
                labels += batch.labels
                origins += batch.origins
            }
        }
        guard !images.isEmpty else {
            throw DataFileError(file: "validation data", reason: "has no usable samples (\(epoch.skippedCount) skipped)")
        }
        let imageFeatures = Tensor.cat(images), textFeatures = Tensor.cat(texts)
        var samples = EvaluationSamples(origins: origins, losses: losses)
        if retrieval {
            let ranks = retrievalRanks(imageFeatures: imageFeatures, textFeatures: textFeatures, logitScale: model.logitScale)
            samples.imageToTextRanks = ranks.imageToText
            samples.textToImageRanks = ranks.textToImage
        }
        if let zeroShot {
            let classifier = zeroShotClassifier(model, tokenizer: tokenizer, classes: zeroShot)
            let ranks = zeroShotRanks(imageFeatures: imageFeatures, labels: labels, classifier: classifier, classes: zeroShot)
            guard ranks.contains(where: { $0 != nil }) else {
                let seen = Array(Set(labels.compactMap { $0 }.filter { !$0.isEmpty })).sorted().prefix(5)
                throw EvaluationError("zero-shot evaluation: none of the \(counted(labels.count, "validation sample")) has a label that is a class"
                    + (seen.isEmpty ? " (they have no labels)" : " (labels seen: \(seen.joined(separator: ", ")))"))
            }
            samples.zeroShotRanks = ranks
        }
        return samples
    }

    /// Runs a model over a whole (unshuffled, unaugmented) loader: retrieval metrics, the mean
    /// contrastive loss over its samples (`clip_val_loss`, each pair's share of its batch's CLIP
    /// loss), the sample count (`val_samples`) and, with classes, zero-shot accuracy.
    public static func evaluate(_ model: DualEncoder, loader: DataLoader, tokenizer: CaptionTokenizer,
                                zeroShot: ZeroShotClasses? = nil, retrieval: Bool = true) throws -> [String: Double] {
        try evaluateSamples(model, loader: loader, tokenizer: tokenizer, zeroShot: zeroShot, retrieval: retrieval).metrics()
    }
}
