import Testing
import Torch

/// The fused optimizer kernels' wrappers: the checks that keep the CPU kernels (which trust
/// every tensor to be a flat array of its parameter's size) in bounds, and the foreach ops.
@Suite("Fused optimizer kernels")
struct OptimizerKernelTests {
    func adamW(params: [Tensor], grads: [Tensor], state: [Tensor]? = nil, steps: [Tensor]? = nil) throws -> Bool {
        try withTorchErrors {
            Tensor.fusedAdamW_(params: params, grads: grads, expAvgs: state ?? params.map { Tensor.zeros($0.shape) },
                               expAvgSqs: params.map { Tensor.zeros($0.shape) },
                               stateSteps: steps ?? params.map { _ in Tensor.ones([]) }, learningRate: 0.1, beta1: 0.9, beta2: 0.99,
                               weightDecay: 0.1, eps: 1e-8)
        }
    }

    @Test func oneAdamWStepByHand() throws {
        let p = Tensor([1.0, -2.0] as [Float]), g = Tensor([0.5, 0.25] as [Float])
        #expect(try adamW(params: [p], grads: [g]))
        // Step 1: m̂ = g, v̂ = g², so the update is lr · g / (|g| + eps) = ±lr, after decay.
        let expected = Tensor([1.0 * (1 - 0.01) - 0.1, -2.0 * (1 - 0.01) - 0.1] as [Float])
        #expect((p - expected).abs().max().item(Double.self) < 1e-6)
        #expect(try adamW(params: [], grads: []))   // nothing to do (libtorch would fail on empty lists)
        #expect(Tensor.foreachNorm([]).isEmpty)
    }

    @Test func listsThatDoNotFitAreErrors() throws {
        let p = Tensor.zeros([3]), g = Tensor.ones([3])
        let cases: [(() throws -> Bool, String)] = [
            ({ try adamW(params: [p], grads: []) }, "0 grad tensors, expected 1"),
            ({ try adamW(params: [p], grads: [g], steps: []) }, "0 state_step tensors, expected 1"),
            ({ try adamW(params: [p], grads: [Tensor.ones([4])]) }, "the grad of parameter 0 has shape [4], the parameter [3]"),
            ({ try adamW(params: [p], grads: [g], state: [Tensor.zeros([6]).slice(dim: 0, step: 2)]) },
             "the exp_avg of parameter 0 is not contiguous"),
            ({ try adamW(params: [Tensor.zeros([2, 2]).transpose(0, 1)], grads: [Tensor.ones([2, 2])]) }, "parameter 0 is not contiguous"),
        ]
        for (call, message) in cases {
            let error = #expect(throws: TorchError.self) { _ = try call() }
            #expect(error?.message == message, "\(error.map { "\($0)" } ?? "")")
        }
        #expect(p.equal(Tensor.zeros([3])), "nothing ran")
        let sgd = #expect(throws: TorchError.self) {
            try withTorchErrors {
                Tensor.fusedSGD_(params: [p], grads: [g], momentumBuffers: [], learningRate: 0.1, weightDecay: 0, momentum: 0.9, dampening: 0,
                                 nesterov: false, isFirstStep: true, names: ["fc.weight"])
            }
        }
        #expect(sgd?.message == "0 momentum_buffer tensors, expected 1")
    }

    @Test func foreachOps() {
        let a = Tensor([3.0, 4.0] as [Float]), b = Tensor([1.0] as [Double])
        let norms = Tensor.foreachNorm([a, b])
        #expect(norms.map { $0.item(Double.self) } == [5, 1])
        #expect(norms[1].dtype == .float64)
        Tensor.foreachMul_([a], Tensor(scalar: Float(0.5)))
        Tensor.foreachAdd_([a], 1)
        #expect(a.equal(Tensor([2.5, 3.0] as [Float])))
    }
}
