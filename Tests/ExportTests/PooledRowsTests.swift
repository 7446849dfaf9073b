import Testing
@testable import Export
import Models
import NN
import Torch

/// Which ops the export computes for the pooled token alone, on recorded towers (onnxruntime's
/// agreement with our forward is `ExportTests.onnxruntimeMatchesOurForward`).
@Suite("Pooled rows")
struct PooledRowsTests {
    /// The modules of the linear layers computed for the pooled token only (nil: nothing is).
    private func pooledLinears(_ model: Module, _ forward: () -> Tensor) -> Set<String>? {
        model.eval()
        let recorder = OpRecorder()
        _ = withNoGrad { recorder.record(forward) }
        var names: [ObjectIdentifier: String] = [:]
        for (key, tensor) in model.namedParameters() { names[ObjectIdentifier(tensor)] = key }
        guard let pooled = PooledRows(recorder.ops, traceBatch: 5) else { return nil }
        return Set(pooled.ops.keys.compactMap { i in
            let op = recorder.ops[i]
            return op.name == .linear ? names[ObjectIdentifier(op.inputs[1])].map(GraphLowering.modulePath) : nil
        })
    }

    /// Pre-LN CLIP towers: the last layer's query, output projection and MLP; keys, values and
    /// every earlier layer see all tokens.
    @Test func clipTowersComputeOnlyTheLastLayerForThePooledToken() {
        let vision = ExportFixtures.vision()
        let pixels = Tensor.randn([5, 3, 32, 32], generator: Generator(seed: 1))
        let last: Set<String> = ["encoder.layers.1.self_attn.q_proj", "encoder.layers.1.self_attn.out_proj",
                                 "encoder.layers.1.mlp.fc1", "encoder.layers.1.mlp.fc2"]
        #expect(pooledLinears(vision) { vision.pooled(pixels) } == last)

        // Pooled at each text's end token: a position per input.
        var c = CLIPTextConfig()
        c.hiddenSize = 32; c.numHiddenLayers = 2; c.numAttentionHeads = 2; c.intermediateSize = 64; c.maxPositionEmbeddings = 16
        let text = CLIPTextTransformer(c)
        let ids = Tensor.randint(0, 1000, [5, 11], generator: Generator(seed: 2))
        #expect(pooledLinears(text) { text.pooled(ids: ids, attentionMask: nil) } == last)
    }

    /// Post-LN BERT pooled at [CLS] (with a padding mask); mean pooling reads every token.
    @Test func bertPooledAtCLSComputesItsLastLayerForThatTokenOnly() {
        var c = BertConfig()
        (c.vocabSize, c.hiddenSize, c.intermediateSize, c.numHiddenLayers, c.numAttentionHeads, c.maxPositionEmbeddings) = (40, 16, 32, 2, 2, 16)
        let ids = Tensor.randint(0, 40, [5, 11], generator: Generator(seed: 3))
        var m = [Int64](repeating: 1, count: 55)
        for j in 8..<11 { m[j] = 0 }
        let mask = Tensor(m, shape: [5, 11])
        let last: Set<String> = ["encoder.layer.1.attention.self.query", "encoder.layer.1.attention.output.dense",
                                 "encoder.layer.1.intermediate.dense", "encoder.layer.1.output.dense"]
        for pooling in [TextPooling.pooler, .cls] {
            let bert = BertModel(c, pooling: pooling, withPooler: true)
            #expect(pooledLinears(bert) { bert.pooled(ids: ids, attentionMask: mask) } == last, "\(pooling)")
        }
        let mean = BertModel(c, pooling: .mean, withPooler: false)
        #expect(pooledLinears(mean) { mean.pooled(ids: ids, attentionMask: mask) } == nil)
    }

    /// One tensor read as queries (its rows) and as keys and values (whole) is computed whole.
    @Test func aTensorReadBothWaysIsComputedWhole() {
        let linear = Linear(8, 8)
        let x = Tensor.randn([5, 2, 7, 8], generator: Generator(seed: 4))
        #expect(pooledLinears(linear) { let h = linear(x); return F.scaledDotProductAttention(h, h, h).select(dim: 2, index: 0) } == nil)
    }
}
