// swift-tools-version: 6.1
// ClipTune: fine-tuning, distilling and exporting CLIP-style dual encoders on libtorch.
import PackageDescription
import Foundation

// libtorch comes from `Scripts/bootstrap` (a link in .deps/) or from $LIBTORCH (your own build).
let packageDir = Context.packageDirectory
let libtorch = Context.environment["LIBTORCH"].flatMap { $0.isEmpty ? nil : $0 } ?? "\(packageDir)/.deps/libtorch"
// CUDA is linked only when bootstrap ran in CUDA mode (or CLIPTUNE_CUDA=1 with your own libtorch).
let linkCUDA = Context.environment["CLIPTUNE_CUDA"] == "1"
    || FileManager.default.fileExists(atPath: "\(packageDir)/.deps/cuda")

var torchLibraries = ["-ltorch_cpu", "-lc10"]
if linkCUDA { torchLibraries += ["-ltorch_cuda", "-lc10_cuda"] }
// A CUDA build also sees the wheel's CUDA headers (nvidia/*/include beside torch/), which the
// bridge's NCCL process group needs (nccl.h, cuBLAS, ...); it leaves NCCL out when they are absent.
let nvidia = "\(libtorch)/../nvidia"
let cudaIncludes = !linkCUDA ? [] : ((try? FileManager.default.contentsOfDirectory(atPath: nvidia)) ?? []).sorted()
    .map { "\(nvidia)/\($0)/include" }.filter { FileManager.default.fileExists(atPath: $0) }

