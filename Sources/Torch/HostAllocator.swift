import CTorch
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where CPU tensors get their memory. libtorch's default is posix_memalign/free, and glibc
/// keeps freed heap mapped: a training step makes hundreds of large short-lived tensors, and
/// the heap they leave behind (grown, fragmented, trimmed only at its top) holds the process's
/// peak RSS far above what is ever live. On the S benchmark with gradient checkpointing that is
/// about 750 MB more than the live tensors need (`Scripts/bench --only checkpointing`).
///
/// The caching allocator maps each large block on its own (mmap) and keeps freed ones for
/// reuse by size class, as PyTorch's CUDA allocator does for device memory: a step allocates
/// the same sizes as the last one, so it reuses them without page faults. What it keeps mapped,
/// live and cached together, never exceeds the most bytes ever live at once (cached blocks are
/// unmapped first), so the process's RSS follows the live tensors and not the heap's history.
/// Small blocks stay with malloc.
public enum HostAllocator {
    public struct Statistics: Sendable, Equatable {
        /// Bytes of large blocks mapped now: live and cached.
        public var mappedBytes = 0
        /// Of which freed and kept for reuse.
        public var cachedBytes = 0
        /// The most bytes of large blocks live at once (the bound on `mappedBytes`).
        public var peakLiveBytes = 0
        /// Allocations served from the cache, and those that mapped new memory.
        public var reuses = 0
        public var maps = 0
        /// Cached blocks unmapped to stay within the bound.
        public var unmaps = 0
    }

    public enum Kind: String, Sendable, CaseIterable {
        /// Large blocks mapped one by one and cached for reuse (this type's doc).
        case caching
        /// libtorch's default: posix_memalign and free.
        case malloc
    }

    /// Which allocator CPU tensors made from now on use; tensors made before keep theirs. The
    /// process starts with `.malloc` (libtorch's).
    public static var current: Kind { installation.withLock { $0 } }

    /// Switches the allocator of CPU tensors made from now on (safe while tensors live: each
    /// frees its memory where it came from). The caching allocator's state is made once and kept.
    public static func use(_ kind: Kind) throws {
        try installation.withLock { current in
            guard kind != current else { return }
            if kind == .caching, caching == nil { caching = LargeBlockCache(largeBlockBytes: 1 << 20) }
            let status = kind == .caching ? ct_set_host_allocator(allocateCallback, freeCallback) : ct_set_host_allocator(nil, nil)
            guard status == 0 else {
                throw TorchError(operation: "set_host_allocator", message: String(cString: ct_last_error()), site: nil, inputShapes: [])
            }
            current = kind
        }
    }

    /// The caching allocator's figures; nil until it was first used.
    public static var statistics: Statistics? { installation.withLock { _ in caching?.statistics } }

    static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    private static let installation = Locked<Kind>(.malloc)
    /// Set once, under `installation`'s lock, before libtorch can call the callbacks; never reset
    /// (blocks it gave out may be freed at any time).
    nonisolated(unsafe) fileprivate static var caching: LargeBlockCache?
}

/// C entry points for the bridge (no captures: they reach the one installed cache).
private let allocateCallback: ct_host_allocate = { bytes in HostAllocator.caching!.allocate(bytes) }
private let freeCallback: ct_host_free = { pointer in
    if let pointer { HostAllocator.caching!.free(pointer) }
}


/// A value behind a lock.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

/// The caching policy: large blocks mapped one by one, rounded up to size classes, kept when
/// freed and reused for the same class; mapped bytes bounded by the most ever live at once.
/// Every method may be called from any thread (libtorch frees tensors wherever they die).
final class LargeBlockCache: @unchecked Sendable {
    let largeBlockBytes: Int
    private let lock = NSLock()
    /// Live large blocks: address → class bytes (a free must know whether malloc gave it).
    private var live: [UnsafeMutableRawPointer: Int] = [:]
    /// Freed blocks by class bytes, most recent last.
    private var cached: [Int: [UnsafeMutableRawPointer]] = [:]
    private var liveBytes = 0
    private var stats = HostAllocator.Statistics()

    init(largeBlockBytes: Int) { self.largeBlockBytes = largeBlockBytes }

    var statistics: HostAllocator.Statistics { lock.withLock { stats } }

    /// Rounded up to 1/8 of its power of two (at most 12.5% more), in whole pages: a step's
    /// sizes that differ a little (captions padded to other lengths) share a class.
    static func sizeClass(_ bytes: Int) -> Int {
        let step = max(HostAllocator.pageSize, 1 << max(0, (Int.bitWidth - 1 - bytes.leadingZeroBitCount) - 3))
        return (bytes + step - 1) / step * step
    }

    /// Cached bytes allowed beyond the most ever live: 64 MiB or 1/16 of it.
    static func slack(_ peakLive: Int) -> Int { max(64 << 20, peakLive / 16) }

    func allocate(_ bytes: Int) -> UnsafeMutableRawPointer? {
        guard bytes >= largeBlockBytes else {
            var pointer: UnsafeMutableRawPointer?
            return posix_memalign(&pointer, 64, bytes) == 0 ? pointer : nil
        }
        let size = Self.sizeClass(bytes)
        lock.lock()
        defer { lock.unlock() }
        liveBytes += size
        stats.peakLiveBytes = max(stats.peakLiveBytes, liveBytes)
        // The smallest cached class that fits, up to twice the size (a block counts as live at
        // its class size, so the bound below still holds).
        if let fit = cached.lazy.filter({ $0.key >= size && $0.key <= 2 * size && !$0.value.isEmpty }).map(\.key).min() {
            let block = cached[fit]!.removeLast()
            liveBytes += fit - size
            stats.peakLiveBytes = max(stats.peakLiveBytes, liveBytes)
            stats.cachedBytes -= fit
            stats.reuses += 1
            live[block] = fit
            return block
        }
        // Room within the most ever live (and a little slack, so that a step whose sizes come in
        // another order does not unmap and map again): unmap cached blocks, largest first.
        while stats.mappedBytes + size > stats.peakLiveBytes + Self.slack(stats.peakLiveBytes),
              let largest = cached.lazy.filter({ !$0.value.isEmpty }).map(\.key).max() {
            let block = cached[largest]!.removeLast()
            munmap(block, largest)
            stats.mappedBytes -= largest
            stats.cachedBytes -= largest
            stats.unmaps += 1
        }
        guard let block = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), block != MAP_FAILED else {
            liveBytes -= size
            return nil
        }
        stats.mappedBytes += size
        stats.maps += 1
        live[block] = size
        return block
    }

    func free(_ pointer: UnsafeMutableRawPointer) {
        lock.lock()
        guard let size = live.removeValue(forKey: pointer) else {
            lock.unlock()
            Glibc.free(pointer)
            return
        }
        defer { lock.unlock() }
        liveBytes -= size
        cached[size, default: []].append(pointer)
        stats.cachedBytes += size
    }
}
