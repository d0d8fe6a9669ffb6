import Backprop
import Testing

@Suite("Per-layer gradient checks (central differences)")
struct LayerGradientTests {
    private func expectPasses(_ results: [GradientCheck.Result], _ comment: Comment? = nil) {
        for r in results {
            #expect(r.maxRelativeError < gradientTolerance, "\(r)")
        }
    }

    @Test func dense() {
        var g = SeededGenerator(seed: 1)
        let layer = Dense<Double>(inputSize: 7, outputSize: 5, using: &g)
        expectPasses(gradientCheck(layer, input: randomTensor([3, 7], seed: 2)))
    }

    @Test(arguments: [(3, 1, 1, 5, 6), (5, 1, 2, 6, 6), (3, 2, 0, 7, 7), (1, 1, 0, 4, 5), (3, 2, 1, 6, 5)])
    func conv2D(kernel: Int, stride: Int, padding: Int, height: Int, width: Int) {
        var g = SeededGenerator(seed: 3)
        let layer = Conv2D<Double>(inputChannels: 3, outputChannels: 4, kernelSize: kernel, stride: stride, padding: padding, using: &g)
        layer.bias.value = randomTensor([4], seed: 5)
        expectPasses(gradientCheck(layer, input: randomTensor([2, 3, height, width], seed: 4)))
    }

    @Test func relu() {
        // Keep inputs away from the kink at 0 (the check would step around it, but need not).
        var x: Tensor<Double> = randomTensor([2, 3, 4, 4], seed: 6)
        x.scalars = x.scalars.map { $0 >= 0 ? $0 + 0.1 : $0 - 0.1 }
        expectPasses(gradientCheck(ReLU<Double>(), input: x))
    }

    @Test(arguments: [(2, 2), (3, 2), (2, 1)])
    func maxPool(size: Int, stride: Int) {
        // Distinct values at least 0.05 apart, so no step changes a window's winner.
        var g = SeededGenerator(seed: 7)
        let count = 2 * 2 * 5 * 6
        let values = g.permutation(count).map { Double($0) * 0.05 }
        expectPasses(gradientCheck(MaxPool2D<Double>(size: size, stride: stride), input: Tensor<Double>(shape: [2, 2, 5, 6], scalars: values)))
    }

    @Test func flatten() {
        expectPasses(gradientCheck(Flatten<Double>(), input: randomTensor([2, 3, 2, 2], seed: 8)))
    }

    @Test func softmaxCrossEntropy() {
        var logits: Tensor<Double> = randomTensor([4, 10], seed: 9, scale: 3)
        let labels = [3, 0, 9, 3]
        var gradient: Tensor<Double>? = Tensor(shape: [])
        _ = SoftmaxCrossEntropy.evaluate(logits: logits, labels: labels, gradient: &gradient)
        var none: Tensor<Double>? = nil
        // The loss is smooth everywhere, so a larger step keeps rounding (which grows as 1/h) below 1e-10.
        let result = GradientCheck.compare(name: "logits", x: &logits.scalars, analytic: gradient!.scalars, step: 1e-3) {
            SoftmaxCrossEntropy.evaluate(logits: Tensor<Double>(shape: [4, 10], scalars: $0), labels: labels, gradient: &none).loss
        }
        #expect(result.maxRelativeError < gradientTolerance, "\(result)")
    }
}

@Suite("The checker rejects wrong gradients")
struct WrongGradientTests {
    @Test func transposedWeightGradient() {
        var g = SeededGenerator(seed: 1)
        let layer = Dense<Double>(inputSize: 7, outputSize: 5, using: &g)
        let x: Tensor<Double> = randomTensor([3, 7], seed: 2)
        var wrong = analyticGradients(layer, input: x)
        // Store ∂L/∂W as [in, out] (the Xᵀ·∂L/∂Y mistake) and read it back as [out, in].
        let dw = wrong.parameters[0]
        wrong.parameters[0] = (0..<35).map { i in dw[(i % 7) * 5 + i / 7] }
        let results = gradientCheck(layer, input: x, gradients: wrong)
        #expect(results[1].maxRelativeError > 0.5, "\(results[1])")
    }

    @Test func missingOneOverN() {
        var logits: Tensor<Double> = randomTensor([4, 10], seed: 9, scale: 3)
        let labels = [3, 0, 9, 3]
        var gradient: Tensor<Double>? = Tensor(shape: [])
        _ = SoftmaxCrossEntropy.evaluate(logits: logits, labels: labels, gradient: &gradient)
        let wrong = gradient!.scalars.map { $0 * 4 }
        var none: Tensor<Double>? = nil
        let result = GradientCheck.compare(name: "logits", x: &logits.scalars, analytic: wrong, step: 3e-5) {
            SoftmaxCrossEntropy.evaluate(logits: Tensor<Double>(shape: [4, 10], scalars: $0), labels: labels, gradient: &none).loss
        }
        #expect(result.maxRelativeError > 0.5, "\(result)")
    }

    @Test func poolingRoutedToTheWrongInput() {
        var g = SeededGenerator(seed: 7)
        let x = Tensor<Double>(shape: [1, 2, 4, 4], scalars: g.permutation(32).map { Double($0) * 0.05 })
        let pool = MaxPool2D<Double>()
        var wrong = analyticGradients(pool, input: x)
        // Route each window's gradient to its top-left input instead of its maximum.
        wrong.input = [Double](repeating: 0, count: 32)
        for plane in 0..<2 { for u in 0..<2 { for v in 0..<2 {
            wrong.input[plane * 16 + u * 8 + v * 2] = wrong.upstream.scalars[plane * 4 + u * 2 + v]
        } } }
        let results = gradientCheck(pool, input: x, gradients: wrong)
        #expect(results[0].maxRelativeError > 0.5, "\(results[0])")
    }

    @Test func doubledBiasGradient() {
        var g = SeededGenerator(seed: 3)
        let layer = Conv2D<Double>(inputChannels: 2, outputChannels: 3, kernelSize: 3, padding: 1, using: &g)
        let x: Tensor<Double> = randomTensor([2, 2, 4, 4], seed: 4)
        var wrong = analyticGradients(layer, input: x)
        wrong.parameters[1] = wrong.parameters[1].map { $0 * 2 }
        let results = gradientCheck(layer, input: x, gradients: wrong)
        #expect(results[2].maxRelativeError > 0.3, "\(results[2])")
    }
}
