import Foundation
import NN
import Torch

/// PEFT's LoRA adapter folder: `adapter_config.json` + `adapter_model.safetensors`, whose keys
/// are the model's parameter names after `base_model.model.` — the adapters' `….lora_A.weight`
/// and `….lora_B.weight` (PEFT drops the adapter name when saving) and every parameter of the
/// `modules_to_save`, whole. Our parameter names are transformers', so a key is our name with
/// the prefix.
public enum PeftAdapter {
    public static let configFile = "adapter_config.json"
    public static let weightsFile = "adapter_model.safetensors"
    public static let keyPrefix = "base_model.model."

    /// Whether `folder` holds a PEFT adapter (its config file).
    public static func isAdapterFolder(_ folder: String) -> Bool {
        FileManager.default.fileExists(atPath: "\(folder)/\(configFile)")
    }

    // MARK: what is saved

    /// Whether `path` names `entry`: equal to it or ending with `.entry`, PEFT's rule for
    /// `target_modules` names.
    public static func pathMatches(_ path: String, _ entry: String) -> Bool {
        path == entry || path.hasSuffix("." + entry)
    }

    /// Whether parameter `name` belongs to one of `modulesToSave`: one of the modules above it
    /// matches an entry, or it is a top-level parameter named by one (`logit_scale`).
    public static func isSaved(_ name: String, modulesToSave: [String]) -> Bool {
        guard !Module.isAdapterParameter(name) else { return false }
        let parts = name.split(separator: ".")
        let owners = parts.count == 1 ? [name] : (1..<parts.count).map { parts.prefix($0).joined(separator: ".") }
        return modulesToSave.contains { entry in owners.contains { pathMatches($0, entry) } }
    }

    /// The adapter's tensors under PEFT's keys: every adapter weight, and every parameter of the
    /// modules to save (detached).
    public static func state(of model: Module, modulesToSave: [String]) -> [(name: String, tensor: Tensor)] {
        withNoGrad {
            model.namedParameters().filter { Module.isAdapterParameter($0.name) || isSaved($0.name, modulesToSave: modulesToSave) }
                .map { (keyPrefix + $0.name, $0.tensor.detach()) }
        }
    }

    /// Writes both files into `folder` (which must exist).
    public static func save(_ model: Module, config: LoRAAdapterConfig, to folder: String) throws {
        try SafeTensors.save(state(of: model, modulesToSave: config.modulesToSave), metadata: ["format": "pt"], to: "\(folder)/\(weightsFile)")
        try AtomicFile.write(try config.data(), to: "\(folder)/\(configFile)")
    }

    /// Loads an adapter folder's weights into a model that already carries the same adapters
    /// (a resumed run): the file must hold exactly the tensors `state` would write, with their shapes.
    public static func loadWeights(from folder: String, into model: Module, modulesToSave: [String], dryRun: Bool = false) throws {
        let file = "\(folder)/\(weightsFile)"
        let tensors = try SafeTensors.load(file)
        var renamed: [String: Tensor] = [:]
        for (key, tensor) in tensors {
            guard key.hasPrefix(keyPrefix) else {
                throw ModelConfigError(file: file, key: key, reason: "does not start with \(keyPrefix), so it is not PEFT's layout")
            }
            renamed[String(key.dropFirst(keyPrefix.count))] = tensor
        }
        let expected = Set(state(of: model, modulesToSave: modulesToSave).map { String($0.name.dropFirst(keyPrefix.count)) })
        var report = LoadReport()
        report.missing = expected.subtracting(renamed.keys).sorted()
        report.unexpected = Set(renamed.keys).subtracting(expected).sorted()
        guard report.isClean else { throw StateDictError(source: file, report: report) }
        try model.load(renamed, strict: false, source: file, dryRun: dryRun)
    }

    // MARK: applying an adapter to its base

