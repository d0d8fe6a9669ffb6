import Backprop
import Foundation
import Testing

// Central-difference gradient checks (Double) of BatchNorm, Dropout, GELU, the pools, Scale and
// Identity — input and every parameter — and proof that each check can fail: a deliberately
// wrong backward (the classic mistakes) must be rejected.

/// A BatchNorm in `Double` with non-trivial γ, β and running statistics (so a swapped or
/// missing term shows).
private func batchNorm(channels: Int, dimensions: Int, affine: BatchNormAffine = .both, seed: UInt64 = 11) -> BatchNorm<Double> {
    let layer = BatchNorm<Double>(channels: channels, dimensions: dimensions, momentum: 0.1, epsilon: 1e-5, affine: affine)
    layer.weight.value = catalogRandom([channels], seed: seed, scale: 0.5, shift: 1)
    layer.bias.value = catalogRandom([channels], seed: seed + 1, scale: 0.5)
    layer.runningMean.value = catalogRandom([channels], seed: seed + 2, scale: 0.5)
    layer.runningVariance.value.scalars = catalogRandom([channels], seed: seed + 3, scale: 0.5).scalars.map { abs($0) + 0.5 }
    return layer
}

/// Distinct values at least 0.05 apart, so no step changes a max-pool winner.
private func distinctValues(_ shape: [Int], seed: UInt64) -> Tensor<Double> {
    var g = SeededGenerator(seed: seed)
    let count = shape.reduce(1, *)
    return Tensor(shape: shape, scalars: g.permutation(count).map { (Double($0) - Double(count) / 2) * 0.05 })
}

private let training = StepContext.training(seed: 5, step: 3)

@Suite("Layer catalog: gradient checks (central differences)")
struct LayerCatalogGradientTests {
    @Test("BatchNorm2d, training (batch statistics)", arguments: BatchNormAffine.allCases)
    func batchNorm2dTraining(affine: BatchNormAffine) {
        let layer = batchNorm(channels: 3, dimensions: 2, affine: affine)
        let x = catalogRandom([4, 3, 3, 4], seed: 21, scale: 1.5, shift: 0.7)
        let results = catalogCheck(layer, input: x, context: training)
        #expect(results.count == (affine == .neither ? 1 : 3))
        expectCatalogPasses(results, "BatchNorm2d \(affine) training")
    }

    @Test("BatchNorm1d, training")
    func batchNorm1dTraining() {
        let layer = batchNorm(channels: 5, dimensions: 1)
        expectCatalogPasses(catalogCheck(layer, input: catalogRandom([6, 5], seed: 22, scale: 2, shift: -1), context: training),
                            "BatchNorm1d training")
    }

    @Test("BatchNorm2d and BatchNorm1d, inference (running statistics)")
    func batchNormInference() {
        expectCatalogPasses(catalogCheck(batchNorm(channels: 3, dimensions: 2), input: catalogRandom([2, 3, 3, 4], seed: 23),
                                         context: .inference), "BatchNorm2d inference")
        expectCatalogPasses(catalogCheck(batchNorm(channels: 5, dimensions: 1), input: catalogRandom([3, 5], seed: 24),
                                         context: .inference), "BatchNorm1d inference")
    }

    @Test("Dropout and Dropout2d, training (a fixed mask per context)")
    func dropout() {
        expectCatalogPasses(catalogCheck(Dropout<Double>(probability: 0.3, salt: 7), input: catalogRandom([4, 30], seed: 25),
                                         context: training), "Dropout")
        expectCatalogPasses(catalogCheck(Dropout<Double>(probability: 0.5, spatial: true, salt: 8),
                                         input: catalogRandom([3, 4, 3, 3], seed: 26), context: training), "Dropout2d")
        expectCatalogPasses(catalogCheck(Dropout<Double>(probability: 0.5, salt: 9), input: catalogRandom([2, 7], seed: 27),
                                         context: .inference), "Dropout inference")
    }

    @Test("GELU, exact and tanh", arguments: GELUApproximation.allCases)
    func gelu(approximation: GELUApproximation) {
        // GELU is smooth: a larger step keeps rounding (∝ 1/h) well below the tolerance where the
        // derivative is near 0 (around x = −0.75).
        expectCatalogPasses(catalogCheck(GELU<Double>(approximation: approximation), input: catalogRandom([2, 3, 4, 5], seed: 28, scale: 2),
                                         context: training, step: 1e-3), "GELU \(approximation)")
    }

    @Test("AvgPool2D", arguments: [(2, 2), (3, 2), (2, 1)])
    func avgPool(size: Int, stride: Int) {
        expectCatalogPasses(catalogCheck(AvgPool2D<Double>(size: size, stride: stride), input: catalogRandom([2, 2, 5, 6], seed: 29),
                                         context: training), "AvgPool2D \(size)/\(stride)")
    }

