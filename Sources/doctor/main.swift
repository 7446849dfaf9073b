import ArgumentParser
import Foundation
import Torch

/// Checks the installation end to end: libtorch loads, ops and autograd work, assets are in place,
/// and a small model trains. The most complete job until `train` lands.
@main
struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check that libtorch, the bridge, autograd and the downloaded assets work.", version: ClipTune.versionLine
    )

    /// The fit halves its loss after about 250 steps; fewer cannot tell a working install from a broken one.
    static let minimumSteps = 300

    @Option(help: "Training steps of the self-check fit (at least \(Self.minimumSteps)).") var steps = 1500
    @Option(help: "Random seed.") var seed: UInt64 = 0

    func validate() throws {
        guard steps >= Self.minimumSteps else {
            throw ValidationError("--steps \(steps) is too few for the self-check fit to show learning (its loss halves after about 250 steps); give at least \(Self.minimumSteps), or leave the default 1500")
        }
    }

    func run() throws {
        print("libtorch \(Torch.version) · intra-op threads: \(Torch.threadCount) · CUDA \(Torch.isCUDAAvailable ? "available (devices: \(Torch.cudaDeviceCount))" : "not available")")
        try checkCUDA()
        let assets = ProcessInfo.processInfo.environment["CLIPTUNE_ASSETS"]
            ?? (ProcessInfo.processInfo.environment["CLIPTUNE_CACHE"] ?? NSHomeDirectory() + "/.cache/cliptune") + "/assets"
        for (name, path) in [("all-MiniLM-L6-v2", "all-MiniLM-L6-v2/model.safetensors"), ("CLIP BPE", "bpe_simple_vocab_16e6.txt.gz")] {
            let present = FileManager.default.fileExists(atPath: "\(assets)/\(path)")
            print("asset \(name): \(present ? "present" : "missing (run Scripts/bootstrap)")")
        }
        let (initial, final, accuracy) = fitTwoSpirals(steps: steps, seed: seed)
        print(String(format: "self-check fit (2-layer MLP, two spirals, steps: %d): loss %.3f → %.3f, accuracy %.1f%%",
                     steps, initial, final, accuracy * 100))
        guard final < initial * 0.5 else {
            throw DoctorError(message: String(format: "the self-check fit did not learn: its loss went from %.3f to %.3f in %d steps, where a working libtorch halves it; check the libtorch that .deps/libtorch (or $LIBTORCH) points to, e.g. by running Scripts/bootstrap again", initial, final, steps))
        }
        print("ok")
    }

    /// What this build links, what libtorch and the NVIDIA driver see, and what to do when they
    /// disagree; with a usable GPU, one matmul there must match the CPU's.
    func checkCUDA() throws {
        let driver = Torch.cudaDriver()
        let build = Torch.isCUDABuild ? "links libtorch_cuda (CUDA runtime \(Torch.cudaRuntimeVersion ?? "unknown"))" : "CPU only (libtorch_cuda not linked)"
        print("CUDA build: \(build) · libtorch sees \(Torch.cudaDeviceCount) CUDA device(s)")
        if let version = driver.versionString {
            print("NVIDIA driver: supports CUDA \(version) · \(driver.devices.count) GPU(s)\(driver.problem.map { " (\($0))" } ?? "")")
        } else {
            print("NVIDIA driver: none (\(driver.problem ?? "unknown"))")
        }
        for gpu in driver.devices {
            print(String(format: "  cuda:%d %@ · %.1f GiB · compute capability %@ · %d multiprocessors",
                         gpu.index, gpu.name, Double(gpu.totalMemory) / Double(1 << 30), gpu.computeCapability, gpu.multiprocessorCount))
        }
        if !driver.devices.isEmpty && !Torch.isCUDABuild {
            print("note: this machine has a GPU, but this build runs on the CPU only; run Scripts/bootstrap --cuda and build again to train on it")
        } else if Torch.isCUDABuild && !Torch.isCUDAAvailable {
            do { _ = try Device.cuda(0).validated() } catch { print("note: \(error)") }
        }
        guard Torch.isCUDAAvailable else { return }
        let sameOnGPU = try withTorchErrors {
            let a = Tensor.randn([64, 64], generator: Generator(seed: seed)), b = Tensor.randn([64, 64], generator: Generator(seed: seed &+ 1))
            let gpu = a.to(.cuda(0)).matmul(b.to(.cuda(0))).to(.cpu)
            return gpu.allClose(a.matmul(b), rtol: 1e-3, atol: 1e-3)
        }
        guard sameOnGPU else {
            throw DoctorError(message: "a matmul on cuda:0 differs from the same matmul on the CPU; check the GPU driver and the CUDA libtorch that .deps/libtorch points to")
        }
        print("CUDA self-check: a matmul on cuda:0 matches the CPU")
    }

    struct DoctorError: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }

    /// Trains a small classifier with autograd and plain SGD with momentum; returns first and
    /// last loss and the final training accuracy.
    func fitTwoSpirals(steps: Int, seed: UInt64) -> (Double, Double, Double) {
        let g = Generator(seed: seed)
        let n = 256
        let t = Tensor.rand([n], generator: g) * 2.0 * Double.pi
        let labels = Tensor.randint(0, 2, [n], generator: g)
        let sign = labels.to(.float32) * 2.0 - 1.0
        let points = Tensor.stack([t.cos() * t * sign, t.sin() * t * sign], dim: 1) / 10.0
            + Tensor.randn([n, 2], generator: g) * 0.02

        let w1 = (Tensor.randn([64, 2], generator: g) * 0.7).requiringGrad()
        let b1 = Tensor.zeros([64]).requiringGrad()
        let w2 = (Tensor.randn([2, 64], generator: g) * 0.1).requiringGrad()
        let b2 = Tensor.zeros([2]).requiringGrad()
        let parameters = [w1, b1, w2, b2]
        let velocity = parameters.map { Tensor.zeros($0.shape) }

        func logits() -> Tensor { F.linear(F.linear(points, weight: w1, bias: b1).tanh(), weight: w2, bias: b2) }
        var first = 0.0, last = 0.0
        for step in 0..<steps {
            let loss = F.crossEntropy(logits(), labels)
            loss.backward()
            withNoGrad {
                for (p, v) in zip(parameters, velocity) {
                    v.mul_(0.9)
                    v.add_(p.grad!)
                    p.add_(v, alpha: -0.1)
                    p.grad = nil
                }
            }
            if step == 0 { first = loss.item(Double.self) }
            last = loss.item(Double.self)
        }
        let accuracy = withNoGrad { logits().argmax(dim: 1).eq(labels).to(.float32).mean().item(Double.self) }
        return (first, last, accuracy)
    }
}
