import Testing
@testable import Torch

/// One differentiable op under test: how to build its inputs, and the function of them.
struct GradCase: CustomStringConvertible, Sendable {
    let name: String
    let inputs: @Sendable () -> [Tensor]
    let f: @Sendable ([Tensor]) -> Tensor
    var description: String { name }

    init(_ name: String, _ inputs: @escaping @Sendable () -> [Tensor], _ f: @escaping @Sendable ([Tensor]) -> Tensor) {
        self.name = name
        self.inputs = inputs
        self.f = f
    }
}

private let seed = Generator(seed: 7)
private func randn(_ shape: Int...) -> Tensor { Tensor.randn(shape, dtype: .float64, generator: seed) }
/// Values in [0.5, 1.5): away from 0 for log, sqrt, abs, division.
private func positive(_ shape: Int...) -> Tensor { Tensor.rand(shape, dtype: .float64, generator: seed) + 0.5 }
/// Distinct, well-separated values for max/sort/topk.
private func distinct(_ shape: Int...) -> Tensor {
    let n = shape.reduce(1, *)
    return Tensor.randperm(n, generator: seed).to(.float64).mul(0.37).reshape(shape)
}
private func indices(_ values: [Int], shape: [Int]? = nil) -> Tensor { Tensor(values, shape: shape) }

let elementwiseCases: [GradCase] = [
    GradCase("add", { [randn(2, 3), randn(3)] }) { $0[0] + $0[1] },
    GradCase("add alpha", { [randn(2, 3), randn(2, 3)] }) { $0[0].add($0[1], alpha: 2.5) },
    GradCase("sub", { [randn(2, 3), randn(2, 1)] }) { $0[0] - $0[1] },
    GradCase("mul", { [randn(2, 3), randn(2, 3)] }) { $0[0] * $0[1] },
    GradCase("div", { [randn(2, 3), positive(2, 3)] }) { $0[0] / $0[1] },
    GradCase("scalar ops", { [randn(2, 3)] }) { (2.0 - $0[0] * 3.0 + 1.5) / 4.0 },
    GradCase("scalar / tensor", { [positive(4)] }) { 2.0 / $0[0] },
    GradCase("neg", { [randn(4)] }) { -$0[0] },
    GradCase("pow tensor", { [positive(3), randn(3)] }) { $0[0].pow($0[1]) },
    GradCase("pow scalar", { [positive(3)] }) { $0[0].pow(2.5) },
    GradCase("rpow", { [randn(3)] }) { $0[0].rpow(2.0) },
    GradCase("exp", { [randn(5)] }) { $0[0].exp() },
    GradCase("log", { [positive(5)] }) { $0[0].log() },
    GradCase("sqrt", { [positive(5)] }) { $0[0].sqrt() },
    GradCase("rsqrt", { [positive(5)] }) { $0[0].rsqrt() },
    GradCase("abs", { [positive(5) * Tensor([1.0, -1, 1, -1, 1])] }) { $0[0].abs() },
    GradCase("clamp", { [Tensor([-2.0, -0.3, 0.2, 0.7, 3.0])] }) { $0[0].clamp(min: -1, max: 1) },
    GradCase("clamp min only", { [Tensor([-2.0, 0.5])] }) { $0[0].clamp(min: 0) },
    GradCase("tanh", { [randn(5)] }) { $0[0].tanh() },
    GradCase("erf", { [randn(5)] }) { $0[0].erf() },
    GradCase("sigmoid", { [randn(5)] }) { $0[0].sigmoid() },
    GradCase("relu", { [Tensor([-1.0, -0.2, 0.3, 2.0])] }) { $0[0].relu() },
    GradCase("sin cos", { [randn(4)] }) { $0[0].sin() * $0[0].cos() },
    GradCase("maximum", { [distinct(2, 3), distinct(2, 3).add(0.1)] }) { $0[0].maximum($0[1]) },
    GradCase("reciprocal", { [positive(4)] }) { $0[0].reciprocal() },
    GradCase("where", { [randn(2, 3), randn(2, 3)] }) { Tensor.where(Tensor([true, false, true], shape: [3]), $0[0], $0[1]) },
    GradCase("masked_fill", { [randn(2, 3)] }) { $0[0].maskedFill(Tensor([true, false, false, true, false, true], shape: [2, 3]), 0.0) },
]

