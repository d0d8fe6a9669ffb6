import Foundation

/// Lookahead (Zhang et al. 2019) as airbench94 runs it: slow weights that every `every` steps
/// move towards the live ("fast") weights, which are then reset to them.
///
/// After optimizer step `t` of `T` (1-based), when `t` is a multiple of `every`:
/// ```
/// d = decay · (t / T)^power                  (in Double)
/// s = s + (1 − d)·(w − s)                    (torch: slow.lerp_(w, 1 − d))
/// w = s
/// ```
/// and after step `T` the live weights take the slow ones, `w = s`, whatever `T` is. Parameters
/// and floating-point buffers (BatchNorm's running statistics) take part; integer buffers are
/// left as they are. airbench: `every` 5, `decay` 0.95⁵, `power` 3, so the slow weights follow
/// the fast ones exactly early on (`d` = 0) and lag more and more towards the end.
///
/// The optimizer's own state (momentum) is not touched. `afterStep` allocates nothing.
///
/// State between steps: the slow weights (`slowParameters`, `slowBuffers`, in the order given
/// at `init`), which a checkpoint saves so that a resumed run continues bit for bit.
public final class Lookahead<Scalar: NetworkScalar> {
    /// Steps between synchronisations.
    public let every: Int
    /// The largest decay `d` (reached at the last step).
    public let decay: Double
    /// The exponent of the decay's ramp.
    public let power: Double
    /// The slow weights, kept as the averages of a moving average whose decay is set per update.
    private let slow: ExponentialMovingAverage<Scalar>

    /// Starts the slow weights at the current values.
    /// - Parameters:
    ///   - parameters: the network's parameters.
    ///   - buffers: its buffers (floating-point ones take part, integer ones are left alone).
    ///   - every: steps between synchronisations, ≥ 1.
    ///   - decay: the largest decay, in [0, 1].
    ///   - power: the ramp's exponent, ≥ 0.
    public init(parameters: [Parameter<Scalar>], buffers: [Buffer<Scalar>] = [], every: Int, decay: Double, power: Double) {
        precondition(every >= 1, "Lookahead needs every ≥ 1, got \(every)")
        precondition(decay >= 0 && decay <= 1 && power >= 0 && power.isFinite, "Lookahead decay \(decay) or power \(power) out of range")
        self.every = every
        self.decay = decay
        self.power = power
        slow = ExponentialMovingAverage(parameters: parameters, buffers: buffers.filter { $0.storage != .integer }, decay: 0)
    }

    /// The decay of the synchronisation after step `step` of `totalSteps`.
    public func decay(afterStep step: Int, of totalSteps: Int) -> Double {
        decay * pow(Double(step) / Double(totalSteps), power)
    }

    /// Call after optimizer step `step` (1-based) of `totalSteps`: synchronises when `step` is a
    /// multiple of `every`, and hands the slow weights to the network after the last step.
    public func afterStep(_ step: Int, of totalSteps: Int) {
        if step % every == 0 {
            slow.decay = decay(afterStep: step, of: totalSteps)
            slow.update()
            slow.copyAveragesToLive()
        } else if step == totalSteps {
            slow.copyAveragesToLive()
        }
    }

    /// The buffers that take part: those given at `init` without the integer ones, in order.
    public var buffers: [Buffer<Scalar>] { slow.buffers }

    /// Copies of the slow parameters, in `parameters` order.
    public var slowParameters: [Tensor<Scalar>] { slow.parameterAverages }
    /// Copies of the slow buffers, in `buffers` order.
    public var slowBuffers: [Tensor<Scalar>] { slow.bufferAverages }

    /// Restores what `slowParameters` and `slowBuffers` returned.
    /// - Throws: `OptimizerStateError`, one line, on a count or shape that does not match;
    ///   nothing is changed then.
    public func restoreState(slowParameters: [Tensor<Scalar>], slowBuffers: [Tensor<Scalar>]) throws(OptimizerStateError) {
        try slow.restoreState(parameterAverages: slowParameters, bufferAverages: slowBuffers, updateCount: 0)
    }
}
