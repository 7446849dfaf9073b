import CTorch

/// An n-dimensional array on libtorch, with autograd. Owns exactly one bridge handle,
/// released when the last Swift reference goes away.
public final class Tensor: @unchecked Sendable {
    // `package`: the Distributed module hands tensors to its own bridge calls.
    package let handle: OpaquePointer

    package init(owning handle: OpaquePointer) { self.handle = handle }

    deinit { ct_tensor_free(handle) }

    /// A tensor with no data; what an op returns after a failure inside `withTorchErrors`.
    static func undefined() -> Tensor {
        var out: OpaquePointer?
        guard ct_undefined(&out) == 0, let out else { fatalError("ctorch: cannot allocate an undefined tensor") }
        return Tensor(owning: out)
    }
}

// MARK: - Running bridge calls

/// The one path every op takes: call the bridge, handle failure, tell the recorder.

func makeTensor(
    _ op: OpName, _ site: CallSite?,
    inputs: @autoclosure () -> [Tensor],
    attributes: @autoclosure () -> [String: OpAttribute] = [:],
    _ call: (UnsafeMutablePointer<OpaquePointer?>) -> ct_status
) -> Tensor {
    var out: OpaquePointer?
    guard call(&out) == 0, let out else {
        reportFailure(op, site, inputs: inputs)
        return .undefined()
    }
    let result = Tensor(owning: out)
    recordIfActive(op, inputs: inputs, outputs: { [result] }, attributes: attributes)
    return result
}

/// Same as `makeTensor` for ops with two results (values and indices).

func makeTensorPair(
    _ op: OpName, _ site: CallSite?,
    inputs: @autoclosure () -> [Tensor],
    attributes: @autoclosure () -> [String: OpAttribute] = [:],
    _ call: (UnsafeMutablePointer<OpaquePointer?>, UnsafeMutablePointer<OpaquePointer?>) -> ct_status
) -> (Tensor, Tensor) {
    var a: OpaquePointer?, b: OpaquePointer?
    guard call(&a, &b) == 0, let a, let b else {
        reportFailure(op, site, inputs: inputs)
        return (.undefined(), .undefined())
    }
    let result = (Tensor(owning: a), Tensor(owning: b))
    recordIfActive(op, inputs: inputs, outputs: { [result.0, result.1] }, attributes: attributes)
    return result
}

/// Same as `makeTensor` for ops returning a list (split, chunk).

func makeTensorList(
    _ op: OpName, _ site: CallSite?,
    inputs: @autoclosure () -> [Tensor],
    attributes: @autoclosure () -> [String: OpAttribute] = [:],
    _ call: (UnsafeMutablePointer<OpaquePointer?>) -> ct_status
) -> [Tensor] {
    var list: OpaquePointer?
    guard call(&list) == 0, let list else {
        reportFailure(op, site, inputs: inputs)
        return []
    }
    defer { ct_tensor_list_free(list) }
    var count: Int64 = 0
    _ = ct_tensor_list_size(list, &count)
    var result: [Tensor] = []
    result.reserveCapacity(Int(count))
    for i in 0..<count {
        var t: OpaquePointer?
        guard ct_tensor_list_get(list, i, &t) == 0, let t else {
            reportFailure(op, site, inputs: inputs)
            return []
        }
        result.append(Tensor(owning: t))
    }
    recordIfActive(op, inputs: inputs, outputs: { result }, attributes: attributes)
    return result
}

/// For bridge calls that return a plain value or act in place: on failure, reports and
/// returns `fallback`.

func query<T>(_ op: StaticString, _ site: CallSite?, _ fallback: T, inputs: @autoclosure () -> [Tensor] = [],
              _ call: (UnsafeMutablePointer<T>) -> ct_status) -> T {
    var value = fallback
    if call(&value) != 0 {
        reportFailure(op, site, inputs: inputs)
        return fallback
    }
    return value
}

/// For in-place ops: runs the call, reports failure, records the op with `self` as output.

