import CTorch

/// The framework's own version, shown by every command's `--version` and kept in checkpoints.
public enum ClipTune {
    public static let version = "0.2.0"
    /// `cliptune 0.2.0 (libtorch 2.15.0)`.
    public static var versionLine: String { "cliptune \(version) (libtorch \(Torch.version))" }
}

/// Process-wide libtorch settings and facts.
public enum Torch {
    /// libtorch's version string, e.g. "2.15.0".
    public static var version: String {
        var out: UnsafePointer<CChar>?
        guard ct_version(&out) == 0, let out else { return "unknown" }
        return String(cString: out)
    }

    /// Whether this build links CUDA and a GPU is visible.
    public static var isCUDAAvailable: Bool {
        var available = false
        return ct_cuda_is_available(&available) == 0 && available
    }

    public static var cudaDeviceCount: Int {
        var n: Int64 = 0
        return ct_cuda_device_count(&n) == 0 ? Int(n) : 0
    }

    /// Threads libtorch uses inside one op (matmul, conv).
    public static var threadCount: Int {
        get { Int(query("get_num_threads", nil, Int64(1)) { ct_get_num_threads($0) }) }
        set { if ct_set_num_threads(Int64(newValue)) != 0 { reportFailure("set_num_threads", nil) { [] } } }
    }

    /// Seeds every default generator (CPU and CUDA).
    public static func manualSeed(_ seed: UInt64) {
        if ct_manual_seed(seed) != 0 { reportFailure("manual_seed", nil) { [] } }
    }
}
