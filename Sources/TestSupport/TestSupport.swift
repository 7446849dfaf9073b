// Helpers shared by the test targets (not part of any product).
import Foundation
import Torch

/// The repository root, from this source file's location (Sources/TestSupport/…).
public let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// A fresh empty folder under the system temporary directory, named after the calling test.
public func temporaryFolder(_ label: String = #function) -> String {
    let safe = label.filter { $0.isLetter || $0.isNumber }
    let path = NSTemporaryDirectory() + "cliptune-\(safe)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Largest absolute elementwise difference, in float64.
public func maxDifference(_ a: Tensor, _ b: Tensor) -> Double {
    (a.to(.float64) - b.to(.float64)).abs().max().item(Double.self)
}
