import Foundation
import Testing
import NN
import Torch
@testable import Optim

/// 20 steps against torch.optim with fused=True (fixture from Scripts/fixtures/optim_fixtures.py).
@Suite("Optimizers match torch.optim", .serialized)
struct OptimizerParityTests {
    let t: Trajectories
    init() throws { t = try Trajectories() }

    @Test func adamWWithGroupsScheduleAndClipping() throws {
        let p = t.parameters()
        let optimizer = AdamW(groups: [
            ParameterGroup(name: "decay", parameters: p.named("W"), learningRate: 5e-3, weightDecay: 0.2),
            ParameterGroup(name: "no_decay", parameters: p.named("b", "g"), learningRate: 1e-2, weightDecay: 0),
        ])
        let error = t.run("adamw", p, optimizer, clip: 0.5) { Double($0 + 1) / 20 }
        #expect(error <= 1e-6, "max |ours - torch| = \(error)")
        #expect(t.stateError("adamw", optimizer, p, slots: ["exp_avg", "exp_avg_sq"]) <= 1e-7)
        #expect(t.stateError("adamw", optimizer, p, slots: ["step"]) == 0)
    }

    @Test func adamWTorchDefaults() {
        let p = t.parameters()
        let optimizer = AdamW(groups: [ParameterGroup(name: "all", parameters: p.named("W", "b", "g"), learningRate: 1e-2, weightDecay: 0.01)],
                              betas: (0.9, 0.999), eps: 1e-8)
        let error = t.run("adamw_default", p, optimizer)
        #expect(error <= 1e-6, "max |ours - torch| = \(error)")
    }

    @Test func sgdVariants() {
        func group(_ p: Trajectories.Parameters, lr: Double, wd: Double) -> [ParameterGroup] {
            [ParameterGroup(name: "all", parameters: p.named("W", "b", "g"), learningRate: lr, weightDecay: wd)]
        }
        var p = t.parameters()
        var error = t.run("sgd_nesterov", p, SGD(groups: group(p, lr: 0.05, wd: 1e-3), momentum: 0.9, nesterov: true))
        #expect(error <= 1e-6, "nesterov: \(error)")
        p = t.parameters()
        error = t.run("sgd_dampening", p, SGD(groups: group(p, lr: 0.05, wd: 0), momentum: 0.8, dampening: 0.1))
        #expect(error <= 1e-6, "dampening: \(error)")
        p = t.parameters()
        error = t.run("sgd_plain", p, SGD(groups: group(p, lr: 0.1, wd: 0.01)), clip: 1.0)
        #expect(error <= 1e-6, "plain + clipping: \(error)")
    }

    @Test func stateRoundTripsByNameIntoAFreshOptimizer() throws {
        let p = t.parameters()
        let groups = [ParameterGroup(name: "all", parameters: p.named("W", "b", "g"), learningRate: 1e-2, weightDecay: 0.1)]
        let a = AdamW(groups: groups)
        for step in 0..<3 { a.zeroGrad(); t.loss(p, step: step).backward(); a.step() }
        let saved = a.stateDict()
        let b = AdamW(groups: groups)
        try b.loadStateDict(saved)
        let copy = p.tensors.mapValues { $0.detach().clone() }
        // Both continue identically from the same parameters.
        a.zeroGrad(); t.loss(p, step: 3).backward(); a.step()
        let afterA = p.tensors.mapValues { $0.detach().clone() }
        for (k, v) in copy { withNoGrad { p[k].copy_(v) } }
        b.zeroGrad(); t.loss(p, step: 3).backward(); b.step()
        for k in ["W", "b", "g"] { #expect(p[k].equal(afterA[k]!)) }

        var wrong = saved
        wrong["W.exp_avg"] = Tensor.zeros([2, 2])
        #expect(throws: OptimizerStateError.self) { try AdamW(groups: groups).loadStateDict(wrong) }
        var stray = saved
        stray["other.exp_avg"] = Tensor.zeros([2])
        #expect(throws: OptimizerStateError.self) { try AdamW(groups: groups).loadStateDict(stray) }
        let sgd = SGD(groups: groups, momentum: 0.9)
        sgd.zeroGrad(); t.loss(p, step: 0).backward(); sgd.step()
        let sgdState = sgd.stateDict()
        #expect(Set(sgdState.keys) == ["W.momentum_buffer", "b.momentum_buffer", "g.momentum_buffer"])
        try SGD(groups: groups, momentum: 0.9).loadStateDict(sgdState)
    }
}

@Suite("Parameter groups")
struct ParameterGroupTests {
    final class Model: Module {
        let embeddings = Embedding(5, 4)
        let fc = Linear(4, 4)
        let norm = LayerNorm(4)
        let logitScale = Tensor(scalar: Float(1)).requiringGrad()
        let frozen = Linear(4, 2)
    }

    @Test func noDecayForBiasesNormsScalarsAndOptionallyEmbeddings() {
        let model = Model()
        model.freeze(prefix: "frozen")
        let groups = ParameterGroup.standard(model, learningRate: 1e-3, weightDecay: 0.2)
        #expect(groups.map(\.name) == ["decay", "no_decay"])
        #expect(groups[0].parameters.map(\.name) == ["embeddings.weight", "fc.weight"])
        #expect(groups[1].parameters.map(\.name) == ["fc.bias", "norm.weight", "norm.bias", "logit_scale"])
        #expect(groups[1].weightDecay == 0 && groups[0].weightDecay == 0.2)
        let withEmbeddings = ParameterGroup.standard(model, learningRate: 1e-3, weightDecay: 0.2, noDecayForEmbeddings: true)
        #expect(withEmbeddings[0].parameters.map(\.name) == ["fc.weight"])
    }

    @Test func clippingReturnsTheNormAndScales() {
        let a = Tensor([3.0, 0]).requiringGrad(), b = Tensor([4.0]).requiringGrad()
        ((a * a).sum() * 0.5 + (b * b).sum() * 0.5).backward()   // grads = values: norm 5
        let norm = clipGradientNorm([a, b], maxNorm: 1)
        #expect(norm == 5)
        #expect(Swift.abs(Tensor.cat([a.grad!, b.grad!]).norm().item(Double.self) - 1) < 1e-5)
        #expect(clipGradientNorm([Tensor([1.0])], maxNorm: 1) == nil)
    }
}
