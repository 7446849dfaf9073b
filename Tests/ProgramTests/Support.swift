// Helpers for running the built programs (train, distill, export, eval, embed, pack,
// make-dataset) in child processes, and the tiny data and checkpoints they run on.
import Foundation
import Testing
import Datasets
import NN
import Torch
import TestSupport

// MARK: - Finding the programs

/// Why a program could not be run (or a fixture could not be made).
struct ProgramError: Error, CustomStringConvertible, Sendable {
    let description: String
    init(_ description: String) { self.description = description }
}

enum Programs {
    /// The executables this target depends on (so `swift test` builds them).
    static let names = ["train", "distill", "export", "eval", "wise-ft", "embed", "merge", "pack", "make-dataset"]

    /// The folders where the built executables may be: SwiftPM puts them next to the test binary
    /// (Linux: `.build/<triple>/debug/ClipTunePackageTests.xctest` is an executable) or next to
    /// the `.xctest` bundle (macOS); then the repository's own `.build/debug` and `.build/release`.
    static let candidates: [String] = {
        var urls: [URL] = []
        if let executable = Bundle.main.executableURL { urls.append(executable.resolvingSymlinksInPath().deletingLastPathComponent()) }
        if let first = CommandLine.arguments.first {
            urls.append(URL(fileURLWithPath: first).resolvingSymlinksInPath().deletingLastPathComponent())
        }
        for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
            urls.append(bundle.bundleURL.resolvingSymlinksInPath().deletingLastPathComponent())
        }
        urls.append(URL(fileURLWithPath: "\(repositoryRoot)/.build/debug"))
        urls.append(URL(fileURLWithPath: "\(repositoryRoot)/.build/release"))
        var seen = Set<String>()
        return urls.map(\.standardizedFileURL.path).filter { seen.insert($0).inserted }
    }()

    /// The first candidate folder that holds a `train` executable.
    static let folder: String? = candidates.first { FileManager.default.isExecutableFile(atPath: "\($0)/train") }

    /// The path of a built program, or an error saying where it was looked for.
    static func path(_ name: String) throws -> String {
        guard let folder else {
            throw ProgramError("the built programs were not found (looked for `train` in \(candidates.joined(separator: ", "))); run `swift build --build-tests` first")
        }
        let path = "\(folder)/\(name)"
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw ProgramError("\(path) is missing; the ProgramTests target depends on `\(name)`, so `swift build --build-tests` should have built it")
        }
        return path
    }
}

// MARK: - Running them

/// A finished run of a program.
struct ProgramRun: CustomStringConvertible, Sendable {
    let command: String
    /// The exit status, or the signal number when `signaled`.
    let status: Int32
    let signaled: Bool
    /// The program outlived its time limit and was killed.
    let timedOut: Bool
    let stdout: String
    let stderr: String

    var succeeded: Bool { !timedOut && !signaled && status == 0 }

    var description: String {
        let how = timedOut ? "timed out and was killed" : signaled ? "was killed by signal \(status)" : "exited with status \(status)"
        return "`\(command)` \(how)\n--- stdout (end) ---\n\(stdout.suffix(4000))\n--- stderr (end) ---\n\(stderr.suffix(4000))"
    }

    /// Lines of stdout.
    var lines: [String] { stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) }
}

/// A program started in a child process, its output going to files (no pipe to fill up).
final class RunningProgram {
    let command: String
    private let process = Process()
    private let stdoutPath: String
    private let stderrPath: String

