import Testing
import NN
import Torch
import Models
import TestSupport

/// Every parameter's gradient (nil when frozen) and the input's, from one forward and backward
/// in train mode under `seed`, the output weighted by a fixed random tensor.
private func gradients(_ model: Module, checkpointing: Bool, seed: UInt64, input: Tensor? = nil,
                       _ forward: () -> Tensor) -> [String: Tensor?] {
    model.train()
    #expect(model.setGradientCheckpointing(checkpointing) > 0, "no layer stack")
    for (_, p) in model.namedParameters() { p.grad = nil }
    input?.grad = nil
    Torch.manualSeed(seed)
    let out = forward()
    (out * Tensor.randn(out.shape, generator: Generator(seed: 99))).sum().backward()
    var result: [String: Tensor?] = Dictionary(uniqueKeysWithValues: model.namedParameters().map { ($0.name, $0.tensor.grad) })
    if let input { result["input"] = input.grad }
    model.setGradientCheckpointing(false)
    return result
}

/// Expects the same gradients (same ones missing) within 1e-6; returns the largest difference.
@discardableResult
private func expectSame(_ a: [String: Tensor?], _ b: [String: Tensor?], _ label: String) -> Double {
    #expect(a.keys.sorted() == b.keys.sorted(), "\(label): other parameters")
    var worst = 0.0, worstName = ""
    for (name, x) in a {
        switch (x, b[name] ?? nil) {
        case (nil, nil): continue
        case (let x?, let y?):
            let difference = maxDifference(x, y)
            if difference > worst { (worst, worstName) = (difference, name) }
        default: Issue.record("\(label): \(name) has a gradient in one run only")
        }
    }
    #expect(worst <= 1e-6, "\(label): the gradients of \(worstName) differ by \(worst)")
    return worst
}

private func largestDifference(_ a: [String: Tensor?], _ b: [String: Tensor?]) -> Double {
    a.compactMap { name, x in x.flatMap { x in (b[name] ?? nil).map { maxDifference(x, $0) } } }.max() ?? 0
}

/// Token ids with an end token and padding after it, and the matching mask.
private func tokens(vocabulary: Int, end: Int, lengths: [Int], width: Int) -> (ids: Tensor, mask: Tensor) {
    var ids: [Int64] = [], mask: [Int64] = []
    for (row, length) in lengths.enumerated() {
        for i in 0..<width {
            ids.append(i < length - 1 ? Int64(1 + (row * 7 + i * 3) % (vocabulary - 2)) : i == length - 1 ? Int64(end) : 0)
            mask.append(i < length ? 1 : 0)
        }
    }
    return (Tensor(ids, shape: [lengths.count, width]), Tensor(mask, shape: [lengths.count, width]))
}

private func visionTower() -> CLIPVisionTransformer {
    var c = CLIPVisionConfig()
    (c.hiddenSize, c.intermediateSize, c.numHiddenLayers, c.numAttentionHeads) = (32, 64, 3, 2)
    (c.imageSize, c.patchSize, c.attentionDropout) = (16, 4, 0.2)
    Torch.manualSeed(1)
    return CLIPVisionTransformer(c)
}

private func textTower() -> CLIPTextTransformer {
    var c = CLIPTextConfig()
    (c.vocabSize, c.hiddenSize, c.intermediateSize, c.numHiddenLayers, c.numAttentionHeads) = (50, 32, 64, 3, 2)
    (c.maxPositionEmbeddings, c.eosTokenId, c.attentionDropout) = (12, 49, 0.2)
    Torch.manualSeed(2)
    return CLIPTextTransformer(c)
}

private func tinyBert() -> BertModel {
    var c = BertConfig()   // dropout 0.1 on hidden states and attention probabilities, as transformers'
    (c.vocabSize, c.hiddenSize, c.intermediateSize, c.numHiddenLayers, c.numAttentionHeads, c.maxPositionEmbeddings) = (50, 32, 64, 3, 2, 16)
    Torch.manualSeed(3)
    return BertModel(c, pooling: .mean, withPooler: false)
}

