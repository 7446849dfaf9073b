import Testing
import Torch

@Suite("Op values")
struct OpsTests {
    @Test func creation() {
        #expect(Tensor.arange(0, 5).toArray(Int.self) == [0, 1, 2, 3, 4])
        #expect(Tensor.arange(1.0, 2.0, step: 0.25, dtype: .float64).toArray(Double.self) == [1, 1.25, 1.5, 1.75])
        #expect(Tensor.linspace(0, 1, count: 3).toArray(Float.self) == [0, 0.5, 1])
        #expect(Tensor.full([2], 7.5).toArray(Float.self) == [7.5, 7.5])
        #expect(Tensor.eye(2).toArray(Float.self) == [1, 0, 0, 1])
        #expect(Tensor.randperm(6).sort().values.toArray(Int.self) == [0, 1, 2, 3, 4, 5])
        let r = Tensor.randint(3, 7, [1000], generator: Generator(seed: 13))
        #expect(r.min().item(Int.self) >= 3 && r.max().item(Int.self) < 7)
        let u = Tensor.rand([10_000], dtype: .float64, generator: Generator(seed: 15))
        #expect(Swift.abs(u.mean().item(Double.self) - 0.5) < 0.02)
        let n = Tensor.randn([10_000], dtype: .float64, generator: Generator(seed: 17))
        #expect(Swift.abs(n.std().item(Double.self) - 1) < 0.05)
    }

    @Test func seedingIsReproducible() async throws {
        // The global generator is shared with tests running in parallel: check it in a child process.
        await #expect(processExitsWith: .success) {
            Torch.manualSeed(42)
            let a = Tensor.randn([5]).toArray(Float.self)
            Torch.manualSeed(42)
            exit(Tensor.randn([5]).toArray(Float.self) == a ? 0 : 1)
        }

