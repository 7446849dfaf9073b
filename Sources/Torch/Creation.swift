import CTorch

// Creating tensors and moving data between Swift and libtorch.
extension Tensor {
    /// Copies `values` into a new CPU tensor of the given shape (default: 1-D).
    public convenience init<T: TensorElement>(_ values: [T], shape: [Int]? = nil,
                                              file: StaticString = #fileID, line: UInt = #line) {
        let shape = shape ?? [values.count]
        let handle = values.withUnsafeBytes { bytes in
            Tensor.bridgeCreate("from_data", CallSite(file: file, line: line)) { out in
                int64s(shape).withUnsafeBufferPointer {
                    ct_from_data(bytes.baseAddress, bytes.count, $0.baseAddress, Int64(shape.count), T.dtype.rawValue, out)
                }
            }
        }
        self.init(owning: handle)
    }

    /// A 0-dimensional tensor holding one value.
    public convenience init<T: TensorElement>(scalar value: T, file: StaticString = #fileID, line: UInt = #line) {
        self.init([value], shape: [], file: file, line: line)
    }

    /// Copies raw little-endian element bytes (e.g. bfloat16 read from a file) into a new CPU tensor.
    /// Throws when the byte count does not match the shape.
    public convenience init(bytes: UnsafeRawBufferPointer, shape: [Int], dtype: DType) throws {
        let expected = shape.reduce(1, *) * dtype.byteSize
        guard expected == bytes.count, shape.allSatisfy({ $0 >= 0 }) else {
            throw TorchError(operation: "from_data", message: "\(bytes.count) bytes cannot hold a \(dtype) tensor of shape \(shape) (\(expected) bytes)", site: nil, inputShapes: [])
        }
        let handle = try withTorchErrors {
            Tensor.bridgeCreate("from_data", nil) { out in
                int64s(shape).withUnsafeBufferPointer {
                    ct_from_data(bytes.baseAddress, bytes.count, $0.baseAddress, Int64(shape.count), dtype.rawValue, out)
                }
            }
        }
        self.init(owning: handle)
    }

    /// Wraps memory owned elsewhere (a memory-mapped file) without copying. `release` runs
    /// once libtorch no longer needs the memory.
    public static func wrapping(_ pointer: UnsafeMutableRawPointer, shape: [Int], dtype: DType,
                                release: @escaping @Sendable () -> Void) throws -> Tensor {
        final class Box { let release: @Sendable () -> Void; init(_ r: @escaping @Sendable () -> Void) { release = r } }
        let context = Unmanaged.passRetained(Box(release)).toOpaque()
        return try withTorchErrors {
            makeTensor(.fromBlob, nil, inputs: []) { out in
                int64s(shape).withUnsafeBufferPointer {
                    ct_from_blob(pointer, $0.baseAddress, Int64(shape.count), nil, dtype.rawValue, { ctx in
                        Unmanaged<Box>.fromOpaque(ctx!).takeRetainedValue().release()
                    }, context, out)
                }
            }
        }
    }

    /// Runs a creating call that has no tensor inputs and returns its handle (or an undefined one).
    static func bridgeCreate(_ op: StaticString, _ site: CallSite?,
                             _ call: (UnsafeMutablePointer<OpaquePointer?>) -> ct_status) -> OpaquePointer {
        var out: OpaquePointer?
        if call(&out) == 0, let out { return out }
        reportFailure(op, site) { [] }
        var undefined: OpaquePointer?
        _ = ct_undefined(&undefined)
        return undefined!
    }

    private static func shaped(_ op: OpName, _ shape: [Int], _ site: CallSite,
                               attributes: @autoclosure () -> [String: OpAttribute] = [:],
                               _ call: (UnsafePointer<Int64>?, Int64, UnsafeMutablePointer<OpaquePointer?>) -> ct_status) -> Tensor {
        let dims = int64s(shape)
        return makeTensor(op, site, inputs: [], attributes: ["shape": .ints(shape)].merging(attributes()) { a, _ in a }) { out in
            dims.withUnsafeBufferPointer { call($0.baseAddress, Int64(dims.count), out) }
        }
    }

