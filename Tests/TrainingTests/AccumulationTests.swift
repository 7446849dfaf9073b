import Foundation
import Testing
@testable import Datasets
import Models
import NN
import Torch
@testable import Training

/// open_clip's --accum-freq as ContrastiveObjective runs it: k micro-batches, the earlier ones'
/// features cached as negatives, must give the gradients of one batch of the full size.
@Suite("Gradient accumulation")
struct AccumulationTests {
    /// A tiny CLIP without dropout, in float64 (the comparison then measures the method, not rounding).
    static func objective() throws -> ContrastiveObjective {
        var text = CLIPTextConfig()
        text.hiddenSize = 32; text.intermediateSize = 64; text.numHiddenLayers = 1; text.numAttentionHeads = 2; text.maxPositionEmbeddings = 24
        var vision = CLIPVisionConfig()
        vision.hiddenSize = 32; vision.intermediateSize = 64; vision.numHiddenLayers = 2; vision.numAttentionHeads = 2
        vision.imageSize = 16; vision.patchSize = 8
        let encoder = DualEncoder(kind: .clip, vision: CLIPVisionTransformer(vision), text: CLIPTextTransformer(text), projectionDim: 16)
        encoder.to(.float64)
        encoder.train()
        let tokenizer = try TensorTokenizer.openCLIP(mergesGz: "\(repositoryRoot)/.deps/assets/bpe_simple_vocab_16e6.txt.gz", contextLength: 24)
        return ContrastiveObjective(encoder: encoder, tokenizer: tokenizer, preprocessing: ImagePreprocessing(size: 16), tokenizerFolder: nil)
    }

    static func batch(_ pixels: Tensor, _ captions: [String]) -> Batch {
        Batch(pixels: pixels, teacherPixels: nil, captions: captions, tokenIds: nil, attentionMask: nil,
              labels: captions.map { _ in nil }, origins: captions, epoch: 0, position: 0)
    }

    /// Gradients of every trainable parameter (and of `extra`) after one forwardBackward.
    static func gradients(_ objective: ContrastiveObjective, _ micro: [Batch], extra: [(String, Tensor)] = []) throws -> (loss: Double, grads: [String: Tensor]) {
        let parameters = objective.model.trainableParameters() + extra
        for (_, p) in parameters { p.grad = nil }
        let totals = try objective.forwardBackward(micro)
        var grads: [String: Tensor] = [:]
        for (name, p) in parameters { grads[name] = p.grad?.clone() }
        return (totals["loss"]!, grads)
    }

    @Test(arguments: ["clip", "siglip"])
    func accumulatedMicroBatchesGiveTheFullBatchGradients(_ loss: String) throws {
        let objective = try Self.objective()
        var extra: [(String, Tensor)] = []
        if loss == "siglip" {
            let siglip = SigLIPLoss(biasInit: -2)
            objective.loss = .siglip(siglip)
            extra = [("loss.logit_bias", siglip.logitBias)]
        }
        let g = Generator(seed: 11)
        let pixels = Tensor.randn([16, 3, 16, 16], dtype: .float64, generator: g)
        let colours = ["red", "green", "blue", "yellow"], shapes = ["circle", "square", "star", "triangle"]
        let captions = (0..<16).map { "a \(colours[$0 % 4]) \(shapes[$0 / 4]) on a plain background" }
        let full = try Self.gradients(objective, [Self.batch(pixels, captions)], extra: extra)
        let micro = (0..<4).map { i in Self.batch(pixels[(i * 4)..<(i * 4 + 4)], Array(captions[(i * 4)..<(i * 4 + 4)])) }
        let accumulated = try Self.gradients(objective, micro, extra: extra)

        #expect(Swift.abs(full.loss - accumulated.loss) < 1e-9, "loss \(full.loss) vs \(accumulated.loss)")
        #expect(full.grads.count == objective.model.trainableParameters().count + extra.count)
        #expect(full.grads["logit_scale"] != nil && full.grads["vision_model.embeddings.patch_embedding.weight"] != nil)
        for (name, reference) in full.grads {
            let ours = try #require(accumulated.grads[name], "\(name): no gradient with accumulation")
            let difference = maxDifference(ours, reference)
            #expect(difference <= 1e-6, "\(name): accumulated gradient differs from the full batch's by \(difference) (full-batch max \(reference.abs().max().item(Double.self)))")
        }
        // Not vacuous: the gradients are far from zero.
        #expect(full.grads["text_model.embeddings.token_embedding.weight"]!.abs().max().item(Double.self) > 1e-4)
    }

    static func slice(_ b: Batch, _ r: Range<Int>) -> Batch {
        Batch(pixels: b.pixels[r], teacherPixels: b.teacherPixels.map { $0[r] }, captions: Array(b.captions[r]),
              tokenIds: nil, attentionMask: nil, labels: Array(b.labels[r]), origins: Array(b.origins[r]), epoch: b.epoch, position: b.position)
    }

