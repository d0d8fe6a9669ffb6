import Backprop
import BackpropData
import BackpropTestSupport
import BackpropTraining
import Foundation
import Testing

// MARK: - Networks

/// The networks the ONNX tests export: the seed presets, the recipe preset, the residual example
/// with BatchNorm, and a net with every layer kind Backprop has.
func testNetworks() throws -> [(name: String, spec: NetworkSpec, dataset: DatasetKind)] {
    var nets: [(String, NetworkSpec, DatasetKind)] = []
    for name in Experiment.presetNames {
        let experiment = try #require(Experiment.preset(named: name), "no preset \(name)")
        nets.append((name, experiment.network, experiment.dataset))
    }
    let resnet = try Experiment(specFile: TestPaths.packageRoot.appendingPathComponent("Examples/resnet-mnist.json"))
    nets.append(("resnet-mnist", resnet.network, resnet.dataset))
    let catalog = try Experiment(specData: Data(catalogSpec.utf8), source: "catalog.json")
    nets.append(("catalog", catalog.network, catalog.dataset))
    return nets
}

/// Every layer kind: convolutions with and without bias, stride and padding, BatchNorm 2-D and
/// 1-D (affine both, bias-only, none), both GELUs, all four poolings, dropout and dropout2d, a
/// nested sequence, residual blocks with an identity shortcut and with a shortcut path, scale,
/// identity, flatten (implicit before a dense) and dense with and without bias.
let catalogSpec = """
    {"dataset": "cifar10", "input": [3, 32, 32], "layers": [
      {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
      {"type": "batchnorm2d", "affine": "bias"},
      {"type": "gelu", "approximate": "tanh"},
      {"type": "avgpool2d", "size": 2},
      {"type": "dropout2d", "p": 0.1},
      {"type": "residual", "main": [
        {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"type": "relu"},
        {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1, "bias": false},
        {"type": "batchnorm2d", "affine": "none"}]},
      {"type": "gelu"},
      {"type": "sequential", "layers": [
        {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "stride": 2},
        {"type": "identity"}]},
      {"type": "maxpool2d", "size": 3, "stride": 2},
      {"type": "residual", "main": [{"type": "scale", "factor": 0.5}], "shortcut": [{"type": "identity"}]},
      {"type": "residual", "main": [{"type": "conv2d", "out_channels": 16, "kernel_size": 1}, {"type": "batchnorm2d"}]},
      {"type": "global_maxpool2d"},
      {"type": "dense", "out_features": 24},
      {"type": "batchnorm1d"},
      {"type": "relu"},
      {"type": "dropout", "p": 0.3},
      {"type": "dense", "out_features": 10, "bias": false},
      {"type": "scale", "factor": 4},
      {"type": "softmaxloss"}]}
    """

/// A model of `spec` with weights from `seed`, nonzero biases, and BatchNorm layers with random
/// γ, β and running statistics — so that a lost bias or a misread statistic shows in the logits.
func randomModel(_ spec: NetworkSpec, dataset: DatasetKind, seed: UInt64) throws -> ModelArchive {
    var g = SeededGenerator(seed: seed)
    let network = try spec.makeNetwork(Float.self, using: &g)
    for (name, p) in network.namedParameters where name.hasSuffix(".bias") {
        p.value = .randomNormal(shape: p.value.shape, standardDeviation: 0.1, using: &g)
    }
    for row in network.rows {
        guard let norm = row.layer as? BatchNorm<Float> else { continue }
        if norm.affine == .both || norm.affine == .weightOnly {
            norm.weight.value.scalars = norm.weight.value.scalars.map { _ in 1 + 0.2 * Float(g.nextNormal()) }
        }
        if norm.affine == .both || norm.affine == .biasOnly {
            norm.bias.value = .randomNormal(shape: [norm.channels], standardDeviation: 0.2, using: &g)
        }
        norm.runningMean.value = .randomNormal(shape: [norm.channels], standardDeviation: 0.3, using: &g)
        norm.runningVariance.value.scalars = norm.runningVariance.value.scalars.map { _ in 0.5 + abs(Float(g.nextNormal())) }
    }
    let preprocessing = dataset == .mnist ? Preprocessing(scale: 1 / 255, mean: [0.1307])
                                          : Preprocessing(scale: 1, mean: [125.3, 122.95, 113.87])
    return ModelArchive(network: network, spec: spec, dataset: dataset, preprocessing: preprocessing,
                        classNames: dataset.standardClassNames ?? [])
}

/// Inputs spread like the data set's preprocessed images.
func randomInputs(for network: Network<Float>, count: Int, seed: UInt64) -> Tensor<Float> {
    var g = SeededGenerator(seed: seed)
    let spread: Float = network.inputShape[0] == 1 ? 0.5 : 60
    return .randomNormal(shape: [count] + network.inputShape, standardDeviation: spread, using: &g)
}

/// `max |a − b| / max |b|`: the largest difference relative to the largest reference value.
func relativeDifference(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    let worst = zip(a, b).map { Double(abs($0 - $1)) }.max() ?? 0
    let scale = b.map { Double(abs($0)) }.max() ?? 0
    return scale > 0 ? worst / scale : worst
}

/// The index of the largest score of each row of `[N, classes]` logits.
func labels(_ logits: Tensor<Float>) -> [Int] {
    let classes = logits.shape[1]
    return (0..<logits.shape[0]).map { row in
        let scores = logits.scalars[row * classes ..< (row + 1) * classes]
        return scores.indices.max { scores[$0] < scores[$1] }! - row * classes
    }
}

/// The data set's test images, read once per kind.
private let testSets: [DatasetKind: Result<Dataset, any Error>] = [
    .mnist: Result { try Dataset.load(.mnist, from: TestPaths.dataRoot, trainingLimit: 0) },
    .cifar10: Result { try Dataset.load(.cifar10, from: TestPaths.dataRoot, trainingLimit: 0) },
]

func testSet(_ kind: DatasetKind) throws -> Dataset { try testSets[kind]!.get() }

// MARK: - Files

/// Writes `tensor`'s scalars as raw little-endian float32 (what `numpy.fromfile(…, "<f4")` reads).
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

/// A fixture file of this target.
func fixture(_ name: String) -> URL {
    TestPaths.packageRoot.appendingPathComponent("Tests/BackpropONNXTests/Fixtures").appendingPathComponent(name)
}

// MARK: - Python

/// A Python that can `import onnxruntime, onnx, numpy` (`python(importing:)`); nil when none can
/// (the onnxruntime tests are then skipped, with the reason shown).
let pythonWithONNXRuntime: URL? = python(importing: ["onnxruntime", "onnx", "numpy"])

/// Runs Scripts/check_onnxruntime.py and returns its JSON report.
func runONNXRuntime(_ arguments: [String]) throws -> [String: Any] {
    let python = try #require(pythonWithONNXRuntime)
    let script = TestPaths.packageRoot.appendingPathComponent("Scripts/check_onnxruntime.py")
    let result = try runProcess(python, [script.path] + arguments)
    try #require(result.exited && result.status == 0, "onnxruntime failed: \(result.summary)")
    let line = result.stdout.split(separator: "\n").last.map(String.init) ?? ""
    return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "no report: \(result.stdout)")
}
