import Foundation
import NN
import Torch
@testable import Optim

/// The problem of Scripts/fixtures/optim_fixtures.py and torch's trajectories on it: 20 steps
/// of `torch.optim.AdamW` / `SGD` with fused=True.
struct Trajectories {
    let f: [String: Tensor]

    init() throws {
        f = try SafeTensors.load(Bundle.module.path(forResource: "trajectories", ofType: "safetensors", inDirectory: "Fixtures")!)
        Torch.threadCount = 1   // as the fixture was made
    }

    /// Fresh parameters from the fixture's initial values, in the order given (the order torch
    /// saw them: clipping sums the norms in it).
    func parameters(_ keys: [String] = ["W", "b", "g"]) -> Parameters {
        Parameters(keys: keys, tensors: Dictionary(uniqueKeysWithValues: keys.map { ($0, f["init.\($0)"]!.clone().requiringGrad()) }))
    }

    struct Parameters {
        let keys: [String]
        let tensors: [String: Tensor]
        subscript(_ key: String) -> Tensor { tensors[key]! }
        var all: [Tensor] { keys.map { tensors[$0]! } }
        func named(_ keys: String...) -> [(name: String, tensor: Tensor)] { keys.map { ($0, tensors[$0]!) } }
    }

    /// mse(linear(x * g, W, b), y), plus the fixture's terms for `u` (even steps only), `v`
    /// (odd steps only) and `d` (float64) when they are among the parameters.
    func loss(_ p: Parameters, step: Int) -> Tensor {
        var loss = F.mseLoss(F.linear(f["x"]! * p["g"], weight: p["W"], bias: p["b"]), f["y"]!)
        if let u = p.tensors["u"], step % 2 == 0 { loss = loss + (u * u).sum() * 0.1 }
        if let v = p.tensors["v"], step % 2 == 1 { loss = loss + (v * v).sum() * 0.1 }
        if let d = p.tensors["d"] { loss = loss + ((d - 1.0) * (d - 1.0)).sum().to(.float32) * 0.1 }
        return loss
    }

    /// Steps `steps` of the fixture's run `name` (zero_grad, backward, clip, step): the worst
    /// |ours − torch| over the parameters after each step and the gradient norms.
    func run(_ name: String, _ p: Parameters, _ optimizer: Optimizer, steps: Range<Int> = 0..<20, clip: Double? = nil,
             lrScale: ((Int) -> Double)? = nil) -> Double {
        var worst = 0.0
        for step in steps {
            if let lrScale { optimizer.setLearningRates { $0 * lrScale(step) } }
            optimizer.zeroGrad()
            loss(p, step: step).backward()
            if let clip {
                let norm = clipGradientNorm(p.all, maxNorm: clip)!
                worst = Swift.max(worst, Swift.abs(norm - f["\(name).\(step).grad_norm"]!.item(Double.self)))
            }
            optimizer.step()
            for key in p.keys {
                worst = Swift.max(worst, (p[key].to(.float64) - f["\(name).\(step).\(key)"]!.to(.float64)).abs().max().item(Double.self))
            }
        }
        return worst
    }

    /// Worst |ours − torch| over the optimizer state of run `name` (`slots` of every parameter).
    func stateError(_ name: String, _ optimizer: Optimizer, _ p: Parameters, slots: [String]) -> Double {
        let state = optimizer.stateDict()
        var worst = 0.0
        for key in p.keys {
            for slot in slots {
                guard let ours = state["\(key).\(slot)"], let theirs = f["\(name).state.\(key).\(slot)"] else { return .infinity }
                worst = Swift.max(worst, (ours.to(.float64) - theirs.to(.float64)).abs().max().item(Double.self))
            }
        }
        return worst
    }
}
