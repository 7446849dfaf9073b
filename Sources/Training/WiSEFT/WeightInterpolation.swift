import Datasets
import Foundation
import Models
import NN
import Torch

/// A WiSE-FT pair that cannot be interpolated, an α outside [0, 1], a set or flag that does not
/// fit: the message names the problem.
public struct WiSEFTError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// WiSE-FT (Wortsman et al., CVPR 2022): the weight-space ensemble
/// θ(α) = (1 − α)·θ_zero-shot + α·θ_fine-tuned of a model and its fine-tuned self.
public enum WiSEFT {
    /// 0, 0.1, …, 1 (each k/10, so 0.3 is 0.3 and not 3 × 0.1).
    public static let defaultAlphas = (0...10).map { Double($0) / 10 }

    /// Refuses NaN and anything outside [0, 1], naming the value; `what` says where it came from.
    public static func check(alpha: Double, what: String = "α") throws {
        guard !alpha.isNaN else { throw WiSEFTError("\(what) is NaN; it must be a number in [0, 1]") }
        guard (0...1).contains(alpha) else {
            throw WiSEFTError("\(what) \(formatNumber(alpha)) is outside [0, 1] (0: the zero-shot model, 1: the fine-tuned model)")
        }
    }

    /// `--alphas 0,0.25,1`: distinct numbers in [0, 1], returned in ascending order.
    public static func parseAlphas(_ text: String, option: String = "--alphas") throws -> [Double] {
        var alphas: [Double] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false).map({ $0.trimmingCharacters(in: .whitespaces) }) {
            guard !item.isEmpty else { throw WiSEFTError("\(option) \(text): an empty entry; give numbers separated by commas (0,0.5,1)") }
            guard let alpha = Double(item) else { throw WiSEFTError("\(option): '\(item)' is not a number") }
            try check(alpha: alpha, what: "\(option): α")
            guard !alphas.contains(alpha) else { throw WiSEFTError("\(option): α \(item) is listed twice") }
            alphas.append(alpha)
        }
        return alphas.sorted()
    }

    /// (1 − α)·a + α·b for one pair of float tensors, in the tensors' dtype. α = 0 and α = 1 return
    /// `a` and `b` themselves, so the ends are exact whatever the arithmetic would do (−0 + 0 is
    /// +0, and 0 · inf is NaN). Between them the arithmetic is float32 (float64 for float64
    /// tensors): half-precision tensors are mixed in float32 and rounded back once.
    public static func interpolate(_ a: Tensor, _ b: Tensor, alpha: Double) -> Tensor {
        if alpha == 0 { return a }
        if alpha == 1 { return b }
        let compute: DType = a.dtype == .float64 ? .float64 : .float32
        return withNoGrad { a.to(compute).mul(1 - alpha).add(b.to(compute).mul(alpha)).to(a.dtype) }
    }
}

/// What two ends of an interpolation must share: the architecture (every field `config.json`
/// would hold, flattened: `vision_config.hidden_size` → `32`, which covers the sizes, the
/// activation, the pooling and the model type) and every tensor's name, shape and dtype.
public struct WeightSignature: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var shape: [Int]
        public var dtype: DType
    }

    public var architecture: [String: String]
    public var tensors: [String: Entry]

    /// A dual encoder's architecture is its config.json; other modules (tests) have none to compare.
    public init(_ module: Module) {
        architecture = (module as? DualEncoder).map(Self.architecture(of:)) ?? [:]
        tensors = Dictionary(module.stateDict().map { ($0.name, Entry(shape: $0.tensor.shape, dtype: $0.tensor.dtype)) }, uniquingKeysWith: { a, _ in a })
    }

    static func architecture(of model: DualEncoder) -> [String: String] {
        var flat: [String: String] = [:]
        func flatten(_ value: Any, _ prefix: String) {
            if let object = value as? [String: Any] {
                for (key, child) in object { flatten(child, prefix.isEmpty ? key : "\(prefix).\(key)") }
            } else {
                flat[prefix] = "\(value)"
            }
        }
        flatten(Pretrained.configJSON(model), "")
        return flat
    }

    /// How `other` (the fine-tuned end) differs from this one (the zero-shot end), as phrases;
    /// empty when they can be interpolated. Lists a few of each kind and counts the rest.
    public func differences(from other: WeightSignature) -> [String] {
        var problems: [String] = []
        func listed(_ items: [String], _ shown: Int = 4) -> String {
            items.prefix(shown).joined(separator: ", ") + (items.count > shown ? ", … (\(items.count - shown) more)" : "")
        }
        let fields = Set(architecture.keys).union(other.architecture.keys).sorted().filter { architecture[$0] != other.architecture[$0] }
        if !fields.isEmpty {
            problems.append("their architectures differ in \(counted(fields.count, "config field")): "
                            + listed(fields.map { "\($0) \(architecture[$0] ?? "absent") vs \(other.architecture[$0] ?? "absent")" }, 8))
        }
        let onlyZero = tensors.keys.filter { other.tensors[$0] == nil }.sorted(), onlyFine = other.tensors.keys.filter { tensors[$0] == nil }.sorted()
        if !onlyZero.isEmpty { problems.append("\(counted(onlyZero.count, "tensor")) only in the zero-shot model: \(listed(onlyZero))") }
        if !onlyFine.isEmpty { problems.append("\(counted(onlyFine.count, "tensor")) only in the fine-tuned model: \(listed(onlyFine))") }
        var shapes: [String] = [], dtypes: [String] = []
        for (name, entry) in tensors.sorted(by: { $0.key < $1.key }) {
            guard let theirs = other.tensors[name] else { continue }
            if entry.shape != theirs.shape { shapes.append("\(name) \(entry.shape) vs \(theirs.shape)") }
            if entry.dtype != theirs.dtype { dtypes.append("\(name) \(entry.dtype) vs \(theirs.dtype)") }
        }
        if !shapes.isEmpty { problems.append("\(counted(shapes.count, "tensor")) \(shapes.count == 1 ? "differs" : "differ") in shape: \(listed(shapes))") }
        if !dtypes.isEmpty { problems.append("\(counted(dtypes.count, "tensor")) \(dtypes.count == 1 ? "differs" : "differ") in dtype: \(listed(dtypes))") }
        return problems
    }
}