    /// `environment`: variables added to this process's for the child (torchrun's, say).
    init(_ name: String, _ arguments: [String], in directory: String = repositoryRoot, environment: [String: String] = [:]) throws {
        let executable = try Programs.path(name)
        command = ([name] + arguments).map { $0.contains(" ") || $0.isEmpty ? "'\($0)'" : $0 }.joined(separator: " ")
        let logs = NSTemporaryDirectory() + "cliptune-program-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        stdoutPath = "\(logs)/stdout"
        stderrPath = "\(logs)/stderr"
        _ = FileManager.default.createFile(atPath: stdoutPath, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        guard let out = FileHandle(forWritingAtPath: stdoutPath), let err = FileHandle(forWritingAtPath: stderrPath) else {
            throw ProgramError("cannot create the output files in \(logs)")
        }
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new } }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = out
        process.standardError = err
        try process.run()
        try? out.close()
        try? err.close()
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }
    func send(_ signal: Int32) { kill(process.processIdentifier, signal) }

    /// What the program has written to stderr so far.
    var stderrSoFar: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// Waits for the program to end; after `timeout` seconds it is killed and the run says so.
    func wait(timeout: TimeInterval) -> ProgramRun {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        let timedOut = process.isRunning
        if timedOut { send(SIGKILL) }
        process.waitUntilExit()
        return ProgramRun(command: command, status: process.terminationStatus, signaled: process.terminationReason == .uncaughtSignal,
                          timedOut: timedOut,
                          stdout: (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "",
                          stderr: (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "")
    }

    deinit {
        if process.isRunning {   // a test that failed half-way must not leave a child behind
            send(SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: stdoutPath).deletingLastPathComponent().path)
    }
}

/// Runs a program to its end (bounded by `timeout` seconds) in `directory`.
func run(_ name: String, _ arguments: [String], in directory: String = repositoryRoot, timeout: TimeInterval = 600,
         environment: [String: String] = [:]) throws -> ProgramRun {
    let result = try RunningProgram(name, arguments, in: directory, environment: environment).wait(timeout: timeout)
    print("ran \(result.command): \(result.succeeded ? "ok" : result.timedOut ? "timed out" : result.signaled ? "signal \(result.status)" : "status \(result.status)")")
    return result
}

/// Waits until `condition` holds, polling every `interval` seconds; false after `timeout`.
func poll(timeout: TimeInterval, interval: TimeInterval = 0.02, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(useconds_t(interval * 1e6))
    }
    return condition()
}

// MARK: - Files

func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

func readJSON(_ path: String) throws -> Any {
    guard let data = FileManager.default.contents(atPath: path) else { throw ProgramError("\(path) is missing") }
    return try JSONSerialization.jsonObject(with: data)
}

func readObject(_ path: String) throws -> [String: Any] {
    guard let object = try readJSON(path) as? [String: Any] else { throw ProgramError("\(path) is not a JSON object") }
    return object
}

/// JSON text (stdout of `eval`) as an object.
func parseObject(_ text: String, what: String) throws -> [String: Any] {
    guard let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else {
        throw ProgramError("\(what) is not a JSON object:\n\(text.prefix(2000))")
    }
    return object
}

func writeJSON(_ object: Any, to path: String) throws {
    try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        .write(to: URL(fileURLWithPath: path))
}

/// A metrics dictionary from JSON (numbers only).
func numbers(_ value: Any?) -> [String: Double] {
    ((value as? [String: Any]) ?? [:]).compactMapValues { ($0 as? NSNumber)?.doubleValue }
}

/// The step saved in a checkpoint folder's trainer_state.json.
func savedStep(_ folder: String) throws -> Int {
    let state = try readObject("\(folder)/trainer_state.json")
    guard let step = state["globalStep"] as? Int else { throw ProgramError("\(folder)/trainer_state.json has no globalStep") }
    return step
}

/// One line of a run's metrics.jsonl.
struct MetricsLine {
    let kind: String
    let step: Int
    let values: [String: Double]
}

/// Reads metrics.jsonl; every line must parse.
func metricsLines(_ runFolder: String) throws -> [MetricsLine] {
    let path = "\(runFolder)/metrics.jsonl"
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw ProgramError("\(path) is missing") }
    return try text.split(separator: "\n").enumerated().map { number, line in
        guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
              let kind = object["kind"] as? String, let step = object["step"] as? Int else {
            throw ProgramError("\(path):\(number + 1) is not a metrics record: \(line)")
        }
        return MetricsLine(kind: kind, step: step, values: numbers(object))
    }
}

/// The steps of the training records in a run's metrics.jsonl.
func trainSteps(_ runFolder: String) throws -> [Int] { try metricsLines(runFolder).filter { $0.kind == "train" }.map(\.step) }

/// Every tensor of two safetensors files is bit-identical (same names, shapes, dtypes, values).
func expectIdenticalTensors(_ a: String, _ b: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let x = try SafeTensors.load(a), y = try SafeTensors.load(b)
    #expect(!x.isEmpty, "\(a) holds no tensors", sourceLocation: sourceLocation)
    #expect(Set(x.keys) == Set(y.keys), "\(a) and \(b) hold different tensors", sourceLocation: sourceLocation)
    var differing: [String] = []
    for (name, t) in x {
        guard let u = y[name] else { continue }
        if t.dtype != u.dtype || t.shape != u.shape || !t.equal(u) { differing.append(name) }
    }
    #expect(differing.isEmpty, "\(differing.count) tensors differ between \(a) and \(b): \(differing.sorted().prefix(8))", sourceLocation: sourceLocation)
}

