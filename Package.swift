// swift-tools-version: 6.2
// 6.2: the kernels use `InlineArray` (Swift 6.2) and the thread pool `Atomic` (Synchronization).
import Foundation
import PackageDescription

// MARK: - Vector code generation

/// Backprop's kernels are written with Swift SIMD types; how fast they run depends on the
/// instructions the compiler may use. A default x86-64 build targets SSE2 without FMA (see
/// ../shared/notes). So when the build machine has FMA and AVX2, the package is compiled for that
/// machine's CPU (`-target-cpu native`). The kernels use fused multiply-adds exactly when the
/// code is generated for a CPU that has them (Sources/_CPUFeatures asks the compiler), and
/// AVX-512 register tiles when `BACKPROP_AVX512` is defined. arm64 always has FMA.
///
/// Used as a dependency (checked out under the client's `.build/checkouts/`), the manifest adds
/// no compiler flags: SwiftPM has refused `unsafeFlags` in versioned dependencies, and a library
/// should not make its users' binaries CPU-specific behind their backs. There the build runs on
/// any CPU of its architecture, and a client gets the fast kernels by building with
/// `-Xswiftc -target-cpu -Xswiftc native` (README, "Backprop as a dependency").
/// `BACKPROP_PORTABLE=1` gives the portable build at the root too.
let portable = ProcessInfo.processInfo.environment["BACKPROP_PORTABLE"].map { $0 != "0" } ?? false
let isCheckedOutDependency = Context.packageDirectory.contains("/checkouts/")

let vectorSettings: [SwiftSetting] = {
    if portable || isCheckedOutDependency { return [] }
    #if arch(x86_64) && os(Linux)
    let flags = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
        .split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ") ?? []
    guard flags.contains("fma") && flags.contains("avx2") else { return [] }
    // The kernels' register tiles are sized for the vector registers (Sources/Backprop/KernelVector.swift).
    let wide: [SwiftSetting] = flags.contains("avx512f") ? [.define("BACKPROP_AVX512")] : []
    return wide + [.unsafeFlags(["-target-cpu", "native"]),
            // The kernels are unusably slow unoptimized (a debug MNIST step takes ~0.6 s), so the
            // core module is optimized in debug builds too, as one module: without
            // whole-module optimization the generic `fusedAdding` (KernelVector.swift) is not
            // inlined into the kernels of other files, and each lane goes through the SIMD
            // protocol's witnesses (the MNIST net then trains at under 1 img/s).
            // Multi-threaded WMO keeps one object file per source file, as SwiftPM expects.
            .unsafeFlags(["-O", "-wmo", "-num-threads", "2"], .when(configuration: .debug))]
    #else
    return []
    #endif
}()

let package = Package(
    name: "Backprop",
    // Atomic needs macOS 15, InlineArray macOS 26.
    platforms: [.macOS(.v26)],
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
        .target(name: "Backprop", dependencies: ["_CPUFeatures"], swiftSettings: vectorSettings),

        /// MNIST, Fashion-MNIST and CIFAR-10 readers, image folders, PNG and JPEG decoding, the data
        /// folder, and the downloader.
        .target(name: "BackpropData", dependencies: ["_CZlib", "_CImage"]),

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

        /// What the target CPU can do (fused multiply-add), from the C compiler's macros.
        .systemLibrary(name: "_CPUFeatures"),

        /// The system zlib (inflate for `.gz` files).
        .systemLibrary(name: "_CZlib", providers: [.apt(["zlib1g-dev"]), .brew(["zlib"])]),
        /// The system libpng (PNG decoding).
        .systemLibrary(name: "_CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"]), .brew(["libpng"])]),
        /// The system libjpeg, libjpeg-turbo on Debian (JPEG decoding).
        .systemLibrary(name: "_CJPEG", pkgConfig: "libjpeg", providers: [.apt(["libjpeg62-turbo-dev"]), .brew(["jpeg-turbo"])]),
        /// PNG and JPEG decoding in C: libpng and libjpeg report errors by longjmp, which must not
        /// cross Swift frames, so the setjmp and every library call sit in one C function each.
        .target(name: "_CImage", dependencies: ["_CPNG", "_CJPEG"],
                linkerSettings: [.linkedLibrary("png16"), .linkedLibrary("jpeg")]),

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
        .testTarget(name: "BackpropDataTests", dependencies: ["BackpropData", "BackpropTestSupport"], exclude: ["Fixtures"]),
        /// Also the CLI's pure parts (`@testable import BackpropCLI`: the progress line, messages).
        .testTarget(name: "BackpropTrainingTests",
                    dependencies: ["Backprop", "BackpropData", "BackpropTraining", "BackpropTestSupport",
                                   "backprop-allocation-probe", "BackpropCLI", "BackpropReport"],
                    exclude: ["Fixtures"]),
        .testTarget(name: "BackpropONNXTests",
                    dependencies: ["Backprop", "BackpropData", "BackpropTraining", "BackpropONNX", "BackpropTestSupport"],
                    exclude: ["Fixtures"]),
        .testTarget(name: "BackpropReportTests",
                    dependencies: ["Backprop", "BackpropData", "BackpropTraining", "BackpropReport", "BackpropTestSupport"]),
    ]
)
