import CTorch
import Foundation
import Torch

/// How the values of the ranks are combined.
public enum ReduceOp: Sendable, Equatable {
    case sum
    /// The sum divided by the world size (floating-point tensors only).
    case average
    case max
    case min

    var bridged: Int32 {
        switch self {
        case .sum, .average: Int32(CT_REDUCE_SUM.rawValue)
        case .max: Int32(CT_REDUCE_MAX.rawValue)
        case .min: Int32(CT_REDUCE_MIN.rawValue)
        }
    }
}

/// The processes of one job, connected through c10d: Gloo for CPU tensors, NCCL for CUDA ones.
///
/// Every rank must call the same collectives in the same order. Each call blocks until every
/// rank took part, and throws a `DistributedError` (never hangs past the timeout, never traps)
/// when a peer died, did not arrive in time, or the store is gone. After such an error the
/// group is not usable any more: end the process.
public final class ProcessGroup: @unchecked Sendable {
    public let rank: Int
    public let worldSize: Int
    public let environment: DistributedEnvironment
    public let device: Device
    /// How long any rank is waited for, at the start and in each collective.
    public let timeout: Duration

    private let store: OpaquePointer
    private let group: OpaquePointer
    private let context: FailureContext
    /// Calls from several threads would interleave collectives differently on each rank; they
    /// are at least kept one at a time here.
    private let lock = NSLock()

    /// Whether this build can make NCCL groups (it links libtorch_cuda).
    public static var hasNCCL: Bool { ct_distributed_has_nccl() }

    /// Creates the TCPStore (rank 0 hosts it unless `useAgentStore`) and the process group,
    /// waiting at most `timeout` for every rank.
    public init(_ environment: DistributedEnvironment, device: Device = .cpu, timeout: Duration = .seconds(300)) throws {
        let environment = try environment.validated()
        self.environment = environment
        self.rank = environment.rank
        self.worldSize = environment.worldSize
        self.device = device
        self.timeout = timeout
        let context = FailureContext(environment: environment, timeout: timeout)
        self.context = context
        let milliseconds = timeout.milliseconds
        guard milliseconds > 0 else {
            throw context.error(.configuration, "creating the process group", "the timeout \(timeout) is not positive", "give a timeout of a second or more")
        }
        let backend: ct_backend
        switch device {
        case .cpu: backend = CT_BACKEND_GLOO
        case .cuda:
            guard ct_distributed_has_nccl() else {
                throw context.error(.unsupported, "creating an NCCL process group for \(device)",
                                    ct_built_with_cuda() ? "this CUDA build was compiled without NCCL's headers (nccl.h, cuBLAS, cuSOLVER, cuSPARSE)"
                                                         : "this build does not link libtorch_cuda, so it has no NCCL",
                                    "run Scripts/bootstrap --cuda and rebuild, or use device .cpu (Gloo)")
            }
            backend = CT_BACKEND_NCCL
        }

        let hostsStore = environment.rank == 0 && !environment.useAgentStore
        var store: OpaquePointer?
        let prefix = "cliptune/attempt_\(environment.restartCount)/"
        guard ct_store_new(environment.masterAddress, Int32(environment.masterPort), hostsStore, Int64(environment.worldSize),
                           milliseconds, prefix, &store) == 0, let store else {
            throw context.setupFailure(hostsStore ? "hosting the store" : "connecting to the store", lastError())
        }
        // On loopback every rank is on this machine: bind there rather than to whatever the
        // hostname resolves to (which may be an interface the other ranks cannot reach).
        let hostname = environment.isLoopback ? environment.masterAddress : ""
        var group: OpaquePointer?
        guard ct_process_group_new(store, Int32(environment.rank), Int32(environment.worldSize), Int32(backend.rawValue),
                                   environment.socketInterface ?? "", hostname, milliseconds, &group) == 0, let group else {
            let error = context.setupFailure("joining the process group", lastError())
            ct_store_free(store)
            throw error
        }
        self.store = store
        self.group = group
    }

    deinit {
        ct_process_group_free(group)
        ct_store_free(store)
    }

    // MARK: - Collectives

    /// Combines each tensor, in place, with the same tensor on every rank.
    public func allReduce(_ tensors: [Tensor], op: ReduceOp = .sum) throws {
        guard !tensors.isEmpty else { return }
        if op == .average { try requireFloatingPoint(tensors, "allReduce(average)") }
        try collective("allReduce") {
            withHandles(tensors) { ct_all_reduce(group, $0, $1, op.bridged, timeout.milliseconds) }
        }
        if op == .average { try divideByWorldSize(tensors) }
    }

    /// Every rank's `tensor`, in rank order.
    public func allGather(_ tensor: Tensor) throws -> [Tensor] {
        var list: OpaquePointer?
        try collective("allGather") { ct_all_gather(group, tensor.handle, timeout.milliseconds, &list) }
        guard let list else { return [] }
        defer { ct_tensor_list_free(list) }
        return (0..<Int64(worldSize)).compactMap { i in
            var t: OpaquePointer?
            return ct_tensor_list_get(list, i, &t) == 0 ? t.map(Tensor.init(owning:)) : nil
        }
    }

    /// Overwrites each tensor with `root`'s, in place.
    public func broadcast(_ tensors: [Tensor], from root: Int = 0) throws {
        guard !tensors.isEmpty else { return }
        try requireRank(root, "broadcast")
        try collective("broadcast") {
            withHandles(tensors) { ct_broadcast(group, $0, $1, Int32(root), timeout.milliseconds) }
        }
    }

