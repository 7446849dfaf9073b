import Foundation
import Testing
import NN
import Torch
@testable import Optim

/// 40 steps against torch.amp.GradScaler("cpu") with injected and natural overflows (fixture
/// from Scripts/fixtures/amp_fixtures.py): the scale, skipped steps and growth tracker exactly,
/// the parameters as torch.optim's.
@Suite("GradScaler matches torch.amp.GradScaler", .serialized)
struct GradScalerTests {
    let f: [String: Tensor]
    let names = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    /// Step → 0 loss × inf, 1 a NaN gradient element, 2 an inf gradient element.
    let injections: [Int: Int]

    init() throws {
        let f = try SafeTensors.load(Bundle.module.path(forResource: "grad_scaler", ofType: "safetensors", inDirectory: "Fixtures")!)
        Torch.threadCount = 1   // as the fixture was made
        let steps = f["inject.steps"]!, kinds = f["inject.kinds"]!
        injections = Dictionary(uniqueKeysWithValues: (0..<steps.count).map { (steps[$0].item(Int.self), kinds[$0].item(Int.self)) })
        self.f = f
    }

    /// One of the fixture's runs: its parameters and optimizer, stepped with whichever scaler.
    final class Run {
        let name: String
        let p: [String: Tensor]
        let optimizer: Optimizer
        let autocast: Bool
        let clip: Double?
        /// Worst |ours − torch| over the parameters, and how many parameter tensors were not bit-equal.
        var worst = 0.0
        var notBitEqual = 0

        init(_ name: String, _ t: GradScalerTests) {
            self.name = name
            let p = Dictionary(uniqueKeysWithValues: t.names.map { ($0, t.f["init.\($0)"]!.clone().requiringGrad()) })
            self.p = p
            let all = [ParameterGroup(name: "all", parameters: t.names.map { ($0, p[$0]!) }, learningRate: name == "adamw" ? 1e-2 : 0.05,
                                      weightDecay: name == "adamw" ? 0.1 : 0)]
            optimizer = name == "adamw" ? AdamW(groups: all, betas: (0.9, 0.98), eps: 1e-6) : SGD(groups: all, momentum: 0.9)
            autocast = name == "adamw"
            clip = name == "adamw" ? 1.0 : nil
        }

        func loss(_ t: GradScalerTests) -> Tensor {
            let h = F.linear(t.f["x"]!, weight: p["fc1.weight"]!, bias: p["fc1.bias"]!).tanh()
            return F.mseLoss(F.linear(h, weight: p["fc2.weight"]!, bias: p["fc2.bias"]!), t.f["y"]!)
        }

        /// Steps `steps` as the fixture's loop; checks each step against torch.
        func steps(_ steps: Range<Int>, _ scaler: GradScaler, _ t: GradScalerTests) {
            for step in steps {
                optimizer.zeroGrad()
                var loss = autocast ? withAutocast(.float16) { self.loss(t) } : self.loss(t)
                if t.injections[step] == 0 { loss = loss * Double.infinity }
                let before = Float(scaler.currentScale)
                scaler.scale(loss).backward()
                if let kind = t.injections[step], kind > 0 {
                    withNoGrad { p["fc2.weight"]!.grad![1, 3].fill_(kind == 1 ? Double.nan : Double.infinity) }
                }
                scaler.unscale(optimizer)
                let norm = clip.flatMap { clipGradientNorm(t.names.map { p[$0]! }, maxNorm: $0) }
                let stepped = scaler.step(optimizer)
                scaler.update()

                let label = "\(name) step \(step)"
                #expect(before.bitPattern == t.f["\(name).scale_before"]![step].item(Float.self).bitPattern, "\(label): scale before")
                #expect(Float(scaler.currentScale).bitPattern == t.f["\(name).scale_after"]![step].item(Float.self).bitPattern,
                        "\(label): scale after \(scaler.currentScale)")
                #expect(stepped == (t.f["\(name).stepped"]![step].item(Int.self) == 1), "\(label): stepped")
                #expect(scaler.state.growthTracker == t.f["\(name).growth_tracker"]![step].item(Int.self), "\(label): growth tracker")
                if let norm, stepped {
                    let expected = t.f["\(name).grad_norm"]![step].item(Double.self)
                    #expect(Swift.abs(norm - expected) <= 1e-5 * Swift.max(1, expected), "\(label): grad norm \(norm) vs \(expected)")
                }
                for key in t.names {
                    let expected = t.f["\(name).\(step).\(key)"]!
                    worst = Swift.max(worst, (p[key]! - expected).abs().max().item(Double.self))
                    if !p[key]!.equal(expected) { notBitEqual += 1 }
                }
            }
        }
    }

    func scaler(for name: String) -> GradScaler {
        name == "adamw" ? GradScaler(growthInterval: 3)
            : GradScaler(initScale: 1024, growthFactor: 4, backoffFactor: 0.25, growthInterval: 2)
    }

    @Test(arguments: ["adamw", "sgd"])
    func fortyStepsWithOverflows(_ name: String) {
        let run = Run(name, self)
        run.steps(0..<40, scaler(for: name), self)
        print("GradScaler parity (\(name)): max |ours − torch| over parameters \(run.worst); \(run.notBitEqual) of \(40 * names.count) parameter tensors not bit-equal")
        #expect(run.worst <= 1e-6, "max |ours − torch| = \(run.worst)")
        // The fixture does exercise what it claims: skips, backoffs and growth.
        let stepped = f["\(name).stepped"]!
        #expect((0..<40).filter { stepped[$0].item(Int.self) == 0 }.count >= injections.count)
    }

    /// Saved mid-way (JSON, as trainer_state.json keeps it), restored into a new scaler: the run
    /// continues exactly as the uninterrupted one.
    @Test(arguments: ["adamw", "sgd"])
    func stateRoundTripContinuesIdentically(_ name: String) throws {
        let run = Run(name, self)
        let first = scaler(for: name)
        run.steps(0..<20, first, self)
        let saved = try JSONEncoder().encode(first.state)
        let restored = scaler(for: name)
        restored.state = try JSONDecoder().decode(GradScaler.State.self, from: saved)
        #expect(restored.state == first.state)
        run.steps(20..<40, restored, self)
        #expect(run.worst <= 1e-6)
    }

    @Test func stateBeforeAndAfterTheFirstScale() {
        let scaler = GradScaler(initScale: 4096)
        #expect(scaler.state == GradScaler.State(scale: 4096, growthTracker: 0))
        scaler.state = GradScaler.State(scale: 0.125, growthTracker: 7)   // before the lazy init: becomes its start
        #expect(scaler.scale(Tensor(scalar: Float(2))).item(Float.self) == 0.25)
        scaler.state = GradScaler.State(scale: 3.0, growthTracker: 1)     // after: fills the tensors
        #expect(scaler.state == GradScaler.State(scale: 3.0, growthTracker: 1))
        #expect(scaler.scale(Tensor(scalar: Float(2))).item(Float.self) == 6)
        let disabled = GradScaler(enabled: false)
        #expect(disabled.currentScale == 1 && disabled.scale(Tensor(scalar: Float(2))).item(Float.self) == 2)
    }
}
