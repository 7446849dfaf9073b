import Foundation

enum Fixture {
    static func path(_ name: String) -> String {
        Bundle.module.bundlePath + "/Fixtures/" + name
    }
}

/// The repository root, from this source file's location.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// A fresh empty folder under the system temporary directory.
func temporaryFolder(_ label: String = #function) -> String {
    let safe = label.filter { $0.isLetter || $0.isNumber }
    let path = NSTemporaryDirectory() + "cliptune-\(safe)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