let shapeCases: [GradCase] = [
    GradCase("reshape", { [randn(2, 6)] }) { $0[0].reshape(3, -1) },
    GradCase("view", { [randn(2, 6)] }) { $0[0].view([4, 3]) },
    GradCase("permute", { [randn(2, 3, 4)] }) { $0[0].permute(2, 0, 1) },
    GradCase("transpose", { [randn(2, 3)] }) { $0[0].transpose(0, 1) },
    GradCase("slice", { [randn(6, 2)] }) { $0[0].slice(dim: 0, start: 1, end: 5, step: 2) },
    GradCase("select", { [randn(3, 4)] }) { $0[0].select(dim: 1, index: -1) },
    GradCase("narrow", { [randn(3, 4)] }) { $0[0].narrow(dim: 1, start: 1, length: 2) },
    GradCase("subscript", { [randn(3, 4, 2)] }) { $0[0][1..., .all, 0] },
    GradCase("index_select", { [randn(4, 3)] }) { $0[0].indexSelect(dim: 0, index: indices([3, 0, 3])) },
    GradCase("gather", { [randn(3, 4)] }) { $0[0].gather(dim: 1, index: indices([0, 3, 1, 1, 2, 0], shape: [3, 2])) },
    GradCase("scatter", { [randn(2, 4), randn(2, 2)] }) {
        $0[0].scatter(dim: 1, index: indices([0, 2, 1, 3], shape: [2, 2]), source: $0[1])
    },
    GradCase("scatter_add", { [randn(2, 4), randn(2, 2)] }) {
        $0[0].scatterAdd(dim: 1, index: indices([0, 0, 1, 3], shape: [2, 2]), source: $0[1])
    },
    GradCase("cat", { [randn(2, 3), randn(1, 3)] }) { Tensor.cat($0, dim: 0) },
    GradCase("stack", { [randn(2, 3), randn(2, 3)] }) { Tensor.stack($0, dim: 1) },
    GradCase("split", { [randn(5, 2)] }) { x in let parts = x[0].split(size: 2); return parts[0] * 2.0 + parts[1] - parts[2].sum() },
    GradCase("chunk", { [randn(4, 3)] }) { x in let parts = x[0].chunk(2, dim: 0); return parts[0] * parts[1] },
    GradCase("expand", { [randn(3, 1)] }) { $0[0].expand([3, 4]) },
    GradCase("unsqueeze squeeze", { [randn(3, 1, 2)] }) { $0[0].squeeze(1).unsqueeze(0) },
    GradCase("flatten unflatten", { [randn(2, 3, 2)] }) { $0[0].flatten(start: 1).unflatten(dim: 0, sizes: [1, 2]) },
    GradCase("flip", { [randn(3, 2)] }) { $0[0].flip([0, 1]) },
    GradCase("roll", { [randn(4, 2)] }) { $0[0].roll(shifts: [1], dims: [0]) },
    GradCase("repeat", { [randn(2, 2)] }) { $0[0].repeated([2, 1]) },
    GradCase("tril", { [randn(3, 3)] }) { $0[0].tril() },
]

let reductionCases: [GradCase] = [
    GradCase("sum all", { [randn(3, 4)] }) { $0[0].sum() },
    GradCase("sum dims", { [randn(3, 4, 2)] }) { $0[0].sum(dims: [0, 2], keepDim: true) },
    GradCase("mean", { [randn(3, 4)] }) { $0[0].mean(dim: 1) },
    GradCase("max all", { [distinct(3, 4)] }) { $0[0].max() },
    GradCase("max dim", { [distinct(3, 4)] }) { $0[0].max(dim: 1).values },
    GradCase("min dim", { [distinct(3, 4)] }) { $0[0].min(dim: 0, keepDim: true).values },
    GradCase("norm", { [randn(3, 4)] }) { $0[0].norm(dims: [1]) },
    GradCase("norm p1", { [positive(3, 4)] }) { $0[0].norm(p: 1) },
    GradCase("logsumexp", { [randn(3, 4)] }) { $0[0].logsumexp(dims: [1]) },
    GradCase("var", { [randn(3, 4)] }) { $0[0].variance(dims: [1]) },
    GradCase("std", { [randn(3, 4)] }) { $0[0].std(dims: [0], correction: 0) },
    GradCase("topk", { [distinct(2, 5)] }) { $0[0].topk(3).values },
    GradCase("sort", { [distinct(2, 5)] }) { $0[0].sort(dim: 1, descending: true).values },
    GradCase("cumsum", { [randn(2, 4)] }) { $0[0].cumsum(dim: 1) },
]

