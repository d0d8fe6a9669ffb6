/// Inverted dropout (PyTorch's `nn.Dropout`) and its spatial form, which drops whole channel
/// planes (`nn.Dropout2d`).
///
/// In training each element — spatial: each channel's whole `H·W` plane — is zeroed with
/// probability `p` and the rest are scaled by `1/(1 − p)`, so the expected output is the input:
/// ```
/// forward:   y = x · k/(1 − p)             k ∈ {0, 1},  P(k = 0) = p
/// backward:  ∂L/∂x = ∂L/∂y · k/(1 − p)
/// ```
/// In inference both passes are the identity. `p = 1` zeroes everything, as in PyTorch.
///
/// ## The mask
/// `k` for element `i` (spatial: channel `c`) of the batch's example `e = exampleOffset + n` is
/// drawn from a hash of `(context.seed, salt, context.step, e, i)`, not from a generator's
/// sequence: so the mask is the same however the batch is sliced and however many threads run,
/// and it changes from step to step and from layer to layer (`salt` is drawn from the build
/// generator when a spec builds the layer). The element is dropped when the hash's top 53 bits,
/// read as a fraction of 2⁵³, fall below `p`.
///
/// `mask` keeps the factors `k/(1 − p)` of the last training forward, `[N·C·H·W]` (spatial:
/// `[N·C]`), in example-major order; `backward` multiplies by them. `presetMask` replaces the
/// hash with given keep flags (for tests against PyTorch given the same mask).
public final class Dropout<Scalar: NetworkScalar>: Layer {
    /// `p`, the probability of zeroing an element (or a plane).
    public let probability: Double
    /// Whether whole `H·W` planes are dropped (`Dropout2d`), rather than single elements.
    public let spatial: Bool
    /// This layer's contribution to the hash, so two layers do not drop the same positions.
    public let salt: UInt64
    /// Keep flags to use instead of the hash in training forwards: one per element of the
    /// batch (spatial: one per `(n, c)`), example-major; nil (the default) for the hash.
    public var presetMask: [Bool]?
    /// `k/(1 − p)` per element (spatial: per plane) from the last training forward.
    public private(set) var mask: [Scalar] = []

    public var kind: String { spatial ? "Dropout2d" : "Dropout" }
    public var settings: String { "p \(probability)" }

    /// Creates a dropout layer with a given salt.
    public init(probability: Double, spatial: Bool = false, salt: UInt64) {
        precondition((0...1).contains(probability), "dropout probability \(probability) outside [0, 1]")
        self.probability = probability
        self.spatial = spatial
        self.salt = salt
    }

    /// Creates a dropout layer whose salt is the next draw of `generator`.
    public convenience init(probability: Double, spatial: Bool = false, using generator: inout SeededGenerator) {
        self.init(probability: probability, spatial: spatial, salt: generator.next())
    }

    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        if spatial && inputShape.count != 3 {
            throw ShapeError("Dropout2d drops channel planes and expects input CxHxW, got \(describe(shape: inputShape))")
        }
        return inputShape
    }

    /// The factor `k/(1 − p)` that a kept element is multiplied by.
    private var keptScale: Scalar { probability < 1 ? Scalar(1 / (1 - probability)) : 0 }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func forward(_ input: Tensor<Scalar>, into output: inout Tensor<Scalar>, context: StepContext) {
        guard context.isTraining else {
            output.assign(input)
            return
        }
        output.resize(to: input.shape)
        let n = input.batchSize
        let exampleSize = input.count / max(n, 1)
        let planeSize = spatial ? input.shape[2] * input.shape[3] : 1
        let units = exampleSize / planeSize        // mask entries per example
        if mask.count != n * units { mask = [Scalar](repeating: 0, count: n * units) }
        if let presetMask {
            precondition(presetMask.count == mask.count, "presetMask has \(presetMask.count) flags, the batch needs \(mask.count)")
            let scale = keptScale
            for i in 0..<mask.count { mask[i] = presetMask[i] ? scale : 0 }
        } else {
            // Drop when the hash's top 53 bits are below p·2⁵³ (p = 1: all of them).
            let threshold = UInt64((probability * 0x1p53).rounded(.down))
            let base = DropoutHash.mix(DropoutHash.mix(context.seed ^ salt) ^ UInt64(truncatingIfNeeded: context.step))
            mask.withUnsafeMutableBufferPointer { m in
                let work = DrawMask(mask: m.baseAddress!, units: units, base: base, firstExample: context.exampleOffset,
                                    threshold: threshold, scale: keptScale)
                Parallel.forEach(n, work)
            }
        }
        input.scalars.withUnsafeBufferPointer { x in
            output.scalars.withUnsafeMutableBufferPointer { y in
                mask.withUnsafeBufferPointer { m in
                    applyMask(m.baseAddress!, planeSize: planeSize, to: x.baseAddress!, into: y.baseAddress!, count: x.count)
                }
            }
        }
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func backward(input: Tensor<Scalar>, output: Tensor<Scalar>, outputGradient: Tensor<Scalar>,
                         inputGradient: inout Tensor<Scalar>?, context: StepContext) {
        guard inputGradient != nil else { return }
        guard context.isTraining else {
            inputGradient!.assign(outputGradient)
            return
        }
        inputGradient!.resize(to: input.shape)
        let planeSize = spatial ? input.shape[2] * input.shape[3] : 1
        precondition(mask.count * planeSize == input.count, "Dropout backward without its training forward")
        outputGradient.scalars.withUnsafeBufferPointer { dy in
            inputGradient!.scalars.withUnsafeMutableBufferPointer { dx in
                mask.withUnsafeBufferPointer { m in
                    applyMask(m.baseAddress!, planeSize: planeSize, to: dy.baseAddress!, into: dx.baseAddress!, count: dy.count)
                }
            }
        }
    }

    /// `destination = source · mask`, one mask entry per `planeSize` consecutive elements.
    @inline(__always)
    private func applyMask(_ mask: UnsafePointer<Scalar>, planeSize: Int, to source: UnsafePointer<Scalar>,
                           into destination: UnsafeMutablePointer<Scalar>, count: Int) {
        if planeSize == 1 {
            for i in 0..<count { destination[i] = source[i] * mask[i] }
            return
        }
        for unit in 0..<(count / planeSize) {
            let factor = mask[unit], offset = unit * planeSize
            for j in offset..<(offset + planeSize) { destination[j] = source[j] * factor }
        }
    }
}

