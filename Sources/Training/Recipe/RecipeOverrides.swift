import Foundation

extension Recipe {
    /// The dotted keys that `overrides` set (`optimizer.lr=1e-4` → `optimizer.lr`).
    public static func overriddenKeys(_ overrides: [String]) -> Set<String> {
        Set(overrides.compactMap { override in override.firstIndex(of: "=").map { String(override[..<$0]) } })
    }

    /// Applies command-line overrides (`--set optimizer.lr=1e-4`) to a recipe's JSON, before
    /// `decode(_:file:defaultName:)` validates the result.
    ///
    /// Each override is `a.b.c=value`. The value is read as JSON when it parses as JSON (numbers,
    /// `true`/`false`/`null`, arrays, objects, quoted strings), otherwise taken as a plain string:
    /// `data.train.shards=Data/x-{0..3}.tar` needs no quotes, but a string field set to something
    /// that looks like a number does (`name='"2024"'`). Missing (or null) intermediate objects are
    /// created. Keys are not checked here: a misspelt one is reported by `decode`, with a suggestion.
    /// Overrides apply in order, so a later one wins.
    ///
    /// - Parameters:
    ///   - file: the recipe's name, for error messages.
    /// - Returns: `json` unchanged when there are no overrides, else the updated JSON (compact).
    /// - Throws: `RecipeErrors` naming every malformed override (no `=`, an empty key), every
    ///   path that runs through a non-object value, or the recipe's malformed JSON.
    public static func applying(overrides: [String], to json: Data, file: String = "recipe") throws(RecipeErrors) -> Data {
        guard !overrides.isEmpty else { return json }
        var root = try parseJSONObject(json, file: file)
        var errors: [RecipeError] = []
        for override in overrides {
            guard let equals = override.firstIndex(of: "=") else {
                errors.append(RecipeError(path: "", message: "malformed override '\(override)': expected path=value, e.g. optimizer.lr=1e-4"))
                continue
            }
            let path = String(override[..<equals])
            let keys = path.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            guard keys.allSatisfy({ !$0.isEmpty }) else {
                let reason = path.isEmpty ? "the path is empty" : "empty key in '\(path)'"
                errors.append(RecipeError(path: "", message: "malformed override '\(override)': \(reason)"))
                continue
            }
            let value = parseOverrideValue(String(override[override.index(after: equals)...]))
            if let problem = set(value, at: keys[...], in: &root, above: []) {
                errors.append(RecipeError(path: path, message: "cannot apply override '\(override)': \(problem)"))
            }
        }
        guard errors.isEmpty else { throw RecipeErrors(file: file, errors: errors) }
        let options: JSONSerialization.WritingOptions = [.sortedKeys, .withoutEscapingSlashes]
        do {
            return try JSONSerialization.data(withJSONObject: root, options: options)
        } catch {
            // Only parsed JSON values went in, so this should not happen.
            throw RecipeErrors(file: file, errors: [RecipeError(path: "", message: "cannot write the overridden recipe: \(error)")])
        }
    }

    /// JSON when `text` is JSON, else the text itself.
    static func parseOverrideValue(_ text: String) -> Any {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8), options: .fragmentsAllowed)) ?? text
    }

    /// Sets `object[keys...]` to `value`, creating missing objects; a problem message when a key on
    /// the way holds something other than an object. `above` is the path walked so far.
    private static func set(_ value: Any, at keys: ArraySlice<String>, in object: inout [String: Any], above: [String]) -> String? {
        guard let key = keys.first else { return nil }
        guard keys.count > 1 else {
            object[key] = value
            return nil
        }
        var child: [String: Any]
        switch object[key] {
        case nil, is NSNull: child = [:]
        case let existing as [String: Any]: child = existing
        case let other?:
            return "'\((above + [key]).joined(separator: "."))' is \(renderJSON(other)), not an object"
        }
        if let problem = set(value, at: keys.dropFirst(), in: &child, above: above + [key]) { return problem }
        object[key] = child
        return nil
    }
}