        let g = Generator(seed: 9)
        let state = g.state
        let first = Tensor.rand([4], generator: g).toArray(Float.self)
        try g.setState(state)
        #expect(Tensor.rand([4], generator: g).toArray(Float.self) == first)
        #expect(g.seed == 9)
    }

    @Test func indexing() {
        let t = Tensor.arange(0, 24).reshape(2, 3, 4)
        #expect(t[1].shape == [3, 4])
        #expect(t[1, 2, 3].item(Int.self) == 23)
        #expect(t[-1, 0].toArray(Int.self) == [12, 13, 14, 15])
        #expect(t[.all, 1..<3, .all].shape == [2, 2, 4])
        #expect(t[.ellipsis, 0].toArray(Int.self) == [0, 4, 8, 12, 16, 20])
        #expect(t[.newAxis].shape == [1, 2, 3, 4])
        #expect(t[0, 0, TensorIndex.stride(by: 2)].toArray(Int.self) == [0, 2])
        #expect(t[0, ...1, 2...].toArray(Int.self) == [2, 3, 6, 7])
        #expect(t[0, ..<1].toArray(Int.self) == [0, 1, 2, 3])
    }

    @Test func joinSplitAndShape() {
        let a = Tensor([1, 2, 3, 4, 5], shape: [5])
        #expect(a.split(size: 2).map { $0.toArray(Int.self) } == [[1, 2], [3, 4], [5]])
        #expect(a.split(sizes: [1, 4]).map(\.count) == [1, 4])
        #expect(a.chunk(2).map(\.count) == [3, 2])
        #expect(Tensor.cat([a, a]).count == 10)
        #expect(Tensor.stack([a, a], dim: 1).shape == [5, 2])
        #expect(a.flip([0]).toArray(Int.self) == [5, 4, 3, 2, 1])
        #expect(a.roll(shifts: [2], dims: [0]).toArray(Int.self) == [4, 5, 1, 2, 3])
        #expect(a.reshape(1, 5).expand([3, -1]).shape == [3, 5])
        #expect(Tensor.ones([5, 2]).transpose(0, 1).isContiguous == false)
        #expect(Tensor.ones([5, 2]).transpose(0, 1).contiguous().isContiguous)
        #expect(Tensor.ones([2, 3, 4]).permute(2, 0, 1).shape == [4, 2, 3])
        #expect(Tensor.ones([2, 1, 3]).squeeze().shape == [2, 3])
        #expect(Tensor.ones([2, 12]).unflatten(dim: 1, sizes: [3, -1]).shape == [2, 3, 4])
        #expect(Tensor.ones([2, 3, 4]).flatten(start: 1).shape == [2, 12])
        #expect(Tensor.ones([2, 3]).strides == [3, 1])
    }

    @Test func comparisonsAndLogic() {
        let a = Tensor([1.0, 2.0, 3.0]), b = Tensor([3.0, 2.0, 1.0])
        #expect((a .< b).toArray(Bool.self) == [true, false, false])
        #expect((a .== b).toArray(Bool.self) == [false, true, false])
        #expect((a .>= 2.0).toArray(Bool.self) == [false, true, true])
        #expect(((a .> 1.0) .& (b .> 1.0)).toArray(Bool.self) == [false, true, false])
        #expect((.!(a .> 1.0)).toArray(Bool.self) == [true, false, false])
        #expect(a.equal(a.clone()))
        #expect(a.allClose(a + 1e-9))
        #expect(!a.allClose(b))
        #expect(Tensor([Double.nan, 1]).isNaN().toArray(Bool.self) == [true, false])
        #expect(Tensor([Double.infinity, 1]).isFinite().all().item(Bool.self) == false)
    }

    @Test func reductionsAndSelection() {
        let t = Tensor([3.0, 1.0, 4.0, 1.0, 5.0, 9.0], shape: [2, 3])
        #expect(t.sum().item(Double.self) == 23)
        #expect(t.sum(dim: 1).toArray(Double.self) == [8, 15])
        #expect(t.mean(dim: 0).toArray(Double.self) == [2, 3, 6.5])
        #expect(t.max(dim: 1).indices.toArray(Int.self) == [2, 2])
        #expect(t.argmax().item(Int.self) == 5)
        #expect(t.argmin(dim: 1).toArray(Int.self) == [1, 0])
        #expect(t.topk(2, dim: 1).values.toArray(Double.self) == [4, 3, 9, 5])
        #expect(t.sort(dim: 1, descending: true).indices.toArray(Int.self) == [2, 0, 1, 2, 1, 0])
        #expect(t.argsort(dim: 1).toArray(Int.self) == [1, 0, 2, 0, 1, 2])
        #expect(Swift.abs(Tensor([1.0, 2.0, 3.0, 4.0]).variance().item(Double.self) - 5.0 / 3.0) < 1e-12)
        #expect(Tensor([3.0, 4.0]).norm().item(Double.self) == 5)
        #expect(Swift.abs(Tensor([0.0, 0.0]).logsumexp(dims: [0]).item(Double.self) - 0.6931471805599453) < 1e-12)
        #expect(Tensor([1, 2, 3], shape: [3]).cumsum(dim: 0).toArray(Int.self) == [1, 3, 6])
        #expect(Tensor([2.0, 3.0]).prod(dim: 0).item(Double.self) == 6)
    }

    @Test func nnFunctionsAgainstHandComputedValues() {
        let logits = Tensor([2.0, 0.0, 0.0, 2.0], shape: [2, 2])
        let target = Tensor([0, 1])
        let expected = -Foundation.log(Foundation.exp(2.0) / (Foundation.exp(2.0) + 1))
        #expect(Swift.abs(F.crossEntropy(logits, target).item(Double.self) - expected) < 1e-12)
        #expect(Swift.abs(F.softmax(logits, dim: 1).sum(dim: 1).toArray(Double.self)[0] - 1) < 1e-12)
        #expect(F.normalize(Tensor([3.0, 4.0], shape: [1, 2])).toArray(Double.self) == [0.6, 0.8])
        #expect(Swift.abs(F.gelu(Tensor([1.0])).item(Double.self) - 0.8413447460685429) < 1e-12)
        let x = Tensor.ones([1, 1, 4, 4], dtype: .float64)
        #expect(F.interpolate(x, size: (2, 2), mode: .bicubic, antialias: true).allClose(Tensor.ones([1, 1, 2, 2], dtype: .float64)))
        // An identity affine transform reproduces the image.
        let img = Tensor.randn([1, 1, 3, 3], dtype: .float64, generator: Generator(seed: 113))
        let theta = Tensor([1.0, 0, 0, 0, 1, 0], shape: [1, 2, 3])
        let grid = F.affineGrid(theta, size: [1, 1, 3, 3])
        #expect(F.gridSample(img, grid: grid).allClose(img, atol: 1e-12))
        // Dropout in training zeroes about p of the elements and rescales the rest.
        let d = F.dropout(Tensor.ones([10_000]), p: 0.25, training: true)
        #expect(Swift.abs(d.eq(0.0).to(.float32).mean().item(Double.self) - 0.25) < 0.03)
        #expect(Swift.abs(d.max().item(Double.self) - 1 / 0.75) < 1e-6)
    }

    @Test func inPlaceOps() {
        let t = Tensor([1.0, 2.0])
        t.add_(Tensor([1.0, 1.0]), alpha: 2)
        #expect(t.toArray(Double.self) == [3, 4])
        t.mul_(0.5)
        t.addcmul_(Tensor([1.0, 1.0]), Tensor([2.0, 2.0]), value: 1)
        #expect(t.toArray(Double.self) == [3.5, 4])
        t.addcdiv_(Tensor([1.0, 1.0]), Tensor([2.0, 4.0]), value: -1)
        #expect(t.toArray(Double.self) == [3, 3.75])
        t.lerp_(Tensor([5.0, 5.0]), weight: 0.5)
        t.clamp_(max: 4.0)
        #expect(t.toArray(Double.self) == [4, 4])
        t.copy_(Tensor([9.0, 16.0]))
        t.sqrt_()
        #expect(t.toArray(Double.self) == [3, 4])
        t.fill_(2.0)
        t.zero_()
        #expect(t.toArray(Double.self) == [0, 0])
    }

    @Test func writingIntoTensorMemory() throws {
        let t = Tensor.empty([3], dtype: .uint8)
        try t.withUnsafeMutableBytes { $0.copyBytes(from: [7, 8, 9]) }
        #expect(t.toArray(UInt8.self) == [7, 8, 9])
        #expect(throws: TorchError.self) { try t.reshape(3, 1).expand([3, 2]).withUnsafeMutableBytes { _ in } }
    }
}

import Foundation
