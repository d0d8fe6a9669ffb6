@testable import Backprop
import Testing

// The fast kernels against their plain references.

/// The direct convolution (`Float`, stride 1, output channels in whole kernel vectors: 16s with
/// AVX-512, 8s with AVX2) against the gradient-checked im2col path run in `Double` on the same
/// weights: output, `∂W`, `∂b` and `∂X`, over odd sizes (rows shorter than the 8- or 16-pixel
/// vector, whose tiles run across row ends, and longer ones with ragged last tiles; narrow planes
/// of one row, of one tile and of several; wide planes of fewer rows than a tile has vectors, and
/// rows of more than four vectors' pixels, which F(4x4, 3x3) stores whole and in pieces),
/// input channels that do and do not fill vectors (`∂X` is a direct convolution with the input
/// channels as its outputs either way), and 1x1 kernels. 24 and 8 output channels take the
/// direct path only with 8-float vectors.
@Suite struct DirectConvolutionTests {
    @Test(arguments: [
        (1, 16, 5, 2, 28, 28), (16, 16, 5, 2, 14, 14), (3, 16, 5, 2, 32, 32), (16, 16, 3, 1, 16, 16),
        (5, 32, 3, 0, 9, 21), (32, 16, 3, 2, 7, 5), (16, 32, 1, 0, 6, 17), (2, 16, 4, 3, 3, 19), (16, 16, 5, 2, 1, 1),
        (24, 24, 3, 1, 7, 7), (8, 8, 3, 1, 3, 3), (24, 8, 3, 1, 15, 15),
        (16, 16, 3, 1, 20, 5), (7, 32, 3, 1, 13, 11), (24, 16, 3, 1, 7, 7), (16, 16, 3, 1, 3, 3),
        (16, 16, 3, 1, 2, 18), (3, 16, 3, 1, 3, 40), (8, 16, 3, 1, 15, 15), (16, 48, 3, 1, 5, 33),
        (4, 16, 3, 1, 6, 70),
    ])
    func matchesTheIm2colPath(inputChannels: Int, outputChannels: Int, kernel: Int, padding: Int, height: Int, width: Int) {
        for (path, tile) in [(ConvolutionPath.direct, 4), (.winograd, 2), (.winograd, 4), (.batchedGEMM, 4)] {
            matches(path, winogradTile: tile, inputChannels: inputChannels, outputChannels: outputChannels, kernel: kernel,
                    padding: padding, stride: 1, height: height, width: width)
        }
    }

    /// The batched GEMM path also takes strides and channel counts the direct kernels cannot.
    @Test(arguments: [(3, 10, 3, 1, 2, 9, 11), (16, 32, 1, 0, 2, 7, 7), (8, 5, 3, 0, 1, 6, 6)])
    func batchedPathMatchesTheIm2colPath(inputChannels: Int, outputChannels: Int, kernel: Int, padding: Int, stride: Int,
                                         height: Int, width: Int) {
        matches(.batchedGEMM, inputChannels: inputChannels, outputChannels: outputChannels, kernel: kernel, padding: padding,
                stride: stride, height: height, width: width)
    }

    private func matches(_ path: ConvolutionPath, winogradTile: Int = 4, inputChannels: Int, outputChannels: Int, kernel: Int,
                         padding: Int, stride: Int, height: Int, width: Int) {
        var g = SeededGenerator(seed: 3)
        let direct = Conv2D<Float>(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: kernel,
                                   stride: stride, padding: padding, using: &g)
        direct.path = path
        direct.winogradTile = winogradTile
        direct.bias.value = randomTensor([outputChannels], seed: 4)
        let reference = Conv2D<Double>(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: kernel,
                                       stride: stride, padding: padding, using: &g)
        reference.weight.value = direct.weight.value.converted()
        reference.bias.value = direct.bias.value.converted()
        // Direct: two groups of images, the second one short; batched: chunks of at least
        // 1,024 patch columns, so planes of 1x1 make chunks of 6 and larger ones more.
        let batch = 6
        let x: Tensor<Float> = randomTensor([batch, inputChannels, height, width], seed: 5)

        var y = Tensor<Float>(shape: []), yReference = Tensor<Double>(shape: [])
        direct.forward(x, into: &y, context: .inference)
        reference.forward(x.converted(), into: &yReference, context: .inference)
        expectClose(y.scalars, yReference.scalars, "output")

        let dy: Tensor<Float> = randomTensor(y.shape, seed: 6)
        var dx: Tensor<Float>? = Tensor(shape: []), dxReference: Tensor<Double>? = Tensor(shape: [])
        direct.backward(input: x, output: y, outputGradient: dy, inputGradient: &dx, context: .training())
        reference.backward(input: x.converted(), output: yReference, outputGradient: dy.converted(), inputGradient: &dxReference, context: .training())
        expectClose(dx!.scalars, dxReference!.scalars, "∂X")
        expectClose(direct.weight.gradient.scalars, reference.weight.gradient.scalars, "∂W")
        expectClose(direct.bias.gradient.scalars, reference.bias.gradient.scalars, "∂b")
    }

