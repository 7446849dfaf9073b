import Foundation
import NN

/// PEFT's `adapter_config.json` for a LoRA adapter: what we write for our runs and what we read
/// from adapters made by Python's `peft` (0.21.2's keys).
///
/// Reading is tolerant of what does not change the maths (`task_type`, `inference_mode`,
/// `peft_version`, initialisation configs…) and refuses, naming the key, what does and what we
/// do not implement (DoRA, trained biases, `fan_in_fan_out`, per-layer ranks, layer selection…):
/// loading such an adapter would compute something else without saying so.
public struct LoRAAdapterConfig: Sendable, Equatable {
    /// PEFT's `target_modules`: names matched against module paths (a path equal to a name or
    /// ending with `.name`), or one regular expression the whole path must match.
    public enum Targets: Sendable, Equatable {
        case names([String])
        case pattern(String)
    }

    public var settings: LoRASettings
    public var targetModules: Targets
    /// Modules (and bare parameters such as `logit_scale`) trained whole and saved beside the adapters.
    public var modulesToSave: [String]
    /// The folder of the model the adapter was trained on (`base_model_name_or_path`).
    public var baseModelPath: String?
    /// transformers' class of the base (`auto_mapping.base_model_class`), e.g. `CLIPModel`.
    public var baseModelClass: String?
    /// The Python module of that class (`auto_mapping.parent_library`).
    public var parentLibrary: String?

    public init(settings: LoRASettings, targetModules: Targets, modulesToSave: [String] = [], baseModelPath: String? = nil,
                baseModelClass: String? = nil, parentLibrary: String? = nil) {
        self.settings = settings
        self.targetModules = targetModules
        self.modulesToSave = modulesToSave
        self.baseModelPath = baseModelPath
        self.baseModelClass = baseModelClass
        self.parentLibrary = parentLibrary
    }

    /// The version of PEFT whose files these are.
    public static let peftVersion = "0.21.2"

    /// The JSON object `save_pretrained` writes (the keys PEFT 0.21.2 reads, at their defaults
    /// where we have nothing to say).
    public func json() -> [String: Any] {
        var json: [String: Any] = [
            "peft_type": "LORA", "peft_version": Self.peftVersion, "task_type": NSNull(), "inference_mode": true,
            "r": settings.rank, "lora_alpha": Self.number(settings.alpha), "lora_dropout": settings.dropout, "use_rslora": settings.rsLoRA,
            "modules_to_save": modulesToSave.isEmpty ? NSNull() : modulesToSave as Any,
            "base_model_name_or_path": baseModelPath ?? NSNull(), "revision": NSNull(),
            "bias": "none", "fan_in_fan_out": false, "init_lora_weights": true, "use_dora": false, "lora_bias": false,
            "rank_pattern": [String: Any](), "alpha_pattern": [String: Any](), "layers_to_transform": NSNull(), "layers_pattern": NSNull(),
            "exclude_modules": NSNull(), "layer_replication": NSNull(), "target_parameters": NSNull(), "trainable_token_indices": NSNull(),
            "megatron_config": NSNull(), "megatron_core": "megatron.core", "loftq_config": [String: Any](), "use_qalora": false,
        ]
        switch targetModules {
        case .names(let names): json["target_modules"] = names
        case .pattern(let pattern): json["target_modules"] = pattern
        }
        if let baseModelClass, let parentLibrary {
            json["auto_mapping"] = ["base_model_class": baseModelClass, "parent_library": parentLibrary]
        } else {
            json["auto_mapping"] = NSNull()
        }
        return json
    }

