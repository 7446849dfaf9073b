import Testing
import Torch

@Suite("libtorch failures become Swift errors")
struct ErrorTests {
    @Test func shapeMismatchThrowsWithLibtorchMessageAndCallSite() throws {
        let a = Tensor.ones([2, 3]), b = Tensor.ones([4, 5])
        let error = #expect(throws: TorchError.self) {
            try withTorchErrors { _ = a.matmul(b) }
        }
        let e = try #require(error)
        #expect(e.message.contains("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"))
        #expect(e.operation == "matmul")
        #expect(e.site?.file.hasSuffix("ErrorTests.swift") == true)
        #expect(e.inputShapes == [[2, 3], [4, 5]])
        #expect("\(e)".contains("ErrorTests.swift:"))
        // The process and libtorch carry on.
        #expect(a.matmul(Tensor.ones([3, 2])).sum().item(Float.self) == 12)
    }

    @Test func firstFailureIsReportedAndLaterOpsDoNotTrap() throws {
        let error = #expect(throws: TorchError.self) {
            try withTorchErrors {
                let bad = Tensor.ones([3]).reshape(2, 2)        // fails
                let later = bad.exp().sum()                       // runs on an undefined tensor
                _ = later.item(Float.self)
            }
        }
        #expect(error?.operation == "reshape")
        #expect(error?.message.contains("invalid for input of size 3") == true)
    }

    /// Module code reads sizes between ops; after a failure the tensor is undefined (rank 0), so
    /// `size` must fail like an op, not index past the shape: 3 cases (an undefined tensor, a
    /// dimension past the rank, one below it).
    @Test func sizesOfFailedOrTooSmallTensorsAreErrorsNotTraps() throws {
        let error = #expect(throws: TorchError.self) {
            try withTorchErrors {
                let bad = Tensor.ones([3]).reshape(2, 2)
                let width = bad.size(1)                           // undefined: rank 0
                _ = Tensor.zeros([width, width]).sum()
            }
        }
        #expect(error?.operation == "reshape")
        for dim in [2, -3] {
            let sized = #expect(throws: TorchError.self) { try withTorchErrors { _ = Tensor.ones([2, 3]).size(dim) } }
            #expect(sized?.operation == "size" && sized?.message == "dimension \(dim) is out of range for a tensor of rank 2")
        }
        #expect(Tensor.ones([2, 3]).size(-1) == 3)
    }

    @Test func nestedScopesAndValuesFromSuccessfulBodies() throws {
        let value = try withTorchErrors { try withTorchErrors { Tensor([1.0, 2.0]).sum().item(Double.self) } }
        #expect(value == 3)
        var innerFailed = false
        try withTorchErrors {
            innerFailed = (try? withTorchErrors { _ = Tensor.ones([2]).view([3]) }) == nil
            _ = Tensor.ones([2]).add(Tensor.ones([2]))   // the outer scope saw no failure: no throw
        }
        #expect(innerFailed)
    }

    @Test func badUserBytesThrowBeforeReachingLibtorch() {
        let bytes: [UInt8] = [0, 0, 128, 63, 0, 0]
        #expect(throws: TorchError.self) {
            try bytes.withUnsafeBytes { try Tensor(bytes: $0, shape: [2], dtype: .float32) }
        }
        let ok = try? bytes.withUnsafeBytes { try Tensor(bytes: UnsafeRawBufferPointer(rebasing: $0[0..<4]), shape: [1], dtype: .float32) }
        #expect(ok?.item(Float.self) == 1)
    }

    @Test func generatorStateFromTheWrongSourceThrows() {
        let g = Generator(seed: 3)
        #expect(throws: TorchError.self) { try g.setState(Tensor.zeros([4], dtype: .uint8)) }
        #expect(Tensor.rand([2], generator: g).count == 2)
    }

    @Test func failureOutsideAScopeStopsWithMessageAndCallSite() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Tensor.ones([2, 3]).matmul(Tensor.ones([4, 5]))
        }
        let stderr = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(stderr.contains("mat1 and mat2 shapes cannot be multiplied"))
        #expect(stderr.contains("ErrorTests.swift:"))
    }
}
