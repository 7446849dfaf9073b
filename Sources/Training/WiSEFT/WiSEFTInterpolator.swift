import Datasets
import Foundation
import Models
import NN
import Torch

/// One end of a WiSE-FT pair: a checkpoint folder read as a plain dual encoder.
public struct WiSEFTEndpoint {
    /// The folder, as the user named it.
    public let path: String
    public let checkpoint: PretrainedCheckpoint
    public let model: DualEncoder
}

extension WiSEFT {
    /// Where a checkpoint folder becomes a plain model for interpolation: the one place to
    /// change for checkpoints that are not plain weights. `role` names the end in messages
    /// ("--zero-shot", "wise_ft.zero_shot").
    ///
    /// LoRA runs: once `Pretrained.load` reads a PEFT adapter folder (`adapter_config.json`) as
    /// its base plus the adapter, merge the adapter into the base weights HERE, before
    /// returning, so that the interpolation (and the signature check) only ever sees plain
    /// weights under the base model's names.
    public static func loadForInterpolation(_ path: String, role: String) throws -> WiSEFTEndpoint {
        let checkpoint = try Pretrained.load(path)
        guard case .dualEncoder(let model) = checkpoint.model else {
            throw WiSEFTError("\(role) \(path) is a text-only model; WiSE-FT interpolates dual encoders (an image and a text tower)")
        }
        return WiSEFTEndpoint(path: path, checkpoint: checkpoint, model: model)
    }
}

/// A validation set a sweep evaluates on.
public struct WiSEFTDataset {
    /// Its name in the table, the JSON and the plot's legend.
    public var name: String
    /// Where it comes from, as given.
    public var path: String
    public var source: DatasetSource
    /// Zero-shot top-1/top-5 too, with these classes (its samples carry class labels).
    public var zeroShot: ZeroShotClasses?

    public init(name: String, path: String, source: DatasetSource, zeroShot: ZeroShotClasses? = nil) {
        self.name = name
        self.path = path
        self.source = source
        self.zeroShot = zeroShot
    }

    /// A set's default name: its file name without extensions or a shard range
    /// (`Data/shapes/val-{0000..0001}.tar.zst` → `val`, `coco/test.csv` → `test`).
    public static func name(forPath path: String) -> String {
        let last = path.split(separator: "/").last.map(String.init) ?? path
        var name = String(last.prefix { !"{*?[".contains($0) })
        for suffix in [".tar.zst", ".tar"] + DatasetSource.manifestSuffixes where name.lowercased().hasSuffix(suffix) {
            name = String(name.dropLast(suffix.count))
            break
        }
        name = name.trimmingCharacters(in: CharacterSet(charactersIn: "-_. "))
        return name.isEmpty ? "data" : name
    }

    /// `names` with repeats told apart by a number (`val`, `val-2`).
    public static func unique(_ names: [String]) -> [String] {
        var seen = Set<String>()
        return names.map { name in
            var candidate = name, n = 1
            while !seen.insert(candidate).inserted {
                n += 1
                candidate = "\(name)-\(n)"
            }
            return candidate
        }
    }
}

/// What a sweep evaluates and how.
public struct WiSEFTSettings {
    /// The mixing weights, each in [0, 1].
    public var alphas = WiSEFT.defaultAlphas
    /// The metric whose mean over the sets picks the best α (see `WiSEFTResult.bestIndex`).
    public var metric = Evaluation.metrics(retrieval: true, zeroShot: false)[0]
    public var batchSize = 128
    public var threads = 2
    public var device: Device = .cpu

    public init() {}
}

/// The mixes of one WiSE-FT pair. They are loaded into the zero-shot model, which keeps its
/// tokenizer and image preprocessing: a mix is read and saved with the zero-shot checkpoint's.
public final class WiSEFTInterpolator {
    public let zeroShot: WiSEFTEndpoint
    public let fineTunedPath: String
    private let pair: WeightPair

