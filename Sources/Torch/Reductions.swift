import CTorch

// Reductions, sorting and selection.
extension Tensor {
    func reduce(_ op: OpName, _ dims: [Int], _ keepDim: Bool, _ site: CallSite,
                extra: [String: OpAttribute] = [:],
                _ call: (UnsafePointer<Int64>?, Int64, UnsafeMutablePointer<OpaquePointer?>) -> ct_status) -> Tensor {
        let d = int64s(dims)
        var attributes = extra
        attributes["dims"] = .ints(dims)
        attributes["keepdim"] = .bool(keepDim)
        return makeTensor(op, site, inputs: [self], attributes: attributes) { out in
            d.withUnsafeBufferPointer { call(dims.isEmpty ? nil : $0.baseAddress, Int64(d.count), out) }
        }
    }

    /// Sum over `dims` (all elements when empty), optionally accumulating in `dtype`.
    public func sum(dims: [Int] = [], keepDim: Bool = false, dtype: DType? = nil,
                    file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        reduce(.sum, dims, keepDim, CallSite(file: file, line: line), extra: ["dtype": dtype.map { .dtype($0) } ?? .absent]) {
            ct_sum(handle, $0, $1, keepDim, dtype?.rawValue ?? -1, $2)
        }
    }
    public func sum(dim: Int, keepDim: Bool = false, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        sum(dims: [dim], keepDim: keepDim, file: file, line: line)
    }

    public func mean(dims: [Int] = [], keepDim: Bool = false, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        reduce(.mean, dims, keepDim, CallSite(file: file, line: line)) { ct_mean(handle, $0, $1, keepDim, $2) }
    }
    public func mean(dim: Int, keepDim: Bool = false, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        mean(dims: [dim], keepDim: keepDim, file: file, line: line)
    }

    public func prod(dim: Int, keepDim: Bool = false, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.prod, CallSite(file: file, line: line), inputs: [self], attributes: ["dim": .int(dim), "keepdim": .bool(keepDim)]) {
            ct_prod(handle, Int64(dim), keepDim, $0)
        }
    }

    public func cumsum(dim: Int, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.cumsum, CallSite(file: file, line: line), inputs: [self], attributes: ["dim": .int(dim)]) { ct_cumsum(handle, Int64(dim), $0) }
    }

    /// Largest element.
    public func max(file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        unary(.maxAll, CallSite(file: file, line: line), ct_max_all)
    }
    public func min(file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        unary(.minAll, CallSite(file: file, line: line), ct_min_all)
    }

    /// Largest values along `dim` and where they are.
    public func max(dim: Int, keepDim: Bool = false, file: StaticString = #fileID, line: UInt = #line) -> (values: Tensor, indices: Tensor) {
        makeTensorPair(.maxDim, CallSite(file: file, line: line), inputs: [self], attributes: ["dim": .int(dim), "keepdim": .bool(keepDim)]) {
            ct_max_dim(handle, Int64(dim), keepDim, $0, $1)
        }
    }
    public func min(dim: Int, keepDim: Bool = false, file: StaticString = #fileID, line: UInt = #line) -> (values: Tensor, indices: Tensor) {
        makeTensorPair(.minDim, CallSite(file: file, line: line), inputs: [self], attributes: ["dim": .int(dim), "keepdim": .bool(keepDim)]) {
            ct_min_dim(handle, Int64(dim), keepDim, $0, $1)
        }
    }

    /// Index of the largest value along `dim` (over the flattened tensor when nil).
    public func argmax(dim: Int? = nil, keepDim: Bool = false, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        return makeTensor(.argmax, CallSite(file: file, line: line), inputs: [self],
                          attributes: ["dim": dim.map { .int($0) } ?? .absent, "keepdim": .bool(keepDim)]) { out in
            withOptionalPointer(dim.map(Int64.init)) { ct_argmax(handle, $0, keepDim, out) }
        }
    }
    public func argmin(dim: Int? = nil, keepDim: Bool = false, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        return makeTensor(.argmin, CallSite(file: file, line: line), inputs: [self],
                          attributes: ["dim": dim.map { .int($0) } ?? .absent, "keepdim": .bool(keepDim)]) { out in
            withOptionalPointer(dim.map(Int64.init)) { ct_argmin(handle, $0, keepDim, out) }
        }
    }

    /// p-norm over `dims` (all elements when empty).
    public func norm(p: Double = 2, dims: [Int] = [], keepDim: Bool = false, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        reduce(.norm, dims, keepDim, CallSite(file: file, line: line), extra: ["p": .double(p)]) { ct_norm(handle, p, $0, $1, keepDim, $2) }
    }

    public func logsumexp(dims: [Int], keepDim: Bool = false, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        reduce(.logsumexp, dims, keepDim, CallSite(file: file, line: line)) { ct_logsumexp(handle, $0, $1, keepDim, $2) }
    }

    /// Variance with Bessel's correction by default (`correction: 0` for the population variance).
    public func variance(dims: [Int] = [], correction: Double = 1, keepDim: Bool = false,
                         file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        reduce(.var, dims, keepDim, CallSite(file: file, line: line), extra: ["correction": .double(correction)]) {
            ct_var(handle, $0, $1, correction, keepDim, $2)
        }
    }
    public func std(dims: [Int] = [], correction: Double = 1, keepDim: Bool = false,
                    file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        reduce(.std, dims, keepDim, CallSite(file: file, line: line), extra: ["correction": .double(correction)]) {
            ct_std(handle, $0, $1, correction, keepDim, $2)
        }
    }

    public func topk(_ k: Int, dim: Int = -1, largest: Bool = true, sorted: Bool = true,
                     file: StaticString = #fileID, line: UInt = #line) -> (values: Tensor, indices: Tensor) {
        makeTensorPair(.topk, CallSite(file: file, line: line), inputs: [self],
                       attributes: ["k": .int(k), "dim": .int(dim), "largest": .bool(largest), "sorted": .bool(sorted)]) {
            ct_topk(handle, Int64(k), Int64(dim), largest, sorted, $0, $1)
        }
    }

    public func sort(dim: Int = -1, descending: Bool = false, stable: Bool = false,
                     file: StaticString = #fileID, line: UInt = #line) -> (values: Tensor, indices: Tensor) {
        makeTensorPair(.sort, CallSite(file: file, line: line), inputs: [self],
                       attributes: ["dim": .int(dim), "descending": .bool(descending), "stable": .bool(stable)]) {
            ct_sort(handle, Int64(dim), descending, stable, $0, $1)
        }
    }

    public func argsort(dim: Int = -1, descending: Bool = false, stable: Bool = false,
                        file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.argsort, CallSite(file: file, line: line), inputs: [self],
                   attributes: ["dim": .int(dim), "descending": .bool(descending), "stable": .bool(stable)]) {
            ct_argsort(handle, Int64(dim), descending, stable, $0)
        }
    }

    /// True when every element is non-zero.
    public func all(file: StaticString = #fileID, line: UInt = #line) -> Tensor { unary(.all, CallSite(file: file, line: line), ct_all) }
    public func any(file: StaticString = #fileID, line: UInt = #line) -> Tensor { unary(.any, CallSite(file: file, line: line), ct_any) }
}
