/// Stochastic gradient descent with PyTorch's `torch.optim.SGD` semantics, plus an option for
/// decoupled weight decay.
///
/// Per trainable parameter `w` with gradient `g`, learning rate `α`, momentum `μ`, dampening
/// `τ`, weight decay `λ` (applied only where `Parameter.decays`), and momentum buffer `b`:
/// ```
/// g = g + λ·w                          (coupled decay, torch's weight_decay)
/// b = g                 on the parameter's first step with μ ≠ 0 (torch: clone of g)
/// b = μ·b + (1 − τ)·g   afterwards
/// g = g + μ·b  (Nesterov)   or   g = b  (otherwise; with μ = 0, no buffer: g as it is)
/// w = w·(1 − α·λ)                      (decoupled decay instead of coupled: AdamW's rule)
/// w = w − α·g
/// ```
/// Decoupled decay multiplies by `1 − α·λ` before the gradient update, exactly as
/// `torch.optim.AdamW` does (`param.mul_(1 - lr * weight_decay)`); `torch.optim.SGD` has no such
/// option. Note that `λ` is scaled by the current learning rate, so a schedule decays it too.
///
/// A parameter's `learningRateScale` `s` multiplies `α` in its last line but not the decay:
/// coupled decay adds `(λ/s)·w` to its gradient, so that the step takes `α·λ·w` as for every other
/// parameter (airbench's `weight_decay = wd / lr_biases` for its BatchNorm biases); decoupled
/// decay shrinks by `1 − α·λ` whatever `s` is.
/// Frozen parameters (`isTrainable == false`) are skipped. State: a `momentum_buffer` per
/// parameter (when `μ ≠ 0`), created on the parameter's first update; scalar `step`.
public final class PyTorchSGD<Scalar: NetworkScalar>: Optimizer {
    /// `α` (torch `lr`).
    public var learningRate: Double
    /// `μ` (torch `momentum`); one-cycle schedules set it.
    public var momentum: Double
    /// `τ` (torch `dampening`).
    public var dampening: Double
    /// Nesterov momentum (torch `nesterov`); needs `μ > 0` and `τ = 0`.
    public var nesterov: Bool
    /// `λ` (torch `weight_decay`), applied only to parameters whose `decays` is true.
    public var weightDecay: Double
    /// Whether decay is decoupled (`w *= 1 − α·λ`) rather than added to the gradient.
    public var decoupledWeightDecay: Bool
    /// The number of `step` calls so far.
    public private(set) var stepCount = 0
    /// One `momentum_buffer` per parameter, shaped like it.
    private var buffers = PerParameterState<Scalar>(names: ["momentum_buffer"])

    /// Creates an optimizer; the defaults are torch's (`momentum=0, dampening=0,
    /// weight_decay=0, nesterov=False`).
    public init(learningRate: Double, momentum: Double = 0, dampening: Double = 0, nesterov: Bool = false,
                weightDecay: Double = 0, decoupledWeightDecay: Bool = false) {
        precondition(!nesterov || (momentum > 0 && dampening == 0), "Nesterov momentum needs momentum > 0 and dampening 0")
        self.learningRate = learningRate
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov
        self.weightDecay = weightDecay
        self.decoupledWeightDecay = decoupledWeightDecay
    }

    /// Updates every trainable parameter in place from its accumulated gradient.
    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func step(_ parameters: [Parameter<Scalar>]) {
        step(parameters, including: { _ in true })
    }

    /// `step(_:)` for the trainable parameters that `including` accepts; the others are left
    /// as they are, with no state (`Muon` hands its filters to its own rule).
    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    func step(_ parameters: [Parameter<Scalar>], including: (Parameter<Scalar>) -> Bool) {
        buffers.bind(count: parameters.count, optimizer: "PyTorchSGD")
        stepCount += 1
        let mu = Scalar(momentum), damped = Scalar(1 - dampening)
        let nesterov = nesterov
        for (index, p) in parameters.enumerated() where p.isTrainable && including(p) {
            let alpha = Scalar(learningRate * p.learningRateScale)
            let lambda: Scalar = p.decays ? Scalar(weightDecay) : 0
            // Coupled decay goes into the gradient; decoupled shrinks w first (torch AdamW).
            let coupled: Scalar = decoupledWeightDecay ? 0 : lambda / Scalar(p.learningRateScale)
            let shrink: Scalar = decoupledWeightDecay ? Scalar(1 - learningRate * Double(lambda)) : 1
            let first = mu != 0 && !buffers.has(index)
            if first { buffers.allocate(index, shapes: [p.value.shape]) }
            p.gradient.scalars.withUnsafeBufferPointer { g in
                p.value.scalars.withUnsafeMutableBufferPointer { w in
                    if mu == 0 {
                        for i in 0..<w.count {
                            let d = g[i] + coupled * w[i]
                            w[i] = w[i] * shrink - alpha * d
                        }
                        return
                    }
                    buffers.withTensors(index) { tensors in
                        tensors[0].scalars.withUnsafeMutableBufferPointer { b in
                            for i in 0..<w.count {
                                let d = g[i] + coupled * w[i]
                                b[i] = first ? d : mu * b[i] + damped * d
                                let update = nesterov ? d + mu * b[i] : b[i]
                                w[i] = w[i] * shrink - alpha * update
                            }
                        }
                    }
                }
            }
        }
    }

    /// A copy of the state: per parameter `momentum_buffer`; scalar `step`.
    public var state: OptimizerState<Scalar> {
        OptimizerState(tensors: buffers.entries, scalars: ["step": Double(stepCount)])
    }

    /// Restores what `state` returned, for the same parameter list; throws one line on a mismatch.
    public func restoreState(_ state: OptimizerState<Scalar>, parameters: [Parameter<Scalar>]) throws(OptimizerStateError) {
        let count = try validatedStepCount(state.scalars, optimizer: "PyTorchSGD")
        buffers = try buffers.validated(state.tensors, parameters: parameters, optimizer: "PyTorchSGD") { _, p in p.value.shape }
        stepCount = count
    }
}
