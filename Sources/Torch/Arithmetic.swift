import CTorch

// Elementwise arithmetic, math functions, comparisons and logic, with operators.
extension Tensor {
    func unary(_ op: OpName, _ site: CallSite,
               _ call: (OpaquePointer, UnsafeMutablePointer<OpaquePointer?>) -> ct_status) -> Tensor {
        makeTensor(op, site, inputs: [self]) { call(handle, $0) }
    }

    func binary(_ op: OpName, _ other: Tensor, _ site: CallSite,
                _ call: (OpaquePointer, OpaquePointer, UnsafeMutablePointer<OpaquePointer?>) -> ct_status) -> Tensor {
        makeTensor(op, site, inputs: [self, other]) { call(handle, other.handle, $0) }
    }

    func withScalar(_ op: OpName, _ s: Scalar, _ site: CallSite,
                    _ call: (OpaquePointer, ct_scalar, UnsafeMutablePointer<OpaquePointer?>) -> ct_status) -> Tensor {
        makeTensor(op, site, inputs: [self], attributes: ["scalar": .scalar(s)]) { call(handle, s.bridged, $0) }
    }

    /// `self + alpha * other`.
    public func add(_ other: Tensor, alpha: some ScalarConvertible = 1, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.add, CallSite(file: file, line: line), inputs: [self, other], attributes: ["alpha": .scalar(alpha.scalar)]) {
            ct_add(handle, other.handle, alpha.scalar.bridged, $0)
        }
    }

    /// `self - alpha * other`.
    public func sub(_ other: Tensor, alpha: some ScalarConvertible = 1, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.sub, CallSite(file: file, line: line), inputs: [self, other], attributes: ["alpha": .scalar(alpha.scalar)]) {
            ct_sub(handle, other.handle, alpha.scalar.bridged, $0)
        }
    }

    public func mul(_ other: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        binary(.mul, other, CallSite(file: file, line: line), ct_mul)
    }
    public func div(_ other: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        binary(.div, other, CallSite(file: file, line: line), ct_div)
    }
    public func pow(_ exponent: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        binary(.pow, exponent, CallSite(file: file, line: line), ct_pow)
    }
    public func maximum(_ other: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        binary(.maximum, other, CallSite(file: file, line: line), ct_maximum)
    }
    public func minimum(_ other: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        binary(.minimum, other, CallSite(file: file, line: line), ct_minimum)
    }
    public func atan2(_ other: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        binary(.atan2, other, CallSite(file: file, line: line), ct_atan2)
    }

    public func add(_ s: some ScalarConvertible, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        withScalar(.addScalar, s.scalar, CallSite(file: file, line: line), ct_add_scalar)
    }
    public func sub(_ s: some ScalarConvertible, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        withScalar(.subScalar, s.scalar, CallSite(file: file, line: line), ct_sub_scalar)
    }
    /// `s - self`.
    public func rsub(_ s: some ScalarConvertible, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        withScalar(.rsubScalar, s.scalar, CallSite(file: file, line: line), ct_rsub_scalar)
    }
    public func mul(_ s: some ScalarConvertible, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        withScalar(.mulScalar, s.scalar, CallSite(file: file, line: line), ct_mul_scalar)
    }
    public func div(_ s: some ScalarConvertible, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        withScalar(.divScalar, s.scalar, CallSite(file: file, line: line), ct_div_scalar)
    }
    public func pow(_ s: some ScalarConvertible, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        withScalar(.powScalar, s.scalar, CallSite(file: file, line: line), ct_pow_scalar)
    }
    /// `s ** self`.
    public func rpow(_ s: some ScalarConvertible, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        withScalar(.rpowScalar, s.scalar, CallSite(file: file, line: line), ct_rpow_scalar)
    }
    public func fmod(_ s: some ScalarConvertible, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        withScalar(.fmodScalar, s.scalar, CallSite(file: file, line: line), ct_fmod_scalar)
    }

    public func neg(file: StaticString = #fileID, line: UInt = #line) -> Tensor { unary(.neg, CallSite(file: file, line: line), ct_neg) }
    public func exp(file: StaticString = #fileID, line: UInt = #line) -> Tensor { unary(.exp, CallSite(file: file, line: line), ct_exp) }
    public func log(file: StaticString = #fileID, line: UInt = #line) -> Tensor { unary(.log, CallSite(file: file, line: line), ct_log) }
    public func sqrt(file: StaticString = #fileID, line: UInt = #line) -> Tensor { unary(.sqrt, CallSite(file: file, line: line), ct_sqrt) }
    public func rsqrt(file: StaticString = #fileID, line: UInt = #line) -> Tensor { unary(.rsqrt, CallSite(file: file, line: line), ct_rsqrt) }
    public func abs(file: StaticString = #fileID, line: UInt = #line) -> Tensor { unary(.abs, CallSite(file: file, line: line), ct_abs) }
    public func tanh(file: StaticString = #fileID, line: UInt = #line) -> Tensor { unary(.tanh, CallSite(file: file, line: line), ct_tanh) }
    public func erf(file: StaticString = #fileID, line: UInt = #line) -> Tensor { unary(.erf, CallSite(file: file, line: line), ct_erf) }
    public func sigmoid(file: StaticString = #fileID, line: UInt = #line) -> Tensor { unary(.sigmoid, CallSite(file: file, line: line), ct_sigmoid) }
    public func relu(file: StaticString = #fileID, line: UInt = #line) -> Tensor { unary(.relu, CallSite(file: file, line: line), ct_relu) }
    public func sin(file: StaticString = #fileID, line: UInt = #line) -> Tensor { unary(.sin, CallSite(file: file, line: line), ct_sin) }
    public func cos(file: StaticString = #fileID, line: UInt = #line) -> Tensor { unary(.cos, CallSite(file: file, line: line), ct_cos) }
    public func floor(file: StaticString = #fileID, line: UInt = #line) -> Tensor { unary(.floor, CallSite(file: file, line: line), ct_floor) }
    public func ceil(file: StaticString = #fileID, line: UInt = #line) -> Tensor { unary(.ceil, CallSite(file: file, line: line), ct_ceil) }
    /// Rounds half to even, as torch.round.
    public func round(file: StaticString = #fileID, line: UInt = #line) -> Tensor { unary(.round, CallSite(file: file, line: line), ct_round) }
    public func sign(file: StaticString = #fileID, line: UInt = #line) -> Tensor { unary(.sign, CallSite(file: file, line: line), ct_sign) }
    public func erfinv(file: StaticString = #fileID, line: UInt = #line) -> Tensor { unary(.erfinv, CallSite(file: file, line: line), ct_erfinv) }
    public func reciprocal(file: StaticString = #fileID, line: UInt = #line) -> Tensor { unary(.reciprocal, CallSite(file: file, line: line), ct_reciprocal) }
    public func isNaN(file: StaticString = #fileID, line: UInt = #line) -> Tensor { unary(.isnan, CallSite(file: file, line: line), ct_isnan) }
    public func isFinite(file: StaticString = #fileID, line: UInt = #line) -> Tensor { unary(.isfinite, CallSite(file: file, line: line), ct_isfinite) }
    public func logicalNot(file: StaticString = #fileID, line: UInt = #line) -> Tensor { unary(.logicalNot, CallSite(file: file, line: line), ct_logical_not) }
    public func logicalAnd(_ other: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        binary(.logicalAnd, other, CallSite(file: file, line: line), ct_logical_and)
    }
    public func logicalOr(_ other: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        binary(.logicalOr, other, CallSite(file: file, line: line), ct_logical_or)
    }
    public func logicalXor(_ other: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        binary(.logicalXor, other, CallSite(file: file, line: line), ct_logical_xor)
    }

    /// Limits values to [min, max]; either bound may be absent.
    public func clamp(min: Double? = nil, max: Double? = nil, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        let attributes: [String: OpAttribute] = ["min": min.map { .double($0) } ?? .absent, "max": max.map { .double($0) } ?? .absent]
        return makeTensor(.clamp, CallSite(file: file, line: line), inputs: [self], attributes: attributes) { out in
            withOptionalPointers(min, max) { ct_clamp(handle, $0, $1, out) }
        }
    }

    /// Limits values elementwise to [min, max] given as tensors.
    public func clamp(min: Tensor?, max: Tensor?, file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        makeTensor(.clampTensor, CallSite(file: file, line: line), inputs: [self] + [min, max].compactMap { $0 }) {
            ct_clamp_tensor(handle, min?.handle, max?.handle, $0)
        }
    }

    // MARK: comparisons

    func compare(_ op: OpName, _ code: ct_comparison, _ other: Tensor, _ site: CallSite) -> Tensor {
        makeTensor(op, site, inputs: [self, other]) { ct_compare(handle, other.handle, Int32(code.rawValue), $0) }
    }

    func compare(_ op: OpName, _ code: ct_comparison, _ s: Scalar, _ site: CallSite) -> Tensor {
        makeTensor(op, site, inputs: [self], attributes: ["scalar": .scalar(s)]) {
            ct_compare_scalar(handle, s.bridged, Int32(code.rawValue), $0)
        }
    }

    public func eq(_ other: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Tensor { compare(.eq, CT_EQ, other, CallSite(file: file, line: line)) }
    public func ne(_ other: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Tensor { compare(.ne, CT_NE, other, CallSite(file: file, line: line)) }
    public func lt(_ other: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Tensor { compare(.lt, CT_LT, other, CallSite(file: file, line: line)) }
    public func le(_ other: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Tensor { compare(.le, CT_LE, other, CallSite(file: file, line: line)) }
    public func gt(_ other: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Tensor { compare(.gt, CT_GT, other, CallSite(file: file, line: line)) }
    public func ge(_ other: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Tensor { compare(.ge, CT_GE, other, CallSite(file: file, line: line)) }
    public func eq(_ s: some ScalarConvertible, file: StaticString = #fileID, line: UInt = #line) -> Tensor { compare(.eqScalar, CT_EQ, s.scalar, CallSite(file: file, line: line)) }
    public func ne(_ s: some ScalarConvertible, file: StaticString = #fileID, line: UInt = #line) -> Tensor { compare(.neScalar, CT_NE, s.scalar, CallSite(file: file, line: line)) }
    public func lt(_ s: some ScalarConvertible, file: StaticString = #fileID, line: UInt = #line) -> Tensor { compare(.ltScalar, CT_LT, s.scalar, CallSite(file: file, line: line)) }
    public func le(_ s: some ScalarConvertible, file: StaticString = #fileID, line: UInt = #line) -> Tensor { compare(.leScalar, CT_LE, s.scalar, CallSite(file: file, line: line)) }
    public func gt(_ s: some ScalarConvertible, file: StaticString = #fileID, line: UInt = #line) -> Tensor { compare(.gtScalar, CT_GT, s.scalar, CallSite(file: file, line: line)) }
    public func ge(_ s: some ScalarConvertible, file: StaticString = #fileID, line: UInt = #line) -> Tensor { compare(.geScalar, CT_GE, s.scalar, CallSite(file: file, line: line)) }

    /// Same shape and exactly the same values.
    public func equal(_ other: Tensor, file: StaticString = #fileID, line: UInt = #line) -> Bool {
        query("equal", CallSite(file: file, line: line), false, inputs: [self, other]) { ct_equal(handle, other.handle, $0) }
    }

    /// `|a - b| <= atol + rtol * |b|` everywhere, as torch.allclose.
    public func allClose(_ other: Tensor, rtol: Double = 1e-5, atol: Double = 1e-8, equalNaN: Bool = false,
                         file: StaticString = #fileID, line: UInt = #line) -> Bool {
        query("allclose", CallSite(file: file, line: line), false, inputs: [self, other]) {
            ct_allclose(handle, other.handle, rtol, atol, equalNaN, $0)
        }
    }
}

/// Passes an optional value to C as a nullable pointer.
func withOptionalPointer<T, R>(_ value: T?, _ body: (UnsafePointer<T>?) -> R) -> R {
    guard let value else { return body(nil) }
    return withUnsafePointer(to: value) { body($0) }
}

/// Passes optional doubles to C as nullable pointers.
func withOptionalPointers<R>(_ a: Double?, _ b: Double?, _ body: (UnsafePointer<Double>?, UnsafePointer<Double>?) -> R) -> R {
    var a0 = a ?? 0, b0 = b ?? 0
    return withUnsafePointer(to: &a0) { pa in
        withUnsafePointer(to: &b0) { pb in body(a == nil ? nil : pa, b == nil ? nil : pb) }
    }
}

// MARK: - Operators

// Infix operators cannot take a call site; for a located error use the named method (`a.add(b)`).
extension Tensor {
    public static func + (a: Tensor, b: Tensor) -> Tensor { a.add(b) }
    public static func - (a: Tensor, b: Tensor) -> Tensor { a.sub(b) }
    public static func * (a: Tensor, b: Tensor) -> Tensor { a.mul(b) }
    public static func / (a: Tensor, b: Tensor) -> Tensor { a.div(b) }
    public static prefix func - (a: Tensor) -> Tensor { a.neg() }

    public static func + <S: ScalarConvertible>(a: Tensor, s: S) -> Tensor { a.add(s) }
    public static func - <S: ScalarConvertible>(a: Tensor, s: S) -> Tensor { a.sub(s) }
    public static func * <S: ScalarConvertible>(a: Tensor, s: S) -> Tensor { a.mul(s) }
    public static func / <S: ScalarConvertible>(a: Tensor, s: S) -> Tensor { a.div(s) }
    public static func + <S: ScalarConvertible>(s: S, a: Tensor) -> Tensor { a.add(s) }
    public static func - <S: ScalarConvertible>(s: S, a: Tensor) -> Tensor { a.rsub(s) }
    public static func * <S: ScalarConvertible>(s: S, a: Tensor) -> Tensor { a.mul(s) }
    public static func / <S: ScalarConvertible>(s: S, a: Tensor) -> Tensor { a.reciprocal().mul(s) }

    public static func .== (a: Tensor, b: Tensor) -> Tensor { a.eq(b) }
    public static func .!= (a: Tensor, b: Tensor) -> Tensor { a.ne(b) }
    public static func .< (a: Tensor, b: Tensor) -> Tensor { a.lt(b) }
    public static func .<= (a: Tensor, b: Tensor) -> Tensor { a.le(b) }
    public static func .> (a: Tensor, b: Tensor) -> Tensor { a.gt(b) }
    public static func .>= (a: Tensor, b: Tensor) -> Tensor { a.ge(b) }
    public static func .== <S: ScalarConvertible>(a: Tensor, s: S) -> Tensor { a.eq(s) }
    public static func .!= <S: ScalarConvertible>(a: Tensor, s: S) -> Tensor { a.ne(s) }
    public static func .< <S: ScalarConvertible>(a: Tensor, s: S) -> Tensor { a.lt(s) }
    public static func .<= <S: ScalarConvertible>(a: Tensor, s: S) -> Tensor { a.le(s) }
    public static func .> <S: ScalarConvertible>(a: Tensor, s: S) -> Tensor { a.gt(s) }
    public static func .>= <S: ScalarConvertible>(a: Tensor, s: S) -> Tensor { a.ge(s) }
    public static func .& (a: Tensor, b: Tensor) -> Tensor { a.logicalAnd(b) }
    public static func .| (a: Tensor, b: Tensor) -> Tensor { a.logicalOr(b) }
    public static prefix func .! (a: Tensor) -> Tensor { a.logicalNot() }
}

infix operator .== : ComparisonPrecedence
infix operator .!= : ComparisonPrecedence
infix operator .< : ComparisonPrecedence
infix operator .<= : ComparisonPrecedence
infix operator .> : ComparisonPrecedence
infix operator .>= : ComparisonPrecedence
infix operator .& : LogicalConjunctionPrecedence
infix operator .| : LogicalDisjunctionPrecedence
prefix operator .!

// MARK: - In place (optimizers, initialisers, gradient clipping)

extension Tensor {
    /// `self += alpha * other`.
    public func add_(_ other: Tensor, alpha: some ScalarConvertible = 1, file: StaticString = #fileID, line: UInt = #line) {
        mutate(.addInPlace, CallSite(file: file, line: line), self, inputs: [self, other]) { ct_add_(handle, other.handle, alpha.scalar.bridged) }
    }
    public func add_(_ s: some ScalarConvertible, file: StaticString = #fileID, line: UInt = #line) {
        mutate(.addScalarInPlace, CallSite(file: file, line: line), self, inputs: [self]) { ct_add_scalar_(handle, s.scalar.bridged) }
    }
    public func mul_(_ other: Tensor, file: StaticString = #fileID, line: UInt = #line) {
        mutate(.mulInPlace, CallSite(file: file, line: line), self, inputs: [self, other]) { ct_mul_(handle, other.handle) }
    }
    public func mul_(_ s: some ScalarConvertible, file: StaticString = #fileID, line: UInt = #line) {
        mutate(.mulScalarInPlace, CallSite(file: file, line: line), self, inputs: [self]) { ct_mul_scalar_(handle, s.scalar.bridged) }
    }
    public func div_(_ other: Tensor, file: StaticString = #fileID, line: UInt = #line) {
        mutate(.divInPlace, CallSite(file: file, line: line), self, inputs: [self, other]) { ct_div_(handle, other.handle) }
    }
    /// `self += value * a * b`.
    public func addcmul_(_ a: Tensor, _ b: Tensor, value: some ScalarConvertible = 1, file: StaticString = #fileID, line: UInt = #line) {
        mutate(.addcmulInPlace, CallSite(file: file, line: line), self, inputs: [self, a, b]) { ct_addcmul_(handle, a.handle, b.handle, value.scalar.bridged) }
    }
    /// `self += value * a / b`.
    public func addcdiv_(_ a: Tensor, _ b: Tensor, value: some ScalarConvertible = 1, file: StaticString = #fileID, line: UInt = #line) {
        mutate(.addcdivInPlace, CallSite(file: file, line: line), self, inputs: [self, a, b]) { ct_addcdiv_(handle, a.handle, b.handle, value.scalar.bridged) }
    }
    /// `self += weight * (end - self)`.
    public func lerp_(_ end: Tensor, weight: some ScalarConvertible, file: StaticString = #fileID, line: UInt = #line) {
        mutate(.lerpInPlace, CallSite(file: file, line: line), self, inputs: [self, end]) { ct_lerp_(handle, end.handle, weight.scalar.bridged) }
    }
    public func sqrt_(file: StaticString = #fileID, line: UInt = #line) {
        mutate(.sqrtInPlace, CallSite(file: file, line: line), self, inputs: [self]) { ct_sqrt_(handle) }
    }
    public func clamp_(min: Double? = nil, max: Double? = nil, file: StaticString = #fileID, line: UInt = #line) {
        mutate(.clampInPlace, CallSite(file: file, line: line), self, inputs: [self]) { withOptionalPointers(min, max) { ct_clamp_(handle, $0, $1) } }
    }
    /// Copies `source` (broadcast, converted) into this tensor's memory.
    public func copy_(_ source: Tensor, file: StaticString = #fileID, line: UInt = #line) {
        mutate(.copyInPlace, CallSite(file: file, line: line), self, inputs: [self, source]) { ct_copy_(handle, source.handle) }
    }
    /// Makes this tensor use `data`'s values, dtype and device while staying the same object
    /// (optimizer state and recorders keyed by identity keep working). Autograd history is not kept.
    public func setData(_ data: Tensor, file: StaticString = #fileID, line: UInt = #line) {
        mutate(.setData, CallSite(file: file, line: line), self, inputs: [self, data]) { ct_set_data(handle, data.handle) }
    }
    public func zero_(file: StaticString = #fileID, line: UInt = #line) {
        mutate(.zeroInPlace, CallSite(file: file, line: line), self, inputs: [self]) { ct_zero_(handle) }
    }
    public func fill_(_ value: some ScalarConvertible, file: StaticString = #fileID, line: UInt = #line) {
        mutate(.fillInPlace, CallSite(file: file, line: line), self, inputs: [self]) { ct_fill_(handle, value.scalar.bridged) }
    }
}

// MARK: - Mixed precision: torch.amp.GradScaler's kernels, so that loss scaling is torch's bit for bit

extension Tensor {
    /// `torch._amp_foreach_non_finite_check_and_unscale_`: multiplies each of `tensors` (one
    /// device and dtype) by `invScale` (float32, 0-dim) in place and sets `foundInf` (float32,
    /// 0-dim) to 1 when any element is inf or NaN; it is never set back to 0.
    public static func ampNonFiniteCheckAndUnscale_(_ tensors: [Tensor], foundInf: Tensor, invScale: Tensor,
                                                    file: StaticString = #fileID, line: UInt = #line) {
        mutate(.ampForeachNonFiniteCheckAndUnscaleInPlace, CallSite(file: file, line: line), foundInf, inputs: tensors + [foundInf, invScale]) {
            withHandles(tensors) { ct_amp_foreach_non_finite_check_and_unscale_($0, $1, foundInf.handle, invScale.handle) }
        }
    }

    /// `torch._amp_update_scale_` on this scale (float32, 0-dim) and `growthTracker` (int32,
    /// 0-dim): when `foundInf` > 0 the scale × `backoffFactor` and the tracker back to 0; else the
    /// tracker counts the step, and every `growthInterval` steps the scale × `growthFactor` (if
    /// that stays finite) and the tracker restarts.
    public func ampUpdateScale_(growthTracker: Tensor, foundInf: Tensor, growthFactor: Double, backoffFactor: Double, growthInterval: Int,
                                file: StaticString = #fileID, line: UInt = #line) {
        mutate(.ampUpdateScaleInPlace, CallSite(file: file, line: line), self, inputs: [self, growthTracker, foundInf]) {
            ct_amp_update_scale_(handle, growthTracker.handle, foundInf.handle, growthFactor, backoffFactor, Int64(growthInterval))
        }
    }
}
