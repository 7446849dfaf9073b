import Foundation
import Torch

/// Seeded parameter initialisers (in place, without recording gradients). Pass a `Generator`
/// for a stream independent of the global one.
public enum Init {
    public static func zeros(_ t: Tensor) { withNoGrad { t.zero_() } }
    public static func ones(_ t: Tensor) { withNoGrad { t.fill_(1.0) } }
    public static func constant(_ t: Tensor, _ value: Double) { withNoGrad { t.fill_(value) } }

    public static func normal(_ t: Tensor, mean: Double = 0, std: Double = 1, generator: Generator? = nil) {
        withNoGrad { t.normal_(mean: mean, std: std, generator: generator) }
    }

    public static func uniform(_ t: Tensor, _ low: Double, _ high: Double, generator: Generator? = nil) {
        withNoGrad { t.uniform_(low, high, generator: generator) }
    }

    /// Normal(mean, std²) restricted to [a, b], by inverse-CDF sampling as torch's `trunc_normal_`.
    public static func truncatedNormal(_ t: Tensor, mean: Double = 0, std: Double = 1, a: Double = -2, b: Double = 2,
                                       generator: Generator? = nil) {
        func cdf(_ x: Double) -> Double { (1 + Foundation.erf(x / 2.0.squareRoot())) / 2 }
        let low = cdf((a - mean) / std), high = cdf((b - mean) / std)
        withNoGrad {
            let u = Tensor.empty(t.shape, dtype: .float64)
            u.uniform_(2 * low - 1, 2 * high - 1, generator: generator)
            let x = (u.erfinv() * (std * 2.0.squareRoot()) + mean).clamp(min: a, max: b)
            t.copy_(x)
        }
    }

    /// (fan_in, fan_out) of a weight: [out, in] or [out, in, kh, kw].
    public static func fans(_ shape: [Int]) -> (fanIn: Int, fanOut: Int) {
        precondition(shape.count >= 2, "fan in/out need a weight with at least 2 dimensions, got \(shape)")
        let receptive = shape.dropFirst(2).reduce(1, *)
        return (shape[1] * receptive, shape[0] * receptive)
    }

    public static func xavierUniform(_ t: Tensor, gain: Double = 1, generator: Generator? = nil) {
        let (fanIn, fanOut) = fans(t.shape)
        let bound = gain * (6.0 / Double(fanIn + fanOut)).squareRoot()
        uniform(t, -bound, bound, generator: generator)
    }

    public static func xavierNormal(_ t: Tensor, gain: Double = 1, generator: Generator? = nil) {
        let (fanIn, fanOut) = fans(t.shape)
        normal(t, std: gain * (2.0 / Double(fanIn + fanOut)).squareRoot(), generator: generator)
    }

    /// He initialisation for leaky-ReLU slope `a` over fan-in; `a = √5` is torch's default for
    /// Linear and Conv2d weights (U(-1/√fan_in, 1/√fan_in)).
    public static func kaimingUniform(_ t: Tensor, a: Double = 0, generator: Generator? = nil) {
        let gain = (2.0 / (1 + a * a)).squareRoot()
        let bound = gain * (3.0 / Double(fans(t.shape).fanIn)).squareRoot()
        uniform(t, -bound, bound, generator: generator)
    }

    public static func kaimingNormal(_ t: Tensor, a: Double = 0, generator: Generator? = nil) {
        let gain = (2.0 / (1 + a * a)).squareRoot()
        normal(t, std: gain / Double(fans(t.shape).fanIn).squareRoot(), generator: generator)
    }
}
