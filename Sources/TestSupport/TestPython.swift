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
    FileManager.default.createFile(atPath: errorFile, contents: nil)
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

/// Scrapes `url` with Python's `urllib` and parses the page with `prometheus_client`'s
/// `text_string_to_metric_families` (the reference parser of the text format), which fails on
/// any malformed line; also returns the response's Content-Type.
public func scrapeWithPrometheusClient(_ url: String) throws -> (samples: [ScrapedSample], contentType: String) {
    let script = """
    import json, math, sys, urllib.request
    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(sys.argv[1], timeout=10) as response:
        content_type = response.headers.get("Content-Type")
        text = response.read().decode("utf-8")
    samples = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.append({"family": family.name, "type": family.type, "name": s.name, "labels": s.labels,
                            "value": s.value if math.isfinite(s.value) else str(s.value)})
    print(json.dumps({"content_type": content_type, "samples": samples}))
    """
    let output = try runTestPython(script, [url])
    guard let object = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any],
          let samples = object["samples"] as? [[String: Any]] else {
        throw TestPythonError(description: "unexpected output of the scrape: \(output.prefix(500))")
    }
    return (samples.map { sample in
        let value: Double
        switch sample["value"] {
        case let number as NSNumber: value = number.doubleValue
        case let text as String: value = Double(text.replacingOccurrences(of: "inf", with: "infinity")) ?? .nan
        default: value = .nan
        }
        return ScrapedSample(family: sample["family"] as? String ?? "", type: sample["type"] as? String ?? "",
                             name: sample["name"] as? String ?? "", labels: sample["labels"] as? [String: String] ?? [:], value: value)
    }, object["content_type"] as? String ?? "")
}
