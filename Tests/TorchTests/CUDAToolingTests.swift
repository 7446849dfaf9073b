import Foundation
import Testing
@testable import Torch

/// The CUDA code a GPU-less machine can still exercise: the driver-API reader against stand-in
/// driver libraries, and the `#ifdef CTORCH_WITH_CUDA` side of the bridge through a compiler.
/// Both need a C compiler; without one they say so and pass.
@Suite("CUDA driver reader and the CUDA side of the bridge")
struct CUDAToolingTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `clang` (the Swift toolchain has one) or `cc`, or nil.
    static let compiler: String? = ["clang", "cc", "gcc"].first { name in
        (try? run("/usr/bin/env", ["which", name]))?.status == 0
    }

    static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Builds `source` as a shared library in a fresh folder and returns its path.
    static func sharedLibrary(_ source: String, compiler: String) throws -> String {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cliptune-fake-cuda-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let c = folder.appendingPathComponent("fake_cuda.c"), library = folder.appendingPathComponent("libcuda.so.1")
        try source.write(to: c, atomically: true, encoding: .utf8)
        let result = try run("/usr/bin/env", [compiler, "-shared", "-fPIC", "-o", library.path, c.path])
        #expect(result.status == 0, "\(result.output)")
        return library.path
    }

    // MARK: - Driver API

    @Test func noDriverIsAnEmptyListWithAReason() {
        let info = CUDADriver.query(library: "libcuda-that-does-not-exist.so.1")
        #expect(info == CUDADriverInfo(version: nil, devices: [], problem: "no NVIDIA driver (libcuda-that-does-not-exist.so.1 not found)"))
        // This machine: whatever it has, an empty list always comes with a reason.
        let here = Torch.cudaDriver()
        print("CUDAToolingTests: this machine's driver: version \(here.versionString ?? "none"), \(here.devices.count) GPU(s), problem: \(here.problem ?? "none")")
        if here.devices.isEmpty { #expect(here.problem != nil) }
        #expect(Torch.cudaDevices() == here.devices)
    }

    @Test func devicesAreReadThroughTheDriverAPI() throws {
        guard let compiler = Self.compiler else {
            print("CUDAToolingTests: skipped: no C compiler (clang, cc, gcc) to build a stand-in libcuda")
            return
        }
        let library = try Self.sharedLibrary("""
            #include <stdio.h>
            #include <stddef.h>
            int cuInit(unsigned flags) { return flags == 0 ? 0 : 1; }
            int cuDriverGetVersion(int *v) { *v = 13020; return 0; }
            int cuDeviceGetCount(int *n) { *n = 2; return 0; }
            int cuDeviceGet(int *d, int ordinal) { *d = 10 + ordinal; return 0; }
            int cuDeviceGetName(char *s, int len, int d) { snprintf(s, len, "Fake GPU %d", d); return 0; }
            int cuDeviceTotalMem_v2(size_t *bytes, int d) { *bytes = (size_t)(d == 10 ? 80 : 40) << 30; return 0; }
            int cuDeviceGetAttribute(int *v, int attribute, int d) {
              switch (attribute) { case 75: *v = 9; return 0; case 76: *v = d - 10; return 0; case 16: *v = 132; return 0; }
              return 1;
            }
            """, compiler: compiler)
        let info = CUDADriver.query(library: library)
        #expect(info.problem == nil)
        #expect(info.version == 13020 && info.versionString == "13.2")
        #expect(info.devices == [
            CUDADeviceInfo(index: 0, name: "Fake GPU 10", totalMemory: 80 << 30, computeCapabilityMajor: 9,
                           computeCapabilityMinor: 0, multiprocessorCount: 132),
            CUDADeviceInfo(index: 1, name: "Fake GPU 11", totalMemory: 40 << 30, computeCapabilityMajor: 9,
                           computeCapabilityMinor: 1, multiprocessorCount: 132),
        ])
        #expect(info.devices[1].computeCapability == "9.1")
    }

    @Test func driverFailuresAreNamed() throws {
        guard let compiler = Self.compiler else {
            print("CUDAToolingTests: skipped: no C compiler (clang, cc, gcc) to build a stand-in libcuda")
            return
        }
        let common = """
            #include <stddef.h>
            int cuDriverGetVersion(int *v) { *v = 12040; return 0; }
            int cuDeviceGetCount(int *n) { *n = 1; return 0; }
            int cuDeviceGet(int *d, int ordinal) { *d = ordinal; return 0; }
            int cuDeviceGetName(char *s, int len, int d) { s[0] = 0; return 0; }
            int cuDeviceTotalMem_v2(size_t *bytes, int d) { *bytes = 0; return 0; }
            """
        // No GPU: cuInit fails with CUDA_ERROR_NO_DEVICE (100), named by cuGetErrorName.
        let noDevice = try Self.sharedLibrary(common + """
            int cuInit(unsigned flags) { return 100; }
            int cuDeviceGetAttribute(int *v, int attribute, int d) { *v = 0; return 0; }
            int cuGetErrorName(int error, const char **name) { *name = error == 100 ? "CUDA_ERROR_NO_DEVICE" : "?"; return 0; }
            """, compiler: compiler)
        let none = CUDADriver.query(library: noDevice)
        #expect(none == CUDADriverInfo(version: 12040, devices: [], problem: "the NVIDIA driver sees no usable GPU (cuInit: CUDA_ERROR_NO_DEVICE)"))
        // A failing attribute query, without cuGetErrorName: the call and the number.
        let badAttribute = try Self.sharedLibrary(common + """
            int cuInit(unsigned flags) { return 0; }
            int cuDeviceGetAttribute(int *v, int attribute, int d) { return 999; }
            """, compiler: compiler)
        #expect(CUDADriver.query(library: badAttribute).problem == "device 0: cuDeviceGetAttribute failed with CUDA error 999")
        // A library without the calls.
        let empty = try Self.sharedLibrary("int unrelated(void) { return 0; }\n", compiler: compiler)
        #expect(CUDADriver.query(library: empty).problem?.hasSuffix("lacks the driver API calls this needs (too old a driver?)") == true)
    }

    // MARK: - The CUDA side of the bridge

    /// `Scripts/check-cuda-bridge` compiles the `#ifdef CTORCH_WITH_CUDA` code as a CUDA build
    /// would, and fails on a file whose CUDA-only code is broken.
    @Test func cudaOnlyBridgeCodeCompiles() throws {
        let script = Self.root.appendingPathComponent("Scripts/check-cuda-bridge").path
        let libtorch = ProcessInfo.processInfo.environment["LIBTORCH"].flatMap { $0.isEmpty ? nil : $0 }
            ?? Self.root.appendingPathComponent(".deps/libtorch").path
        guard FileManager.default.fileExists(atPath: libtorch + "/include/ATen/ATen.h") else {
            print("CUDAToolingTests: skipped: no libtorch headers under \(libtorch) (run Scripts/bootstrap)")
            return
        }
        guard Self.compiler != nil || (try? Self.run("/usr/bin/env", ["which", "g++"]))?.status == 0 else {
            print("CUDAToolingTests: skipped: no C++ compiler")
            return
        }
        let result = try Self.run(script, [])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("OK: "), "\(result.output)")

        // The check is real: CUDA-only code that does not compile fails it, code outside the
        // #ifdef is seen too, and the macro is defined.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cliptune-check-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let broken = folder.appendingPathComponent("broken.cpp")
        try "#include \"ctorch.h\"\n#ifdef CTORCH_WITH_CUDA\nint x = not_declared_anywhere;\n#endif\n".write(to: broken, atomically: true, encoding: .utf8)
        let failed = try Self.run(script, [broken.path])
        #expect(failed.status == 1, "\(failed.output)")
        #expect(failed.output.contains("not_declared_anywhere"))
    }
}
