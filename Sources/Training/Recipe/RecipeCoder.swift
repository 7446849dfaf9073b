import Foundation

// Recipes are read by hand from JSONSerialization's output rather than with `Decodable`, so that
// one pass reports every problem (with its JSON path) instead of stopping at the first. This file
// holds the entry points, the errors and the coder that walks one JSON object; the keys and rules
// of each section are in RecipeSchema.swift, the value types in RecipeValues.swift.

// MARK: - Errors

/// One problem in a recipe.
public struct RecipeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Dotted JSON path (`optimizer.lr`, `data.train.shards`); empty for the file as a whole.
    public var path: String
    public var message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { path.isEmpty ? message : "\(path): \(message)" }
}

/// Every problem found in one recipe, sorted by path.
public struct RecipeErrors: Error, Sendable, Equatable, CustomStringConvertible {
    /// The recipe file, as the user named it.
    public var file: String
    public var errors: [RecipeError]

    public init(file: String, errors: [RecipeError]) {
        self.file = file
        // Stable: problems at one path keep the order they were found in.
        self.errors = errors.enumerated()
            .sorted { ($0.element.path, $0.offset) < ($1.element.path, $1.offset) }
            .map(\.element)
    }

    /// One line per problem: `file: path: message`.
    public var description: String {
        errors.map { file.isEmpty ? $0.description : "\(file): \($0)" }.joined(separator: "\n")
    }
}

// MARK: - Entry points

extension Recipe {
    /// Reads and validates a recipe, reporting every problem at once.
    ///
    /// - Parameters:
    ///   - data: the recipe's JSON (after `applying(overrides:to:)`, if any).
    ///   - file: the file's name for error messages.
    ///   - defaultName: the run name when the recipe sets none (usually the file's base name).
    /// - Throws: `RecipeErrors` with every unknown key (with the nearest valid key), wrong type,
    ///   invalid choice, out-of-range value and conflict; or one error for malformed JSON.
    ///   Paths on disk are not checked here: see `problemsWithPaths(relativeTo:fileExists:)`.
    public static func decode(_ data: Data, file: String, defaultName: String) throws(RecipeErrors) -> Recipe {
        let object = try parseJSONObject(data, file: file)
        let problems = RecipeProblemList()
        var coder = RecipeCoder(decoding: object, path: "", problems: problems)
        // `train` is required, so this placeholder never survives: its absence is reported.
        var recipe = Recipe(name: defaultName, train: .shards(""))
        recipe.code(&coder)
        coder.reportUnknownKeys()
        guard problems.errors.isEmpty else { throw RecipeErrors(file: file, errors: problems.errors) }
        return recipe
    }

    /// The whole recipe with every default filled in (unset optionals as `null`), pretty-printed
    /// with sorted keys: what the run saves as `recipe.json`. Decoding it gives this recipe back.
    public func resolvedJSON() -> Data {
        var coder = RecipeCoder(encodingAt: "")
        var copy = self
        copy.code(&coder)
        let options: JSONSerialization.WritingOptions = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Cannot fail: the tree holds only strings, finite numbers, booleans, NSNull, arrays and objects.
        return (try? JSONSerialization.data(withJSONObject: coder.output, options: options)) ?? Data("{}".utf8)
    }

    /// Parses `data` as a JSON object; anything else is one `RecipeError` at the root.
    static func parseJSONObject(_ data: Data, file: String) throws(RecipeErrors) -> [String: Any] {
        let value: Any
        do {
            value = try JSONSerialization.jsonObject(with: data, options: .fragmentsAllowed)
        } catch {
            throw RecipeErrors(file: file, errors: [RecipeError(path: "", message: malformedJSONMessage(error, data))])
        }
        guard let object = value as? [String: Any] else {
            throw RecipeErrors(file: file, errors: [RecipeError(path: "", message: "expected a JSON object at the top level, found \(renderJSON(value))")])
        }
        return object
    }

    /// Foundation on Linux says "around character N" (a byte offset); turn that into line and column.
    private static func malformedJSONMessage(_ error: any Error, _ data: Data) -> String {
        var reason = ((error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String) ?? "\(error)"
        guard let marker = reason.range(of: " around character ") else { return "malformed JSON: \(reason)" }
        let digits = reason[marker.upperBound...].prefix { $0.isNumber }
        guard let offset = Int(digits), offset <= data.count else { return "malformed JSON: \(reason)" }
        reason = String(reason[..<marker.lowerBound])
        let before = Array(data.prefix(offset))   // an Array, so indices start at 0 even for a Data slice
        let line = before.reduce(1) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
        let column = offset - (before.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? 0) + 1
        return "malformed JSON at line \(line), column \(column): \(reason.lowercased())"
    }
}


// MARK: - The coder

/// Problems found so far; shared by the coders of nested objects.
final class RecipeProblemList {
    private(set) var errors: [RecipeError] = []
    private var paths: Set<String> = []

    func add(_ path: String, _ message: String) {
        errors.append(RecipeError(path: path, message: message))
        paths.insert(path)
    }

    /// Whether a problem was reported at `path` or below it.
    func contains(path: String) -> Bool {
        paths.contains { $0 == path || $0.hasPrefix(path + ".") }
    }
}

/// Reads one JSON object into a struct's fields (decoding) or writes the fields out (encoding).
struct RecipeCoder {
    /// Dotted path of this object; "" at the top.
    let path: String
    /// The object being decoded; nil while encoding.
    private let input: [String: Any]?
    private let problems: RecipeProblemList
    /// Keys asked for, in order: the valid keys of this object.
    private var knownKeys: [String] = []
    /// The encoded object.
    private(set) var output: [String: Any] = [:]

