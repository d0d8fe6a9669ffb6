/// An exponential moving average (Polyak averaging) of a network's parameters, and optionally
/// of its floating-point buffers, for evaluating with smoothed weights.
///
/// After each optimizer step, `update()` moves every average towards the live value:
/// ```
/// d = decay                                  (warmUp == false)
/// d = min(decay, (1 + n) / (10 + n))         (warmUp == true; n = updates before this one)
/// a = a + (1 − d)·(w − a)                    (torch: ema.lerp_(w, 1 − d))
/// ```
/// The warm-up is TensorFlow's `ExponentialMovingAverage(num_updates=…)` rule, so that early
/// averages are not dominated by the initial weights. `d` is computed in `Double` and the
/// elementwise update in `Scalar`. The averages start as copies of the values at `init`.
/// Integer buffers (`num_batches_tracked`) are copied, not averaged. Frozen parameters are
/// averaged like the others (they do not change, so their average stays their value).
///
/// To evaluate with the averages, `swapAverages()`, evaluate, and `swapAverages()` back: the
/// swap exchanges storage, so it copies and allocates nothing. `update()` allocates nothing.
///
/// State: `parameterAverages` and `bufferAverages` (one tensor per parameter or buffer, in the
/// order given at `init`, so a checkpoint can store them under the network's own names, e.g. as
/// a second model file) and `updateCount`.
public final class ExponentialMovingAverage<Scalar: NetworkScalar> {
    /// The parameters averaged, in the order given at `init`.
    public let parameters: [Parameter<Scalar>]
    /// The buffers averaged (or copied, for integer buffers).
    public let buffers: [Buffer<Scalar>]
    /// The decay `d` in `[0, 1]`: the weight kept by the average at each update.
    public var decay: Double
    /// Whether the decay warms up as `min(decay, (1 + n) / (10 + n))`.
    public var warmUp: Bool
    /// The number of `update()` calls so far.
    public private(set) var updateCount = 0
    /// Whether the averages are in the parameters (and buffers) now, after an odd number of
    /// `swapAverages()` calls.
    public private(set) var isSwapped = false
    private var averages: [Tensor<Scalar>]
    private var averagedBuffers: [Tensor<Scalar>]

    /// Starts averages at the current values.
    /// - Parameters:
    ///   - parameters: the parameters to average (a network's `parameters`).
    ///   - buffers: buffers to average too (e.g. `network.namedBuffers.map(\.buffer)`, so that
    ///     BatchNorm's running statistics match the averaged weights), or none.
    ///   - decay: `d`, e.g. 0.999.
    ///   - warmUp: whether to use `min(decay, (1 + n) / (10 + n))`.
    public init(parameters: [Parameter<Scalar>], buffers: [Buffer<Scalar>] = [], decay: Double, warmUp: Bool = false) {
        precondition(decay >= 0 && decay <= 1, "EMA decay must be in [0, 1], got \(decay)")
        self.parameters = parameters
        self.buffers = buffers
        self.decay = decay
        self.warmUp = warmUp
        averages = parameters.map { $0.value.copied() }
        averagedBuffers = buffers.map { $0.value.copied() }
    }

    /// The decay the next `update()` uses.
    public var currentDecay: Double {
        warmUp ? min(decay, (1 + Double(updateCount)) / (10 + Double(updateCount))) : decay
    }

    /// Moves every average towards the live value (call it after each optimizer step).
    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func update() {
        precondition(!isSwapped, "EMA update while the averages are swapped in")
        let rate = Scalar(1 - currentDecay)
        updateCount += 1
        for index in parameters.indices {
            Self.blend(&averages[index], towards: parameters[index].value, rate: rate)
        }
        for index in buffers.indices {
            if buffers[index].storage == .integer {
                averagedBuffers[index].scalars.withUnsafeMutableBufferPointer { a in
                    _ = buffers[index].value.scalars.withUnsafeBufferPointer { a.update(fromContentsOf: $0) }
                }
            } else {
                Self.blend(&averagedBuffers[index], towards: buffers[index].value, rate: rate)
            }
        }
    }

