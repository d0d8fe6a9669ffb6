import Backprop
import Testing

@Suite struct ConvolutionTests {
    /// The course's hand example: a 3x3 input, a 3x3 kernel, bias 1, padding 1.
    /// Worked on paper (cross-correlation, as PyTorch):
    /// ```
    /// [1 0 1]     [1 2 3]         [14 18 12]
    /// [0 1 0]  ⋆  [4 5 6]  + 1 =  [16 25 14] + 1
    /// [1 0 1]     [7 8 9]         [ 8 12  6]
    /// ```
    /// e.g. the centre: 1·1 + 3·1 + 5·1 + 7·1 + 9·1 = 25; the top-left: 5·1 + 9·1 = 14.
    @Test func courseHandExample() {
        var g = SeededGenerator(seed: 0)
        let conv = Conv2D<Float>(inputChannels: 1, outputChannels: 1, kernelSize: 3, padding: 1, using: &g)
        conv.weight.value = Tensor<Float>(shape: [1, 1, 3, 3], scalars: [1, 2, 3, 4, 5, 6, 7, 8, 9])
        conv.bias.value = Tensor<Float>(shape: [1], scalars: [1])
        let y = conv(Tensor<Float>(shape: [1, 1, 3, 3], scalars: [1, 0, 1, 0, 1, 0, 1, 0, 1]))
        #expect(y.shape == [1, 1, 3, 3])
        #expect(y.scalars == [14, 18, 12, 16, 25, 14, 8, 12, 6].map { $0 + 1 })
    }

    /// im2col followed by col2im multiplies each pixel by the number of windows that cover it.
    @Test func col2imIsTheAdjointOfIm2col() {
        let g = ConvolutionGeometry(channels: 2, height: 5, width: 7, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1)
        let x: [Float] = randomTensor([2, 5, 7], seed: 1).scalars
        let c: [Float] = randomTensor([g.patchSize, g.outputHeight * g.outputWidth], seed: 2).scalars
        var col = [Float](repeating: 0, count: c.count)
        var back = [Float](repeating: 0, count: x.count)
        im2col(x, g, into: &col)
        col2im(c, g, into: &back)
        // ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩
        #expect(abs(dot(col, c) - dot(x, back)) < 1e-4)
    }
}

@Suite struct Im2colTests {
    /// The plain definition, for comparison: `col[(c·kh + i)·kw + j, y·Wo + x] = x[c, y·s − p + i, x·s − p + j]`.
    private func definition(_ x: [Float], _ g: ConvolutionGeometry) -> [Float] {
        var col = [Float](repeating: .nan, count: g.patchSize * g.outputHeight * g.outputWidth)
        for c in 0..<g.channels { for i in 0..<g.kernelHeight { for j in 0..<g.kernelWidth {
            let r = (c * g.kernelHeight + i) * g.kernelWidth + j
            for y in 0..<g.outputHeight { for xo in 0..<g.outputWidth {
                let (iy, ix) = (y * g.stride - g.padding + i, xo * g.stride - g.padding + j)
                let inside = iy >= 0 && iy < g.height && ix >= 0 && ix < g.width
                col[r * g.outputHeight * g.outputWidth + y * g.outputWidth + xo] = inside ? x[(c * g.height + iy) * g.width + ix] : 0
            } }
        } } }
        return col
    }

    /// Every path (same padding, other stride-1 padding, strided) against the definition,
    /// with odd sizes and kernels larger than the padding.
    @Test(arguments: [(5, 2, 1, 7, 6), (3, 1, 1, 4, 9), (5, 2, 1, 28, 28), (3, 0, 1, 6, 5), (3, 2, 1, 5, 5),
                      (3, 1, 2, 7, 7), (1, 0, 1, 3, 4), (5, 1, 1, 6, 6), (4, 2, 2, 9, 8), (7, 3, 1, 3, 3), (9, 4, 1, 2, 3)])
    func matchesTheDefinition(kernel: Int, padding: Int, stride: Int, height: Int, width: Int) {
        let g = ConvolutionGeometry(channels: 2, height: height, width: width, kernelHeight: kernel, kernelWidth: kernel,
                                    stride: stride, padding: padding)
        let x: [Float] = randomTensor([2 * height * width], seed: 5).scalars
        var col = [Float](repeating: .nan, count: g.patchSize * g.outputHeight * g.outputWidth)
        im2col(x, g, into: &col)
        #expect(col == definition(x, g))
    }
}