/// The first capture group of `pattern` in `text`.
func capture(_ pattern: String, in text: String) -> [String]? {
    guard let regex = try? NSRegularExpression(pattern: pattern),
          let match = regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) else { return nil }
    return (1..<match.numberOfRanges).compactMap { Range(match.range(at: $0), in: text).map { String(text[$0]) } }
}

// MARK: - Tiny data

enum Fixtures {
    static let classes = "\(repositoryRoot)/Data/shapes/classes.json"
    static let bpe = "\(repositoryRoot)/.deps/assets/bpe_simple_vocab_16e6.txt.gz"

    /// 96 training pairs (two shards of 48) and 32 validation pairs cut from Data/shapes/val-0000,
    /// plus the first 8 images as JPEG files with their first captions. Made once per process.
    static let data: Result<(shards: String, images: [(path: String, caption: String)]), ProgramError> = {
        do {
            let folder = temporaryFolder("programshapes")
            let source = try ShardReader(path: "\(repositoryRoot)/Data/shapes/val-0000.tar.zst")
            let train = try ShardWriter(folder: folder, prefix: "train", samplesPerShard: 48)
            let val = try ShardWriter(folder: folder, prefix: "val", samplesPerShard: 100)
            var images: [(String, String)] = []
            try FileManager.default.createDirectory(atPath: "\(folder)/images", withIntermediateDirectories: true)
            for i in 0..<128 {
                guard case .success(let record)? = try source.next(), case .bytes(let jpeg) = record.image else {
                    throw ProgramError("Data/shapes/val-0000.tar.zst: sample \(i) is unreadable")
                }
                let json = try JSONSerialization.data(withJSONObject: ["captions": record.captions, "label": record.label ?? ""])
                try (i < 96 ? train : val).add(key: String(format: "%06d", i), members: [("jpg", jpeg), ("json", [UInt8](json))])
                if i < 8 {
                    let path = "\(folder)/images/\(i).jpg"
                    try Data(jpeg).write(to: URL(fileURLWithPath: path))
                    images.append((path, record.captions[0]))
                }
            }
            try train.close()
            try val.close()
            return .success((folder, images))
        } catch {
            return .failure(ProgramError("cannot make the tiny shards: \(error)"))
        }
    }()

    static var shards: String { get throws { try data.get().shards } }
    static var images: [(path: String, caption: String)] { get throws { try data.get().images } }
    static var trainShards: String { get throws { "\(try shards)/train-{0000..0001}.tar.zst" } }
    static var valShards: String { get throws { "\(try shards)/val-0000.tar.zst" } }
}

