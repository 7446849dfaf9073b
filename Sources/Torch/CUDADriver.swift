#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One GPU as the NVIDIA driver reports it.
public struct CUDADeviceInfo: Sendable, Equatable {
    /// The driver's ordinal; libtorch numbers devices the same way (`cuda:index`), both after
    /// `CUDA_VISIBLE_DEVICES`.
    public let index: Int
    public let name: String
    /// Bytes of device memory.
    public let totalMemory: Int
    public let computeCapabilityMajor: Int
    public let computeCapabilityMinor: Int
    public let multiprocessorCount: Int

    /// "9.0" for a Hopper GPU.
    public var computeCapability: String { "\(computeCapabilityMajor).\(computeCapabilityMinor)" }
}

/// What the NVIDIA driver says about this machine. Read from the driver library itself
/// (`libcuda.so.1`, opened at run time), not through libtorch, so it works in CPU-only builds:
/// `doctor` and `Device.validated()` use it to tell "no GPU here" from "a GPU this build cannot use".
public struct CUDADriverInfo: Sendable, Equatable {
    /// The newest CUDA version the driver supports, as the driver API gives it (13000 = 13.0).
    public let version: Int?
    public let devices: [CUDADeviceInfo]
    /// Why `devices` is empty (or cut short), e.g. "no NVIDIA driver (libcuda.so.1 not found)".
    public let problem: String?

    public var versionString: String? { version.map { "\($0 / 1000).\($0 % 1000 / 10)" } }
}

extension Torch {
    /// The NVIDIA driver's view of this machine (see `CUDADriverInfo`).
    public static func cudaDriver() -> CUDADriverInfo { CUDADriver.query(library: "libcuda.so.1") }

    /// The GPUs the NVIDIA driver lists; empty without a driver or GPU (`cudaDriver().problem` says which).
    public static func cudaDevices() -> [CUDADeviceInfo] { cudaDriver().devices }
}

/// The few driver-API calls `CUDADriverInfo` needs, looked up with dlsym. Opened once per query
/// and never closed: unloading libcuda under a process that may use CUDA is asking for trouble.
enum CUDADriver {
    // CUresult f(...); CUdevice is an int.
    typealias Init = @convention(c) (UInt32) -> Int32
    typealias GetInt = @convention(c) (UnsafeMutablePointer<Int32>) -> Int32
    typealias DeviceGet = @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32
    typealias DeviceGetName = @convention(c) (UnsafeMutablePointer<CChar>, Int32, Int32) -> Int32
    typealias DeviceTotalMem = @convention(c) (UnsafeMutablePointer<Int>, Int32) -> Int32
    typealias DeviceGetAttribute = @convention(c) (UnsafeMutablePointer<Int32>, Int32, Int32) -> Int32
    typealias GetErrorName = @convention(c) (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>) -> Int32

    // CUdevice_attribute values from cuda.h.
    static let multiprocessorCount: Int32 = 16
    static let computeCapabilityMajor: Int32 = 75
    static let computeCapabilityMinor: Int32 = 76

    static func query(library: String) -> CUDADriverInfo {
        guard let handle = dlopen(library, RTLD_NOW | RTLD_LOCAL) else {
            return CUDADriverInfo(version: nil, devices: [], problem: "no NVIDIA driver (\(library) not found)")
        }
        func symbol<F>(_ name: String, as type: F.Type) -> F? {
            dlsym(handle, name).map { unsafeBitCast($0, to: type) }
        }
        guard let cuInit = symbol("cuInit", as: Init.self),
              let cuDriverGetVersion = symbol("cuDriverGetVersion", as: GetInt.self),
              let cuDeviceGetCount = symbol("cuDeviceGetCount", as: GetInt.self),
              let cuDeviceGet = symbol("cuDeviceGet", as: DeviceGet.self),
              let cuDeviceGetName = symbol("cuDeviceGetName", as: DeviceGetName.self),
              let cuDeviceTotalMem = symbol("cuDeviceTotalMem_v2", as: DeviceTotalMem.self),
              let cuDeviceGetAttribute = symbol("cuDeviceGetAttribute", as: DeviceGetAttribute.self)
        else {
            return CUDADriverInfo(version: nil, devices: [], problem: "\(library) lacks the driver API calls this needs (too old a driver?)")
        }
        let errorName = symbol("cuGetErrorName", as: GetErrorName.self)
        func describe(_ call: String, _ result: Int32) -> String {
            var name: UnsafePointer<CChar>?
            if let errorName, errorName(result, &name) == 0, let name { return "\(call): \(String(cString: name))" }
            return "\(call) failed with CUDA error \(result)"
        }

        var version: Int32 = 0
        let knownVersion = cuDriverGetVersion(&version) == 0 ? Int(version) : nil
        // cuInit fails with CUDA_ERROR_NO_DEVICE when the driver sees no GPU (or none is visible).
        let initResult = cuInit(0)
        guard initResult == 0 else {
            return CUDADriverInfo(version: knownVersion, devices: [], problem: "the NVIDIA driver sees no usable GPU (\(describe("cuInit", initResult)))")
        }
        var count: Int32 = 0
        let countResult = cuDeviceGetCount(&count)
        guard countResult == 0 else {
            return CUDADriverInfo(version: knownVersion, devices: [], problem: describe("cuDeviceGetCount", countResult))
        }
        struct Failure: Error { let message: String }
        func check(_ call: String, _ result: Int32) throws(Failure) {
            if result != 0 { throw Failure(message: describe(call, result)) }
        }
        var devices: [CUDADeviceInfo] = []
        for ordinal in 0..<count {
            do throws(Failure) {
                var device: Int32 = 0
                try check("cuDeviceGet", cuDeviceGet(&device, ordinal))
                var name = [CChar](repeating: 0, count: 256)
                try check("cuDeviceGetName", cuDeviceGetName(&name, Int32(name.count - 1), device))
                var memory = 0
                try check("cuDeviceTotalMem_v2", cuDeviceTotalMem(&memory, device))
                var major: Int32 = 0, minor: Int32 = 0, multiprocessors: Int32 = 0
                try check("cuDeviceGetAttribute", cuDeviceGetAttribute(&major, computeCapabilityMajor, device))
                try check("cuDeviceGetAttribute", cuDeviceGetAttribute(&minor, computeCapabilityMinor, device))
                try check("cuDeviceGetAttribute", cuDeviceGetAttribute(&multiprocessors, multiprocessorCount, device))
                devices.append(CUDADeviceInfo(
                    index: Int(ordinal), name: name.withUnsafeBufferPointer { String(cString: $0.baseAddress!) },
                    totalMemory: memory, computeCapabilityMajor: Int(major), computeCapabilityMinor: Int(minor),
                    multiprocessorCount: Int(multiprocessors)))
            } catch {
                return CUDADriverInfo(version: knownVersion, devices: devices, problem: "device \(ordinal): \(error.message)")
            }
        }
        return CUDADriverInfo(version: knownVersion, devices: devices, problem: nil)
    }
}
