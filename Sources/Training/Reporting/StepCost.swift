import Foundation
import Models
import NN
import Torch

/// What one training step will cost, estimated from the model's configuration before the first
/// step, so that a run too big for the machine says so at once instead of sitting silent
/// (`image_size: 2048` on a small machine took minutes a step with no output). Transformer
/// arithmetic: per layer and token 2·(4d² + 2dm) FLOPs for the projections and MLP plus 4·T·d
/// for attention; a backward pass doubles a trained part's forward; activations kept for the
/// backward pass ≈ 4 bytes × T × (10d + 2m) + 8 bytes × heads × T² per trained layer; with
/// gradient checkpointing, 4 bytes × T × d per trained layer (its input) plus one layer's worth,
/// for one more forward pass of the trained layers.
public struct StepCost: Sendable {
    /// Floating-point operations of one optimizer step (forward and backward).
    public var flops: Double
    /// Bytes of activations kept for the backward pass, plus weights, gradients and AdamW moments.
    public var bytes: Double

    /// Typical caption length in tokens (captions are padded to the longest in the batch).
    static let typicalCaptionTokens = 32

    /// The estimate for a dual encoder at `samplesPerStep`; nil for other models.
    public static func estimate(_ model: Module, samplesPerStep: Int) -> StepCost? {
        guard let encoder = model as? DualEncoder else { return nil }
        var cost = StepCost(flops: 0, bytes: 0)
        if let vision = encoder.visionModel as? CLIPVisionTransformer {
            let c = vision.config
            let patches = c.patchesPerSide * c.patchesPerSide
            cost.add(tower: vision, tokens: patches + 1, width: c.hiddenSize, mlp: c.intermediateSize, heads: c.numAttentionHeads,
                     layers: c.numHiddenLayers, samples: samplesPerStep, extraForwardFlops: 2.0 * Double(patches * 3 * c.patchSize * c.patchSize * c.hiddenSize))
        }
        if let text = encoder.textModel as? CLIPTextTransformer {
            let c = text.config
            cost.add(tower: text, tokens: min(typicalCaptionTokens, c.maxPositionEmbeddings), width: c.hiddenSize, mlp: c.intermediateSize,
                     heads: c.numAttentionHeads, layers: c.numHiddenLayers, samples: samplesPerStep)
        } else if let bert = encoder.textModel as? BertModel {
            let c = bert.config
            cost.add(tower: bert, tokens: min(typicalCaptionTokens, c.maxPositionEmbeddings), width: c.hiddenSize, mlp: c.intermediateSize,
                     heads: c.numAttentionHeads, layers: c.numHiddenLayers, samples: samplesPerStep)
        }
        // Weights, gradients and AdamW's two moments of what trains; the rest once.
        cost.bytes += 4 * Double(encoder.parameterCount) + 12 * Double(encoder.trainableParameterCount)
        return cost
    }

    private mutating func add(tower: Module, tokens: Int, width: Int, mlp: Int, heads: Int, layers: Int, samples: Int, extraForwardFlops: Double = 0) {
        let t = Double(tokens), d = Double(width), m = Double(mlp), n = Double(samples)
        let perLayerForward = 2 * t * (4 * d * d + 2 * d * m) + 4 * t * t * d
        let trainedShare = tower.parameterCount == 0 ? 0 : Double(tower.trainableParameterCount) / Double(tower.parameterCount)
        let forward = n * (Double(layers) * perLayerForward + extraForwardFlops)
        let recomputed = tower.checkpointsLayers ? trainedShare : 0
        flops += forward * (1 + 2 * trainedShare + recomputed)
        let perLayerActivations = 4 * t * (10 * d + 2 * m) + 8 * Double(heads) * t * t
        let trainedLayers = Double(layers) * trainedShare
        bytes += n * (recomputed > 0 ? trainedLayers * 4 * t * d + perLayerActivations : trainedLayers * perLayerActivations)
    }

    /// The device's matmul speed (on the CPU at the current thread count), from a short probe
    /// (a few ms; reading the sum back waits for the device).
    public static func measuredGigaflops(on device: Device = .cpu) -> Double {
        let n = device == .cpu ? 384 : 4096
        let a = Tensor.randn([n, n], generator: Generator(seed: 1)).on(device), b = Tensor.randn([n, n], generator: Generator(seed: 2)).on(device)
        _ = a.matmul(b).sum().item(Double.self)   // warm-up
        let started = Date()
        var repetitions = 0
        while repetitions < 3 || Date().timeIntervalSince(started) < 0.02 {
            _ = a.matmul(b).sum().item(Double.self)
            repetitions += 1
        }
        return 2 * pow(Double(n), 3) * Double(repetitions) / Date().timeIntervalSince(started) / 1e9
    }

    /// Memory a step can use on `device`: the GPU's total memory, or what the system can give
    /// this process now (MemAvailable), in bytes; nil when unknown.
    public static func availableMemory(on device: Device = .cpu) -> Double? {
        if case .cuda(let index) = device {
            return Torch.cudaDevices().first { $0.index == index }.map { Double($0.totalMemory) }
        }
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
              let kilobytes = line.split(separator: " ").dropFirst().first.flatMap({ Double($0) }) else { return nil }
        return kilobytes * 1024
    }

    /// A line for the run summary, and warnings when a step would take minutes or not fit.
    public func describe(gigaflops: Double, availableBytes: Double?, device: Device = .cpu) -> (line: String, warnings: [String]) {
        // Real steps reach about half the matmul probe's speed (small kernels, data movement).
        let seconds = flops / (gigaflops * 0.5 * 1e9)
        var line = String(format: "estimated step: %.1f GFLOP, about %@ on %@ (%.0f GFLOP/s matmul), %.1f GB of memory",
                          flops / 1e9, Self.duration(seconds), device == .cpu ? "this CPU" : "\(device)", gigaflops, bytes / 1e9)
        var warnings: [String] = []
        if seconds > 60 {
            warnings.append("warning: a step would take about \(Self.duration(seconds)); lower data.batch_size or the image size (model.vision.image_size), or train on a GPU")
        }
        if let availableBytes {
            line += String(format: " (%.1f GB available)", availableBytes / 1e9)
            if bytes > 0.9 * availableBytes {
                warnings.append(String(format: "warning: a step needs about %.1f GB but %.1f GB are available; lower data.batch_size (optimizer.accumulation_steps keeps the global batch), the image size, or lock more layers, or set model.gradient_checkpointing", bytes / 1e9, availableBytes / 1e9))
            }
        }
        return (line, warnings)
    }

    static func duration(_ seconds: Double) -> String {
        seconds < 1 ? String(format: "%.0f ms", seconds * 1000) : seconds < 120 ? String(format: "%.1f s", seconds) : String(format: "%.0f min", seconds / 60)
    }
}