    /// `a = a + rate·(w − a)`, elementwise.
    @inline(__always)
    private static func blend(_ average: inout Tensor<Scalar>, towards value: Tensor<Scalar>, rate: Scalar) {
        precondition(average.count == value.count, "EMA: a parameter changed size")
        value.scalars.withUnsafeBufferPointer { w in
            average.scalars.withUnsafeMutableBufferPointer { a in
                for i in 0..<a.count { a[i] += rate * (w[i] - a[i]) }
            }
        }
    }

    /// Overwrites the live parameters and buffers with the averages (Lookahead's reset of the
    /// fast weights to the slow ones). Allocates nothing.
    public func copyAveragesToLive() {
        precondition(!isSwapped, "EMA copy while the averages are swapped in")
        for index in parameters.indices { Self.copy(averages[index], into: &parameters[index].value) }
        for index in buffers.indices { Self.copy(averagedBuffers[index], into: &buffers[index].value) }
    }

    @inline(__always)
    private static func copy(_ source: Tensor<Scalar>, into target: inout Tensor<Scalar>) {
        precondition(source.count == target.count, "EMA: a parameter changed size")
        target.scalars.withUnsafeMutableBufferPointer { t in
            _ = source.scalars.withUnsafeBufferPointer { t.update(fromContentsOf: $0) }
        }
    }

    /// Exchanges the averages with the live values (parameters and buffers): call once to
    /// evaluate with the averages, again to go back to training. Copies nothing.
    public func swapAverages() {
        for index in parameters.indices { swap(&averages[index], &parameters[index].value) }
        for index in buffers.indices { swap(&averagedBuffers[index], &buffers[index].value) }
        isSwapped.toggle()
    }

    /// Copies of the parameters' averages, in `parameters` order.
    public var parameterAverages: [Tensor<Scalar>] {
        isSwapped ? parameters.map { $0.value.copied() } : averages.map { $0.copied() }
    }

    /// Copies of the buffers' averages, in `buffers` order.
    public var bufferAverages: [Tensor<Scalar>] {
        isSwapped ? buffers.map { $0.value.copied() } : averagedBuffers.map { $0.copied() }
    }

    /// Restores what `parameterAverages`, `bufferAverages` and `updateCount` returned.
    /// - Throws: `OptimizerStateError`, one line, on a count or shape that does not match the
    ///   parameters and buffers; nothing is changed then.
    public func restoreState(parameterAverages: [Tensor<Scalar>], bufferAverages: [Tensor<Scalar>], updateCount: Int) throws(OptimizerStateError) {
        precondition(!isSwapped, "EMA restore while the averages are swapped in")
        guard parameterAverages.count == parameters.count else {
            throw OptimizerStateError("EMA state has \(parameterAverages.count) parameter averages for \(parameters.count) parameters")
        }
        guard bufferAverages.count == buffers.count else {
            throw OptimizerStateError("EMA state has \(bufferAverages.count) buffer averages for \(buffers.count) buffers")
        }
        for (index, (average, p)) in zip(parameterAverages, parameters).enumerated() where average.shape != p.value.shape {
            throw OptimizerStateError("EMA average of parameter \(index) (\(p.name)) has shape [\(describe(shape: average.shape))], the parameter [\(describe(shape: p.value.shape))]")
        }
        for (index, (average, b)) in zip(bufferAverages, buffers).enumerated() where average.shape != b.value.shape {
            throw OptimizerStateError("EMA average of buffer \(index) (\(b.name)) has shape [\(describe(shape: average.shape))], the buffer [\(describe(shape: b.value.shape))]")
        }
        guard updateCount >= 0 else { throw OptimizerStateError("EMA update count must be ≥ 0, got \(updateCount)") }
        averages = parameterAverages.map { $0.copied() }
        averagedBuffers = bufferAverages.map { $0.copied() }
        self.updateCount = updateCount
    }
}
