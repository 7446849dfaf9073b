import Foundation
import Testing
import NN
import Torch
@testable import Optim

/// 20 steps against torch.optim (fixture from Scripts/fixtures/optim_fixtures.py).
@Suite("Optimizers match torch.optim", .serialized)
struct OptimizerParityTests {
    let f: [String: Tensor]
    init() throws {
        f = try SafeTensors.load(Bundle.module.path(forResource: "trajectories", ofType: "safetensors", inDirectory: "Fixtures")!)
        Torch.threadCount = 1   // as the fixture was made
    }

    /// The fixture's problem: mse(linear(x * g, W, b), y).
    func parameters() -> [String: Tensor] {
        ["W": f["init.W"]!.clone().requiringGrad(), "b": f["init.b"]!.clone().requiringGrad(), "g": f["init.g"]!.clone().requiringGrad()]
    }

    func loss(_ p: [String: Tensor]) -> Tensor {
        F.mseLoss(F.linear(f["x"]! * p["g"]!, weight: p["W"]!, bias: p["b"]!), f["y"]!)
    }

    func run(_ name: String, _ p: [String: Tensor], _ optimizer: Optimizer, clip: Double? = nil,
             lrScale: ((Int) -> Double)? = nil) -> Double {
        var worst = 0.0
        for step in 0..<20 {
            if let lrScale { optimizer.setLearningRates { $0 * lrScale(step) } }
            optimizer.zeroGrad()
            loss(p).backward()
            if let clip {
                let norm = clipGradientNorm(["W", "b", "g"].map { p[$0]! }, maxNorm: clip)!
                worst = Swift.max(worst, Swift.abs(norm - f["\(name).\(step).grad_norm"]!.item(Double.self)))
            }
            optimizer.step()
            for key in ["W", "b", "g"] {
                worst = Swift.max(worst, (p[key]! - f["\(name).\(step).\(key)"]!).abs().max().item(Double.self))
            }
        }
        return worst
    }

    @Test func adamWWithGroupsScheduleAndClipping() throws {
        let p = parameters()
        let optimizer = AdamW(groups: [
            ParameterGroup(name: "decay", parameters: [("W", p["W"]!)], learningRate: 5e-3, weightDecay: 0.2),
            ParameterGroup(name: "no_decay", parameters: [("b", p["b"]!), ("g", p["g"]!)], learningRate: 1e-2, weightDecay: 0),
        ])
        let error = run("adamw", p, optimizer, clip: 0.5) { Double($0 + 1) / 20 }
        #expect(error <= 1e-6, "max |ours - torch| = \(error)")
        let state = optimizer.stateDict()
        for key in ["W", "b", "g"] {
            #expect((state["\(key).exp_avg"]! - f["adamw.state.\(key).exp_avg"]!).abs().max().item(Double.self) <= 1e-7)
            #expect((state["\(key).exp_avg_sq"]! - f["adamw.state.\(key).exp_avg_sq"]!).abs().max().item(Double.self) <= 1e-7)
            #expect(state["\(key).step"]!.item(Float.self) == f["adamw.state.\(key).step"]!.item(Float.self))
        }
    }

    @Test func adamWTorchDefaults() {
        let p = parameters()
        let optimizer = AdamW(groups: [ParameterGroup(name: "all", parameters: ["W", "b", "g"].map { ($0, p[$0]!) }, learningRate: 1e-2, weightDecay: 0.01)],
                              betas: (0.9, 0.999), eps: 1e-8)
        let error = run("adamw_default", p, optimizer)
        #expect(error <= 1e-6, "max |ours - torch| = \(error)")
    }

    @Test func sgdVariants() {
        func group(_ p: [String: Tensor], lr: Double, wd: Double) -> [ParameterGroup] {
            [ParameterGroup(name: "all", parameters: ["W", "b", "g"].map { ($0, p[$0]!) }, learningRate: lr, weightDecay: wd)]
        }
        var p = parameters()
        var error = run("sgd_nesterov", p, SGD(groups: group(p, lr: 0.05, wd: 1e-3), momentum: 0.9, nesterov: true))
        #expect(error <= 1e-6, "nesterov: \(error)")
        p = parameters()
        error = run("sgd_dampening", p, SGD(groups: group(p, lr: 0.05, wd: 0), momentum: 0.8, dampening: 0.1))
        #expect(error <= 1e-6, "dampening: \(error)")
        p = parameters()
        error = run("sgd_plain", p, SGD(groups: group(p, lr: 0.1, wd: 0.01)), clip: 1.0)
        #expect(error <= 1e-6, "plain + clipping: \(error)")
    }

    @Test func stateRoundTripsByNameIntoAFreshOptimizer() throws {
        let p = parameters()
        let groups = [ParameterGroup(name: "all", parameters: ["W", "b", "g"].map { ($0, p[$0]!) }, learningRate: 1e-2, weightDecay: 0.1)]
        let a = AdamW(groups: groups)
        for _ in 0..<3 { a.zeroGrad(); loss(p).backward(); a.step() }
        let saved = a.stateDict()
        let b = AdamW(groups: groups)
        try b.loadStateDict(saved)
        let copy = p.mapValues { $0.detach().clone() }
        // Both continue identically from the same parameters.
        a.zeroGrad(); loss(p).backward(); a.step()
        let afterA = p.mapValues { $0.detach().clone() }
        for (k, v) in copy { withNoGrad { p[k]!.copy_(v) } }
        b.zeroGrad(); loss(p).backward(); b.step()
        for k in ["W", "b", "g"] { #expect(p[k]!.equal(afterA[k]!)) }

        var wrong = saved
        wrong["W.exp_avg"] = Tensor.zeros([2, 2])
        #expect(throws: OptimizerStateError.self) { try AdamW(groups: groups).loadStateDict(wrong) }
        var stray = saved
        stray["other.exp_avg"] = Tensor.zeros([2])
        #expect(throws: OptimizerStateError.self) { try AdamW(groups: groups).loadStateDict(stray) }
        let sgd = SGD(groups: groups, momentum: 0.9)
        sgd.zeroGrad(); loss(p).backward(); sgd.step()
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
