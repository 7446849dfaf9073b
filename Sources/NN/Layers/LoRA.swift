import Foundation
import Torch

/// The settings of a LoRA adapter that change what it computes (PEFT's `LoraConfig` fields `r`,
/// `lora_alpha`, `lora_dropout`, `use_rslora`).
public struct LoRASettings: Sendable, Equatable {
    public var rank: Int
    public var alpha: Double
    public var dropout: Double
    /// Rank-stabilised LoRA: scaling alpha / √r instead of alpha / r.
    public var rsLoRA: Bool

    public init(rank: Int = 8, alpha: Double = 8, dropout: Double = 0, rsLoRA: Bool = false) {
        self.rank = rank
        self.alpha = alpha
        self.dropout = dropout
        self.rsLoRA = rsLoRA
    }

    /// What the adapter's output is multiplied by.
    public var scaling: Double { rsLoRA ? alpha / Double(rank).squareRoot() : alpha / Double(rank) }
}

extension Linear {
    public var hasAdapter: Bool { loraA != nil }

    /// Adds a LoRA adapter as PEFT initialises it: A [r, in] Kaiming-uniform with a = √5 (torch's
    /// Linear default), B [out, r] zeros, so the layer computes what it did before until B
    /// trains. A and B are trainable; the layer's own weight is left as it is (callers freeze it).
    public func addAdapter(_ settings: LoRASettings, generator: Generator? = nil) {
        precondition(!hasAdapter, "this layer already has an adapter")
        precondition(settings.rank >= 1, "LoRA rank must be ≥ 1, got \(settings.rank)")
        let a = Linear(inFeatures, settings.rank, bias: false, dtype: weight.dtype, generator: generator)
        let b = Linear(weight: Tensor.zeros([outFeatures, settings.rank], dtype: weight.dtype).requiringGrad(), bias: nil)
        a.to(weight.device)
        b.to(weight.device)
        loraA = a
        loraB = b
        loraDropout = Dropout(settings.dropout)
        loraScaling = settings.scaling
    }

    /// Folds the adapter into the weight, as PEFT's `merge`: W += (B·A) · scaling (the same
    /// operations, so the same rounding), then removes it.
    public func mergeAdapter() {
        guard let loraA, let loraB else { return }
        withNoGrad { weight.add_(loraB.weight.matmul(loraA.weight) * loraScaling) }
        removeAdapter()
    }

    /// Drops the adapter without merging it.
    public func removeAdapter() {
        loraA = nil
        loraB = nil
        loraDropout = nil
        loraScaling = 0
    }
}

extension Module {
    /// The `Linear` layers under this module that carry an adapter, by path.
    public func adaptedLayers() -> [(path: String, layer: Linear)] {
        namedModules().compactMap { path, module in
            guard let linear = module as? Linear, linear.hasAdapter else { return nil }
            return (path, linear)
        }
    }

    /// Merges every adapter under this module into its layer's weight; returns how many.
    @discardableResult
    public func mergeAdapters() -> Int {
        let layers = adaptedLayers()
        for (_, layer) in layers { layer.mergeAdapter() }
        return layers.count
    }

    /// Whether a parameter name belongs to a LoRA adapter (`….lora_A.weight`, `….lora_B.weight`).
    public static func isAdapterParameter(_ name: String) -> Bool {
        name.hasSuffix(".lora_A.weight") || name.hasSuffix(".lora_B.weight")
    }
}
