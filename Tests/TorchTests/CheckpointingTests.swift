import Testing
import Torch

/// A block with a parameter, and how often it ran. Its dropout draws from the default generator,
/// which tests running in parallel share: tests that compare values with it on run in a child
/// process.
private final class Block {
    let weight = Tensor.randn([6, 6], generator: Generator(seed: 7)).requiringGrad()
    let dropout: Double
    var calls = 0
    init(dropout: Double = 0.3) { self.dropout = dropout }
    func callAsFunction(_ x: Tensor) -> Tensor {
        calls += 1
        return x + F.dropout(x.matmul(weight).tanh(), p: dropout, training: dropout > 0)
    }
}

/// Max |a − b| of two optional gradients; infinity when only one exists.
private func difference(_ a: Tensor?, _ b: Tensor?) -> Double {
    switch (a, b) {
    case (nil, nil): 0
    case (let a?, let b?): (a - b).abs().max().item(Double.self)
    default: .infinity
    }
}

/// Gradients of the input and the weight through three chained blocks, from seed 5.
private func gradients(_ block: Block, checkpointed: Bool, inputNeedsGrad: Bool = true)
    -> (input: Tensor?, weight: Tensor?, after: Tensor) {
    let x0 = Tensor.randn([4, 6], generator: Generator(seed: 3)).requiringGrad(inputNeedsGrad)
    block.weight.grad = nil
    Torch.manualSeed(5)
    var h = x0
    for _ in 0..<3 {
        h = checkpointed ? Autograd.checkpoint([h], parameters: [block.weight]) { block($0[0]) } : block(h)
    }
    (h * h).sum().backward()
    return (x0.grad, block.weight.grad, Tensor.rand([8]))   // the generator after forward and backward
}

@Suite("Gradient checkpointing (the bridge's autograd function)")
struct CheckpointingTests {
    @Test func gradientsMatchTheUncheckedRunWithDropout() async {
        await #expect(processExitsWith: .success) {
            let block = Block()
            let plain = gradients(block, checkpointed: false)
            block.calls = 0
            let checked = gradients(block, checkpointed: true)
            #expect(block.calls == 6, "\(block.calls) calls")   // each block once in forward and once in backward
            #expect(difference(plain.input, checked.input) <= 1e-6, "input: \(difference(plain.input, checked.input))")
            #expect(difference(plain.weight, checked.weight) <= 1e-6, "weight: \(difference(plain.weight, checked.weight))")
            // The recomputation's draws are undone: the generator is where the unchecked run left it.
            #expect(plain.after.equal(checked.after), "the generator moved")
            // Dropout really draws: another seed changes the gradients, so restoring the state matters.
            block.weight.grad = nil
            Torch.manualSeed(6)
            let x = Tensor.randn([4, 6], generator: Generator(seed: 3))
            let h = block(block(block(x)))
            (h * h).sum().backward()
            #expect(difference(plain.weight, block.weight.grad) > 1e-3, "dropout drew nothing")
        }
    }

    @Test func anInputWithoutGradientStillTrainsTheParameters() async {
        // The first trainable layer after a locked prefix: a reentrant checkpoint of PyTorch's
        // would give the weight no gradient here.
        await #expect(processExitsWith: .success) {
            let block = Block()
            let plain = gradients(block, checkpointed: false, inputNeedsGrad: false)
            let checked = gradients(block, checkpointed: true, inputNeedsGrad: false)
            #expect(checked.input == nil && plain.input == nil, "an input gradient")
            #expect(checked.weight != nil && difference(plain.weight, checked.weight) <= 1e-6, "weight: \(difference(plain.weight, checked.weight))")
        }
    }

    @Test func autocastIsRecomputedAsInForward() async {
        await #expect(processExitsWith: .success) {
            let block = Block()
            let x = Tensor.randn([4, 6], generator: Generator(seed: 3)).requiringGrad()
            func run(_ checkpointed: Bool, autocast: Bool = true) -> Tensor? {
                block.weight.grad = nil
                Torch.manualSeed(5)
                let forward = { checkpointed ? Autograd.checkpoint([x], parameters: [block.weight]) { block($0[0]) } : block(x) }
                let y = autocast ? withAutocast(.bfloat16, forward) : forward()
                (y * y).sum().backward()   // outside autocast, as a training step's backward
                return block.weight.grad
            }
            let plain = run(false), checked = run(true), float32 = run(false, autocast: false)
            #expect(difference(plain, checked) <= 1e-6, "checkpointed under bf16 autocast: \(difference(plain, checked))")
            // bf16 matters: a recomputation in float32 would be far off.
            #expect(difference(plain, float32) > 1e-4, "bf16 vs float32: \(difference(plain, float32))")
        }
    }

    @Test func theBlockIsReleasedWithTheGraph() {
        weak var released: Block?
        do {
            let block = Block(dropout: 0)
            released = block
            let y = Autograd.checkpoint([Tensor.ones([2, 6]).requiringGrad()], parameters: [block.weight]) { block($0[0]) }
            y.sum().backward()
        }
        #expect(released == nil)
        do {   // under no-grad the block runs once and is let go at once
            let block = Block(dropout: 0)
            released = block
            _ = withNoGrad { Autograd.checkpoint([Tensor.ones([2, 6])], parameters: [block.weight]) { block($0[0]) } }
            #expect(block.calls == 1)
        }
        #expect(released == nil)
    }

    private struct Refused: Error, CustomStringConvertible { var description: String { "refused on purpose" } }

    @Test func aFailureInTheRecomputationIsAThrownError() throws {
        let w = Tensor.ones([3]).requiringGrad()
        var calls = 0
        let y = Autograd.checkpoint([Tensor.ones([3]).requiringGrad()], parameters: [w]) { inputs in
            calls += 1
            if calls == 2 { throw Refused() }
            return inputs[0] * w
        }
        let error = #expect(throws: TorchError.self) { try withTorchErrors { y.sum().backward() } }
        #expect(error?.message.contains("refused on purpose") == true, "\(String(describing: error))")
        #expect(error?.isOutOfMemory == false)
    }

    @Test func outOfMemoryInTheRecomputationKeepsItsKind() throws {
        let w = Tensor.ones([3]).requiringGrad()
        var calls = 0
        let y = Autograd.checkpoint([Tensor.ones([3])], parameters: [w]) { inputs in
            calls += 1
            if calls == 2 { throw TorchError(operation: "matmul", message: "can't allocate memory", site: nil, inputShapes: [], kind: .outOfMemory) }
            return inputs[0] * w
        }
        let error = #expect(throws: TorchError.self) { try withTorchErrors { y.sum().backward() } }
        #expect(error?.isOutOfMemory == true)
    }

    @Test func aLibtorchFailureInTheForwardBlockIsAThrownError() {
        let w = Tensor.ones([3, 3]).requiringGrad()
        let error = #expect(throws: TorchError.self) {
            try withTorchErrors { _ = Autograd.checkpoint([Tensor.ones([2, 4])], parameters: [w]) { $0[0].matmul(w) } }
        }
        #expect(error?.operation == "checkpoint")
        #expect(error?.message.contains("cannot be multiplied") == true, "\(String(describing: error))")
    }
}
