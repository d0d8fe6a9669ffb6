import Foundation

/// The Gaussian error linear unit, elementwise: exact (`nn.GELU()`) or with PyTorch's tanh
/// approximation (`nn.GELU(approximate='tanh')`).
///
/// ```
/// exact:     y = x·Φ(x) = x/2 · (1 + erf(x/√2))
///            ∂L/∂x = ∂L/∂y · (Φ(x) + x·φ(x))                    φ(x) = e^(−x²/2)/√(2π)
/// tanh:      u = √(2/π)·(x + 0.044715·x³)       t = tanh(u)       y = x/2 · (1 + t)
///            ∂L/∂x = ∂L/∂y · (½(1 + t) + ½x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²))
/// ```
/// In `Double` each value is computed with the C library's `erf`, `exp` and `tanh`: the
/// reference. In `Float` a vector of values at a time with `FastGELU`'s vector `erf` (a rational
/// approximation) and `exp` (range reduction and a polynomial), which agree with the reference
/// to about 1e-7 (the test `GELU's Float kernel matches the Double reference` holds them
/// together); chunks run in parallel. The backward pass reads the saved input.
public final class GELU<Scalar: NetworkScalar>: Layer {
    public typealias Approximation = GELUApproximation

    public let approximation: Approximation

    public var kind: String { "GELU" }
    public var settings: String { approximation == .tanh ? "tanh approximation" : "" }

    /// Creates a GELU (exact by default, as PyTorch's).
    public init(approximation: Approximation = .exact) {
        self.approximation = approximation
    }

    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] { inputShape }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func forward(_ input: Tensor<Scalar>, into output: inout Tensor<Scalar>, context: StepContext) {
        output.resize(to: input.shape)
        let tanhForm = approximation == .tanh
        input.scalars.withUnsafeBufferPointer { x in
            output.scalars.withUnsafeMutableBufferPointer { y in
                if Scalar.self == Float.self {
                    FastGELU.run(FastGELU(x: floats(x.baseAddress!), gradient: nil, y: floats(y.baseAddress!), count: x.count, tanhForm: tanhForm))
                    return
                }
                for i in 0..<x.count { y[i] = Scalar(GELUReference.value(Double(x[i]), tanhForm: tanhForm)) }
            }
        }
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func backward(input: Tensor<Scalar>, output: Tensor<Scalar>, outputGradient: Tensor<Scalar>,
                         inputGradient: inout Tensor<Scalar>?, context: StepContext) {
        guard inputGradient != nil else { return }
        inputGradient!.resize(to: input.shape)
        let tanhForm = approximation == .tanh
        input.scalars.withUnsafeBufferPointer { x in
            outputGradient.scalars.withUnsafeBufferPointer { dy in
                inputGradient!.scalars.withUnsafeMutableBufferPointer { dx in
                    if Scalar.self == Float.self {
                        FastGELU.run(FastGELU(x: floats(x.baseAddress!), gradient: floats(dy.baseAddress!), y: floats(dx.baseAddress!),
                                              count: x.count, tanhForm: tanhForm))
                        return
                    }
                    for i in 0..<x.count { dx[i] = Scalar(Double(dy[i]) * GELUReference.slope(Double(x[i]), tanhForm: tanhForm)) }
                }
            }
        }
    }
}

/// GELU and its derivative in `Double` with the C library's functions: the reference.
enum GELUReference {
    static let inverseSqrt2 = 0.7071067811865475244
    static let inverseSqrt2Pi = 0.3989422804014326779
    static let sqrt2OverPi = 0.7978845608028654
    static let cubic = 0.044715

    /// `x·Φ(x)`, or its tanh approximation.
    @inline(__always)
    static func value(_ x: Double, tanhForm: Bool) -> Double {
        tanhForm ? 0.5 * x * (1 + tanh(sqrt2OverPi * (x + cubic * x * x * x))) : 0.5 * x * (1 + erf(x * inverseSqrt2))
    }

    /// `d/dx` of `value`.
    @inline(__always)
    static func slope(_ x: Double, tanhForm: Bool) -> Double {
        if tanhForm {
            let t = tanh(sqrt2OverPi * (x + cubic * x * x * x))
            return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * sqrt2OverPi * (1 + 3 * cubic * x * x)
        }
        return 0.5 * (1 + erf(x * inverseSqrt2)) + x * inverseSqrt2Pi * exp(-0.5 * x * x)
    }
}