    public func data() throws -> Data {
        try JSONSerialization.data(withJSONObject: json(), options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    }

    /// 8.0 as 8, as Python writes an integer alpha.
    private static func number(_ value: Double) -> Any { value == value.rounded() && Swift.abs(value) < 1e15 ? Int(value) as Any : value }

    // MARK: reading

    /// Keys whose value changes what the adapter computes; only the listed value (PEFT's
    /// default) is supported.
    static let mustBeDefault: [(key: String, isDefault: @Sendable (Any) -> Bool, meaning: String)] = [
        ("use_dora", isFalse, "DoRA (weight-decomposed LoRA) is not implemented here"),
        ("bias", { ($0 as? String) == "none" || $0 is NSNull }, "trained biases are not implemented here (only \"none\")"),
        ("lora_bias", isFalse, "a bias on lora_B is not implemented here"),
        ("fan_in_fan_out", isFalse, "fan_in_fan_out is for GPT-2's Conv1D layers, which these models do not have"),
        ("rank_pattern", isEmpty, "per-layer ranks are not implemented here"),
        ("alpha_pattern", isEmpty, "per-layer alphas are not implemented here"),
        ("layers_to_transform", isEmpty, "adapting only some layer indices is not implemented here"),
        ("layer_replication", isEmpty, "layer replication changes the base model's layers"),
        ("use_qalora", isFalse, "QA-LoRA is not implemented here"),
        ("use_bdlora", isEmpty, "BD-LoRA is not implemented here"),
        ("target_parameters", isEmpty, "adapters on bare parameters are not implemented here"),
        ("trainable_token_indices", isEmpty, "trainable tokens are not implemented here"),
        ("alora_invocation_tokens", isEmpty, "activated LoRA is not implemented here"),
        ("arrow_config", isEmpty, "Arrow routing is not implemented here"),
        ("kasa_config", isEmpty, "KaSA is not implemented here"),
        ("monteclora_config", isEmpty, "MonteCLoRA is not implemented here"),
        ("velora_config", isEmpty, "VeLoRA is not implemented here"),
        ("lora_ga_config", isEmpty, "LoRA-GA is not implemented here"),
        ("megatron_config", isEmpty, "Megatron layers are not implemented here"),
    ]

    /// Keys read elsewhere in `read`, or that do not change what the adapter computes (task
    /// heads' name, flags for training, initialisation settings of inits that leave the base as it is).
    static let understood: Set<String> = [
        "peft_type", "r", "lora_alpha", "lora_dropout", "use_rslora", "target_modules", "modules_to_save", "base_model_name_or_path",
        "auto_mapping", "init_lora_weights", "task_type", "inference_mode", "peft_version", "revision", "exclude_modules",
        "layers_pattern", "loftq_config", "eva_config", "corda_config", "megatron_core", "qalora_group_size", "ensure_weight_tying",
        "runtime_config",
    ]

    static func isFalse(_ value: Any) -> Bool { value is NSNull || ((value as? NSNumber).map { ConfigReader.isBoolean($0) && !$0.boolValue } ?? false) }
    /// null, false, an empty list or object, or an empty string.
    static func isEmpty(_ value: Any) -> Bool {
        if isFalse(value) { return true }
        if let list = value as? [Any] { return list.isEmpty }
        if let object = value as? [String: Any] { return object.isEmpty }
        if let text = value as? String { return text.isEmpty }
        return false
    }

    /// Reads and checks an `adapter_config.json`; every refusal names the file and the key.
    public static func read(_ path: String) throws -> LoRAAdapterConfig {
        let config = try ConfigReader.load(path, missing: "is missing; a PEFT adapter folder holds adapter_config.json and adapter_model.safetensors")
        let type = try config.string("peft_type", "")
        guard type == "LORA" else {
            throw config.fail("peft_type", type.isEmpty ? "is missing; cannot tell which kind of adapter this is (only \"LORA\" is supported)"
                : "is \"\(type)\"; only LoRA adapters (\"LORA\") are supported")
        }
        for rule in mustBeDefault {
            if let value = config.values[rule.key], !rule.isDefault(value) {
                throw config.fail(rule.key, "is \(ConfigReader.describe(value)): \(rule.meaning), so this adapter cannot be loaded without computing something else")
            }
        }
        if let initialisation = config.values["init_lora_weights"], !isFalse(initialisation) {
            let accepted = ((initialisation as? NSNumber).map(ConfigReader.isBoolean) ?? false) || (initialisation as? String) == "gaussian"
            guard accepted else {
                throw config.fail("init_lora_weights", "is \(ConfigReader.describe(initialisation)): this initialisation (PiSSA, OLoRA, LoftQ, CorDA, EVA…) changes the base model's weights too, so the adapter does not apply to the base as it is saved; convert it in Python first (save_pretrained with path_initial_model_for_weight_conversion)")
            }
        }
        for (key, value) in config.values where !understood.contains(key) && !mustBeDefault.contains(where: { $0.key == key }) && !isEmpty(value) {
            throw config.fail(key, "is \(ConfigReader.describe(value)), a setting this loader does not know (it reads PEFT \(peftVersion)'s LoRA keys); it may change what the adapter computes, so the adapter is refused")
        }
        let rank = try config.int("r", 8, in: 1...1 << 20)
        let alpha = try config.double("lora_alpha", 8)
        let dropout = try config.double("lora_dropout", 0, in: 0...1, openAbove: true)
        let settings = LoRASettings(rank: rank, alpha: alpha, dropout: dropout, rsLoRA: try config.bool("use_rslora", false))
        let targets: Targets
        switch config.values["target_modules"] {
        case let pattern as String: targets = .pattern(pattern)
        case let names as [Any]:
            guard let strings = names as? [String] else { throw config.fail("target_modules", "expected a list of module names or one regular expression") }
            targets = .names(strings)
        case nil, is NSNull: targets = .names([])
        case let other?: throw config.fail("target_modules", "expected a list of module names or one regular expression, found \(ConfigReader.describe(other))")
        }
        var modulesToSave: [String] = []
        switch config.values["modules_to_save"] {
        case nil, is NSNull: break
        case let names as [String]: modulesToSave = names
        case let other?: throw config.fail("modules_to_save", "expected a list of module names, found \(ConfigReader.describe(other))")
        }
        var base: String?
        if let value = config.values["base_model_name_or_path"], !(value is NSNull) { base = try config.string("base_model_name_or_path", "") }
        let mapping = try config.object("auto_mapping")
        var baseClass: String?, library: String?
        if mapping.values["base_model_class"] != nil { baseClass = try mapping.string("base_model_class", "") }
        if mapping.values["parent_library"] != nil { library = try mapping.string("parent_library", "") }
        return LoRAAdapterConfig(settings: settings, targetModules: targets, modulesToSave: modulesToSave, baseModelPath: base,
                                 baseModelClass: baseClass, parentLibrary: library)
    }
}
