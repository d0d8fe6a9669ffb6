/// The maximum of each channel plane: `[N, C, H, W]` → `[N, C]`, a flat output that feeds a
/// dense layer directly.
///
/// ```
/// forward:   y[c] = max_{h,w} x[c, h, w]        argmax[c] = its offset in the plane (first one on ties)
/// backward:  ∂L/∂x[c, argmax[c]] = ∂L/∂y[c]      all other entries 0
/// ```
/// The argmax of the last forward pass (`[N·C]`, offsets within each plane) is this layer's
/// saved state. In PyTorch this is `nn.AdaptiveMaxPool2d(1)` and `nn.Flatten()` (or
/// `x.amax(dim=(2, 3))`); an `nn.Sequential` counts both modules, so name the layers after it
/// (the spec's `"name"`) to keep parameter paths in step with PyTorch's.
public final class GlobalMaxPool2D<Scalar: NetworkScalar>: Layer {
    /// Offsets within each plane of its maximum, from the last `forward`.
    public private(set) var argmax: [Int32] = []

    public var kind: String { "GlobalMaxPool2D" }

    /// Creates a global max pooling layer.
    public init() {}

    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        guard inputShape.count == 3 else {
            throw ShapeError("GlobalMaxPool2D expects input CxHxW, got \(describe(shape: inputShape))")
        }
        return [inputShape[0]]
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func forward(_ input: Tensor<Scalar>, into output: inout Tensor<Scalar>, context: StepContext) {
        let (n, c, planeSize) = (input.shape[0], input.shape[1], input.shape[2] * input.shape[3])
        precondition(planeSize < Int(Int32.max), "GlobalMaxPool2D plane too large for 32-bit offsets")
        output.resize(n, c)
        if argmax.count != n * c { argmax = [Int32](repeating: 0, count: n * c) }
        input.scalars.withUnsafeBufferPointer { x in
            output.scalars.withUnsafeMutableBufferPointer { y in
                for plane in 0..<(n * c) {
                    let xp = x.baseAddress! + plane * planeSize
                    var (best, bestValue) = (0, xp[0])
                    for i in 1..<max(planeSize, 1) where xp[i] > bestValue { (best, bestValue) = (i, xp[i]) }
                    y[plane] = bestValue
                    argmax[plane] = Int32(best)
                }
            }
        }
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func backward(input: Tensor<Scalar>, output: Tensor<Scalar>, outputGradient: Tensor<Scalar>,
                         inputGradient: inout Tensor<Scalar>?, context: StepContext) {
        guard inputGradient != nil else { return }
        inputGradient!.resize(to: input.shape)
        inputGradient!.zero()
        let planeSize = input.shape[2] * input.shape[3]
        outputGradient.scalars.withUnsafeBufferPointer { dy in
            inputGradient!.scalars.withUnsafeMutableBufferPointer { dx in
                for plane in 0..<dy.count { dx[plane * planeSize + Int(argmax[plane])] = dy[plane] }
            }
        }
    }
}

/// `{"type": "global_maxpool2d"}`: `CxHxW` → `C`.
public struct GlobalMaxPool2DSpec: LayerSpecKind {
    public static let typeName = "global_maxpool2d"
    public static let aliases = ["globalmaxpool2d", "global_maxpool"]
    public static let keysHelp = "no keys"
    public init() {}
    public init(reading reader: inout SpecReader) throws(SpecError) {}
    public var jsonKeys: [String: Any] { [:] }
    public func makeLayer<Scalar: NetworkScalar>(inputShape: [Int], path: String, using generator: inout SeededGenerator) throws(ShapeError) -> any Layer<Scalar> {
        GlobalMaxPool2D<Scalar>()
    }
}

extension LayerSpec {
    /// A `global_maxpool2d` layer spec.
    public static var globalMaxPool2d: LayerSpec { LayerSpec(GlobalMaxPool2DSpec()) }
}