/// GELU's `Float` kernel: one chunk of `y = gelu(x)` or, given `gradient`, of
/// `y = gradient · gelu′(x)`, a vector at a time (a short tail is padded into one vector).
struct FastGELU: ParallelWork {
    /// `KernelVector`: 16 lanes with AVX-512, 8 otherwise; each lane's arithmetic is the same.
    typealias Vector = KernelVector
    let x: UnsafePointer<Float>, gradient: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>
    let count: Int, tanhForm: Bool
    /// Elements per work item: large enough to amortize handing it to a thread.
    static var chunk: Int { 1 << 14 }

    static func run(_ work: FastGELU) {
        Parallel.forEach((work.count + chunk - 1) / chunk, work)
    }

    func callAsFunction(_ part: Int) {
        let end = min(count, (part + 1) * Self.chunk)
        var i = part * Self.chunk
        let lanes = Vector.scalarCount
        while i + lanes <= end {
            let v = UnsafeRawPointer(x + i).loadUnaligned(as: Vector.self)
            var result = Self.evaluate(v, tanhForm: tanhForm, derivative: gradient != nil)
            if let gradient { result *= UnsafeRawPointer(gradient + i).loadUnaligned(as: Vector.self) }
            UnsafeMutableRawPointer(y + i).storeBytes(of: result, as: Vector.self)
            i += lanes
        }
        guard i < end else { return }
        var v = Vector(repeating: 0), g = Vector(repeating: 1)
        for lane in 0..<(end - i) {
            v[lane] = x[i + lane]
            if let gradient { g[lane] = gradient[i + lane] }
        }
        let result = Self.evaluate(v, tanhForm: tanhForm, derivative: gradient != nil) * g
        for lane in 0..<(end - i) { y[i + lane] = result[lane] }
    }

    /// `gelu(x)` or `gelu′(x)`, lane by lane.
    @inline(__always)
    static func evaluate(_ x: Vector, tanhForm: Bool, derivative: Bool) -> Vector {
        let half = Vector(repeating: 0.5)
        if tanhForm {
            // With E = e^{2u} and s = 1/(1 + E):  1 + t = 2E·s  and  1 − t² = 4E·s², which keep
            // their relative precision where t is near ±1 (1 − t² itself would cancel). 2u is
            // clamped to ±80, where t is ±1 in Float and E·s stays a normal number.
            let sqrt2OverPi = Vector(repeating: Float(GELUReference.sqrt2OverPi))
            let cubic = Vector(repeating: Float(GELUReference.cubic))
            let one = Vector(repeating: 1)
            let x2: Vector = x * x
            let u: Vector = sqrt2OverPi * x * (one + cubic * x2)
            let e: Vector = exp(clamp(u + u, -80, 80))
            let s: Vector = one / (one + e)
            let es: Vector = e * s
            if !derivative { return x * es }                 // x/2 · (1 + t)
            let du: Vector = sqrt2OverPi * (one + 3 * cubic * x2)
            return es + 2 * x * es * s * du                  // ½(1 + t) + ½x·(1 − t²)·du
        }
        let erfTerm: Vector = erf(x * Float(GELUReference.inverseSqrt2))
        let cdf: Vector = half * (1 + erfTerm)
        if !derivative { return x * cdf }
        let density: Vector = exp(-half * x * x) * Float(GELUReference.inverseSqrt2Pi)
        return cdf + x * density
    }