/// Dropout draws from the default generator, which tests running in parallel share: each test
/// runs in a child process.
/// A text tower's gradients on padded captions, with and without checkpointing, under the same
/// dropout seed; another seed must change them (dropout really draws, so restoring the RNG matters).
private func expectCheckpointedEqualsUnchecked(_ tower: any TextTower, lengths: [Int], width: Int, seed: UInt64, _ label: String) {
    let (ids, mask) = tokens(vocabulary: 50, end: 49, lengths: lengths, width: width)
    let pooled = { tower.pooled(ids: ids, attentionMask: mask) }
    let plain = gradients(tower, checkpointing: false, seed: seed, pooled)
    expectSame(plain, gradients(tower, checkpointing: true, seed: seed, pooled), label)
    #expect(largestDifference(plain, gradients(tower, checkpointing: false, seed: seed + 1, pooled)) > 1e-4, "dropout drew nothing")
}

@Suite("Gradient checkpointing: the towers' gradients are the unchecked ones")
struct GradientCheckpointingTests {
    @Test func visionTowerWithDropout() async {
        await #expect(processExitsWith: .success) {
            let tower = visionTower()
            let pixels = Tensor.randn([4, 3, 16, 16], generator: Generator(seed: 4)).requiringGrad()
            let plain = gradients(tower, checkpointing: false, seed: 10, input: pixels) { tower.pooled(pixels) }
            let checked = gradients(tower, checkpointing: true, seed: 10, input: pixels) { tower.pooled(pixels) }
            expectSame(plain, checked, "vision")
            #expect(plain["input"]! != nil && plain["encoder.layers.0.self_attn.q_proj.weight"]! != nil, "gradients missing")
            // Dropout is on: another seed gives other gradients, so the recomputation must redraw the same masks.
            #expect(largestDifference(plain, gradients(tower, checkpointing: false, seed: 11, input: pixels) { tower.pooled(pixels) }) > 1e-4, "dropout drew nothing")
        }
    }

    @Test func textTowerWithDropoutAndPadding() async {
        await #expect(processExitsWith: .success) {
            expectCheckpointedEqualsUnchecked(textTower(), lengths: [12, 5, 8], width: 12, seed: 20, "clip text")
        }
    }

    @Test func bertWithDropoutAndPadding() async {
        await #expect(processExitsWith: .success) {
            expectCheckpointedEqualsUnchecked(tinyBert(), lengths: [16, 6, 11], width: 16, seed: 30, "bert")
        }
    }

    /// LiT: the embeddings and first layers frozen. Their layers are not recomputed, and the first
    /// trainable layer, whose input needs no gradient, still trains.
    @Test func lockedPrefixes() async {
        await #expect(processExitsWith: .success) {
            let bert = tinyBert()
            bert.freeze()
            bert.unfreeze(prefix: "encoder.layer.2")
            let (ids, mask) = tokens(vocabulary: 50, end: 49, lengths: [16, 6, 11], width: 16)
            let plain = gradients(bert, checkpointing: false, seed: 40) { bert.pooled(ids: ids, attentionMask: mask) }
            let checked = gradients(bert, checkpointing: true, seed: 40) { bert.pooled(ids: ids, attentionMask: mask) }
            expectSame(plain, checked, "bert, locked prefix")
            #expect(checked["encoder.layer.2.attention.self.query.weight"]! != nil, "the first trained layer has no gradient")
            #expect(checked["encoder.layer.1.attention.self.query.weight"]! == nil && checked["embeddings.word_embeddings.weight"]! == nil, "a locked parameter has a gradient")

            let tower = visionTower()
            tower.freeze()
            tower.unfreeze { $0.hasPrefix("encoder.layers.1.") || $0.hasPrefix("encoder.layers.2.") || $0.hasPrefix("post_layernorm") }
            let pixels = Tensor.randn([4, 3, 16, 16], generator: Generator(seed: 4))
            let visionPlain = gradients(tower, checkpointing: false, seed: 41) { tower.pooled(pixels) }
            let visionChecked = gradients(tower, checkpointing: true, seed: 41) { tower.pooled(pixels) }
            expectSame(visionPlain, visionChecked, "vision, locked prefix")
            #expect(visionChecked["encoder.layers.1.mlp.fc1.weight"]! != nil && visionChecked["encoder.layers.0.mlp.fc1.weight"]! == nil, "vision: wrong parameters trained")
        }
    }
}