    /// `output` = the reduction over the ranks of their `inputs[rank]`: one input per rank,
    /// each shaped like `output`.
    public func reduceScatter(_ inputs: [Tensor], into output: Tensor, op: ReduceOp = .sum) throws {
        guard inputs.count == worldSize else {
            throw context.error(.configuration, "reduceScatter", "\(inputs.count) inputs for \(worldSize) ranks",
                                "pass one input tensor per rank, each shaped like the output")
        }
        if op == .average { try requireFloatingPoint([output], "reduceScatter(average)") }
        try collective("reduceScatter") {
            withHandles(inputs) { ct_reduce_scatter(group, $0, $1, output.handle, op.bridged, timeout.milliseconds) }
        }
        if op == .average { try divideByWorldSize([output]) }
    }

    /// Returns once every rank has called it.
    public func barrier() throws {
        try collective("barrier") { ct_barrier(group, timeout.milliseconds) }
    }

    // MARK: - Agreement helpers

    /// `root`'s bytes on every rank (the others' `bytes` are ignored).
    public func broadcast(bytes: [UInt8], from root: Int = 0) throws -> [UInt8] {
        try requireRank(root, "broadcast(bytes:)")
        let length = Tensor([Int64(rank == root ? bytes.count : 0)])
        try broadcast([length], from: root)
        let count = Int(length.item(Int64.self))
        guard count > 0 else { return [] }
        let buffer = rank == root ? Tensor(bytes) : Tensor.zeros([count], dtype: .uint8)
        try broadcast([buffer], from: root)
        return buffer.toArray(UInt8.self)
    }

    /// True on every rank when `flag` is true on any rank.
    public func anyRank(_ flag: Bool) throws -> Bool {
        let value = Tensor([Int64(flag ? 1 : 0)])
        try allReduce([value], op: .max)
        return value.item(Int64.self) != 0
    }

    // MARK: - Failures

    /// Runs one blocking bridge call; on failure, finds out which ranks are still there and
    /// throws the error that says so.
    private func collective(_ operation: String, _ call: () -> ct_status) throws {
        lock.lock()
        defer { lock.unlock() }
        guard call() != 0 else { return }
        let message = lastError()
        throw context.collectiveFailure(operation, message, silent: silentRanks())
    }

    /// After a failure, each rank that notices it checks in through the store; the ranks that
    /// have not within a few seconds are named. Nil when the store itself is gone.
    private func silentRanks() -> [Int]? {
        let window = min(timeout, .seconds(3))
        guard set("checked-in-after-failure/\(rank)") else { return nil }
        let others = Set(0..<worldSize).subtracting([rank])
        guard let missing = waitForKeys(others, "checked-in-after-failure/", until: .now + window) else { return nil }
        // The rank that hosts the store keeps it up until the others have finished looking, so
        // that its own exit does not read to them as its death.
        guard set("looked-after-failure/\(rank)") else { return missing.sorted() }
        if rank == 0 && !environment.useAgentStore {
            _ = waitForKeys(others.subtracting(missing), "looked-after-failure/", until: .now + window)
        }
        return missing.sorted()
    }

    private func set(_ key: String) -> Bool {
        var one: UInt8 = 1
        return ct_store_set(store, key, &one, 1) == 0
    }

    /// Polls for "\(prefix)\(rank)" of each of `ranks`; the ranks still missing at `deadline`, or
    /// nil when the store does not answer.
    private func waitForKeys(_ ranks: Set<Int>, _ prefix: String, until deadline: ContinuousClock.Instant) -> Set<Int>? {
        var missing = ranks
        while true {
            for other in missing {
                var present = false
                let status = "\(prefix)\(other)".withCString { key in withUnsafePointer(to: key) { ct_store_check(store, $0, 1, &present) } }
                guard status == 0 else { return nil }
                if present { missing.remove(other) }
            }
            if missing.isEmpty || ContinuousClock.now >= deadline { return missing }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    private func requireRank(_ root: Int, _ operation: String) throws {
        guard (0..<worldSize).contains(root) else {
            throw context.error(.configuration, operation, "root rank \(root) is not in 0..<\(worldSize)", "broadcast from an existing rank")
        }
    }

    private func requireFloatingPoint(_ tensors: [Tensor], _ operation: String) throws {
        if let other = tensors.first(where: { !$0.dtype.isFloatingPoint }) {
            throw context.error(.unsupported, operation, "an average of \(other.dtype) values is not an \(other.dtype)",
                                "average floating-point tensors, or reduce with .sum and divide")
        }
    }

    private func divideByWorldSize(_ tensors: [Tensor]) throws {
        // A 0-dim divisor keeps each tensor's dtype, and may stay on the CPU for a CUDA tensor.
        let divisor = Tensor(scalar: Double(worldSize))
        try withTorchErrors { for t in tensors { t.div_(divisor) } }
    }
}

/// The bridge's message for this thread's last failure.
func lastError() -> String { String(cString: ct_last_error()) }

/// Calls `body` with the bridge handles of `tensors` as a C array.
func withHandles<R>(_ tensors: [Tensor], _ body: (UnsafePointer<OpaquePointer?>, Int64) -> R) -> R {
    let handles: [OpaquePointer?] = tensors.map { $0.handle }
    return withExtendedLifetime(tensors) { handles.withUnsafeBufferPointer { body($0.baseAddress!, Int64($0.count)) } }
}

extension Duration {
    /// Whole milliseconds, at least 1 for any positive duration.
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        guard seconds > 0 || attoseconds > 0 else { return 0 }
        return max(1, seconds * 1000 + attoseconds / 1_000_000_000_000_000)
    }
}
