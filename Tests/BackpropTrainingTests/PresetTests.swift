import Backprop
import BackpropData
import BackpropTraining
import Foundation
import BackpropTestSupport
import Testing

/// What `backprop summary <preset>` shows, computed by hand from the report's Tables 2, 3 and 5.
private struct ExpectedSummary: Sendable, CustomTestStringConvertible {
    var preset: String
    var dataset: DatasetKind
    var input: [Int]
    /// One row per layer: kind, output shape of one example, weights, biases.
    var layers: [(kind: String, output: [Int], weights: Int, biases: Int)]
    var weights: Int
    var biases: Int
    var total: Int
    /// The PyTorch `nn.Sequential` names of the parameter tensors.
    var parameterNames: [String]

    var testDescription: String { preset }
}

// Weight counts: Conv2D Cout·Cin·k·k, Dense out·in; biases one per output channel / feature.
//   mnist:   conv 16·1·25 = 400, conv 16·16·25 = 6,400, dense 10·(16·7·7 = 784) = 7,840
//            → 14,640 weights, 16 + 16 + 10 = 42 biases, 14,682 in all.
//   cifar10: conv 16·3·25 = 1,200, conv 6,400, dense 10·(16·16·16 = 4,096) = 40,960
//            → 48,560 weights, 42 biases, 48,602 in all.
//   cifar10-improved: cifar10 + conv 16·16·9 = 2,304 (pad 1 keeps 16x16)
//            → 50,864 weights, 58 biases, 50,922 in all.
private let expectedSummaries: [ExpectedSummary] = [
    ExpectedSummary(
        preset: "mnist", dataset: .mnist, input: [1, 28, 28],
        layers: [("Conv2D", [16, 28, 28], 400, 16), ("ReLU", [16, 28, 28], 0, 0), ("MaxPool2D", [16, 14, 14], 0, 0),
                 ("Conv2D", [16, 14, 14], 6400, 16), ("ReLU", [16, 14, 14], 0, 0), ("MaxPool2D", [16, 7, 7], 0, 0),
                 ("Flatten", [784], 0, 0), ("Dense", [10], 7840, 10)],
        weights: 14_640, biases: 42, total: 14_682,
        parameterNames: ["0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias"]),
    ExpectedSummary(
        preset: "cifar10", dataset: .cifar10, input: [3, 32, 32],
        layers: [("Conv2D", [16, 32, 32], 1200, 16), ("ReLU", [16, 32, 32], 0, 0), ("MaxPool2D", [16, 16, 16], 0, 0),
                 ("Conv2D", [16, 16, 16], 6400, 16), ("ReLU", [16, 16, 16], 0, 0),
                 ("Flatten", [4096], 0, 0), ("Dense", [10], 40960, 10)],
        weights: 48_560, biases: 42, total: 48_602,
        parameterNames: ["0.weight", "0.bias", "3.weight", "3.bias", "6.weight", "6.bias"]),
    ExpectedSummary(
        preset: "cifar10-improved", dataset: .cifar10, input: [3, 32, 32],
        layers: [("Conv2D", [16, 32, 32], 1200, 16), ("ReLU", [16, 32, 32], 0, 0), ("MaxPool2D", [16, 16, 16], 0, 0),
                 ("Conv2D", [16, 16, 16], 6400, 16), ("ReLU", [16, 16, 16], 0, 0),
                 ("Conv2D", [16, 16, 16], 2304, 16),
                 ("Flatten", [4096], 0, 0), ("Dense", [10], 40960, 10)],
        weights: 50_864, biases: 58, total: 50_922,
        parameterNames: ["0.weight", "0.bias", "3.weight", "3.bias", "5.weight", "5.bias", "7.weight", "7.bias"]),
]

@Suite("Presets")
struct PresetTests {
    @Test("the preset list names the three seed presets, then the recipes, and an unknown name gives nil")
    func presetNames() {
        #expect(Experiment.seedPresetNames == ["mnist", "cifar10", "cifar10-improved"])
        #expect(Experiment.presetNames == Experiment.seedPresetNames + Experiment.recipePresetNames)
        for name in Experiment.presetNames { #expect(Experiment.preset(named: name)?.name == name) }
        #expect(Experiment.preset(named: "mnist2") == nil)
        #expect(Experiment.preset(named: "MNIST") == nil)
    }

    @Test("parameter counts and output shapes (what `backprop summary` prints)", arguments: expectedSummaries)
    fileprivate func summary(_ expected: ExpectedSummary) throws {
        let experiment = try preset(expected.preset)
        #expect(experiment.dataset == expected.dataset)
        #expect(experiment.network.input == expected.input)
        let network: Network<Float> = try makeNetwork(experiment, seed: experiment.options.seed)
        #expect(network.inputShape == expected.input)
        #expect(network.outputShape == [10])

        // Per layer, counted the way `backprop summary` counts: parameters named weight / bias.
        let layers = network.rows.map(\.layer)
        try #require(layers.count == expected.layers.count,
                     "layers: \(layers.map(\.kind)), expected \(expected.layers.map(\.kind))")
        for (index, (layer, row)) in zip(layers, expected.layers).enumerated() {
            let weights = layer.parameters.filter { $0.name == "weight" }.reduce(0) { $0 + $1.value.count }
            let biases = layer.parameters.filter { $0.name == "bias" }.reduce(0) { $0 + $1.value.count }
            #expect(layer.kind == row.kind, "layer \(index)")
            #expect(network.rows[index].outputShape == row.output, "layer \(index) (\(row.kind)) output")
            #expect(weights == row.weights, "layer \(index) (\(row.kind)) weights")
            #expect(biases == row.biases, "layer \(index) (\(row.kind)) biases")
        }
        let named = network.namedParameters
        let weights = named.filter { $0.name.hasSuffix(".weight") }.reduce(0) { $0 + $1.parameter.value.count }
        let biases = named.filter { $0.name.hasSuffix(".bias") }.reduce(0) { $0 + $1.parameter.value.count }
        #expect(weights == expected.weights)
        #expect(biases == expected.biases)
        #expect(network.parameterCount == expected.total)
        #expect(named.map(\.name) == expected.parameterNames)

        // The Double network (gradient checks) has the same architecture.
        let double: Network<Double> = try makeNetwork(experiment, seed: experiment.options.seed)
        #expect(double.rows.map(\.outputShape) == network.rows.map(\.outputShape))
        #expect(double.parameterCount == expected.total)
    }

