import Datasets
import Foundation
import Models
import NN
import Torch

/// What `swift run wise-ft` does, from its flags: read the sets, check where it writes, load the
/// pair, sweep, optionally save one mix, write `wise_ft.json` and `wise_ft.svg`.
public struct WiSEFTJob {
    /// Which mix `--save` writes.
    public enum SaveChoice: Equatable, Sendable {
        case alpha(Double)
        /// The sweep's best α.
        case best

        /// `0.4` or `best`.
        public static func parse(_ text: String) throws -> SaveChoice {
            if text == "best" { return .best }
            guard let alpha = Double(text) else { throw WiSEFTError("--save: '\(text)' is neither a number in [0, 1] nor `best`") }
            try WiSEFT.check(alpha: alpha, what: "--save α")
            return .alpha(alpha)
        }
    }

    public var zeroShot: String
    public var fineTuned: String
    /// `--data` values: `PATH`, or `NAME=PATH` to name the set.
    public var data: [String]
    public var classes: String?
    public var imageColumn = "image_path"
    public var captionColumn = "caption"
    public var labelColumn: String?
    public var settings = WiSEFTSettings()
    public var save: SaveChoice?
    /// `--out`: the folder `save` writes (a Hugging Face checkpoint).
    public var out: String?
    public var overwrite = false
    /// `--output`: where the JSON and the plot go; nil: `defaultOutput`.
    public var output: String?

    public init(zeroShot: String, fineTuned: String, data: [String]) {
        self.zeroShot = zeroShot
        self.fineTuned = fineTuned
        self.data = data
    }

    /// The folder that holds the fine-tuned checkpoint: a run's `best/` gets its `wise_ft.json`
    /// in the run folder, where training's `wise_ft` writes it.
    public var defaultOutput: String { URL(fileURLWithPath: OutputLocation.resolve(fineTuned)).deletingLastPathComponent().path }