    /// The three paths in `Float` agree too, and the gradients accumulate (a second backward doubles them).
    @Test func accumulatesLikeTheIm2colPath() {
        var g = SeededGenerator(seed: 7)
        let conv = Conv2D<Float>(inputChannels: 16, outputChannels: 16, kernelSize: 5, padding: 2, using: &g)
        let x: Tensor<Float> = randomTensor([5, 16, 14, 14], seed: 8)
        var gradients: [[Float]] = []
        for path in [ConvolutionPath.direct, .batchedGEMM, .im2col] {
            conv.path = path
            conv.weight.gradient.zero()
            var y = Tensor<Float>(shape: [])
            conv.forward(x, into: &y, context: .inference)
            let dy: Tensor<Float> = randomTensor(y.shape, seed: 9)
            var dx: Tensor<Float>? = nil
            conv.backward(input: x, output: y, outputGradient: dy, inputGradient: &dx, context: .training())
            conv.backward(input: x, output: y, outputGradient: dy, inputGradient: &dx, context: .training())
            gradients.append(conv.weight.gradient.scalars)
        }
        expectClose(gradients[0], gradients[1].map(Double.init), "2·∂W, direct vs batched")
        expectClose(gradients[0], gradients[2].map(Double.init), "2·∂W, direct vs im2col")
    }

    /// Each path gives bit-identical outputs and gradients on 1, 2 and 3 threads: the direct
    /// path sums fixed groups of images in group order, the batched one fixed chunks in chunk
    /// order with each GEMM split by columns. 7x7 planes with 256 channels make chunks of 21
    /// images and GEMMs large enough to be split.
    @Test(arguments: [(ConvolutionPath.direct, 4), (.winograd, 2), (.winograd, 4), (.batchedGEMM, 4)])
    func bitIdenticalForAnyThreadCount(_ path: ConvolutionPath, winogradTile: Int) {
        var g = SeededGenerator(seed: 12)
        let conv = Conv2D<Float>(inputChannels: 32, outputChannels: 256, kernelSize: 3, padding: 1, using: &g)
        conv.path = path
        conv.winogradTile = winogradTile
        let x: Tensor<Float> = randomTensor([45, 32, 7, 7], seed: 13)
        let saved = Parallel.threadCount
        defer { Parallel.threadCount = saved }
        var results: [[[UInt32]]] = []
        for threads in [1, 2, 3] {
            Parallel.threadCount = threads
            results.append(passBits(conv, x, gradientSeed: 14))
        }
        #expect(results[0] == results[1], "1 vs 2 threads")
        #expect(results[0] == results[2], "1 vs 3 threads")
    }

