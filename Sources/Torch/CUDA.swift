import CTorch
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A device caching allocator's counters, in bytes (what `torch.cuda.memory_allocated`,
/// `max_memory_allocated`, `memory_reserved` and `max_memory_reserved` report).
public struct DeviceMemoryStats: Sendable, Equatable {
    /// Held by live tensors.
    public let allocated: Int
    /// The most `allocated` has been since the start or the last `Torch.resetPeakMemoryStats`.
    public let peakAllocated: Int
    /// Taken from the driver by the caching allocator: `allocated` plus its cache.
    public let reserved: Int
    public let peakReserved: Int
}

/// CUDA as libtorch sees it: whether this build links it, waiting for the GPU, memory counters.
/// (What the NVIDIA driver sees, independently of libtorch, is `Torch.cudaDriver()`.)
extension Torch {
    /// Whether this build links libtorch_cuda (`Scripts/bootstrap --cuda`). `isCUDAAvailable`
    /// additionally needs a GPU libtorch can use.
    public static var isCUDABuild: Bool { ct_built_with_cuda() }

    /// The CUDA runtime libtorch was built with ("13.2"); nil in a CPU-only build.
    public static var cudaRuntimeVersion: String? {
        var version: Int64 = 0
        guard ct_cuda_runtime_version(&version) == 0 else { return nil }
        return "\(version / 1000).\(version % 1000 / 10)"
    }

    /// Waits until all work queued on `device` has finished: for timing, or before reading a
    /// result another library wrote. A no-op on the CPU, where ops run synchronously.
    public static func synchronize(_ device: Device, file: StaticString = #fileID, line: UInt = #line) {
        guard case .cuda(let index) = device else { return }
        if ct_cuda_synchronize(Int64(index)) != 0 { reportFailure("cuda_synchronize", CallSite(file: file, line: line)) { [] } }
    }

    /// The caching allocator's counters for a CUDA device; nil for the CPU, whose allocator
    /// keeps none (see `hostPeakResidentBytes`).
    public static func memoryStats(_ device: Device, file: StaticString = #fileID, line: UInt = #line) -> DeviceMemoryStats? {
        guard case .cuda(let index) = device else { return nil }
        var stats = ct_memory_stats()
        guard ct_cuda_memory_stats(Int64(index), &stats) == 0 else {
            reportFailure("cuda_memory_stats", CallSite(file: file, line: line)) { [] }
            return nil
        }
        return DeviceMemoryStats(allocated: Int(stats.allocated), peakAllocated: Int(stats.peak_allocated),
                                 reserved: Int(stats.reserved), peakReserved: Int(stats.peak_reserved))
    }

    /// Starts the peaks of `memoryStats` again from the current values (per epoch, per phase).
    /// A no-op on the CPU.
    public static func resetPeakMemoryStats(_ device: Device, file: StaticString = #fileID, line: UInt = #line) {
        guard case .cuda(let index) = device else { return }
        if ct_cuda_reset_peak_memory_stats(Int64(index)) != 0 {
            reportFailure("cuda_reset_peak_memory_stats", CallSite(file: file, line: line)) { [] }
        }
    }

    /// The host process's peak resident memory (getrusage's ru_maxrss), in bytes: the closest
    /// CPU counterpart to `peakAllocated`, but for the whole process and never reset.
    public static var hostPeakResidentBytes: Int {
        var usage = rusage()
        #if os(Linux)
        guard getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage) == 0 else { return 0 }
        return Int(usage.ru_maxrss) * 1024   // KiB on Linux
        #else
        guard getrusage(RUSAGE_SELF, &usage) == 0 else { return 0 }
        return Int(usage.ru_maxrss)          // bytes on macOS
        #endif
    }
}
