import ArgumentParser
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// `--nproc-per-node N`: what `torchrun --no-python` does, without Python. This process starts
/// N copies of the same command with torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
/// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), forwards Ctrl-C to them, and ends with the
/// first failure (stopping the others), as torchrun does.
public struct LaunchOptions: ParsableArguments {
    @Option(help: "Start this many training processes on this machine (data parallel: each takes data.batch_size samples, so the global batch is batch_size × processes).")
    public var nprocPerNode: Int?
    @Option(help: "Machines taking part (with --nproc-per-node); each runs this command with its own --node-rank.") public var nnodes = 1
    @Option(help: "This machine's number, from 0 (with --nnodes).") public var nodeRank = 0
    @Option(help: "Address of node 0, where rank 0 hosts the rendezvous store (default 127.0.0.1 on one machine).") public var masterAddr: String?
    @Option(help: "Port of the rendezvous store (default: a free port on one machine; required with --nnodes > 1).") public var masterPort: Int?

    public init() {}

    public func validate() throws {
        if let n = nprocPerNode, n < 1 { throw ValidationError("--nproc-per-node must be at least 1, found \(n)") }
        if nnodes < 1 { throw ValidationError("--nnodes must be at least 1, found \(nnodes)") }
        if !(0..<nnodes).contains(nodeRank) { throw ValidationError("--node-rank must be in 0...\(nnodes - 1) for --nnodes \(nnodes), found \(nodeRank)") }
        if nprocPerNode == nil, nnodes > 1 || masterAddr != nil || masterPort != nil {
            throw ValidationError("--nnodes, --node-rank, --master-addr and --master-port go with --nproc-per-node")
        }
        if nnodes > 1, masterAddr == nil || masterPort == nil {
            throw ValidationError("with --nnodes \(nnodes), give --master-addr and --master-port (node 0's address and a free port), the same on every node")
        }
        if let port = masterPort, !(1...65535).contains(port) { throw ValidationError("--master-port must be in 1...65535, found \(port)") }
    }

    /// Whether this process should start workers rather than train (it is not one already).
    public var launches: Bool { nprocPerNode != nil && ProcessInfo.processInfo.environment[Launcher.workerMark] == nil }
}

/// Set by SIGINT in the launching process.
let launcherInterrupted = Atomic<Bool>(false)

public enum Launcher {
    /// Set in the workers' environment, so that they train instead of launching again.
    static let workerMark = "CLIPTUNE_LAUNCHED_WORKER"
    static let launchFlags: Set<String> = ["--nproc-per-node", "--nnodes", "--node-rank", "--master-addr", "--master-port"]

    /// Starts the workers and waits for them; returns the exit status the command should end with.
    public static func run(_ options: LaunchOptions, arguments: [String] = CommandLine.arguments) throws -> Int32 {
        let perNode = options.nprocPerNode!
        let address = options.masterAddr ?? "127.0.0.1"
        let port = try options.masterPort ?? freePort(on: address)
        let executable = URL(fileURLWithPath: Bundle.main.executablePath ?? arguments[0])
        let passed = withoutLaunchFlags(Array(arguments.dropFirst()))
        var workers: [(rank: Int, process: Process)] = []
        for local in 0..<perNode {
            let rank = options.nodeRank * perNode + local
            let process = Process()
            process.executableURL = executable
            process.arguments = passed
            var environment = ProcessInfo.processInfo.environment
            environment.merge(["RANK": "\(rank)", "WORLD_SIZE": "\(options.nnodes * perNode)", "LOCAL_RANK": "\(local)",
                               "LOCAL_WORLD_SIZE": "\(perNode)", "GROUP_RANK": "\(options.nodeRank)", "MASTER_ADDR": address,
                               "MASTER_PORT": "\(port)", workerMark: "1"]) { _, new in new }
            // c10d prints its socket warnings with backtraces unless told otherwise.
            if environment["TORCH_CPP_LOG_LEVEL"] == nil { environment["TORCH_CPP_LOG_LEVEL"] = "ERROR" }
            process.environment = environment
            do { try process.run() } catch {
                workers.forEach { $0.process.terminate() }
                throw ValidationError("cannot start worker \(rank) (\(executable.path)): \(error)")
            }
            workers.append((rank, process))
        }
        return supervise(workers)
    }

    /// Waits for every worker; on the first failure stops the others (SIGTERM, then SIGKILL
    /// after 30 s) and returns its status. Ctrl-C is passed on, and the workers save and exit.
    static func supervise(_ workers: [(rank: Int, process: Process)]) -> Int32 {
        // Ctrl-C is passed on once (the workers may get it from the terminal too: they save and exit 130 either way).
        signal(SIGINT) { _ in launcherInterrupted.store(true, ordering: .relaxed) }
        // Started by a program's worker thread, this process may begin with SIGINT blocked.
        var mask = sigset_t()
        sigemptyset(&mask)
        sigaddset(&mask, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &mask, nil)
        var forwarded = false
        var failure: (rank: Int, status: Int32)?
        var stopAt: Date?
        while workers.contains(where: { $0.process.isRunning }) {
            if !forwarded, launcherInterrupted.load(ordering: .relaxed) {
                forwarded = true
                workers.filter { $0.process.isRunning }.forEach { kill($0.process.processIdentifier, SIGINT) }
            }
            // A worker that failed stops the others; one that saved after Ctrl-C (130) does not:
            // the others are saving too (rank 0 writes last/) and end on their own.
            if failure == nil, let failed = workers.first(where: { !$0.process.isRunning && ![0, 130].contains($0.process.terminationStatus) }) {
                failure = (failed.rank, failed.process.terminationStatus)
                FileHandle.standardError.write(Data("launcher: rank \(failed.rank) exited with status \(failed.process.terminationStatus); stopping the other workers\n".utf8))
                workers.filter { $0.process.isRunning }.forEach { $0.process.terminate() }
                stopAt = Date(timeIntervalSinceNow: 30)
            }
            if let stopAt, Date() > stopAt { workers.filter { $0.process.isRunning }.forEach { kill($0.process.processIdentifier, SIGKILL) } }
            usleep(50_000)
        }
        if let failure { return failure.status }
        // Workers that all ended between two looks: the first failure still decides.
        if let failed = workers.first(where: { ![0, 130].contains($0.process.terminationStatus) }) { return failed.process.terminationStatus }
        return workers.contains { $0.process.terminationStatus == 130 } ? 130 : 0
    }

    /// The command's own arguments without the launcher's flags (and their values).
    static func withoutLaunchFlags(_ arguments: [String]) -> [String] {
        var result: [String] = []
        var skipNext = false
        for argument in arguments {
            if skipNext { skipNext = false; continue }
            if let flag = argument.split(separator: "=", maxSplits: 1).first.map(String.init), launchFlags.contains(flag) {
                skipNext = !argument.contains("=")
                continue
            }
            result.append(argument)
        }
        return result
    }

    /// A port free on `address` now (the kernel's choice), for a one-machine launch.
    static func freePort(on address: String) throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ValidationError("cannot open a socket to find a free port: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var socketAddress = sockaddr_in()
        socketAddress.sin_family = sa_family_t(AF_INET)
        socketAddress.sin_port = 0
        guard inet_pton(AF_INET, address, &socketAddress.sin_addr) == 1 else {
            throw ValidationError("--master-addr \(address) is not an IPv4 address; give --master-port too")
        }
        let bound = withUnsafePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw ValidationError("cannot bind to \(address) to find a free port: \(String(cString: strerror(errno)))") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: socketAddress.sin_port))
    }
}
