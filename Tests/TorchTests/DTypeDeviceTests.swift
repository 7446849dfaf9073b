import Testing
import Torch

@Suite("Data types and devices")
struct DTypeDeviceTests {
    @Test func swiftArraysRoundTripInEveryElementType() {
        #expect(Tensor([1.5, -2.25] as [Float]).toArray(Float.self) == [1.5, -2.25])
        #expect(Tensor([1.5, -2.25]).toArray(Double.self) == [1.5, -2.25])
        #expect(Tensor([1.5, -2.25] as [Float16]).toArray(Float16.self) == [1.5, -2.25])
        #expect(Tensor([Int64.max, Int64.min] as [Int64]).toArray(Int64.self) == [Int64.max, Int64.min])
        #expect(Tensor([Int32.max, -7] as [Int32]).toArray(Int32.self) == [Int32.max, -7])
        #expect(Tensor([0, 255] as [UInt8]).toArray(UInt8.self) == [0, 255])
        #expect(Tensor([true, false, true]).toArray(Bool.self) == [true, false, true])
        #expect(Tensor([1, 2, 3], shape: [3, 1]).shape == [3, 1])
        #expect(Tensor(scalar: 4.0).shape == [])
        #expect(Tensor([Int]()).count == 0)
    }

    @Test(arguments: DType.allCases) func dtypeIsReportedAndConvertible(_ dtype: DType) {
        let t = Tensor.ones([2, 3], dtype: dtype)
        #expect(t.dtype == dtype)
        #expect(t.bytes().count == 6 * dtype.byteSize)
        let back = t.to(.float64).to(dtype).to(.float64)
        #expect(back.toArray(Double.self) == Array(repeating: 1, count: 6))
    }

    @Test func bfloat16ThroughRawBytes() throws {
        // bf16 1.0 = 0x3F80, -2.0 = 0xC000 (little endian).
        let raw: [UInt8] = [0x80, 0x3F, 0x00, 0xC0]
        let t = try raw.withUnsafeBytes { try Tensor(bytes: $0, shape: [2], dtype: .bfloat16) }
        #expect(t.dtype == .bfloat16)
        #expect(t.toArray(Float.self) == [1, -2])
        #expect(t.bytes() == raw)
    }

    @Test func conversionsRoundAndTruncateAsTorch() {
        #expect(Tensor([1.7, -1.7]).to(.int64).toArray(Int.self) == [1, -1])
        #expect(Tensor([0.0, 2.0]).to(.bool).toArray(Bool.self) == [false, true])
        #expect(Tensor([0.1] as [Float]).to(.float64).item(Double.self) == Double(Float(0.1)))
    }

    @Test func cpuDeviceAndCUDAWhenAbsent() throws {
        let t = Tensor.ones([2])
        #expect(t.device == .cpu)
        #expect(t.to(.cpu).device == .cpu)
        if Torch.isCUDAAvailable {
            let g = t.to(.cuda)
            #expect(g.device == .cuda(0))
            #expect(g.to(.cpu).toArray(Float.self) == [1, 1])
        } else {
            #expect(Torch.cudaDeviceCount == 0)
            #expect(throws: TorchError.self) { try withTorchErrors { _ = t.to(.cuda) } }
        }
    }

    @Test func scalarsKeepIntegersExact() {
        let big = Tensor.full([1], 9_007_199_254_740_993, dtype: .int64)   // 2^53 + 1: not a Double
        #expect(big.item(Int.self) == 9_007_199_254_740_993)
        #expect((Tensor([1, 2, 3]) + 1).toArray(Int.self) == [2, 3, 4])
        #expect((Tensor([1, 2, 3]) * 0.5).dtype == .float32)
    }
}
