import Backprop
import Foundation
import Testing

// Backprop checked against PyTorch reference values.
//
// The fixtures in `Fixtures/` are written by `Scripts/make_reference.py` (run it from the
// repository root with torch and numpy installed; each file's header records the command, the
// seed and the Python/torch/numpy versions). Inputs and parameters there are float32 values;
// the expected results were computed by PyTorch in float64 from exactly those values and rounded
// to float32, so the tolerances below need to cover only Backprop's own float32 arithmetic.
//
// Every case checks the forward output *and* every gradient (input and each parameter) for a
// random upstream gradient, so a gradient routed to the wrong element, a transposed weight, a
// missing bias or a factor of two shows as an O(0.1–1) difference, four orders of magnitude
// above the tolerances; the subtlest mistakes tried (dropping SGD's weight decay, dropping
// its (1 − μ) damping) move the loss trajectory by ≥ 5e-4, 25x the loss tolerance.

// MARK: - Tolerances

/// `|actual − expected| ≤ absolute + relative · |expected|`, elementwise.
private struct Tolerance: CustomStringConvertible {
    var absolute: Double
    var relative: Double

    var description: String { "|Δ| ≤ \(absolute) + \(relative)·|expected|" }

    /// Any tensor: a layer's output or gradient, the network's logits and gradients, and the
    /// parameters after three SGD steps. Backprop forms each value as a float32 dot product (conv:
    /// Cin·k·k ≤ 75 terms; dW and db: N·Ho·Wo ≤ 60 terms of O(1), values up to ~20), accumulated in
    /// float32, so its rounding error is about √k·2⁻²⁴·Σ|terms|, a few 1e-6 at most here. The
    /// absolute part covers entries that cancel to near zero, the relative part the large ones.
    /// Measured (Swift 6.3.1, x86-64): the worst element uses 6% of this allowance (a conv
    /// weight gradient: |Δ| = 6e-6 on 21.6 after two accumulated passes); the network and its
    /// SGD steps use under 1%. Any real mistake (a transposed weight, a wrong index, a factor
    /// of two, a missing (1 − μ) or weight-decay term) is ≥ 1e-3, far outside.
    static let tensor = Tolerance(absolute: 1e-5, relative: 1e-4)

    /// A loss, which Backprop sums in `Double` from float32 differences `x − max`, so only the
    /// float32 rounding of its inputs remains. Measured: relative error ≤ 3e-7 (the loss after
    /// an SGD step carries the parameters' float32 error), i.e. under 3% of this allowance.
    static let loss = Tolerance(absolute: 1e-6, relative: 1e-5)
}

// MARK: - Fixtures

/// A row-major tensor as the script writes it.
private struct TensorFixture: Decodable {
    let shape: [Int]
    let data: [Double]

    var tensor: Tensor<Float> { Tensor<Float>(shape: shape, scalars: data.map { Float($0) }) }
}

private struct FixtureHeader: Decodable {
    let command: String
    let seed: Int
    let torch: String
}

private struct FixtureFile<Case: Decodable>: Decodable {
    let header: FixtureHeader
    let cases: [String: Case]
}

/// One layer's forward and backward pass for `sum(output · outputGradient)`.
private struct LayerCase: Decodable {
    let input: TensorFixture
    let output: TensorFixture
    let outputGradient: TensorFixture
    let inputGradient: TensorFixture
    let weight: TensorFixture?
    let bias: TensorFixture?
    let weightGradient: TensorFixture?
    let biasGradient: TensorFixture?
    // Conv2D
    let inputChannels: Int?
    let outputChannels: Int?
    let kernelSize: Int?
    let stride: Int?
    let padding: Int?
    // Dense
    let inputSize: Int?
    let outputSize: Int?
    // MaxPool2D
    let size: Int?

    enum CodingKeys: String, CodingKey {
        case input, output, weight, bias, stride, padding, size
        case outputGradient = "output_gradient", inputGradient = "input_gradient"
        case weightGradient = "weight_gradient", biasGradient = "bias_gradient"
        case inputChannels = "input_channels", outputChannels = "output_channels", kernelSize = "kernel_size"
        case inputSize = "input_size", outputSize = "output_size"
    }
}

