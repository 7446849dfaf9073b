import Foundation
import Testing
@testable import Torch

/// Device names, CUDA facts and the GPU primitives, as far as a machine without a GPU can check
/// them: every CUDA path must refuse clearly here, and the messages for machines we lack are
/// checked against made-up facts.
@Suite("Devices and CUDA")
struct DeviceTests {
    // MARK: - Names

    @Test func acceptedSpellings() throws {
        #expect(try Device.parse("cpu") == .cpu)
        #expect(try Device.parse("cuda") == .cuda(0))
        #expect(try Device.parse("cuda:0") == .cuda(0))
        #expect(try Device.parse("cuda:12") == .cuda(12))
        #expect(try Device.parse("auto", cudaAvailable: true) == .cuda(0))
        #expect(try Device.parse("auto", cudaAvailable: false) == .cpu)
        #expect(try Device.parse("auto") == (Torch.isCUDAAvailable ? .cuda(0) : .cpu))
        for device in [Device.cpu, .cuda(0), .cuda(3)] { #expect(try Device.parse(device.description) == device) }
    }

    @Test(arguments: ["gpu", "cuda:-1", "cuda:x", "cuda:", "cuda:+1", "cuda:1.5", "cuda: 1", "", "cpu:0", "mps"])
    func unrecognisedNamesListWhatIsAccepted(_ text: String) {
        let error = #expect(throws: DeviceError.self) { try Device.parse(text) }
        #expect(error == .unrecognised(text))
        let message = "\(error.map { "\($0)" } ?? "")"
        #expect(message.hasPrefix("device \"\(text)\" is not recognised; use cpu, cuda (the first GPU), cuda:N"))
        #expect(message.contains("auto (cuda:0 when a GPU is usable, otherwise cpu)"))
    }

    @Test func wrongCaseSuggestsTheSpelling() {
        #expect("\(DeviceError.unrecognised("CUDA:1"))".contains("(did you mean \"cuda:1\"?)"))
        #expect(!"\(DeviceError.unrecognised("GPU"))".contains("did you mean"))
    }

    // MARK: - Validation

    /// On this machine's build: the CPU always passes; CUDA is refused with what to do.
    @Test func validationOnThisMachine() throws {
        #expect(try Device.cpu.validated() == .cpu)
        #expect(try Device.parse("auto").validated() == (Torch.isCUDAAvailable ? .cuda(0) : .cpu))
        if Torch.isCUDABuild {
            print("DeviceTests: this build links CUDA; checking it against the \(Torch.cudaDeviceCount) device(s) libtorch sees")
            let count = Torch.cudaDeviceCount
            if count > 0 { #expect(try Device.cuda(count - 1).validated() == .cuda(count - 1)) }
            #expect(throws: DeviceError.self) { try Device.cuda(count).validated() }
            return
        }
        for device in [Device.cuda(0), .cuda(7)] {
            let error = #expect(throws: DeviceError.self) { try device.validated() }
            guard case .cudaNotBuilt(let requested, _)? = error else {
                Issue.record("expected cudaNotBuilt, got \(String(describing: error))")
                continue
            }
            #expect(requested == device)
            let message = "\(error!)"
            #expect(message.hasPrefix("\(device): this build of ClipTune does not link libtorch's CUDA libraries (libtorch_cuda)"))
            #expect(message.contains("run Scripts/bootstrap --cuda"))
            #expect(message.contains("otherwise use device cpu"))
        }
    }

    static func driver(gpus: [String] = [], problem: String? = nil) -> CUDADriverInfo {
        CUDADriverInfo(version: gpus.isEmpty ? nil : 13000, devices: gpus.enumerated().map {
            CUDADeviceInfo(index: $0.offset, name: $0.element, totalMemory: 80 << 30, computeCapabilityMajor: 9,
                           computeCapabilityMinor: 0, multiprocessorCount: 132)
        }, problem: problem)
    }

    static func machine(built: Bool, count: Int, driver: CUDADriverInfo = driver()) -> CUDAFacts {
        CUDAFacts(builtWithCUDA: built, deviceCount: count, driver: { driver })
    }

    @Test func deviceNumbersPastTheLastAreNamed() throws {
        let two = Self.machine(built: true, count: 2)
        #expect(try Device.cuda(1).validated(against: two) == .cuda(1))
        let error = #expect(throws: DeviceError.self) { try Device.cuda(7).validated(against: two) }
        #expect(error == .noSuchDevice(index: 7, count: 2))
        #expect(error?.description == "cuda:7 does not exist: this machine has 2 CUDA devices (cuda:0, cuda:1)")
        #expect(DeviceError.noSuchDevice(index: 1, count: 1).description
                == "cuda:1 does not exist: this machine has 1 CUDA device (cuda:0)")
    }

    /// The two ways CUDA can be missing say different things: rebuild, or fix the driver.
    @Test func cpuOnlyBuildAndMissingGPUAreToldApart() throws {
        let gpuButCPUBuild = Self.machine(built: false, count: 0, driver: Self.driver(gpus: ["NVIDIA H200"]))
        let notBuilt = #expect(throws: DeviceError.self) { try Device.cuda(0).validated(against: gpuButCPUBuild) }
        #expect(notBuilt?.description.contains("this machine has 1 NVIDIA GPU (cuda:0 NVIDIA H200) that a CUDA build could use") == true)
        #expect(notBuilt?.description.contains("Scripts/bootstrap --cuda") == true)

        let nothing = Self.machine(built: false, count: 0, driver: Self.driver(problem: "no NVIDIA driver (libcuda.so.1 not found)"))
        let bare = #expect(throws: DeviceError.self) { try Device.cuda(0).validated(against: nothing) }
        #expect(bare?.description.contains("this machine shows no usable GPU either (no NVIDIA driver (libcuda.so.1 not found))") == true)

        let builtNoDriver = Self.machine(built: true, count: 0, driver: Self.driver(problem: "no NVIDIA driver (libcuda.so.1 not found)"))
        let noGPU = #expect(throws: DeviceError.self) { try Device.cuda(0).validated(against: builtNoDriver) }
        #expect(noGPU == .noCUDADevice(requested: .cuda(0), reason: "no NVIDIA driver (libcuda.so.1 not found)"))
        #expect(noGPU?.description == "cuda:0: this build links CUDA, but libtorch sees no GPU: no NVIDIA driver (libcuda.so.1 not found); use device cpu, or check with nvidia-smi")
        // The CPU needs no facts at all.
        #expect(try Device.cpu.validated(against: nothing) == .cpu)
    }

    // MARK: - Primitives on the CPU

    @Test func pinningIsOnlyForGPUBoundTensors() throws {
        let t = Tensor.ones([2, 3])
        #expect(!t.isPinned)
        #expect(t.pinnedIfUseful(for: .cpu) === t)
        if Torch.isCUDAAvailable {
            let pinned = try t.pinnedMemory()
            #expect(pinned.isPinned && pinned.equal(t))
            #expect(t.pinnedIfUseful(for: .cuda(0)).isPinned)
            #expect(pinned.pinnedIfUseful(for: .cuda(0)) === pinned)
        } else {
            // libtorch: "Cannot access accelerator device when none is available."
            let error = #expect(throws: TorchError.self) { try t.pinnedMemory() }
            #expect(error?.operation == "pin_memory")
            #expect(error?.isOutOfMemory == false)
        }
    }

    @Test func synchronizeAndMemoryStatsOnTheCPU() throws {
        Torch.synchronize(.cpu)
        #expect(Torch.memoryStats(.cpu) == nil)
        Torch.resetPeakMemoryStats(.cpu)
        #expect(Torch.hostPeakResidentBytes > 1 << 20)   // a process with libtorch loaded holds megabytes
        guard !Torch.isCUDABuild else { return }
        for (name, call) in [("cuda_synchronize", { Torch.synchronize(.cuda(0)) }),
                             ("cuda_memory_stats", { _ = Torch.memoryStats(.cuda(0)) }),
                             ("cuda_reset_peak_memory_stats", { Torch.resetPeakMemoryStats(.cuda(0)) })] {
            let error = #expect(throws: TorchError.self) { try withTorchErrors { call() } }
            #expect(error?.operation == name)
            #expect(error?.message.contains("this build does not link libtorch_cuda; run Scripts/bootstrap --cuda") == true)
        }
        #expect(Torch.cudaRuntimeVersion == nil)
    }

    /// A process-wide switch: flipped in a child process, away from tests running in parallel.
    @Test func tf32AndDeterminismRoundTrip() async {
        await #expect(processExitsWith: .success) {
            // libtorch starts with TF32 off for matmuls and determinism off.
            guard !Torch.allowTF32, !Torch.deterministicAlgorithms else { exit(1) }
            Torch.allowTF32 = true
            guard Torch.allowTF32 else { exit(2) }
            Torch.allowTF32 = false
            guard !Torch.allowTF32 else { exit(3) }
            unsetenv("CUBLAS_WORKSPACE_CONFIG")
            Torch.deterministicAlgorithms = true
            guard Torch.deterministicAlgorithms, ProcessInfo.processInfo.environment["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8" else { exit(4) }
            // CPU ops still run (an empty tensor is filled, so its contents are reproducible).
            guard Tensor.ones([3]).sum().item(Float.self) == 3 else { exit(5) }
            Torch.deterministicAlgorithms = false
            guard !Torch.deterministicAlgorithms else { exit(6) }
            // A value the user chose is kept.
            setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8", 1)
            Torch.prepareDeterministicCUDA()
            exit(ProcessInfo.processInfo.environment["CUBLAS_WORKSPACE_CONFIG"] == ":16:8" ? 0 : 7)
        }
    }

    // MARK: - Out of memory

    @Test func allocationFailuresAreOutOfMemory() throws {
        // 4 PiB: the CPU allocator fails (a c10::Error recognised by its message).
        let error = #expect(throws: TorchError.self) { try withTorchErrors { _ = Tensor.empty([1 << 50]) } }
        #expect(error?.kind == .outOfMemory)
        #expect(error?.isOutOfMemory == true)
        #expect(error?.message.contains("can't allocate memory") == true)
        // Other failures are not, and the thread's next failure is classified afresh.
        let shape = #expect(throws: TorchError.self) { try withTorchErrors { _ = Tensor.ones([3]).reshape(2, 2) } }
        #expect(shape?.kind == .other)
        #expect(TorchError(operation: "x", message: "y", site: nil, inputShapes: []).kind == .other)
    }

    // MARK: - Random states

    @Test func randomStatesRoundTripAndRefuseMissingDevices() async throws {
        await #expect(processExitsWith: .success) {
            let states = try Torch.randomStates(devices: [.cpu])
            guard Array(states.keys) == ["cpu"] else { exit(1) }
            let first = Tensor.randn([4]).toArray(Float.self)
            try Torch.setRandomStates(states)
            exit(Tensor.randn([4]).toArray(Float.self) == first ? 0 : 2)
        }
        #expect(throws: DeviceError.unrecognised("gpu")) { try Torch.setRandomStates(["gpu": Tensor.zeros([1])]) }
        guard !Torch.isCUDABuild else { return }
        let error = #expect(throws: DeviceError.self) { try Torch.randomStates(devices: [.cpu, .cuda(0)]) }
        #expect(error?.description.contains("Scripts/bootstrap --cuda") == true)
    }

    /// libtorch's own message for a CUDA generator in a CPU build is a paragraph about ATen_cuda;
    /// ours says what to do.
    @Test func cudaGeneratorInACPUBuildStopsWithTheReason() async throws {
        guard !Torch.isCUDABuild else { return }
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Generator.default(device: .cuda(0))
        }
        let stderr = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(stderr.contains("cannot get the default generator of cuda:0: cuda:0: this build of ClipTune does not link"))
    }
}