    /// Adds the adapters of `weights` (an `adapter_model.safetensors`) to the base `model` where
    /// its keys say and loads them, and loads the modules to save. Every key and shape is
    /// checked against the base before anything changes: an adapter whose base does not fit is
    /// refused with the key and both shapes. `rename` maps transformers' other layouts onto ours.
    public static func apply(_ config: LoRAAdapterConfig, weights: [String: Tensor], to model: Module, file: String, base: String,
                             rename: (String) -> String? = { $0 }) throws {
        var layers: [String: Linear] = [:]
        for (path, module) in model.namedModules() { if let linear = module as? Linear { layers[path] = linear } }
        let parameters = Dictionary(model.namedParameters().map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })
        var adapters: [String: (a: Tensor?, b: Tensor?)] = [:]
        var saved: [String: Tensor] = [:]
        let rank = config.settings.rank
        for (key, tensor) in weights.sorted(by: { $0.key < $1.key }) {
            guard key.hasPrefix(keyPrefix) else {
                throw ModelConfigError(file: file, key: key, reason: "does not start with \(keyPrefix), so it is not PEFT's layout")
            }
            guard let name = rename(String(key.dropFirst(keyPrefix.count))) else { continue }
            for (suffix, isA) in [(".lora_A.weight", true), (".lora_B.weight", false)] where name.hasSuffix(suffix) {
                let path = String(name.dropLast(suffix.count))
                guard let layer = layers[path] else {
                    throw ModelConfigError(file: file, key: key, reason: "adapts the layer \(path), which the base model \(base) does not have (\(nearLayers(path, layers.keys))): the adapter was made for another model")
                }
                let expected = isA ? [rank, layer.inFeatures] : [layer.outFeatures, rank]
                guard tensor.shape == expected else {
                    throw ModelConfigError(file: file, key: key, reason: "has shape \(tensor.shape), but the base model \(base) needs \(expected) there (r \(rank), layer \(path) is [\(layer.outFeatures), \(layer.inFeatures)]): the adapter was made for another model, or r in adapter_config.json is wrong")
                }
                var pair = adapters[path] ?? (nil, nil)
                if isA { pair.a = tensor } else { pair.b = tensor }
                adapters[path] = pair
            }
            if Module.isAdapterParameter(name) { continue }
            if name.contains(".lora_") || name.contains("lora_magnitude_vector") {
                throw ModelConfigError(file: file, key: key, reason: "is not a LoRA weight this loader knows (lora_A.weight, lora_B.weight)")
            }
            guard let target = parameters[name] else {
                throw ModelConfigError(file: file, key: key, reason: "names \(name), which the base model \(base) does not have: the adapter was made for another model")
            }
            guard target.shape == tensor.shape else {
                throw ModelConfigError(file: file, key: key, reason: "has shape \(tensor.shape), but \(name) of the base model \(base) has shape \(target.shape): the adapter was made for another model")
            }
            saved[name] = tensor
        }
        for (path, pair) in adapters.sorted(by: { $0.key < $1.key }) where pair.a == nil || pair.b == nil {
            throw ModelConfigError(file: file, key: keyPrefix + path + (pair.a == nil ? ".lora_A.weight" : ".lora_B.weight"), reason: "is missing: the layer's other half is there")
        }
        try withTorchErrors {
            withNoGrad {
                let unused = Generator(seed: 0)   // A is overwritten; the global generator stays untouched
                for (path, pair) in adapters {
                    let layer = layers[path]!
                    layer.addAdapter(config.settings, generator: unused)
                    layer.loraA!.weight.copy_(pair.a!)
                    layer.loraB!.weight.copy_(pair.b!)
                }
                for (name, tensor) in saved { parameters[name]!.copy_(tensor) }
            }
        }
    }

    /// A few layer names near `path` (same last component), for messages.
    static func nearLayers(_ path: String, _ names: Dictionary<String, Linear>.Keys) -> String {
        let last = path.split(separator: ".").last.map(String.init) ?? path
        let similar = names.filter { $0.hasSuffix("." + last) || $0 == last }.sorted()
        guard !similar.isEmpty else { return "it has no layer named \(last)" }
        return "its \(last) layers are \(similar.prefix(4).joined(separator: ", "))" + (similar.count > 4 ? ", … (\(similar.count) in all)" : "")
    }
}
