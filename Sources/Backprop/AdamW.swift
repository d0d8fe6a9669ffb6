import Foundation

/// Adam with decoupled weight decay, with `torch.optim.AdamW`'s semantics (`amsgrad=False`).
///
/// Per trainable parameter `w` with gradient `g`, its own step count `t` (1 on its first
/// update), learning rate `α`, betas `β1` (`momentum`), `β2`, `ε`, and weight decay `λ`
/// (applied only where `Parameter.decays`):
/// ```
/// t = t + 1
/// w = w·(1 − α·λ)                                   (decoupled decay, before the update)
/// m = β1·m + (1 − β1)·g                             (exp_avg, zero at the start)
/// v = β2·v + (1 − β2)·g²                            (exp_avg_sq, zero at the start)
/// w = w − (α / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)
/// ```
/// `ε` is added after the square root of the bias-corrected second moment, as torch does. The
/// per-step factors `α/(1 − β1ᵗ)` and `√(1 − β2ᵗ)` are computed in `Double`, the elementwise
/// work in `Scalar`. `β1` is read at each step, so a one-cycle schedule may cycle it (torch's
/// `cycle_momentum` sets `betas[0]` the same way, and bias correction uses the current `β1`).
///
/// Frozen parameters (`isTrainable == false`) are skipped and get no state. State per
/// parameter, PyTorch's names: `step` (a count, shape `[]`), `exp_avg`, `exp_avg_sq`; scalar
/// `step` (the number of `step` calls).
public final class AdamW<Scalar: NetworkScalar>: Optimizer {
    /// `α` (torch `lr`).
    public var learningRate: Double
    /// `β1` (torch `betas[0]`).
    public var momentum: Double
    /// `β2` (torch `betas[1]`).
    public var beta2: Double
    /// `ε` (torch `eps`).
    public var epsilon: Double
    /// `λ` (torch `weight_decay`), applied only to parameters whose `decays` is true.
    public var weightDecay: Double
    /// The number of `step` calls so far.
    public private(set) var stepCount = 0
    /// Per parameter: `step` `[]`, `exp_avg` and `exp_avg_sq` shaped like the parameter.
    private var moments = PerParameterState<Scalar>(names: ["step", "exp_avg", "exp_avg_sq"])

    /// Creates an optimizer; the defaults are torch's (`lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
    /// weight_decay=1e-2`).
    public init(learningRate: Double = 1e-3, beta1: Double = 0.9, beta2: Double = 0.999,
                epsilon: Double = 1e-8, weightDecay: Double = 1e-2) {
        self.learningRate = learningRate
        self.momentum = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
    }

    /// Updates every trainable parameter in place from its accumulated gradient.
    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func step(_ parameters: [Parameter<Scalar>]) {
        moments.bind(count: parameters.count, optimizer: "AdamW")
        stepCount += 1
        let beta1 = momentum, beta2 = beta2
        let (b1, oneMinusB1) = (Scalar(beta1), Scalar(1 - beta1))
        let (b2, oneMinusB2) = (Scalar(beta2), Scalar(1 - beta2))
        let eps = Scalar(epsilon)
        for (index, p) in parameters.enumerated() where p.isTrainable {
            if !moments.has(index) { moments.allocate(index, shapes: [[], p.value.shape, p.value.shape]) }
            let shrink = Scalar(p.decays ? 1 - learningRate * weightDecay : 1)
            moments.withTensors(index) { state in
                // The parameter's own step count, kept as a Scalar like torch's float32 `step`.
                state[0].scalars[0] += 1
                let t = Double(state[0].scalars[0])
                let stepSize = Scalar(learningRate * p.learningRateScale / (1 - pow(beta1, t)))
                let correction2 = Scalar((1 - pow(beta2, t)).squareRoot())
                p.gradient.scalars.withUnsafeBufferPointer { g in
                    p.value.scalars.withUnsafeMutableBufferPointer { w in
                        state[1].scalars.withUnsafeMutableBufferPointer { m in
                            state[2].scalars.withUnsafeMutableBufferPointer { v in
                                for i in 0..<w.count {
                                    m[i] = b1 * m[i] + oneMinusB1 * g[i]
                                    v[i] = b2 * v[i] + oneMinusB2 * (g[i] * g[i])
                                    let denominator = v[i].squareRoot() / correction2 + eps
                                    w[i] = w[i] * shrink - stepSize * (m[i] / denominator)
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// A copy of the state: per parameter `step`, `exp_avg`, `exp_avg_sq`; scalar `step`.
    public var state: OptimizerState<Scalar> {
        OptimizerState(tensors: moments.entries, scalars: ["step": Double(stepCount)])
    }

    /// Restores what `state` returned, for the same parameter list; throws one line on a mismatch.
    public func restoreState(_ state: OptimizerState<Scalar>, parameters: [Parameter<Scalar>]) throws(OptimizerStateError) {
        let count = try validatedStepCount(state.scalars, optimizer: "AdamW")
        let restored = try moments.validated(state.tensors, parameters: parameters, optimizer: "AdamW") { name, p in
            name == "step" ? [] : p.value.shape
        }
        for entry in state.tensors where entry.name == "step" {
            guard let steps = wholeCount(Double(entry.tensor.scalars[0])), steps >= 1 else {
                throw OptimizerStateError("AdamW state 'step' of parameter \(entry.parameterIndex) must be a whole number ≥ 1, got \(entry.tensor.scalars[0])")
            }
        }
        moments = restored
        stepCount = count
    }
}
