/// Central-difference gradient checking.
///
/// For a scalar function `f` of a tensor `x` and its backprop gradient `g`, each checked entry
/// is compared with the numerical derivative `nᵢ = (f(x + h·eᵢ) − f(x − h·eᵢ)) / 2h` by the
/// relative error `|gᵢ − nᵢ| / max(|gᵢ|, |nᵢ|, floor)`.
///
/// ## Precision
/// Run checks on a `Double` network (`NetworkSpec.makeNetwork(Double.self, …)` or
/// `Network.loadState(from:)`): with `h = 1e-4` and a fourth-order difference a correct
/// gradient agrees to about `1e-8` — `O(h⁴)` truncation plus `ulp(f)/h ≈ 1e-11` rounding — and the
/// mistakes the check exists for (a transposed weight gradient, a missing `1/N`, a wrong pooling
/// route) are off by order 1. In `Float`, rounding alone is `~1e-7/h`, which forces `h` so large
/// that ReLU and max-pool kinks are crossed; that is why Backprop's layers are generic over their
/// scalar type.
public enum GradientCheck {
    /// The worst disagreement found for one tensor.
    public struct Result: Sendable, CustomStringConvertible {
        /// The checked tensor's name.
        public var name: String
        /// `max_i |g_i − n_i| / max(|g_i|, |n_i|, floor)` over the checked entries.
        public var maxRelativeError: Double
        /// `‖g − n‖ / max(‖g‖, ‖n‖)` over the checked entries.
        public var normRelativeError: Double
        /// Entries compared.
        public var checked: Int
        /// Entries skipped because kinks lay on both sides within the stencil.
        public var skipped: Int

        public var description: String {
            "\(name): max relative error \(maxRelativeError), norm relative error \(normRelativeError) over \(checked) entries (\(skipped) skipped at kinks)"
        }
    }

    /// Compares `analytic` with numerical derivatives of `f` around `x`.
    ///
    /// Each derivative is a fourth-order finite difference, taken at steps `h` and `h/2`. Where
    /// `f` is smooth the two agree to ~1e-10. Where a ReLU or max-pool kink lies inside the
    /// stencil they do not, and the check moves to a one-sided stencil on the other side of the
    /// point (`x … x−4h`, then `x … x+4h`): the gradient at `x` belongs to the piece `x` lies on.
    /// Failing all three, the same is tried with `h/10` and `h/100`; an entry with kinks on both
    /// sides even then is skipped and counted.
    /// ```
    /// central: (8(f₁ − f₋₁) − (f₂ − f₋₂)) / 12h
    /// left:    (25f₀ − 48f₋₁ + 36f₋₂ − 16f₋₃ + 3f₋₄) / 12h        (fₖ = f(x + k·h·eᵢ))
    /// right:   −(25f₀ − 48f₁ + 36f₂ − 16f₃ + 3f₄) / 12h
    /// ```
    /// - Parameters:
    ///   - x: the point; perturbed and restored entry by entry.
    ///   - analytic: `∂f/∂x` as computed by backprop, same count as `x`.
    ///   - entries: the indexes to check (all by default).
    ///   - step: `h`.
    ///   - floor: the smallest denominator of the relative error: entries whose gradient is below
    ///     it are held to an absolute error of `tolerance · floor` (rounding in `f`, about
    ///     `1e-11` here, makes smaller gradients unmeasurable to a relative `1e-6`).
    public static func compare<Scalar: NetworkScalar>(
        name: String, x: inout [Scalar], analytic: [Scalar], entries: [Int]? = nil,
        step: Scalar, floor: Double = 1e-4, f: ([Scalar]) -> Double
    ) -> Result {
        precondition(analytic.count == x.count)
        var maxRelative = 0.0, difference = 0.0, analyticNorm = 0.0, numericNorm = 0.0
        var checked = 0, skipped = 0
        let f0 = f(x)
        // What rounding in f alone can contribute to a stencil with step h.
        func noise(_ h: Scalar) -> Double { 16 * Double.ulpOfOne * max(abs(f0), 1) / Double(h) }
        func derivative(_ i: Int, _ h: Scalar, side: Int) -> Double {
            let saved = x[i]
            func at(_ k: Scalar) -> Double {
                x[i] = saved + k * h
                return f(x)
            }
            defer { x[i] = saved }
            let d = Double(h) * 12
            switch side {
            case 0: return (8 * (at(1) - at(-1)) - (at(2) - at(-2))) / d
            case -1: return (25 * f0 - 48 * at(-1) + 36 * at(-2) - 16 * at(-3) + 3 * at(-4)) / d
            default: return -(25 * f0 - 48 * at(1) + 36 * at(2) - 16 * at(3) + 3 * at(4)) / d
            }
        }
        for i in entries ?? Array(x.indices) {
            var numeric: Double?
            search: for h in [step, step / 10, step / 100] {
                for side in [0, -1, 1] {
                    let coarse = derivative(i, h, side: side), fine = derivative(i, h / 2, side: side)
                    if abs(coarse - fine) <= 1e-7 * max(abs(coarse), abs(fine), floor) + noise(h / 2) {
                        numeric = fine
                        break search
                    }
                }
            }
            guard let numeric else { skipped += 1; continue }
            let a = Double(analytic[i])
            checked += 1
            maxRelative = max(maxRelative, abs(a - numeric) / max(abs(a), abs(numeric), floor))
            difference += (a - numeric) * (a - numeric)
            analyticNorm += a * a
            numericNorm += numeric * numeric
        }
        let norm = max(analyticNorm, numericNorm).squareRoot()
        return Result(name: name, maxRelativeError: maxRelative,
                      normRelativeError: norm > 0 ? difference.squareRoot() / norm : 0, checked: checked, skipped: skipped)
    }

