import Foundation
import Models
import NN
import Torch

/// `model.lora` on a freshly loaded pretrained model, as PEFT's `get_peft_model`: every weight
/// frozen, adapters added to the target Linear layers of the chosen towers (A Kaiming-uniform
/// from a generator seeded with the recipe's seed, B zeros), the modules to save trainable
/// again. Returns the adapter_config.json the run's checkpoints carry.
enum LoRATraining {
    /// A part of the model adapters may go in: a tower and its projection.
    struct Tower {
        let name: String
        /// Module paths under which its layers lie ("" for the whole model).
        let prefixes: [String]
        let module: Module
    }

    /// A dual encoder from `model.checkpoint` (folder `base`).
    static func apply(_ section: Recipe.LoRASection, to model: DualEncoder, base: String, seed: Int) throws -> LoRAAdapterConfig {
        let vision = Tower(name: "vision", prefixes: ["vision_model", "visual_projection"], module: model.visionModel)
        let text = Tower(name: "text", prefixes: ["text_model", "text_projection"], module: model.textModel)
        let chosen: [Tower] = switch section.towers {
        case .both: [vision, text]
        case .vision: [vision]
        case .text: [text]
        }
        let config = try adapt(model, towers: chosen, section: section, base: base, seed: seed)
        // A tower without adapters is a fixed feature extractor, as a locked one.
        for tower in [vision, text] where !chosen.contains(where: { $0.name == tower.name }) { tower.module.pinnedToInference = true }
        return config
    }

    /// A text-only BERT student (text distillation) from `model.text.checkpoint` (folder `base`).
    static func apply(_ section: Recipe.LoRASection, to bert: BertModel, base: String, seed: Int) throws -> LoRAAdapterConfig {
        guard section.towers != .vision else {
            throw RecipeErrors(file: "", errors: [RecipeError(path: "model.lora.towers", message: "is \"vision\", but a text-only student has only a text tower; use \"text\" or \"both\"")])
        }
        return try adapt(bert, towers: [Tower(name: "text", prefixes: [""], module: bert)], section: section, base: base, seed: seed)
    }

    static func adapt(_ model: Module, towers: [Tower], section: Recipe.LoRASection, base: String, seed: Int) throws -> LoRAAdapterConfig {
        let saves = section.modulesToSave
        let linears = model.namedModules().compactMap { path, module in (module as? Linear).map { (path: path, layer: $0) } }
        // PEFT never adapts a layer inside a module to save (it trains that module whole).
        let candidates = linears.filter { !isInsideSavedModule($0.path, saves) }
        func inTower(_ path: String, _ tower: Tower) -> Bool { tower.prefixes.contains { isUnder(path, $0) } }
        let eligible = candidates.filter { layer in towers.contains { inTower(layer.path, $0) } }
        var problems: [RecipeError] = []
        let names = Set(eligible.map { String($0.path.split(separator: ".").last ?? "") }).sorted()
        let scope = towers.count == 1 ? "the \(towers[0].name) tower" : "the vision and text towers"
        for entry in section.targetModules where !eligible.contains(where: { PeftAdapter.pathMatches($0.path, entry) }) {
            var message = "'\(entry)' matches no linear layer of \(scope)"
            if let near = Recipe.nearestName(entry, among: names) { message += " (did you mean '\(near)'?)" }
            message += "; their linear layers are named \(names.joined(separator: ", "))"
            if candidates.count < linears.count { message += " (layers inside modules_to_save are trained whole, not adapted)" }
            problems.append(RecipeError(path: "model.lora.target_modules", message: message))
        }
        let chosen = eligible.filter { layer in section.targetModules.contains { PeftAdapter.pathMatches(layer.path, $0) } }
        if problems.isEmpty {
            for tower in towers where !chosen.contains(where: { inTower($0.path, tower) }) {
                let own = Set(eligible.filter { inTower($0.path, tower) }.map { String($0.path.split(separator: ".").last ?? "") }).sorted()
                problems.append(RecipeError(path: "model.lora.target_modules", message: "no entry matches a layer of the \(tower.name) tower, which model.lora.towers adapts; its linear layers are named \(own.joined(separator: ", ")) (or set model.lora.towers to the other tower)"))
            }
        }
        let parameterNames = model.namedParameters().map(\.name)
        for entry in saves where !parameterNames.contains(where: { PeftAdapter.isSaved($0, modulesToSave: [entry]) }) {
            let top = model.children().map(\.key) + parameterNames.filter { !$0.contains(".") }
            var message = "'\(entry)' names no module or parameter of the model"
            if let near = Recipe.nearestName(entry, among: top) { message += " (did you mean '\(near)'?)" }
            problems.append(RecipeError(path: "model.lora.modules_to_save", message: message + "; its top-level ones are \(top.joined(separator: ", ")), and deeper modules are named by their path (e.g. vision_model.post_layernorm)"))
        }
        if !problems.isEmpty { throw RecipeErrors(file: "", errors: problems) }

        model.freeze()
        let generator = Generator(seed: UInt64(seed))
        for (_, layer) in chosen { layer.addAdapter(section.settings, generator: generator) }
        model.unfreeze { Module.isAdapterParameter($0) || PeftAdapter.isSaved($0, modulesToSave: saves) }

        // target_modules as written: the recipe's names when PEFT would adapt exactly these layers
        // with them over the whole model, else every adapted layer's path.
        let peftWould = candidates.filter { layer in section.targetModules.contains { PeftAdapter.pathMatches(layer.path, $0) } }.map(\.path)
        let adapted = chosen.map(\.path)
        let targets: LoRAAdapterConfig.Targets = peftWould == adapted ? .names(section.targetModules) : .names(adapted)
        let (baseClass, library) = baseModelClass(base)
        return LoRAAdapterConfig(settings: section.settings, targetModules: targets, modulesToSave: saves,
                                 baseModelPath: URL(fileURLWithPath: base).standardizedFileURL.path, baseModelClass: baseClass, parentLibrary: library)
    }

    /// PEFT's rule (`check_target_module_exists`): a module to save `m` covers every module whose
    /// path has `m` as whole segments.
    static func isInsideSavedModule(_ path: String, _ saves: [String]) -> Bool {
        saves.contains { m in path == m || path.hasPrefix(m + ".") || path.hasSuffix("." + m) || path.contains("." + m + ".") }
    }

    static func isUnder(_ path: String, _ prefix: String) -> Bool {
        prefix.isEmpty || path == prefix || path.hasPrefix(prefix + ".")
    }

    /// transformers' class of the base (its config.json's `architectures`) and the module PEFT
    /// imports it from (`auto_mapping`); nil for classes outside transformers (remote code).
    static func baseModelClass(_ base: String) -> (String?, String?) {
        guard let data = FileManager.default.contents(atPath: "\(base)/config.json"),
              let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              let name = (json["architectures"] as? [String])?.first else { return (nil, nil) }
        let libraries = ["CLIPModel": "transformers.models.clip.modeling_clip",
                         "VisionTextDualEncoderModel": "transformers.models.vision_text_dual_encoder.modeling_vision_text_dual_encoder",
                         "BertModel": "transformers.models.bert.modeling_bert"]
        guard let library = libraries[name] else { return (nil, nil) }
        return (name, library)
    }
}
