/// The rectified linear unit, elementwise.
///
/// ```
/// forward:   y = max(x, 0)
/// backward:  ∂L/∂x = ∂L/∂y · [x > 0]      (the subgradient at 0 is taken as 0)
/// ```
/// `x > 0` exactly when `y > 0`, so the backward pass reads the saved output.
public final class ReLU<Scalar: NetworkScalar>: Layer {
    public var kind: String { "ReLU" }

    /// Creates a ReLU.
    public init() {}

    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] { inputShape }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func forward(_ input: Tensor<Scalar>, into output: inout Tensor<Scalar>) {
        output.resize(to: input.shape)
        input.scalars.withUnsafeBufferPointer { x in
            output.scalars.withUnsafeMutableBufferPointer { y in
                for i in 0..<x.count { y[i] = max(x[i], 0) }
            }
        }
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func backward(input: Tensor<Scalar>, output: Tensor<Scalar>, outputGradient: Tensor<Scalar>, inputGradient: inout Tensor<Scalar>?) {
        guard inputGradient != nil else { return }
        inputGradient!.resize(to: input.shape)
        output.scalars.withUnsafeBufferPointer { y in
            outputGradient.scalars.withUnsafeBufferPointer { dy in
                inputGradient!.scalars.withUnsafeMutableBufferPointer { dx in
                    for i in 0..<y.count { dx[i] = y[i] > 0 ? dy[i] : 0 }
                }
            }
        }
    }
}
