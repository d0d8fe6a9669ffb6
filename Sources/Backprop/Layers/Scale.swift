/// Multiplication by a constant, elementwise (airbench scales its logits by 1/9).
///
/// ```
/// forward:   y = a·x
/// backward:  ∂L/∂x = a·∂L/∂y
/// ```
/// In PyTorch, a one-line module `forward(x) = x * a` (airbench's `Mul`); it has no parameters.
public final class Scale<Scalar: NetworkScalar>: Layer {
    /// `a`.
    public let factor: Double

    public var kind: String { "Scale" }
    public var settings: String { "×\(factor)" }

    /// Creates a layer that multiplies by `factor`.
    public init(factor: Double) {
        precondition(factor.isFinite)
        self.factor = factor
    }

    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] { inputShape }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func forward(_ input: Tensor<Scalar>, into output: inout Tensor<Scalar>, context: StepContext) {
        output.resize(to: input.shape)
        multiply(input, into: &output)
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func backward(input: Tensor<Scalar>, output: Tensor<Scalar>, outputGradient: Tensor<Scalar>,
                         inputGradient: inout Tensor<Scalar>?, context: StepContext) {
        guard inputGradient != nil else { return }
        inputGradient!.resize(to: input.shape)
        multiply(outputGradient, into: &inputGradient!)
    }

    @inline(__always)
    private func multiply(_ source: Tensor<Scalar>, into destination: inout Tensor<Scalar>) {
        let a = Scalar(factor)
        source.scalars.withUnsafeBufferPointer { x in
            destination.scalars.withUnsafeMutableBufferPointer { y in
                for i in 0..<x.count { y[i] = a * x[i] }
            }
        }
    }
}

/// `{"type": "scale", "factor": 0.1111111111111111}`: multiplies by a constant.
public struct ScaleSpec: LayerSpecKind {
    public static let typeName = "scale"
    public static let aliases = ["mul"]
    public static let keysHelp = "factor"
    public var factor: Double

    public init(factor: Double) { self.factor = factor }
    public init(reading reader: inout SpecReader) throws(SpecError) {
        guard reader.object["factor"] != nil else { throw SpecError("\(reader.location): missing \"factor\"") }
        self.init(factor: try reader.number("factor", default: 1, in: -1e30...1e30))
    }
    public var jsonKeys: [String: Any] { ["factor": factor] }

    public func makeLayer<Scalar: NetworkScalar>(inputShape: [Int], path: String, using generator: inout SeededGenerator) throws(ShapeError) -> any Layer<Scalar> {
        Scale<Scalar>(factor: factor)
    }
}

extension LayerSpec {
    /// A `scale` layer spec.
    public static func scale(factor: Double) -> LayerSpec { LayerSpec(ScaleSpec(factor: factor)) }
}
