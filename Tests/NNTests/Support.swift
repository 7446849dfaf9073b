import Foundation
import NN
import Torch
@_exported import TestSupport

enum Fixture {
    static func path(_ name: String, _ ext: String) -> String {
        Bundle.module.path(forResource: name, ofType: ext, inDirectory: "Fixtures")!
    }
}

