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
/// Weight decay applies to **every** trainable parameter, biases included (the course's rule;
/// `Parameter.decays` is ignored). Frozen parameters (`isTrainable == false`) are skipped.
///
/// Note the `(1 − μ)` damping: this is *not* PyTorch's `SGD(momentum=μ)`, whose velocity is
/// `μ·m + g` with decay added to `g` (that is `PyTorchSGD`).
///
/// The settings are `Double`; each step computes in `Scalar`, converting `α`, `μ`, `λ` once per
/// step (`Scalar(learningRate)`), so a `Float` setting gives exactly the arithmetic it always did.
///
/// State: a `velocity` tensor per parameter, created (zero) the first time the parameter is
/// updated with `μ ≠ 0`; scalar `step`.
public final class SGD<Scalar: NetworkScalar>: Optimizer {
    /// `α`.
    public var learningRate: Double
    /// `μ` in `[0, 1)`.
    public var momentum: Double
    /// `λ`.
    public var weightDecay: Double
    /// The number of `step` calls so far.
    public private(set) var stepCount = 0
    /// One `velocity` tensor per parameter, shaped like it.
    private var velocities = PerParameterState<Scalar>(names: ["velocity"])

    /// Creates an optimizer. The settings may be given as `Float` or `Double` (they are stored
    /// as `Double`, which holds any `Float` exactly).
    public init<Setting: BinaryFloatingPoint>(learningRate: Setting, momentum: Setting = 0, weightDecay: Setting = 0) {
        self.learningRate = Double(learningRate)
        self.momentum = Double(momentum)
        self.weightDecay = Double(weightDecay)
    }

    /// Updates every trainable parameter in place from its accumulated gradient.
    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func step(_ parameters: [Parameter<Scalar>]) {
        velocities.bind(count: parameters.count, optimizer: "SGD")
        stepCount += 1
        let (alpha, mu, lambda) = (Scalar(learningRate), Scalar(momentum), Scalar(weightDecay))
        for (index, p) in parameters.enumerated() where p.isTrainable {
            if mu != 0 && !velocities.has(index) { velocities.allocate(index, shapes: [p.value.shape]) }
            p.gradient.scalars.withUnsafeBufferPointer { g in
                p.value.scalars.withUnsafeMutableBufferPointer { w in
                    if mu == 0 {
                        for i in 0..<w.count { w[i] -= alpha * (g[i] + lambda * w[i]) }
                        return
                    }
                    velocities.withTensors(index) { tensors in
                        tensors[0].scalars.withUnsafeMutableBufferPointer { m in
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

    /// A copy of the state: per parameter `velocity`; scalar `step`.
    public var state: OptimizerState<Scalar> {
        OptimizerState(tensors: velocities.entries, scalars: ["step": Double(stepCount)])
    }

    /// Restores what `state` returned, for the same parameter list; throws one line on a mismatch.
    public func restoreState(_ state: OptimizerState<Scalar>, parameters: [Parameter<Scalar>]) throws(OptimizerStateError) {
        let count = try validatedStepCount(state.scalars, optimizer: "SGD")
        velocities = try velocities.validated(state.tensors, parameters: parameters, optimizer: "SGD") { _, p in p.value.shape }
        stepCount = count
    }
}
