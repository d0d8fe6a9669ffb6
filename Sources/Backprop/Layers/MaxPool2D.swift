/// Max pooling over `size x size` windows moved by `stride`, per channel.
///
/// ```
/// forward:   y[c, u, v] = max_{i,j < size} x[c, u·s + i, v·s + j]
///            argmax[c, u, v] = the offset of that maximum in x (first one on ties)
/// backward:  ∂L/∂x[argmax[c, u, v]] += ∂L/∂y[c, u, v]      all other entries 0
/// ```
/// The argmax of the last forward pass is this layer's saved state (`[N, C, Ho, Wo]`, offsets
/// into the input batch); only the winning input of each window receives gradient.
public final class MaxPool2D<Scalar: NetworkScalar>: Layer {
    public let size: Int, stride: Int
    /// Flat input offsets of each output's maximum, from the last `forward`.
    public private(set) var argmax: [Int32] = []

    public var kind: String { "MaxPool2D" }
    public var settings: String { "\(size)x\(size), stride \(stride)" }

    /// Creates a pooling layer; the course uses `size: 2, stride: 2`.
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
        precondition(input.count < Int(Int32.max), "MaxPool2D input too large for 32-bit argmax offsets")
        output.resize(n, c, oh, ow)
        if argmax.count != output.count { argmax = [Int32](repeating: 0, count: output.count) }
        let (size, stride) = (self.size, self.stride)
        input.scalars.withUnsafeBufferPointer { x in
            output.scalars.withUnsafeMutableBufferPointer { y in
                argmax.withUnsafeMutableBufferPointer { arg in
                    // Planes are independent: spread them over the threads in fixed chunks.
                    let work = PoolPlanes(x: x.baseAddress!, y: y.baseAddress!, argmax: arg.baseAddress!, planes: n * c,
                                          height: h, width: w, size: size, stride: stride)
                    Parallel.forEach(work.parts, work)
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
        let (planes, h, w) = (input.shape[0] * input.shape[1], input.shape[2], input.shape[3])
        argmax.withUnsafeBufferPointer { arg in
            outputGradient.scalars.withUnsafeBufferPointer { dy in
                inputGradient!.scalars.withUnsafeMutableBufferPointer { dx in
                    // A window never leaves its plane: each chunk of planes zeroes its part of
                    // ∂x and routes its own gradients, in parallel.
                    let work = UnpoolPlanes(argmax: arg.baseAddress!, dy: dy.baseAddress!, dx: dx.baseAddress!, planes: planes,
                                            planeSize: h * w, outputsPerPlane: dy.count / max(planes, 1))
                    Parallel.forEach(work.parts, work)
                }
            }
        }
    }
}

/// The backward pass of a chunk of 16 planes: `∂x = 0`, then `∂x[argmax[i]] += ∂y[i]` (windows
/// may overlap and share a winner, hence `+=`).
private struct UnpoolPlanes<Scalar: NetworkScalar>: ParallelWork {
    let argmax: UnsafePointer<Int32>, dy: UnsafePointer<Scalar>, dx: UnsafeMutablePointer<Scalar>
    let planes: Int, planeSize: Int, outputsPerPlane: Int
    var parts: Int { (planes + PoolPlanes<Scalar>.chunk - 1) / PoolPlanes<Scalar>.chunk }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    func callAsFunction(_ part: Int) {
        let chunk = PoolPlanes<Scalar>.chunk
        let first = part * chunk, end = min(planes, (part + 1) * chunk)
        (dx + first * planeSize).update(repeating: 0, count: (end - first) * planeSize)
        for i in (first * outputsPerPlane)..<(end * outputsPerPlane) { dx[Int(argmax[i])] += dy[i] }
    }
}

/// Max pooling of a chunk of 16 planes (`[H][W]` → `[Ho][Wo]`), one work item of `forward`.
private struct PoolPlanes<Scalar: NetworkScalar>: ParallelWork {
    let x: UnsafePointer<Scalar>, y: UnsafeMutablePointer<Scalar>, argmax: UnsafeMutablePointer<Int32>
    let planes: Int, height: Int, width: Int, size: Int, stride: Int
    static var chunk: Int { 16 }
    var parts: Int { (planes + Self.chunk - 1) / Self.chunk }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    func callAsFunction(_ part: Int) {
        let (h, w) = (height, width)
        let (oh, ow) = ((h - size) / stride + 1, (w - size) / stride + 1)
        for plane in (part * Self.chunk)..<min(planes, (part + 1) * Self.chunk) {
            let base = plane * h * w
            var out = plane * oh * ow
            for u in 0..<oh {
                var first = 0
                if Scalar.self == Float.self && size == 2 && stride == 2 && ow >= 8 {
                    pool2x2Row(UnsafeRawPointer(x + base + 2 * u * w).assumingMemoryBound(to: Float.self),
                               origin: base + 2 * u * w, width: w, outputWidth: ow,
                               into: UnsafeMutableRawPointer(y + out).assumingMemoryBound(to: Float.self),
                               argmax: argmax + out)
                    first = ow
                } else if Scalar.self == Float.self && size == 2 && stride == 2 && base + (2 * u + 1) * w + 16 <= planes * h * w {
                    // A row of fewer than 8 outputs (15x15 → 7x7 planes): the 8 windows' inputs
                    // run on into the next row, which is read but not used.
                    let top = UnsafeRawPointer(x + base + 2 * u * w)
                    let (best, offset) = pool2x2Windows(top: top, bottom: top + 4 * w, width: w)
                    let origin = Int32(truncatingIfNeeded: base + 2 * u * w)
                    let row = UnsafeMutableRawPointer(y + out).assumingMemoryBound(to: Float.self)
                    for v in 0..<ow {
                        row[v] = best[v]
                        argmax[out + v] = origin &+ Int32(truncatingIfNeeded: 2 * v) &+ offset[v]
                    }
                    first = ow
                }
                for v in first..<ow {
                    var best = base + u * stride * w + v * stride
                    var bestValue = x[best]
                    for i in 0..<size {
                        for j in 0..<size {
                            // Selects rather than branches: on real data the
                            // winner's position is unpredictable.
                            let at = base + (u * stride + i) * w + v * stride + j
                            let value = x[at]
                            let better = value > bestValue
                            best = better ? at : best
                            bestValue = better ? value : bestValue
                        }
                    }
                    y[out + v] = bestValue
                    argmax[out + v] = Int32(truncatingIfNeeded: best)
                }
                out += ow
            }
        }
    }
}

/// One output row of 2x2, stride-2 pooling in `Float`, eight outputs at a time (a row's last eight
/// overlap the previous ones when `ow` is not a multiple of 8; they are recomputed
/// identically). Visits the window in the scalar loop's order — (0,0), (0,1), (1,0), (1,1) —
/// keeping the first maximum, so both paths pick the same winners.
@inline(__always)
private func pool2x2Row(
    _ x: UnsafePointer<Float>, origin: Int, width w: Int, outputWidth ow: Int,
    into y: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int32>
) {
    let top = UnsafeRawPointer(x), bottom = UnsafeRawPointer(x + w)
    let lane = SIMD8<Int32>(0, 2, 4, 6, 8, 10, 12, 14)
    var v = 0
    while v < ow {
        let start = min(v, ow - 8)
        let (best, offset) = pool2x2Windows(top: top + 8 * start, bottom: bottom + 8 * start, width: w)
        UnsafeMutableRawPointer(y + start).storeBytes(of: best, as: SIMD8<Float>.self)
        let first = SIMD8<Int32>(repeating: Int32(truncatingIfNeeded: origin + 2 * start))
        UnsafeMutableRawPointer(argmax + start).storeBytes(of: first &+ lane &+ offset, as: SIMD8<Int32>.self)
        v += 8
    }
}

/// Eight adjacent 2x2 windows whose top rows start at `top` and bottom rows at `bottom`: their
/// maxima and each winner's offset from its window's first input (0, 1, `w` or `w + 1`), visiting
/// the window in the scalar loop's order and keeping the first maximum.
@inline(__always)
private func pool2x2Windows(top: UnsafeRawPointer, bottom: UnsafeRawPointer, width w: Int) -> (SIMD8<Float>, SIMD8<Int32>) {
    let a = top.loadUnaligned(as: SIMD16<Float>.self), b = bottom.loadUnaligned(as: SIMD16<Float>.self)
    var best = a.evenHalf, offset = SIMD8<Int32>(repeating: 0)
    var better = a.oddHalf .> best
    best.replace(with: a.oddHalf, where: better); offset.replace(with: 1, where: better)
    better = b.evenHalf .> best
    best.replace(with: b.evenHalf, where: better); offset.replace(with: Int32(w), where: better)
    better = b.oddHalf .> best
    best.replace(with: b.oddHalf, where: better); offset.replace(with: Int32(w + 1), where: better)
    return (best, offset)
}

/// `{"type": "maxpool2d", "size": 2, "stride": 2}`.
public struct MaxPool2DSpec: LayerSpecKind {
    public static let typeName = "maxpool2d"
    public static let aliases = ["maxpooling", "maxpool"]
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
        MaxPool2D<Scalar>(size: size, stride: stride)
    }
}

extension LayerSpec {
    /// A `maxpool2d` layer spec.
    public static func maxPool2d(size: Int = 2, stride: Int = 2) -> LayerSpec { LayerSpec(MaxPool2DSpec(size: size, stride: stride)) }
}

/// The shape rule of a pooling window (`MaxPool2D`, `AvgPool2D`): `size x size` windows moved by
/// `stride` without padding, `[C, ⌊(H − size)/stride⌋ + 1, ⌊(W − size)/stride⌋ + 1]`.
/// - Parameter layer: the layer as errors name it, e.g. `MaxPool2D(2x2, stride 2)`.
func windowOutputShape(_ inputShape: [Int], size: Int, stride: Int, layer: String) throws(ShapeError) -> [Int] {
    guard inputShape.count == 3 else {
        throw ShapeError("\(layer) expects input CxHxW, got \(describe(shape: inputShape))")
    }
    guard inputShape[1] >= size, inputShape[2] >= size else {
        throw ShapeError("\(layer) window does not fit input \(describe(shape: inputShape))")
    }
    return [inputShape[0], (inputShape[1] - size) / stride + 1, (inputShape[2] - size) / stride + 1]
}
