/// Compares autograd's gradients with central finite differences, like torch.autograd.gradcheck.
/// Use float64 inputs; integer inputs (indices) are passed through unchecked.
public enum GradientCheck {
    public struct Mismatch: CustomStringConvertible, Sendable {
        public let input: Int
        public let element: Int
        public let analytic: Double
        public let numeric: Double
        public var description: String { "input \(input) element \(element): autograd \(analytic) vs finite difference \(numeric)" }
    }

    /// Returns every element whose gradient differs by more than `atol + rtol * |numeric|`.
    ///
    /// The scalar checked is `sum(f(x) * w)` with fixed random weights `w`, so every output
    /// element contributes with a different weight.
    public static func mismatches(_ inputs: [Tensor], eps: Double = 1e-6, atol: Double = 1e-5, rtol: Double = 1e-3,
                                  _ f: ([Tensor]) -> Tensor) -> [Mismatch] {
        let checked = inputs.map { $0.dtype.isFloatingPoint }
        let leaves = inputs.enumerated().map { i, t in checked[i] ? t.detach().requiringGrad() : t }
        let output = f(leaves)
        let weights = Tensor.randn(output.shape, dtype: output.dtype, generator: Generator(seed: 1234))
        output.mul(weights).sum().backward()

        func objective(_ xs: [Tensor]) -> Double {
            withNoGrad { f(xs).mul(weights).sum().item(Double.self) }
        }

        var result: [Mismatch] = []
        for (i, input) in inputs.enumerated() where checked[i] {
            let analytic = leaves[i].grad?.toArray(Double.self) ?? [Double](repeating: 0, count: input.count)
            var values = input.toArray(Double.self)
            for j in values.indices {
                let original = values[j]
                var xs = inputs.map { $0.detach() }
                values[j] = original + eps
                xs[i] = Tensor(values, shape: input.shape).to(input.dtype)
                let plus = objective(xs)
                values[j] = original - eps
                xs[i] = Tensor(values, shape: input.shape).to(input.dtype)
                let minus = objective(xs)
                values[j] = original
                let numeric = (plus - minus) / (2 * eps)
                if Swift.abs(analytic[j] - numeric) > atol + rtol * Swift.abs(numeric) {
                    result.append(Mismatch(input: i, element: j, analytic: analytic[j], numeric: numeric))
                }
            }
        }
        return result
    }
}
