/// The mean of each channel plane: `[N, C, H, W]` → `[N, C]`, a flat output that feeds a
/// dense layer directly.
///
/// ```
/// forward:   y[c] = 1/(H·W) · Σ_{h,w} x[c, h, w]
/// backward:  ∂L/∂x[c, h, w] = ∂L/∂y[c] / (H·W)
/// ```
/// In PyTorch this is two modules, `nn.AdaptiveAvgPool2d(1)` and `nn.Flatten()` (or
/// `x.mean(dim=(2, 3))`); neither has parameters, but an `nn.Sequential` counts both, so name
/// the layers after it (the spec's `"name"`) to keep parameter paths in step with PyTorch's.
public final class GlobalAvgPool2D<Scalar: NetworkScalar>: Layer {
    public var kind: String { "GlobalAvgPool2D" }

    /// Creates a global average pooling layer.
    public init() {}

    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        guard inputShape.count == 3 else {
            throw ShapeError("GlobalAvgPool2D expects input CxHxW, got \(describe(shape: inputShape))")
        }
        return [inputShape[0]]
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func forward(_ input: Tensor<Scalar>, into output: inout Tensor<Scalar>, context: StepContext) {
        let (n, c, planeSize) = (input.shape[0], input.shape[1], input.shape[2] * input.shape[3])
        output.resize(n, c)
        let scale = 1 / Scalar(planeSize)
        input.scalars.withUnsafeBufferPointer { x in
            output.scalars.withUnsafeMutableBufferPointer { y in
                for plane in 0..<(n * c) { y[plane] = sum(x.baseAddress! + plane * planeSize, count: planeSize) * scale }
            }
        }
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func backward(input: Tensor<Scalar>, output: Tensor<Scalar>, outputGradient: Tensor<Scalar>,
                         inputGradient: inout Tensor<Scalar>?, context: StepContext) {
        guard inputGradient != nil else { return }
        inputGradient!.resize(to: input.shape)
        let planeSize = input.shape[2] * input.shape[3]
        let scale = 1 / Scalar(planeSize)
        outputGradient.scalars.withUnsafeBufferPointer { dy in
            inputGradient!.scalars.withUnsafeMutableBufferPointer { dx in
                for plane in 0..<dy.count {
                    (dx.baseAddress! + plane * planeSize).update(repeating: dy[plane] * scale, count: planeSize)
                }
            }
        }
    }
}

/// `{"type": "global_avgpool2d"}`: `CxHxW` → `C`.
public struct GlobalAvgPool2DSpec: LayerSpecKind {
    public static let typeName = "global_avgpool2d"
    public static let aliases = ["globalavgpool2d", "global_avgpool"]
    public static let keysHelp = "no keys"
    public init() {}
    public init(reading reader: inout SpecReader) throws(SpecError) {}
    public var jsonKeys: [String: Any] { [:] }
    public func makeLayer<Scalar: NetworkScalar>(inputShape: [Int], path: String, using generator: inout SeededGenerator) throws(ShapeError) -> any Layer<Scalar> {
        GlobalAvgPool2D<Scalar>()
    }
}

extension LayerSpec {
    /// A `global_avgpool2d` layer spec.
    public static var globalAvgPool2d: LayerSpec { LayerSpec(GlobalAvgPool2DSpec()) }
}