let package = Package(
    name: "ClipTune",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "Torch", targets: ["Torch"]),
        .library(name: "NN", targets: ["NN"]),
        .library(name: "Optim", targets: ["Optim"]),
        .library(name: "Training", targets: ["Training"]),
        .library(name: "Datasets", targets: ["Datasets"]),
        .library(name: "Models", targets: ["Models"]),
        .library(name: "Tokenizers", targets: ["Tokenizers"]),
        .library(name: "Distributed", targets: ["Distributed"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // Monitoring only: the /metrics endpoint (HTTP on SwiftNIO, exposition by swift-prometheus
        // over swift-metrics) and TensorBoard's protobuf records.
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // The only C++ in the project: a pure C ABI over libtorch.
        .target(
            name: "CTorch",
            // Gloo's headers (for c10d's ProcessGroupGloo.hpp), not in the wheel; see its README.
            exclude: ["vendor"],
            cxxSettings: [
                .unsafeFlags([
                    "-isystem", "\(libtorch)/include",
                    "-isystem", "\(libtorch)/include/torch/csrc/api/include",
                    "-isystem", "\(packageDir)/Sources/CTorch/vendor/gloo",
                    "-D_GLIBCXX_USE_CXX11_ABI=1",
                    "-Wno-deprecated-declarations",
                ] + (linkCUDA ? ["-DCTORCH_WITH_CUDA=1"] : []) + cudaIncludes.flatMap { ["-isystem", $0] }),
            ],
            linkerSettings: [
                // --no-as-needed: libtorch registers its kernels in static initialisers, so the
                // libraries must load even though no symbol is referenced directly.
                .unsafeFlags(["-L\(libtorch)/lib", "-Xlinker", "-rpath", "-Xlinker", "\(libtorch)/lib",
                              "-Xlinker", "--no-as-needed"] + torchLibraries + ["-Xlinker", "--as-needed"]),
            ]
        ),
        .target(name: "Torch", dependencies: ["CTorch"]),
        // Process groups over c10d (Gloo, NCCL) and the launcher environments (torchrun, Slurm).
        .target(name: "Distributed", dependencies: ["Torch"]),
        // One rank of the multi-process tests and of `Scripts/bench allreduce`.
        .executableTarget(name: "dist-worker", dependencies: ["Distributed", "Torch", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .systemLibrary(name: "CTurboJPEG", pkgConfig: "libturbojpeg", providers: [.apt(["libturbojpeg0-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CLibPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        // libpng reports errors by longjmp, which must not cross Swift frames: one C function
        // holds the setjmp and every libpng call.
        .target(name: "CPNGDecode", dependencies: ["CLibPNG"]),
        .systemLibrary(name: "CWebP", pkgConfig: "libwebpdemux", providers: [.apt(["libwebp-dev"])]),
        .target(name: "NN", dependencies: ["Torch"]),
        .target(name: "Datasets", dependencies: ["Torch", "CTurboJPEG", "CPNGDecode", "CWebP", "CZstd"]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .target(name: "Tokenizers", dependencies: ["CZlib"]),
        .target(name: "Models", dependencies: ["NN", "Datasets", "Tokenizers"]),
        .target(name: "Optim", dependencies: ["NN"]),
        .target(name: "Training", dependencies: ["NN", "Optim", "Datasets", "Models"]),
        .target(name: "ONNX"),
        // Optimised even in debug builds: hashing and quantizing ~100 MB of weights byte by byte.
        .target(name: "Export", dependencies: ["ONNX", "Models", "NN", "Torch", "Datasets", "Tokenizers"],
                swiftSettings: [.unsafeFlags(["-O"])]),
        .executableTarget(
            name: "doctor",
            dependencies: ["Torch", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "make-dataset",
            dependencies: ["Datasets", "NN", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "pack",
            dependencies: ["Datasets", "NN", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // Watching a run: Prometheus /metrics while training, TensorBoard event files. Apart from
        // Training so that its server and protobuf dependencies stay out of the core targets.
        .target(
            name: "Monitoring",
            dependencies: ["Training", "Torch",
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "NIOHTTP1", package: "swift-nio"),
                           .product(name: "Prometheus", package: "swift-prometheus"),
                           .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        // What the `train` and `distill` commands share (options, how a run ends).
        .target(
            name: "RunCommands",
            dependencies: ["Training", "Distributed", "Monitoring", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "train",
            dependencies: ["Training", "RunCommands", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "export",
            dependencies: ["Export", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "distill",
            dependencies: ["Training", "RunCommands", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "eval",
            dependencies: ["Training", "Models", "Datasets", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "wise-ft",
            dependencies: ["Training", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "embed",
            dependencies: ["Models", "NN", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // A LoRA adapter checkpoint merged into its base: a plain Hugging Face checkpoint.
        .executableTarget(
            name: "merge",
            dependencies: ["Models", "NN", "Torch", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "bench",
            dependencies: ["Torch", "Datasets", "NN", "Optim", "Models", "Training", "Tokenizers", "Distributed", "RunCommands",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .target(name: "TestSupport", dependencies: ["Torch"]),
        .testTarget(name: "TorchTests", dependencies: ["Torch"]),
        .testTarget(name: "MonitoringTests", dependencies: ["Monitoring", "Training", "TestSupport"], resources: [.copy("Fixtures")]),
        // Depends on dist-worker so that `swift test` builds it; the tests run it as the ranks.
        .testTarget(name: "DistributedTests", dependencies: ["Distributed", "Torch", "dist-worker"]),
        .testTarget(name: "NNTests", dependencies: ["NN", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "OptimTests", dependencies: ["Optim", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Monitoring", "Tokenizers", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "DatasetsTests", dependencies: ["Datasets", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "TokenizersTests", dependencies: ["Tokenizers"], resources: [.copy("Fixtures")]),
        .testTarget(name: "ExportTests", dependencies: ["Export", "Models", "Tokenizers", "Datasets", "TestSupport"], exclude: ["check_export.py"]),
        .testTarget(name: "ONNXTests", dependencies: ["ONNX"], exclude: ["check_model.py"]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "NN", "Datasets", "Tokenizers", "TestSupport"], resources: [.copy("Fixtures")]),
        // Runs the built programs in child processes; depending on them makes `swift test` build them.
        .testTarget(name: "ProgramTests", dependencies: ["train", "distill", "export", "eval", "wise-ft", "embed", "merge", "pack", "make-dataset", "doctor",
                                                         "Datasets", "Models", "Tokenizers", "NN", "Torch", "Training", "TestSupport"]),
    ],
    cxxLanguageStandard: .cxx20
)
