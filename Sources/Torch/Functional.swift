import CTorch

/// Neural-network functions and losses, named as in `torch.nn.functional`.
public enum F {
    public static func matmul(_ a: Tensor, _ b: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        a.binary(.matmul, b, CallSite(file: file, line: line), ct_matmul)
    }

    public static func bmm(_ a: Tensor, _ b: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        a.binary(.bmm, b, CallSite(file: file, line: line), ct_bmm)
    }

    /// `x @ weightᵀ + bias`.
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.linear, CallSite(file: file, line: line), inputs: [x, weight] + (bias.map { [$0] } ?? [])) {
            ct_linear(x.handle, weight.handle, bias?.handle, $0)
        }
    }

    public static func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: (Int, Int) = (1, 1),
                              padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1), groups: Int = 1,
                              file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        let s: [Int64] = [Int64(stride.0), Int64(stride.1)]
        let p: [Int64] = [Int64(padding.0), Int64(padding.1)]
        let d: [Int64] = [Int64(dilation.0), Int64(dilation.1)]
        let attributes: [String: OpAttribute] = [
            "stride": .ints([stride.0, stride.1]), "padding": .ints([padding.0, padding.1]),
            "dilation": .ints([dilation.0, dilation.1]), "groups": .int(groups),
        ]
        return makeTensor(.conv2d, CallSite(file: file, line: line), inputs: [x, weight] + (bias.map { [$0] } ?? []), attributes: attributes) {
            ct_conv2d(x.handle, weight.handle, bias?.handle, s, p, d, Int64(groups), $0)
        }
    }

    public static func layerNorm(_ x: Tensor, normalizedShape: [Int], weight: Tensor? = nil, bias: Tensor? = nil,
                                 eps: Double = 1e-5, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        let shape = int64s(normalizedShape)
        return makeTensor(.layerNorm, CallSite(file: file, line: line), inputs: [x] + [weight, bias].compactMap { $0 },
                          attributes: ["normalized_shape": .ints(normalizedShape), "eps": .double(eps)]) { out in
            shape.withUnsafeBufferPointer {
                ct_layer_norm(x.handle, $0.baseAddress, Int64(shape.count), weight?.handle, bias?.handle, eps, out)
            }
        }
    }

    /// Rows of `weight` picked by integer `indices`.
    public static func embedding(_ indices: Tensor, weight: Tensor, paddingIndex: Int? = nil,
                                 file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.embedding, CallSite(file: file, line: line), inputs: [weight, indices]) {
            ct_embedding(weight.handle, indices.handle, Int64(paddingIndex ?? -1), $0)
        }
    }

    public static func dropout(_ x: Tensor, p: Double, training: Bool, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.dropout, CallSite(file: file, line: line), inputs: [x], attributes: ["p": .double(p), "train": .bool(training)]) {
            ct_dropout(x.handle, p, training, $0)
        }
    }

    public static func softmax(_ x: Tensor, dim: Int, dtype: DType? = nil, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.softmax, CallSite(file: file, line: line), inputs: [x], attributes: ["dim": .int(dim), "dtype": dtype.map { .dtype($0) } ?? .absent]) {
            ct_softmax(x.handle, Int64(dim), dtype?.rawValue ?? -1, $0)
        }
    }

    public static func logSoftmax(_ x: Tensor, dim: Int, dtype: DType? = nil, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.logSoftmax, CallSite(file: file, line: line), inputs: [x], attributes: ["dim": .int(dim), "dtype": dtype.map { .dtype($0) } ?? .absent]) {
            ct_log_softmax(x.handle, Int64(dim), dtype?.rawValue ?? -1, $0)
        }
    }

    public enum GELUApproximation: String, Sendable { case none, tanh }

    public static func gelu(_ x: Tensor, approximate: GELUApproximation = .none, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.gelu, CallSite(file: file, line: line), inputs: [x], attributes: ["approximate": .string(approximate.rawValue)]) {
            ct_gelu(x.handle, approximate.rawValue, $0)
        }
    }

    /// `x * sigmoid(1.702 x)`, the activation of OpenAI's CLIP.
    public static func quickGELU(_ x: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        x.mul(x.mul(1.702, file: file, line: line).sigmoid(file: file, line: line), file: file, line: line)
    }

    public static func relu(_ x: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Tensor { x.relu(file: file, line: line) }

    /// softmax(q kᵀ · scale + mask) v over the last two dims. A boolean `mask` marks positions
    /// that may be attended (true); a float mask is added to the scores.
    public static func scaledDotProductAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor, mask: Tensor? = nil,
                                                 dropout: Double = 0, causal: Bool = false, scale: Double? = nil,
                                                 file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        return makeTensor(.scaledDotProductAttention, CallSite(file: file, line: line), inputs: [q, k, v] + (mask.map { [$0] } ?? []),
                          attributes: ["dropout_p": .double(dropout), "is_causal": .bool(causal), "scale": scale.map { .double($0) } ?? .absent]) { out in
            withOptionalPointer(scale) { ct_scaled_dot_product_attention(q.handle, k.handle, v.handle, mask?.handle, dropout, causal, $0, out) }
        }
    }

    /// Cross-entropy from logits; `target` holds class indices (int64) or probabilities.
    public static func crossEntropy(_ logits: Tensor, _ target: Tensor, weight: Tensor? = nil, reduction: Reduction = .mean,
                                    ignoreIndex: Int = -100, labelSmoothing: Double = 0,
                                    file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.crossEntropy, CallSite(file: file, line: line), inputs: [logits, target] + (weight.map { [$0] } ?? []),
                   attributes: ["reduction": .int(Int(reduction.rawValue)), "ignore_index": .int(ignoreIndex), "label_smoothing": .double(labelSmoothing)]) {
            ct_cross_entropy(logits.handle, target.handle, weight?.handle, reduction.rawValue, Int64(ignoreIndex), labelSmoothing, $0)
        }
    }

    /// KL(target ‖ input) with `input` given as log-probabilities, as torch.nn.functional.kl_div.
    public static func klDiv(_ input: Tensor, _ target: Tensor, reduction: Reduction = .mean, logTarget: Bool = false,
                             file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.klDiv, CallSite(file: file, line: line), inputs: [input, target],
                   attributes: ["reduction": .int(Int(reduction.rawValue)), "log_target": .bool(logTarget)]) {
            ct_kl_div(input.handle, target.handle, reduction.rawValue, logTarget, $0)
        }
    }

    public static func mseLoss(_ input: Tensor, _ target: Tensor, reduction: Reduction = .mean,
                               file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.mseLoss, CallSite(file: file, line: line), inputs: [input, target], attributes: ["reduction": .int(Int(reduction.rawValue))]) {
            ct_mse_loss(input.handle, target.handle, reduction.rawValue, $0)
        }
    }

    public static func binaryCrossEntropyWithLogits(_ input: Tensor, _ target: Tensor, weight: Tensor? = nil, positiveWeight: Tensor? = nil,
                                                    reduction: Reduction = .mean, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.binaryCrossEntropyWithLogits, CallSite(file: file, line: line), inputs: [input, target] + [weight, positiveWeight].compactMap { $0 },
                   attributes: ["reduction": .int(Int(reduction.rawValue))]) {
            ct_binary_cross_entropy_with_logits(input.handle, target.handle, weight?.handle, positiveWeight?.handle, reduction.rawValue, $0)
        }
    }

    public static func cosineSimilarity(_ a: Tensor, _ b: Tensor, dim: Int = 1, eps: Double = 1e-8,
                                        file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.cosineSimilarity, CallSite(file: file, line: line), inputs: [a, b], attributes: ["dim": .int(dim), "eps": .double(eps)]) {
            ct_cosine_similarity(a.handle, b.handle, Int64(dim), eps, $0)
        }
    }

    /// `x / max(‖x‖_p, eps)` along `dim`, as torch.nn.functional.normalize.
    public static func normalize(_ x: Tensor, p: Double = 2, dim: Int = 1, eps: Double = 1e-12,
                                 file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        let norm = x.norm(p: p, dims: [dim], keepDim: true, file: file, line: line).clamp(min: eps, file: file, line: line)
        return x.div(norm, file: file, line: line)
    }

    // MARK: image resampling

    public enum InterpolationMode: Int32, Sendable { case bilinear = 0, bicubic = 1 }

    /// Resizes NCHW images to (height, width). `antialias` low-pass filters when shrinking
    /// (PIL-like); bicubic uses a = -0.75 as torch does.
    public static func interpolate(_ x: Tensor, size: (height: Int, width: Int), mode: InterpolationMode = .bilinear,
                                   alignCorners: Bool = false, antialias: Bool = false,
                                   file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.interpolate, CallSite(file: file, line: line), inputs: [x],
                   attributes: ["size": .ints([size.height, size.width]), "mode": .int(Int(mode.rawValue)),
                                "align_corners": .bool(alignCorners), "antialias": .bool(antialias)]) {
            ct_interpolate(x.handle, Int64(size.height), Int64(size.width), mode.rawValue, alignCorners, antialias, $0)
        }
    }

    /// Sampling grid (N, H, W, 2) for the affine matrices `theta` (N, 2, 3) and output `size` (N, C, H, W).
    public static func affineGrid(_ theta: Tensor, size: [Int], alignCorners: Bool = false,
                                  file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        let s = int64s(size)
        return makeTensor(.affineGrid, CallSite(file: file, line: line), inputs: [theta], attributes: ["size": .ints(size), "align_corners": .bool(alignCorners)]) { out in
            s.withUnsafeBufferPointer { ct_affine_grid(theta.handle, $0.baseAddress, Int64(s.count), alignCorners, out) }
        }
    }

    public enum GridSampleMode: Int32, Sendable { case bilinear = 0, nearest = 1, bicubic = 2 }
    public enum GridSamplePadding: Int32, Sendable { case zeros = 0, border = 1, reflection = 2 }

    public static func gridSample(_ x: Tensor, grid: Tensor, mode: GridSampleMode = .bilinear, padding: GridSamplePadding = .zeros,
                                  alignCorners: Bool = false, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.gridSample, CallSite(file: file, line: line), inputs: [x, grid],
                   attributes: ["mode": .int(Int(mode.rawValue)), "padding": .int(Int(padding.rawValue)), "align_corners": .bool(alignCorners)]) {
            ct_grid_sample(x.handle, grid.handle, mode.rawValue, padding.rawValue, alignCorners, $0)
        }
    }
}

extension Tensor {
    /// Matrix product with broadcasting.
    public func matmul(_ other: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        F.matmul(self, other, file: file, line: line)
    }

    public func softmax(dim: Int, file: StaticString = #fileID, line: UInt = #line) -> Tensor { F.softmax(self, dim: dim, file: file, line: line) }
    public func logSoftmax(dim: Int, file: StaticString = #fileID, line: UInt = #line) -> Tensor { F.logSoftmax(self, dim: dim, file: file, line: line) }
}