/// A recipe for a tiny model from scratch (ViT 32 px / patch 8 / width 32 + a 1-layer CLIP text
/// tower with open_clip's tokenizer), on the tiny shards, as a JSON object to adjust and write.
func tinyRecipe(name: String, directory: String, steps: Int, textWidth: Int = 32) throws -> [String: Any] {
    [
        "name": name, "seed": 3,
        "model": [
            "vision": ["image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64],
            "text": ["hidden_size": textWidth, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 2 * textWidth,
                     "max_position_embeddings": 40, "tokenizer": Fixtures.bpe],
            "projection_dim": 16,
        ] as [String: Any],
        "data": ["train": ["shards": try Fixtures.trainShards], "val": ["shards": try Fixtures.valShards], "batch_size": 16, "threads": 2] as [String: Any],
        "optimizer": ["lr": 2e-3],
        "schedule": ["type": "cosine", "warmup_steps": 2] as [String: Any],
        "eval": ["every_steps": 4, "every_epoch": false, "zeroshot": ["classes": Fixtures.classes]] as [String: Any],
        "early_stopping": ["metric": "clip_val_loss", "mode": "min", "patience": 50] as [String: Any],
        "checkpoint": ["directory": directory, "every_steps": 2] as [String: Any],
        "max_steps": steps, "log_every_steps": 2,
    ]
}

/// Writes a recipe into `folder` as `<file>.json`; returns its path.
func writeRecipe(_ recipe: [String: Any], in folder: String, file: String) throws -> String {
    let path = "\(folder)/\(file).json"
    try writeJSON(recipe, to: path)
    return path
}

/// Tiny checkpoints made by the `train` program, shared by the tests that need one.
struct TrainedRun: Sendable {
    /// The run folder (holds best/, last/, metrics.jsonl...).
    let folder: String
    let recipe: String
    let run: ProgramRun
    var last: String { "\(folder)/last" }
    var best: String { "\(folder)/best" }
}

enum Trained {
    /// 8 steps of the tiny recipe (evaluation every 4, checkpoints every 2).
    static let tiny: Result<TrainedRun, ProgramError> = train(name: "tiny", steps: 8)
    /// The same recipe stopped after 2 steps: a second, different model for A/B comparisons.
    static let early: Result<TrainedRun, ProgramError> = train(name: "early", steps: 2)

    private static func train(name: String, steps: Int) -> Result<TrainedRun, ProgramError> {
        do {
            let folder = temporaryFolder("trained\(name)")
            let recipe = try writeRecipe(try tinyRecipe(name: name, directory: "\(folder)/runs", steps: steps), in: folder, file: name)
            let result = try run("train", ["--recipe", recipe])
            guard result.succeeded else { return .failure(ProgramError("training the tiny '\(name)' checkpoint failed: \(result)")) }
            return .success(TrainedRun(folder: "\(folder)/runs/\(name)", recipe: recipe, run: result))
        } catch {
            return .failure(ProgramError("training the tiny '\(name)' checkpoint failed: \(error)"))
        }
    }
}

// MARK: - ONNX bytes

/// The opset versions an ONNX model imports, by domain, read from the protobuf bytes
/// (ModelProto field 8 `opset_import`: OperatorSetIdProto { 1: domain, 2: version }).
func onnxOpsetImports(_ path: String) throws -> [String: Int] {
    guard let data = FileManager.default.contents(atPath: path) else { throw ProgramError("\(path) is missing") }
    let bytes = [UInt8](data)
    var result: [String: Int] = [:]
    func varint(_ b: [UInt8], _ i: inout Int) throws -> UInt64 {
        var value: UInt64 = 0, shift: UInt64 = 0
        while true {
            guard i < b.count, shift < 64 else { throw ProgramError("\(path): truncated varint") }
            let byte = b[i]
            i += 1
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
        }
    }
    /// Calls `body(field, wireType, payload or nil, varint value)` for each top-level field.
    func fields(_ b: [UInt8], _ body: (Int, [UInt8]?, UInt64) throws -> Void) throws {
        var i = 0
        while i < b.count {
            let key = try varint(b, &i)
            let field = Int(key >> 3), wire = key & 7
            switch wire {
            case 0: try body(field, nil, try varint(b, &i))
            case 1: i += 8
            case 5: i += 4
            case 2:
                let length = Int(try varint(b, &i))
                guard length >= 0, i + length <= b.count else { throw ProgramError("\(path): field \(field) runs past the end") }
                try body(field, Array(b[i..<(i + length)]), 0)
                i += length
            default: throw ProgramError("\(path): unexpected wire type \(wire) for field \(field)")
            }
        }
    }
    try fields(bytes) { field, payload, _ in
        guard field == 8, let payload else { return }
        var domain = "", version = -1
        try fields(payload) { f, p, v in
            if f == 1, let p { domain = String(decoding: p, as: UTF8.self) }
            if f == 2 { version = Int(v) }
        }
        result[domain] = version
    }
    return result
}

/// A TCP socket on 127.0.0.1 at `port` (0: the kernel's choice), listening when `listen` is set;
/// returns the descriptor (close it) and the port.
func loopbackSocket(port: Int = 0, listen listening: Bool = false) -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    if bound != 0 { close(fd); return (-1, port) }
    if listening { _ = listen(fd, 8) }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    return (fd, Int(UInt16(bigEndian: address.sin_port)))
}

/// A free TCP port on 127.0.0.1 (the kernel's choice).
func freePort() -> Int {
    let (fd, port) = loopbackSocket()
    close(fd)
    return port
}

/// Whether nothing holds `port` on 127.0.0.1.
func portIsFree(_ port: Int) -> Bool {
    guard port <= 65_535 else { return false }
    let (fd, _) = loopbackSocket(port: port)
    if fd >= 0 { close(fd) }
    return fd >= 0
}