    /// The direct path copies and convolves several images of a work item at once (each block
    /// of filters sweeping them all, each weight-gradient tile summing over all of them);
    /// however many it takes, each output and each gradient is the same sum in the same order.
    /// 7x7 planes (narrow rows) with 256 filters, 20x20 ones (wide rows) with 32; work items of
    /// 4 images, taken 1, 3 (then the 1 left) or 4 at a time.
    @Test(arguments: [(32, 256, 7), (16, 32, 20)])
    func bitIdenticalForAnyImagesTogether(inputChannels: Int, outputChannels: Int, size: Int) {
        var g = SeededGenerator(seed: 15)
        let conv = Conv2D<Float>(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: 3, padding: 1, using: &g)
        conv.path = .direct
        conv.bias.value = randomTensor([outputChannels], seed: 16)
        let x: Tensor<Float> = randomTensor([11, inputChannels, size, size], seed: 17)
        var results: [[[UInt32]]] = []
        for together in [1, 3, 4] {
            conv.imagesTogether = together
            results.append(passBits(conv, x, gradientSeed: 18))
        }
        #expect(results[0] == results[1], "1 vs 3 images at once")
        #expect(results[0] == results[2], "1 vs 4 images at once")
    }

    /// The Winograd kernels take an image group's tile rows a chunk at a time; however many
    /// rows a chunk holds (1, 3 or all of them, rows of 1 to 20 tiles, where narrow rows' vectors
    /// spill into the next row's columns), each output is the same sum in the same order. Odd
    /// and even plane sizes, outputs in whole and partial blocks of 6, with and without bias;
    /// F(2x2, 3x3) and F(4x4, 3x3).
    @Test(arguments: [(8, 13, 7, 7, true), (5, 6, 3, 3, false), (16, 20, 15, 15, true), (3, 8, 40, 9, true), (9, 7, 4, 6, false)],
          [2, 4])
    func winogradChunksChangeNoResult(shape: (Int, Int, Int, Int, Bool), tile: Int) {
        let (inputs, outputs, height, width, bias) = shape
        let images = 3
        let x: Tensor<Float> = randomTensor([images, inputs, height, width], seed: 19)
        let w: Tensor<Float> = randomTensor([outputs, inputs, 3, 3], seed: 20)
        let b: Tensor<Float> = randomTensor([outputs], seed: 21)
        let count = tile == 4 ? Winograd4x4.transformedWeightCount(outputs: outputs, inputs: inputs)
            : WinogradConvolution.transformedWeightCount(outputs: outputs, inputs: inputs)
        let transformed = [Float](unsafeUninitializedCapacity: count) {
            if tile == 4 {
                Winograd4x4.transformWeights(w.scalars, outputChannels: outputs, inputChannels: inputs, flippedForInputGradient: false,
                                             into: $0.baseAddress!)
            } else {
                WinogradConvolution.transformWeights(w.scalars, outputChannels: outputs, inputChannels: inputs,
                                                     flippedForInputGradient: false, into: $0.baseAddress!)
            }
            $1 = $0.count
        }
        let (wide, high) = tile == 4 ? (Winograd4x4.tiles(width), Winograd4x4.tiles(height))
            : (WinogradConvolution.tiles(width), WinogradConvolution.tiles(height))
        let positions = (tile + 2) * (tile + 2)
        var results: [[UInt32]] = []
        for rows in [1, 3, images * high] {
            let budget = rows * wide * positions * (inputs + outputs)
            let chunk = tile == 4 ? Winograd4x4.chunk(width: width, inputs: inputs, outputs: outputs, budget: budget, minimumTiles: 1)
                : WinogradConvolution.chunk(width: width, inputs: inputs, outputs: outputs, budget: budget, minimumTiles: 1)
            #expect(chunk.tileRows <= rows)
            var workspace = [Float](repeating: .nan, count: chunk.workspace(inputs: inputs, outputs: outputs))
            var y = [Float](repeating: .nan, count: images * outputs * height * width)
            b.scalars.withUnsafeBufferPointer { b in
                WinogradConvolution.convolve(x.scalars, images: images, inputImageStride: inputs * height * width, channels: inputs,
                                             height: height, width: width, weights: transformed, outputChannels: outputs,
                                             bias: bias ? b.baseAddress : nil, into: &y, outputImageStride: outputs * height * width,
                                             chunk: chunk, workspace: &workspace)
            }
            #expect(!y.contains { $0.isNaN }, "every output written (\(rows) rows a chunk)")
            results.append(y.map(\.bitPattern))
        }
        #expect(results[0] == results[1], "1 vs 3 tile rows a chunk")
        #expect(results[0] == results[2], "1 tile row vs all of them")
    }

