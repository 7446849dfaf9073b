import CTorch

// Conversion, reshaping, views and indexing ops.
extension Tensor {
    public func to(_ dtype: DType, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.toDtype, CallSite(file: file, line: line), inputs: [self], attributes: ["dtype": .dtype(dtype)]) {
            ct_to_dtype(handle, dtype.rawValue, $0)
        }
    }

    public func to(_ device: Device, nonBlocking: Bool = false, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.toDevice, CallSite(file: file, line: line), inputs: [self]) {
            ct_to_device(handle, device.bridged, nonBlocking, $0)
        }
    }

    /// This tensor on `device`: itself when it is already there (no copy, no recorded op).
    public func on(_ device: Device, nonBlocking: Bool = false) -> Tensor {
        self.device == device ? self : to(device, nonBlocking: nonBlocking)
    }

    public func contiguous(file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.contiguous, CallSite(file: file, line: line), inputs: [self]) { ct_contiguous(handle, $0) }
    }

    /// A copy with its own storage (keeps autograd history).
    public func clone(file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.clone, CallSite(file: file, line: line), inputs: [self]) { ct_clone(handle, $0) }
    }

    /// The same data, cut from the autograd graph.
    public func detach(file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.detach, CallSite(file: file, line: line), inputs: [self]) { ct_detach(handle, $0) }
    }

    /// `-1` in `shape` is inferred; keep it for the batch axis so exports stay dynamic.
    public func reshape(_ shape: [Int], file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        let dims = int64s(shape)
        return makeTensor(.reshape, CallSite(file: file, line: line), inputs: [self], attributes: ["shape": .ints(shape)]) { out in
            dims.withUnsafeBufferPointer { ct_reshape(handle, $0.baseAddress, Int64(dims.count), out) }
        }
    }

    public func reshape(_ shape: Int..., file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        reshape(shape, file: file, line: line)
    }

    public func view(_ shape: [Int], file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        let dims = int64s(shape)
        return makeTensor(.view, CallSite(file: file, line: line), inputs: [self], attributes: ["shape": .ints(shape)]) { out in
            dims.withUnsafeBufferPointer { ct_view(handle, $0.baseAddress, Int64(dims.count), out) }
        }
    }

    public func permute(_ dims: [Int], file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        let d = int64s(dims)
        return makeTensor(.permute, CallSite(file: file, line: line), inputs: [self], attributes: ["dims": .ints(dims)]) { out in
            d.withUnsafeBufferPointer { ct_permute(handle, $0.baseAddress, Int64(d.count), out) }
        }
    }

    public func permute(_ dims: Int..., file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        permute(dims, file: file, line: line)
    }

    public func transpose(_ dim0: Int, _ dim1: Int, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.transpose, CallSite(file: file, line: line), inputs: [self], attributes: ["dim0": .int(dim0), "dim1": .int(dim1)]) {
            ct_transpose(handle, Int64(dim0), Int64(dim1), $0)
        }
    }

    /// Swaps the last two dimensions (matrix transpose).
    public var mT: Tensor { transpose(-2, -1) }

    /// Elements start..<end (clamped like Python slices) with a stride along `dim`.
    public func slice(dim: Int, start: Int = 0, end: Int = Int.max, step: Int = 1,
                      file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.slice, CallSite(file: file, line: line), inputs: [self],
                   attributes: ["dim": .int(dim), "start": .int(start), "end": .int(end), "step": .int(step)]) {
            ct_slice(handle, Int64(dim), Int64(start), Int64(end), Int64(step), $0)
        }
    }

    /// Drops `dim`, keeping entry `index` (negative counts from the end).
    public func select(dim: Int, index: Int, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.select, CallSite(file: file, line: line), inputs: [self], attributes: ["dim": .int(dim), "index": .int(index)]) {
            ct_select(handle, Int64(dim), Int64(index), $0)
        }
    }

    public func narrow(dim: Int, start: Int, length: Int, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.narrow, CallSite(file: file, line: line), inputs: [self],
                   attributes: ["dim": .int(dim), "start": .int(start), "length": .int(length)]) {
            ct_narrow(handle, Int64(dim), Int64(start), Int64(length), $0)
        }
    }

    public func indexSelect(dim: Int, index: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.indexSelect, CallSite(file: file, line: line), inputs: [self, index], attributes: ["dim": .int(dim)]) {
            ct_index_select(handle, Int64(dim), index.handle, $0)
        }
    }

    public func gather(dim: Int, index: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.gather, CallSite(file: file, line: line), inputs: [self, index], attributes: ["dim": .int(dim)]) {
            ct_gather(handle, Int64(dim), index.handle, $0)
        }
    }

    /// A copy with `source` written at `index` along `dim`.
    public func scatter(dim: Int, index: Tensor, source: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.scatter, CallSite(file: file, line: line), inputs: [self, index, source], attributes: ["dim": .int(dim)]) {
            ct_scatter(handle, Int64(dim), index.handle, source.handle, $0)
        }
    }

    public func scatter(dim: Int, index: Tensor, value: some ScalarConvertible, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.scatterValue, CallSite(file: file, line: line), inputs: [self, index],
                   attributes: ["dim": .int(dim), "value": .scalar(value.scalar)]) {
            ct_scatter_value(handle, Int64(dim), index.handle, value.scalar.bridged, $0)
        }
    }

    public func scatterAdd(dim: Int, index: Tensor, source: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.scatterAdd, CallSite(file: file, line: line), inputs: [self, index, source], attributes: ["dim": .int(dim)]) {
            ct_scatter_add(handle, Int64(dim), index.handle, source.handle, $0)
        }
    }

    /// A copy with `value` where `mask` is true.
    public func maskedFill(_ mask: Tensor, _ value: some ScalarConvertible, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.maskedFill, CallSite(file: file, line: line), inputs: [self, mask], attributes: ["value": .scalar(value.scalar)]) {
            ct_masked_fill(handle, mask.handle, value.scalar.bridged, $0)
        }
    }

    /// Elementwise `condition ? a : b`.
    public static func `where`(_ condition: Tensor, _ a: Tensor, _ b: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.where, CallSite(file: file, line: line), inputs: [condition, a, b]) {
            ct_where(condition.handle, a.handle, b.handle, $0)
        }
    }

    public static func cat(_ tensors: [Tensor], dim: Int = 0, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.cat, CallSite(file: file, line: line), inputs: tensors, attributes: ["dim": .int(dim)]) { out in
            withHandles(tensors) { ct_cat($0, $1, Int64(dim), out) }
        }
    }

    public static func stack(_ tensors: [Tensor], dim: Int = 0, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.stack, CallSite(file: file, line: line), inputs: tensors, attributes: ["dim": .int(dim)]) { out in
            withHandles(tensors) { ct_stack($0, $1, Int64(dim), out) }
        }
    }

    /// Pieces of `size` along `dim` (the last may be smaller).
    public func split(size: Int, dim: Int = 0, file: StaticString = #fileID, line: UInt = #line) -> [Tensor] {
        makeTensorList(.split, CallSite(file: file, line: line), inputs: [self], attributes: ["size": .int(size), "dim": .int(dim)]) {
            ct_split(handle, Int64(size), Int64(dim), $0)
        }
    }

    public func split(sizes: [Int], dim: Int = 0, file: StaticString = #fileID, line: UInt = #line) -> [Tensor] {
        let s = int64s(sizes)
        return makeTensorList(.splitWithSizes, CallSite(file: file, line: line), inputs: [self],
                              attributes: ["sizes": .ints(sizes), "dim": .int(dim)]) { out in
            s.withUnsafeBufferPointer { ct_split_with_sizes(handle, $0.baseAddress, Int64(s.count), Int64(dim), out) }
        }
    }

    public func chunk(_ chunks: Int, dim: Int = 0, file: StaticString = #fileID, line: UInt = #line) -> [Tensor] {
        makeTensorList(.chunk, CallSite(file: file, line: line), inputs: [self], attributes: ["chunks": .int(chunks), "dim": .int(dim)]) {
            ct_chunk(handle, Int64(chunks), Int64(dim), $0)
        }
    }

    /// A broadcast view (`-1` keeps a dimension).
    public func expand(_ shape: [Int], file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        let s = int64s(shape)
        return makeTensor(.expand, CallSite(file: file, line: line), inputs: [self], attributes: ["shape": .ints(shape)]) { out in
            s.withUnsafeBufferPointer { ct_expand(handle, $0.baseAddress, Int64(s.count), out) }
        }
    }

    public func unsqueeze(_ dim: Int, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.unsqueeze, CallSite(file: file, line: line), inputs: [self], attributes: ["dim": .int(dim)]) {
            ct_unsqueeze(handle, Int64(dim), $0)
        }
    }

    /// Drops size-1 dimensions (all, or just `dim`).
    public func squeeze(_ dim: Int? = nil, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        if let dim {
            return makeTensor(.squeeze, CallSite(file: file, line: line), inputs: [self], attributes: ["dim": .int(dim)]) {
                ct_squeeze_dim(handle, Int64(dim), $0)
            }
        }
        return makeTensor(.squeeze, CallSite(file: file, line: line), inputs: [self], attributes: ["dim": .absent]) {
            ct_squeeze(handle, $0)
        }
    }

    public func flatten(start: Int = 0, end: Int = -1, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.flatten, CallSite(file: file, line: line), inputs: [self], attributes: ["start": .int(start), "end": .int(end)]) {
            ct_flatten(handle, Int64(start), Int64(end), $0)
        }
    }

    /// Splits `dim` into `sizes` (one may be -1).
    public func unflatten(dim: Int, sizes: [Int], file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        let s = int64s(sizes)
        return makeTensor(.unflatten, CallSite(file: file, line: line), inputs: [self], attributes: ["dim": .int(dim), "sizes": .ints(sizes)]) { out in
            s.withUnsafeBufferPointer { ct_unflatten(handle, Int64(dim), $0.baseAddress, Int64(s.count), out) }
        }
    }

    public func flip(_ dims: [Int], file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        let d = int64s(dims)
        return makeTensor(.flip, CallSite(file: file, line: line), inputs: [self], attributes: ["dims": .ints(dims)]) { out in
            d.withUnsafeBufferPointer { ct_flip(handle, $0.baseAddress, Int64(d.count), out) }
        }
    }

    public func roll(shifts: [Int], dims: [Int], file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        let site = CallSite(file: file, line: line)
        guard shifts.count == dims.count else {
            reportFailure("roll", site, message: "shifts \(shifts) and dims \(dims) must have the same length") { [self] }
            return .undefined()
        }
        let s = int64s(shifts), d = int64s(dims)
        return makeTensor(.roll, site, inputs: [self], attributes: ["shifts": .ints(shifts), "dims": .ints(dims)]) { out in
            s.withUnsafeBufferPointer { sp in
                d.withUnsafeBufferPointer { ct_roll(handle, sp.baseAddress, $0.baseAddress, Int64(s.count), out) }
            }
        }
    }

    public func repeated(_ repeats: [Int], file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        let r = int64s(repeats)
        return makeTensor(.repeat, CallSite(file: file, line: line), inputs: [self], attributes: ["repeats": .ints(repeats)]) { out in
            r.withUnsafeBufferPointer { ct_repeat(handle, $0.baseAddress, Int64(r.count), out) }
        }
    }

    /// Lower triangle (elements above `diagonal` zeroed).
    public func tril(_ diagonal: Int = 0, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.tril, CallSite(file: file, line: line), inputs: [self], attributes: ["diagonal": .int(diagonal)]) {
            ct_tril(handle, Int64(diagonal), $0)
        }
    }

    public func triu(_ diagonal: Int = 0, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.triu, CallSite(file: file, line: line), inputs: [self], attributes: ["diagonal": .int(diagonal)]) {
            ct_triu(handle, Int64(diagonal), $0)
        }
    }

    public func diagonal(offset: Int = 0, dim1: Int = 0, dim2: Int = 1, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.diagonal, CallSite(file: file, line: line), inputs: [self],
                   attributes: ["offset": .int(offset), "dim1": .int(dim1), "dim2": .int(dim2)]) {
            ct_diagonal(handle, Int64(offset), Int64(dim1), Int64(dim2), $0)
        }
    }
}