    public static func zeros(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu,
                             file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        shaped(.zeros, shape, CallSite(file: file, line: line), attributes: ["dtype": .dtype(dtype)]) {
            ct_zeros($0, $1, dtype.rawValue, device.bridged, $2)
        }
    }

    public static func ones(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu,
                            file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        shaped(.ones, shape, CallSite(file: file, line: line), attributes: ["dtype": .dtype(dtype)]) {
            ct_ones($0, $1, dtype.rawValue, device.bridged, $2)
        }
    }

    /// Ones with the shape, dtype and device of `other`.
    public static func ones(like other: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        ones(other.shape, dtype: other.dtype, device: other.device, file: file, line: line)
    }

    /// Uninitialised memory (fill it before reading).
    public static func empty(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu,
                             file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        shaped(.empty, shape, CallSite(file: file, line: line), attributes: ["dtype": .dtype(dtype)]) {
            ct_empty($0, $1, dtype.rawValue, device.bridged, $2)
        }
    }

    public static func full(_ shape: [Int], _ value: some ScalarConvertible, dtype: DType = .float32, device: Device = .cpu,
                            file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        shaped(.full, shape, CallSite(file: file, line: line), attributes: ["value": .scalar(value.scalar), "dtype": .dtype(dtype)]) {
            ct_full($0, $1, value.scalar.bridged, dtype.rawValue, device.bridged, $2)
        }
    }

    /// Values in [start, end) spaced by `step`.
    public static func arange(_ start: some ScalarConvertible = 0, _ end: some ScalarConvertible, step: some ScalarConvertible = 1,
                              dtype: DType = .int64, device: Device = .cpu,
                              file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.arange, CallSite(file: file, line: line), inputs: [],
                   attributes: ["start": .scalar(start.scalar), "end": .scalar(end.scalar), "step": .scalar(step.scalar), "dtype": .dtype(dtype)]) {
            ct_arange(start.scalar.bridged, end.scalar.bridged, step.scalar.bridged, dtype.rawValue, device.bridged, $0)
        }
    }

    public static func linspace(_ start: Double, _ end: Double, count: Int, dtype: DType = .float32, device: Device = .cpu,
                                file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.linspace, CallSite(file: file, line: line), inputs: [],
                   attributes: ["start": .double(start), "end": .double(end), "steps": .int(count)]) {
            ct_linspace(start, end, Int64(count), dtype.rawValue, device.bridged, $0)
        }
    }

    public static func eye(_ n: Int, dtype: DType = .float32, device: Device = .cpu,
                           file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.eye, CallSite(file: file, line: line), inputs: [], attributes: ["n": .int(n)]) {
            ct_eye(Int64(n), dtype.rawValue, device.bridged, $0)
        }
    }

    /// Uniform samples in [0, 1).
    public static func rand(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu, generator: Generator? = nil,
                            file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        shaped(.rand, shape, CallSite(file: file, line: line)) {
            ct_rand($0, $1, dtype.rawValue, device.bridged, generator?.handle, $2)
        }
    }

    /// Standard normal samples.
    public static func randn(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu, generator: Generator? = nil,
                             file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        shaped(.randn, shape, CallSite(file: file, line: line)) {
            ct_randn($0, $1, dtype.rawValue, device.bridged, generator?.handle, $2)
        }
    }

    /// Integers uniformly drawn from [low, high).
    public static func randint(_ low: Int, _ high: Int, _ shape: [Int], dtype: DType = .int64, device: Device = .cpu,
                               generator: Generator? = nil, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        shaped(.randint, shape, CallSite(file: file, line: line)) {
            ct_randint(Int64(low), Int64(high), $0, $1, dtype.rawValue, device.bridged, generator?.handle, $2)
        }
    }

    /// A random permutation of 0..<n.
    public static func randperm(_ n: Int, dtype: DType = .int64, device: Device = .cpu, generator: Generator? = nil,
                                file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.randperm, CallSite(file: file, line: line), inputs: []) {
            ct_randperm(Int64(n), dtype.rawValue, device.bridged, generator?.handle, $0)
        }
    }

    /// 0/1 samples with probabilities given by `self`.
    public func bernoulli(generator: Generator? = nil, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.bernoulli, CallSite(file: file, line: line), inputs: [self]) { ct_bernoulli(handle, generator?.handle, $0) }
    }

    /// Fills in place with samples from U(low, high).
    public func uniform_(_ low: Double, _ high: Double, generator: Generator? = nil,
                         file: StaticString = #fileID, line: UInt = #line) {
        mutate(.uniformInPlace, CallSite(file: file, line: line), self, inputs: [self]) { ct_uniform_(handle, low, high, generator?.handle) }
    }

    /// Fills in place with samples from N(mean, std²).
    public func normal_(mean: Double = 0, std: Double = 1, generator: Generator? = nil,
                        file: StaticString = #fileID, line: UInt = #line) {
        mutate(.normalInPlace, CallSite(file: file, line: line), self, inputs: [self]) { ct_normal_(handle, mean, std, generator?.handle) }
    }
}

