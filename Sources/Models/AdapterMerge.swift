import Foundation
import NN
import Torch

/// `merge`: a LoRA adapter folder and its base → one plain Hugging Face checkpoint, as PEFT's
/// `merge_and_unload()` followed by `save_pretrained` (W += (B·A) · scaling per adapted layer;
/// the modules to save replace the base's).
public enum AdapterMerge {
    /// Written beside the merged checkpoint: what it was merged from; also how a later `merge`
    /// recognises a folder it may replace.
    public static let recordFile = "merge.json"
    static let format = "cliptune-lora-merge/1"

    public struct Result {
        public let folder: String
        public let adapter: LoadedAdapter
    }

    /// Merges `checkpoint` (an adapter folder; `base` overrides its `base_model_name_or_path`)
    /// into `out`, written atomically. `out` may only replace an earlier merge output, and only
    /// with `overwrite`; never the adapter or the base.
    @discardableResult
    public static func merge(checkpoint: String, base: String? = nil, to out: String, overwrite: Bool = false) throws -> Result {
        guard PeftAdapter.isAdapterFolder(checkpoint) else {
            throw ModelConfigError(file: checkpoint, reason: "is not a LoRA adapter folder (it has no \(PeftAdapter.configFile)); there is nothing to merge")
        }
        var protected = [OutputLocation.Protected(checkpoint, "the adapter being merged")]
        if let base { protected.append(.init(base, "the base model")) }
        let plan = try OutputLocation.check(out, kind: .folder(isPrevious: isMergeOutput, previous: "an earlier merge output (a folder with \(recordFile))"),
                                            overwrite: overwrite, protecting: protected)
        let loaded = try Pretrained.load(checkpoint, base: base, mergeAdapter: true)
        guard let adapter = loaded.adapter else { throw ModelConfigError(file: checkpoint, reason: "no adapter was applied") }
        // Checked again now that the base is known: the output must not be it either.
        _ = try OutputLocation.check(out, kind: .folder(isPrevious: isMergeOutput, previous: "an earlier merge output (a folder with \(recordFile))"),
                                     overwrite: overwrite, protecting: protected + [.init(adapter.base, "the base model")])
        let temporary = try OutputLocation.temporarySibling(of: plan)
        do {
            switch loaded.model {
            case .dualEncoder(let model):
                try Pretrained.save(model, to: temporary, preprocessing: loaded.preprocessing, tokenizerFrom: adapter.base)
            case .textEncoder(let bert, let normalize):
                try Pretrained.save(bert, to: temporary, normalize: normalize, tokenizerFrom: adapter.base)
            }
            let record: [String: Any] = ["format": format, "adapter": URL(fileURLWithPath: checkpoint).standardizedFileURL.path,
                                         "base": URL(fileURLWithPath: adapter.base).standardizedFileURL.path,
                                         "adapted_layers": adapter.adaptedLayers, "r": adapter.config.settings.rank,
                                         "scaling": adapter.config.settings.scaling, "modules_to_save": adapter.config.modulesToSave]
            try AtomicFile.write(try JSONSerialization.data(withJSONObject: record, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]),
                                 to: "\(temporary)/\(recordFile)")
            try OutputLocation.commit(temporary, to: plan, wholeFolder: true)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
        return Result(folder: out, adapter: adapter)
    }

    /// Whether `folder` holds an earlier merge output (its merge.json says so).
    public static func isMergeOutput(_ folder: String) -> Bool {
        let path = "\(folder)/\(recordFile)"
        guard let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue, size < 1 << 20,
              let data = FileManager.default.contents(atPath: path),
              let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return false }
        return (json["format"] as? String) == format
    }
}
