import Backprop
import Foundation
import Testing

// BatchNorm, Dropout, GELU, the pools, Scale and dirac initialisation checked against PyTorch.
//
// The fixtures `Fixtures/layers_*.json` are written by `Scripts/make_reference_layers.py` (its
// header records the command, seed and versions): float32 inputs stored exactly, PyTorch's
// results computed in float64 and rounded once to float32, so the tolerance
// (`CatalogTolerance.tensor`: 1e-5 + 1e-4·|expected|) covers Backprop's own float32 arithmetic.
// Every case checks the output and every gradient for a random upstream gradient; BatchNorm also
// its running statistics and step count after each training step, and an eval pass after them.

/// One layer pass of a fixture: `sum(output · output_gradient)`'s gradients.
private struct PassCase: Decodable {
    let input: CatalogTensor
    let output: CatalogTensor
    let outputGradient: CatalogTensor
    let inputGradient: CatalogTensor
    let weightGradient: CatalogTensor?
    let biasGradient: CatalogTensor?
    // BatchNorm training steps
    let runningMean: CatalogTensor?
    let runningVar: CatalogTensor?
    let numBatchesTracked: Int?
    // Dropout
    let p: Double?
    let spatial: Bool?
    let keep: [Bool]?
    // GELU
    let approximate: String?
    // AvgPool2D
    let size: Int?
    let stride: Int?
    // Scale
    let factor: Double?

    enum CodingKeys: String, CodingKey {
        case input, output, p, spatial, keep, approximate, size, stride, factor
        case outputGradient = "output_gradient", inputGradient = "input_gradient"
        case weightGradient = "weight_gradient", biasGradient = "bias_gradient"
        case runningMean = "running_mean", runningVar = "running_var", numBatchesTracked = "num_batches_tracked"
    }
}

private struct BatchNormCase: Decodable {
    let channels: Int
    let dimensions: Int
    let affine: String
    let momentum: Double
    let eps: Double
    let weight: CatalogTensor?
    let bias: CatalogTensor?
    let initialRunningMean: CatalogTensor
    let initialRunningVar: CatalogTensor
    let trainingSteps: [PassCase]
    let eval: PassCase

    enum CodingKeys: String, CodingKey {
        case channels, dimensions, affine, momentum, eps, weight, bias, eval
        case initialRunningMean = "initial_running_mean", initialRunningVar = "initial_running_var"
        case trainingSteps = "training_steps"
    }
}

private struct DiracCase: Decodable {
    let outputChannels: Int
    let inputChannels: Int
    let kernelSize: Int
    let padding: Int
    let weight: CatalogTensor
    let input: CatalogTensor
    let output: CatalogTensor

    enum CodingKeys: String, CodingKey {
        case padding, weight, input, output
        case outputChannels = "output_channels", inputChannels = "input_channels", kernelSize = "kernel_size"
    }
}

/// Runs `layer` forward and backward in `context` on a fixture pass and checks the output and
/// every gradient. Backward runs twice: the input gradient must be overwritten (the same values
/// again), parameter gradients accumulate (twice the values), per the `Layer` contract.
private func checkPass(_ layer: any Layer<Float>, _ c: PassCase, context: StepContext, _ name: String,
                      sourceLocation: SourceLocation = #_sourceLocation) {
    let x = c.input.float
    var y = Tensor<Float>(shape: [0])
    layer.forward(x, into: &y, context: context)
    expectNear(y, c.output, "\(name) output", sourceLocation: sourceLocation)
    for p in layer.parameters { p.gradient.zero() }
    let expected = [c.weightGradient, c.biasGradient].compactMap { $0 }
    #expect(layer.parameters.count == expected.count, "\(name): \(layer.parameters.count) parameters, fixture has \(expected.count)",
            sourceLocation: sourceLocation)
    var dx: Tensor<Float>? = Tensor<Float>(shape: [0])
    for pass in 1...2 {
        layer.backward(input: x, output: y, outputGradient: c.outputGradient.float, inputGradient: &dx, context: context)
        let label = pass == 1 ? "" : " after a second backward"
        expectNear(dx ?? Tensor(shape: [0]), c.inputGradient, "\(name) input gradient\(label)", sourceLocation: sourceLocation)
        for (p, e) in zip(layer.parameters, expected) {
            expectNear(p.gradient, e, "\(name) \(p.name) gradient\(label)", scale: Double(pass), sourceLocation: sourceLocation)
        }
    }
}

