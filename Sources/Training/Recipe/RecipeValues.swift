import Datasets
import Foundation
import Models
import NN
import Optim
import Torch

// MARK: - Values

/// A JSON value as JSONSerialization returns it, classified. On Linux numbers and booleans are
/// all NSNumber (`1 is Bool` is true), so the boxed type (`objCType`) tells them apart.
enum RecipeJSON {
    case null, bool(Bool), integer(Int), number(Double), string(String), array([Any]), object([String: Any]), other

    init(_ raw: Any) {
        switch raw {
        case is NSNull: self = .null
        case let s as String: self = .string(s)
        // Native Swift values first (a tree built in code rather than parsed).
        case let b as Bool where type(of: raw) == Bool.self: self = .bool(b)
        case let i as Int where type(of: raw) == Int.self: self = .integer(i)
        case let d as Double where type(of: raw) == Double.self: self = .number(d)
        case let n as NSNumber:
            switch String(cString: n.objCType) {
            case "c", "B": self = .bool(n.boolValue)
            case "d", "f": self = .number(n.doubleValue)
            case "Q", "L": self = n.uint64Value <= UInt64(Int.max) ? .integer(Int(n.uint64Value)) : .number(n.doubleValue)
            default: self = .integer(n.intValue)
            }
        case let a as [Any]: self = .array(a)
        case let o as [String: Any]: self = .object(o)
        default: self = .other
        }
    }
}

/// Why a JSON value is not of the expected type: "expected a number", and maybe a hint
/// ("did you mean …?") for after the value found.
struct RecipeMismatch: Error {
    let message: String
    var hint: String?
}

/// A type a recipe field can hold.
protocol RecipeValue {
    /// What the JSON should be, e.g. "an integer".
    static var recipeExpectation: String { get }
    /// Several of them, for arrays: "numbers".
    static var recipePlural: String { get }
    static func recipeDecode(_ json: RecipeJSON) -> Result<Self, RecipeMismatch>
    /// The value as JSONSerialization writes it.
    var recipeJSON: Any { get }
}

extension RecipeValue {
    static var recipePlural: String { "values" }
    static var recipeMismatch: RecipeMismatch { RecipeMismatch(message: "expected \(recipeExpectation)") }
}

extension Int: RecipeValue {
    static var recipeExpectation: String { "an integer" }
    static var recipePlural: String { "integers" }
    static func recipeDecode(_ json: RecipeJSON) -> Result<Int, RecipeMismatch> {
        switch json {
        case .integer(let i): .success(i)
        // 32.0 (or 1e3) is accepted: some tools write every number with a decimal point.
        case .number(let d): Int(exactly: d).map { .success($0) } ?? .failure(recipeMismatch)
        default: .failure(recipeMismatch)
        }
    }
    var recipeJSON: Any { self }
}

extension Double: RecipeValue {
    static var recipeExpectation: String { "a number" }
    static var recipePlural: String { "numbers" }
    static func recipeDecode(_ json: RecipeJSON) -> Result<Double, RecipeMismatch> {
        switch json {
        case .integer(let i): .success(Double(i))
        case .number(let d) where d.isFinite: .success(d)
        default: .failure(recipeMismatch)
        }
    }
    // JSON has no NaN or infinity; such a value (set in code) is written as a string so that
    // writing never fails and decoding the result reports it.
    var recipeJSON: Any { isFinite ? self : "\(self)" }
}

extension Bool: RecipeValue {
    static var recipeExpectation: String { "true or false" }
    static func recipeDecode(_ json: RecipeJSON) -> Result<Bool, RecipeMismatch> {
        if case .bool(let b) = json { return .success(b) }
        return .failure(recipeMismatch)
    }
    var recipeJSON: Any { self }
}

extension String: RecipeValue {
    static var recipeExpectation: String { "a string" }
    static var recipePlural: String { "strings" }
    static func recipeDecode(_ json: RecipeJSON) -> Result<String, RecipeMismatch> {
        if case .string(let s) = json { return .success(s) }
        return .failure(recipeMismatch)
    }
    var recipeJSON: Any { self }
}

