// swift-tools-version: 6.0
import PackageDescription

// Layers, one direction: MilaCore <- MilaReference, MilaOpenCL <- (model, later) <- mila-infer.
// MilaCore and MilaReference build and test with no OpenCL device present.
let package = Package(
    name: "mila",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "mila-infer", targets: ["mila-infer"]),
        .executable(name: "mila-kernel-bench", targets: ["KernelBench"]),
        .library(name: "MilaCore", targets: ["MilaCore"]),
        .library(name: "MilaReference", targets: ["MilaReference"]),
        .library(name: "MilaOpenCL", targets: ["MilaOpenCL"]),
        // The engine as a library (Sources/MilaEngine/MilaEngine.docc): open a model, classify,
        // segment, run tensors; and what its API hands out.
        .library(name: "MilaEngine", targets: ["MilaEngine"]),
        .library(name: "MilaImage", targets: ["MilaImage"]),
        .library(name: "MilaModel", targets: ["MilaModel"]),
        .library(name: "MilaWeights", targets: ["MilaWeights"]),
        // The Open Inference Protocol server behind `mila-infer serve`.
        .library(name: "MilaServe", targets: ["MilaServe"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // The server (mila-infer serve): HTTP/1.1, lifecycle and signals, Prometheus metrics.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
    ],
    targets: [
        // C libraries from Debian packages (ocl-icd-opencl-dev + opencl-headers, libclblast-dev).
        .systemLibrary(name: "COpenCL",
                       providers: [.apt(["ocl-icd-opencl-dev", "opencl-headers"])]),
        .systemLibrary(name: "CCLBlast", providers: [.apt(["libclblast-dev"])]),

        .target(name: "MilaCore"),
        // JPEG and PNG decoding through libjpeg-turbo and libpng (libjpeg62-turbo-dev, libpng-dev).
        .target(name: "CImageCodecs", linkerSettings: [.linkedLibrary("jpeg"), .linkedLibrary("png")]),
        .target(name: "MilaImage", dependencies: ["MilaCore", "CImageCodecs"]),
        .target(name: "MilaReference", dependencies: ["MilaCore"]),
        // Weight and tensor files: safetensors, PyTorch zip checkpoints (an unpickler that executes
        // nothing), .npy. No device needed.
        .target(name: "MilaWeights", dependencies: ["MilaCore"]),
        // Model definitions: configuration, weight binding by checkpoint name, graph building.
        .target(name: "MilaModel", dependencies: ["MilaCore", "MilaWeights"]),

        // Kernels/*.cl, embedded as Swift string literals by the EmbedKernels build-tool plugin.
        .executableTarget(name: "KernelEmbedder"),
        .plugin(name: "EmbedKernels", capability: .buildTool(), dependencies: ["KernelEmbedder"]),
        // Kernels/ is this target's folder, so SwiftPM re-plans the build (and re-runs the plugin)
        // when a .cl file is added or removed; each .cl file is an input of the plugin's command,
        // so editing one reruns it.
        .target(name: "MilaKernels", path: "Kernels", plugins: ["EmbedKernels"]),

        .target(name: "MilaOpenCL", dependencies: ["MilaCore", "MilaKernels", "COpenCL", "CCLBlast"]),

        // The models shipped inside the engine (Sources/MilaModelZoo/Models/*.safetensors, trained by
        // Tests/PyTorchReference/train_digits.py), embedded as base64 literals by the EmbedModels plugin.
        .executableTarget(name: "ModelEmbedder"),
        .plugin(name: "EmbedModels", capability: .buildTool(), dependencies: ["ModelEmbedder"]),
        .target(name: "MilaModelZoo", exclude: ["Models"], plugins: ["EmbedModels"]),

        // A loaded model with a backend: what the CLI drives.
        .target(name: "MilaEngine", dependencies: ["MilaCore", "MilaWeights", "MilaModel", "MilaReference", "MilaOpenCL", "MilaModelZoo", "MilaImage"]),

        // Open Inference Protocol v2 over HTTP/1.1 with dynamic batching on one device thread.
        .target(name: "MilaServe", dependencies: [
            "MilaCore", "MilaEngine", "MilaImage", "MilaModel",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
        ]),

        .executableTarget(name: "mila-infer", dependencies: [
            "MilaCore", "MilaOpenCL", "MilaWeights", "MilaModel", "MilaModelZoo", "MilaEngine", "MilaImage", "MilaServe",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // One fuzz target per parser of untrusted input (Tests/Fuzz/README.md); mila-fuzz replays
        // inputs in any build and fuzzes in the libFuzzer build Tests/Fuzz/run.sh makes.
        .target(name: "MilaFuzzTargets", dependencies: ["MilaWeights", "MilaImage", "MilaModel"]),
        .executableTarget(name: "mila-fuzz", dependencies: ["MilaFuzzTargets"]),
        .executableTarget(name: "KernelBench", dependencies: ["MilaCore", "MilaReference", "MilaOpenCL"],
                          path: "Benchmarks/KernelBench"),

        .testTarget(name: "MilaCoreTests", dependencies: ["MilaCore"]),
        .testTarget(name: "MilaReferenceTests", dependencies: ["MilaCore", "MilaReference"]),
        .testTarget(name: "MilaWeightsTests", dependencies: ["MilaCore", "MilaWeights"], resources: [.copy("Fixtures")]),
        .testTarget(name: "FuzzReplayTests", dependencies: ["MilaFuzzTargets"]),
        .testTarget(name: "CLITests", dependencies: ["mila-infer", "MilaCore", "MilaWeights", "MilaEngine", "MilaImage", "MilaModelZoo", "MilaOpenCL"]),
        .testTarget(name: "MilaImageTests", dependencies: ["MilaCore", "MilaImage", "MilaWeights"], resources: [.copy("Fixtures")]),
        .testTarget(name: "MilaModelTests", dependencies: ["MilaCore", "MilaWeights", "MilaModel", "MilaReference", "MilaOpenCL", "MilaImage", "MilaModelZoo"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "MilaServeTests", dependencies: [
            "MilaServe", "MilaEngine", "MilaCore", "MilaImage",
            .product(name: "HummingbirdTesting", package: "hummingbird"),
        ]),
        .testTarget(name: "MilaOpenCLTests", dependencies: ["MilaCore", "MilaReference", "MilaOpenCL", "MilaKernels"]),
    ],
    swiftLanguageModes: [.v5]
)
