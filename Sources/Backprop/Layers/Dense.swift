/// A fully connected layer: every output is a weighted sum of every input plus a bias.
///
/// For a batch `X` of `N` examples stored as rows (`[N, in]`):
/// ```
/// forward:   Y  = X Wᵀ + 1 bᵀ              Y: [N, out]
/// backward:  ∂L/∂X = ∂L/∂Y · W              [N, in]
///            ∂L/∂W = (∂L/∂Y)ᵀ · X           [out, in]   (accumulated)
///            ∂L/∂b = (∂L/∂Y)ᵀ · 1           [out]       (accumulated)
/// ```
/// This is the report's `Y = W X + b` with examples as rows instead of columns; `W` is
/// `[out, in]` like PyTorch's `nn.Linear.weight`.
public final class Dense<Scalar: NetworkScalar>: Layer {
    /// Up to this many outputs, `Float` forward passes take dot products instead of GEMM.
    static var dotProductOutputs: Int { 16 }
    public let inputSize: Int
    public let outputSize: Int
    /// `weight`: `[out, in]`; `bias`: `[out]`.
    public let weight: Parameter<Scalar>, bias: Parameter<Scalar>

    public var kind: String { "Dense" }
    public var settings: String { "\(inputSize)→\(outputSize)" }
    public var parameters: [Parameter<Scalar>] { usesBias ? [weight, bias] : [weight] }
    /// `false` for a layer without bias (PyTorch's `bias=False`): the bias stays zero and is
    /// not a parameter (its gradient, accumulated by the kernels, is never read).
    public let usesBias: Bool

