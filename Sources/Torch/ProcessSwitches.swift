import CTorch
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Process-wide numeric switches: speed against bit-for-bit reproducibility. They change how
/// CUDA kernels compute; set them once, before training starts, not while ops run on other threads.
extension Torch {
    /// TF32 tensor cores for float32 matmuls (cuBLAS) and convolutions (cuDNN) on Ampere and
    /// newer GPUs: several times faster, with a 10-bit mantissa in the products. Reading gives the
    /// matmul setting, which libtorch starts with off (its cuDNN setting starts on; setting this
    /// sets both). CPU results never change.
    public static var allowTF32: Bool {
        get { query("allow_tf32", nil, false) { ct_allow_tf32($0) } }
        set { if ct_set_allow_tf32(newValue) != 0 { reportFailure("set_allow_tf32", nil) { [] } } }
    }

    /// Deterministic algorithms everywhere: an op without a deterministic implementation fails
    /// (rather than warns), cuDNN uses deterministic kernels and its autotuner is switched off.
    /// Enabling also calls `prepareDeterministicCUDA()`; on CUDA it costs some speed.
    public static var deterministicAlgorithms: Bool {
        get { query("deterministic_algorithms", nil, false) { ct_deterministic_algorithms($0) } }
        set {
            if newValue { prepareDeterministicCUDA() }
            if ct_set_deterministic_algorithms(newValue) != 0 { reportFailure("set_deterministic_algorithms", nil) { [] } }
        }
    }

    /// cuBLAS is deterministic only with a fixed workspace, which it reads from
    /// `CUBLAS_WORKSPACE_CONFIG` when it creates its first handle (the first matmul on a GPU);
    /// with deterministic algorithms on and the variable unset, libtorch's CUDA matmuls fail.
    /// This sets it to ":4096:8" (torch's documented value) unless the user already chose one.
    /// Call it early, before other threads start (setenv is not thread-safe) and before any GPU
    /// matmul; later it has no effect.
    public static func prepareDeterministicCUDA() {
        setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", 0)
    }
}