    @Test("GlobalAvgPool2D and GlobalMaxPool2D")
    func globalPools() {
        expectCatalogPasses(catalogCheck(GlobalAvgPool2D<Double>(), input: catalogRandom([2, 3, 4, 5], seed: 30), context: training),
                            "GlobalAvgPool2D")
        expectCatalogPasses(catalogCheck(GlobalMaxPool2D<Double>(), input: distinctValues([2, 3, 4, 5], seed: 31), context: training),
                            "GlobalMaxPool2D")
    }

    @Test("Scale and Identity")
    func scaleAndIdentity() {
        expectCatalogPasses(catalogCheck(Scale<Double>(factor: 1.0 / 9), input: catalogRandom([3, 10], seed: 32), context: training), "Scale")
        expectCatalogPasses(catalogCheck(Scale<Double>(factor: -2.5), input: catalogRandom([2, 2, 3, 3], seed: 33), context: training), "Scale")
        expectCatalogPasses(catalogCheck(Identity<Double>(), input: catalogRandom([3, 4], seed: 34), context: training), "Identity")
    }

    /// The layers together in one network, checked through the loss: BatchNorm couples the
    /// batch, so `Network` runs it whole; dropout masks are fixed by the context.
    @Test("A network of the new layers: every parameter through the loss")
    func network() throws {
        let json: [String: Any] = ["input": [2, 6, 6], "layers": [
            ["type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1, "bias": false],
            ["type": "batchnorm2d", "affine": "bias"],
            ["type": "gelu"],
            ["type": "dropout2d", "p": 0.25],
            ["type": "avgpool2d", "size": 2],
            // He weights, not dirac: a dirac filter on a plane that dropout2d zeroed gives a constant
            // plane, whose global maximum is an exact tie (a kink the check cannot step around).
            ["type": "conv2d", "out_channels": 5, "kernel_size": 3, "padding": 1],
            ["type": "batchnorm2d", "momentum": 0.4, "eps": 1e-12],
            ["type": "gelu", "approximate": "tanh"],
            ["type": "global_maxpool2d"],
            ["type": "dense", "out_features": 6],
            ["type": "batchnorm1d"],
            ["type": "dropout", "p": 0.2],
            ["type": "dense", "out_features": 3],
            ["type": "scale", "factor": 0.5],
            ["type": "softmaxloss"],
        ]]
        var generator = SeededGenerator(seed: 40)
        let network = try NetworkSpec(jsonObject: json).makeNetwork(Double.self, using: &generator)
        #expect(network.couplesExamples)
        let x = catalogRandom([4, 2, 6, 6], seed: 41)
        var checkGenerator = SeededGenerator(seed: 42)
        let results = GradientCheck.check(network: network, inputs: x, labels: [0, 2, 1, 2], context: .training(seed: 9, step: 4),
                                          entriesPerTensor: 30, step: 1e-4, using: &checkGenerator)
        #expect(results.count == network.namedParameters.count)
        expectCatalogPasses(results, "network")
    }
}

@Suite("Layer catalog: the checks reject wrong gradients")
struct LayerCatalogWrongGradientTests {
    private func expectFails(_ results: [GradientCheck.Result], _ name: String, above bound: Double = 0.1,
                             sourceLocation: SourceLocation = #_sourceLocation) {
        let result = results.first { $0.name == name }
        #expect(result != nil && result!.maxRelativeError > bound, "\(result.map(String.init(describing:)) ?? name) should fail",
                sourceLocation: sourceLocation)
    }

    /// BatchNorm's training backward without the `−mean(∂y)` term (what differentiating through
    /// `x̂` alone, forgetting that μ depends on x, gives).
    @Test func batchNormWithoutTheBatchMeanTerm() {
        let layer = batchNorm(channels: 3, dimensions: 2)
        let x = catalogRandom([4, 3, 3, 4], seed: 21, scale: 1.5, shift: 0.7)
        var wrong = catalogAnalytic(layer, input: x, context: training)
        let planeSize = 12
        for c in 0..<3 {
            var meanGradient = 0.0
            for n in 0..<4 { for j in 0..<planeSize { meanGradient += wrong.upstream.scalars[(n * 3 + c) * planeSize + j] } }
            meanGradient /= Double(4 * planeSize)
            let a = layer.weight.value.scalars[c] * layer.savedInverseDeviation[c]
            for n in 0..<4 { for j in 0..<planeSize { wrong.input[(n * 3 + c) * planeSize + j] += a * meanGradient } }
        }
        expectFails(catalogCheck(layer, input: x, context: training, gradients: wrong), "input")
    }

    /// BatchNorm in training back-propagated as the inference-mode affine map (batch statistics
    /// treated as constants).
    @Test func batchNormTrainingBackwardAsAnAffineMap() {
        let layer = batchNorm(channels: 5, dimensions: 1)
        let x = catalogRandom([6, 5], seed: 22, scale: 2, shift: -1)
        var wrong = catalogAnalytic(layer, input: x, context: training)
        for i in 0..<wrong.input.count {
            let c = i % 5
            wrong.input[i] = wrong.upstream.scalars[i] * layer.weight.value.scalars[c] * layer.savedInverseDeviation[c]
        }
        expectFails(catalogCheck(layer, input: x, context: training, gradients: wrong), "input")
    }

