import Foundation

/// Batch normalisation of each channel of `[N, C, H, W]` images (PyTorch's `BatchNorm2d`) or of
/// each feature of `[N, F]` rows (`BatchNorm1d`), with PyTorch's semantics exactly.
///
/// For channel `c` and its `M = N·H·W` values (`M = N` for features), `m` the momentum:
/// ```
/// training:   μ = Σx / M            σ² = Σ(x − μ)² / M            (the biased batch variance)
///             x̂ = (x − μ) / √(σ² + ε)          y = γ·x̂ + β
///             running_mean ← (1 − m)·running_mean + m·μ
///             running_var  ← (1 − m)·running_var  + m·σ²·M/(M − 1)     (the unbiased variance)
///             num_batches_tracked += 1
/// inference:  x̂ = (x − running_mean) / √(running_var + ε)          y = γ·x̂ + β
///
/// backward, training (μ and σ² depend on every x of the channel):
///             ∂L/∂β += Σ ∂y          ∂L/∂γ += Σ ∂y·x̂
///             ∂L/∂x  = γ/√(σ² + ε) · (∂y − mean(∂y) − x̂·mean(∂y·x̂))
/// backward, inference (an affine map):
///             ∂L/∂β, ∂L/∂γ as above       ∂L/∂x = γ/√(running_var + ε) · ∂y
/// ```
/// Statistics are summed per `H·W` plane in `Scalar` and across planes in `Double`. Channels
/// are independent and run in parallel, so results do not depend on the thread count.
///
/// ## State
/// - `weight` γ (1) and `bias` β (0), `[C]`, never weight-decayed (`decays == false`). With
///   `affine: .biasOnly` (the fast CIFAR nets' normalisation with no trainable scale, written
///   in PyTorch as `bn.weight.requires_grad = False`) γ stays a parameter but is frozen at 1
///   (`isTrainable == false`), so the state dict has PyTorch's `weight` and `bias`;
///   `.weightOnly` likewise freezes β at 0. `.neither` is PyTorch's `affine=False`: no
///   parameters (γ = 1 and β = 0 internally).
/// - Buffers `running_mean` (0), `running_var` (1), `[C]`, and `num_batches_tracked` (0,
///   shape `[]`, stored as an integer).
/// - From the last forward: `savedMean` and `savedInverseDeviation` `1/√(σ² + ε)`, `[C]` — the
///   batch's in training, the running ones in inference — which `backward` uses.
///
/// A training pass needs at least two values per channel (PyTorch raises "Expected more than 1
/// value per channel when training"; here it is a precondition), and it couples the examples
/// of a batch: `couplesExamples` is true, so a batch is never cut into slices.
public final class BatchNorm<Scalar: NetworkScalar>: Layer {
    public typealias Affine = BatchNormAffine

    /// `C`: channels of an image, or features of a row.
    public let channels: Int
    /// 2 for `[C, H, W]` examples (`BatchNorm2d`), 1 for `[F]` examples (`BatchNorm1d`).
    public let dimensions: Int
    /// `m` in `running ← (1 − m)·running + m·batch` (PyTorch's convention).
    public let momentum: Double
    /// `ε`, added to the variance.
    public let epsilon: Double
    public let affine: Affine
    /// γ (`weight`) and β (`bias`), `[C]`.
    public let weight: Parameter<Scalar>, bias: Parameter<Scalar>
    /// `running_mean` `[C]`, `running_var` `[C]`, `num_batches_tracked` `[]`.
    public let runningMean: Buffer<Scalar>, runningVariance: Buffer<Scalar>, batchesTracked: Buffer<Scalar>
    /// The per-channel mean the last forward subtracted, `[C]`.
    public private(set) var savedMean: [Scalar]
    /// The per-channel `1/√(σ² + ε)` the last forward multiplied by, `[C]`.
    public private(set) var savedInverseDeviation: [Scalar]

    public var kind: String { dimensions == 2 ? "BatchNorm2d" : "BatchNorm1d" }
    public var settings: String {
        "\(channels), momentum \(momentum), eps \(epsilon)" + (affine == .both ? "" : ", affine \(affine.rawValue)")
    }
    public var parameters: [Parameter<Scalar>] { affine == .neither ? [] : [weight, bias] }
    public var buffers: [Buffer<Scalar>] { [runningMean, runningVariance, batchesTracked] }
    public var couplesExamples: Bool { true }