    /// Creates a layer with He-style weights `N(0, 1) · scale / √(in/2)` and zero biases
    /// (the course's initialisation; `scale` is 1 there).
    public init(
        inputSize: Int, outputSize: Int, initScale: Scalar = 1, bias: Bool = true, using generator: inout SeededGenerator
    ) {
        precondition(inputSize > 0 && outputSize > 0)
        self.inputSize = inputSize
        self.outputSize = outputSize
        let std = initScale / (Scalar(inputSize) / 2).squareRoot()
        weight = Parameter(name: "weight", value: .randomNormal(shape: [outputSize, inputSize], standardDeviation: std, using: &generator))
        self.bias = Parameter(name: "bias", value: Tensor<Scalar>(shape: [outputSize]), decays: false)
        self.usesBias = bias
    }

    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        guard inputShape.reduce(1, *) == inputSize else {
            throw ShapeError("Dense(\(inputSize)→\(outputSize)) expects \(inputSize) input features, got \(describe(shape: inputShape)) = \(inputShape.reduce(1, *))")
        }
        return [outputSize]
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func forward(_ input: Tensor<Scalar>, into output: inout Tensor<Scalar>, context: StepContext) {
        let n = input.batchSize
        precondition(input.count == n * inputSize, "Dense input \(input.shape)")
        output.resize(n, outputSize)
        input.scalars.withUnsafeBufferPointer { x in
            weight.value.scalars.withUnsafeBufferPointer { w in
                bias.value.scalars.withUnsafeBufferPointer { b in
                    output.scalars.withUnsafeMutableBufferPointer { y in
                        // Start each row from the bias, then Y += X Wᵀ.
                        for row in 0..<n { (y.baseAddress! + row * outputSize).update(from: b.baseAddress!, count: outputSize) }
                        if Scalar.self == Float.self && outputSize <= Self.dotProductOutputs {
                            GEMM.multiplyTransposedSmall(
                                m: n, n: outputSize, k: inputSize, a: floats(x.baseAddress!), lda: inputSize,
                                b: floats(w.baseAddress!), ldb: inputSize, c: floats(y.baseAddress!), ldc: outputSize)
                            return
                        }
                        Scalar.gemm(transposeA: false, transposeB: true, m: n, n: outputSize, k: inputSize,
                                      a: x.baseAddress!, lda: inputSize, b: w.baseAddress!, ldb: inputSize,
                                      c: y.baseAddress!, ldc: outputSize, accumulate: true)
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
        outputGradient.scalars.withUnsafeBufferPointer { dy in
            input.scalars.withUnsafeBufferPointer { x in
                // ∂L/∂W += (∂L/∂Y)ᵀ X
                weight.gradient.scalars.withUnsafeMutableBufferPointer { dw in
                    Scalar.gemm(transposeA: true, transposeB: false, m: outputSize, n: inputSize, k: n,
                                  a: dy.baseAddress!, lda: outputSize, b: x.baseAddress!, ldb: inputSize,
                                  c: dw.baseAddress!, ldc: inputSize, accumulate: true)
                }
            }
            // ∂L/∂b += column sums of ∂L/∂Y
            bias.gradient.scalars.withUnsafeMutableBufferPointer { db in
                for row in 0..<n {
                    for j in 0..<outputSize { db[j] += dy[row * outputSize + j] }
                }
            }
            guard inputGradient != nil else { return }
            inputGradient!.resize(to: input.shape)
            weight.value.scalars.withUnsafeBufferPointer { w in
                inputGradient!.scalars.withUnsafeMutableBufferPointer { dx in
                    // ∂L/∂X = ∂L/∂Y W
                    Scalar.gemm(transposeA: false, transposeB: false, m: n, n: inputSize, k: outputSize,
                                  a: dy.baseAddress!, lda: outputSize, b: w.baseAddress!, ldb: inputSize,
                                  c: dx.baseAddress!, ldc: inputSize, accumulate: false)
                }
            }
        }
    }
}

/// `{"type": "dense", "out_features": 10}`; `frozen` (its weight and bias are not trained:
/// `isTrainable == false`) is optional.
public struct DenseSpec: LayerSpecKind {
    public static let typeName = "dense"
    public static let aliases = ["fully_connected", "linear"]
    public static let keysHelp = "out_features, bias (true), init_scale (1), frozen (false)"
    public var outputFeatures: Int
    public var initScale: Double
    public var bias: Bool
    /// Whether the layer's parameters are frozen (`isTrainable == false`).
    public var frozen: Bool

    public init(outputFeatures: Int, initScale: Double = 1, bias: Bool = true, frozen: Bool = false) {
        self.outputFeatures = outputFeatures
        self.initScale = initScale
        self.bias = bias
        self.frozen = frozen
    }

    public init(reading reader: inout SpecReader) throws(SpecError) {
        self.init(outputFeatures: try reader.integer("out_features", maximum: 1 << 20),
                  initScale: try reader.positiveNumber("init_scale", default: 1), bias: try reader.bool("bias", default: true),
                  frozen: try reader.bool("frozen", default: false))
    }

    public var jsonKeys: [String: Any] {
        var keys: [String: Any] = ["out_features": outputFeatures]
        if initScale != 1 { keys["init_scale"] = initScale }
        if !bias { keys["bias"] = false }
        if frozen { keys["frozen"] = true }
        return keys
    }

    public func makeLayer<Scalar: NetworkScalar>(inputShape: [Int], path: String, using generator: inout SeededGenerator) throws(ShapeError) -> any Layer<Scalar> {
        guard inputShape.count == 1 else { throw ShapeError("dense needs a flat input, got \(describe(shape: inputShape))") }
        try NetworkSpec.reserveParameters(elementCount([inputShape[0], outputFeatures]), for: "dense \(inputShape[0])→\(outputFeatures)")
        let layer = Dense<Scalar>(inputSize: inputShape[0], outputSize: outputFeatures, initScale: Scalar(initScale), bias: bias, using: &generator)
        if frozen { for p in [layer.weight, layer.bias] { p.isTrainable = false } }
        return layer
    }
}

extension LayerSpec {
    /// A `dense` layer spec.
    public static func dense(outputFeatures: Int, initScale: Double = 1, bias: Bool = true) -> LayerSpec {
        LayerSpec(DenseSpec(outputFeatures: outputFeatures, initScale: initScale, bias: bias))
    }
}