    init(decoding object: [String: Any], path: String, problems: RecipeProblemList) {
        self.path = path
        self.input = object
        self.problems = problems
    }

    init(encodingAt path: String) {
        self.path = path
        self.input = nil
        self.problems = RecipeProblemList()
    }

    var isDecoding: Bool { input != nil }

    func path(of key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// Whether the JSON object has `key` (null included); false while encoding.
    func has(_ key: String) -> Bool { input?[key] != nil }

    /// Whether a problem was reported at `fullPath` (a path from the root) or below it.
    func hasProblem(at fullPath: String) -> Bool { problems.contains(path: fullPath) }

    /// Reports a problem at `key` (a key or dotted path below this object), or at the object itself.
    func report(_ key: String?, _ message: String) {
        problems.add(key.map(path(of:)) ?? path, message)
    }

    private enum Lookup {
        case absent, null, present(Any)
    }

    /// Reports `key` as required (`because` says when) if it is absent; nothing while encoding.
    func requireKey(_ key: String, because reason: String) {
        if isDecoding, !has(key) { report(key, "required when \(reason)") }
    }

    /// Marks `key` as handled (a check reported it), so it is not also called unknown.
    mutating func accept(_ key: String) {
        knownKeys.append(key)
    }

    private mutating func lookup(_ key: String) -> Lookup {
        knownKeys.append(key)
        switch input?[key] {
        case nil: return .absent
        case is NSNull: return .null
        case let value?: return .present(value)
        }
    }

    /// A field that always has a value: absent keeps the default, null is a type error.
    mutating func field<T: RecipeValue>(_ key: String, _ value: inout T, _ rule: RecipeRule<T>? = nil, required: Bool = false) {
        guard isDecoding else {
            output[key] = value.recipeJSON
            return
        }
        switch lookup(key) {
        case .absent:
            if required { report(key, "required") }
        case .null:
            report(key, "expected \(T.recipeExpectation), found null")
        case .present(let raw):
            if let decoded = read(key, raw, rule) { value = decoded }
        }
    }

    /// An optional field: absent keeps the default, null sets nil.
    mutating func field<T: RecipeValue>(_ key: String, _ value: inout T?, _ rule: RecipeRule<T>? = nil) {
        guard isDecoding else {
            output[key] = value?.recipeJSON ?? NSNull()
            return
        }
        switch lookup(key) {
        case .absent: break
        case .null: value = nil
        case .present(let raw):
            if let decoded = read(key, raw, rule) { value = decoded }
        }
    }

    private func read<T: RecipeValue>(_ key: String, _ raw: Any, _ rule: RecipeRule<T>?) -> T? {
        switch T.recipeDecode(RecipeJSON(raw)) {
        case .failure(let mismatch):
            report(key, "\(mismatch.message), found \(renderJSON(raw))" + (mismatch.hint.map { "; \($0)" } ?? ""))
            return nil
        case .success(let decoded):
            if let rule, !rule.holds(decoded) {
                report(key, "\(rule.requirement), found \(renderJSON(raw))")
                return nil
            }
            return decoded
        }
    }

    /// A nested object that always exists. Absent, it is decoded from `{}` so that its required
    /// fields and checks still run, unless it is itself `required` (then `required` says what it should be).
    mutating func section<S: RecipeCoding>(_ key: String, _ value: inout S, required: String? = nil) {
        guard isDecoding else {
            var child = RecipeCoder(encodingAt: path(of: key))
            var copy = value
            copy.code(&child)
            output[key] = child.output
            return
        }
        switch lookup(key) {
        case .absent:
            if let required {
                report(key, "required: \(required)")
            } else {
                decodeObject(key, [:], into: &value)
            }
        case .null:
            report(key, "expected an object, found null")
        case .present(let raw):
            guard let object = raw as? [String: Any] else {
                report(key, "expected an object, found \(renderJSON(raw))")
                return
            }
            decodeObject(key, object, into: &value)
        }
    }

    /// A nested object that may be off: absent keeps the default, null turns it off, an object is
    /// decoded over `start` (the section's defaults, with placeholders for its required fields).
    mutating func section<S: RecipeCoding>(_ key: String, _ value: inout S?, start: S) {
        guard isDecoding else {
            if var copy = value {
                var child = RecipeCoder(encodingAt: path(of: key))
                copy.code(&child)
                output[key] = child.output
            } else {
                output[key] = NSNull()
            }
            return
        }
        switch lookup(key) {
        case .absent: break
        case .null: value = nil
        case .present(let raw):
            guard let object = raw as? [String: Any] else {
                report(key, "expected an object or null, found \(renderJSON(raw))")
                return
            }
            var decoded = start
            decodeObject(key, object, into: &decoded)
            value = decoded
        }
    }

    private func decodeObject<S: RecipeCoding>(_ key: String, _ object: [String: Any], into value: inout S) {
        var child = RecipeCoder(decoding: object, path: path(of: key), problems: problems)
        value.code(&child)
        child.reportUnknownKeys()
    }

    /// Reports every key of the object that no field asked for, with the nearest valid key.
    func reportUnknownKeys() {
        guard let input else { return }
        for key in input.keys.sorted() where !knownKeys.contains(key) {
            var message = "unknown key '\(path(of: key))'"
            if let suggestion = Recipe.nearestName(key, among: knownKeys) {
                message += "; did you mean '\(suggestion)'?"
            } else {
                message += "; valid keys: \(knownKeys.sorted().joined(separator: ", "))"
            }
            problems.add(path(of: key), message)
        }
    }
}

