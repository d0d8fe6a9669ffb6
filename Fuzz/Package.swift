// swift-tools-version: 6.0
import PackageDescription

// Coverage-guided fuzz targets for Backprop's readers of untrusted input (libFuzzer).
// A package of its own, so the main build never needs the fuzzer runtime.
// Build and run with ../Scripts/fuzz.sh; the targets are listed in Sources/BackpropFuzz/Targets.swift.
let package = Package(
    name: "BackpropFuzz",
    dependencies: [.package(name: "Backprop", path: "..")],
    targets: [
        .executableTarget(
            name: "BackpropFuzz",
            dependencies: [
                .product(name: "Backprop", package: "Backprop"),
                .product(name: "BackpropData", package: "Backprop"),
                .product(name: "BackpropTraining", package: "Backprop"),
                .product(name: "BackpropONNX", package: "Backprop"),
            ]
        ),
    ]
)
