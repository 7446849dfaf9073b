import Foundation
import Testing
import NN
import TestSupport
import Torch
@testable import Optim

/// What the fused steps add over one kernel call: several groups, mixed dtypes within a group,
/// parameters without a gradient, exact resume, and the errors of bad inputs.
@Suite("Fused optimizer steps", .serialized)
struct FusedOptimizerTests {
    let t: Trajectories
    init() throws { t = try Trajectories() }

    let keys = ["W", "b", "g", "u", "d"]
    /// The fixture's three groups: `d` (float64) shares a group with float32 `W`; `u` has no
    /// gradient on odd steps.
    func adamW(_ p: Trajectories.Parameters) -> AdamW {
        AdamW(groups: [
            ParameterGroup(name: "a", parameters: p.named("W", "d"), learningRate: 5e-3, weightDecay: 0.1),
            ParameterGroup(name: "b", parameters: p.named("b"), learningRate: 2e-2, weightDecay: 0),
            ParameterGroup(name: "c", parameters: p.named("g", "u"), learningRate: 1e-2, weightDecay: 0.05),
        ])
    }
    func sgd(_ p: Trajectories.Parameters) -> SGD {
        SGD(groups: [
            ParameterGroup(name: "a", parameters: p.named("W", "d"), learningRate: 0.05, weightDecay: 0.01),
            ParameterGroup(name: "b", parameters: p.named("b", "g", "u"), learningRate: 0.1, weightDecay: 0),
        ], momentum: 0.9)
    }
    let schedule: (Int) -> Double = { 1 - Double($0) / 40 }

    @Test func adamWGroupsMixedDTypesAndMissingGradients() {
        let p = t.parameters(keys)
        let optimizer = adamW(p)
        let error = t.run("adamw_groups", p, optimizer, clip: 0.5, lrScale: schedule)
        #expect(error <= 1e-6, "max |ours - torch| = \(error)")
        #expect(p["d"].dtype == .float64)
        #expect(t.stateError("adamw_groups", optimizer, p, slots: ["exp_avg", "exp_avg_sq"]) <= 1e-7)
        // `u` stepped on even steps only: its count lags, as torch's.
        #expect(t.stateError("adamw_groups", optimizer, p, slots: ["step"]) == 0)
        #expect(optimizer.stateDict()["u.step"]!.item(Float.self) == 10)
    }

    @Test func sgdGroupsMixedDTypesAndMissingGradients() {
        let p = t.parameters(keys)
        let optimizer = sgd(p)
        let error = t.run("sgd_groups", p, optimizer, lrScale: schedule)
        #expect(error <= 1e-6, "max |ours - torch| = \(error)")
        #expect(t.stateError("sgd_groups", optimizer, p, slots: ["momentum_buffer"]) <= 1e-7)
    }

    /// `v`'s first gradient comes at step 1, after the others' buffers started: its buffer
    /// starts then (torch's fused SGD fails here; the reference is its foreach path).
    @Test func sgdMomentumBufferStartingLate() {
        let p = t.parameters(["W", "b", "g", "v"])
        let optimizer = SGD(groups: [ParameterGroup(name: "all", parameters: p.named("W", "b", "g", "v"), learningRate: 0.05, weightDecay: 1e-3)],
                            momentum: 0.9)
        let error = t.run("sgd_late_grad", p, optimizer)
        #expect(error <= 1e-6, "max |ours - torch| = \(error)")
    }

    /// Saved after 10 steps (through a safetensors file, as a checkpoint), loaded into a fresh
    /// optimizer, 10 more: bit-identical to 20 steps in one go, parameters and state.
    @Test(arguments: ["adamw_groups", "sgd_groups"])
    func resumeMidwayIsBitIdentical(_ name: String) throws {
        let make = { (p: Trajectories.Parameters) -> Optimizer in name == "adamw_groups" ? adamW(p) : sgd(p) }
        let clip: Double? = name == "adamw_groups" ? 0.5 : nil
        let whole = t.parameters(keys)
        let uninterrupted = make(whole)
        _ = t.run(name, whole, uninterrupted, steps: 0..<20, clip: clip, lrScale: schedule)

        let resumed = t.parameters(keys)
        let first = make(resumed)
        _ = t.run(name, resumed, first, steps: 0..<10, clip: clip, lrScale: schedule)
        let file = temporaryFolder() + "/optimizer.safetensors"
        try SafeTensors.save(first.stateDict(), to: file)
        let second = make(resumed)
        try second.loadStateDict(try SafeTensors.load(file))
        _ = t.run(name, resumed, second, steps: 10..<20, clip: clip, lrScale: schedule)

        for key in keys { #expect(resumed[key].equal(whole[key]), "\(key)") }
        let a = uninterrupted.stateDict(), b = second.stateDict()
        #expect(Set(a.keys) == Set(b.keys))
        for (key, value) in a { #expect(b[key].map { $0.equal(value) } == true, "\(key)") }
    }

    /// A non-contiguous parameter steps through a contiguous copy written back: the values of a
    /// contiguous one (up to the forward's matmul, which sees other strides).
    @Test func nonContiguousParameterStepsLikeAContiguousOne() {
        func trained(_ w: Tensor) -> Tensor {
            let p = t.parameters()
            let tensors = p.tensors.merging(["W": w]) { $1 }
            let q = Trajectories.Parameters(keys: p.keys, tensors: tensors)
            _ = t.run("adamw_default", q, AdamW(groups: [ParameterGroup(name: "all", parameters: q.named("W", "b", "g"), learningRate: 1e-2,
                                                                       weightDecay: 0.01)], betas: (0.9, 0.999), eps: 1e-8))
            return w
        }
        let transposed = t.f["init.W"]!.transpose(0, 1).contiguous().transpose(0, 1).requiringGrad()
        #expect(!transposed.isContiguous)
        let reference = trained(t.f["init.W"]!.clone().requiringGrad())
        #expect(maxDifference(trained(transposed), reference) <= 1e-6)
        #expect(maxDifference(reference, t.f["init.W"]!) > 1e-3)
    }

    /// A gradient that does not fit its parameter is an error naming the parameter (the CPU
    /// kernel would read past the end), not a crash or a silent wrong step.
    @Test func gradientsThatDoNotFitTheirParameterAreNamed() throws {
        let p = t.parameters()
        for optimizer: Optimizer in [AdamW(groups: [ParameterGroup(name: "all", parameters: p.named("W", "b", "g"), learningRate: 1e-2, weightDecay: 0)]),
                                     SGD(groups: [ParameterGroup(name: "all", parameters: p.named("W", "b", "g"), learningRate: 1e-2, weightDecay: 0)],
                                         momentum: 0.9)] {
            for (bad, expected) in [(Tensor.zeros([5]), "shape [5]"), (Tensor.zeros([4], dtype: .float64), "float64")] {
                optimizer.zeroGrad()
                t.loss(p, step: 0).backward()
                p["b"].grad = bad
                let before = p["W"].clone()
                let error = #expect(throws: TorchError.self) { try withTorchErrors { optimizer.step() } }
                #expect(error?.description.contains("'b'") == true && error?.description.contains(expected) == true, "\(error.map { "\($0)" } ?? "")")
                #expect(p["W"].equal(before), "nothing stepped")
            }
        }
    }
}
