import Testing
import Torch

@Suite("Autograd, no-grad, inference mode and autocast")
struct AutogradTests {
    @Test func backwardAccumulatesAndGradCanBeSetAndCleared() {
        let w = Tensor([1.0, -2.0]).requiringGrad()
        #expect(w.requiresGrad && w.isLeaf && w.grad == nil)
        (w * w).sum().backward()
        #expect(w.grad?.toArray(Double.self) == [2, -4])
        (w * 3.0).sum().backward()   // accumulates
        #expect(w.grad?.toArray(Double.self) == [5, -1])
        w.grad = nil
        #expect(w.grad == nil)
        w.grad = Tensor([0.5, 0.5])
        #expect(w.grad?.toArray(Double.self) == [0.5, 0.5])
    }

    @Test func explicitGradientRetainGraphAndNonLeafGrad() {
        let x = Tensor([1.0, 2.0]).requiringGrad()
        let y = x * x
        y.retainGrad()
        y.backward(Tensor([1.0, 1.0]), retainGraph: true)
        y.backward(Tensor([1.0, 0.0]))
        #expect(x.grad?.toArray(Double.self) == [4, 4])
        #expect(y.grad?.toArray(Double.self) == [2, 1])
        #expect(!y.isLeaf)
    }

    @Test func backwardOnANonScalarWithoutGradientThrowsInScope() {
        let x = Tensor([1.0, 2.0]).requiringGrad()
        #expect(throws: TorchError.self) { try withTorchErrors { (x * 2.0).backward() } }
    }

    @Test func noGradAndInferenceModeRecordNothing() {
        let w = Tensor([1.0]).requiringGrad()
        let y = withNoGrad { w * 2.0 }
        #expect(!y.requiresGrad)
        #expect(Autograd.isGradEnabled)
        let z = withNoGrad { withGrad { w * 2.0 } }
        #expect(z.requiresGrad)
        let i = withInferenceMode { w * 2.0 }
        #expect(!i.requiresGrad)
        #expect((w * 2.0).requiresGrad)
        #expect(w.detach().requiresGrad == false)
    }

    @Test func autocastRunsMatmulInBFloat16AndRestores() {
        let a = Tensor.randn([4, 8], generator: Generator(seed: 49)), b = Tensor.randn([8, 4], generator: Generator(seed: 50))
        let (product, loss) = withAutocast(.bfloat16) {
            let p = a.matmul(b)
            return (p, F.crossEntropy(p, Tensor([0, 1, 2, 3])))
        }
        #expect(product.dtype == .bfloat16)
        #expect(loss.dtype == .float32)   // losses autocast to fp32
        #expect(a.matmul(b).dtype == .float32)
        #expect(product.to(.float32).allClose(a.matmul(b), rtol: 0.05, atol: 0.1))
        // Gradients flow back to fp32 leaves.
        let w = Tensor.randn([8, 4], generator: Generator(seed: 59)).requiringGrad()
        withAutocast { F.linear(a, weight: w.mT).to(.float32).sum() }.backward()
        #expect(w.grad?.dtype == .float32)
    }
}
