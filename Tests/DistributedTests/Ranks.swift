// Starting `dist-worker` as the ranks of a job on 127.0.0.1, each with the launcher's variables,
// and collecting how each ended (bounded in time: a rank that hangs is killed and says so).
import Foundation

struct WorkerError: Error, CustomStringConvertible {
    let description: String
}

/// The built `dist-worker`: next to the test binary (Linux), next to the .xctest bundle (macOS),
/// or in the repository's .build.
let workerPath: String? = {
    var folders: [URL] = []
    if let executable = Bundle.main.executableURL { folders.append(executable.resolvingSymlinksInPath().deletingLastPathComponent()) }
    if let first = CommandLine.arguments.first { folders.append(URL(fileURLWithPath: first).resolvingSymlinksInPath().deletingLastPathComponent()) }
    for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
        folders.append(bundle.bundleURL.resolvingSymlinksInPath().deletingLastPathComponent())
    }
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    folders.append(root.appendingPathComponent(".build/debug"))
    return folders.map { $0.appendingPathComponent("dist-worker").path }.first { FileManager.default.isExecutableFile(atPath: $0) }
}()

/// A TCP port nothing listens on right now (the kernel's pick for port 0).
func freePort() throws -> Int {
    let socket = try ListeningSocket()
    return socket.port
}

/// A socket listening on 127.0.0.1 (to hold a port, or to learn a free one).
final class ListeningSocket {
    let descriptor: Int32
    let port: Int

    init() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let listening = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, length) == 0 && listen(descriptor, 1) == 0 && getsockname(descriptor, $0, &length) == 0
            }
        }
        guard listening else { close(descriptor); throw WorkerError(description: "cannot listen on 127.0.0.1") }
        self.descriptor = descriptor
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(descriptor) }
}

/// How one rank ended.
struct RankRun: CustomStringConvertible {
    let rank: Int
    let status: Int32
    let signaled: Bool
    let timedOut: Bool
    let seconds: Double
    let stdout: String
    let stderr: String

    var succeeded: Bool { !timedOut && !signaled && status == 0 }
    /// Exited by itself with a non-zero status (not killed, not hung).
    var failedCleanly: Bool { !timedOut && !signaled && status != 0 }

    var description: String {
        let how = timedOut ? "hung and was killed" : signaled ? "was killed by signal \(status)" : "exited with \(status)"
        return "rank \(rank) \(how) after \(String(format: "%.1f", seconds)) s\n--- stdout ---\n\(stdout.suffix(2000))\n--- stderr ---\n\(stderr.suffix(3000))"
    }
}

/// Runs `dist-worker arguments` once per entry of `ranks` (each entry: the variables that make it
/// that rank), all at once; each is killed after `limit` seconds. Once the ranks at `awaited`
/// (indices; default all) have ended, the others (a rank told to hang) are killed.
func runRanks(_ ranks: [[String: String]], _ arguments: [String], limit: Double, awaited: Set<Int>? = nil) throws -> [RankRun] {
    guard let workerPath else { throw WorkerError(description: "dist-worker is not built; run `swift build --build-tests`") }
    let folder = NSTemporaryDirectory() + "cliptune-ranks-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: folder) }
    var base = ProcessInfo.processInfo.environment
    for key in base.keys where ["RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"].contains(key)
        || key.hasPrefix("SLURM_") || key.hasPrefix("TORCHELASTIC_") { base[key] = nil }
    base["TORCH_CPP_LOG_LEVEL"] = "ERROR"   // c10d's socket warnings come with a backtrace

    let started = Date()
    var processes: [(Process, String)] = []
    for (index, variables) in ranks.enumerated() {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: workerPath)
        process.arguments = arguments
        process.environment = base.merging(variables) { _, new in new }
        let logs = "\(folder)/\(index)"
        for stream in ["out", "err"] { _ = FileManager.default.createFile(atPath: "\(logs).\(stream)", contents: nil) }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle(forWritingAtPath: "\(logs).out")
        process.standardError = FileHandle(forWritingAtPath: "\(logs).err")
        try process.run()
        processes.append((process, logs))
    }
    var ended: [Int: Double] = [:]
    var timedOut = Set<Int>()
    let awaited = awaited ?? Set(ranks.indices)
    while ended.count < processes.count {
        let now = Date().timeIntervalSince(started)
        let done = awaited.isSubset(of: ended.keys)
        for (index, (process, _)) in processes.enumerated() where ended[index] == nil {
            if !process.isRunning {
                ended[index] = now
            } else if now > limit || done {
                kill(process.processIdentifier, SIGKILL)
                kill(process.processIdentifier, SIGCONT)
                if !done { timedOut.insert(index) }
                process.waitUntilExit()
                ended[index] = now
            }
        }
        usleep(20_000)
    }
    return processes.enumerated().map { index, entry in
        let (process, logs) = entry
        return RankRun(rank: Int(ranks[index]["RANK"] ?? ranks[index]["SLURM_PROCID"] ?? "") ?? index,
                       status: process.terminationStatus, signaled: process.terminationReason == .uncaughtSignal,
                       timedOut: timedOut.contains(index), seconds: ended[index]!,
                       stdout: (try? String(contentsOfFile: "\(logs).out", encoding: .utf8)) ?? "",
                       stderr: (try? String(contentsOfFile: "\(logs).err", encoding: .utf8)) ?? "")
    }
}

/// torchrun's variables for `worldSize` ranks on this machine.
func torchrunRanks(_ worldSize: Int, port: Int) -> [[String: String]] {
    (0..<worldSize).map { rank in
        ["RANK": "\(rank)", "WORLD_SIZE": "\(worldSize)", "LOCAL_RANK": "\(rank)", "LOCAL_WORLD_SIZE": "\(worldSize)",
         "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "\(port)"]
    }
}