let nnCases: [GradCase] = [
    GradCase("matmul", { [randn(2, 3, 4), randn(4, 5)] }) { $0[0].matmul($0[1]) },
    GradCase("bmm", { [randn(2, 3, 4), randn(2, 4, 2)] }) { F.bmm($0[0], $0[1]) },
    GradCase("linear", { [randn(3, 4), randn(2, 4), randn(2)] }) { F.linear($0[0], weight: $0[1], bias: $0[2]) },
    GradCase("linear no bias", { [randn(3, 4), randn(2, 4)] }) { F.linear($0[0], weight: $0[1]) },
    GradCase("conv2d", { [randn(1, 2, 5, 5), randn(3, 2, 3, 3), randn(3)] }) {
        F.conv2d($0[0], weight: $0[1], bias: $0[2], stride: (2, 2), padding: (1, 1))
    },
    GradCase("layer_norm", { [randn(2, 5), randn(5), randn(5)] }) {
        F.layerNorm($0[0], normalizedShape: [5], weight: $0[1], bias: $0[2])
    },
    GradCase("embedding", { [randn(6, 3)] }) { F.embedding(indices([1, 4, 1, 0], shape: [2, 2]), weight: $0[0]) },
    GradCase("softmax", { [randn(3, 4)] }) { F.softmax($0[0], dim: -1) },
    GradCase("log_softmax", { [randn(3, 4)] }) { F.logSoftmax($0[0], dim: 0) },
    GradCase("gelu exact", { [randn(6)] }) { F.gelu($0[0]) },
    GradCase("gelu tanh", { [randn(6)] }) { F.gelu($0[0], approximate: .tanh) },
    GradCase("quick_gelu", { [randn(6)] }) { F.quickGELU($0[0]) },
    GradCase("sdpa", { [randn(1, 2, 3, 4), randn(1, 2, 3, 4), randn(1, 2, 3, 4)] }) {
        F.scaledDotProductAttention($0[0], $0[1], $0[2])
    },
    GradCase("sdpa causal", { [randn(1, 2, 4, 3), randn(1, 2, 4, 3), randn(1, 2, 4, 3)] }) {
        F.scaledDotProductAttention($0[0], $0[1], $0[2], causal: true)
    },
    GradCase("sdpa key padding mask", { [randn(2, 1, 3, 4), randn(2, 1, 3, 4), randn(2, 1, 3, 4)] }) {
        let keep = Tensor([true, true, false, true, true, true], shape: [2, 1, 1, 3])
        return F.scaledDotProductAttention($0[0], $0[1], $0[2], mask: keep, scale: 0.3)
    },
    GradCase("cross_entropy", { [randn(4, 5)] }) { F.crossEntropy($0[0], indices([0, 3, 4, 1])) },
    GradCase("cross_entropy label smoothing", { [randn(4, 5)] }) { F.crossEntropy($0[0], indices([0, 3, 4, 1]), labelSmoothing: 0.1) },
    GradCase("cross_entropy soft targets", { [randn(3, 4), randn(3, 4)] }) { F.crossEntropy($0[0], F.softmax($0[1], dim: 1)) },
    GradCase("kl_div", { [randn(3, 4), randn(3, 4)] }) {
        F.klDiv(F.logSoftmax($0[0], dim: 1), F.softmax($0[1], dim: 1), reduction: .sum)
    },
    GradCase("mse_loss", { [randn(3, 4), randn(3, 4)] }) { F.mseLoss($0[0], $0[1]) },
    GradCase("bce_with_logits", { [randn(3, 4), Tensor.rand([3, 4], dtype: .float64, generator: seed)] }) {
        F.binaryCrossEntropyWithLogits($0[0], $0[1])
    },
    GradCase("cosine_similarity", { [randn(3, 4), randn(3, 4)] }) { F.cosineSimilarity($0[0], $0[1], dim: 1) },
    GradCase("normalize", { [randn(3, 4)] }) { F.normalize($0[0], dim: -1) },
    GradCase("dropout eval", { [randn(3, 4)] }) { F.dropout($0[0], p: 0.5, training: false) },
]

let resamplingCases: [GradCase] = [
    GradCase("bilinear", { [randn(1, 1, 4, 4)] }) { F.interpolate($0[0], size: (6, 3)) },
    GradCase("bicubic", { [randn(1, 1, 4, 4)] }) { F.interpolate($0[0], size: (5, 6), mode: .bicubic) },
    GradCase("bicubic antialias", { [randn(1, 2, 8, 8)] }) { F.interpolate($0[0], size: (3, 5), mode: .bicubic, antialias: true) },
    GradCase("bilinear antialias", { [randn(1, 1, 7, 6)] }) { F.interpolate($0[0], size: (3, 4), antialias: true) },
    GradCase("affine_grid", { [randn(1, 2, 3)] }) { F.affineGrid($0[0], size: [1, 1, 3, 4]) },
    GradCase("grid_sample", { [randn(1, 2, 4, 4), Tensor.rand([1, 3, 3, 2], dtype: .float64, generator: seed) * 1.6 - 0.8] }) {
        F.gridSample($0[0], grid: $0[1])
    },
]

@Suite("Gradients match central finite differences in float64")
struct GradientCheckTests {
    private func check(_ c: GradCase) {
        let mismatches = GradientCheck.mismatches(c.inputs(), c.f)
        #expect(mismatches.isEmpty, "\(c.name): \(mismatches.prefix(3))")
    }

    @Test(arguments: elementwiseCases) func elementwise(_ c: GradCase) { check(c) }
    @Test(arguments: shapeCases) func shapes(_ c: GradCase) { check(c) }
    @Test(arguments: reductionCases) func reductions(_ c: GradCase) { check(c) }
    @Test(arguments: nnCases) func neuralNetwork(_ c: GradCase) { check(c) }
    @Test(arguments: resamplingCases) func resampling(_ c: GradCase) { check(c) }

    @Test func aWrongGradientIsCaught() {
        // The checker itself must fail when autograd and the function disagree: detach() hides
        // the dependence from autograd but not from the finite differences.
        let mismatches = GradientCheck.mismatches([randn(3)]) { $0[0] * $0[0].detach() }
        #expect(mismatches.count == 3)
    }
}
