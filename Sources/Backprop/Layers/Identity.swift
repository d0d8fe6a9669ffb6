/// Passes its input through unchanged (PyTorch's `nn.Identity`): a placeholder, e.g. where a
/// variant of a network drops a layer but keeps the others' indexes.
///
/// ```
/// forward:   y = x
/// backward:  ∂L/∂x = ∂L/∂y
/// ```
public final class Identity<Scalar: NetworkScalar>: Layer {
    public var kind: String { "Identity" }

    /// Creates an identity layer.
    public init() {}

    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] { inputShape }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func forward(_ input: Tensor<Scalar>, into output: inout Tensor<Scalar>, context: StepContext) {
        output.assign(input)
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func backward(input: Tensor<Scalar>, output: Tensor<Scalar>, outputGradient: Tensor<Scalar>,
                         inputGradient: inout Tensor<Scalar>?, context: StepContext) {
        guard inputGradient != nil else { return }
        inputGradient!.assign(outputGradient)
    }
}

/// `{"type": "identity"}`.
public struct IdentitySpec: LayerSpecKind {
    public static let typeName = "identity"
    public static let keysHelp = "no keys"
    public init() {}
    public init(reading reader: inout SpecReader) throws(SpecError) {}
    public var jsonKeys: [String: Any] { [:] }
    public func makeLayer<Scalar: NetworkScalar>(inputShape: [Int], path: String, using generator: inout SeededGenerator) throws(ShapeError) -> any Layer<Scalar> {
        Identity<Scalar>()
    }
}

extension LayerSpec {
    /// An `identity` layer spec.
    public static var identity: LayerSpec { LayerSpec(IdentitySpec()) }
}
