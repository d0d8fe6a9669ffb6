/// A 2-D convolution (cross-correlation, as in PyTorch) with zero padding and a stride.
///
/// For one image `x: [Cin, H, W]`, weight `W: [Cout, Cin, kh, kw]` and bias `b: [Cout]`:
/// ```
/// y[o, u, v] = b[o] + Σ_{c,i,j} W[o, c, i, j] · x[c, u·s − p + i, v·s − p + j]
/// ```
/// computed as one GEMM per image on the patch matrix `col = im2col(x)` (`[Cin·kh·kw, Ho·Wo]`):
/// ```
/// forward:   Y = W · col + b 1ᵀ                    Y: [Cout, Ho·Wo]   (m = Cout, n = Ho·Wo, k = Cin·kh·kw)
/// backward:  ∂L/∂W += ∂L/∂Y · colᵀ                 [Cout, Cin·kh·kw]
///            ∂L/∂b += ∂L/∂Y · 1                    [Cout]
///            ∂L/∂x  = col2im(Wᵀ · ∂L/∂Y)           [Cin, H, W]
/// ```
/// The backward pass recomputes `col` from the saved input rather than keeping `N` patch
/// matrices alive between the passes. A 1x1 kernel with stride 1 and no padding skips
/// im2col: the image itself is the patch matrix. Groups of images run in parallel
/// (`Parallel`); results do not depend on the thread count.
public final class Conv2D<Scalar: NetworkScalar>: Layer {
    public let inputChannels: Int, outputChannels: Int
    public let kernelSize: Int, stride: Int, padding: Int
    /// `weight`: `[Cout, Cin, kh, kw]` (PyTorch's layout); `bias`: `[Cout]`.
    public let weight: Parameter<Scalar>, bias: Parameter<Scalar>
    /// Images per work item. Fixed — not derived from the thread count — so that ∂W and ∂b,
    /// summed image by image within a group and then group by group, come out bit-identical
    /// however many threads run the groups.
    static var imagesPerGroup: Int { 4 }
    /// Each group's patch matrix (`[C·kh·kw, Ho·Wo]`), reused across steps.
    private let patchScratch = Scratch<Scalar>()
    /// Each group's `∂L/∂col`, reused.
    private let patchGradientScratch = Scratch<Scalar>()
    /// Each group's partial `∂L/∂W` and `∂L/∂b`, reused.
    private let partialScratch = Scratch<Scalar>()

    public var kind: String { "Conv2D" }
    public var settings: String {
        "\(kernelSize)x\(kernelSize), \(inputChannels)→\(outputChannels)"
            + (stride != 1 ? ", stride \(stride)" : "") + (padding != 0 ? ", pad \(padding)" : "")
    }
    public var parameters: [Parameter<Scalar>] { [weight, bias] }

    /// Creates a layer with the course's He-style weights `N(0, 1) · scale / √(kh·kw·Cin/2)`
    /// and zero biases (the CIFAR-10 starter uses `scale = 0.1`).
    public init(
        inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
        initScale: Scalar = 1, using generator: inout SeededGenerator
    ) {
        precondition(inputChannels > 0 && outputChannels > 0 && kernelSize > 0 && stride > 0 && padding >= 0)
        self.inputChannels = inputChannels
        self.outputChannels = outputChannels
        self.kernelSize = kernelSize
        self.stride = stride
        self.padding = padding
        let fanIn = Scalar(kernelSize * kernelSize * inputChannels)
        weight = Parameter(name: "weight", value: .randomNormal(
            shape: [outputChannels, inputChannels, kernelSize, kernelSize],
            standardDeviation: initScale / (fanIn / 2).squareRoot(), using: &generator))
        bias = Parameter(name: "bias", value: Tensor<Scalar>(shape: [outputChannels]))
    }

    private func geometry(_ shape: [Int]) -> ConvolutionGeometry {
        ConvolutionGeometry(channels: inputChannels, height: shape[shape.count - 2], width: shape[shape.count - 1],
                            kernelHeight: kernelSize, kernelWidth: kernelSize, stride: stride, padding: padding)
    }

    private var isPointwise: Bool { kernelSize == 1 && stride == 1 && padding == 0 }

