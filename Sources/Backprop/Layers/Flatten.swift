/// Reshapes `[N, C, H, W]` to `[N, C·H·W]` in `(c, h, w)` order — PyTorch's `nn.Flatten()`.
///
/// Data are already contiguous in that order (NCHW), so forward and backward only copy.
public final class Flatten<Scalar: NetworkScalar>: Layer {
    public var kind: String { "Flatten" }

    /// Creates a flatten layer.
    public init() {}

    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] { [inputShape.reduce(1, *)] }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func forward(_ input: Tensor<Scalar>, into output: inout Tensor<Scalar>, context: StepContext) {
        output.resize(input.batchSize, input.count / max(input.batchSize, 1))
        output.scalars.withUnsafeMutableBufferPointer { y in
            _ = input.scalars.withUnsafeBufferPointer { y.update(fromContentsOf: $0) }
        }
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func backward(input: Tensor<Scalar>, output: Tensor<Scalar>, outputGradient: Tensor<Scalar>,
                         inputGradient: inout Tensor<Scalar>?, context: StepContext) {
        guard inputGradient != nil else { return }
        inputGradient!.resize(to: input.shape)
        inputGradient!.scalars.withUnsafeMutableBufferPointer { dx in
            _ = outputGradient.scalars.withUnsafeBufferPointer { dx.update(fromContentsOf: $0) }
        }
    }
}

/// `{"type": "flatten"}`.
public struct FlattenSpec: LayerSpecKind {
    public static let typeName = "flatten"
    public static let keysHelp = "no keys"
    public init() {}
    public init(reading reader: inout SpecReader) throws(SpecError) {}
    public var jsonKeys: [String: Any] { [:] }
    public func makeLayer<Scalar: NetworkScalar>(inputShape: [Int], path: String, using generator: inout SeededGenerator) throws(ShapeError) -> any Layer<Scalar> {
        Flatten<Scalar>()
    }
}

extension LayerSpec {
    /// A `flatten` layer spec.
    public static var flatten: LayerSpec { LayerSpec(FlattenSpec()) }
}
