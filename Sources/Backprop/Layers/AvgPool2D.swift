/// Average pooling over `size x size` windows moved by `stride`, per channel, without padding
/// (PyTorch's `nn.AvgPool2d(size, stride)`; the output size follows `MaxPool2D`'s rule).
///
/// ```
/// forward:   y[c, u, v] = 1/size² · Σ_{i,j < size} x[c, u·s + i, v·s + j]
/// backward:  ∂L/∂x[c, u·s + i, v·s + j] += ∂L/∂y[c, u, v] / size²     for every window holding it
/// ```
/// Planes (`[H][W]` → `[Ho][Wo]`) are independent; the layer keeps no state between passes.
public final class AvgPool2D<Scalar: NetworkScalar>: Layer {
    public let size: Int, stride: Int

    public var kind: String { "AvgPool2D" }
    public var settings: String { "\(size)x\(size), stride \(stride)" }

    /// Creates a pooling layer.
    public init(size: Int = 2, stride: Int = 2) {
        precondition(size > 0 && stride > 0)
        self.size = size
        self.stride = stride
    }

    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        try windowOutputShape(inputShape, size: size, stride: stride, layer: "\(kind)(\(settings))")
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func forward(_ input: Tensor<Scalar>, into output: inout Tensor<Scalar>, context: StepContext) {
        let (n, c, h, w) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let (oh, ow) = ((h - size) / stride + 1, (w - size) / stride + 1)
        output.resize(n, c, oh, ow)
        let (size, stride) = (self.size, self.stride)
        let scale = 1 / Scalar(size * size)
        input.scalars.withUnsafeBufferPointer { x in
            output.scalars.withUnsafeMutableBufferPointer { y in
                for plane in 0..<(n * c) {
                    let (xp, yp) = (x.baseAddress! + plane * h * w, y.baseAddress! + plane * oh * ow)
                    for u in 0..<oh {
                        for v in 0..<ow {
                            var total: Scalar = 0
                            for i in 0..<size {
                                let row = xp + (u * stride + i) * w + v * stride
                                for j in 0..<size { total += row[j] }
                            }
                            yp[u * ow + v] = total * scale
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
        guard inputGradient != nil else { return }
        inputGradient!.resize(to: input.shape)
        inputGradient!.zero()
        let (planes, h, w) = (input.shape[0] * input.shape[1], input.shape[2], input.shape[3])
        let (oh, ow) = (outputGradient.shape[2], outputGradient.shape[3])
        let (size, stride) = (self.size, self.stride)
        let scale = 1 / Scalar(size * size)
        outputGradient.scalars.withUnsafeBufferPointer { dy in
            inputGradient!.scalars.withUnsafeMutableBufferPointer { dx in
                for plane in 0..<planes {
                    let (dxp, dyp) = (dx.baseAddress! + plane * h * w, dy.baseAddress! + plane * oh * ow)
                    for u in 0..<oh {
                        for v in 0..<ow {
                            // Windows may overlap (stride < size): their shares add.
                            let share = dyp[u * ow + v] * scale
                            for i in 0..<size {
                                let row = dxp + (u * stride + i) * w + v * stride
                                for j in 0..<size { row[j] += share }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `{"type": "avgpool2d", "size": 2, "stride": 2}`.
public struct AvgPool2DSpec: LayerSpecKind {
    public static let typeName = "avgpool2d"
    public static let aliases = ["avgpool"]
    public static let keysHelp = "size (2), stride (= size)"
    public var size: Int, stride: Int

    public init(size: Int = 2, stride: Int? = nil) {
        self.size = size
        self.stride = stride ?? size
    }

    public init(reading reader: inout SpecReader) throws(SpecError) {
        let size = try reader.integer("size", default: 2, maximum: 1 << 10)
        self.init(size: size, stride: try reader.integer("stride", default: size, maximum: 1 << 10))
    }

    public var jsonKeys: [String: Any] { ["size": size, "stride": stride] }

    public func makeLayer<Scalar: NetworkScalar>(inputShape: [Int], path: String, using generator: inout SeededGenerator) throws(ShapeError) -> any Layer<Scalar> {
        AvgPool2D<Scalar>(size: size, stride: stride)
    }
}

extension LayerSpec {
    /// An `avgpool2d` layer spec.
    public static func avgPool2d(size: Int = 2, stride: Int = 2) -> LayerSpec { LayerSpec(AvgPool2DSpec(size: size, stride: stride)) }
}
