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
///
/// In `Float`, stride-1 convolutions whose output channels fill whole kernel vectors (16 lanes with AVX-512, 8 with AVX2) take the
/// direct channels-last path instead (`DirectConvolution`: the same sums without the patch
/// matrix); the im2col path above stays as its reference and serves `Double` and other shapes.
public final class Conv2D<Scalar: NetworkScalar>: Layer {
    public let inputChannels: Int, outputChannels: Int
    public let kernelSize: Int, stride: Int, padding: Int
    /// `weight`: `[Cout, Cin, kh, kw]` (PyTorch's layout); `bias`: `[Cout]`.
    public let weight: Parameter<Scalar>, bias: Parameter<Scalar>
    /// Images per work item for a batch of `n`: at least 4, and at most 16 groups, so that the
    /// groups' partial `∂W` (one per group, e.g. 2.4 MB for 256→256 3x3 filters) stay few at
    /// large batches. Derived from the batch size alone — never the thread count — so that ∂W
    /// and ∂b, summed image by image within a group and then group by group, come out
    /// bit-identical however many threads run the groups.
    static func imagesPerGroup(batch n: Int) -> Int { max(4, (n + 15) / 16) }

    /// The number of work items for a batch of `n`.
    static func groupCount(batch n: Int) -> Int { (n + imagesPerGroup(batch: n) - 1) / imagesPerGroup(batch: n) }
    /// Each group's patch matrix (`[C·kh·kw, Ho·Wo]`), reused across steps.
    private let patchScratch = Scratch<Scalar>()
    /// Each group's `∂L/∂col`, reused.
    private let patchGradientScratch = Scratch<Scalar>()
    /// Each group's partial `∂L/∂W` and `∂L/∂b`, reused.
    private let partialScratch = Scratch<Scalar>()
    /// The direct path's packed weights: the forward kernel's, then the input gradient's.
    private let packedWeightScratch = Scratch<Scalar>()
    /// Where the direct path's patch entries sit in padded input planes, and in padded `∂Y` planes.
    private let patchOffsets = PatchOffsetTable(), gradientPatchOffsets = PatchOffsetTable()
    /// Which kernels compute a `Float` pass (`.automatic` picks by shape; tests force each path
    /// to compare them). `Double` always takes the per-image im2col path.
    public var path: ConvolutionPath = .automatic
    /// How many images of a work item the direct path copies and convolves at once (nil: as
    /// many as fit in a megabyte, or in a core's L2 where that is smaller,
    /// `DirectConvolution.imagesTogether`). No result depends on it; tests set it to check that,
    /// benchmarks to measure it.
    public var imagesTogether: Int?
    /// How many tiles the Winograd `∂W` transforms at once (nil:
    /// `WinogradConvolution.gradientTiles`). No result depends on it; tests set it to check that.
    var weightGradientTiles: Int?
    /// The output tile of the Winograd kernels: 4 (`Winograd4x4`, F(4x4, 3x3)), 2
    /// (`WinogradConvolution`, F(2x2, 3x3)) or nil, by plane (`winogradTile(for:)`). No choice
    /// changes more than the rounding; benchmarks and tests set it to compare the two.
    public var winogradTile: Int?

    public var kind: String { "Conv2D" }
    public var settings: String {
        "\(kernelSize)x\(kernelSize), \(inputChannels)→\(outputChannels)"
            + (stride != 1 ? ", stride \(stride)" : "") + (padding != 0 ? ", pad \(padding)" : "")
    }
    public var parameters: [Parameter<Scalar>] { usesBias ? [weight, bias] : [weight] }
    /// `false` for a layer without bias (PyTorch's `bias=False`): the bias stays zero and is
    /// not a parameter (its gradient, accumulated by the kernels, is never read).
    public let usesBias: Bool

    /// Creates a layer with the course's He-style weights `N(0, 1) · scale / √(kh·kw·Cin/2)`
    /// and zero biases (the CIFAR-10 starter uses `scale = 0.1`); `initialization` may then
    /// replace filters by identity ("dirac") filters (see `Conv2DInitialization`). The He draw
    /// is made in every case, so later layers' weights do not depend on this choice.
    public init(
        inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
        initScale: Scalar = 1, bias: Bool = true, initialization: Conv2DInitialization = .he,
        using generator: inout SeededGenerator
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
        self.bias = Parameter(name: "bias", value: Tensor<Scalar>(shape: [outputChannels]), decays: false)
        self.usesBias = bias
        awaitsData = initialization == .whitening
        if initialization == .dirac || initialization == .heDirac {
            // torch.nn.init.dirac_: filter o < min(Cout, Cin) passes input channel o through
            // (a 1 at its kernel's centre, k/2 rounded down); `.dirac` zeroes the other filters.
            let (k, filterSize) = (kernelSize, inputChannels * kernelSize * kernelSize)
            let identities = initialization == .dirac ? outputChannels : min(outputChannels, inputChannels)
            weight.value.scalars.withUnsafeMutableBufferPointer { w in
                w.baseAddress!.update(repeating: 0, count: identities * filterSize)
                for o in 0..<min(outputChannels, inputChannels) { w[o * filterSize + (o * k + k / 2) * k + k / 2] = 1 }
            }
        }
    }

    /// Whether the weights are still to come from data (`Conv2DInitialization.whitening`, set by
    /// `initializeWhitening(from:)`; until then they are the He draw).
    public private(set) var awaitsData: Bool

    /// Sets the weights to whiten the k×k patches of `inputs` (`[N, Cin, H, W]`, a sample of
    /// the training inputs): `Whitening.filters`, computed in `Float`. The bias is left as it is.
    public func initializeWhitening(from inputs: Tensor<Scalar>) {
        precondition(inputs.shape.count == 4 && inputs.shape[1] == inputChannels)
        var sample = Tensor<Float>(shape: inputs.shape)
        for i in 0..<inputs.count { sample.scalars[i] = Float(inputs.scalars[i]) }
        let filters = Whitening.filters(for: sample, kernelSize: kernelSize, filters: outputChannels)
        for i in 0..<filters.count { weight.value.scalars[i] = Scalar(filters.scalars[i]) }
        awaitsData = false
    }

