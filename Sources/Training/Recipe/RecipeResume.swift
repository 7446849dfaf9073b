import Foundation

extension Recipe {
    /// Keys (and key prefixes) a resumed run may change without leaving the run it continues:
    /// when and what to evaluate, logging, what is kept, how many threads decode, WiSE-FT after
    /// training. Everything else (model, data, batch, optimizer, schedule, loss, seed, precision)
    /// changes the training itself, so resuming with it changed would no longer continue the same run.
    static let resumableKeys = ["name", "resume", "eval", "log_every_steps", "max_non_finite_steps", "checkpoint", "early_stopping",
                                "data.threads", "data.val", "epochs", "max_steps", "device", "tf32", "deterministic",
                                "wise_ft", "logging", "monitoring"]

    /// How the recipe a run is resumed with differs from the one it was started with (both the
    /// resolved JSON the run saves): changes that break exact continuation, and the rest.
    /// Each entry reads `key: old → new`.
    public static func resumeDifferences(saved: Data, current: Data) -> (breaking: [String], harmless: [String]) {
        func flatten(_ value: Any, _ prefix: String, into result: inout [String: String]) {
            if let object = value as? [String: Any] {
                for (key, child) in object { flatten(child, prefix.isEmpty ? key : "\(prefix).\(key)", into: &result) }
            } else {
                result[prefix] = renderJSON(value, limit: 80)
            }
        }
        var old: [String: String] = [:], new: [String: String] = [:]
        if let object = try? JSONSerialization.jsonObject(with: saved) { flatten(object, "", into: &old) }
        if old["world_size"] == nil { old["world_size"] = "1" }   // runs from before world_size was recorded trained alone
        if let object = try? JSONSerialization.jsonObject(with: current) { flatten(object, "", into: &new) }
        var breaking: [String] = [], harmless: [String] = []
        for key in Set(old.keys).union(new.keys).sorted() where old[key] != new[key] {
            let line = "\(key): \(old[key] ?? "absent") → \(new[key] ?? "absent")"
            let resumable = resumableKeys.contains { key == $0 || key.hasPrefix($0 + ".") }
            if resumable { harmless.append(line) } else { breaking.append(line) }
        }
        return (breaking, harmless)
    }
}
