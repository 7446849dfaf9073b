import Foundation

/// Why a Python check could not run or failed.
public struct TestPythonError: Error, CustomStringConvertible {
    public let description: String
}

/// `.deps/python` (Scripts/bootstrap makes it, with the packages the interoperability tests use).
public let testPython = "\(repositoryRoot)/.deps/python"

/// Runs `script` with `.deps/python` and returns its standard output; a non-zero exit is an
/// error carrying the end of its standard error.
public func runTestPython(_ script: String, _ arguments: [String] = []) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: testPython)
    process.arguments = ["-c", script] + arguments
    process.standardInput = FileHandle.nullDevice
    // Standard error into a file, so that neither stream can fill a pipe and block it.
    let errorFile = "\(temporaryFolder("python"))/stderr"
    _ = FileManager.default.createFile(atPath: errorFile, contents: nil)
    let errors = try FileHandle(forWritingTo: URL(fileURLWithPath: errorFile))
    defer { try? errors.close() }
    let output = Pipe()
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    let stdout = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let stderr = FileManager.default.contents(atPath: errorFile) ?? Data()
    guard process.terminationStatus == 0 else {
        throw TestPythonError(description: "python exited with \(process.terminationStatus) (Scripts/bootstrap installs the test packages into .deps/python):\n\(String(decoding: stderr, as: UTF8.self).suffix(3000))")
    }
    return String(decoding: stdout, as: UTF8.self)
}

/// One sample of a Prometheus scrape, as `prometheus_client`'s parser reads it.
public struct ScrapedSample: Sendable, Equatable {
    public let family: String
    public let type: String
    public let name: String
    public let labels: [String: String]
    public let value: Double
}

extension Array where Element == ScrapedSample {
    /// The value of the first sample named `name` that carries `labels` (among others), or nil.
    public func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        first { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }?.value
    }
}

/// Scrapes `url` with Python's `urllib` and parses the page with `prometheus_client`'s
/// `text_string_to_metric_families` (the reference parser of the text format), which fails on
/// any malformed line; also returns the response's Content-Type.
public func scrapeWithPrometheusClient(_ url: String) throws -> (samples: [ScrapedSample], contentType: String) {
    let script = """
    import json, sys, urllib.request
    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(sys.argv[1], timeout=10) as response:
        content_type = response.headers.get("Content-Type")
        text = response.read().decode("utf-8")
    samples = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.append({"family": family.name, "type": family.type, "name": s.name, "labels": s.labels,
                            "value": repr(float(s.value))})
    print(json.dumps({"content_type": content_type, "samples": samples}))
    """
    let output = try runTestPython(script, [url])
    guard let object = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any],
          let samples = object["samples"] as? [[String: Any]] else {
        throw TestPythonError(description: "unexpected output of the scrape: \(output.prefix(500))")
    }
    return (samples.map { sample in
        // Values travel as Python's repr: exact (JSON numbers may lose the last bit here) and
        // spelling NaN and infinities, which Double(String) reads.
        let value = (sample["value"] as? String).flatMap(Double.init) ?? .nan
        return ScrapedSample(family: sample["family"] as? String ?? "", type: sample["type"] as? String ?? "",
                             name: sample["name"] as? String ?? "", labels: sample["labels"] as? [String: String] ?? [:], value: value)
    }, object["content_type"] as? String ?? "")
}

/// One point of a TensorBoard scalar series.
public struct TensorBoardPoint: Sendable, Equatable {
    public let step: Int
    public let wallTime: Double
    public let value: Double
}

/// The scalar series of the events files in `folder`, read by tensorboard's EventAccumulator
/// (what `tensorboard --logdir` loads them with), keeping every point.
public func readWithTensorBoard(_ folder: String) throws -> [String: [TensorBoardPoint]] {
    let script = """
    import json, sys
    from tensorboard.backend.event_processing import event_accumulator
    accumulator = event_accumulator.EventAccumulator(sys.argv[1], size_guidance={event_accumulator.SCALARS: 0})
    accumulator.Reload()
    # Numbers as repr: exact, and NaN has no JSON spelling.
    print(json.dumps({tag: [[e.step, repr(float(e.wall_time)), repr(float(e.value))] for e in accumulator.Scalars(tag)]
                      for tag in accumulator.Tags()["scalars"]}))
    """
    let output = try runTestPython(script, [folder])
    guard let object = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: [[Any]]] else {
        throw TestPythonError(description: "unexpected output of EventAccumulator: \(output.prefix(500))")
    }
    return object.mapValues { points in
        points.map { point in
            let number = { (index: Int) in (point[index] as? String).flatMap(Double.init) ?? .nan }
            return TensorBoardPoint(step: (point[0] as? Int) ?? -1, wallTime: number(1), value: number(2))
        }
    }
}
