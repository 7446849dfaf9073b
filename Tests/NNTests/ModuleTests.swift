import Testing
import Torch
@testable import NN

/// A model shaped like a small slice of Hugging Face's CLIP text model.
final class TinyEncoder: Module {
    let tokenEmbedding = Embedding(10, 8)
    let layers = [TransformerEncoderLayer(dimension: 8, heads: 2, hidden: 16, activation: .quickGELU),
                  TransformerEncoderLayer(dimension: 8, heads: 2, hidden: 16, activation: .quickGELU)]
    let finalLayerNorm = LayerNorm(8)
    let logitScale = Tensor(scalar: Float(2.6592)).requiringGrad()
    let positionIds = Buffer(Tensor.arange(0, 5).unsqueeze(0), persistent: false)
    let projection: Linear? = nil
}

/// BERT spells some keys in ways snake_case cannot produce.
final class BertStyleOutput: Module {
    let dense = Linear(4, 4)
    let layerNorm = LayerNorm(4)
    override class var keyOverrides: [String: String] { ["layerNorm": "LayerNorm"] }
}

@Suite("Module: names, modes, freezing")
struct ModuleTests {
    @Test func namesFollowHuggingFaceLayout() {
        let model = TinyEncoder()
        let names = model.namedParameters().map(\.name)
        #expect(names.first == "token_embedding.weight")
        #expect(names.contains("layers.0.self_attn.q_proj.weight"))
        #expect(names.contains("layers.1.mlp.fc2.bias"))
        #expect(names.contains("layers.1.layer_norm2.weight"))
        #expect(names.contains("final_layer_norm.bias"))
        #expect(names.last == "logit_scale")
        #expect(names.count == 1 + 2 * 16 + 2 + 1)
        #expect(model.namedBuffers().map(\.name) == ["position_ids"])
        #expect(!model.stateDict().contains { $0.name == "position_ids" })   // not persistent
        #expect(BertStyleOutput().namedParameters().map(\.name) == ["dense.weight", "dense.bias", "LayerNorm.weight", "LayerNorm.bias"])
        #expect(snakeCase("preLayrnorm") == "pre_layrnorm" && snakeCase("layerNorm1") == "layer_norm1" && snakeCase("fc1") == "fc1")
    }

    @Test func countsFreezingAndUnfreezing() {
        let model = TinyEncoder()
        let perLayer = 4 * (8 * 8 + 8) + 2 * (2 * 8) + (8 * 16 + 16) + (16 * 8 + 8)
        #expect(model.parameterCount == 10 * 8 + 2 * perLayer + 16 + 1)
        #expect(model.trainableParameterCount == model.parameterCount)
        #expect(model.freeze(prefix: "layers.0") == 16)
        #expect(model.trainableParameterCount == model.parameterCount - perLayer)
        #expect(model.freeze(prefix: "layers.1.mlp.fc") == 0)   // prefixes are whole path segments
        model.freeze()
        model.unfreeze { $0.hasPrefix("layers.1.") || $0 == "logit_scale" }
        #expect(model.trainableParameters().map(\.name).allSatisfy { $0.hasPrefix("layers.1.") || $0 == "logit_scale" })
        #expect(model.trainableParameterCount == perLayer + 1)
    }

    @Test func trainAndEvalReachEveryModule() {
        let model = TinyEncoder()
        model.eval()
        #expect(model.namedModules().allSatisfy { !$0.module.isTraining })
        model.train()
        #expect(model.layers[1].selfAttn.qProj.isTraining)
        // Dropout is active only in training mode.
        let dropout = Dropout(0.5)
        let x = Tensor.ones([1000])
        #expect(dropout(x).eq(0.0).any().item(Bool.self))
        dropout.eval()
        #expect(dropout(x).equal(x))
    }

    @Test func dtypeConversionKeepsParameterIdentity() {
        let model = TinyEncoder()
        let weight = model.layers[0].mlp.fc1.weight
        model.to(.float64)
        #expect(weight.dtype == .float64)
        #expect(model.layers[0].mlp.fc1.weight === weight)
        #expect(weight.requiresGrad)
        #expect(model.positionIds.tensor.dtype == .int64)   // integer buffers stay
        model.to(.cpu)
    }
}

@Suite("Initialisers")
struct InitTests {
    @Test func seededAndWithinBounds() {
        let a = Tensor.empty([256, 64]), b = Tensor.empty([256, 64])
        Init.kaimingUniform(a, a: 5.0.squareRoot(), generator: Generator(seed: 3))
        Init.kaimingUniform(b, a: 5.0.squareRoot(), generator: Generator(seed: 3))
        #expect(a.equal(b))
        #expect(a.abs().max().item(Double.self) <= 1 / 8.0)
        let x = Tensor.empty([100, 100])
        Init.xavierUniform(x)
        #expect(x.abs().max().item(Double.self) <= (6.0 / 200).squareRoot())
        let t = Tensor.empty([20_000])
        Init.truncatedNormal(t, mean: 0.5, std: 1, a: -1, b: 2, generator: Generator(seed: 1))
        #expect(t.min().item(Double.self) >= -1 && t.max().item(Double.self) <= 2)
        #expect(Swift.abs(t.mean().item(Double.self) - 0.5) < 0.03)
        let n = Tensor.empty([20_000])
        Init.normal(n, std: 0.02)
        #expect(Swift.abs(n.std().item(Double.self) - 0.02) < 0.001)
        Init.kaimingNormal(x)
        #expect(Swift.abs(x.std().item(Double.self) - (2.0 / 100).squareRoot()) < 0.01)
        Init.ones(n)
        #expect(n.sum().item(Double.self) == 20_000)
        Init.zeros(n)
        #expect(n.sum().item(Double.self) == 0)
    }
}