    /// One image's patch matrix: the image itself for a 1x1 kernel with stride 1 and no
    /// padding, else its `im2col` unfolding written into `scratch`.
    @inline(__always)
    private func patchMatrix(
        _ image: UnsafePointer<Scalar>, _ g: ConvolutionGeometry, scratch: UnsafeMutablePointer<Scalar>
    ) -> UnsafePointer<Scalar> {
        if isPointwise { return image }
        im2col(image, g, into: scratch)
        return UnsafePointer(scratch)
    }

    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        guard inputShape.count == 3, inputShape[0] == inputChannels else {
            throw ShapeError("Conv2D(\(settings)) expects input \(inputChannels)xHxW, got \(describe(shape: inputShape))")
        }
        let g = geometry(inputShape)
        guard g.height + 2 * padding >= kernelSize, g.width + 2 * padding >= kernelSize else {
            throw ShapeError("Conv2D(\(settings)) kernel does not fit input \(describe(shape: inputShape))")
        }
        return [outputChannels, g.outputHeight, g.outputWidth]
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func forward(_ input: Tensor<Scalar>, into output: inout Tensor<Scalar>) {
        let g = geometry(input.shape)
        let n = input.batchSize
        let (k, spatial) = (g.patchSize, g.outputHeight * g.outputWidth)
        let (inputStride, outputStride) = (inputChannels * g.height * g.width, outputChannels * spatial)
        output.resize(to: [n, outputChannels, g.outputHeight, g.outputWidth])
        let groups = (n + Self.imagesPerGroup - 1) / Self.imagesPerGroup
        let scratchSize = isPointwise ? 0 : k * spatial
        let columns = patchScratch.reserve(max(groups * scratchSize, 1))
        input.scalars.withUnsafeBufferPointer { x in
            weight.value.scalars.withUnsafeBufferPointer { w in
                bias.value.scalars.withUnsafeBufferPointer { b in
                    output.scalars.withUnsafeMutableBufferPointer { y in
                        let (x, w, b, y) = (x.baseAddress!, w.baseAddress!, b.baseAddress!, y.baseAddress!)
                        Parallel.forEach(groups) { group in
                            let scratch = columns + group * scratchSize
                            for image in imageRange(of: group, batch: n) {
                                let patches = patchMatrix(x + image * inputStride, g, scratch: scratch)
                                let yi = y + image * outputStride
                                // Each output plane starts at its bias; then Y += W · col.
                                for o in 0..<outputChannels { (yi + o * spatial).update(repeating: b[o], count: spatial) }
                                Scalar.gemm(transposeA: false, transposeB: false, m: outputChannels, n: spatial, k: k,
                                            a: w, lda: k, b: patches, ldb: spatial, c: yi, ldc: spatial, accumulate: true)
                            }
                        }
                    }
                }
            }
        }
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func backward(input: Tensor<Scalar>, output: Tensor<Scalar>, outputGradient: Tensor<Scalar>, inputGradient: inout Tensor<Scalar>?) {
        let g = geometry(input.shape)
        let n = input.batchSize
        let (k, spatial) = (g.patchSize, g.outputHeight * g.outputWidth)
        let (inputStride, outputStride) = (inputChannels * g.height * g.width, outputChannels * spatial)
        let groups = (n + Self.imagesPerGroup - 1) / Self.imagesPerGroup
        let scratchSize = isPointwise ? 0 : k * spatial
        let columns = patchScratch.reserve(max(groups * scratchSize, 1))
        let columnGradients = patchGradientScratch.reserve(max(groups * scratchSize, 1))
        let weightCount = outputChannels * k
        let partials = partialScratch.reserve(groups * (weightCount + outputChannels))
        let wantsInputGradient = inputGradient != nil
        // Take the gradient's storage out of the optional (no copy) and put it back at the end.
        var dxStorage = inputGradient.take()?.scalars ?? []
        if wantsInputGradient && dxStorage.count != input.count { dxStorage = [Scalar](repeating: 0, count: input.count) }
        defer { if wantsInputGradient { inputGradient = Tensor<Scalar>(shape: input.shape, scalars: dxStorage) } }

        input.scalars.withUnsafeBufferPointer { x in
            outputGradient.scalars.withUnsafeBufferPointer { dy in
                weight.value.scalars.withUnsafeBufferPointer { w in
                    dxStorage.withUnsafeMutableBufferPointer { dx in
                        let (x, dy, w, dx) = (x.baseAddress!, dy.baseAddress!, w.baseAddress!, dx.baseAddress)
                        Parallel.forEach(groups) { group in
                            let (col, dcol) = (columns + group * scratchSize, columnGradients + group * scratchSize)
                            let dw = partials + group * (weightCount + outputChannels), db = dw + weightCount
                            dw.update(repeating: 0, count: weightCount + outputChannels)
                            for image in imageRange(of: group, batch: n) {
                                let patches = patchMatrix(x + image * inputStride, g, scratch: col)
                                let dyi = dy + image * outputStride
                                // ∂L/∂W += ∂L/∂Y · colᵀ;  ∂L/∂b += row sums of ∂L/∂Y
                                Scalar.gemm(transposeA: false, transposeB: true, m: outputChannels, n: k, k: spatial,
                                            a: dyi, lda: spatial, b: patches, ldb: spatial, c: dw, ldc: k, accumulate: true)
                                for o in 0..<outputChannels { db[o] += sum(dyi + o * spatial, count: spatial) }
                                guard wantsInputGradient, let dx else { continue }
                                // ∂L/∂x = col2im(Wᵀ · ∂L/∂Y)  (for a 1x1 kernel, Wᵀ · ∂L/∂Y directly)
                                let dxi = dx + image * inputStride
                                Scalar.gemm(transposeA: true, transposeB: false, m: k, n: spatial, k: outputChannels,
                                            a: w, lda: k, b: dyi, ldb: spatial, c: isPointwise ? dxi : dcol, ldc: spatial,
                                            accumulate: false)
                                if !isPointwise {
                                    dxi.update(repeating: 0, count: inputStride)
                                    col2im(dcol, g, into: dxi)
                                }
                            }
                        }
                    }
                }
            }
        }
        // Add the groups' partial gradients in group order (the same order for any thread count).
        weight.gradient.scalars.withUnsafeMutableBufferPointer { dw in
            bias.gradient.scalars.withUnsafeMutableBufferPointer { db in
                for group in 0..<groups {
                    let partial = partials + group * (weightCount + outputChannels)
                    for i in 0..<weightCount { dw[i] += partial[i] }
                    for o in 0..<outputChannels { db[o] += partial[weightCount + o] }
                }
            }
        }
    }

    /// The images of one work item.
    @inline(__always)
    private func imageRange(of group: Int, batch: Int) -> Range<Int> {
        group * Self.imagesPerGroup ..< min(batch, (group + 1) * Self.imagesPerGroup)
    }
}