    /// Checks the pair (refusing it with what differs) and moves the zero-shot model to `device`.
    public init(zeroShot: WiSEFTEndpoint, fineTuned: WiSEFTEndpoint, device: Device = .cpu) throws {
        pair = try WeightPair(zeroShot: zeroShot.model, fineTuned: fineTuned.model, names: (zeroShot.path, fineTuned.path), device: device)
        zeroShot.model.to(device)
        self.zeroShot = zeroShot
        fineTunedPath = fineTuned.path
    }

    /// The preprocessing every mix is evaluated and saved with: the zero-shot checkpoint's.
    public var preprocessing: ImagePreprocessing { zeroShot.checkpoint.preprocessing ?? ImagePreprocessing() }

    /// The zero-shot model, now holding θ(α).
    public func model(at alpha: Double) throws -> DualEncoder {
        try zeroShot.model.load(try pair.interpolated(alpha), source: "WiSE-FT θ(α = \(formatNumber(alpha)))")
        return zeroShot.model
    }

    /// Writes θ(α) into `folder` as a Hugging Face checkpoint (config.json, model.safetensors)
    /// with the zero-shot checkpoint's preprocessor config and tokenizer files.
    public func save(alpha: Double, to folder: String) throws {
        try Pretrained.save(try model(at: alpha), to: folder, preprocessing: zeroShot.checkpoint.preprocessing, tokenizerFrom: zeroShot.path)
    }

    /// Evaluates θ(α) for every α of `settings` on every set with `Evaluation.evaluate` (the
    /// metrics and names of `eval` and of training's evaluations); `progress` gets a line per
    /// α and set.
    public func sweep(_ sets: [WiSEFTDataset], settings: WiSEFTSettings, progress: (String) -> Void = { _ in }) throws -> WiSEFTResult {
        guard !sets.isEmpty else { throw WiSEFTError("no validation set to evaluate on") }
        guard !settings.alphas.isEmpty else { throw WiSEFTError("no α to evaluate") }
        for alpha in settings.alphas { try WiSEFT.check(alpha: alpha) }
        let tokenizer = try zeroShot.checkpoint.tokenizer()
        let pipeline = ImagePipeline(preprocessing: preprocessing)
        let loaders = sets.map { set in
            let loader = DataLoader(source: set.source, pipeline: pipeline,
                                    options: DataLoaderOptions(batchSize: settings.batchSize, threads: settings.threads, shuffle: false))
            loader.pinFor = settings.device
            return loader
        }
        var metrics: [[[String: Double]]] = []
        for alpha in settings.alphas {
            let model = try model(at: alpha)
            var row: [[String: Double]] = []
            for (set, loader) in zip(sets, loaders) {
                let values: [String: Double]
                do {
                    values = try withTorchErrors { try Evaluation.evaluate(model, loader: loader, tokenizer: tokenizer, zeroShot: set.zeroShot) }
                } catch let error as TorchError {
                    throw EvaluationError("\(set.name) (\(set.path)): the model failed on the data at α = \(formatNumber(alpha)): \(error)")
                }
                row.append(values)
                let summary = Evaluation.metrics(retrieval: true, zeroShot: set.zeroShot != nil).filter(\.summary).compactMap { metric in
                    values[metric.name].map { String(format: "%@ %.4f", metric.name, $0) }
                }
                progress("α \(formatNumber(alpha)) · \(set.name): \(summary.joined(separator: ", "))")
            }
            metrics.append(row)
        }
        let described = zip(sets, metrics[0]).map { set, values in
            WiSEFTResult.EvaluatedSet(name: set.name, data: set.path, samples: Int(values["val_samples"] ?? 0), zeroShot: set.zeroShot != nil)
        }
        return WiSEFTResult(zeroShot: zeroShot.path, fineTuned: fineTunedPath, alphas: settings.alphas, sets: described,
                            metrics: metrics, watched: settings.metric)
    }
}
