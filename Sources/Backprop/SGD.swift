/// Stochastic gradient descent with the course's momentum and weight decay (report Eq. 20–22).
///
/// With momentum `μ > 0`, per parameter tensor `w` with gradient `g` and velocity `m` (zero at
/// the start):
/// ```
/// m = μ·m + (1 − μ)·g
/// w = w − α·(m + λ·w)
/// ```
/// With `μ = 0`, plain SGD with weight decay: `w = w − α·(g + λ·w)`.
///
/// Note the `(1 − μ)` damping: this is *not* PyTorch's `SGD(momentum=μ)`, whose velocity is
/// `μ·m + g` with decay added to `g`.
public final class SGD<Scalar: NetworkScalar> {
    /// `α`.
    public var learningRate: Scalar
    /// `μ` in `[0, 1)`.
    public var momentum: Scalar
    /// `λ`.
    public var weightDecay: Scalar
    /// One velocity buffer per parameter, created on the first step.
    private var velocities: [[Scalar]] = []

    /// Creates an optimizer.
    public init(learningRate: Scalar, momentum: Scalar = 0, weightDecay: Scalar = 0) {
        self.learningRate = learningRate
        self.momentum = momentum
        self.weightDecay = weightDecay
    }

    /// Updates every parameter in place from its accumulated gradient.
    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func step(_ parameters: [Parameter<Scalar>]) {
        if velocities.isEmpty { velocities = parameters.map { [Scalar](repeating: 0, count: $0.value.count) } }
        precondition(velocities.count == parameters.count, "SGD used with a different parameter list")
        let (alpha, mu, lambda) = (learningRate, momentum, weightDecay)
        for (index, p) in parameters.enumerated() {
            p.gradient.scalars.withUnsafeBufferPointer { g in
                p.value.scalars.withUnsafeMutableBufferPointer { w in
                    if mu == 0 {
                        for i in 0..<w.count { w[i] -= alpha * (g[i] + lambda * w[i]) }
                        return
                    }
                    velocities[index].withUnsafeMutableBufferPointer { m in
                        for i in 0..<w.count {
                            m[i] = mu * m[i] + (1 - mu) * g[i]
                            w[i] -= alpha * (m[i] + lambda * w[i])
                        }
                    }
                }
            }
        }
    }
}