func mutate(_ op: OpName, _ site: CallSite?, _ target: Tensor, inputs: @autoclosure () -> [Tensor],
            attributes: @autoclosure () -> [String: OpAttribute] = [:], _ call: () -> ct_status) {
    if call() != 0 {
        reportFailure(op, site, inputs: inputs)
        return
    }
    recordIfActive(op, inputs: inputs, outputs: { [target] }, attributes: attributes)
}

/// Calls `body` with the bridge handles of `tensors` as a contiguous C array.

/// An empty list passes a valid pointer to one unused slot (an empty array's buffer may have none).
func withHandles<R>(_ tensors: [Tensor], _ body: (UnsafePointer<OpaquePointer?>, Int64) -> R) -> R {
    let handles: [OpaquePointer?] = tensors.isEmpty ? [nil] : tensors.map { $0.handle }
    return withExtendedLifetime(tensors) {
        handles.withUnsafeBufferPointer { body($0.baseAddress!, Int64(tensors.count)) }
    }
}


func int64s(_ values: [Int]) -> [Int64] { values.map(Int64.init) }

// MARK: - Metadata

extension Tensor {
    /// Sizes of each dimension.
    public var shape: [Int] {
        let n = query("dim", nil, Int64(0)) { ct_dim(handle, $0) }
        var sizes = [Int64](repeating: 0, count: Int(n))
        if ct_sizes(handle, &sizes, n) != 0 { reportFailure("sizes", nil) { [] } }
        return sizes.map(Int.init)
    }

    /// `shape`, or nil for an undefined tensor (used in error messages).
    var shapeIfDefined: [Int]? {
        var defined = false
        guard ct_defined(handle, &defined) == 0, defined else { return nil }
        return shape
    }

    public var strides: [Int] {
        let n = query("dim", nil, Int64(0)) { ct_dim(handle, $0) }
        var values = [Int64](repeating: 0, count: Int(n))
        if ct_strides(handle, &values, n) != 0 { reportFailure("strides", nil) { [] } }
        return values.map(Int.init)
    }

    /// Number of dimensions.
    public var rank: Int { Int(query("dim", nil, Int64(0)) { ct_dim(handle, $0) }) }
    /// Number of elements.
    public var count: Int { Int(query("numel", nil, Int64(0)) { ct_numel(handle, $0) }) }
    public var isDefined: Bool { query("defined", nil, false) { ct_defined(handle, $0) } }
    public var isContiguous: Bool { query("is_contiguous", nil, false) { ct_is_contiguous(handle, $0) } }

    public var dtype: DType {
        let code = query("scalar_type", nil, Int32(0)) { ct_scalar_type(handle, $0) }
        return DType(rawValue: code) ?? .float32
    }

    public var device: Device {
        Device(query("device", nil, ct_device(type: 0, index: 0)) { ct_device_of(handle, $0) })
    }

    /// Size of one dimension; negative counts from the end. A dimension the tensor lacks is a
    /// failure like any op's: inside `withTorchErrors` (where a failed op leaves an undefined
    /// tensor, of rank 0) it is recorded and 1 is returned, so shape arithmetic carries on until
    /// the scope throws; outside, it stops the program with the call site.
    public func size(_ dim: Int) -> Int {
        let s = shape
        let index = dim < 0 ? dim + s.count : dim
        guard s.indices.contains(index) else {
            reportFailure("size", nil, message: "dimension \(dim) is out of range for a tensor of rank \(s.count)") { [self] }
            return 1
        }
        return s[index]
    }

    /// Whether two tensors share storage (one is a view of the other).
    public func sharesStorage(with other: Tensor) -> Bool {
        query("is_alias_of", nil, false) { ct_same_storage(handle, other.handle, $0) }
    }
}

extension Tensor: CustomStringConvertible {
    /// libtorch's own printout of the values.
    public var description: String {
        var out: UnsafeMutablePointer<CChar>?
        guard ct_to_string(handle, &out) == 0, let out else { return "Tensor(undefined)" }
        defer { ct_string_free(out) }
        return String(cString: out)
    }
}
