import Foundation

/// A failed distributed setting or operation: which rank, which store, what was being done,
/// what happened, and what to do about it.
public struct DistributedError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// The launcher's variables (or the explicit settings) are missing or inconsistent.
        case configuration
        /// Rank 0 could not listen on MASTER_PORT: something else holds it.
        case portInUse
        /// No store answered at MASTER_ADDR:MASTER_PORT.
        case storeUnreachable
        /// Not every rank arrived (at the start, or at a collective) within the timeout.
        case timeout
        /// A peer's connection broke during a collective: it died or was killed.
        case peerLost
        /// Asked of this build or backend what it cannot do (NCCL without CUDA, an average of integers).
        case unsupported
        /// Anything else libtorch reported.
        case failed
    }

    public let kind: Kind
    public let rank: Int?
    public let worldSize: Int?
    /// The store's `host:port`.
    public let address: String?
    /// What was being done: "connecting to the store", "allReduce", ...
    public let operation: String
    /// What happened (libtorch's message, shortened, for failures it reported).
    public let message: String
    /// What to check or change.
    public let advice: String
    /// After a failed collective: the ranks that did not answer a check-in through the store.
    public let silentRanks: [Int]

    public init(kind: Kind, rank: Int?, worldSize: Int?, address: String?, operation: String, message: String,
                advice: String, silentRanks: [Int] = []) {
        self.kind = kind
        self.rank = rank
        self.worldSize = worldSize
        self.address = address
        self.operation = operation
        self.message = message
        self.advice = advice
        self.silentRanks = silentRanks
    }

    public var description: String {
        var who: [String] = []
        if let rank { who.append("rank \(rank)" + (worldSize.map { " of \($0)" } ?? "")) }
        if let address { who.append("store \(address)") }
        let prefix = who.isEmpty ? "" : who.joined(separator: ", ") + ": "
        return "\(prefix)\(operation) failed: \(message)\n  \(advice)"
    }
}

/// What a failure is told against: who this rank is and how the group was set up.
struct FailureContext {
    let environment: DistributedEnvironment
    let timeout: Duration

    var seconds: String {
        let s = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        return s == s.rounded() ? "\(Int(s)) s" : String(format: "%.1f s", s)
    }

    func error(_ kind: DistributedError.Kind, _ operation: String, _ message: String, _ advice: String,
               silentRanks: [Int] = []) -> DistributedError {
        DistributedError(kind: kind, rank: environment.rank, worldSize: environment.worldSize, address: environment.storeAddress,
                         operation: operation, message: message, advice: advice, silentRanks: silentRanks)
    }

    /// Who runs the store, for advice.
    var storeHost: String { environment.useAgentStore ? "torchrun's agent" : "rank 0" }

    /// The advice that fits libtorch's message about a failure while setting up.
    func setupFailure(_ operation: String, _ raw: String) -> DistributedError {
        let message = DistributedError.shorten(raw)
        let lower = raw.lowercased()
        let env = environment
        if lower.contains("eaddrinuse") || lower.contains("address already in use") {
            return error(.portInUse, operation, message,
                         "port \(env.masterPort) is already in use on \(env.masterAddress) (another job, or an earlier run still exiting): choose another MASTER_PORT")
        }
        if lower.contains("clients joined") || lower.contains("wait timeout") || lower.contains("timed out") && env.rank == 0 && !env.useAgentStore {
            return error(.timeout, operation, message,
                         "not every rank arrived within \(seconds): start all \(env.worldSize) processes with the same MASTER_ADDR/MASTER_PORT\(slurmHint), or allow more time if they start slowly")
        }
        if lower.contains("connect") || lower.contains("timed out") || lower.contains("refused") || lower.contains("timeout") {
            return error(.storeUnreachable, operation, message,
                         "no store answered at \(env.storeAddress) within \(seconds): check that \(storeHost) is running (it hosts the store), that MASTER_ADDR and MASTER_PORT are the same on every rank, and that the port is reachable from this machine")
        }
        if lower.contains("nccl") && lower.contains("libtorch_cuda") {
            return error(.unsupported, operation, message, "use the CPU (Gloo) process group on this build")
        }
        return error(.failed, operation, message,
                     "check that every rank runs the same program with the same WORLD_SIZE, MASTER_ADDR and MASTER_PORT")
    }

    /// The advice for a failed collective; `silent` are the ranks that did not check in after it,
    /// nil when the store itself no longer answers.
    func collectiveFailure(_ operation: String, _ raw: String, silent: [Int]?) -> DistributedError {
        let message = DistributedError.shorten(raw)
        let lower = raw.lowercased()
        let peerLost = ["closed by peer", "connection reset", "broken pipe", "read error", "write error", "connection closed"]
            .contains { lower.contains($0) }
        let kind: DistributedError.Kind = peerLost ? .peerLost : lower.contains("timed out") || lower.contains("timeout") ? .timeout : .failed
        let who: String
        switch silent {
        case nil:
            who = environment.useAgentStore
                ? "torchrun's agent store at \(environment.storeAddress) no longer answers either: the job is being torn down"
                : "the store at \(environment.storeAddress) (hosted by rank 0) no longer answers either: rank 0 has most likely died; check its log"
        case let ranks? where ranks.isEmpty:
            who = "every other rank is still alive: check that all ranks run the same collectives in the same order"
        case let ranks?:
            let list = ranks.map(String.init).joined(separator: ", ")
            who = "\(ranks.count == 1 ? "rank" : "ranks") \(list) did not answer after the failure: \(ranks.count == 1 ? "it has" : "they have") most likely died or hung; check \(ranks.count == 1 ? "its" : "their") log"
        }
        let advice = kind == .timeout && silent?.isEmpty == true
            ? "no data arrived within \(seconds); \(who) (e.g. the same number of batches on every rank)"
            : who
        return error(kind, operation, message, advice, silentRanks: silent ?? [])
    }

    private var slurmHint: String { environment.source == "slurm" ? " (under Slurm: start them with srun)" : "" }
}

extension DistributedError {
    /// libtorch's message without the C++ source location Gloo puts in front and the
    /// backtrace c10 may append.
    static func shorten(_ raw: String) -> String {
        var text = raw
        if let range = text.range(of: #"^\[[^\]]*\.(cc|cpp|h|hpp):\d+\] "#, options: .regularExpression) {
            text.removeSubrange(range)
        }
        if let range = text.range(of: "\nException raised from") { text = String(text[..<range.lowerBound]) }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
