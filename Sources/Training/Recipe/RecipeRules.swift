import Foundation

// MARK: - Rules

/// A condition on a decoded value, with the message shown when it fails ("must be ≥ 1").
struct RecipeRule<T> {
    let requirement: String
    let holds: (T) -> Bool

    init(requirement: String, _ holds: @escaping (T) -> Bool) {
        self.requirement = requirement
        self.holds = holds
    }
}

extension RecipeRule where T: Comparable {
    static func atLeast(_ bound: T) -> RecipeRule { RecipeRule(requirement: "must be ≥ \(formatNumber(bound))") { $0 >= bound } }
    static func above(_ bound: T) -> RecipeRule { RecipeRule(requirement: "must be > \(formatNumber(bound))") { $0 > bound } }
    static func within(_ r: ClosedRange<T>) -> RecipeRule {
        RecipeRule(requirement: "must be in [\(formatNumber(r.lowerBound)), \(formatNumber(r.upperBound))]") { r.contains($0) }
    }
    static func within(_ r: Range<T>) -> RecipeRule {
        RecipeRule(requirement: "must be in [\(formatNumber(r.lowerBound)), \(formatNumber(r.upperBound)))") { r.contains($0) }
    }
}

extension RecipeRule where T == Double {
    static var probability: RecipeRule { .within(0...1) }
}

extension RecipeRule where T == String {
    static var nonEmpty: RecipeRule { RecipeRule(requirement: "must not be empty") { !$0.isEmpty } }
}

extension RecipeRule where T == [Double] {
    /// `[low, high]` with `lowAbove < low ≤ high (≤ highAtMost)`.
    static func orderedPair(lowAbove: Double, highAtMost: Double?) -> RecipeRule {
        let upper = highAtMost.map { " ≤ \(formatNumber($0))" } ?? ""
        return RecipeRule(requirement: "must be [low, high] with \(formatNumber(lowAbove)) < low ≤ high\(upper)") { pair in
            pair.count == 2 && lowAbove < pair[0] && pair[0] <= pair[1] && highAtMost.map { pair[1] <= $0 } ?? true
        }
    }
}

/// A number for a message: `1` rather than `1.0`.
func formatNumber<T>(_ value: T) -> String {
    let text = "\(value)"
    return text.hasSuffix(".0") ? String(text.dropLast(2)) : text
}

/// A JSON value as it appears in the file, shortened, for "found …" in messages.
func renderJSON(_ raw: Any, limit: Int = 60) -> String {
    let options: JSONSerialization.WritingOptions = [.fragmentsAllowed, .sortedKeys, .withoutEscapingSlashes]
    guard JSONSerialization.isValidJSONObject([raw]),
          let data = try? JSONSerialization.data(withJSONObject: raw, options: options) else { return "\(raw)" }
    let text = String(decoding: data, as: UTF8.self)
    return text.count > limit ? text.prefix(limit - 3) + "…" : text
}

