/// The name of every op the Torch layer records (`OpRecorder`), one case per op. The raw value
/// is the name shown in op summaries and error messages ("layer_norm", "add_scalar", "mul_"), so
/// `"\(name)"` prints it. Case names are the raw value in camelCase, with a trailing `_` (torch's
/// in-place marker) spelled `InPlace`.
///
/// The ONNX exporter (`GraphLowering`) switches over this enum exhaustively, without `default`:
/// an op added here without a lowering (or an explicit "no lowering" case) does not compile.
public enum OpName: String, CaseIterable, Sendable, CustomStringConvertible {
    // Creation and random fills (Creation.swift, Generator.swift)
    case fromBlob = "from_blob", zeros, ones, empty, full, arange, linspace, eye, rand, randn, randint, randperm
    case bernoulli, uniformInPlace = "uniform_", normalInPlace = "normal_", generatorGetState = "generator_get_state"

    // Elementwise arithmetic and math (Arithmetic.swift)
    case add, sub, mul, div, pow, maximum, minimum, atan2, addScalar = "add_scalar", subScalar = "sub_scalar"
    case rsubScalar = "rsub_scalar", mulScalar = "mul_scalar", divScalar = "div_scalar", powScalar = "pow_scalar"
    case rpowScalar = "rpow_scalar", fmodScalar = "fmod_scalar", neg, exp, log, sqrt, rsqrt, abs, tanh, erf, sigmoid
    case relu, sin, cos, floor, ceil, round, sign, erfinv, reciprocal, isnan, isfinite, logicalNot = "logical_not"
    case logicalAnd = "logical_and", logicalOr = "logical_or", logicalXor = "logical_xor", clamp
    case clampTensor = "clamp_tensor"

    // Comparisons (Arithmetic.swift)
    case eq, ne, lt, le, gt, ge, eqScalar = "eq_scalar", neScalar = "ne_scalar", ltScalar = "lt_scalar"
    case leScalar = "le_scalar", gtScalar = "gt_scalar", geScalar = "ge_scalar"

    // In place: optimizers, initialisers, autograd flags (Arithmetic.swift, Autograd.swift)
    case addInPlace = "add_", addScalarInPlace = "add_scalar_", mulInPlace = "mul_", mulScalarInPlace = "mul_scalar_"
    case divInPlace = "div_", addcmulInPlace = "addcmul_", addcdivInPlace = "addcdiv_", lerpInPlace = "lerp_"
    case sqrtInPlace = "sqrt_", clampInPlace = "clamp_", copyInPlace = "copy_", setData = "set_data"
    case zeroInPlace = "zero_", fillInPlace = "fill_", requiresGradInPlace = "requires_grad_"
    case retainGrad = "retain_grad"

    // Mixed precision: GradScaler's kernels (Arithmetic.swift)
    case ampForeachNonFiniteCheckAndUnscaleInPlace = "_amp_foreach_non_finite_check_and_unscale_"
    case ampUpdateScaleInPlace = "_amp_update_scale_"

    // Optimizers: torch's fused steps and foreach kernels (OptimizerKernels.swift)
    case foreachAddInPlace = "_foreach_add_", foreachMulInPlace = "_foreach_mul_", foreachNorm = "_foreach_norm"
    case fusedAdamwInPlace = "_fused_adamw_", fusedSgdInPlace = "_fused_sgd_"

    // Reductions, sorting and selection (Reductions.swift)
    case sum, mean, prod, cumsum, maxAll = "max_all", minAll = "min_all", maxDim = "max_dim", minDim = "min_dim", argmax
    case argmin, norm, logsumexp, `var`, std, topk, sort, argsort, all, any

    // Conversions, views and indexing (Views.swift)
    case toDtype = "to_dtype", toDevice = "to_device", contiguous, clone, detach, reshape, view, permute, transpose
    case slice, select, narrow, indexSelect = "index_select", gather, scatter, scatterValue = "scatter_value"
    case scatterAdd = "scatter_add", maskedFill = "masked_fill", `where`, cat, stack, split
    case splitWithSizes = "split_with_sizes", chunk, expand, unsqueeze, squeeze, flatten, unflatten, flip, roll
    case `repeat`, tril, triu, diagonal

    // nn functions and losses (Functional.swift)
    case matmul, bmm, linear, conv2d, layerNorm = "layer_norm", embedding, dropout, softmax, logSoftmax = "log_softmax"
    case gelu, scaledDotProductAttention = "scaled_dot_product_attention", crossEntropy = "cross_entropy"
    case klDiv = "kl_div", mseLoss = "mse_loss", binaryCrossEntropyWithLogits = "binary_cross_entropy_with_logits"
    case cosineSimilarity = "cosine_similarity", interpolate, affineGrid = "affine_grid", gridSample = "grid_sample"

    public var description: String { rawValue }
}
