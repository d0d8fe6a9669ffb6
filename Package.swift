// swift-tools-version: 6.0
import Foundation
import PackageDescription

// MARK: - Vector code generation

/// Backprop's kernels are written with Swift SIMD types; how fast they run depends on the
/// instructions the compiler may use. A default x86-64 build targets SSE2 without FMA, where a
/// fused multiply-add becomes a library call per lane (see ../shared/notes). So when the build
/// machine has FMA, the package is compiled for that machine's CPU (`-target-cpu native`) and
/// the kernels use fused multiply-adds (`BACKPROP_FMA`). arm64 always has FMA.
///
/// Set `BACKPROP_PORTABLE=1` for a binary that runs on any CPU of its architecture (and for
/// using Backprop as a versioned dependency, where SwiftPM refuses compiler flags).
let portable = ProcessInfo.processInfo.environment["BACKPROP_PORTABLE"].map { $0 != "0" } ?? false

let vectorSettings: [SwiftSetting] = {
    if portable { return [] }
    #if arch(arm64)
    return [.define("BACKPROP_FMA")]
    #elseif arch(x86_64) && os(Linux)
    let flags = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
        .split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ") ?? []
    guard flags.contains("fma") && flags.contains("avx2") else { return [] }
    // The kernels' register tiles are sized for the vector registers (Sources/Backprop/KernelVector.swift).
    let wide: [SwiftSetting] = flags.contains("avx512f") ? [.define("BACKPROP_AVX512")] : []
    return wide + [.define("BACKPROP_FMA"), .unsafeFlags(["-target-cpu", "native"]),
            // The kernels are unusably slow unoptimized (a debug MNIST step takes ~0.6 s), so the
            // core module is optimized in debug builds too.
            .unsafeFlags(["-O"], .when(configuration: .debug))]
    #else
    return []
    #endif
}()

let package = Package(
    name: "Backprop",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "Backprop", targets: ["Backprop"]),
        .library(name: "BackpropData", targets: ["BackpropData"]),
        .library(name: "BackpropTraining", targets: ["BackpropTraining"]),
        .library(name: "BackpropReport", targets: ["BackpropReport"]),
        .library(name: "BackpropONNX", targets: ["BackpropONNX"]),
        .executable(name: "backprop", targets: ["BackpropCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // MARK: - Public modules

        /// Tensors, layers, networks, losses, optimizers, model files. Knows nothing of data sets or the CLI.
        .target(name: "Backprop", swiftSettings: vectorSettings),

        /// MNIST and CIFAR-10 readers, the data folder, and the downloader.
        .target(name: "BackpropData", dependencies: ["_CZlib"]),

        /// Presets, preprocessing, the training loop, evaluation and run folders.
        .target(name: "BackpropTraining", dependencies: ["Backprop", "BackpropData"]),

        /// The analysis report of a run: figures (SVG, PNG) and a self-contained HTML page.
        .target(name: "BackpropReport", dependencies: ["Backprop", "BackpropData", "BackpropTraining", "_CZlib"]),

        /// ONNX export and import: a model as an ONNX graph (opset 17) and back, with the
        /// protobuf messages of onnx.proto it needs written by hand (ONNXProto.swift).
        .target(name: "BackpropONNX", dependencies: ["Backprop", "BackpropData", "BackpropTraining"]),

        /// The `backprop` command-line tool: a thin layer over the libraries.
        .executableTarget(
            name: "BackpropCLI",
            dependencies: [
                "Backprop", "BackpropData", "BackpropTraining", "BackpropReport", "BackpropONNX",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // MARK: - Internal support

        /// The system zlib (inflate for `.gz` files).
        .systemLibrary(name: "_CZlib", providers: [.apt(["zlib1g-dev"]), .brew(["zlib"])]),

        // MARK: - Tests

        /// Counts heap allocations by interposing the allocator (glibc); linked only into the probe.
        .target(name: "_AllocationCounter", path: "Tests/_AllocationCounter"),
        /// Runs steady-state training steps under the counter; `AllocationTests` runs it.
        .executableTarget(name: "backprop-allocation-probe",
                          dependencies: ["_AllocationCounter", "Backprop", "BackpropData", "BackpropTraining"],
                          path: "Tests/AllocationProbe"),

        /// Paths, temporary folders and running `backprop`, shared by the test targets.
        .target(name: "BackpropTestSupport", path: "Tests/BackpropTestSupport"),
        .testTarget(name: "BackpropTests", dependencies: ["Backprop"], exclude: ["Fixtures"]),
        .testTarget(name: "BackpropDataTests", dependencies: ["BackpropData", "BackpropTestSupport"]),
        /// Also the CLI's pure parts (`@testable import BackpropCLI`: the progress line, messages).
        .testTarget(name: "BackpropTrainingTests",
                    dependencies: ["Backprop", "BackpropData", "BackpropTraining", "BackpropTestSupport",
                                   "backprop-allocation-probe", "BackpropCLI"]),
        .testTarget(name: "BackpropONNXTests",
                    dependencies: ["Backprop", "BackpropData", "BackpropTraining", "BackpropONNX", "BackpropTestSupport"],
                    exclude: ["Fixtures"]),
        .testTarget(name: "BackpropReportTests",
                    dependencies: ["Backprop", "BackpropData", "BackpropTraining", "BackpropReport", "BackpropTestSupport"]),
    ]
)
