import Foundation
import NN
import Torch

enum Fixture {
    static func path(_ name: String, _ ext: String) -> String {
        Bundle.module.path(forResource: name, ofType: ext, inDirectory: "Fixtures")!
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

func maxDifference(_ a: Tensor, _ b: Tensor) -> Double {
    (a.to(.float64) - b.to(.float64)).abs().max().item(Double.self)
}
