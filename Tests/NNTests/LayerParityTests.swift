import Testing
import Torch
@testable import NN

/// Layers against torch.nn and transformers' CLIPEncoderLayer (fixture from Scripts/fixtures/nn_fixtures.py).
@Suite("Layers match torch.nn and transformers")
struct LayerParityTests {
    let f: [String: Tensor]
    init() throws { f = try SafeTensors.load(Fixture.path("layers", "safetensors")) }

    @Test func linearLayerNormConvEmbedding() throws {
        let linear = Linear(16, 8)
        try linear.load(["weight": f["linear.weight"]!, "bias": f["linear.bias"]!])
        #expect(maxDifference(linear(f["linear.input"]!), f["linear.output"]!) < 1e-6)

        let norm = LayerNorm(16)
        try norm.load(["weight": f["norm.weight"]!, "bias": f["norm.bias"]!])
        #expect(maxDifference(norm(f["linear.input"]!), f["norm.output"]!) < 1e-6)

        let conv = Conv2d(3, 4, kernelSize: (3, 3), stride: (2, 2), padding: (1, 1), bias: false)
        try conv.load(["weight": f["conv.weight"]!])
        #expect(maxDifference(conv(f["conv.input"]!), f["conv.output"]!) < 1e-6)

        let embedding = Embedding(10, 6)
        try embedding.load(["weight": f["embedding.weight"]!])
        #expect(embedding(f["embedding.input"]!).equal(f["embedding.output"]!))
    }

    func clipLayer() throws -> TransformerEncoderLayer {
        let layer = TransformerEncoderLayer(dimension: 32, heads: 4, hidden: 64, activation: .quickGELU)
        let report = try layer.load(f, strict: false) { key in
            key.hasPrefix("clip_layer.") ? String(key.dropFirst("clip_layer.".count)) : nil
        }
        // Only the fixture's inputs and outputs are left over.
        #expect(report.missing.isEmpty)
        #expect(report.unexpected.allSatisfy { $0 == "input" || $0 == "keep" || $0.hasPrefix("output_") })
        layer.eval()
        return layer
    }

    @Test func clipEncoderLayerWithoutMask() throws {
        let layer = try clipLayer()
        #expect(maxDifference(layer(f["clip_layer.input"]!), f["clip_layer.output_plain"]!) < 1e-5)
    }

    @Test func clipEncoderLayerCausal() throws {
        let layer = try clipLayer()
        let out = layer(f["clip_layer.input"]!, mask: AttentionMask(causal: true))
        #expect(maxDifference(out, f["clip_layer.output_causal"]!) < 1e-5)
    }

    @Test func clipEncoderLayerKeyPadding() throws {
        let layer = try clipLayer()
        let keep = f["clip_layer.keep"]!
        let padded = layer(f["clip_layer.input"]!, mask: AttentionMask(keyPadding: keep))
        #expect(maxDifference(padded, f["clip_layer.output_padded"]!) < 1e-5)
        let both = layer(f["clip_layer.input"]!, mask: AttentionMask(causal: true, keyPadding: keep))
        #expect(maxDifference(both, f["clip_layer.output_causal_padded"]!) < 1e-5)
    }

    @Test func postLayerNormBlockComposesAsBERT() {
        let block = TransformerEncoderLayer(dimension: 8, heads: 2, hidden: 16, activation: .gelu, normFirst: false)
        block.eval()
        let x = Tensor.randn([2, 3, 8], generator: Generator(seed: 64))
        let h = block.layerNorm1(x + block.selfAttn(x))
        let expected = block.layerNorm2(h + block.mlp(h))
        #expect(maxDifference(block(x), expected) < 1e-6)
    }

    @Test func activationsByHuggingFaceName() {
        #expect(Activation(huggingFaceName: "quick_gelu") == .quickGELU)
        #expect(Activation(huggingFaceName: "gelu_new") == .geluTanh)
        #expect(Activation(huggingFaceName: "gelu") == .gelu)
        #expect(Activation(huggingFaceName: "swish") == nil)
        let x = Tensor([1.0])
        #expect(Swift.abs(Activation.quickGELU(x).item(Double.self) - 1 / (1 + Foundation.exp(-1.702))) < 1e-12)
    }
}

import Foundation