/// The mixing function of dropout's hash: SplitMix64's finalizer (a bijection of 64-bit words
/// whose every output bit depends on every input bit).
enum DropoutHash {
    @inline(__always)
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// One example's mask entries (one work item): entry `i` of example `e` is kept when
/// `mix(mix(base ^ e) ^ i) >> 11 ≥ threshold`.
private struct DrawMask<Scalar: NetworkScalar>: ParallelWork {
    let mask: UnsafeMutablePointer<Scalar>
    let units: Int, base: UInt64, firstExample: Int, threshold: UInt64, scale: Scalar

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    func callAsFunction(_ n: Int) {
        let example = DropoutHash.mix(base ^ UInt64(truncatingIfNeeded: firstExample + n))
        let row = mask + n * units
        for i in 0..<units {
            row[i] = DropoutHash.mix(example ^ UInt64(i)) >> 11 >= threshold ? scale : 0
        }
    }
}

// MARK: - Specs

/// `{"type": "dropout", "p": 0.5}`: inverted dropout of single elements (`nn.Dropout(p)`).
public struct DropoutSpec: LayerSpecKind {
    public static let typeName = "dropout"
    public static let keysHelp = "p (0.5)"
    public var probability: Double

    public init(probability: Double = 0.5) { self.probability = probability }
    public init(reading reader: inout SpecReader) throws(SpecError) {
        self.init(probability: try reader.number("p", default: 0.5, in: 0...1))
    }
    public var jsonKeys: [String: Any] { ["p": probability] }

    public func makeLayer<Scalar: NetworkScalar>(inputShape: [Int], path: String, using generator: inout SeededGenerator) throws(ShapeError) -> any Layer<Scalar> {
        Dropout<Scalar>(probability: probability, using: &generator)
    }
}

/// `{"type": "dropout2d", "p": 0.5}`: dropout of whole channel planes of a `CxHxW` input
/// (`nn.Dropout2d(p)`).
public struct Dropout2DSpec: LayerSpecKind {
    public static let typeName = "dropout2d"
    public static let aliases = ["spatial_dropout"]
    public static let keysHelp = "p (0.5)"
    public var probability: Double

    public init(probability: Double = 0.5) { self.probability = probability }
    public init(reading reader: inout SpecReader) throws(SpecError) {
        self.init(probability: try reader.number("p", default: 0.5, in: 0...1))
    }
    public var jsonKeys: [String: Any] { ["p": probability] }

    public func makeLayer<Scalar: NetworkScalar>(inputShape: [Int], path: String, using generator: inout SeededGenerator) throws(ShapeError) -> any Layer<Scalar> {
        guard inputShape.count == 3 else {
            throw ShapeError("dropout2d drops channel planes and needs a CxHxW input, got \(describe(shape: inputShape)) (use dropout)")
        }
        return Dropout<Scalar>(probability: probability, spatial: true, using: &generator)
    }
}

extension LayerSpec {
    /// A `dropout` layer spec.
    public static func dropout(probability: Double = 0.5) -> LayerSpec { LayerSpec(DropoutSpec(probability: probability)) }
    /// A `dropout2d` layer spec.
    public static func dropout2d(probability: Double = 0.5) -> LayerSpec { LayerSpec(Dropout2DSpec(probability: probability)) }
}