    /// `NAME=PATH` (NAME of letters, digits, `_` and `-`, and the whole value no existing file)
    /// or a plain path, named after its file (`WiSEFTDataset.name(forPath:)`).
    public static func splitName(_ argument: String) -> (name: String?, path: String) {
        guard let equals = argument.firstIndex(of: "="), !FileManager.default.fileExists(atPath: argument) else { return (nil, argument) }
        let name = argument[..<equals]
        guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }) else { return (nil, argument) }
        return (String(name), String(argument[argument.index(after: equals)...]))
    }

    /// An evaluation metric by name, with its direction; an unknown name keeps `max`
    /// (`checkArguments` refuses it, naming the valid ones).
    public static func metric(named name: String) -> MetricDefinition {
        Evaluation.metrics(retrieval: true, zeroShot: true).first { $0.name == name } ?? MetricDefinition(name, .max)
    }

    /// Mistakes in the flags themselves (the program reports them as usage errors).
    public func checkArguments() throws {
        guard !data.isEmpty else { throw WiSEFTError("give at least one --data set") }
        let known = Evaluation.metrics(retrieval: true, zeroShot: classes != nil)
        guard known.contains(where: { $0.name == settings.metric.name }) else {
            throw WiSEFTError("--metric \(settings.metric.name) is not measured\(classes == nil ? " (zero-shot metrics need --classes)" : ""); choose one of \(known.map(\.name).joined(separator: ", "))")
        }
        if (save == nil) != (out == nil) { throw WiSEFTError("--save and --out go together: --save α (or best) --out FOLDER") }
        let paths = data.map { Self.splitName($0).path }
        let named = data.compactMap { Self.splitName($0).name }
        if let twice = named.first(where: { name in named.filter { $0 == name }.count > 1 }) { throw WiSEFTError("two --data sets are named \(twice)") }
        let columns = [("--image-column", imageColumn != "image_path"), ("--caption-column", captionColumn != "caption"), ("--label-column", labelColumn != nil)]
        if !paths.contains(where: DatasetSource.isManifest), let (flag, _) = columns.first(where: { $0.1 }) {
            throw WiSEFTError("\(flag) names a manifest column, and every --data set is a shard pattern (manifests end in \(DatasetSource.manifestSuffixes.joined(separator: ", ")))")
        }
        if labelColumn != nil, classes == nil { throw WiSEFTError("--label-column is read for zero-shot evaluation; give --classes too") }
    }

    /// Runs the job; `progress` gets a line per α and set.
    public func run(progress: (String) -> Void = { _ in }) throws -> WiSEFTResult {
        try checkArguments()
        let zeroShotClasses = try classes.map(ZeroShotClasses.load)
        let split = data.map(Self.splitName)
        let names = WiSEFTDataset.unique(split.map { $0.name ?? WiSEFTDataset.name(forPath: $0.path) })
        var sets: [WiSEFTDataset] = []
        for ((_, path), name) in zip(split, names) {
            let source = try DatasetSource.open(path, imageColumn: imageColumn, captionColumn: captionColumn, labelColumn: labelColumn)
            // Before any model loads: zero-shot accuracy must have labelled samples to score.
            try zeroShotClasses?.checkLabels(in: source, name: path, labelSetting: "--label-column")
            sets.append(WiSEFTDataset(name: name, path: path, source: source, zeroShot: zeroShotClasses))
        }
        // Where it writes is checked before the (long) sweep.
        let outputFolder = output ?? defaultOutput
        let option = output == nil ? "--output (default: the fine-tuned checkpoint's folder)" : "--output"
        let inputs = inputPaths(sets)
        let resolvedOutput = OutputLocation.resolve(outputFolder)
        // The output folder may hold the inputs (a run folder holds best/): only wise_ft.json and
        // wise_ft.svg are written in it, never anything else.
        let outside = inputs.filter { !OutputLocation.resolve($0.path).hasPrefix(resolvedOutput + "/") }
        _ = try OutputLocation.check(outputFolder, option: option, kind: .files(owns: Self.ownsName, isPrevious: Self.isEarlierOutput,
                                                                                previous: "an earlier wise-ft output"),
                                     overwriteOption: nil, protecting: outside)
        var savePlan: OutputLocation.Plan?
        if let out {
            savePlan = try OutputLocation.check(out, kind: .folder(isPrevious: Self.isCheckpoint, previous: "a checkpoint folder (config.json and model.safetensors)"),
                                                overwrite: overwrite, protecting: inputs + [.init("\(outputFolder)/\(WiSEFTResult.jsonFile)", "where wise_ft.json goes")])
        }

        let interpolator = try WiSEFTInterpolator(zeroShot: try WiSEFT.loadForInterpolation(zeroShot, role: "--zero-shot"),
                                                  fineTuned: try WiSEFT.loadForInterpolation(fineTuned, role: "--fine-tuned"), device: settings.device)
        var result = try interpolator.sweep(sets, settings: settings, progress: progress)
        if let save, let out, let savePlan {
            let alpha: Double
            switch save {
            case .alpha(let value): alpha = value
            case .best:
                guard let best = result.bestAlpha else { throw WiSEFTError("--save best: no α has a value of \(settings.metric.name), so there is no best α") }
                alpha = best
            }
            let temporary = try OutputLocation.temporarySibling(of: savePlan)
            do {
                try interpolator.save(alpha: alpha, to: temporary)
                try OutputLocation.commit(temporary, to: savePlan, wholeFolder: true)
            } catch {
                try? FileManager.default.removeItem(atPath: temporary)
                throw error
            }
            result.saved = (alpha, out)
        }
        try OutputLocation.write(result.jsonData(), to: "\(outputFolder)/\(WiSEFTResult.jsonFile)", option: "--output")
        try WiSEFTPlot.write(result, to: "\(outputFolder)/\(WiSEFTResult.plotFile)")
        return result
    }

    /// Everything the job reads, which no output may replace.
    private func inputPaths(_ sets: [WiSEFTDataset]) -> [OutputLocation.Protected] {
        var inputs = [OutputLocation.Protected(zeroShot, "the --zero-shot checkpoint"), .init(fineTuned, "the --fine-tuned checkpoint")]
        if let classes { inputs.append(.init(classes, "the --classes file")) }
        for set in sets {
            switch set.source {
            case .manifest(let manifest): inputs.append(.init(manifest.path, "the --data manifest"))
            case .shards(let paths): inputs += paths.map { .init($0, "a --data shard") }
            }
        }
        return inputs
    }

    static func ownsName(_ name: String) -> Bool { name == WiSEFTResult.jsonFile || name == WiSEFTResult.plotFile }

    /// A `wise_ft.json` (an object with `alphas` and `zero_shot`) or `wise_ft.svg` (an SVG that
    /// says WiSE-FT) this program or training wrote.
    static func isEarlierOutput(_ path: String) -> Bool {
        guard let data = FileManager.default.contents(atPath: path) else { return false }
        if path.hasSuffix(".json") {
            guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return false }
            return object["alphas"] != nil && object["zero_shot"] != nil
        }
        let text = String(decoding: data.prefix(4096), as: UTF8.self)
        return text.contains("<svg") && text.contains("WiSE-FT")
    }

    static func isCheckpoint(_ folder: String) -> Bool {
        let fm = FileManager.default
        return fm.fileExists(atPath: "\(folder)/\(Pretrained.configFile)")
            && (fm.fileExists(atPath: "\(folder)/\(ShardedSafeTensors.singleFile)") || fm.fileExists(atPath: "\(folder)/\(ShardedSafeTensors.indexFile)"))
    }
}
