import ArgumentParser
import Datasets
import Foundation
import Torch

@main
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Side-by-side benchmarks against the reference implementation, reported as ratios.", version: ClipTune.versionLine,
        subcommands: [BridgeOverhead.self, DataPipeline.self, TrainStep.self, DataParallelTrainStep.self, EmbedThroughput.self, MatmulPeak.self, ExportInputs.self, CLIPTokenizerFiles.self,
                      TokenizerThroughput.self]
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
                              note: String(format: "overhead %+.3f µs/op", (o - t) / 1000)), to: output)
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

}

struct DataPipeline: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Images/s of decode + random-resized-crop 224 + flip + normalise, ours vs torchvision + PIL (2 workers each)."
    )

    @Option(help: "Generated JPEGs.") var images = 500
    @Option(help: "Width of the generated JPEGs (height is 3/4 of it).") var width = 640
    @Option(help: "Timed epochs of each side (alternating), after a warm-up.") var repetitions = 5
    @Option(help: "Python with torch and torchvision (default: Scripts/reference-venv's).") var python: String?
    @Option(help: "Where to write the JSON results.") var output = "bench/results.json"

    func run() throws {
        let root = FileManager.default.currentDirectoryPath
        let folder = "\(root)/.build/bench/images-\(width)"
        let manifest = try generate(folder: folder)
        let python = try self.python ?? referencePython(root: root)
        let source = try ManifestSource(path: manifest)
        let pipeline = ImagePipeline(preprocessing: ImagePreprocessing(size: 224), augmentation: ImageAugmentation(horizontalFlip: 0.5))
        let loader = DataLoader(source: .manifest(source), pipeline: pipeline, options: DataLoaderOptions(batchSize: 64, threads: 2))
        Torch.threadCount = 1

        func ours(_ epoch: Int) throws -> Double {
            let start = Date()
            var n = 0
            let iterator = loader.epoch(epoch)
            while let batch = try iterator.next() { n += batch.count }
            return Double(n) / Date().timeIntervalSince(start)
        }
        _ = try ours(0)
        var oursRates: [Double] = [], theirRates: [Double] = []
        for r in 0..<repetitions {
            theirRates.append(try runPython(python, ["\(root)/Benchmarks/data_reference.py", manifest, "1"]))
            oursRates.append(try ours(r + 1))
        }
        let o = median(oursRates), t = median(theirRates)
        print(String(format: "%d JPEGs of %d×%d, RandomResizedCrop 224 (bicubic, scale 0.9–1) + flip + normalise, 2 workers, medians of %d epochs", images, width, width * 3 / 4, repetitions))
        print(String(format: "  ours (TurboJPEG with DCT scaling, Pillow-exact resampling): %7.1f images/s", o))
        print(String(format: "  torchvision + PIL DataLoader(num_workers=2):                %7.1f images/s", t))
        print(String(format: "  speed-up: %.2fx", o / t))
        try record(Comparison(name: "data pipeline: decode + RRC 224 + flip + normalise (images/s)", ours: o, theirs: t,
                              unit: "images/s", ratio: o / t, goal: ">=2", note: "\(images) JPEGs of \(width)x\(width * 3 / 4), 2 workers each"),
                   to: output)
    }

    /// Photo-like JPEGs (gradients, shapes, noise) and a manifest listing them, made once.
    func generate(folder: String) throws -> String {
        let manifest = "\(folder)/manifest.csv"
        if FileManager.default.fileExists(atPath: manifest) { return manifest }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let encoder = JPEGEncoder()
        let height = width * 3 / 4
        var rows = "image_path,caption\n"
        for i in 0..<images {
            var random = SeededRandom(seed: 99, epoch: 0, index: i)
            var pixels = [UInt8](repeating: 0, count: width * height * 3)
            let tint = (random.uniform(0, 255), random.uniform(0, 255), random.uniform(0, 255))
            for y in 0..<height {
                for x in 0..<width {
                    let u = Double(x) / Double(width), v = Double(y) / Double(height)
                    let noise = random.uniform(-20, 20)
                    let texture = Double((x / 16 + y / 16) % 2) * 30   // edges for the codec to work on
                    let values = [tint.0 * u + 60 + noise, tint.1 * v + 40 + noise, tint.2 * 0.6 + texture + noise]
                    for c in 0..<3 { pixels[(y * width + x) * 3 + c] = UInt8(max(0, min(255, values[c]))) }
                }
            }
            let path = "\(folder)/\(String(format: "%05d", i)).jpg"
            try Data(try encoder.encode(RGBImage(width: width, height: height, pixels: pixels), quality: 90)).write(to: URL(fileURLWithPath: path))
            rows += "\(path),generated image \(i)\n"
        }
        try rows.write(toFile: manifest, atomically: true, encoding: .utf8)
        return manifest
    }
}

/// The reference venv's python (created by Scripts/reference-venv on first use).
func referencePython(root: String) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "\(root)/Scripts/reference-venv")
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    process.waitUntilExit()
    let path = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    guard process.terminationStatus == 0, !path.isEmpty else { throw ValidationError("Scripts/reference-venv failed") }
    return path
}

/// Runs a Python benchmark script and returns the last number it printed.
func runPython(_ python: String, _ arguments: [String]) throws -> Double {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: python)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    guard process.terminationStatus == 0, let value = text.split(separator: "\n").last.flatMap({ Double($0) }) else {
        throw ValidationError("\(arguments.first ?? python) failed: \(text)")
    }
    return value
}

/// Merges `comparison` into the results file, replacing an entry of the same name.
func record(_ comparison: Comparison, to output: String) throws {
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

func median(_ values: [Double]) -> Double {
    let s = values.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}