    @Test("the same seed gives the same initial weights in Float and Double (up to rounding), another seed others",
          arguments: Experiment.presetNames)
    func seededInitialisation(_ name: String) throws {
        let experiment = try preset(name)
        let a: Network<Float> = try makeNetwork(experiment, seed: 5)
        let b: Network<Float> = try makeNetwork(experiment, seed: 5)
        let c: Network<Float> = try makeNetwork(experiment, seed: 6)
        let d: Network<Double> = try makeNetwork(experiment, seed: 5)
        #expect(parameterBits(a) == parameterBits(b))
        // Drawn weights only (BatchNorm's γ starts at 1 whatever the seed).
        // Identity ("dirac") filters hold only 0s and 1s, whatever the seed.
        for ((name, pa), pc) in zip(a.namedParameters, c.parameters)
        where name.hasSuffix("weight") && !pa.value.scalars.allSatisfy({ $0 == 0 || $0 == 1 }) {
            #expect(pa.value.scalars != pc.value.scalars, "\(name) ignores the seed")
        }
        for ((name, pa), pd) in zip(a.namedParameters, d.parameters) {
            // Each Float weight is the Double weight rounded (scale / √fanIn computed in either type).
            let worst = zip(pa.value.scalars, pd.value.scalars).map { abs(Double($0) - $1) / max(abs($1), 1e-30) }.max() ?? 0
            #expect(worst < 1e-6, "\(name): Float and Double weights differ by \(worst) relative")
        }
    }

    @Test("every preset's options pass validation against its data set's size", arguments: Experiment.presetNames)
    func presetOptionsAreValid(_ name: String) throws {
        let experiment = try preset(name)
        try experiment.options.validate(availableTrainingImages: experiment.dataset == .mnist ? 60_000 : 50_000)
    }

    @Test("the preset options are the seed report's")
    func presetOptions() throws {
        let mnist = try preset("mnist").options
        #expect(mnist == Experiment.defaultOptions(for: .mnist))
        #expect((mnist.iterations, mnist.batchSize, mnist.learningRate, mnist.momentum, mnist.weightDecay) == (3000, 16, 0.1, 0.9, 0.005))
        #expect((mnist.trainSize, mnist.validationSize) == (60_000, 2000))
        let cifar = try preset("cifar10").options
        #expect((cifar.iterations, cifar.batchSize, cifar.learningRate, cifar.momentum, cifar.weightDecay) == (5000, 16, 1e-3, 0.95, 0.001))
        #expect((cifar.trainSize, cifar.validationSize) == (20_000, 2000))
        let improved = try preset("cifar10-improved").options
        #expect((improved.iterations, improved.trainSize, improved.momentum, improved.weightDecay) == (7000, 40_000, 0.9, 0.0005))
        #expect(improved.learningRate == cifar.learningRate)
    }
}

@Suite("Whole-network gradient checks")
struct NetworkGradientCheckTests {
    /// Each preset's network in Double, checked like `backprop gradcheck <preset>`: a random batch
    /// of 4 with the data set's spread (preprocessed MNIST pixels have std ≈ 0.3, CIFAR-10's raw
    /// mean-subtracted bytes ≈ 60), random labels, h = 3e-5. A correct backward pass agrees to
    /// ~1e-8; a transposed weight gradient, a missing 1/N or a wrong pooling route is off by
    /// order 1 — far above the 1e-6 bound. cifar-fast is left out: its network is cifar-quick's
    /// at four times the widths (the same layers, checked here in the same `Double` code), and
    /// its check took four minutes of CI.
    @Test("backprop's gradients match central differences for every parameter tensor",
          arguments: Experiment.presetNames.filter { $0 != "cifar-fast" })
    func presetGradients(_ name: String) throws {
        let experiment = try preset(name)
        let seed: UInt64 = 1
        let network: Network<Double> = try makeNetwork(experiment, seed: seed)
        var generator = SeededGenerator(seed: seed ^ 0xC4EC4)
        let batch = 4
        let inputs = Tensor<Double>.randomNormal(shape: [batch] + network.inputShape,
                                                 standardDeviation: experiment.dataset == .mnist ? 0.3 : 60, using: &generator)
        // As `backprop gradcheck` does: a whitening first layer from the batch (left at its
        // placeholder draw, GELU would round many of its huge outputs to exactly 0, ties that
        // put the max pools on a kink whatever h is).
        if network.awaitsData { network.initializeFromData(inputs) }
        let labels = (0..<batch).map { _ in generator.nextInt(below: 10) }
        let results = GradientCheck.check(network: network, inputs: inputs, labels: labels, entriesPerTensor: 10,
                                          step: 3e-5, using: &generator)
        #expect(results.map(\.name) == network.namedParameters.map(\.name))
        for result in results {
            #expect(result.checked > 0, "\(result)")
            #expect(result.maxRelativeError < 1e-6, "\(result)")
        }
    }
}