    /// Distillation's terms are means over one micro-batch: accumulated, they must still weigh
    /// what they weigh in one batch of the full size (feature distillation and the contrastive
    /// loss decompose exactly; logit distillation is over each micro-batch's own similarities,
    /// so it is off here).
    @Test func accumulatedDistillationGivesTheFullBatchGradients() throws {
        let runs = temporaryFolder()
        let recipe = try studentRecipe(runs, name: "accumulate", steps: 1, extra: ["distill.logit_weight=0", "distill.contrastive_weight=0.5"])
        let plan = try RunBuilder.distillation(recipe, resolved: nil)
        let objective = try #require(plan.setup.objective as? DistillationObjective)
        objective.model.eval()   // the BERT student's dropout off: the same forward pass each time
        let batch = try #require(try plan.setup.train.epoch(0).next())
        let parameters = objective.model.trainableParameters() + (objective.trainingHeads?.trainableParameters() ?? [])
        #expect(parameters.contains { $0.name.hasPrefix("text.") || $0.name.hasPrefix("image.") }, "the projections are trained")
        func gradients(_ micro: [Batch]) throws -> (totals: [String: Double], grads: [String: Tensor]) {
            for (_, p) in parameters { p.grad = nil }
            let totals = try objective.forwardBackward(micro)
            return (totals, Dictionary(uniqueKeysWithValues: parameters.compactMap { p in p.tensor.grad.map { (p.name, $0.clone()) } }))
        }
        let full = try gradients([batch])   // fills the teacher cache: both runs see the same teacher embeddings
        let accumulated = try gradients([Self.slice(batch, 0..<8), Self.slice(batch, 8..<16)])
        #expect(full.totals["feature_distill_loss"]! > 0.1 && full.totals["contrastive_loss"]! > 0.1)
        #expect(Swift.abs(full.totals["contrastive_loss"]! - accumulated.totals["contrastive_loss"]!) < 1e-5)
        #expect(full.grads.count == parameters.count && accumulated.grads.count == parameters.count)
        for (name, reference) in full.grads {
            let difference = maxDifference(accumulated.grads[name]!, reference)
            let scale = Swift.max(1, reference.abs().max().item(Double.self))
            #expect(difference <= 1e-6 * scale, "\(name): accumulated gradient differs from the full batch's by \(difference) (max \(scale))")
        }
    }

    /// The same for text-only distillation (all-MiniLM-L6-v2 into a tiny BERT, feature term only).
    @Test func accumulatedTextDistillationGivesTheFullBatchGradients() throws {
        let folder = temporaryFolder()
        let sentences = try String(contentsOfFile: "\(repositoryRoot)/Data/sentences/train.jsonl", encoding: .utf8).split(separator: "\n")
        try sentences.prefix(16).joined(separator: "\n").write(toFile: "\(folder)/train.jsonl", atomically: true, encoding: .utf8)
        let minilm = "\(repositoryRoot)/.deps/assets/all-MiniLM-L6-v2"
        let json = """
        {
          "name": "text-accumulate", "seed": 1,
          "model": {"text": {"type": "bert", "tokenizer": "\(minilm)", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                             "intermediate_size": 32, "max_position_embeddings": 64, "pooling": "mean", "hidden_act": "gelu"}},
          "distill": {"teacher": "\(minilm)", "feature_weight": 1.0, "logit_weight": 0, "contrastive_weight": 0},
          "data": {"train": {"manifest": "\(folder)/train.jsonl", "image_column": null}, "batch_size": 16, "threads": 1},
          "checkpoint": {"directory": "\(folder)/runs"}, "max_steps": 1
        }
        """
        let plan = try RunBuilder.distillation(try Recipe.decode(Data(json.utf8), file: "test", defaultName: "t"), resolved: nil)
        let objective = try #require(plan.setup.objective as? TextDistillationObjective)
        objective.model.eval()   // no dropout
        let batch = try #require(try plan.setup.train.epoch(0).next())
        let parameters = objective.model.trainableParameters() + (objective.trainingHeads?.trainableParameters() ?? [])
        #expect(objective.trainingHeads != nil, "a 16-wide student needs the learned projection")
        func gradients(_ micro: [Batch]) throws -> [String: Tensor] {
            for (_, p) in parameters { p.grad = nil }
            _ = try objective.forwardBackward(micro)
            return Dictionary(uniqueKeysWithValues: parameters.compactMap { p in p.tensor.grad.map { (p.name, $0.clone()) } })
        }
        let full = try gradients([batch])
        let accumulated = try gradients((0..<4).map { Self.slice(batch, ($0 * 4)..<($0 * 4 + 4)) })
        #expect(!full.isEmpty && full.count == accumulated.count)
        for (name, reference) in full {
            let difference = maxDifference(accumulated[name]!, reference)
            let scale = Swift.max(1, reference.abs().max().item(Double.self))
            #expect(difference <= 1e-6 * scale, "\(name): accumulated gradient differs from the full batch's by \(difference) (max \(scale))")
        }
    }
}