/// The two ends' weights, checked to match and ready to mix. Float tensors (the weights,
/// `logit_scale` and `logit_bias` included: the temperature is interpolated like any weight)
/// are mixed; every other tensor (token ids, integer buffers) must be equal in both ends and is
/// taken as it is.
public struct WeightPair {
    /// θ_zero-shot, copied: the zero-shot model is free to hold mixes afterwards.
    public let zeroShot: [(name: String, tensor: Tensor)]
    /// θ_fine-tuned, sharing the fine-tuned model's storage (which must not change meanwhile).
    public let fineTuned: [String: Tensor]

    /// Checks the pair (refusing it with every difference named) and takes both state dicts onto
    /// `device`. `names` say how the user knows the two ends (their folders).
    public init(zeroShot: Module, fineTuned: Module, names: (zeroShot: String, fineTuned: String), device: Device = .cpu) throws {
        let problems = WeightSignature(zeroShot).differences(from: WeightSignature(fineTuned))
        guard problems.isEmpty else {
            throw WiSEFTError("cannot interpolate \(names.zeroShot) (zero-shot) and \(names.fineTuned) (fine-tuned): "
                              + problems.joined(separator: "; ") + "; WiSE-FT needs the same architecture, and a fine-tuned model of the zero-shot one")
        }
        let mine: [(name: String, tensor: Tensor)] = withNoGrad { zeroShot.stateDict().map { (name: $0.name, tensor: $0.tensor.on(device).clone()) } }
        let theirs = Dictionary(fineTuned.stateDict().map { ($0.name, $0.tensor.on(device)) }, uniquingKeysWith: { a, _ in a })
        let unequal = mine.filter { !$0.tensor.dtype.isFloatingPoint && !$0.tensor.equal(theirs[$0.name]!) }.map(\.name)
        guard unequal.isEmpty else {
            throw WiSEFTError("cannot interpolate \(names.zeroShot) (zero-shot) and \(names.fineTuned) (fine-tuned): \(counted(unequal.count, "non-float tensor")) "
                              + "\(unequal.count == 1 ? "differs" : "differ") (\(unequal.prefix(4).joined(separator: ", "))\(unequal.count > 4 ? ", …" : "")); ids and integer buffers cannot be mixed, so they must be equal")
        }
        self.zeroShot = mine
        self.fineTuned = theirs
    }

    /// θ(α), by name: float tensors mixed by `WiSEFT.interpolate`, the others the zero-shot's.
    public func interpolated(_ alpha: Double) throws -> [String: Tensor] {
        try WiSEFT.check(alpha: alpha)
        var result: [String: Tensor] = [:]
        for (name, tensor) in zeroShot {
            result[name] = tensor.dtype.isFloatingPoint ? WiSEFT.interpolate(tensor, fineTuned[name]!, alpha: alpha) : tensor
        }
        return result
    }
}
