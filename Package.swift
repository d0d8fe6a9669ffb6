// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "Backprop",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "Backprop", targets: ["Backprop"]),
        .library(name: "BackpropData", targets: ["BackpropData"]),
        .library(name: "BackpropTraining", targets: ["BackpropTraining"]),
        .library(name: "BackpropReport", targets: ["BackpropReport"]),
        .executable(name: "backprop", targets: ["BackpropCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // MARK: - Public modules

        /// Tensors, layers, networks, losses, optimizers, model files. Knows nothing of data sets or the CLI.
        .target(name: "Backprop"),

        /// MNIST and CIFAR-10 readers, the data folder, and the downloader.
        .target(name: "BackpropData", dependencies: ["_CZlib"]),

        /// Presets, preprocessing, the training loop, evaluation and run folders.
        .target(name: "BackpropTraining", dependencies: ["Backprop", "BackpropData"]),

        /// The analysis report of a run: figures (SVG, PNG) and a self-contained HTML page.
        .target(name: "BackpropReport", dependencies: ["Backprop", "BackpropData", "BackpropTraining", "_CZlib"]),

        /// The `backprop` command-line tool: a thin layer over the libraries.
        .executableTarget(
            name: "BackpropCLI",
            dependencies: [
                "Backprop", "BackpropData", "BackpropTraining", "BackpropReport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // MARK: - Internal support

        /// The system zlib (inflate for `.gz` files).
        .systemLibrary(name: "_CZlib", providers: [.apt(["zlib1g-dev"]), .brew(["zlib"])]),

        // MARK: - Tests

        .testTarget(name: "BackpropTests", dependencies: ["Backprop"], exclude: ["Fixtures"]),
        .testTarget(name: "BackpropDataTests", dependencies: ["BackpropData"]),
        .testTarget(name: "BackpropTrainingTests", dependencies: ["Backprop", "BackpropData", "BackpropTraining"]),
        .testTarget(name: "BackpropReportTests", dependencies: ["Backprop", "BackpropData", "BackpropTraining", "BackpropReport"]),
    ]
)
