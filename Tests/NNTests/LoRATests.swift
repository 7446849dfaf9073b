import Testing
import Torch
import TestSupport
@testable import NN

/// LoRA in `Linear`: PEFT's initialisation, scaling, forward and merge.
@Suite("LoRA layers")
struct LoRATests {
    /// A is Kaiming-uniform with a = √5 (bound √(6 / ((1 + 5) · fan_in)) = 1 / √in), B is zeros,
    /// so a fresh adapter changes nothing; the keys are PEFT's without the adapter name.
    @Test func initialisationIsPEFTs() {
        let layer = Linear(64, 24, generator: Generator(seed: 1))
        let x = Tensor.randn([5, 64], generator: Generator(seed: 2))
        let before = withNoGrad { layer(x) }
        layer.addAdapter(LoRASettings(rank: 8, alpha: 16), generator: Generator(seed: 3))
        let a = layer.loraA!.weight, b = layer.loraB!.weight
        #expect(a.shape == [8, 64] && b.shape == [24, 8])
        let bound = 1 / 64.0.squareRoot()
        let largest = a.abs().max().item(Double.self)
        #expect(largest <= bound && largest > 0.9 * bound, "A's largest |value| \(largest), bound \(bound)")
        // Uniform on [-bound, bound]: variance bound² / 3.
        let variance = (a.to(.float64) * a.to(.float64)).mean().item(Double.self)
        #expect(abs(variance / (bound * bound / 3) - 1) < 0.15, "A's variance \(variance)")
        #expect(b.abs().max().item(Double.self) == 0)
        #expect(a.requiresGrad && b.requiresGrad)
        #expect(withNoGrad { layer(x) }.equal(before))
        #expect(layer.namedParameters().map(\.name) == ["weight", "bias", "lora_A.weight", "lora_B.weight"])
        #expect(Module.isAdapterParameter("q_proj.lora_A.weight") && !Module.isAdapterParameter("q_proj.weight"))
    }

    @Test func scalingIsAlphaOverRankOrOverItsRootWithRSLoRA() {
        #expect(LoRASettings(rank: 4, alpha: 8).scaling == 2)
        #expect(LoRASettings(rank: 4, alpha: 8, rsLoRA: true).scaling == 4)
        #expect(LoRASettings(rank: 16, alpha: 8, rsLoRA: true).scaling == 2)
        let layer = Linear(6, 3)
        layer.addAdapter(LoRASettings(rank: 9, alpha: 6, rsLoRA: true))
        #expect(layer.loraScaling == 2)
    }

    /// base(x) + B(A(x)) · scaling, and merging folds exactly that into W.
    @Test func forwardAndMergeComputeTheSame() {
        let g = Generator(seed: 4)
        let layer = Linear(16, 12, generator: g)
        layer.addAdapter(LoRASettings(rank: 3, alpha: 5, dropout: 0.3), generator: g)
        withNoGrad { layer.loraB!.weight.copy_(Tensor.randn([12, 3], generator: g)) }
        let x = Tensor.randn([7, 16], generator: g)
        layer.eval()   // dropout off, as in inference
        let expected = withNoGrad {
            F.linear(x, weight: layer.weight, bias: layer.bias) + x.matmul(layer.loraA!.weight.mT).matmul(layer.loraB!.weight.mT) * (5.0 / 3.0)
        }
        let adapted = withNoGrad { layer(x) }
        #expect(maxDifference(adapted, expected) < 1e-6)
        let weight = layer.weight
        layer.mergeAdapter()
        #expect(!layer.hasAdapter && layer.namedParameters().map(\.name) == ["weight", "bias"])
        #expect(layer.weight === weight)   // merged in place: optimizers and recorders keep their tensor
        #expect(maxDifference(withNoGrad { layer(x) }, adapted) < 1e-5)
    }

    /// The adapter's dropout acts on its input only, in training mode.
    @Test func dropoutActsOnTheAdapterInputInTraining() {
        let g = Generator(seed: 5)
        let layer = Linear(32, 8, generator: g)
        layer.addAdapter(LoRASettings(rank: 2, alpha: 2, dropout: 0.5), generator: g)
        let x = Tensor.randn([4, 32], generator: g)
        let base = withNoGrad { F.linear(x, weight: layer.weight, bias: layer.bias) }
        layer.train()
        #expect(withNoGrad { layer(x) }.equal(base))   // B is zero: whatever dropout does, nothing changes
        #expect(layer.loraDropout?.p == 0.5 && layer.loraDropout?.isTraining == true)
    }

    /// Merging every adapter of a model, found by path.
    @Test func modelsMergeAllTheirAdapters() {
        let block = TransformerEncoderLayer(dimension: 8, heads: 2, hidden: 16, activation: .gelu, generator: Generator(seed: 6))
        block.selfAttn.qProj.addAdapter(LoRASettings(rank: 2), generator: Generator(seed: 7))
        block.mlp.fc1.addAdapter(LoRASettings(rank: 2), generator: Generator(seed: 8))
        #expect(block.adaptedLayers().map(\.path) == ["self_attn.q_proj", "mlp.fc1"])
        #expect(block.namedParameters().map(\.name).filter(Module.isAdapterParameter)
            == ["self_attn.q_proj.lora_A.weight", "self_attn.q_proj.lora_B.weight", "mlp.fc1.lora_A.weight", "mlp.fc1.lora_B.weight"])
        #expect(block.mergeAdapters() == 2 && block.adaptedLayers().isEmpty)
    }
}
