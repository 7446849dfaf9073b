import Foundation
@_exported import TestSupport

enum Fixture {
    static func path(_ name: String) -> String {
        Bundle.module.bundlePath + "/Fixtures/" + name
    }
}

