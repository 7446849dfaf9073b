import ArgumentParser
import Foundation
import Torch

@main
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Side-by-side benchmarks against the reference implementation, reported as ratios.",
        subcommands: [BridgeOverhead.self]
    )
}

/// One row of bench/results.json.
struct Comparison: Codable {
    var name: String
    var ours: Double
    var theirs: Double
    var unit: String
    var ratio: Double
    var goal: String
    var note: String?
}

struct BridgeOverhead: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bridge",
        abstract: "Per-op overhead of Swift → CTorch → libtorch vs the same loop in libtorch C++."
    )

    @Option(help: "Ops per timed run.") var iterations = 100_000
    @Option(help: "Timed runs of each side (alternating), after one warm-up run.") var repetitions = 7
    @Option(help: "Folder of libtorch (include/, lib/). Default: $LIBTORCH or .deps/libtorch.") var libtorch: String?
    @Option(help: "Where to write the JSON results.") var output = "bench/results.json"

    func validate() throws {
        guard iterations > 0 else { throw ValidationError("--iterations must be positive") }
        guard repetitions >= 1 else { throw ValidationError("--repetitions must be at least 1") }
    }

    func run() throws {
        let root = FileManager.default.currentDirectoryPath
        let torchDir = libtorch ?? ProcessInfo.processInfo.environment["LIBTORCH"] ?? "\(root)/.deps/libtorch"
        let reference = try buildReference(root: root, libtorch: torchDir)
        Torch.threadCount = 1

        var ours: [Double] = [], theirs: [Double] = []
        _ = try runReference(reference)   // warm-up of both sides
        _ = swiftLoop()
        for _ in 0..<repetitions {
            theirs.append(try runReference(reference))
            ours.append(swiftLoop())
        }
        let o = median(ours), t = median(theirs)
        print(String(format: "a + b on 1-element tensors, %d ops x %d runs (medians, 1 thread)", iterations, repetitions))
        print(String(format: "  Swift (Tensor → CTorch → libtorch): %7.3f µs/op", o / 1000))
        print(String(format: "  libtorch C++ directly:             %7.3f µs/op", t / 1000))
        print(String(format: "  overhead: %+.3f µs/op, ratio %.2fx", (o - t) / 1000, o / t))
        try record(Comparison(name: "bridge overhead: a + b on 1-element tensors (µs/op)", ours: o / 1000, theirs: t / 1000,
                              unit: "µs/op", ratio: o / t, goal: "ours - theirs <= 1 µs",
                              note: String(format: "overhead %+.3f µs/op", (o - t) / 1000)))
    }

    /// Nanoseconds per op of the Swift loop.
    func swiftLoop() -> Double {
        let a = Tensor.ones([1]), b = Tensor.ones([1])
        let clock = ContinuousClock()
        let elapsed = clock.measure {
            for _ in 0..<iterations { withExtendedLifetime(a + b) {} }
        }
        let ns = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
        return ns / Double(iterations)
    }

    func runReference(_ binary: String) throws -> Double {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = [String(iterations)]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        process.waitUntilExit()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        guard process.terminationStatus == 0, let ns = Double(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw ValidationError("reference benchmark \(binary) failed: \(text)")
        }
        return ns
    }

    /// Compiles Benchmarks/bridge_reference.cpp against the same libtorch, once.
    func buildReference(root: String, libtorch: String) throws -> String {
        let source = "\(root)/Benchmarks/bridge_reference.cpp"
        let binary = "\(root)/.build/bench/bridge_reference"
        let fm = FileManager.default
        guard fm.fileExists(atPath: source) else { throw ValidationError("run from the package root: \(source) is missing") }
        guard fm.fileExists(atPath: "\(libtorch)/include/ATen/ATen.h") else {
            throw ValidationError("no libtorch at \(libtorch): run Scripts/bootstrap or pass --libtorch")
        }
        let sourceDate = (try? fm.attributesOfItem(atPath: source)[.modificationDate] as? Date) ?? .distantFuture
        if let built = try? fm.attributesOfItem(atPath: binary)[.modificationDate] as? Date, built > sourceDate { return binary }
        try fm.createDirectory(atPath: "\(root)/.build/bench", withIntermediateDirectories: true)
        print("compiling the C++ reference (once)...")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["c++", "-O2", "-std=c++20", "-isystem", "\(libtorch)/include", source, "-o", binary,
                             "-L\(libtorch)/lib", "-Wl,-rpath,\(libtorch)/lib", "-Wl,--no-as-needed", "-ltorch_cpu", "-lc10"]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw ValidationError("compiling \(source) failed") }
        return binary
    }

    /// Merges `comparison` into the results file, replacing an entry of the same name.
    func record(_ comparison: Comparison) throws {
        struct Results: Codable { var comparisons: [Comparison] }
        let url = URL(fileURLWithPath: output)
        var results = (try? JSONDecoder().decode(Results.self, from: Data(contentsOf: url))) ?? Results(comparisons: [])
        results.comparisons.removeAll { $0.name == comparison.name }
        results.comparisons.append(comparison)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try encoder.encode(results).write(to: url, options: .atomic)
        print("wrote \(output)")
    }
}

func median(_ values: [Double]) -> Double {
    let s = values.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}
