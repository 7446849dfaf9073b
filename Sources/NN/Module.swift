import Foundation
import Torch

/// A non-trainable tensor kept with a module (e.g. `position_ids`). Persistent buffers are
/// saved in state dicts; others are not.
public final class Buffer {
    public let tensor: Tensor
    public let persistent: Bool
    public init(_ tensor: Tensor, persistent: Bool = true) {
        self.tensor = tensor
        self.persistent = persistent
    }
}

/// Base class of every layer and model.
///
/// Declare parameters and sub-modules as stored properties and they are found by reflection:
/// a `Tensor` property is a parameter, a `Module` a child, `[Module]` numbered children
/// (`layers.0`), `Buffer` a buffer; optionals are skipped when nil. Names are the property names
/// in snake_case (`selfAttn` → `self_attn`, `layerNorm1` → `layer_norm1`), so Swift code reads
/// naturally and state-dict keys match Hugging Face's; `keyOverrides` covers the rest (BERT's
/// `LayerNorm`, `self`).
///
/// Parameters are never replaced: loading, freezing and device moves act on the same tensor
/// objects, so optimizers and recorders that hold them stay valid.
open class Module {
    public private(set) var isTraining = true

    public init() {}

    /// Property name → state-dict key, where snake_case is not the right key.
    open class var keyOverrides: [String: String] { [:] }

    // MARK: structure

    private enum Member {
        case parameter(Tensor)
        case buffer(Buffer)
        case child(Module)
    }

    /// Direct members in declaration order (superclass properties first).
    private final func members() -> [(String, Member)] {
        var mirrors: [Mirror] = []
        var mirror: Mirror? = Mirror(reflecting: self)
        while let m = mirror {
            mirrors.insert(m, at: 0)
            mirror = m.superclassMirror
        }
        let overrides = Self.keyOverrides
        var result: [(String, Member)] = []
        for m in mirrors {
            for child in m.children {
                guard let label = child.label else { continue }
                let name = label.hasPrefix("_") ? String(label.dropFirst()) : label
                let key = overrides[name] ?? snakeCase(name)
                switch child.value {
                case let t as Tensor: result.append((key, .parameter(t)))
                case let b as Buffer: result.append((key, .buffer(b)))
                case let module as Module: result.append((key, .child(module)))
                case let list as [Module]:
                    for (i, module) in list.enumerated() { result.append(("\(key).\(i)", .child(module))) }
                default: continue
                }
            }
        }
        return result
    }

    /// Direct sub-modules with their keys.
    public final func children() -> [(key: String, module: Module)] {
        members().compactMap { key, member in if case .child(let m) = member { (key, m) } else { nil } }
    }

    /// This module and every descendant, with dotted paths ("" for self).
    public final func namedModules(prefix: String = "") -> [(path: String, module: Module)] {
        var result: [(String, Module)] = [(prefix, self)]
        for (key, child) in children() {
            result += child.namedModules(prefix: join(prefix, key))
        }
        return result
    }

    /// Every parameter under its dotted Hugging Face name, in declaration order.
    public final func namedParameters(prefix: String = "") -> [(name: String, tensor: Tensor)] {
        collect(prefix: prefix) { member -> Tensor? in
            guard case .parameter(let t) = member else { return nil }
            return t
        }.map { (name: $0.name, tensor: $0.value) }
    }

    public final func namedBuffers(prefix: String = "") -> [(name: String, buffer: Buffer)] {
        collect(prefix: prefix) { member -> Buffer? in
            guard case .buffer(let b) = member else { return nil }
            return b
        }.map { (name: $0.name, buffer: $0.value) }
    }

    /// Members picked by `pick` from this module and its descendants, depth first.
    private final func collect<T>(prefix: String, _ pick: (Member) -> T?) -> [(name: String, value: T)] {
        var result: [(name: String, value: T)] = []
        for (key, member) in members() {
            if let value = pick(member) { result.append((join(prefix, key), value)) }
            if case .child(let m) = member { result += m.collect(prefix: join(prefix, key), pick) }
        }
        return result
    }