// MARK: - Reading values back

extension Tensor {
    /// The single value of a one-element tensor.
    public func item<T: TensorElement>(_ type: T.Type = T.self, file: StaticString = #fileID, line: UInt = #line) -> T {
        let site = CallSite(file: file, line: line)
        if T.dtype.isFloatingPoint {
            let v = query("item", site, Double.nan, inputs: [self]) { ct_item_double(handle, $0) }
            return T.fromItem(double: v, int: 0)
        }
        let v = query("item", site, Int64(0), inputs: [self]) { ct_item_int64(handle, $0) }
        return T.fromItem(double: Double(v), int: v)
    }

    /// All elements in row-major order, converted to `T` (moved to CPU and made contiguous first).
    public func toArray<T: TensorElement>(_ type: T.Type = T.self, file: StaticString = #fileID, line: UInt = #line) -> [T] {
        let source = dtype == T.dtype ? self : to(T.dtype, file: file, line: line)
        let n = source.count
        return [T](unsafeUninitializedCapacity: n) { buffer, initialized in
            let status = ct_copy_to_buffer(source.handle, buffer.baseAddress, n * MemoryLayout<T>.stride)
            if status != 0 {
                reportFailure("copy_to_buffer", CallSite(file: file, line: line)) { [source] }
                initialized = 0
                return
            }
            initialized = n
        }
    }

    /// Raw bytes of the elements (contiguous, on CPU), e.g. for writing bfloat16 to a file.
    public func bytes(file: StaticString = #fileID, line: UInt = #line) -> [UInt8] {
        let n = count * dtype.byteSize
        return [UInt8](unsafeUninitializedCapacity: n) { buffer, initialized in
            if ct_copy_to_buffer(handle, buffer.baseAddress, n) != 0 {
                reportFailure("copy_to_buffer", CallSite(file: file, line: line)) { [self] }
                initialized = 0
                return
            }
            initialized = n
        }
    }

    /// Gives `body` the tensor's memory to read or fill (CPU, contiguous tensors only).
    public func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) throws -> R {
        guard device == .cpu, isContiguous else {
            throw TorchError(operation: "data_ptr", message: "needs a contiguous CPU tensor; call .contiguous() / .to(.cpu) first", site: nil, inputShapes: [shape])
        }
        var pointer: UnsafeMutableRawPointer?
        if ct_data_ptr(handle, &pointer) != 0 {
            throw TorchError(operation: "data_ptr", message: String(cString: ct_last_error()), site: nil, inputShapes: [shape])
        }
        return try withExtendedLifetime(self) {
            try body(UnsafeMutableRawBufferPointer(start: pointer, count: count * dtype.byteSize))
        }
    }
}
