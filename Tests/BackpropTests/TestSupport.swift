import Backprop

/// A tensor of `N(0, 1)` samples (`scale`-scaled) from a fixed seed.
func randomTensor<Scalar: NetworkScalar>(_ shape: [Int], seed: UInt64, scale: Scalar = 1) -> Tensor<Scalar> {
    var g = SeededGenerator(seed: seed)
    return .randomNormal(shape: shape, standardDeviation: scale, using: &g)
}

/// `Σ a ⊙ b` in `Double`.
func dot<Scalar: NetworkScalar>(_ a: [Scalar], _ b: [Scalar]) -> Double {
    zip(a, b).reduce(0) { $0 + Double($1.0) * Double($1.1) }
}

/// What one layer's backward pass says, for the objective `f = Σ layer(x) ⊙ R`.
struct LayerGradients {
    var upstream: Tensor<Double>
    var input: [Double]
    var parameters: [[Double]]
}

/// Runs forward and backward once with a fixed random upstream gradient `R`.
func analyticGradients(_ layer: any Layer<Double>, input x: Tensor<Double>, seed: UInt64 = 99) -> LayerGradients {
    var y = Tensor<Double>(shape: [])
    layer.forward(x, into: &y, context: .inference)
    let r: Tensor<Double> = randomTensor(y.shape, seed: seed)
    for p in layer.parameters { p.gradient.zero() }
    var dx: Tensor<Double>? = Tensor(shape: [])
    layer.backward(input: x, output: y, outputGradient: r, inputGradient: &dx, context: .training())
    return LayerGradients(upstream: r, input: dx!.scalars, parameters: layer.parameters.map { $0.gradient.scalars })
}

/// Checks `gradients` (normally `analyticGradients(layer, …)`, possibly corrupted on purpose)
/// against central differences of `f = Σ layer(x) ⊙ R`: the input first, then each parameter.
func gradientCheck(_ layer: any Layer<Double>, input x: Tensor<Double>, gradients: LayerGradients, step: Double = 3e-5) -> [GradientCheck.Result] {
    func objective(_ input: Tensor<Double>) -> Double {
        var out = Tensor<Double>(shape: [])
        layer.forward(input, into: &out, context: .inference)
        return dot(out.scalars, gradients.upstream.scalars)
    }
    var xs = x.scalars
    var results = [GradientCheck.compare(name: "input", x: &xs, analytic: gradients.input, step: step) {
        objective(Tensor(shape: x.shape, scalars: $0))
    }]
    for (p, analytic) in zip(layer.parameters, gradients.parameters) {
        var values = p.value.scalars
        results.append(GradientCheck.compare(name: p.name, x: &values, analytic: analytic, step: step) { v in
            p.value.scalars = v
            return objective(x)
        })
        p.value.scalars = values
    }
    return results
}

/// Gradient-checks a layer's own backward pass.
func gradientCheck(_ layer: any Layer<Double>, input x: Tensor<Double>, step: Double = 3e-5) -> [GradientCheck.Result] {
    gradientCheck(layer, input: x, gradients: analyticGradients(layer, input: x), step: step)
}

/// The bound on the maximum relative error of a gradient check in `Double` (see `GradientCheck`).
let gradientTolerance = 1e-6