    public final func parameters() -> [Tensor] { namedParameters().map(\.tensor) }

    public final func trainableParameters() -> [(name: String, tensor: Tensor)] {
        namedParameters().filter { $0.tensor.requiresGrad }
    }

    /// Total number of parameter elements.
    public final var parameterCount: Int { namedParameters().reduce(0) { $0 + $1.tensor.count } }
    /// Elements of parameters that receive gradients.
    public final var trainableParameterCount: Int { trainableParameters().reduce(0) { $0 + $1.tensor.count } }

    // MARK: modes

    /// A frozen feature extractor (LiT's locked layers) stays in inference mode, dropout off,
    /// whatever `train()` says: its output is then a function of its input alone, which is what
    /// lets frozen-layer caching reuse it.
    public var pinnedToInference = false {
        didSet { if pinnedToInference { train(false) } }
    }

    /// Training mode (dropout active) for this module and all descendants, except the subtrees
    /// pinned to inference.
    public final func train(_ on: Bool = true) {
        let on = on && !pinnedToInference
        isTraining = on
        for (_, child) in children() { child.train(on) }
    }

    /// Evaluation mode: dropout off.
    public final func eval() { train(false) }

    /// Stops gradients for parameters whose name matches; returns how many were frozen.
    @discardableResult
    public final func freeze(where predicate: (String) -> Bool = { _ in true }) -> Int {
        setRequiresGrad(false, where: predicate)
    }

    @discardableResult
    public final func unfreeze(where predicate: (String) -> Bool = { _ in true }) -> Int {
        setRequiresGrad(true, where: predicate)
    }

    /// Freezes every parameter under a dotted prefix (`vision_model.encoder.layers.0`).
    @discardableResult
    public final func freeze(prefix: String) -> Int { freeze { hasPathPrefix($0, prefix) } }
    @discardableResult
    public final func unfreeze(prefix: String) -> Int { unfreeze { hasPathPrefix($0, prefix) } }

    private final func setRequiresGrad(_ flag: Bool, where predicate: (String) -> Bool) -> Int {
        var n = 0
        for (name, t) in namedParameters() where predicate(name) {
            t.requiresGrad = flag
            n += 1
        }
        return n
    }

    // MARK: device and dtype

    /// Moves every parameter and buffer to `device`, in place.
    public final func to(_ device: Device) {
        withNoGrad {
            for (_, t) in namedParameters() where t.device != device { t.setData(t.to(device)) }
            for (_, b) in namedBuffers() where b.tensor.device != device { b.tensor.setData(b.tensor.to(device)) }
        }
    }

    /// Converts floating-point parameters and buffers to `dtype`, in place.
    public final func to(_ dtype: DType) {
        precondition(dtype.isFloatingPoint, "modules convert to floating-point types only")
        withNoGrad {
            for (_, t) in namedParameters() where t.dtype.isFloatingPoint && t.dtype != dtype { t.setData(t.to(dtype)) }
            for (_, b) in namedBuffers() where b.tensor.dtype.isFloatingPoint && b.tensor.dtype != dtype {
                b.tensor.setData(b.tensor.to(dtype))
            }
        }
    }
}

func join(_ prefix: String, _ key: String) -> String { prefix.isEmpty ? key : "\(prefix).\(key)" }

/// `a.b` is under `a` and `a.b`, not under `a.bc`.
func hasPathPrefix(_ name: String, _ prefix: String) -> Bool {
    prefix.isEmpty || name == prefix || name.hasPrefix(prefix.hasSuffix(".") ? prefix : prefix + ".")
}

/// `selfAttn` → `self_attn`, `layerNorm1` → `layer_norm1`, `fc1` → `fc1`, `qProj` → `q_proj`.
func snakeCase(_ name: String) -> String {
    var out = ""
    for ch in name {
        if ch.isUppercase {
            if !out.isEmpty { out.append("_") }
            out.append(Character(ch.lowercased()))
        } else {
            out.append(ch)
        }
    }
    return out
}
