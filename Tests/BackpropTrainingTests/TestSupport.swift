import Backprop
import BackpropData
import BackpropTraining
import Foundation
import Testing
import BackpropTestSupport

// MARK: - Data

/// Where the real MNIST and CIFAR-10 files are: `$BACKPROP_TEST_DATA`, else `../shared/data` next to
/// the package root (found by walking up from this file to `Package.swift`).
enum TestData {
    static var packageRoot: URL { TestPaths.packageRoot }
    static var root: URL { TestPaths.dataRoot }

    static var mnist: URL { root.appendingPathComponent("mnist", isDirectory: true) }

    /// Training images read by the library-level training tests (the test set is always read whole).
    static let mnistTrainingLimit = 12_000

    /// MNIST, read once for every test that needs it (the first 12,000 training images, all 10,000
    /// test images). A missing data folder fails the tests that use it; it is not skipped.
    static let mnistDataset: Result<Dataset, any Error> = Result {
        try Dataset.load(.mnist, from: root, trainingLimit: mnistTrainingLimit)
    }
}

// MARK: - Files

/// Writes `tensor`'s scalars as raw little-endian float32 (the layout `numpy.fromfile(…, "<f4")` reads).
func writeRawFloat32(_ tensor: Tensor<Float>, to url: URL) throws {
    var data = Data(capacity: tensor.count * 4)
    for x in tensor.scalars { withUnsafeBytes(of: x.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
    try data.write(to: url)
}

/// Reads raw little-endian float32 values.
func readRawFloat32(_ url: URL) throws -> [Float] {
    let data = try Data(contentsOf: url)
    return stride(from: 0, to: data.count - 3, by: 4).map { i in
        let bits = data[data.startIndex + i ..< data.startIndex + i + 4].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        return Float(bitPattern: bits)
    }
}

// MARK: - Safetensors surgery

/// A safetensors file split into its JSON header and its data, so tests can corrupt the header.
struct SafetensorsParts {
    var header: [String: Any]
    var body: Data

    init(_ data: Data) throws {
        let length = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        header = try #require(try JSONSerialization.jsonObject(with: data.subdata(in: 8 ..< 8 + length)) as? [String: Any])
        body = data.subdata(in: 8 + length ..< data.count)
    }

    /// The file again: the header (space-padded to 8 bytes, like the reference writer) and the data.
    var data: Data {
        get throws {
            var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
            while json.count % 8 != 0 { json.append(0x20) }
            var out = Data()
            withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
            return out + json + body
        }
    }
}

// MARK: - Python

/// A Python that can `import safetensors, torch, numpy` (`python(importing:)`); nil when none can
/// (the interop tests are then skipped, not failed).
let pythonWithTorch: URL? = python(importing: ["safetensors", "torch", "numpy"])

// MARK: - Networks

/// A preset by name (the presets are part of the contract under test, so a missing one fails).
func preset(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> Experiment {
    try #require(Experiment.preset(named: name), "no preset named \(name)", sourceLocation: sourceLocation)
}

/// The experiment's network in `Scalar`, with weights drawn from `seed`.
func makeNetwork<Scalar: NetworkScalar>(_ experiment: Experiment, _: Scalar.Type = Scalar.self, seed: UInt64) throws -> Network<Scalar> {
    var generator = SeededGenerator(seed: seed)
    return try experiment.network.makeNetwork(Scalar.self, using: &generator)
}

/// Every parameter's scalars as bit patterns, by name (for bit-identical comparisons).
func parameterBits(_ network: Network<Float>) -> [String: [UInt32]] {
    Dictionary(uniqueKeysWithValues: network.namedParameters.map { ($0.name, $0.parameter.value.scalars.map(\.bitPattern)) })
}

/// The forward pass's output as bit patterns.
func logitBits(_ network: Network<Float>, _ inputs: Tensor<Float>) -> [UInt32] {
    network.forward(inputs).scalars.map(\.bitPattern)
}