    /// On rows of tiles narrower than a vector, the Winograd kernels transform several tile rows
    /// a vector (`transformInputPacked`, `transformOutputPacked`, F(2x2, 3x3)'s and F(4x4,
    /// 3x3)'s); every value is the bits of the row-by-row transforms, over tile rows that
    /// straddle images, a last group short of rows, rows of 1, 2, 4 (and with 16 lanes 8) tiles,
    /// planes as wide as their tiles (whose tiles read one column more) and narrower, and bottom
    /// tile rows past the plane.
    @Test(arguments: [(7, 7), (15, 15), (6, 6), (3, 3), (4, 4), (5, 8), (16, 16), (13, 14), (31, 31), (9, 30), (2, 2), (1, 5)],
          [2, 4])
    func packedWinogradTransformsMatchTheRowByRowOnes(plane: (Int, Int), tile: Int) {
        let (height, width) = plane
        let wide = (width + tile - 1) / tile, high = (height + tile - 1) / tile
        let group = WinogradConvolution.rowsPerVector(wide), lanes = WinogradConvolution.lanes
        guard group > 1 else { return }  // rows that fill a vector take the row-by-row transforms only
        let (images, channels, positions) = (3, 5, (tile + 2) * (tile + 2))
        let total = images * high, stride = total * wide + lanes
        let x: Tensor<Float> = randomTensor([images, channels, height, width], seed: 31)
        let m: Tensor<Float> = randomTensor([positions * channels * stride], seed: 32)
        let bias: Tensor<Float> = randomTensor([channels], seed: 33)
        let inputScratch = tile == 4 ? Winograd4x4.rowScratch(wide) : WinogradConvolution.rowScratch(wide)
        let outputScratch = tile == 4 ? Winograd4x4.outputScratch : WinogradConvolution.outputScratch
        var scratch = [Float](repeating: .nan, count: inputScratch + outputScratch)
        var rowByRow = [Float](repeating: 0, count: positions * channels * stride), packed = rowByRow
        var yRows = [Float](repeating: .nan, count: x.count), yPacked = yRows
        let imageStride = channels * height * width
        x.scalars.withUnsafeBufferPointer { x in
            m.scalars.withUnsafeBufferPointer { m in
                bias.scalars.withUnsafeBufferPointer { b in
                    scratch.withUnsafeMutableBufferPointer { scratch in
                        let (x, m, b, s) = (x.baseAddress!, m.baseAddress!, b.baseAddress!, scratch.baseAddress!)
                        rowByRow.withUnsafeMutableBufferPointer { v in
                            yRows.withUnsafeMutableBufferPointer { y in
                                for row in 0..<total {
                                    let (image, tileRow) = row.quotientAndRemainder(dividingBy: high)
                                    let (source, target) = (x + image * imageStride, y.baseAddress! + image * imageStride)
                                    if tile == 4 {
                                        Winograd4x4.transformInput(source, channels: channels, height: height, width: width,
                                                                   tileRow: tileRow, into: v.baseAddress! + row * wide, stride: stride,
                                                                   scratch: s)
                                        Winograd4x4.transformOutput(m + row * wide, stride: stride, outputChannels: channels, bias: b,
                                                                    height: height, width: width, tileRow: tileRow, into: target,
                                                                    scratch: s + inputScratch)
                                    } else {
                                        WinogradConvolution.transformInput(source, channels: channels, height: height, width: width,
                                                                           tileRow: tileRow, into: v.baseAddress! + row * wide,
                                                                           stride: stride, scratch: s)
                                        WinogradConvolution.transformOutput(m + row * wide, stride: stride, outputChannels: channels,
                                                                            bias: b, height: height, width: width, tileRow: tileRow,
                                                                            into: target)
                                    }
                                }
                            }
                        }
                        packed.withUnsafeMutableBufferPointer { v in
                            yPacked.withUnsafeMutableBufferPointer { y in
                                for first in Swift.stride(from: 0, to: total, by: group) {
                                    let count = min(group, total - first)
                                    if tile == 4 {
                                        Winograd4x4.transformInputPacked(x, inputImageStride: imageStride, tileRowsPerImage: high,
                                                                         firstRow: first, count: count, channels: channels,
                                                                         height: height, width: width,
                                                                         into: v.baseAddress! + first * wide, stride: stride, scratch: s)
                                        Winograd4x4.transformOutputPacked(m + first * wide, stride: stride, outputChannels: channels,
                                                                          bias: b, height: height, width: width,
                                                                          outputImageStride: imageStride, tileRowsPerImage: high,
                                                                          firstRow: first, count: count, into: y.baseAddress!,
                                                                          scratch: s + inputScratch)
                                    } else {
                                        WinogradConvolution.transformInputPacked(
                                            x, inputImageStride: imageStride, tileRowsPerImage: high, firstRow: first, count: count,
                                            channels: channels, height: height, width: width, into: v.baseAddress! + first * wide,
                                            stride: stride, scratch: s)
                                        WinogradConvolution.transformOutputPacked(
                                            m + first * wide, stride: stride, outputChannels: channels, bias: b, height: height,
                                            width: width, outputImageStride: imageStride, tileRowsPerImage: high, firstRow: first,
                                            count: count, into: y.baseAddress!, scratch: s + inputScratch)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        var mismatches = 0
        for row in 0..<(positions * channels) {
            for t in 0..<(total * wide) where rowByRow[row * stride + t].bitPattern != packed[row * stride + t].bitPattern {
                mismatches += 1
            }
        }
        #expect(mismatches == 0, "V: \(mismatches) of \(positions * channels * total * wide) values differ")
        #expect(!yPacked.contains { $0.isNaN }, "every output written")
        #expect(yRows.map(\.bitPattern) == yPacked.map(\.bitPattern), "outputs")
    }

    /// The Winograd `∂W` sums each position's products over a group's tiles a chunk at a time;
    /// however many tiles a chunk holds (one tile row, three, the default 256, or all of the
    /// group's), `∂W` and the rest come out bit-identical. Odd and even planes, rows of 1 to 20
    /// tiles, input channels that do and do not fill vectors (padded with zeros); F(2x2, 3x3)
    /// and F(4x4, 3x3).
    @Test(arguments: [(8, 16, 7, 7), (3, 16, 6, 10), (16, 32, 15, 15), (24, 48, 9, 40), (5, 16, 3, 3)], [2, 4])
    func winogradWeightGradientChunksChangeNoResult(shape: (Int, Int, Int, Int), tile: Int) {
        let (inputs, outputs, height, width) = shape
        var g = SeededGenerator(seed: 23)
        let conv = Conv2D<Float>(inputChannels: inputs, outputChannels: outputs, kernelSize: 3, padding: 1, using: &g)
        conv.path = .winograd
        conv.winogradTile = tile
        let x: Tensor<Float> = randomTensor([7, inputs, height, width], seed: 24)
        let (wide, high) = ((width + tile - 1) / tile, (height + tile - 1) / tile)
        var results: [[[UInt32]]] = []
        for tiles in [1, 3 * wide, WinogradConvolution.gradientTiles, 4 * high * wide] {
            conv.weightGradientTiles = tiles
            results.append(passBits(conv, x, gradientSeed: 25))
        }
        #expect(results[0] == results[1], "1 vs 3 tile rows a chunk")
        #expect(results[0] == results[2], "1 tile row vs 256 tiles")
        #expect(results[0] == results[3], "1 tile row vs a whole group")
    }

    /// A frozen filter whose bias trains (airbench's whitening layer, in a step that skips the
    /// frozen prefix): the Winograd path leaves `∂W` alone and sums `∂b` bit for bit as the
    /// direct path does.
    @Test(arguments: [2, 4]) func winogradFrozenWeightGetsOnlyTheBiasGradient(tile: Int) {
        var g = SeededGenerator(seed: 26)
        let conv = Conv2D<Float>(inputChannels: 8, outputChannels: 16, kernelSize: 3, padding: 1, using: &g)
        conv.winogradTile = tile
        conv.weight.isTrainable = false
        let x: Tensor<Float> = randomTensor([6, 8, 9, 9], seed: 27)
        let dy: Tensor<Float> = randomTensor([6, 16, 9, 9], seed: 28)
        var biasGradients: [[UInt32]] = []
        for path in [ConvolutionPath.direct, .winograd] {
            conv.path = path
            conv.weight.gradient.zero()
            conv.bias.gradient.zero()
            var y = Tensor<Float>(shape: []), none: Tensor<Float>? = nil
            let context = StepContext(phase: .training, skipsFrozenPrefix: true)
            conv.forward(x, into: &y, context: context)
            conv.backward(input: x, output: y, outputGradient: dy, inputGradient: &none, context: context)
            #expect(conv.weight.gradient.scalars.allSatisfy { $0 == 0 }, "\(path): ∂W left alone")
            biasGradients.append(conv.bias.gradient.scalars.map(\.bitPattern))
        }
        #expect(biasGradients[0] == biasGradients[1])
        #expect(biasGradients[0].contains { $0 != 0 })
    }

    /// Where each kind of convolution goes by default: 3x3 kernels with padding 1 to the Winograd
    /// kernels where they have 64 channels on each side, or 16 on planes at least 24 wide (but
    /// not below 3x3 planes, nor output channels in part of a vector), other
    /// stride-1 kernels to the direct ones on planes of 49 pixels or more.
    @Test func automaticPathsByShape() {
        var g = SeededGenerator(seed: 22)
        func path(_ cin: Int, _ cout: Int, kernel: Int, padding: Int, size: Int) -> ConvolutionPath {
            let conv = Conv2D<Float>(inputChannels: cin, outputChannels: cout, kernelSize: kernel, padding: padding, using: &g)
            return conv.resolvedPath(ConvolutionGeometry(channels: cin, height: size, width: size, kernelHeight: kernel,
                                                         kernelWidth: kernel, padding: padding))
        }
        #expect(path(64, 128, kernel: 3, padding: 1, size: 15) == .winograd)
        #expect(path(24, 64, kernel: 3, padding: 1, size: 31) == .winograd)
        #expect(path(128, 128, kernel: 3, padding: 1, size: 3) == .winograd)
        #expect(path(128, 128, kernel: 3, padding: 1, size: 2) == .batchedGEMM)
        #expect(path(16, 10, kernel: 3, padding: 1, size: 15) == .batchedGEMM)
        #expect(path(1, 24, kernel: 3, padding: 1, size: 28) == .direct)
        #expect(path(16, 16, kernel: 3, padding: 1, size: 16) == .direct)
        #expect(path(16, 16, kernel: 3, padding: 1, size: 24) == .winograd)
        #expect(path(24, 48, kernel: 3, padding: 1, size: 14) == .direct)
        #expect(path(48, 96, kernel: 3, padding: 1, size: 7) == .direct)
        #expect(path(64, 64, kernel: 3, padding: 1, size: 7) == .winograd)
        #expect(path(16, 32, kernel: 5, padding: 2, size: 14) == .direct)
        #expect(path(16, 32, kernel: 3, padding: 0, size: 14) == .direct)
    }

    /// The Winograd output tile by plane: 4x4 tiles on planes of 7x7 and more, 2x2 on smaller
    /// ones; a layer's own setting wins.
    @Test func winogradTileByPlane() {
        var g = SeededGenerator(seed: 29)
        let conv = Conv2D<Float>(inputChannels: 64, outputChannels: 64, kernelSize: 3, padding: 1, using: &g)
        func tile(_ height: Int, _ width: Int) -> Int {
            conv.winogradTile(for: ConvolutionGeometry(channels: 64, height: height, width: width, kernelHeight: 3, kernelWidth: 3,
                                                       padding: 1))
        }
        #expect([tile(31, 31), tile(15, 15), tile(7, 7), tile(7, 20)] == [4, 4, 4, 4])
        #expect([tile(6, 6), tile(3, 3), tile(20, 5)] == [2, 2, 2])
        conv.winogradTile = 2
        #expect(tile(15, 15) == 2)
    }

    /// The direct kernels size their copies by the L2 cache that sysfs reports: its sizes are
    /// read as the kernel writes them, and anything else is refused rather than guessed.
    @Test func cacheSizesAreReadAsSysfsWritesThem() {
        #expect(CacheSize.parseSize("512K") == 524_288)
        #expect(CacheSize.parseSize("2048K") == 2_097_152)
        #expect(CacheSize.parseSize("1M") == 1_048_576)
        #expect(CacheSize.parseSize("65536") == 65_536)
        for bad in ["", "K", "0K", "-512K", "3K", "512 K", "1G", "2048M", "99999999999999999999K"] {
            #expect(CacheSize.parseSize(bad) == nil, "\(bad)")
        }
        // Between 128 KiB and a megabyte of floats, whatever the machine says.
        #expect((32_768...262_144).contains(DirectConvolution.copyBudget))
    }

    /// A weight-gradient tile of several blocks of output channels (with AVX-512, 6 patch
    /// entries × 4 blocks; 3 blocks repeat the last) gives the bits of one block at a time:
    /// every entry is its stored value plus the pixels' products in order. Channels-last inputs
    /// of 5 channels (so tiles straddle kernel rows), two images, a gradient that starts nonzero.
    @Test(arguments: [1, 2, 3, 4])
    func weightGradientTilesOfAnyBlockCount(blocks: Int) {
        let lanes = DirectConvolution.lanes
        guard blocks <= DirectConvolution.weightTileBlocks else { return }
        let (c, k, size, images) = (5, 3, 7, 2)
        let (wp, patch, cout) = (size + k - 1, c * k * k, blocks * lanes)
        let xp: [Float] = randomTensor([images * wp * wp * c], seed: 21).scalars
        let dy: [Float] = randomTensor([images * size * size * cout], seed: 22).scalars
        let start: [Float] = randomTensor([cout * patch], seed: 23).scalars
        func gradient(blocksPerCall: Int) -> [UInt32] {
            var w = start
            w.withUnsafeMutableBufferPointer { w in
                dy.withUnsafeBufferPointer { dy in
                    for first in stride(from: 0, to: blocks, by: blocksPerCall) {
                        DirectConvolution.accumulateWeightGradient(
                            xp, images: images, inputImageStride: wp * wp * c, channels: c, paddedWidth: wp, kernelSize: k,
                            outputHeight: size, outputWidth: size,
                            outputGradient: dy.baseAddress! + first * lanes, gradientImageStride: size * size * cout,
                            gradientPixelStride: cout, gradientRowStride: size * cout,
                            into: w.baseAddress! + first * lanes * patch, blockStride: lanes * patch,
                            blockCount: min(blocksPerCall, blocks - first))
                    }
                }
            }
            return w.map(\.bitPattern)
        }
        let (together, alone) = (gradient(blocksPerCall: blocks), gradient(blocksPerCall: 1))
        let differing = zip(together, alone).filter { $0 != $1 }.count
        #expect(differing == 0, "\(differing) of \(alone.count) entries differ from one block at a time")
    }

    /// The bits of one forward and backward pass from zeroed gradients: the output, `∂X`, `∂W`, `∂b`.
    private func passBits(_ conv: Conv2D<Float>, _ x: Tensor<Float>, gradientSeed: UInt64) -> [[UInt32]] {
        conv.weight.gradient.zero()
        conv.bias.gradient.zero()
        var y = Tensor<Float>(shape: [])
        conv.forward(x, into: &y, context: .training())
        let dy: Tensor<Float> = randomTensor(y.shape, seed: gradientSeed)
        var dx: Tensor<Float>? = Tensor(shape: [])
        conv.backward(input: x, output: y, outputGradient: dy, inputGradient: &dx, context: .training())
        return [y.scalars, dx!.scalars, conv.weight.gradient.scalars, conv.bias.gradient.scalars].map { $0.map(\.bitPattern) }
    }

    private func expectClose(_ fast: [Float], _ reference: [Double], _ what: String) {
        #expect(fast.count == reference.count, "\(what): \(fast.count) vs \(reference.count) values")
        let scale = reference.map(abs).max() ?? 0
        let worst = zip(fast, reference).map { abs(Double($0) - $1) }.max() ?? 0
        #expect(worst <= 1e-5 * max(scale, 1), "\(what): max |fast − reference| = \(worst) (largest value \(scale))")
    }
}

/// The vectorized 2x2 max pooling (`Float`) against the scalar loop
/// (which `Double` always takes): same maxima and the same winners, ties included (inputs are
/// rounded to a few values so that windows often hold equal maxima). Rows of fewer than 8
/// outputs (15x15, 7x7, 4x5 planes) take eight windows that run on into the next row, except
/// where that would read past the batch (the last plane's last rows).
@Suite struct MaxPoolFastPathTests {
    @Test(arguments: [(16, 16), (17, 33), (28, 28), (32, 32), (9, 26), (15, 15), (7, 7), (4, 5)])
    func matchesTheScalarLoop(height: Int, width: Int) {
        let x: Tensor<Float> = randomTensor([3, 2, height, width], seed: 11)
        let rounded = Tensor<Float>(shape: x.shape, scalars: x.scalars.map { ($0 * 2).rounded() })
        let fast = MaxPool2D<Float>(), scalar = MaxPool2D<Double>()
        var y = Tensor<Float>(shape: []), yScalar = Tensor<Double>(shape: [])
        fast.forward(rounded, into: &y, context: .inference)
        scalar.forward(rounded.converted(), into: &yScalar, context: .inference)
        #expect(y.scalars.map(Double.init) == yScalar.scalars)
        #expect(fast.argmax == scalar.argmax)
    }
}

/// A training step in slices of the batch (`accumulateGradients`) against the whole batch at
/// once: the same loss, count of correct predictions and parameter gradients (to rounding),
/// with a short last slice; and exactly the same when the batch fits in one slice.
@Suite struct MicroBatchTests {
    private func network() throws -> Network<Float> {
        var g = SeededGenerator(seed: 21)
        return try Network(inputShape: [3, 12, 12], layers: [
            Conv2D<Float>(inputChannels: 3, outputChannels: 16, kernelSize: 5, padding: 2, using: &g), ReLU<Float>(),
            MaxPool2D<Float>(), Conv2D<Float>(inputChannels: 16, outputChannels: 16, kernelSize: 3, padding: 1, using: &g),
            ReLU<Float>(), Flatten<Float>(), Dense<Float>(inputSize: 16 * 6 * 6, outputSize: 10, using: &g),
        ])
    }

    @Test(arguments: [(40, 16), (16, 16), (7, 16), (40, 1)])
    func slicesAddUpToTheWholeBatch(batch: Int, microBatch: Int) throws {
        let net = try network()
        let x: Tensor<Float> = randomTensor([batch, 3, 12, 12], seed: 22)
        var g = SeededGenerator(seed: 23)
        let labels = (0..<batch).map { _ in g.nextInt(below: 10) }

        net.zeroGradients()
        var dLogits: Tensor<Float>? = Tensor(shape: [])
        let whole = SoftmaxCrossEntropy.evaluate(logits: net.forward(x), labels: labels, gradient: &dLogits)
        net.backward(dLogits!)
        let wholeGradients = net.parameters.map(\.gradient.scalars)

        net.zeroGradients()
        let sliced = net.accumulateGradients(batch: x, labels: labels, microBatch: microBatch)
        #expect(sliced.correct == whole.correct)
        #expect(abs(sliced.loss - whole.loss) <= 1e-6 * max(1, abs(whole.loss)), "loss \(sliced.loss) vs \(whole.loss)")
        for (index, (p, expected)) in zip(net.parameters, wholeGradients).enumerated() {
            if batch <= microBatch {
                #expect(p.gradient.scalars == expected, "parameter \(index): one slice must be the plain step")
            } else {
                let scale = expected.map(abs).max() ?? 0
                let worst = zip(p.gradient.scalars, expected).map { abs($0 - $1) }.max() ?? 0
                #expect(worst <= 1e-5 * max(scale, 1e-3), "parameter \(index): max difference \(worst), largest \(scale)")
            }
        }
    }
}
