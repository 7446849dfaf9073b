import Testing
import Torch

@Suite("Op recording for export")
struct OpRecorderTests {
    @Test func recordsOpsWithIdentityAndAttributes() {
        let weight = Tensor.randn([3, 4], generator: Generator(seed: 7)), bias = Tensor.zeros([3])
        let x = Tensor.randn([2, 4], generator: Generator(seed: 8))
        let recorder = OpRecorder()
        let y = recorder.record { F.gelu(F.linear(x, weight: weight, bias: bias), approximate: .tanh).reshape(-1, 6) }

        #expect(recorder.ops.map(\.name) == [.linear, .gelu, .reshape])
        #expect(recorder.ops.map { "\($0.name)" } == ["linear", "gelu", "reshape"])
        let linear = recorder.ops[0], gelu = recorder.ops[1], reshape = recorder.ops[2]
        #expect(linear.inputs.map { recorder.id(of: $0) } == [x, weight, bias].map { recorder.id(of: $0) })
        #expect(recorder.id(of: gelu.inputs[0]) == recorder.id(of: linear.outputs[0]))
        #expect(recorder.id(of: reshape.inputs[0]) == recorder.id(of: gelu.outputs[0]))
        #expect(reshape.outputs[0] === y)
        #expect(gelu.attributes["approximate"] == .string("tanh"))
        #expect(reshape.attributes["shape"] == .ints([-1, 6]))
        #expect(recorder.externalInputs.map { recorder.id(of: $0) } == [x, weight, bias].map { recorder.id(of: $0) })
        #expect(recorder.summary.contains("= linear(%0, %1, %2)"))
    }

    @Test func recordsMultiOutputOpsAndNothingOutsideTheScope() {
        let recorder = OpRecorder()
        let x = Tensor.randn([5], generator: Generator(seed: 26))
        _ = x.exp()
        recorder.record { _ = x.topk(2); _ = x.chunk(2) }
        _ = x.sin()
        #expect(recorder.ops.map(\.name) == [.topk, .chunk])
        #expect(recorder.ops[0].outputs.count == 2)
        #expect(recorder.ops[1].outputs.count == 2)
    }

    @Test func onlyTheRecordingThreadIsRecorded() {
        let recorder = OpRecorder()
        let started = Tensor.ones([1])
        recorder.record {
            // A concurrent thread running ops while this thread records.
            let other = Thread { for _ in 0..<1000 { _ = started + 1.0 } }
            other.start()
            for _ in 0..<10 { _ = started * 2.0 }
            while !other.isFinished { usleep(100) }
        }
        #expect(recorder.ops.count == 10)
        #expect(recorder.ops.allSatisfy { $0.name == .mulScalar })
    }

    @Test func nestedRecorderTakesOverAndRestores() {
        let outer = OpRecorder(), inner = OpRecorder()
        let x = Tensor.ones([2])
        outer.record {
            _ = x.exp()
            inner.record { _ = x.log() }
            _ = x.sqrt()
        }
        #expect(outer.ops.map(\.name) == [.exp, .sqrt])
        #expect(inner.ops.map(\.name) == [.log])
    }

    @Test func opNamesPrintAsTheirTorchStyleStrings() {
        #expect(OpName.layerNorm.rawValue == "layer_norm")
        #expect(OpName(rawValue: "mul_") == .mulInPlace)
        #expect("\(OpName.scaledDotProductAttention)" == "scaled_dot_product_attention")
        #expect(OpName.allCases.allSatisfy { "\($0)" == $0.rawValue })
        let x = Tensor.ones([2])
        let recorder = OpRecorder()
        recorder.record { x.add_(x); _ = x.variance() }
        #expect(recorder.ops.map(\.name) == [.addInPlace, .var])
        #expect(recorder.summary.contains("= add_(") && recorder.summary.contains("= var("))
    }
}

import Foundation