@Suite("Layer catalog: PyTorch reference values")
struct LayerCatalogReferenceTests {
    @Test("BatchNorm: two training steps, running statistics, then eval",
          arguments: ["bn2d_both", "bn2d_weight", "bn2d_bias", "bn2d_none", "bn2d_airbench", "bn1d_both", "bn2d_eval_given_running"])
    func batchNorm(caseName: String) throws {
        let c = try loadCatalogFixture("layers_batchnorm.json", case: caseName, as: BatchNormCase.self)
        let affine = try #require(BatchNormAffine(rawValue: c.affine))
        let layer = BatchNorm<Float>(channels: c.channels, dimensions: c.dimensions, momentum: c.momentum, epsilon: c.eps, affine: affine)
        if let weight = c.weight { layer.weight.value = weight.float }
        if let bias = c.bias { layer.bias.value = bias.float }
        layer.runningMean.value = c.initialRunningMean.float
        layer.runningVariance.value = c.initialRunningVar.float
        #expect(layer.weight.isTrainable == (affine == .both || affine == .weightOnly))
        #expect(layer.bias.isTrainable == (affine == .both || affine == .biasOnly))
        for (index, step) in c.trainingSteps.enumerated() {
            let name = "\(caseName) training step \(index + 1)"
            checkPass(layer, step, context: .training(seed: 1, step: index + 1), name)
            expectNear(layer.runningMean.value, try #require(step.runningMean), "\(name) running_mean")
            expectNear(layer.runningVariance.value, try #require(step.runningVar), "\(name) running_var")
            let tracked = try #require(step.numBatchesTracked)
            #expect(layer.batchesTracked.value.scalars == [Float(tracked)], "\(name) num_batches_tracked")
        }
        let runningMean = layer.runningMean.value, runningVariance = layer.runningVariance.value
        checkPass(layer, c.eval, context: .inference, "\(caseName) eval")
        #expect(layer.runningMean.value == runningMean && layer.runningVariance.value == runningVariance,
                "an eval pass must not move the running statistics")
        #expect(layer.batchesTracked.value.scalars == [Float(c.trainingSteps.count)])
    }

    @Test("Dropout and Dropout2d with PyTorch's formula for a given mask", arguments: ["dropout_p0.3", "dropout2d_p0.4"])
    func dropout(caseName: String) throws {
        let c = try loadCatalogFixture("layers_dropout.json", case: caseName, as: PassCase.self)
        let keep: [Bool] = try #require(c.keep)
        let layer = Dropout<Float>(probability: try #require(c.p), spatial: c.spatial == true, salt: 0)
        layer.presetMask = keep
        checkPass(layer, c, context: .training(seed: 1, step: 1), caseName)
    }

    @Test("GELU", arguments: ["exact", "tanh"])
    func gelu(caseName: String) throws {
        let c = try loadCatalogFixture("layers_gelu.json", case: caseName, as: PassCase.self)
        let name = try #require(c.approximate)
        let approximation = try #require(GELUApproximation(rawValue: name))
        checkPass(GELU<Float>(approximation: approximation), c, context: .training(), "GELU \(caseName)")
    }

    /// The vector `Float` kernel (rational erf, polynomial exp) against the `Double` path (the C
    /// library's erf, exp, tanh) on a grid of 24 577 points over [−12, 12] and a few extremes.
    /// Measured (x86-64): values within 9.2e-7·max(1, |y|) (the erf approximation's 3e-7 near
    /// erf = −1, times x/2), slopes within 2.2e-7 — PyTorch's float GELU itself carries ~6e-8
    /// from rounding 1 + erf. The exact and tanh forms differ by up to 1e-3, far outside.
    @Test("GELU's Float kernel matches the Double reference", arguments: GELUApproximation.allCases)
    func geluKernel(approximation: GELUApproximation) {
        let grid: [Float] = stride(from: -12.0, through: 12.0, by: 1.0 / 1024).map { Float($0) }
            + [-1e4, -100, -88, -1e-30, 0, 1e-30, 88, 100, 1e4]
        let x = Tensor<Float>(shape: [grid.count], scalars: grid), reference = x.converted(to: Double.self)
        let fast = GELU<Float>(approximation: approximation), plain = GELU<Double>(approximation: approximation)
        var y = Tensor<Float>(shape: [0]), yReference = Tensor<Double>(shape: [0])
        fast.forward(x, into: &y, context: .inference)
        plain.forward(reference, into: &yReference, context: .inference)
        let ones = Tensor<Double>(shape: [grid.count], repeating: 1)
        var slope: Tensor<Float>? = Tensor(shape: [0]), slopeReference: Tensor<Double>? = Tensor(shape: [0])
        fast.backward(input: x, output: y, outputGradient: ones.converted(), inputGradient: &slope, context: .inference)
        plain.backward(input: reference, output: yReference, outputGradient: ones, inputGradient: &slopeReference, context: .inference)
        for i in grid.indices {
            let (value, expected) = (Double(y.scalars[i]), yReference.scalars[i])
            #expect(abs(value - expected) <= 1.5e-6 * max(1, abs(expected)), "gelu(\(grid[i])) = \(value), reference \(expected)")
            let (d, dExpected) = (Double(slope!.scalars[i]), slopeReference!.scalars[i])
            #expect(abs(d - dExpected) <= 5e-7, "gelu′(\(grid[i])) = \(d), reference \(dExpected)")
        }
    }

    @Test("AvgPool2D", arguments: ["avgpool_size2_stride2_4x6", "avgpool_size3_stride2_7x7"])
    func avgPool(caseName: String) throws {
        let c = try loadCatalogFixture("layers_pooling.json", case: caseName, as: PassCase.self)
        checkPass(AvgPool2D<Float>(size: try #require(c.size), stride: try #require(c.stride)), c, context: .training(), caseName)
    }

    @Test("GlobalAvgPool2D = AdaptiveAvgPool2d(1) + Flatten; GlobalMaxPool2D = AdaptiveMaxPool2d(1) + Flatten")
    func globalPools() throws {
        checkPass(GlobalAvgPool2D<Float>(), try loadCatalogFixture("layers_pooling.json", case: "global_avgpool_4x5"),
                  context: .training(), "GlobalAvgPool2D")
        checkPass(GlobalMaxPool2D<Float>(), try loadCatalogFixture("layers_pooling.json", case: "global_maxpool_4x5"),
                  context: .training(), "GlobalMaxPool2D")
    }

    @Test("Scale by 1/9")
    func scale() throws {
        let c = try loadCatalogFixture("layers_scale.json", case: "one_ninth", as: PassCase.self)
        checkPass(Scale<Float>(factor: try #require(c.factor)), c, context: .training(), "Scale")
    }

    @Test("Conv2D dirac initialisation = torch.nn.init.dirac_", arguments: ["k3_4from3", "k3_2from3", "k5_3from3", "k1_3from2"])
    func dirac(caseName: String) throws {
        let c = try loadCatalogFixture("layers_dirac.json", case: caseName, as: DiracCase.self)
        var generator = SeededGenerator(seed: 0)
        let layer = Conv2D<Float>(inputChannels: c.inputChannels, outputChannels: c.outputChannels, kernelSize: c.kernelSize,
                                  padding: c.padding, initialization: .dirac, using: &generator)
        #expect(layer.weight.value.shape == c.weight.shape)
        #expect(layer.weight.value.scalars == c.weight.data.map { Float($0) }, "dirac weights differ from torch's")
        var y = Tensor<Float>(shape: [0])
        layer.forward(c.input.float, into: &y, context: .inference)
        expectNear(y, c.output, "\(caseName) output")
    }
}