    /// Checks every parameter tensor of `network` under the softmax cross-entropy loss on one
    /// batch, comparing backprop's gradients with central differences.
    /// - Parameters:
    ///   - inputs: `[N, …network.inputShape]`.
    ///   - labels: `N` class indexes.
    ///   - entriesPerTensor: how many entries of each tensor to check (chosen at random by
    ///     `generator`; all of a tensor's entries when it has fewer).
    ///   - checked: called with each tensor's result as soon as it is known (a large network
    ///     takes minutes in `Double`).
    /// - Returns: one result per parameter tensor, named as in `namedParameters`.
    public static func check<Scalar: NetworkScalar>(
        network: Network<Scalar>, inputs: Tensor<Scalar>, labels: [Int], loss lossFunction: SoftmaxCrossEntropy = SoftmaxCrossEntropy(),
        context: StepContext = .training(seed: 1, step: 1), entriesPerTensor: Int = 40,
        step: Scalar, using generator: inout SeededGenerator, checked: (Result) -> Void = { _ in }
    ) -> [Result] {
        var none: Tensor<Scalar>? = nil
        func loss() -> Double {
            lossFunction.loss(logits: network.forward(inputs, context: context), labels: labels, gradient: &none).loss
        }
        var gradient: Tensor<Scalar>? = Tensor(shape: [])
        _ = lossFunction.loss(logits: network.forward(inputs, context: context), labels: labels, gradient: &gradient)
        network.zeroGradients()
        network.backward(gradient!, context: context)

        var results: [Result] = []
        for (name, parameter) in network.namedParameters {
            let count = parameter.value.count
            let entries = count <= entriesPerTensor ? Array(0..<count)
                : Array(generator.permutation(count).prefix(entriesPerTensor))
            var values = parameter.value.scalars
            results.append(compare(name: name, x: &values, analytic: parameter.gradient.scalars, entries: entries, step: step) {
                parameter.value.scalars = $0
                return loss()
            })
            parameter.value.scalars = values
            checked(results[results.count - 1])
        }
        return results
    }
}
