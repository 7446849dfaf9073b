/// SplitMix64: a tiny, fast, seedable generator. Every random decision of the data pipeline
/// derives from (seed, epoch, sample index), so results do not depend on thread count.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// A generator for one sample of one epoch, independent of every other (seed, epoch, index).
    public init(seed: UInt64, epoch: Int, index: Int, stream: UInt64 = 0) {
        var s = Self.mix(seed ^ 0x9E37_79B9_7F4A_7C15)
        s = Self.mix(s ^ UInt64(truncatingIfNeeded: epoch) &* 0xBF58_476D_1CE4_E5B9)
        s = Self.mix(s ^ UInt64(truncatingIfNeeded: index) &* 0x94D0_49BB_1331_11EB)
        state = Self.mix(s ^ stream &* 0xD6E8_FEB8_6659_FD93)
    }

    /// FNV-1a of the UTF-8 bytes: the same number for the same string in every process
    /// (Swift's `hashValue` is seeded per process).
    public static func stableHash(_ string: String) -> Int {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in string.utf8 { h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        return Int(truncatingIfNeeded: h)
    }

    /// SplitMix64's finaliser: a bijective scramble of 64 bits.
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.mix(state &- 0x9E37_79B9_7F4A_7C15)
    }

    /// Uniform in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Uniform in [low, high).
    public mutating func uniform(_ low: Double, _ high: Double) -> Double { low + (high - low) * unit() }

    /// True with probability p.
    public mutating func chance(_ p: Double) -> Bool { unit() < p }
}