    /// BatchNorm in inference with γ's gradient taken as β's (`Σ∂y` instead of `Σ∂y·x̂`), and
    /// with `∂x` missing the `1/√(running_var + ε)`.
    @Test func batchNormInferenceWrong() {
        let layer = batchNorm(channels: 3, dimensions: 2)
        let x = catalogRandom([2, 3, 3, 4], seed: 23)
        var wrong = catalogAnalytic(layer, input: x, context: .inference)
        wrong.parameters[0] = wrong.parameters[1]
        for i in 0..<wrong.input.count { wrong.input[i] /= layer.savedInverseDeviation[(i / 12) % 3] }
        let results = catalogCheck(layer, input: x, context: .inference, gradients: wrong)
        expectFails(results, "weight")
        expectFails(results, "input")
    }

    /// Dropout without the `1/(1 − p)` rescaling in backward.
    @Test(arguments: [false, true])
    func dropoutWithoutRescaling(spatial: Bool) {
        let layer = Dropout<Double>(probability: 0.3, spatial: spatial, salt: 7)
        let x = spatial ? catalogRandom([3, 4, 3, 3], seed: 26) : catalogRandom([4, 30], seed: 25)
        var wrong = catalogAnalytic(layer, input: x, context: training)
        wrong.input = wrong.input.map { $0 * 0.7 }
        expectFails(catalogCheck(layer, input: x, context: training, gradients: wrong), "input", above: 0.2)
    }

    /// Exact GELU's derivative without its `x·φ(x)` term; the tanh form given the exact derivative.
    @Test func geluWrongDerivatives() {
        let x = catalogRandom([2, 3, 4, 5], seed: 28, scale: 2)
        let exact = GELU<Double>()
        var wrong = catalogAnalytic(exact, input: x, context: training)
        wrong.input = zip(wrong.upstream.scalars, x.scalars).map { g, v in g * 0.5 * (1 + erf(v / 2.0.squareRoot())) }
        expectFails(catalogCheck(exact, input: x, context: training, gradients: wrong), "input")

        let tanhForm = GELU<Double>(approximation: .tanh)
        let exactGradients = catalogAnalytic(exact, input: x, context: training)
        var mixed = catalogAnalytic(tanhForm, input: x, context: training)
        mixed.input = exactGradients.input     // same upstream (same seed): only the derivative differs
        expectFails(catalogCheck(tanhForm, input: x, context: training, gradients: mixed), "input", above: 1e-4)
    }

    /// Average pooling without the `1/size²`.
    @Test func avgPoolWithoutAveraging() {
        let layer = AvgPool2D<Double>(size: 2, stride: 2)
        let x = catalogRandom([2, 2, 4, 6], seed: 29)
        var wrong = catalogAnalytic(layer, input: x, context: training)
        wrong.input = wrong.input.map { $0 * 4 }
        expectFails(catalogCheck(layer, input: x, context: training, gradients: wrong), "input")
    }

    /// Global average pooling without the `1/(H·W)`; global max pooling routed to each plane's
    /// first element instead of its maximum.
    @Test func globalPoolsWrong() {
        let average = GlobalAvgPool2D<Double>()
        let x = catalogRandom([2, 3, 4, 5], seed: 30)
        var wrong = catalogAnalytic(average, input: x, context: training)
        wrong.input = wrong.input.map { $0 * 20 }
        expectFails(catalogCheck(average, input: x, context: training, gradients: wrong), "input")

        let maximum = GlobalMaxPool2D<Double>()
        let distinct = distinctValues([2, 3, 4, 5], seed: 31)
        var misrouted = catalogAnalytic(maximum, input: distinct, context: training)
        misrouted.input = [Double](repeating: 0, count: distinct.count)
        for plane in 0..<6 { misrouted.input[plane * 20] = misrouted.upstream.scalars[plane] }
        expectFails(catalogCheck(maximum, input: distinct, context: training, gradients: misrouted), "input")
    }

    /// Scale's backward without the factor; Identity's with a flipped sign.
    @Test func scaleAndIdentityWrong() {
        let scale = Scale<Double>(factor: 1.0 / 9)
        let x = catalogRandom([3, 10], seed: 32)
        var wrong = catalogAnalytic(scale, input: x, context: training)
        wrong.input = wrong.upstream.scalars
        expectFails(catalogCheck(scale, input: x, context: training, gradients: wrong), "input")

        let identity = Identity<Double>()
        var flipped = catalogAnalytic(identity, input: x, context: training)
        flipped.input = flipped.input.map { -$0 }
        expectFails(catalogCheck(identity, input: x, context: training, gradients: flipped), "input")
    }
}