    /// Keeps the weights as they are: a whitening convolution whose weights were loaded (e.g.
    /// `Network.loadState(from:)` from a trained model) no longer awaits data.
    public func skipDataInitialization() {
        awaitsData = false
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
    public func forward(_ input: Tensor<Scalar>, into output: inout Tensor<Scalar>, context: StepContext) {
        let g = geometry(input.shape)
        let n = input.batchSize
        let (k, spatial) = (g.patchSize, g.outputHeight * g.outputWidth)
        let (inputStride, outputStride) = (inputChannels * g.height * g.width, outputChannels * spatial)
        output.resize(n, outputChannels, g.outputHeight, g.outputWidth)
        switch resolvedPath(g) {
        case .direct: forwardDirect(input, g, into: &output); return
        case .winograd: forwardWinograd(input, g, into: &output); return
        case .batchedGEMM: forwardBatched(input, g, into: &output); return
        case .automatic, .im2col: break
        }
        let groups = Self.groupCount(batch: n)
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
    public func backward(input: Tensor<Scalar>, output: Tensor<Scalar>, outputGradient: Tensor<Scalar>,
                         inputGradient: inout Tensor<Scalar>?, context: StepContext) {
        let g = geometry(input.shape)
        let n = input.batchSize
        let (k, spatial) = (g.patchSize, g.outputHeight * g.outputWidth)
        let (inputStride, outputStride) = (inputChannels * g.height * g.width, outputChannels * spatial)
        let groups = Self.groupCount(batch: n)
        let scratchSize = isPointwise ? 0 : k * spatial
        let columns = patchScratch.reserve(max(groups * scratchSize, 1))
        let columnGradients = patchGradientScratch.reserve(max(groups * scratchSize, 1))
        let weightCount = outputChannels * k
        let partials = partialScratch.reserve(groups * (weightCount + outputChannels))
        let wantsInputGradient = inputGradient != nil
        // A training step leaves out a frozen weight's gradient (airbench's whitening layer, whose
        // bias alone trains); ∂b is summed apart from ∂W, so it comes out the same either way.
        let wantsWeightGradient = weight.isTrainable || !context.skipsFrozenPrefix
        // Take the gradient's storage out of the optional (no copy) and put it back at the end.
        var dxStorage = inputGradient.take()?.scalars ?? []
        if wantsInputGradient && dxStorage.count != input.count { dxStorage = [Scalar](repeating: 0, count: input.count) }
        defer { if wantsInputGradient { inputGradient = Tensor<Scalar>(shape: input.shape, scalars: dxStorage) } }
        switch resolvedPath(g) {
        case .direct:
            dxStorage.withUnsafeMutableBufferPointer { dx in
                backwardDirect(input, g, outputGradient: outputGradient, inputGradient: wantsInputGradient ? dx.baseAddress : nil,
                               weightGradient: wantsWeightGradient)
            }
            return
        case .winograd:
            weightGradientWinograd(input, g, outputGradient: outputGradient, weightGradient: wantsWeightGradient)
            if wantsInputGradient {
                dxStorage.withUnsafeMutableBufferPointer { dx in inputGradientWinograd(outputGradient, g, into: dx.baseAddress!) }
            }
            return
        case .batchedGEMM:
            dxStorage.withUnsafeMutableBufferPointer { dx in
                backwardBatched(input, g, outputGradient: outputGradient, inputGradient: wantsInputGradient ? dx.baseAddress : nil,
                                weightGradient: wantsWeightGradient)
            }
            return
        case .automatic, .im2col: break
        }

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
                                let dyi = dy + image * outputStride
                                // ∂L/∂W += ∂L/∂Y · colᵀ;  ∂L/∂b += row sums of ∂L/∂Y
                                if wantsWeightGradient {
                                    let patches = patchMatrix(x + image * inputStride, g, scratch: col)
                                    Scalar.gemm(transposeA: false, transposeB: true, m: outputChannels, n: k, k: spatial,
                                                a: dyi, lda: spatial, b: patches, ldb: spatial, c: dw, ldc: k, accumulate: true)
                                }
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

    // MARK: Choosing the path

    /// The path a pass over inputs of geometry `g` takes: never `.automatic`.
    ///
    /// `Double` takes im2col. `Float` takes the Winograd kernels for 3x3 kernels with stride 1
    /// and padding 1 where the direct ones apply (output channels in whole vectors), the
    /// plane has at least `winogradMinimumPixels` and the channels and plane are large enough
    /// (`winogradPays`); else the direct kernels where they apply and an output
    /// plane has at least `directMinimumPixels` pixels (there they stream the image once,
    /// without a patch matrix), and the batched GEMM otherwise: small planes and wide channels
    /// (where one GEMM over many images' patches keeps the register tile full), strides,
    /// channel counts that do not fill vectors. A forced path that cannot run falls back the same way.
    func resolvedPath(_ g: ConvolutionGeometry) -> ConvolutionPath {
        guard Scalar.self == Float.self else { return .im2col }
        let direct = DirectConvolution.supports(outputChannels: outputChannels, kernelSize: kernelSize, stride: stride, padding: padding)
        let winograd = direct && WinogradConvolution.supports(kernelSize: kernelSize, stride: stride, padding: padding)
        switch path {
        case .im2col, .batchedGEMM: return path
        case .direct: return direct ? .direct : .batchedGEMM
        case .winograd: return winograd ? .winograd : direct ? .direct : .batchedGEMM
        case .automatic:
            if winograd && g.outputHeight * g.outputWidth >= Self.winogradMinimumPixels
                && Self.winogradPays(channels: min(inputChannels, outputChannels), width: g.outputWidth) {
                return .winograd
            }
            return direct && g.outputHeight * g.outputWidth >= Self.directMinimumPixels ? .direct : .batchedGEMM
        }
    }

    /// The smallest output plane the automatic choice sends to the direct kernels (measured:
    /// BENCHMARKS.md, "Convolution paths").
    static var directMinimumPixels: Int { 49 }

    /// The smallest output plane the automatic choice sends to the Winograd kernels: 3x3, where
    /// they still beat the direct ones by 5–10 % (BENCHMARKS.md, session 18).
    static var winogradMinimumPixels: Int { 9 }

    /// Whether the Winograd kernels beat the direct ones for a convolution with `channels` on its
    /// narrower side and planes `width` wide. They pay for their transforms (per channel) with
    /// shorter products (per pair of channels): they win with at least 64 channels on each side,
    /// and with 16 on planes at least 24 wide (12 tiles a row and more: cifar's 24→64 at 31x31,
    /// +17 %); they lose on mnist-fast's 24→48 at 14x14 and 48→96 at 7x7 by 10–15 % and tie on
    /// 16→16 at 16x16 (BENCHMARKS.md, session 18).
    static func winogradPays(channels: Int, width: Int) -> Bool {
        channels >= 64 || (channels >= 16 && width >= 24)
    }

    // MARK: The batched GEMM path (Float)

    /// Images per chunk of the batched path: at least 1,024 patch columns for the GEMM, fixed by
    /// the shape alone (so the sums, and the results, do not depend on the thread count).
    private func chunkImages(_ spatial: Int) -> Int { max(1, min(256, (1024 + spatial - 1) / spatial)) }

    /// `Y = W · col + b` over chunks of images: the chunk's patch matrices side by side
    /// (`[C·kh·kw, images·Ho·Wo]`, unfolded in parallel), one GEMM split by columns over the
    /// threads, then each image's planes copied out with the bias added.
    private func forwardBatched(_ input: Tensor<Scalar>, _ g: ConvolutionGeometry, into output: inout Tensor<Scalar>) {
        let n = input.batchSize
        let (k, spatial, cout) = (g.patchSize, g.outputHeight * g.outputWidth, outputChannels)
        let (inputStride, outputStride) = (inputChannels * g.height * g.width, cout * spatial)
        let chunk = chunkImages(spatial)
        let col = floats(patchScratch.reserve(k * chunk * spatial))
        let product = floats(patchGradientScratch.reserve(cout * chunk * spatial))
        input.scalars.withUnsafeBufferPointer { xs in
            weight.value.scalars.withUnsafeBufferPointer { ws in
                bias.value.scalars.withUnsafeBufferPointer { bs in
                    output.scalars.withUnsafeMutableBufferPointer { ys in
                        let (x, w, b, y) = (floats(xs.baseAddress!), floats(ws.baseAddress!), floats(bs.baseAddress!), floats(ys.baseAddress!))
                        for first in Swift.stride(from: 0, to: n, by: chunk) {
                            let count = min(chunk, n - first), width = min(chunk, n - first) * spatial
                            let images = BatchedColumns(x: x + first * inputStride, inputStride: inputStride, col: col,
                                                        spatial: spatial, width: width, g: g)
                            Parallel.forEach(count, images)
                            GEMM.multiply(transposeA: false, transposeB: false, m: cout, n: width, k: k, a: w, lda: k,
                                          b: col, ldb: width, c: product, ldc: width, accumulate: false, parallel: true)
                            let scatter = ScatterPlanes(product: product, width: width, spatial: spatial, channels: cout,
                                                        bias: b, y: y + first * outputStride)
                            Parallel.forEach(count, scatter)
                        }
                    }
                }
            }
        }
    }

    /// Over the same chunks: `∂Y` gathered into `[Cout, images·Ho·Wo]`, `∂W += ∂Y · colᵀ` and
    /// `∂b +=` its row sums (chunk after chunk: the same order for any thread count), and, when
    /// wanted, `∂col = Wᵀ · ∂Y` folded back onto each image (`col2im`).
    private func backwardBatched(
        _ input: Tensor<Scalar>, _ g: ConvolutionGeometry, outputGradient: Tensor<Scalar>, inputGradient: UnsafeMutablePointer<Scalar>?,
        weightGradient: Bool
    ) {
        let n = input.batchSize
        let (k, spatial, cout) = (g.patchSize, g.outputHeight * g.outputWidth, outputChannels)
        let (inputStride, outputStride) = (inputChannels * g.height * g.width, cout * spatial)
        let chunk = chunkImages(spatial)
        let col = floats(patchScratch.reserve(k * chunk * spatial))
        let gathered = floats(patchGradientScratch.reserve(cout * chunk * spatial))
        input.scalars.withUnsafeBufferPointer { xs in
            outputGradient.scalars.withUnsafeBufferPointer { dys in
                weight.value.scalars.withUnsafeBufferPointer { ws in
                    weight.gradient.scalars.withUnsafeMutableBufferPointer { dws in
                        bias.gradient.scalars.withUnsafeMutableBufferPointer { dbs in
                            let (x, dy, w) = (floats(xs.baseAddress!), floats(dys.baseAddress!), floats(ws.baseAddress!))
                            let (dw, db) = (floats(dws.baseAddress!), floats(dbs.baseAddress!))
                            for first in Swift.stride(from: 0, to: n, by: chunk) {
                                let count = min(chunk, n - first), width = min(chunk, n - first) * spatial
                                Parallel.forEach(count, GatherPlanes(dy: dy + first * outputStride, width: width, spatial: spatial,
                                                                     channels: cout, gathered: gathered))
                                if weightGradient {
                                    Parallel.forEach(count, BatchedColumns(x: x + first * inputStride, inputStride: inputStride, col: col,
                                                                           spatial: spatial, width: width, g: g))
                                    GEMM.multiply(transposeA: false, transposeB: true, m: cout, n: k, k: width, a: gathered, lda: width,
                                                  b: col, ldb: width, c: dw, ldc: k, accumulate: true, parallel: true)
                                }
                                for o in 0..<cout { db[o] += sum(gathered + o * width, count: width) }
                                guard let dx = inputGradient.map(floats) else { continue }
                                // ∂col overwrites col (no longer needed), then folds onto each image.
                                GEMM.multiply(transposeA: true, transposeB: false, m: k, n: width, k: cout, a: w, lda: k,
                                              b: gathered, ldb: width, c: col, ldc: width, accumulate: false, parallel: true)
                                Parallel.forEach(count, FoldColumns(col: col, spatial: spatial, width: width, g: g,
                                                                    dx: dx + first * inputStride, inputStride: inputStride))
                            }
                        }
                    }
                }
            }
        }
    }

    // MARK: The direct path (Float)

    /// `Y = conv(X) + b` through `DirectConvolution`, groups of images in parallel.
    private func forwardDirect(_ input: Tensor<Scalar>, _ g: ConvolutionGeometry, into output: inout Tensor<Scalar>) {
        let n = input.batchSize
        let (cin, cout, k, p) = (inputChannels, outputChannels, kernelSize, padding)
        let hp = g.height + 2 * p
        let rowStride = DirectConvolution.planeRowStride(outputWidth: g.outputWidth, kernelSize: k)
        let paddedCount = DirectConvolution.paddedPlanesCount(channels: cin, paddedHeight: hp, rowStride: rowStride)
        let groups = Self.groupCount(batch: n)
        let together = together(floatsPerImage: paddedCount, batch: n)
        let padded = floats(patchScratch.reserve(groups * together * paddedCount))
        let packed = floats(packedWeightScratch.reserve(DirectConvolution.packedPlaneWeightCount(outputs: cout, patchSize: g.patchSize)))
        let offsets = patchOffsets.table(channels: cin, kernelSize: k, paddedHeight: hp, rowStride: rowStride)
        weight.value.scalars.withUnsafeBufferPointer { w in
            DirectConvolution.packPlaneWeights(floats(w.baseAddress!), outputChannels: cout, inputChannels: cin, kernelSize: k,
                                               flippedForInputGradient: false, into: packed)
        }
        input.scalars.withUnsafeBufferPointer { x in
            bias.value.scalars.withUnsafeBufferPointer { b in
                output.scalars.withUnsafeMutableBufferPointer { y in
                    let work = DirectForwardGroup(
                        x: floats(x.baseAddress!), bias: floats(b.baseAddress!), y: floats(y.baseAddress!),
                        padded: padded, paddedCount: paddedCount, weights: packed, offsets: offsets, g: g, outputChannels: cout,
                        rowStride: rowStride,
                        batch: n, imagesPerGroup: Self.imagesPerGroup(batch: n), together: together)
                    Parallel.forEach(groups, work)
                }
            }
        }
    }

    /// `∂W`, `∂b` and (when `inputGradient` is given) `∂X` through `DirectConvolution`.
    ///
    /// Per image: channels-last copies of the padded input and of `∂Y` for
    /// `∂W += Σ xp·∂y` over pixels, `∂b +=` the planes' sums of `∂Y`, and `∂X` as the
    /// convolution of `∂Y`'s planes padded by `kh − 1 − p` with the flipped kernel. Each group
    /// sums its images into its own packed partial; the partials are added in group order.
    private func backwardDirect(
        _ input: Tensor<Scalar>, _ g: ConvolutionGeometry, outputGradient: Tensor<Scalar>, inputGradient: UnsafeMutablePointer<Scalar>?,
        weightGradient: Bool
    ) {
        let n = input.batchSize
        let (cin, cout, k, p) = (inputChannels, outputChannels, kernelSize, padding)
        let (ho, wo) = (g.outputHeight, g.outputWidth)
        let q = k - 1 - p  // the input-gradient convolution's padding
        let hq = ho + 2 * q
        let gradientRowStride = DirectConvolution.planeRowStride(outputWidth: g.width, kernelSize: k)
        let channelsLastCount = (g.height + 2 * p) * (g.width + 2 * p) * cin
        // Per group: ∂Y channels-last, then ∂Y's padded planes.
        let (gradientCount, gradientPlanesCount) = (ho * wo * cout, DirectConvolution.paddedPlanesCount(channels: cout, paddedHeight: hq, rowStride: gradientRowStride))
        let groups = Self.groupCount(batch: n)
        // The weight gradient's copies and the input gradient's planes are used one after the other.
        let together = together(floatsPerImage: max(channelsLastCount + gradientCount, gradientPlanesCount), batch: n)
        let weightCount = weight.value.count
        let padded = floats(patchScratch.reserve(groups * together * channelsLastCount))
        let gradients = floats(patchGradientScratch.reserve(groups * together * (gradientCount + gradientPlanesCount)))
        let partials = floats(partialScratch.reserve(groups * (weightCount + cout)))
        let flipped = floats(packedWeightScratch.reserve(DirectConvolution.packedPlaneWeightCount(outputs: cin, patchSize: cout * k * k)))
        let offsets = gradientPatchOffsets.table(channels: cout, kernelSize: k, paddedHeight: hq, rowStride: gradientRowStride)
        weight.value.scalars.withUnsafeBufferPointer { w in
            if inputGradient != nil {
                DirectConvolution.packPlaneWeights(floats(w.baseAddress!), outputChannels: cout, inputChannels: cin, kernelSize: k,
                                                   flippedForInputGradient: true, into: flipped)
            }
            input.scalars.withUnsafeBufferPointer { x in
                outputGradient.scalars.withUnsafeBufferPointer { dy in
                    let work = DirectBackwardGroup(
                        x: floats(x.baseAddress!), dy: floats(dy.baseAddress!),
                        dx: inputGradient.map(floats), weightGradient: weightGradient,
                        padded: padded, gradients: gradients, partials: partials,
                        flipped: flipped, offsets: offsets,
                        g: g, outputChannels: cout, gradientRowStride: gradientRowStride,
                        sizes: (channelsLastCount, gradientCount, gradientPlanesCount),
                        batch: n, imagesPerGroup: Self.imagesPerGroup(batch: n), together: together)
                    Parallel.forEach(groups, work)
                }
            }
        }
        // Add the groups' packed partials in group order, then unpack into ∂W.
        addGroupPartials(partials, groups: groups, count: weightCount + cout)
        if weightGradient {
            weight.gradient.scalars.withUnsafeMutableBufferPointer { dw in
                DirectConvolution.unpackAdding(partials, outputChannels: cout, inputChannels: cin, kernelSize: k, into: floats(dw.baseAddress!))
            }
        }
        bias.gradient.scalars.withUnsafeMutableBufferPointer { db in
            for o in 0..<cout { db[o] += Scalar(partials[weightCount + o]) }
        }
    }

    /// Adds the `groups` partial sums of `count` floats each (one after another from
    /// `partials`) into the first, in group order.
    private func addGroupPartials(_ partials: UnsafeMutablePointer<Float>, groups: Int, count: Int) {
        for group in 1..<max(groups, 1) {
            let partial = partials + group * count
            for i in 0..<count { partials[i] += partial[i] }
        }
    }

    // MARK: The Winograd path (Float)

    /// `∂b` and (when `weightGradient`) `∂W` through `WinogradConvolution.weightGradient`: each
    /// group of images sums its own partial; the partials are added in group order.
    private func weightGradientWinograd(_ input: Tensor<Scalar>, _ g: ConvolutionGeometry, outputGradient: Tensor<Scalar>,
                                        weightGradient: Bool) {
        let n = input.batchSize, groups = Self.groupCount(batch: n)
        let (cin, cout) = (inputChannels, outputChannels)
        let weightCount = weight.value.count
        let partials = floats(partialScratch.reserve(groups * (weightCount + cout)))
        let chunk = WinogradConvolution.gradientChunk(width: g.width, inputs: cin,
                                                      tiles: weightGradientTiles ?? WinogradConvolution.gradientTiles,
                                                      tile: winogradTile(for: g))
        input.scalars.withUnsafeBufferPointer { x in
            outputGradient.scalars.withUnsafeBufferPointer { dy in
                let work = WinogradWeightGroup(x: floats(x.baseAddress!), inputs: cin, height: g.height, width: g.width,
                                               dy: floats(dy.baseAddress!), outputs: cout, weightGradient: weightGradient,
                                               partials: partials, batch: n, imagesPerGroup: Self.imagesPerGroup(batch: n), chunk: chunk)
                Parallel.forEach(groups, work)
            }
        }
        addGroupPartials(partials, groups: groups, count: weightCount + cout)
        if weightGradient {
            weight.gradient.scalars.withUnsafeMutableBufferPointer { dw in
                let dw = floats(dw.baseAddress!)
                for i in 0..<weightCount { dw[i] += partials[i] }
            }
        }
        bias.gradient.scalars.withUnsafeMutableBufferPointer { db in
            for o in 0..<cout { db[o] += Scalar(partials[weightCount + o]) }
        }
    }

    /// `Y = conv(X) + b` through `WinogradConvolution`, groups of images in parallel.
    private func forwardWinograd(_ input: Tensor<Scalar>, _ g: ConvolutionGeometry, into output: inout Tensor<Scalar>) {
        let (cin, cout, tile) = (inputChannels, outputChannels, winogradTile(for: g))
        let transformed = transformedWeights(flippedForInputGradient: false, tile: tile)
        input.scalars.withUnsafeBufferPointer { x in
            bias.value.scalars.withUnsafeBufferPointer { b in
                output.scalars.withUnsafeMutableBufferPointer { y in
                    winograd(floats(x.baseAddress!), inputs: cin, g, weights: transformed, outputs: cout, bias: floats(b.baseAddress!),
                             into: floats(y.baseAddress!), batch: input.batchSize, tile: tile)
                }
            }
        }
    }

    /// `∂X`, the convolution of `∂Y` with the flipped kernel, through `WinogradConvolution`.
    private func inputGradientWinograd(_ outputGradient: Tensor<Scalar>, _ g: ConvolutionGeometry, into dx: UnsafeMutablePointer<Scalar>) {
        let (cin, cout, tile) = (inputChannels, outputChannels, winogradTile(for: g))
        let transformed = transformedWeights(flippedForInputGradient: true, tile: tile)
        outputGradient.scalars.withUnsafeBufferPointer { dy in
            winograd(floats(dy.baseAddress!), inputs: cout, g, weights: transformed, outputs: cin, bias: nil, into: floats(dx),
                     batch: outputGradient.batchSize, tile: tile)
        }
    }

    /// The output tile the Winograd kernels take for planes of geometry `g`: `winogradTile`
    /// where set, else 4 on planes at least 7x7 and 2 on smaller ones. Measured per layer at
    /// batch 1024 (BENCHMARKS.md, session 20): F(4x4, 3x3) is 1.04–1.49x faster from 7x7 to
    /// 31x31 on all passes but one (0.82x), but F(2x2, 3x3) is faster on 3x3 planes (one 4x4 tile per image, 9 of its 16
    /// outputs used: the transforms outweigh the shorter products).
    func winogradTile(for g: ConvolutionGeometry) -> Int {
        winogradTile ?? (min(g.height, g.width) >= 7 ? 4 : 2)
    }

    /// The weights transformed for the Winograd kernels of output tile `tile`
    /// (`transformWeights`), those of the input-gradient convolution when
    /// `flippedForInputGradient`, in `packedWeightScratch`.
    private func transformedWeights(flippedForInputGradient flipped: Bool, tile: Int) -> UnsafeMutablePointer<Float> {
        let (cin, cout) = (inputChannels, outputChannels)
        let (outputs, inputs) = flipped ? (cin, cout) : (cout, cin)
        let count = tile == 4 ? Winograd4x4.transformedWeightCount(outputs: outputs, inputs: inputs)
            : WinogradConvolution.transformedWeightCount(outputs: outputs, inputs: inputs)
        let transformed = floats(packedWeightScratch.reserve(count))
        weight.value.scalars.withUnsafeBufferPointer { w in
            if tile == 4 {
                Winograd4x4.transformWeights(floats(w.baseAddress!), outputChannels: cout, inputChannels: cin,
                                             flippedForInputGradient: flipped, into: transformed)
            } else {
                WinogradConvolution.transformWeights(floats(w.baseAddress!), outputChannels: cout, inputChannels: cin,
                                                     flippedForInputGradient: flipped, into: transformed)
            }
        }
        return transformed
    }

    /// Convolves a batch of `inputs x H x W` images (`H x W` from `g`) into `outputs x H x W`
    /// with output tiles of `tile` x `tile`.
    private func winograd(
        _ x: UnsafePointer<Float>, inputs: Int, _ g: ConvolutionGeometry, weights: UnsafePointer<Float>, outputs: Int,
        bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>, batch n: Int, tile: Int
    ) {
        let chunk = tile == 4
            ? Winograd4x4.chunk(width: g.width, inputs: inputs, outputs: outputs, budget: DirectConvolution.copyBudget)
            : WinogradConvolution.chunk(width: g.width, inputs: inputs, outputs: outputs, budget: DirectConvolution.copyBudget)
        let work = WinogradGroup(x: x, inputs: inputs, height: g.height, width: g.width, weights: weights, outputs: outputs, bias: bias,
                                 y: y, batch: n, imagesPerGroup: Self.imagesPerGroup(batch: n), chunk: chunk)
        Parallel.forEach(Self.groupCount(batch: n), work)
    }

    /// Images taken at once by the direct path (`imagesTogether`), each with `floatsPerImage`
    /// floats of copies, for a batch of `n`.
    private func together(floatsPerImage: Int, batch n: Int) -> Int {
        let group = Self.imagesPerGroup(batch: n)
        return imagesTogether.map { max(1, min($0, group)) }
            ?? DirectConvolution.imagesTogether(floatsPerImage: floatsPerImage, imagesPerGroup: group)
    }

    /// The images of one work item.
    @inline(__always)
    private func imageRange(of group: Int, batch: Int) -> Range<Int> {
        let size = Self.imagesPerGroup(batch: batch)
        return group * size ..< min(batch, (group + 1) * size)
    }
}

/// One group of images of the direct forward pass: pad each image into planes, convolve.
private struct DirectForwardGroup: ParallelWork {
    let x: UnsafePointer<Float>, bias: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>
    /// One padded-planes buffer of `paddedCount` floats per group.
    let padded: UnsafeMutablePointer<Float>, paddedCount: Int
    let weights: UnsafePointer<Float>, offsets: UnsafePointer<Int>
    let g: ConvolutionGeometry, outputChannels: Int, rowStride: Int
    /// `together`: images padded and convolved at once (`DirectConvolution.imagesTogether`).
    let batch: Int, imagesPerGroup: Int, together: Int

    func callAsFunction(_ group: Int) {
        let (inputStride, outputStride) = (g.channels * g.height * g.width, outputChannels * g.outputHeight * g.outputWidth)
        let xp = padded + group * together * paddedCount
        let end = min(batch, (group + 1) * imagesPerGroup)
        for first in Swift.stride(from: group * imagesPerGroup, to: end, by: together) {
            let count = min(together, end - first)
            for m in 0..<count {
                DirectConvolution.padPlanes(x + (first + m) * inputStride, channels: g.channels, height: g.height, width: g.width,
                                            padding: g.padding, rowStride: rowStride, into: xp + m * paddedCount)
            }
            DirectConvolution.convolvePlanes(xp, images: count, inputImageStride: paddedCount, rowStride: rowStride,
                                             offsets: offsets, patchSize: g.patchSize,
                                             outputHeight: g.outputHeight, outputWidth: g.outputWidth, weights: weights,
                                             outputChannels: outputChannels, bias: bias,
                                             into: y + first * outputStride, outputImageStride: outputStride)
        }
    }
}

/// One group of images of a Winograd convolution, in the calling thread's workspace.
private struct WinogradGroup: ParallelWork {
    let x: UnsafePointer<Float>, inputs: Int, height: Int, width: Int
    let weights: UnsafePointer<Float>, outputs: Int, bias: UnsafePointer<Float>?
    let y: UnsafeMutablePointer<Float>
    let batch: Int, imagesPerGroup: Int, chunk: WinogradConvolution.Chunk

    func callAsFunction(_ group: Int) {
        let plane = height * width
        let first = group * imagesPerGroup, end = min(batch, first + imagesPerGroup)
        let workspace = ThreadWorkspace.floats(chunk.workspace(inputs: inputs, outputs: outputs))
        WinogradConvolution.convolve(x + first * inputs * plane, images: end - first, inputImageStride: inputs * plane,
                                     channels: inputs, height: height, width: width, weights: weights, outputChannels: outputs,
                                     bias: bias, into: y + first * outputs * plane, outputImageStride: outputs * plane,
                                     chunk: chunk, workspace: workspace)
    }
}

/// One group of images of the Winograd weight gradient: its partial `∂W` (`[Cout][Cin][3][3]`,
/// when `weightGradient`) and `∂b`, in the calling thread's workspace.
private struct WinogradWeightGroup: ParallelWork {
    let x: UnsafePointer<Float>, inputs: Int, height: Int, width: Int
    let dy: UnsafePointer<Float>, outputs: Int, weightGradient: Bool
    let partials: UnsafeMutablePointer<Float>
    let batch: Int, imagesPerGroup: Int, chunk: WinogradConvolution.GradientChunk

    func callAsFunction(_ group: Int) {
        let plane = height * width, weightCount = outputs * inputs * 9
        let first = group * imagesPerGroup, end = min(batch, first + imagesPerGroup)
        let dw = partials + group * (weightCount + outputs), db = dw + weightCount
        if weightGradient {
            let workspace = ThreadWorkspace.floats(chunk.workspace(outputs: outputs, height: height, width: width))
            WinogradConvolution.weightGradient(x + first * inputs * plane, images: end - first, inputImageStride: inputs * plane,
                                               channels: inputs, height: height, width: width,
                                               outputGradient: dy + first * outputs * plane, outputChannels: outputs,
                                               gradientImageStride: outputs * plane, into: dw, chunk: chunk, workspace: workspace)
        }
        db.update(repeating: 0, count: outputs)
        for image in first..<end {
            let dyi = dy + image * outputs * plane
            for o in 0..<outputs { db[o] += sum(dyi + o * plane, count: plane) }
        }
    }
}

/// One group of images of the direct backward pass: its partial `∂W`, `∂b` (packed, zeroed
/// here) and each image's `∂X`.
private struct DirectBackwardGroup: ParallelWork {
    let x: UnsafePointer<Float>, dy: UnsafePointer<Float>
    /// `∂X`, or nil when the caller does not want it.
    let dx: UnsafeMutablePointer<Float>?
    /// Whether to compute `∂W` (`∂b` always).
    let weightGradient: Bool
    /// Per group: the channels-last padded input; `∂Y` channels-last then as padded planes;
    /// the packed partial `∂W` then `∂b`.
    let padded: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>, partials: UnsafeMutablePointer<Float>
    /// The kernel of the `∂X` convolution (`packPlaneWeights`, flipped), when `dx` is wanted.
    let flipped: UnsafePointer<Float>
    let offsets: UnsafePointer<Int>
    let g: ConvolutionGeometry, outputChannels: Int, gradientRowStride: Int
    /// Each image's share of `padded` and of `gradients` (channels-last, then planes).
    let sizes: (padded: Int, gradient: Int, gradientPlanes: Int)
    /// `together`: images whose copies are made and used at once (`DirectConvolution.imagesTogether`).
    let batch: Int, imagesPerGroup: Int, together: Int

    func callAsFunction(_ group: Int) {
        let (cin, cout, k, p, lanes) = (g.channels, outputChannels, g.kernelHeight, g.padding, DirectConvolution.lanes)
        let (ho, wo) = (g.outputHeight, g.outputWidth)
        let q = k - 1 - p
        let (inputStride, outputStride) = (cin * g.height * g.width, cout * ho * wo)
        let (gradientCount, gradientPlanesCount) = (sizes.gradient, sizes.gradientPlanes)
        let weightCount = cout * g.patchSize
        let xp = padded + group * together * sizes.padded
        let dyc = gradients + group * together * (gradientCount + gradientPlanesCount), dyp = dyc + together * gradientCount
        let dw = partials + group * (weightCount + cout), db = dw + weightCount
        dw.update(repeating: 0, count: weightCount + cout)
        let end = min(batch, (group + 1) * imagesPerGroup)
        for first in Swift.stride(from: group * imagesPerGroup, to: end, by: together) {
            let count = min(together, end - first)
            if weightGradient {
                for m in 0..<count {
                    DirectConvolution.padChannelsLast(x + (first + m) * inputStride, channels: cin, height: g.height, width: g.width,
                                                      padding: p, into: xp + m * sizes.padded)
                    DirectConvolution.toChannelsLast(dy + (first + m) * outputStride, channels: cout, pixels: ho * wo,
                                                     into: dyc + m * gradientCount)
                }
                // Up to `weightTileBlocks` blocks of L channels at a time.
                let (blocks, perTile) = (cout / lanes, DirectConvolution.weightTileBlocks)
                for block in Swift.stride(from: 0, to: blocks, by: perTile) {
                    DirectConvolution.accumulateWeightGradient(
                        xp, images: count, inputImageStride: sizes.padded, channels: cin, paddedWidth: g.width + 2 * p,
                        kernelSize: k, outputHeight: ho, outputWidth: wo,
                        outputGradient: dyc + block * lanes, gradientImageStride: gradientCount, gradientPixelStride: cout,
                        gradientRowStride: wo * cout,
                        into: dw + block * lanes * g.patchSize, blockStride: lanes * g.patchSize,
                        blockCount: min(perTile, blocks - block))
                }
            }
            for image in first..<(first + count) {
                let dyi = dy + image * outputStride
                for o in 0..<cout { db[o] += sum(dyi + o * ho * wo, count: ho * wo) }
            }
            guard let dx else { continue }
            for m in 0..<count {
                DirectConvolution.padPlanes(dy + (first + m) * outputStride, channels: cout, height: ho, width: wo, padding: q,
                                            rowStride: gradientRowStride, into: dyp + m * gradientPlanesCount)
            }
            DirectConvolution.convolvePlanes(dyp, images: count, inputImageStride: gradientPlanesCount, rowStride: gradientRowStride,
                                             offsets: offsets, patchSize: cout * k * k,
                                             outputHeight: g.height, outputWidth: g.width, weights: flipped,
                                             outputChannels: cin, bias: nil, into: dx + first * inputStride,
                                             outputImageStride: inputStride)
        }
    }
}

/// Which kernels compute a convolution in `Float` (see `Conv2D.resolvedPath`).
public enum ConvolutionPath: Sendable, CaseIterable {
    /// Chosen by shape.
    case automatic
    /// `DirectConvolution`: stride 1, output channels in whole vectors.
    case direct
    /// `WinogradConvolution` (3x3, stride 1, padding 1, output channels in whole vectors):
    /// the forward pass, `∂X` and `∂W`, by F(2x2, 3x3) or `Winograd4x4`'s F(4x4, 3x3)
    /// (`Conv2D.winogradTile`).
    case winograd
    /// One GEMM per chunk of images over their patch matrices side by side.
    case batchedGEMM
    /// One GEMM per image (the reference path; `Double` always takes it).
    case im2col
}

/// Unfolds image `i` of a chunk into its columns of the chunk's patch matrix.
private struct BatchedColumns: ParallelWork {
    let x: UnsafePointer<Float>, inputStride: Int
    let col: UnsafeMutablePointer<Float>, spatial: Int, width: Int
    let g: ConvolutionGeometry

    func callAsFunction(_ i: Int) { im2col(x + i * inputStride, g, into: col + i * spatial, rowStride: width) }
}

/// Copies image `i`'s columns of `[Cout, images·Ho·Wo]` into its NCHW planes, adding the bias.
private struct ScatterPlanes: ParallelWork {
    let product: UnsafePointer<Float>, width: Int, spatial: Int, channels: Int
    let bias: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>

    func callAsFunction(_ i: Int) {
        for o in 0..<channels {
            let (source, destination, b) = (product + o * width + i * spatial, y + (i * channels + o) * spatial, bias[o])
            for p in 0..<spatial { destination[p] = source[p] + b }
        }
    }
}

/// Copies image `i`'s NCHW planes of `∂Y` into its columns of `[Cout, images·Ho·Wo]`.
private struct GatherPlanes: ParallelWork {
    let dy: UnsafePointer<Float>, width: Int, spatial: Int, channels: Int
    let gathered: UnsafeMutablePointer<Float>

    func callAsFunction(_ i: Int) {
        for o in 0..<channels {
            (gathered + o * width + i * spatial).update(from: dy + (i * channels + o) * spatial, count: spatial)
        }
    }
}

/// Folds image `i`'s columns of `∂col` back onto its `∂X` (overwriting it).
private struct FoldColumns: ParallelWork {
    let col: UnsafePointer<Float>, spatial: Int, width: Int
    let g: ConvolutionGeometry
    let dx: UnsafeMutablePointer<Float>, inputStride: Int

    func callAsFunction(_ i: Int) {
        let dxi = dx + i * inputStride
        dxi.update(repeating: 0, count: inputStride)
        col2im(col + i * spatial, g, into: dxi, rowStride: width)
    }
}

/// How `Conv2D` initialises its weights (the spec key `init`).
public enum Conv2DInitialization: String, Sendable, CaseIterable {
    /// He-style normal weights (the course's).
    case he
    /// PyTorch's `nn.init.dirac_(weight)`: `weight[o, o, k/2, k/2] = 1` for
    /// `o < min(Cout, Cin)`, every other weight 0 — the layer starts as the identity on the first
    /// channels (and zero on the rest).
    case dirac
    /// He weights, then the first `min(Cout, Cin)` filters replaced by identity filters, as
    /// airbench does (`nn.init.dirac_(weight[:Cin])`).
    case heDirac = "he_dirac"
    /// Filters that whiten the input's patches, computed from training data before the first
    /// step (`Whitening`; airbench's frozen first layer). Only for a network's first layer, with
    /// `Cin·k²` or `2·Cin·k²` output channels; usually `frozen`.
    case whitening
}

/// `{"type": "conv2d", "out_channels": 16, "kernel_size": 5, "padding": 2}`; `init` (`"he"`,
/// `"dirac"`, `"he_dirac"` or `"whitening"`, see `Conv2DInitialization`), `frozen` (its weight and bias are
/// not trained: `isTrainable == false`) and `bias_epochs` (the bias trains during a run's first N
/// epochs only, then stays as it is — even in a `frozen` layer: airbench's whitening layer, whose
/// filters stay fixed while its bias trains for 3 epochs; `Parameter.trainingEpochs`) are optional.
public struct Conv2DSpec: LayerSpecKind {
    public static let typeName = "conv2d"
    public static let aliases = ["convolution", "conv"]
    public static let keysHelp = "out_channels, kernel_size, stride (1), padding (0), bias (true), init_scale (1), init (\"he\" | \"dirac\" | \"he_dirac\" | \"whitening\"), frozen (false), bias_epochs (0: every epoch)"
    public var outputChannels: Int, kernelSize: Int, stride: Int, padding: Int
    public var initScale: Double
    public var bias: Bool
    public var initialization: Conv2DInitialization
    /// Whether the layer's parameters are frozen (`isTrainable == false`).
    public var frozen: Bool
    /// The epochs the bias trains for before it is frozen (0: the whole run, unless `frozen`).
    public var biasEpochs: Int

    public init(outputChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0, initScale: Double = 1, bias: Bool = true,
                initialization: Conv2DInitialization = .he, frozen: Bool = false, biasEpochs: Int = 0) {
        self.outputChannels = outputChannels
        self.kernelSize = kernelSize
        self.stride = stride
        self.padding = padding
        self.initScale = initScale
        self.bias = bias
        self.initialization = initialization
        self.frozen = frozen
        self.biasEpochs = biasEpochs
    }

    public init(reading reader: inout SpecReader) throws(SpecError) {
        self.init(outputChannels: try reader.integer("out_channels", maximum: 1 << 16),
                  kernelSize: try reader.integer("kernel_size", maximum: 1 << 10),
                  stride: try reader.integer("stride", default: 1, maximum: 1 << 10),
                  padding: try reader.integer("padding", default: 0, minimum: 0, maximum: 1 << 10),
                  initScale: try reader.positiveNumber("init_scale", default: 1),
                  bias: try reader.bool("bias", default: true),
                  initialization: Conv2DInitialization(rawValue: try reader.choice(
                      "init", Conv2DInitialization.allCases.map(\.rawValue), default: "he"))!,
                  frozen: try reader.bool("frozen", default: false),
                  biasEpochs: try reader.integer("bias_epochs", default: 0, minimum: 0, maximum: 1 << 20))
        if biasEpochs > 0 && !bias { throw SpecError("\(reader.location): \"bias_epochs\" needs \"bias\": true") }
    }

    public var jsonKeys: [String: Any] {
        var keys: [String: Any] = ["out_channels": outputChannels, "kernel_size": kernelSize, "stride": stride, "padding": padding]
        if initScale != 1 { keys["init_scale"] = initScale }
        if !bias { keys["bias"] = false }
        if initialization != .he { keys["init"] = initialization.rawValue }
        if frozen { keys["frozen"] = true }
        if biasEpochs > 0 { keys["bias_epochs"] = biasEpochs }
        return keys
    }

    public func makeLayer<Scalar: NetworkScalar>(inputShape: [Int], path: String, using generator: inout SeededGenerator) throws(ShapeError) -> any Layer<Scalar> {
        guard inputShape.count == 3 else { throw ShapeError("conv2d needs a CxHxW input, got \(describe(shape: inputShape))") }
        try NetworkSpec.reserveParameters(elementCount([inputShape[0], outputChannels, kernelSize, kernelSize]),
                                          for: "conv2d with \(inputShape[0]) input channels, \(outputChannels) output channels and \(kernelSize)x\(kernelSize) kernels")
        // One example's patch matrix (im2col: C·k·k rows, one column per output pixel) is the
        // layer's largest buffer; bound it before anything runs.
        let outputHeight = (inputShape[1] + 2 * padding - kernelSize) / stride + 1
        let outputWidth = (inputShape[2] + 2 * padding - kernelSize) / stride + 1
        if outputHeight > 0, outputWidth > 0,
           elementCount([inputShape[0], kernelSize, kernelSize, outputHeight, outputWidth]).map({ $0 > 1 << 28 }) ?? true {
            throw ShapeError("conv2d's patch matrix (\(inputShape[0])x\(kernelSize)x\(kernelSize) by \(outputHeight)x\(outputWidth)) is over \(1 << 28) values")
        }
        if initialization == .whitening {
            let d = inputShape[0] * kernelSize * kernelSize
            guard outputChannels == d || outputChannels == 2 * d else {
                throw ShapeError("conv2d with init \"whitening\" on \(inputShape[0]) channels and \(kernelSize)x\(kernelSize) kernels needs \(d) or \(2 * d) output channels (the patch directions, or each also negated), got \(outputChannels)")
            }
        }
        let layer = Conv2D<Scalar>(inputChannels: inputShape[0], outputChannels: outputChannels, kernelSize: kernelSize,
                                   stride: stride, padding: padding, initScale: Scalar(initScale), bias: bias,
                                   initialization: initialization, using: &generator)
        if frozen { for p in [layer.weight, layer.bias] { p.isTrainable = false } }
        if biasEpochs > 0 {
            layer.bias.isTrainable = true
            layer.bias.trainingEpochs = biasEpochs
        }
        return layer
    }
}

extension LayerSpec {
    /// A `conv2d` layer spec.
    public static func conv2d(outputChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0, initScale: Double = 1, bias: Bool = true) -> LayerSpec {
        LayerSpec(Conv2DSpec(outputChannels: outputChannels, kernelSize: kernelSize, stride: stride, padding: padding, initScale: initScale, bias: bias))
    }
}
