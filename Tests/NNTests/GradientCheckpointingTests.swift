import Testing
import Torch
import NN

/// A layer that counts its passes: twice per step when checkpointed (forward, then backward).
private final class CountingLayer: Module {
    let linear = Linear(4, 4)
    var passes = 0
    func callAsFunction(_ x: Tensor) -> Tensor {
        passes += 1
        return linear(x).tanh()
    }
}

private final class Stack: Module, CheckpointableLayers {
    let layers = [CountingLayer(), CountingLayer()]
    var gradientCheckpointing = false
    func callAsFunction(_ x: Tensor) -> Tensor {
        layers.reduce(x) { h, layer in layer.checkpointed(h, if: gradientCheckpointing) { layer($0) } }
    }
}

@Suite("Module.checkpointed: when a layer is recomputed")
struct LayerCheckpointingTests {
    private func passes(_ stack: Stack, input: Tensor, grad: Bool = true) -> [Int] {
        for layer in stack.layers {
            layer.passes = 0
            layer.linear.weight.grad = nil
        }
        if grad {
            stack(input).sum().backward()
        } else {
            _ = withNoGrad { stack(input) }
        }
        return stack.layers.map(\.passes)
    }

    @Test func onlyLayersWithSomethingToDifferentiateAreRecomputed() {
        let stack = Stack()
        #expect(stack.setGradientCheckpointing(true) == 1 && stack.gradientCheckpointing)
        let x = Tensor.randn([2, 4])
        #expect(passes(stack, input: x) == [2, 2])
        #expect(passes(stack, input: x, grad: false) == [1, 1])     // no-grad: nothing kept, nothing to redo
        stack.layers[0].freeze()                                      // a locked prefix
        #expect(passes(stack, input: x) == [1, 2])
        #expect(stack.layers[0].linear.weight.grad == nil && stack.layers[1].linear.weight.grad != nil)
        #expect(passes(stack, input: x.requiringGrad()) == [2, 2])   // the input's gradient goes through it
        stack.setGradientCheckpointing(false)
        #expect(passes(stack, input: x.requiringGrad()) == [1, 1])
    }
}