extension Character: RecipeValue {
    static var recipeExpectation: String { "a single ASCII character" }
    static func recipeDecode(_ json: RecipeJSON) -> Result<Character, RecipeMismatch> {
        // The manifest reader splits on one byte.
        if case .string(let s) = json, s.count == 1, let c = s.first, c.isASCII { return .success(c) }
        return .failure(recipeMismatch)
    }
    var recipeJSON: Any { String(self) }
}

extension Array: RecipeValue where Element: RecipeValue {
    static var recipeExpectation: String { "an array of \(Element.recipePlural)" }
    static func recipeDecode(_ json: RecipeJSON) -> Result<[Element], RecipeMismatch> {
        guard case .array(let items) = json else { return .failure(recipeMismatch) }
        var result: [Element] = []
        for item in items {
            guard case .success(let element) = Element.recipeDecode(RecipeJSON(item)) else { return .failure(recipeMismatch) }
            result.append(element)
        }
        return .success(result)
    }
    var recipeJSON: Any { map(\.recipeJSON) }
}

extension UInt8: RecipeValue {
    static var recipeExpectation: String { "an integer in 0...255" }
    static var recipePlural: String { "integers in 0...255" }
    static func recipeDecode(_ json: RecipeJSON) -> Result<UInt8, RecipeMismatch> {
        guard case .success(let i) = Int.recipeDecode(json), let byte = UInt8(exactly: i) else { return .failure(recipeMismatch) }
        return .success(byte)
    }
    var recipeJSON: Any { Int(self) }
}

/// A string choice: the raw values are the only valid JSON strings.
protocol RecipeChoice: RecipeValue, RawRepresentable<String>, CaseIterable {}

extension RecipeChoice {
    static var recipeExpectation: String { "one of " + allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ") }
    static func recipeDecode(_ json: RecipeJSON) -> Result<Self, RecipeMismatch> {
        guard case .string(let s) = json else { return .failure(recipeMismatch) }
        if let value = Self(rawValue: s) { return .success(value) }
        let suggestion = Recipe.nearestName(s, among: allCases.map(\.rawValue))
        return .failure(RecipeMismatch(message: recipeMismatch.message, hint: suggestion.map { "did you mean \"\($0)\"?" }))
    }
    var recipeJSON: Any { rawValue }
}


// The domain types recipes name directly (one definition per setting).
extension TextPooling: RecipeChoice {}
extension BadSamplePolicy: RecipeChoice {}
extension MetricMode: RecipeChoice {}
extension FeatureDistance: RecipeChoice {}
extension Precision: RecipeChoice {}
extension HostAllocator.Kind: RecipeChoice {}
extension LRSchedule.Kind.Name: RecipeChoice {}
extension Recipe.TextArchitecture: RecipeChoice {}
extension Recipe.StudentInit: RecipeChoice {}
extension Recipe.LossType: RecipeChoice {}
extension Recipe.OptimizerType: RecipeChoice {}
extension Recipe.ResumePolicy: RecipeChoice {}
extension Recipe.LoRATowers: RecipeChoice {}

/// Activations by their Hugging Face `hidden_act` names (`gelu_new` is `gelu_pytorch_tanh`).
extension Activation: RecipeValue {
    static var recipeExpectation: String { "one of \"gelu\", \"gelu_new\", \"gelu_pytorch_tanh\", \"quick_gelu\", \"relu\"" }
    static func recipeDecode(_ json: RecipeJSON) -> Result<Activation, RecipeMismatch> {
        guard case .string(let s) = json else { return .failure(recipeMismatch) }
        if let value = Activation(huggingFaceName: s) { return .success(value) }
        let names = ["gelu", "gelu_new", "gelu_pytorch_tanh", "quick_gelu", "relu"]
        return .failure(RecipeMismatch(message: recipeMismatch.message, hint: Recipe.nearestName(s, among: names).map { "did you mean \"\($0)\"?" }))
    }
    var recipeJSON: Any { rawValue }
}