private struct SoftmaxCase: Decodable {
    let logits: TensorFixture
    let labels: [Int]
    let loss: Double
    let correct: Int
    let logitsGradient: TensorFixture

    enum CodingKeys: String, CodingKey {
        case logits, labels, loss, correct
        case logitsGradient = "logits_gradient"
    }
}

private struct NetworkCase: Decodable {
    struct Training: Decodable {
        let learningRate: Float
        let momentum: Float
        let weightDecay: Float
        let steps: Int
        /// The loss before each step and after the last one (`steps + 1` values).
        let losses: [Double]
        let finalParameters: [String: TensorFixture]

        enum CodingKeys: String, CodingKey {
            case momentum, steps, losses
            case learningRate = "learning_rate", weightDecay = "weight_decay"
            case finalParameters = "final_parameters"
        }
    }

    let inputShape: [Int]
    let input: TensorFixture
    let labels: [Int]
    let parameters: [String: TensorFixture]
    let logits: TensorFixture
    let gradients: [String: TensorFixture]
    let sgd: Training

    enum CodingKeys: String, CodingKey {
        case input, labels, parameters, logits, gradients, sgd
        case inputShape = "input_shape"
    }
}

/// Loads one case from `Fixtures/<file>`, next to this source file.
private func loadFixture<Case: Decodable>(_ file: String, case name: String, as type: Case.Type = Case.self) throws -> Case {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent(file)
    let fixture = try JSONDecoder().decode(FixtureFile<Case>.self, from: Data(contentsOf: url))
    return try #require(fixture.cases[name], "no case \(name) in \(file) (has \(fixture.cases.keys.sorted()))")
}

// MARK: - Comparison

