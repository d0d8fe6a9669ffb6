/// The geometry of a 2-D convolution or pooling window over one image.
public struct ConvolutionGeometry: Sendable, Equatable {
    public var channels: Int, height: Int, width: Int
    public var kernelHeight: Int, kernelWidth: Int
    public var stride: Int, padding: Int

    /// Describes a `kernelHeight x kernelWidth` window over a `channels x height x width` image.
    public init(channels: Int, height: Int, width: Int, kernelHeight: Int, kernelWidth: Int, stride: Int = 1, padding: Int = 0) {
        (self.channels, self.height, self.width) = (channels, height, width)
        (self.kernelHeight, self.kernelWidth, self.stride, self.padding) = (kernelHeight, kernelWidth, stride, padding)
    }

    /// Output height: `⌊(H + 2p − kh) / s⌋ + 1`.
    public var outputHeight: Int { (height + 2 * padding - kernelHeight) / stride + 1 }
    /// Output width: `⌊(W + 2p − kw) / s⌋ + 1`.
    public var outputWidth: Int { (width + 2 * padding - kernelWidth) / stride + 1 }
    /// Rows of the im2col matrix: `C · kh · kw`.
    public var patchSize: Int { channels * kernelHeight * kernelWidth }
}

/// Unfolds one `C x H x W` image into the `[C·kh·kw, Ho·Wo]` patch matrix:
///
/// ```
/// col[(c·kh + i)·kw + j, oh·Wo + ow] = x[c, oh·s − p + i, ow·s − p + j]   (0 outside the image)
/// ```
///
/// Row order `(c, i, j)` matches a weight matrix `[Cout, Cin·kh·kw]` — PyTorch's
/// `[out, in, kh, kw]` weight read row-major — so `W · col` is the convolution.
///
/// `rowStride` (at least `Ho·Wo`, the default) places the rows further apart, so that the patch
/// matrices of several images can sit side by side in one `[C·kh·kw, images·Ho·Wo]` matrix.
@_specialize(where Scalar == Float)
@_specialize(where Scalar == Double)
public func im2col<Scalar: NetworkScalar>(
    _ x: UnsafePointer<Scalar>, _ g: ConvolutionGeometry, into col: UnsafeMutablePointer<Scalar>, rowStride: Int? = nil
) {
    let (oh, ow) = (g.outputHeight, g.outputWidth)
    let rowStride = rowStride ?? oh * ow
    if g.stride == 1 && oh == g.height && ow == g.width {
        im2colSamePadding(x, g, into: col, rowStride: rowStride)
        return
    }
    var row = col
    for c in 0..<g.channels {
        let plane = x + c * g.height * g.width
        for i in 0..<g.kernelHeight {
            for j in 0..<g.kernelWidth {
                for y in 0..<oh {
                    let dst = row + y * ow
                    let iy = y * g.stride - g.padding + i
                    guard iy >= 0 && iy < g.height else {
                        dst.update(repeating: 0, count: ow); continue
                    }
                    let src = plane + iy * g.width
                    // Output columns whose input column ox·s − p + j lies inside the row.
                    let first = max(0, (g.padding - j + g.stride - 1) / g.stride)
                    let last = min(ow, (g.width + g.padding - j + g.stride - 1) / g.stride)
                    if first > 0 { dst.update(repeating: 0, count: min(first, ow)) }
                    if last < ow { (dst + max(last, 0)).update(repeating: 0, count: ow - max(last, 0)) }
                    if first < last {
                        if g.stride == 1 {
                            (dst + first).update(from: src + first - g.padding + j, count: last - first)
                        } else {
                            for x in first..<last { dst[x] = src[x * g.stride - g.padding + j] }
                        }
                    }
                }
                row += rowStride
            }
        }
    }
}

/// `im2col` for stride 1 with "same" padding (the output has the input's size), where each
/// row of `col` is the whole input plane shifted by `(i − p)·W + (j − p)`: one long copy per
/// row, then zeros where the shift reads outside the plane or wraps around a row's end.
@inline(__always)
private func im2colSamePadding<Scalar: NetworkScalar>(
    _ x: UnsafePointer<Scalar>, _ g: ConvolutionGeometry, into col: UnsafeMutablePointer<Scalar>, rowStride: Int
) {
    let (h, w) = (g.height, g.width)
    let size = h * w
    var row = col
    for c in 0..<g.channels {
        let plane = x + c * size
        for i in 0..<g.kernelHeight {
            for j in 0..<g.kernelWidth {
                let (dy, dx) = (i - g.padding, j - g.padding)
                let shift = dy * w + dx
                // Output positions t whose source t + shift lies inside the plane.
                let first = min(size, max(0, -shift)), last = max(0, min(size, size - shift))
                if first > 0 { row.update(repeating: 0, count: first) }
                if last < size { (row + last).update(repeating: 0, count: size - last) }
                if first < last { (row + first).update(from: plane + first + shift, count: last - first) }
                // Columns whose source column x + dx falls off the row's left or right end (a
                // pixel or two per row: stores, not a call to memset each).
                if dx != 0 {
                    let (zeroFrom, zeroTo) = dx < 0 ? (0, min(w, -dx)) : (max(0, w - dx), w)
                    for y in 0..<h {
                        for x in zeroFrom..<zeroTo { row[y &* w &+ x] = 0 }
                    }
                }
                // Rows whose source row y + dy falls off the top or bottom (covered by the
                // range above except where a wrapped row end crept in: zero them whole).
                if dy < 0 { row.update(repeating: 0, count: min(-dy, h) * w) }
                if dy > 0 { (row + max(h - dy, 0) * w).update(repeating: 0, count: min(dy, h) * w) }
                row += rowStride
            }
        }
    }
}

/// Folds a patch matrix back onto the image, **adding** each entry to the pixel it came from —
/// the adjoint of `im2col`, used to turn `∂L/∂col` into `∂L/∂x`. `x` must be zeroed first.
/// `rowStride` as in `im2col`.
@_specialize(where Scalar == Float)
@_specialize(where Scalar == Double)
public func col2im<Scalar: NetworkScalar>(
    _ col: UnsafePointer<Scalar>, _ g: ConvolutionGeometry, into x: UnsafeMutablePointer<Scalar>, rowStride: Int? = nil
) {
    let (oh, ow) = (g.outputHeight, g.outputWidth)
    let rowStride = rowStride ?? oh * ow
    var row = col
    for c in 0..<g.channels {
        let plane = x + c * g.height * g.width
        for i in 0..<g.kernelHeight {
            for j in 0..<g.kernelWidth {
                for y in 0..<oh {
                    let iy = y * g.stride - g.padding + i
                    guard iy >= 0 && iy < g.height else { continue }
                    let src = row + y * ow
                    let dst = plane + iy * g.width
                    let first = max(0, (g.padding - j + g.stride - 1) / g.stride)
                    let last = min(ow, (g.width + g.padding - j + g.stride - 1) / g.stride)
                    if g.stride == 1 {
                        let shifted = dst - g.padding + j
                        for x in first..<max(first, last) { shifted[x] += src[x] }
                    } else {
                        var x = first
                        while x < last {
                            dst[x * g.stride - g.padding + j] += src[x]
                            x += 1
                        }
                    }
                }
                row += rowStride
            }
        }
    }
}
