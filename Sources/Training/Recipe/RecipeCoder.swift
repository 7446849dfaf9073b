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
    ///   - paths: how relative paths resolve (the recipe's folder; the working directory for
    ///     values given as overrides); nil leaves them as written (only `@assets/` expands).
    /// - Throws: `RecipeErrors` with every unknown key (with the nearest valid key), wrong type,
    ///   invalid choice, out-of-range value and conflict; or one error for malformed JSON.
    ///   Paths on disk are not checked here: see `problemsWithPaths(relativeTo:fileExists:)`.
    public static func decode(_ data: Data, file: String, defaultName: String, paths: RecipePathResolution? = nil) throws(RecipeErrors) -> Recipe {
        let (recipe, problems) = try decodeReportingProblems(data, file: file, defaultName: defaultName, paths: paths)
        guard problems.isEmpty else { throw RecipeErrors(file: file, errors: problems) }
        return recipe
    }

    /// The recipe as far as it could be read (a field with a problem keeps its default) and
    /// every problem found; throws only for JSON that is not an object.
    static func decodeReportingProblems(_ data: Data, file: String, defaultName: String,
                                        paths: RecipePathResolution?) throws(RecipeErrors) -> (Recipe, [RecipeError]) {
        let object = try parseJSONObject(data, file: file)
        let context = RecipeCodingContext(paths: paths)
        var coder = RecipeCoder(decoding: object, path: "", context: context)
        // `train` is required, so this placeholder never survives: its absence is reported.
        var recipe = Recipe(name: defaultName, train: .shards(""))
        recipe.code(&coder)
        coder.reportUnknownKeys()
        return (recipe, context.errors)
    }

    /// The whole recipe with every default filled in (unset optionals as `null`), pretty-printed
    /// with sorted keys: what the run saves as `recipe.json`. Decoding it gives this recipe back.
    public func resolvedJSON() -> Data {
        var coder = RecipeCoder(encodingAt: "", context: RecipeCodingContext())
        var copy = self
        copy.code(&coder)
        let options: JSONSerialization.WritingOptions = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Cannot fail: the tree holds only strings, finite numbers, booleans, NSNull, arrays and objects.
        return (try? JSONSerialization.data(withJSONObject: coder.output, options: options)) ?? Data("{}".utf8)
    }

    /// Every key of the schema with its type, default and meaning, in the schema's order.
    static func documentation() -> [RecipeKeyDocumentation] {
        let context = RecipeCodingContext(documenting: true)
        var coder = RecipeCoder(encodingAt: "", context: context)
        var recipe = Recipe(name: "<the recipe file's name>", train: .shards(""))
        recipe.code(&coder)
        return context.documentation
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

/// What the coders of one recipe share: the problems found so far, how paths resolve, and
/// (when documenting) the keys seen.
final class RecipeCodingContext {
    private(set) var errors: [RecipeError] = []
    private var problemPaths: Set<String> = []
    let paths: RecipePathResolution?
    let documenting: Bool
    var documentation: [RecipeKeyDocumentation] = []

    init(paths: RecipePathResolution? = nil, documenting: Bool = false) {
        self.paths = paths
        self.documenting = documenting
    }

    func add(_ path: String, _ message: String) {
        errors.append(RecipeError(path: path, message: message))
        problemPaths.insert(path)
    }

    /// Whether a problem was reported at `path` or below it.
    func contains(path: String) -> Bool {
        problemPaths.contains { $0 == path || $0.hasPrefix(path + ".") }
    }
}

/// One key of the schema, for the generated recipe reference.
struct RecipeKeyDocumentation {
    /// Dotted path (`optimizer.lr`).
    var path: String
    /// What the value is ("a number", "one of …", "an object"), with "or null" when it may be null.
    var type: String
    /// The default as JSON, or a phrase ("required", "off").
    var defaultValue: String
    var help: String
    /// A section heading rather than a value.
    var isSection: Bool
}

/// Reads one JSON object into a struct's fields (decoding), writes the fields out (encoding,
/// for `resolvedJSON`), or lists them with their help (documenting).
struct RecipeCoder {
    /// Dotted path of this object; "" at the top.
    let path: String
    /// The object being decoded; nil while encoding.
    private let input: [String: Any]?
    private let context: RecipeCodingContext
    /// Keys asked for, in order: the valid keys of this object.
    private var knownKeys: [String] = []
    /// The encoded object.
    private(set) var output: [String: Any] = [:]

    init(decoding object: [String: Any], path: String, context: RecipeCodingContext) {
        self.path = path
        self.input = object
        self.context = context
    }

    init(encodingAt path: String, context: RecipeCodingContext) {
        self.path = path
        self.input = nil
        self.context = context
    }

    var isDecoding: Bool { input != nil }
    /// Encoding for the recipe reference: sections visit every variant they have.
    var isDocumenting: Bool { context.documenting }

    func path(of key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// Whether the JSON object has `key` (null included); false while encoding.
    func has(_ key: String) -> Bool { input?[key] != nil }

    /// Whether a problem was reported at `fullPath` (a path from the root) or below it.
    func hasProblem(at fullPath: String) -> Bool { context.contains(path: fullPath) }

    /// Reports a problem at `key` (a key or dotted path below this object), or at the object itself.
    func report(_ key: String?, _ message: String) {
        context.add(key.map(path(of:)) ?? path, message)
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

    private func document(_ key: String, type: String, defaultValue: Any?, help: String, isSection: Bool = false) {
        guard context.documenting else { return }
        let shown = defaultValue.map { value in value is NSNull ? "null" : renderJSON(value, limit: 80) } ?? "required"
        context.documentation.append(RecipeKeyDocumentation(path: path(of: key), type: type, defaultValue: shown, help: help, isSection: isSection))
    }

    /// A field that always has a value: absent keeps the default, null is a type error.
    mutating func field<T: RecipeValue>(_ key: String, _ value: inout T, _ rule: RecipeRule<T>? = nil, required: Bool = false, help: String) {
        guard isDecoding else {
            output[key] = value.recipeJSON
            document(key, type: T.recipeExpectation + (rule.map { ", " + $0.requirement.replacingOccurrences(of: "must be ", with: "").replacingOccurrences(of: "must not be ", with: "not ") } ?? ""),
                     defaultValue: required ? nil : value.recipeJSON, help: help)
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
    mutating func field<T: RecipeValue>(_ key: String, _ value: inout T?, _ rule: RecipeRule<T>? = nil, help: String) {
        guard isDecoding else {
            output[key] = value?.recipeJSON ?? NSNull()
            document(key, type: T.recipeExpectation + (rule.map { ", " + $0.requirement.replacingOccurrences(of: "must be ", with: "").replacingOccurrences(of: "must not be ", with: "not ") } ?? "") + ", or null",
                     defaultValue: value?.recipeJSON ?? NSNull(), help: help)
            return
        }
        switch lookup(key) {
        case .absent: break
        case .null: value = nil
        case .present(let raw):
            if let decoded = read(key, raw, rule) { value = decoded }
        }
    }

    /// A path to something the run reads (a file, a folder, a shard pattern): relative paths
    /// resolve against the recipe's folder, or the working directory when the value came from a
    /// command-line override; `@assets/…` names the downloaded assets (Scripts/bootstrap's).
    mutating func pathField(_ key: String, _ value: inout String?, help: String) {
        let before = value
        field(key, &value, .nonEmpty, help: help + " " + RecipePathResolution.rule)
        if isDecoding, let raw = value, raw != before, !hasProblem(at: path(of: key)) {
            value = RecipePathResolution.resolve(raw, fullPath: path(of: key), in: context.paths)
        }
    }

    /// As `pathField` for a path that must be given.
    mutating func pathField(_ key: String, _ value: inout String, required: Bool, help: String) {
        let before = value
        field(key, &value, .nonEmpty, required: required, help: help + " " + RecipePathResolution.rule)
        if isDecoding, value != before, !hasProblem(at: path(of: key)) {
            value = RecipePathResolution.resolve(value, fullPath: path(of: key), in: context.paths)
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
    /// fields and checks still run, unless it is itself `required` (then `required` says what it
    /// should be). `shorthand` turns a plain string into the object it stands for.
    mutating func section<S: RecipeCoding>(_ key: String, _ value: inout S, required: String? = nil, help: String,
                                           shorthand: ((String) -> [String: Any]?)? = nil) {
        guard isDecoding else {
            document(key, type: "an object", defaultValue: required == nil ? [String: Any]() : nil, help: help, isSection: true)
            var child = RecipeCoder(encodingAt: path(of: key), context: context)
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
            if let text = raw as? String, let object = shorthand?(text) {
                decodeObject(key, object, into: &value)
                return
            }
            guard let object = raw as? [String: Any] else {
                report(key, "expected an object, found \(renderJSON(raw))")
                return
            }
            decodeObject(key, object, into: &value)
        }
    }

    /// A nested object that may be off: absent keeps the default, null turns it off, an object is
    /// decoded over `start` (the section's defaults, with placeholders for its required fields).
    mutating func section<S: RecipeCoding>(_ key: String, _ value: inout S?, start: S, help: String,
                                           shorthand: ((String) -> [String: Any]?)? = nil) {
        guard isDecoding else {
            document(key, type: "an object, or null", defaultValue: value == nil ? NSNull() : [String: Any](), help: help, isSection: true)
            if var copy = value ?? (isDocumenting ? start : nil) {
                var child = RecipeCoder(encodingAt: path(of: key), context: context)
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
            var decoded = start
            if let text = raw as? String, let object = shorthand?(text) {
                decodeObject(key, object, into: &decoded)
                value = decoded
                return
            }
            guard let object = raw as? [String: Any] else {
                report(key, "expected an object or null, found \(renderJSON(raw))")
                return
            }
            decodeObject(key, object, into: &decoded)
            value = decoded
        }
    }

    /// A list of objects, each decoded over `start` (its problems reported at `key.N`); absent
    /// keeps the default, null is the empty list. `shorthand` turns a plain string item into the
    /// object it stands for. The reference documents the list as one key (`type`).
    mutating func sectionList<S: RecipeCoding>(_ key: String, _ value: inout [S], start: S, type: String, help: String,
                                               shorthand: ((String) -> [String: Any]?)? = nil) {
        guard isDecoding else {
            document(key, type: type + ", or null", defaultValue: [Any](), help: help)
            output[key] = value.map { item in
                var child = RecipeCoder(encodingAt: path(of: key), context: context)
                var copy = item
                copy.code(&child)
                return child.output
            }
            return
        }
        switch lookup(key) {
        case .absent: break
        case .null: value = []
        case .present(let raw):
            guard let items = raw as? [Any] else {
                report(key, "expected \(type), found \(renderJSON(raw))")
                return
            }
            var decoded: [S] = []
            for (index, item) in items.enumerated() {
                guard let object = (item as? String).flatMap({ shorthand?($0) }) ?? item as? [String: Any] else {
                    report("\(key).\(index)", "expected an object\(shorthand == nil ? "" : " or a path"), found \(renderJSON(item))")
                    continue
                }
                var element = start
                decodeObject("\(key).\(index)", object, into: &element)
                decoded.append(element)
            }
            value = decoded
        }
    }

    private func decodeObject<S: RecipeCoding>(_ key: String, _ object: [String: Any], into value: inout S) {
        var child = RecipeCoder(decoding: object, path: path(of: key), context: context)
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
            context.add(path(of: key), message)
        }
    }
}
