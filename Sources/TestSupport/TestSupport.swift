// Helpers shared by the test targets (not part of any product).
import Foundation
import Torch

/// The repository root: `$CLIPTUNE_REPOSITORY_ROOT` when set (a test binary built on one machine
/// and run in another checkout, as `Scripts/gpu-check` does), else this source file's location
/// (Sources/TestSupport/…).
public let repositoryRoot = ProcessInfo.processInfo.environment["CLIPTUNE_REPOSITORY_ROOT"].flatMap { $0.isEmpty ? nil : $0 }
    ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// A fresh empty folder under the system temporary directory, named after the calling test,
/// removed when the process that made it exits (runs and shards add up to gigabytes over a
/// suite); `CLIPTUNE_KEEP_TEST_FILES=1` keeps them for inspection.
public func temporaryFolder(_ label: String = #function) -> String {
    let safe = label.filter { $0.isLetter || $0.isNumber }
    let path = NSTemporaryDirectory() + "cliptune-\(safe)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    TemporaryFolders.register(path)
    return path
}

/// The folders `temporaryFolder` made in this process, deleted at exit.
private enum TemporaryFolders {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var folders: [String] = []
    private static let installed: Bool = {
        if ProcessInfo.processInfo.environment["CLIPTUNE_KEEP_TEST_FILES"] == nil { atexit { TemporaryFolders.removeAll() } }
        return true
    }()

    static func register(_ folder: String) {
        _ = installed
        lock.lock()
        folders.append(folder)
        lock.unlock()
    }

    static func removeAll() {
        lock.lock()
        defer { lock.unlock() }
        for folder in folders { try? FileManager.default.removeItem(atPath: folder) }
        folders = []
    }
}

/// Largest absolute elementwise difference, in float64.
public func maxDifference(_ a: Tensor, _ b: Tensor) -> Double {
    (a.to(.float64) - b.to(.float64)).abs().max().item(Double.self)
}

/// A seeded random number generator (SplitMix64) for tests, so that every random case can be
/// replayed. The seed is `CLIPTUNE_TEST_SEED` when set, else `defaultSeed`; it is printed with
/// the label so that a failing run names the seed that reproduces it.
public struct TestRandom: RandomNumberGenerator {
    public let seed: UInt64
    private var state: UInt64

    public init(_ label: String, defaultSeed: UInt64) {
        seed = ProcessInfo.processInfo.environment["CLIPTUNE_TEST_SEED"].flatMap { UInt64($0) } ?? defaultSeed
        state = seed
        print("\(label): random seed \(seed) (CLIPTUNE_TEST_SEED=\(seed) replays it)")
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// How many times its default budget a fuzz test runs: `CLIPTUNE_FUZZ_SCALE` (default 1), for
/// longer runs by hand (`CLIPTUNE_FUZZ_SCALE=10 CLIPTUNE_TEST_SEED=7 swift test --filter Fuzz`).
public let fuzzScale = max(1, Int(ProcessInfo.processInfo.environment["CLIPTUNE_FUZZ_SCALE"] ?? "") ?? 1)