    /// `erf(x)`: a rational approximation `x·P(x²)/Q(x²)` on `[−4, 4]` (outside it erf is ±1 in
    /// `Float`), Eigen's `generic_fast_erf_float`; absolute error about 1e-7.
    @inline(__always)
    static func erf(_ a: Vector) -> Vector {
        let x = clamp(a, -4, 4)
        let x2 = x * x
        var p = x2 * Vector(repeating: -2.72614225801306e-10) + Vector(repeating: 2.77068142495902e-08)
        p = x2 * p + Vector(repeating: -2.10102402082508e-06)
        p = x2 * p + Vector(repeating: -5.69250639462346e-05)
        p = x2 * p + Vector(repeating: -7.34990630326855e-04)
        p = x2 * p + Vector(repeating: -2.95459980854025e-03)
        p = x2 * p + Vector(repeating: -1.60960333262415e-02)
        var q = x2 * Vector(repeating: -1.45660718464996e-05) + Vector(repeating: -2.13374055278905e-04)
        q = x2 * q + Vector(repeating: -1.68282697438203e-03)
        q = x2 * q + Vector(repeating: -7.37332916720468e-03)
        q = x2 * q + Vector(repeating: -1.42647390514189e-02)
        return x * p / q
    }

    /// `v` with each lane limited to `[lower, upper]` (a NaN stays NaN), by a comparison and a
    /// blend per side: the stdlib's `pointwiseMin`/`pointwiseMax` go lane by lane through
    /// `Float.minimum`'s NaN rules and were not inlined (a call and 8 branches per lane).
    @inline(__always)
    static func clamp(_ v: Vector, _ lower: Float, _ upper: Float) -> Vector {
        let low = Vector(repeating: lower), high = Vector(repeating: upper)
        return v.replacing(with: low, where: v .< low).replacing(with: high, where: v .> high)
    }

    /// `eˣ` (Cephes' `expf`): `x = n·ln2 + r` with `|r| ≤ ln2/2`, `eʳ` by a degree-6 polynomial,
    /// then `2ⁿ` put into the exponent bits. Inputs are clamped to `[−87.3, 88]` (the finite,
    /// normal results); error about 1 ulp.
    @inline(__always)
    static func exp(_ a: Vector) -> Vector {
        let x = clamp(a, -87.3, 88.0)
        // n = round(x·log₂e): adding 1.5·2²³ leaves the rounded integer in the low mantissa bits
        // (a lane loop of `rounded()` would not vectorize).
        let shifted: Vector = x * 1.44269504088896341 + 12582912
        let n: Vector = shifted - 12582912
        // ln 2 in two parts, so n·ln2 is subtracted without rounding error.
        let r: Vector = x - n * 0.693359375 + n * 2.12194440e-4
        var p = Vector(repeating: 1.9875691500e-4)
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        p = p * r * r + r + 1
        let exponent = (unsafeBitCast(shifted, to: Vector.MaskStorage.self) &- 0x4B40_0000 &+ 127) &<< 23
        return p * unsafeBitCast(exponent, to: Vector.self)
    }
}

/// How GELU computes `Φ` (the spec key `approximate`, named as PyTorch's argument).
public enum GELUApproximation: String, Sendable, CaseIterable {
    /// The exact `Φ(x) = (1 + erf(x/√2))/2` (`approximate='none'`).
    case exact = "none"
    /// `Φ(x) ≈ (1 + tanh(√(2/π)·(x + 0.044715·x³)))/2` (`approximate='tanh'`).
    case tanh
}

/// `{"type": "gelu", "approximate": "none"}` (`"tanh"` for PyTorch's tanh approximation).
public struct GELUSpec: LayerSpecKind {
    public static let typeName = "gelu"
    public static let keysHelp = "approximate (\"none\" | \"tanh\")"
    public var approximation: GELUApproximation

    public init(approximation: GELUApproximation = .exact) { self.approximation = approximation }
    public init(reading reader: inout SpecReader) throws(SpecError) {
        let name = try reader.choice("approximate", GELUApproximation.allCases.map(\.rawValue), default: "none")
        self.init(approximation: GELUApproximation(rawValue: name)!)
    }
    public var jsonKeys: [String: Any] { approximation == .exact ? [:] : ["approximate": approximation.rawValue] }

    public func makeLayer<Scalar: NetworkScalar>(inputShape: [Int], path: String, using generator: inout SeededGenerator) throws(ShapeError) -> any Layer<Scalar> {
        GELU<Scalar>(approximation: approximation)
    }
}

extension LayerSpec {
    /// A `gelu` layer spec.
    public static func gelu(approximation: GELUApproximation = .exact) -> LayerSpec {
        LayerSpec(GELUSpec(approximation: approximation))
    }
}
