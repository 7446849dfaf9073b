import CTorch

/// Why a device name, or the device it names, cannot be used here. `description` says what to do.
public enum DeviceError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not one of the spellings `Device.parse` accepts.
    case unrecognised(String)
    /// CUDA was asked for, but this build does not link libtorch_cuda. `machine` says what the
    /// NVIDIA driver sees, which tells whether rebuilding for CUDA would help.
    case cudaNotBuilt(requested: Device, machine: String)
    /// The build links CUDA, but libtorch sees no GPU; `reason` is the driver's side of it.
    case noCUDADevice(requested: Device, reason: String)
    /// `cuda:index` past the `count` devices libtorch sees.
    case noSuchDevice(index: Int, count: Int)

    static let accepted = "cpu, cuda (the first GPU), cuda:N (GPU number N, counting from 0) or auto (cuda:0 when a GPU is usable, otherwise cpu)"

    public var description: String {
        switch self {
        case .unrecognised(let text):
            let hint = text != text.lowercased() && (try? Device.parse(text.lowercased(), cudaAvailable: false)) != nil
                ? " (did you mean \"\(text.lowercased())\"?)" : ""
            return "device \"\(text)\" is not recognised\(hint); use \(Self.accepted)"
        case .cudaNotBuilt(let device, let machine):
            return "\(device): this build of ClipTune does not link libtorch's CUDA libraries (libtorch_cuda), so it runs on the CPU only; \(machine). To train on a GPU, run Scripts/bootstrap --cuda (or set CLIPTUNE_CUDA=1 with your own LIBTORCH) and build again; otherwise use device cpu"
        case .noCUDADevice(let device, let reason):
            return "\(device): this build links CUDA, but libtorch sees no GPU: \(reason); use device cpu, or check with nvidia-smi"
        case .noSuchDevice(let index, let count):
            let names = (0..<count).map { "cuda:\($0)" }.joined(separator: ", ")
            return "cuda:\(index) does not exist: this machine has \(count) CUDA device\(count == 1 ? "" : "s") (\(names))"
        }
    }
}

extension Device {
    /// Reads a device name: `cpu`, `cuda` (= `cuda:0`), `cuda:N`, or `auto` (`cuda:0` when
    /// `Torch.isCUDAAvailable`, else `cpu`). Only the spelling is checked; `validated()` says
    /// whether this build and machine can use the device, so a recipe naming `cuda` can still be
    /// read (and checked) on a laptop.
    public static func parse(_ text: String) throws -> Device {
        try parse(text, cudaAvailable: Torch.isCUDAAvailable)
    }

    /// Whether `text` is a device name (`parse` accepts it), whatever this machine has.
    public static func isWellFormed(_ text: String) -> Bool { (try? parse(text, cudaAvailable: false)) != nil }

    static func parse(_ text: String, cudaAvailable: @autoclosure () -> Bool) throws -> Device {
        switch text {
        case "cpu": return .cpu
        case "cuda": return .cuda(0)
        case "auto": return cudaAvailable() ? .cuda(0) : .cpu
        default:
            let prefix = "cuda:"
            guard text.hasPrefix(prefix) else { throw DeviceError.unrecognised(text) }
            let digits = text.dropFirst(prefix.count)
            // Digits only: Int("+1") and Int("-1") would parse.
            guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let index = Int(digits) else {
                throw DeviceError.unrecognised(text)
            }
            return .cuda(index)
        }
    }

    /// The device itself when this build and machine can run on it; otherwise a `DeviceError`
    /// saying why and what to do. Call it once, where the device is chosen (a recipe, a flag),
    /// so a bad choice fails there rather than at the first tensor moved.
    public func validated() throws -> Device {
        try validated(against: .current)
    }

    func validated(against facts: CUDAFacts) throws -> Device {
        guard case .cuda(let index) = self else { return self }
        guard facts.builtWithCUDA else {
            throw DeviceError.cudaNotBuilt(requested: self, machine: facts.driver().machineSummary)
        }
        guard facts.deviceCount > 0 else {
            throw DeviceError.noCUDADevice(requested: self, reason: facts.driver().noDeviceReason)
        }
        guard index < facts.deviceCount else { throw DeviceError.noSuchDevice(index: index, count: facts.deviceCount) }
        return self
    }
}

/// What `Device.validated()` decides on; tests pass made-up machines.
struct CUDAFacts {
    var builtWithCUDA: Bool
    /// Devices libtorch sees (0 on a CPU-only build).
    var deviceCount: Int
    /// Asked only to word an error.
    var driver: () -> CUDADriverInfo

    static var current: CUDAFacts {
        CUDAFacts(builtWithCUDA: Torch.isCUDABuild, deviceCount: Torch.cudaDeviceCount, driver: { Torch.cudaDriver() })
    }
}

extension CUDADriverInfo {
    /// For a CPU-only build: whether the machine has GPUs that a CUDA build could use.
    var machineSummary: String {
        if devices.isEmpty { return "this machine shows no usable GPU either (\(problem ?? "the NVIDIA driver lists none"))" }
        let names = devices.map { "cuda:\($0.index) \($0.name)" }.joined(separator: ", ")
        return "this machine has \(devices.count) NVIDIA GPU\(devices.count == 1 ? "" : "s") (\(names)) that a CUDA build could use"
    }

    /// For a CUDA build that sees no device.
    var noDeviceReason: String {
        if let problem { return problem }
        if devices.isEmpty { return "the NVIDIA driver lists no GPU (is CUDA_VISIBLE_DEVICES empty?)" }
        let version = versionString.map { " \($0)" } ?? ""
        return "the NVIDIA driver\(version) lists \(devices.count) GPU(s) that libtorch cannot use; the driver may be older than the CUDA runtime libtorch needs (\(Torch.cudaRuntimeVersion ?? "unknown"))"
    }
}