/// Expects `actual` to match `expected` in shape and, elementwise, within `tolerance`; on failure
/// names the tensor, the number of bad elements, and the worst one with its index.
private func expectClose(
    _ actual: Tensor<Float>, _ expected: TensorFixture, _ what: String, _ tolerance: Tolerance,
    scale: Double = 1, sourceLocation: SourceLocation = #_sourceLocation
) {
    guard actual.shape == expected.shape else {
        Issue.record("\(what): shape \(actual.shape), expected \(expected.shape)", sourceLocation: sourceLocation)
        return
    }
    var bad = 0
    var worst = (index: 0, difference: 0.0, excess: -Double.infinity)
    for (i, (a, e)) in zip(actual.scalars, expected.data).enumerated() {
        let e = e * scale
        let difference = abs(Double(a) - e)
        let allowed = tolerance.absolute + tolerance.relative * abs(e)
        // A NaN fails (`!(NaN <= x)`) rather than slipping through.
        if !(difference <= allowed) { bad += 1 }
        let excess = difference.isNaN ? .infinity : difference - allowed
        if excess > worst.excess { worst = (i, difference, excess) }
    }
    let i = worst.index
    #expect(bad == 0, """
        \(what): \(bad) of \(actual.count) elements outside \(tolerance); \
        max |Δ| = \(worst.difference) at \(multiIndex(i, shape: actual.shape)) \
        (got \(actual.scalars[i]), expected \(expected.data[i] * scale))
        """, sourceLocation: sourceLocation)
}

/// `(n, c, h, w)`-style index of flat offset `offset`.
private func multiIndex(_ offset: Int, shape: [Int]) -> String {
    var rest = offset
    var index: [Int] = []
    for extent in shape.reversed() {
        index.append(rest % max(extent, 1))
        rest /= max(extent, 1)
    }
    return "[" + index.reversed().map(String.init).joined(separator: ", ") + "]"
}

/// `|actual − expected| ≤ tolerance`, with both numbers in the message.
private func expectClose(
    _ actual: Double, _ expected: Double, _ what: String, _ tolerance: Tolerance,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    let difference = abs(actual - expected)
    #expect(difference <= tolerance.absolute + tolerance.relative * abs(expected),
            "\(what): got \(actual), expected \(expected), |Δ| = \(difference), allowed \(tolerance)",
            sourceLocation: sourceLocation)
}

// MARK: - Layers

/// Runs a layer forward and backward on a fixture and checks the output and every gradient.
///
/// Backward runs twice, reusing the input-gradient buffer: the input gradient must be
/// *overwritten* (the same values again) while parameter gradients *accumulate* (twice the
/// values), per the `Layer` contract.
private func checkLayer(_ layer: any Layer<Float>, against c: LayerCase, name: String, sourceLocation: SourceLocation = #_sourceLocation) {
    let x = c.input.tensor
    var y = Tensor<Float>(shape: [0])
    layer.forward(x, into: &y, context: .inference)
    expectClose(y, c.output, "\(name) output", .tensor, sourceLocation: sourceLocation)

    let expectedParameterGradients = [c.weightGradient, c.biasGradient].compactMap { $0 }
    #expect(layer.parameters.count == expectedParameterGradients.count,
            "\(name): \(layer.parameters.count) parameters, fixture has \(expectedParameterGradients.count)",
            sourceLocation: sourceLocation)
    var dx: Tensor<Float>? = Tensor<Float>(shape: [0])
    for pass in 1...2 {
        layer.backward(input: x, output: y, outputGradient: c.outputGradient.tensor, inputGradient: &dx, context: .training())
        let label = pass == 1 ? "" : " after a second backward"
        if let dx {
            expectClose(dx, c.inputGradient, "\(name) input gradient\(label)", .tensor, sourceLocation: sourceLocation)
        } else {
            Issue.record("\(name): backward left the input gradient nil", sourceLocation: sourceLocation)
        }
        for (p, expected) in zip(layer.parameters, expectedParameterGradients) {
            expectClose(p.gradient, expected, "\(name) \(p.name) gradient\(label)", .tensor,
                        scale: Double(pass), sourceLocation: sourceLocation)
        }
    }
}

@Suite("PyTorch reference values")
struct ReferenceTests {
    @Test("Conv2D", arguments: ["k3_pad1", "k5_pad2", "k3_stride2_7x7", "k1"])
    func conv2D(caseName: String) throws {
        let c = try loadFixture("conv2d.json", case: caseName, as: LayerCase.self)
        var generator = SeededGenerator(seed: 0)
        let layer = Conv2D<Float>(
            inputChannels: try #require(c.inputChannels), outputChannels: try #require(c.outputChannels),
            kernelSize: try #require(c.kernelSize), stride: try #require(c.stride), padding: try #require(c.padding),
            using: &generator)
        layer.weight.value = try #require(c.weight).tensor
        layer.bias.value = try #require(c.bias).tensor
        checkLayer(layer, against: c, name: "Conv2D \(caseName)")
    }

    @Test("Dense")
    func dense() throws {
        let c = try loadFixture("dense.json", case: "n3_in7_out5", as: LayerCase.self)
        var generator = SeededGenerator(seed: 0)
        let layer = Dense<Float>(inputSize: try #require(c.inputSize), outputSize: try #require(c.outputSize), using: &generator)
        layer.weight.value = try #require(c.weight).tensor
        layer.bias.value = try #require(c.bias).tensor
        checkLayer(layer, against: c, name: "Dense")
    }

    @Test("ReLU")
    func relu() throws {
        let c = try loadFixture("relu.json", case: "n2_c3_4x5", as: LayerCase.self)
        checkLayer(ReLU<Float>(), against: c, name: "ReLU")
    }

    @Test("MaxPool2D", arguments: ["size2_stride2_4x6", "size3_stride2_7x7"])
    func maxPool(caseName: String) throws {
        let c = try loadFixture("maxpool2d.json", case: caseName, as: LayerCase.self)
        let layer = MaxPool2D<Float>(size: try #require(c.size), stride: try #require(c.stride))
        checkLayer(layer, against: c, name: "MaxPool2D \(caseName)")
    }

    @Test("SoftmaxCrossEntropy (ordinary and ±1000 logits)", arguments: ["n4_k10", "n4_k10_large"])
    func softmaxCrossEntropy(caseName: String) throws {
        let c = try loadFixture("softmax_cross_entropy.json", case: caseName, as: SoftmaxCase.self)
        var gradient: Tensor<Float>? = Tensor<Float>(shape: [0])
        let (loss, correct) = SoftmaxCrossEntropy.evaluate(logits: c.logits.tensor, labels: c.labels, gradient: &gradient)
        expectClose(loss, c.loss, "\(caseName) loss", .loss)
        #expect(correct == c.correct, "\(caseName): \(correct) correct, expected \(c.correct)")
        let g = try #require(gradient)
        expectClose(g, c.logitsGradient, "\(caseName) logits gradient", .tensor)
    }

    // MARK: Whole network

    /// conv 5x5 pad 2 (1→4) → ReLU → max-pool 2 → conv 3x3 pad 1 (4→6) → ReLU → max-pool 2 →
    /// flatten → dense 54→10, with the fixture's parameters (names as torch's `nn.Network<Float>`).
    private func makeNetwork(_ c: NetworkCase) throws -> Network<Float> {
        var generator = SeededGenerator(seed: 0)
        let network = try Network<Float>(inputShape: c.inputShape, layers: [
            Conv2D<Float>(inputChannels: 1, outputChannels: 4, kernelSize: 5, padding: 2, using: &generator),
            ReLU<Float>(),
            MaxPool2D<Float>(size: 2, stride: 2),
            Conv2D<Float>(inputChannels: 4, outputChannels: 6, kernelSize: 3, padding: 1, using: &generator),
            ReLU<Float>(),
            MaxPool2D<Float>(size: 2, stride: 2),
            Flatten<Float>(),
            Dense<Float>(inputSize: 54, outputSize: 10, using: &generator),
        ])
        let names = network.namedParameters.map(\.name)
        #expect(names.sorted() == c.parameters.keys.sorted(), "parameter names \(names) vs fixture \(c.parameters.keys.sorted())")
        for (name, parameter) in network.namedParameters {
            let value = try #require(c.parameters[name], "fixture lacks \(name)")
            #expect(parameter.value.shape == value.shape, "\(name): shape \(parameter.value.shape) vs fixture \(value.shape)")
            parameter.value = value.tensor
        }
        return network
    }

    @Test("Small CNN: logits, loss and every parameter gradient")
    func networkGradients() throws {
        let c = try loadFixture("network.json", case: "small_cnn", as: NetworkCase.self)
        let network = try makeNetwork(c)
        let logits = network.forward(c.input.tensor)
        expectClose(logits, c.logits, "network logits", .tensor)
        var gradient: Tensor<Float>? = Tensor<Float>(shape: [0])
        let (loss, _) = SoftmaxCrossEntropy.evaluate(logits: logits, labels: c.labels, gradient: &gradient)
        expectClose(loss, c.sgd.losses[0], "network loss", .loss)
        network.zeroGradients()
        network.backward(try #require(gradient))
        for (name, parameter) in network.namedParameters {
            let expected = try #require(c.gradients[name], "fixture lacks the gradient of \(name)")
            expectClose(parameter.gradient, expected, "network ∂L/∂\(name)", .tensor)
        }
    }

    @Test("Small CNN: three steps of the course's momentum SGD")
    func networkTraining() throws {
        let c = try loadFixture("network.json", case: "small_cnn", as: NetworkCase.self)
        let network = try makeNetwork(c)
        let optimizer = SGD<Float>(learningRate: c.sgd.learningRate, momentum: c.sgd.momentum, weightDecay: c.sgd.weightDecay)
        var gradient: Tensor<Float>? = Tensor<Float>(shape: [0])
        var losses: [Double] = []
        for step in 0...c.sgd.steps {
            let logits = network.forward(c.input.tensor)
            let (loss, _) = SoftmaxCrossEntropy.evaluate(logits: logits, labels: c.labels, gradient: &gradient)
            losses.append(loss)
            if step == c.sgd.steps { break }
            network.zeroGradients()
            network.backward(try #require(gradient))
            optimizer.step(network.parameters)
        }
        try #require(losses.count == c.sgd.losses.count)
        for (step, (actual, expected)) in zip(losses, c.sgd.losses).enumerated() {
            expectClose(actual, expected, "loss after \(step) SGD step(s)", .loss)
        }
        for (name, parameter) in network.namedParameters {
            let expected = try #require(c.sgd.finalParameters[name], "fixture lacks the final \(name)")
            expectClose(parameter.value, expected, "\(name) after \(c.sgd.steps) SGD steps", .tensor)
        }
    }
}
