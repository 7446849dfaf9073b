/// Who this process is among the processes of a job, and where their shared store is.
///
/// Read from the launcher's variables by `detect`, or given explicitly. The store is a c10d
/// TCPStore at `masterAddress:masterPort`: rank 0 hosts it, unless a torchrun agent already does
/// (`useAgentStore`), in which case every rank connects as a client.
public struct DistributedEnvironment: Equatable, Sendable {
    public var rank: Int
    public var worldSize: Int
    /// This process's rank among those on its machine (picks its GPU), and how many there are.
    public var localRank: Int
    public var localWorldSize: Int
    public var masterAddress: String
    public var masterPort: Int
    /// TORCHELASTIC_USE_AGENT_STORE=True: torchrun's agent hosts the store; rank 0 connects as a client too.
    public var useAgentStore: Bool
    /// TORCHELASTIC_RESTART_COUNT: torchrun's store outlives a restart, so each attempt keeps its
    /// keys apart from the last one's.
    public var restartCount: Int
    /// GLOO_SOCKET_IFNAME: the network interface Gloo binds to (otherwise the address this
    /// machine's hostname resolves to, or the loopback address when the store is on loopback).
    public var socketInterface: String?
    /// Where the settings came from, for messages: "torchrun", "env" (RANK/WORLD_SIZE without
    /// torchrun, e.g. a Kubeflow PyTorchJob), "slurm" or "explicit".
    public var source: String

    public init(rank: Int, worldSize: Int, localRank: Int? = nil, localWorldSize: Int? = nil,
                masterAddress: String = "127.0.0.1", masterPort: Int, useAgentStore: Bool = false,
                restartCount: Int = 0, socketInterface: String? = nil, source: String = "explicit") {
        self.rank = rank
        self.worldSize = worldSize
        self.localRank = localRank ?? rank
        self.localWorldSize = localWorldSize ?? worldSize
        self.masterAddress = masterAddress
        self.masterPort = masterPort
        self.useAgentStore = useAgentStore
        self.restartCount = restartCount
        self.socketInterface = socketInterface
        self.source = source
    }

    /// `masterAddress:masterPort` (IPv6 addresses in brackets).
    public var storeAddress: String {
        masterAddress.contains(":") ? "[\(masterAddress)]:\(masterPort)" : "\(masterAddress):\(masterPort)"
    }

    /// Whether the store's address is this machine's loopback, i.e. every rank runs here.
    public var isLoopback: Bool {
        masterAddress == "localhost" || masterAddress == "::1" || masterAddress.hasPrefix("127.")
    }

    /// Port of the store when a Slurm job sets no MASTER_PORT: 29500 + SLURM_JOB_ID mod 1000, so
    /// that two jobs sharing a node rarely collide (29500 without a job id).
    public static func slurmDefaultPort(jobID: Int?) -> Int { 29500 + (jobID ?? 0) % 1000 }

    /// Reads the launcher's variables:
    ///  1. torchrun / PyTorchJob: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (required together),
    ///     LOCAL_RANK and LOCAL_WORLD_SIZE (default: RANK and WORLD_SIZE, one machine),
    ///     TORCHELASTIC_USE_AGENT_STORE, TORCHELASTIC_RESTART_COUNT;
    ///  2. Slurm (srun): SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE or
    ///     SLURM_TASKS_PER_NODE (with SLURM_NODEID); MASTER_ADDR or else SLURM_LAUNCH_NODE_IPADDR;
    ///     MASTER_PORT or else `slurmDefaultPort`. A single task (SLURM_NTASKS=1) is one process.
    /// GLOO_SOCKET_IFNAME is read in both cases.
    /// - Returns: nil when neither is set (one process).
    /// - Throws: `DistributedError` (kind `.configuration`) naming the variable and what to set.
    public static func detect(_ environment: [String: String]) throws -> DistributedEnvironment? {
        let reader = EnvironmentReader(environment)
        let interface = environment["GLOO_SOCKET_IFNAME"].flatMap { $0.isEmpty ? nil : $0 }
        if let torchrun = try reader.torchrun() {
            var detected = torchrun
            detected.socketInterface = interface
            return try detected.validated()
        }
        if var slurm = try reader.slurm() {
            slurm.socketInterface = interface
            return try slurm.validated()
        }
        return nil
    }

    /// The same settings, or a `DistributedError` saying which one is out of range and why.
    public func validated() throws -> DistributedEnvironment {
        let names = VariableNames(source: source)
        func refuse(_ message: String, _ advice: String) -> DistributedError {
            DistributedError(kind: .configuration, rank: nil, worldSize: nil, address: nil,
                             operation: "reading the \(source) settings", message: message, advice: advice)
        }
        guard worldSize >= 1 else {
            throw refuse("\(names.worldSize)=\(worldSize) is not a number of processes", "set \(names.worldSize) to the total number of processes (1 or more)")
        }
        guard (0..<worldSize).contains(rank) else {
            throw refuse(rank < 0 ? "\(names.rank)=\(rank) is negative" : "\(names.rank)=\(rank) is not below \(names.worldSize)=\(worldSize)",
                         "give each process a distinct \(names.rank) from 0 to \(worldSize - 1)")
        }
        guard (1...worldSize).contains(localWorldSize) else {
            throw refuse("\(names.localWorldSize)=\(localWorldSize) is not between 1 and \(names.worldSize)=\(worldSize)",
                         "set \(names.localWorldSize) to the number of processes on this machine")
        }
        guard (0..<localWorldSize).contains(localRank) else {
            throw refuse(localRank < 0 ? "\(names.localRank)=\(localRank) is negative" : "\(names.localRank)=\(localRank) is not below \(names.localWorldSize)=\(localWorldSize)",
                         "give each process on a machine a distinct \(names.localRank) from 0 to \(localWorldSize - 1)")
        }
        guard !masterAddress.isEmpty else {
            throw refuse("\(names.address) is empty", "set \(names.address) to the address of the machine that runs rank 0 (127.0.0.1 on one machine)")
        }
        guard (1...65535).contains(masterPort) else {
            throw refuse("\(names.port)=\(masterPort) is not a TCP port", "set \(names.port) to a free port between 1024 and 65535, the same on every rank")
        }
        return self
    }
}

/// The names a source gives each setting, so that a message names what the user set.
struct VariableNames {
    let rank, worldSize, localRank, localWorldSize, address, port: String

    init(source: String) {
        switch source {
        case "slurm":
            (rank, worldSize, localRank, localWorldSize) = ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE")
            (address, port) = ("MASTER_ADDR", "MASTER_PORT")
        case "explicit":
            (rank, worldSize, localRank, localWorldSize) = ("rank", "worldSize", "localRank", "localWorldSize")
            (address, port) = ("masterAddress", "masterPort")
        default:
            (rank, worldSize, localRank, localWorldSize) = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
            (address, port) = ("MASTER_ADDR", "MASTER_PORT")
        }
    }
}