    /// Creates a layer with γ = 1, β = 0, running mean 0 and running variance 1.
    /// - Parameters:
    ///   - channels: `C`.
    ///   - dimensions: 2 for image batches `[N, C, H, W]`, 1 for feature batches `[N, C]`.
    ///   - momentum: in `[0, 1]`; PyTorch's default 0.1.
    ///   - epsilon: positive; PyTorch's default 1e-5.
    public init(channels: Int, dimensions: Int = 2, momentum: Double = 0.1, epsilon: Double = 1e-5, affine: Affine = .both) {
        precondition(channels > 0 && (dimensions == 1 || dimensions == 2))
        precondition((0...1).contains(momentum) && epsilon > 0)
        self.channels = channels
        self.dimensions = dimensions
        self.momentum = momentum
        self.epsilon = epsilon
        self.affine = affine
        weight = Parameter(name: "weight", value: Tensor(shape: [channels], repeating: 1), decays: false,
                           isTrainable: affine == .both || affine == .weightOnly)
        bias = Parameter(name: "bias", value: Tensor(shape: [channels]), decays: false,
                         isTrainable: affine == .both || affine == .biasOnly)
        runningMean = Buffer(name: "running_mean", value: Tensor(shape: [channels]))
        runningVariance = Buffer(name: "running_var", value: Tensor(shape: [channels], repeating: 1))
        batchesTracked = Buffer(name: "num_batches_tracked", value: Tensor(shape: []), storage: .integer)
        savedMean = [Scalar](repeating: 0, count: channels)
        savedInverseDeviation = [Scalar](repeating: 1, count: channels)
    }

    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        if dimensions == 2 {
            guard inputShape.count == 3, inputShape[0] == channels else {
                throw ShapeError("BatchNorm2d(\(channels)) expects input \(channels)xHxW, got \(describe(shape: inputShape))")
            }
        } else {
            guard inputShape == [channels] else {
                throw ShapeError("BatchNorm1d(\(channels)) expects \(channels) flat features, got \(describe(shape: inputShape))")
            }
        }
        return inputShape
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func forward(_ input: Tensor<Scalar>, into output: inout Tensor<Scalar>, context: StepContext) {
        let n = input.batchSize
        let planeSize = input.count / max(n * channels, 1)
        precondition(input.count == n * channels * planeSize && input.shape.count == (dimensions == 2 ? 4 : 2),
                     "\(kind)(\(channels)) input \(input.shape)")
        let training = context.isTraining
        precondition(!training || n * planeSize > 1, "\(kind): expected more than 1 value per channel when training")
        output.resize(to: input.shape)
        if training { batchesTracked.value.scalars[0] += 1 }
        input.scalars.withUnsafeBufferPointer { x in
            output.scalars.withUnsafeMutableBufferPointer { y in
                weight.value.scalars.withUnsafeBufferPointer { gamma in
                    bias.value.scalars.withUnsafeBufferPointer { beta in
                        runningMean.value.scalars.withUnsafeMutableBufferPointer { runningMean in
                            runningVariance.value.scalars.withUnsafeMutableBufferPointer { runningVariance in
                                savedMean.withUnsafeMutableBufferPointer { mean in
                                    savedInverseDeviation.withUnsafeMutableBufferPointer { inverseDeviation in
                                        let work = NormalizeChannels(
                                            x: x.baseAddress!, y: y.baseAddress!, gamma: gamma.baseAddress!, beta: beta.baseAddress!,
                                            runningMean: runningMean.baseAddress!, runningVariance: runningVariance.baseAddress!,
                                            mean: mean.baseAddress!, inverseDeviation: inverseDeviation.baseAddress!,
                                            batch: n, channels: channels, planeSize: planeSize, training: training,
                                            momentum: momentum, epsilon: epsilon)
                                        Parallel.forEach(channels, work)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func backward(input: Tensor<Scalar>, output: Tensor<Scalar>, outputGradient: Tensor<Scalar>,
                         inputGradient: inout Tensor<Scalar>?, context: StepContext) {
        let n = input.batchSize
        let planeSize = input.count / max(n * channels, 1)
        let wantsInputGradient = inputGradient != nil
        // Take the gradient's storage out of the optional (no copy) and put it back at the end.
        var dxStorage = inputGradient.take()?.scalars ?? []
        if wantsInputGradient && dxStorage.count != input.count { dxStorage = [Scalar](repeating: 0, count: input.count) }
        defer { if wantsInputGradient { inputGradient = Tensor<Scalar>(shape: input.shape, scalars: dxStorage) } }
        input.scalars.withUnsafeBufferPointer { x in
            outputGradient.scalars.withUnsafeBufferPointer { dy in
                dxStorage.withUnsafeMutableBufferPointer { dx in
                    weight.value.scalars.withUnsafeBufferPointer { gamma in
                        weight.gradient.scalars.withUnsafeMutableBufferPointer { dGamma in
                            bias.gradient.scalars.withUnsafeMutableBufferPointer { dBeta in
                                savedMean.withUnsafeBufferPointer { mean in
                                    savedInverseDeviation.withUnsafeBufferPointer { inverseDeviation in
                                        let work = NormalizeChannelsBackward(
                                            x: x.baseAddress!, dy: dy.baseAddress!, dx: wantsInputGradient ? dx.baseAddress : nil,
                                            gamma: gamma.baseAddress!, dGamma: dGamma.baseAddress!, dBeta: dBeta.baseAddress!,
                                            mean: mean.baseAddress!, inverseDeviation: inverseDeviation.baseAddress!,
                                            batch: n, channels: channels, planeSize: planeSize, training: context.isTraining)
                                        Parallel.forEach(channels, work)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The forward pass of one channel (one work item): its statistics, the running statistics'
/// update in training, and `y = a·x + b` with `a = γ/√(σ² + ε)`, `b = β − μ·a`.
private struct NormalizeChannels<Scalar: NetworkScalar>: ParallelWork {
    let x: UnsafePointer<Scalar>, y: UnsafeMutablePointer<Scalar>
    let gamma: UnsafePointer<Scalar>, beta: UnsafePointer<Scalar>
    let runningMean: UnsafeMutablePointer<Scalar>, runningVariance: UnsafeMutablePointer<Scalar>
    let mean: UnsafeMutablePointer<Scalar>, inverseDeviation: UnsafeMutablePointer<Scalar>
    let batch: Int, channels: Int, planeSize: Int, training: Bool
    let momentum: Double, epsilon: Double

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    func callAsFunction(_ c: Int) {
        let (s, stride) = (planeSize, channels * planeSize)
        if training {
            // Two passes (mean, then squared deviations) rather than Σx² − M·μ², which cancels.
            let count = Double(batch * s)
            var total = 0.0
            for i in 0..<batch { total += Double(sum(x + i * stride + c * s, count: s)) }
            let mu = total / count
            var squares = 0.0
            for i in 0..<batch { squares += Double(sumOfSquaredDeviations(x + i * stride + c * s, from: Scalar(mu), count: s)) }
            let variance = squares / count
            mean[c] = Scalar(mu)
            inverseDeviation[c] = Scalar(1 / (variance + epsilon).squareRoot())
            runningMean[c] = Scalar((1 - momentum) * Double(runningMean[c]) + momentum * mu)
            runningVariance[c] = Scalar((1 - momentum) * Double(runningVariance[c]) + momentum * squares / (count - 1))
        } else {
            mean[c] = runningMean[c]
            inverseDeviation[c] = Scalar(1 / (Double(runningVariance[c]) + epsilon).squareRoot())
        }
        let a = gamma[c] * inverseDeviation[c], b = beta[c] - mean[c] * a
        for i in 0..<batch {
            let (source, destination) = (x + i * stride + c * s, y + i * stride + c * s)
            for j in 0..<s { destination[j] = a * source[j] + b }
        }
    }
}

/// The backward pass of one channel (one work item): `∂β += Σ∂y`, `∂γ += Σ∂y·x̂` and, when
/// wanted, `∂x` — in training, the full batch-statistics form written as one affine map of
/// `∂y` and `x` per channel:
/// ```
/// ∂x = A·∂y − A·σ⁻¹·mean(∂y·x̂)·x + A·(σ⁻¹·mean(∂y·x̂)·μ − mean(∂y))      A = γ·σ⁻¹
/// ```
/// (`σ⁻¹ = 1/√(σ² + ε)`); in inference `∂x = A·∂y`.
private struct NormalizeChannelsBackward<Scalar: NetworkScalar>: ParallelWork {
    let x: UnsafePointer<Scalar>, dy: UnsafePointer<Scalar>, dx: UnsafeMutablePointer<Scalar>?
    let gamma: UnsafePointer<Scalar>, dGamma: UnsafeMutablePointer<Scalar>, dBeta: UnsafeMutablePointer<Scalar>
    let mean: UnsafePointer<Scalar>, inverseDeviation: UnsafePointer<Scalar>
    let batch: Int, channels: Int, planeSize: Int, training: Bool

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    func callAsFunction(_ c: Int) {
        let (s, stride) = (planeSize, channels * planeSize)
        let (mu, sigmaInverse) = (mean[c], inverseDeviation[c])
        // Σ∂y and Σ∂y·(x − μ), per plane in Scalar, across planes in Double.
        var gradientSum = 0.0, centeredSum = 0.0
        for i in 0..<batch {
            let offset = i * stride + c * s
            let (plain, centered) = gradientSums(dy + offset, x + offset, mean: mu, count: s)
            gradientSum += Double(plain)
            centeredSum += Double(centered)
        }
        let normalizedSum = centeredSum * Double(sigmaInverse)          // Σ∂y·x̂
        dBeta[c] += Scalar(gradientSum)
        dGamma[c] += Scalar(normalizedSum)
        guard let dx else { return }
        let a = gamma[c] * sigmaInverse
        var (scaleY, scaleX, shift) = (a, Scalar(0), Scalar(0))
        if training {
            let count = Double(batch * s)
            let meanGradient = gradientSum / count, meanNormalized = normalizedSum / count
            scaleX = Scalar(-Double(a) * Double(sigmaInverse) * meanNormalized)
            shift = Scalar(Double(a) * (Double(sigmaInverse) * meanNormalized * Double(mu) - meanGradient))
        }
        for i in 0..<batch {
            let offset = i * stride + c * s
            let (g, source, destination) = (dy + offset, x + offset, dx + offset)
            for j in 0..<s { destination[j] = scaleY * g[j] + scaleX * source[j] + shift }
        }
    }
}

/// `(Σ g[i], Σ g[i]·(x[i] − mean))` in one pass, each in four interleaved partial sums combined in
/// a fixed order.
@inline(__always)
private func gradientSums<Scalar: NetworkScalar>(
    _ g: UnsafePointer<Scalar>, _ x: UnsafePointer<Scalar>, mean: Scalar, count: Int
) -> (Scalar, Scalar) {
    var s: (Scalar, Scalar, Scalar, Scalar) = (0, 0, 0, 0), p: (Scalar, Scalar, Scalar, Scalar) = (0, 0, 0, 0)
    var i = 0
    while i + 4 <= count {
        s.0 += g[i]; s.1 += g[i + 1]; s.2 += g[i + 2]; s.3 += g[i + 3]
        p.0 += g[i] * (x[i] - mean); p.1 += g[i + 1] * (x[i + 1] - mean)
        p.2 += g[i + 2] * (x[i + 2] - mean); p.3 += g[i + 3] * (x[i + 3] - mean)
        i += 4
    }
    var (plain, centered) = ((s.0 + s.1) + (s.2 + s.3), (p.0 + p.1) + (p.2 + p.3))
    while i < count { plain += g[i]; centered += g[i] * (x[i] - mean); i += 1 }
    return (plain, centered)
}

/// `Σ (x[i] − shift)²`, in eight interleaved partial sums combined in a fixed order (as `sum`).
@inline(__always)
private func sumOfSquaredDeviations<Scalar: NetworkScalar>(_ x: UnsafePointer<Scalar>, from shift: Scalar, count: Int) -> Scalar {
    sumOfProducts(x, x, shift: shift, shiftFirst: true, count: count)
}

/// `Σ (a[i] − shift·[shiftFirst])·(b[i] − shift)`, in eight interleaved partial sums combined in
/// a fixed order: the result depends only on the data.
@inline(__always)
private func sumOfProducts<Scalar: NetworkScalar>(
    _ a: UnsafePointer<Scalar>, _ b: UnsafePointer<Scalar>, shift: Scalar, shiftFirst: Bool = false, count: Int
) -> Scalar {
    let shiftA = shiftFirst ? shift : 0
    var p: (Scalar, Scalar, Scalar, Scalar, Scalar, Scalar, Scalar, Scalar) = (0, 0, 0, 0, 0, 0, 0, 0)
    var i = 0
    while i + 8 <= count {
        p.0 += (a[i] - shiftA) * (b[i] - shift); p.1 += (a[i + 1] - shiftA) * (b[i + 1] - shift)
        p.2 += (a[i + 2] - shiftA) * (b[i + 2] - shift); p.3 += (a[i + 3] - shiftA) * (b[i + 3] - shift)
        p.4 += (a[i + 4] - shiftA) * (b[i + 4] - shift); p.5 += (a[i + 5] - shiftA) * (b[i + 5] - shift)
        p.6 += (a[i + 6] - shiftA) * (b[i + 6] - shift); p.7 += (a[i + 7] - shiftA) * (b[i + 7] - shift)
        i += 8
    }
    var total = ((p.0 + p.1) + (p.2 + p.3)) + ((p.4 + p.5) + (p.6 + p.7))
    while i < count { total += (a[i] - shiftA) * (b[i] - shift); i += 1 }
    return total
}

/// Which of BatchNorm's γ and β are trained (the spec key `affine`).
public enum BatchNormAffine: String, Sendable, CaseIterable {
    /// γ and β both trained (PyTorch's default `affine=True`).
    case both
    /// γ trained, β frozen at 0.
    case weightOnly = "weight"
    /// β trained, γ frozen at 1 (airbench's `BatchNorm(weight=False)`).
    case biasOnly = "bias"
    /// Neither: no parameters (PyTorch's `affine=False`).
    case neither = "none"
}

// MARK: - Specs

/// The keys `batchnorm2d` and `batchnorm1d` share: `momentum` (0.1, PyTorch's convention — airbench's
/// `BatchNorm(momentum=0.6)` passes PyTorch `1 − 0.6`, so it is `"momentum": 0.4` here),
/// `eps` (1e-5) and `affine` (`"both"`, `"weight"`, `"bias"` or `"none"`: which of γ and β are
/// trained; see `BatchNorm.Affine`), `bias_lr_scale` (1: a factor on the learning rate of β,
/// `Parameter.learningRateScale` — airbench's `bias_scaler` of 64) and `bias_decay` (false: whether
/// the optimizer's weight decay applies to β, `Parameter.decays`; its strength per step is the
/// weights', whatever `bias_lr_scale` is, as in airbench, which decays every parameter).
public struct BatchNormSettings: Sendable, Equatable {
    public var momentum: Double, epsilon: Double
    public var affine: BatchNormAffine
    public var biasLearningRateScale: Double
    /// Whether weight decay applies to β.
    public var biasDecay: Bool

    public init(momentum: Double = 0.1, epsilon: Double = 1e-5, affine: BatchNormAffine = .both, biasLearningRateScale: Double = 1,
                biasDecay: Bool = false) {
        self.momentum = momentum
        self.epsilon = epsilon
        self.affine = affine
        self.biasLearningRateScale = biasLearningRateScale
        self.biasDecay = biasDecay
    }

    static let keysHelp = "momentum (0.1), eps (1e-5), affine (\"both\" | \"weight\" | \"bias\" | \"none\"), bias_lr_scale (1), bias_decay (false)"

    init(reading reader: inout SpecReader) throws(SpecError) {
        let affine = try reader.choice("affine", BatchNormAffine.allCases.map(\.rawValue), default: "both")
        self.init(momentum: try reader.number("momentum", default: 0.1, in: 0...1),
                  epsilon: try reader.positiveNumber("eps", default: 1e-5),
                  affine: BatchNormAffine(rawValue: affine)!,
                  biasLearningRateScale: try reader.positiveNumber("bias_lr_scale", default: 1),
                  biasDecay: try reader.bool("bias_decay", default: false))
    }

    var jsonKeys: [String: Any] {
        var keys: [String: Any] = [:]
        if momentum != 0.1 { keys["momentum"] = momentum }
        if epsilon != 1e-5 { keys["eps"] = epsilon }
        if affine != .both { keys["affine"] = affine.rawValue }
        if biasLearningRateScale != 1 { keys["bias_lr_scale"] = biasLearningRateScale }
        if biasDecay { keys["bias_decay"] = true }
        return keys
    }

    func makeLayer<Scalar: NetworkScalar>(channels: Int, dimensions: Int) -> BatchNorm<Scalar> {
        let layer = BatchNorm<Scalar>(channels: channels, dimensions: dimensions, momentum: momentum, epsilon: epsilon,
                                      affine: affine)
        layer.bias.learningRateScale = biasLearningRateScale
        layer.bias.decays = biasDecay
        return layer
    }
}

/// `{"type": "batchnorm2d", "momentum": 0.1, "eps": 1e-5, "affine": "both"}`: BatchNorm over the
/// channels of a `CxHxW` input (channels inferred).
public struct BatchNorm2DSpec: LayerSpecKind {
    public static let typeName = "batchnorm2d"
    public static let aliases = ["batch_norm2d"]
    public static var keysHelp: String { BatchNormSettings.keysHelp }
    public var settings: BatchNormSettings

    public init(_ settings: BatchNormSettings = BatchNormSettings()) { self.settings = settings }
    public init(reading reader: inout SpecReader) throws(SpecError) { settings = try BatchNormSettings(reading: &reader) }
    public var jsonKeys: [String: Any] { settings.jsonKeys }

    public func makeLayer<Scalar: NetworkScalar>(inputShape: [Int], path: String, using generator: inout SeededGenerator) throws(ShapeError) -> any Layer<Scalar> {
        guard inputShape.count == 3 else {
            throw ShapeError("batchnorm2d needs a CxHxW input, got \(describe(shape: inputShape)) (use batchnorm1d for flat features)")
        }
        return settings.makeLayer(channels: inputShape[0], dimensions: 2) as BatchNorm<Scalar>
    }
}

/// `{"type": "batchnorm1d", "momentum": 0.1, "eps": 1e-5, "affine": "both"}`: BatchNorm over the
/// features of a flat input (features inferred).
public struct BatchNorm1DSpec: LayerSpecKind {
    public static let typeName = "batchnorm1d"
    public static let aliases = ["batch_norm1d"]
    public static var keysHelp: String { BatchNormSettings.keysHelp }
    public var settings: BatchNormSettings

    public init(_ settings: BatchNormSettings = BatchNormSettings()) { self.settings = settings }
    public init(reading reader: inout SpecReader) throws(SpecError) { settings = try BatchNormSettings(reading: &reader) }
    public var jsonKeys: [String: Any] { settings.jsonKeys }

    public func makeLayer<Scalar: NetworkScalar>(inputShape: [Int], path: String, using generator: inout SeededGenerator) throws(ShapeError) -> any Layer<Scalar> {
        guard inputShape.count == 1 else {
            throw ShapeError("batchnorm1d needs a flat input, got \(describe(shape: inputShape)) (use batchnorm2d for images, or flatten first)")
        }
        return settings.makeLayer(channels: inputShape[0], dimensions: 1) as BatchNorm<Scalar>
    }
}

extension LayerSpec {
    /// A `batchnorm2d` layer spec.
    public static func batchNorm2d(momentum: Double = 0.1, epsilon: Double = 1e-5, affine: BatchNormAffine = .both) -> LayerSpec {
        LayerSpec(BatchNorm2DSpec(BatchNormSettings(momentum: momentum, epsilon: epsilon, affine: affine)))
    }

    /// A `batchnorm1d` layer spec.
    public static func batchNorm1d(momentum: Double = 0.1, epsilon: Double = 1e-5, affine: BatchNormAffine = .both) -> LayerSpec {
        LayerSpec(BatchNorm1DSpec(BatchNormSettings(momentum: momentum, epsilon: epsilon, affine: affine)))
    }
}
