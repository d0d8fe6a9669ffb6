/// Single-precision 3x3 convolutions with stride 1 and padding 1 by Winograd's F(4x4, 3x3)
/// (Lavin and Gray, 2016; interpolation points 0, ±1, ±2, ∞): each 4x4 block of output pixels
/// ("tile") of each pair of channels takes 36 multiplications where the direct sum takes 144,
/// and F(2x2, 3x3) (`WinogradConvolution`) 64.
///
/// For one tile, `d` the 6x6 input patch under it (zero outside the image) and `g` a 3x3 filter,
/// `y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A` with
/// ```
/// Bᵀ = | 4  0 −5  0  1  0 |   G = |  1/4     0     0   |   Aᵀ = | 1  1  1  1  1  0 |
///      | 0 −4 −4  1  1  0 |       | −1/6  −1/6  −1/6  |        | 0  1 −1  2 −2  0 |
///      | 0  4 −4 −1  1  0 |       | −1/6   1/6  −1/6  |        | 0  1  1  4  4  0 |
///      | 0 −2 −1  2  1  0 |       | 1/24  1/12   1/6  |        | 0  1 −1  8 −8  1 |
///      | 0  2 −1 −2  1  0 |       | 1/24 −1/12   1/6  |
///      | 0  4  0 −5  0  1 |       |   0     0     1   |
/// ```
/// Summed over input channels these are 36 matrix products, one per position `ξ` of the 6x6
/// transformed tile: `WinogradConvolution.convolve` runs them, with a chunk of 4x4 tiles
/// (`chunk`), on its register tile and with this enum's transforms; the chunks of tile rows, the
/// layouts and the order of every sum are those of F(2x2, 3x3) with 36 positions for 16. The
/// input gradient takes the same path with the flipped filters, and the weight gradient
/// `WinogradConvolution.weightGradient`'s, with the transforms below. The transforms multiply
/// by up to 8 (A) and 5 (B) and divide by up to 24 (G), so the rounding is several times
/// F(2x2, 3x3)'s: within 1e-5 of the largest value of the `Double` im2col path in the tests.
enum Winograd4x4 {
    typealias Vector = KernelVector
    static let lanes = Vector.scalarCount
    /// Positions of a transformed 6x6 tile.
    static let positions = 36
    static let blockChannels = WinogradConvolution.blockChannels

    /// Tiles along an edge of `n` output pixels.
    static func tiles(_ n: Int) -> Int { (n + 3) / 4 }

    // MARK: Weights

    /// The floats `transformWeights` writes: `[36][⌈Cout/6⌉][Cin][6]`.
    static func transformedWeightCount(outputs: Int, inputs: Int) -> Int {
        WinogradConvolution.transformedWeightCount(outputs: outputs, inputs: inputs, positions: positions)
    }

    /// `U[ξ][b][c][q] = (G g Gᵀ)[ξ]`, laid out and flipped as `WinogradConvolution.transformWeights`
    /// lays out and flips F(2x2, 3x3)'s, with 36 positions, computed in `Double` and rounded once.
    static func transformWeights(
        _ w: UnsafePointer<Float>, outputChannels: Int, inputChannels: Int, flippedForInputGradient: Bool,
        into u: UnsafeMutablePointer<Float>
    ) {
        let (cout, cin) = (outputChannels, inputChannels)
        let (outputs, inputs) = flippedForInputGradient ? (cin, cout) : (cout, cin)
        let blocks = DirectConvolution.channelBlocks(outputs), b = blockChannels
        let next = blocks * inputs * b
        // (G v)[a] for a column v of three values.
        @inline(__always) func column(_ v0: Double, _ v1: Double, _ v2: Double, _ a: Int) -> Double {
            switch a {
            case 0: return v0 / 4
            case 1: return -(v0 + v1 + v2) / 6
            case 2: return -(v0 - v1 + v2) / 6
            case 3: return v0 / 24 + v1 / 12 + v2 / 6
            case 4: return v0 / 24 - v1 / 12 + v2 / 6
            default: return v2
            }
        }
        for block in 0..<blocks {
            for c in 0..<inputs {
                for q in 0..<b {
                    let output = block * b + q
                    @inline(__always) func g(_ i: Int, _ j: Int) -> Double {
                        guard output < outputs else { return 0 }
                        return Double(flippedForInputGradient ? w[((c * cin + output) * 3 + (2 - i)) * 3 + (2 - j)]
                                      : w[((output * cin + c) * 3 + i) * 3 + j])
                    }
                    let first = u + (block * inputs + c) * b + q
                    for a in 0..<6 {
                        // Row a of t = G g, then U[a][n] = (t Gᵀ)[a][n].
                        let (t0, t1, t2) = (column(g(0, 0), g(1, 0), g(2, 0), a), column(g(0, 1), g(1, 1), g(2, 1), a),
                                            column(g(0, 2), g(1, 2), g(2, 2), a))
                        for n in 0..<6 { first[(6 * a + n) * next] = Float(column(t0, t1, t2, n)) }
                    }
                }
            }
        }
    }

    // MARK: The convolution

    /// The chunk of `WinogradConvolution.convolve` for planes `width` wide with `inputs` and
    /// `outputs` channels (see `WinogradConvolution.chunk`), with room for this transform's
    /// rows and output tiles.
    static func chunk(width: Int, inputs: Int, outputs: Int, budget: Int,
                      minimumTiles: Int = WinogradConvolution.tileWidth) -> WinogradConvolution.Chunk {
        WinogradConvolution.chunk(tilesWide: tiles(width), tile: 4, inputs: inputs, outputs: outputs, budget: budget,
                                         minimumTiles: minimumTiles, scratch: rowScratch(tiles(width)) + outputScratch)
    }

    /// The floats `transformOutput` and `transformOutputPacked` work in: a vector of 4x4 tiles
    /// (16 × L) and their four interleaved pixel rows (16 × L).
    static var outputScratch: Int { 32 * lanes }

    /// The floats of one of `transformInput`'s phase rows for planes `tilesWide` tiles wide:
    /// whole vectors of tiles and one more float, zero past the row.
    static func phaseRowLength(_ tilesWide: Int) -> Int { (tilesWide + lanes - 1) / lanes * lanes + 1 }

    /// The floats `transformInput` works in: six input rows, each as its four column phases and
    /// zero-bordered; `transformInputPacked`'s twelve segmented rows (4 × L each) and 36
    /// phase vectors where rows are packed (`WinogradConvolution.rowsPerVector`: with 8 lanes,
    /// 15x15 planes' rows of 4 tiles two to a vector, 7x7 planes' rows of 2 four).
    static func rowScratch(_ tilesWide: Int) -> Int {
        WinogradConvolution.rowsPerVector(tilesWide) > 1 ? 84 * lanes : 48 * phaseRowLength(tilesWide)
    }

    /// `V[ξ][c][tx] = (Bᵀ d B)[ξ]` for the tiles of tile row `tileRow` of one image, `d` the 6x6
    /// patch from input row `4·tileRow − 1` and column `4·tx − 1` (zero outside the image);
    /// `V[ξ][c]` rows are `stride` floats apart, `channels` of them per position. A vector of L
    /// tiles at a time; the spare lanes of a row narrower than L go past it, as in
    /// `WinogradConvolution.transformInput`. `scratch` holds `rowScratch` floats.
    @inline(never)
    static func transformInput(
        _ x: UnsafePointer<Float>, channels: Int, height: Int, width: Int, tileRow: Int,
        into v: UnsafeMutablePointer<Float>, stride: Int, scratch: UnsafeMutablePointer<Float>
    ) {
        let wide = tiles(width), plane = height * width, positionStride = channels * stride
        // Each of the six input rows split into its four column phases, zero-bordered:
        // phase[a][r][j] = x[4·tileRow − 1 + a][4j + r − 1], so that tile tx's patch row is
        // (phase r at tx for r = 0...3, then phases 0 and 1 at tx + 1). A row is copied between
        // zeros (`line[k] = x[…][k − 1]`) and split 4·L floats at a time (`deinterleaved`).
        let span = phaseRowLength(wide), blocks = span / lanes
        scratch.update(repeating: 0, count: rowScratch(wide))
        @inline(__always) func phase(_ a: Int, _ r: Int) -> UnsafeMutablePointer<Float> { scratch + (4 * a + r) * span }
        @inline(__always) func line(_ a: Int) -> UnsafeMutablePointer<Float> { scratch + (24 + 4 * a) * span }
        let first = max(0, 1 - 4 * tileRow), rows = first..<max(first, min(6, height + 1 - 4 * tileRow))
        for c in 0..<channels {
            let source = x + c * plane
            // All six rows copied first: split right after its copy, a row's vector loads waited
            // for the copy's stores (a quarter of the transform's time).
            for a in rows { copyFloats(from: source + (4 * tileRow - 1 + a) * width, count: width, to: line(a) + 1) }
            for a in rows {
                let line = line(a)
                for k in 0..<blocks {
                    let split = deinterleaved(UnsafeRawPointer(line + 4 * k * lanes).loadUnaligned(as: KernelVectorQuad.self))
                    UnsafeMutableRawPointer(phase(a, 0) + k * lanes).storeBytes(of: split.0, as: Vector.self)
                    UnsafeMutableRawPointer(phase(a, 1) + k * lanes).storeBytes(of: split.1, as: Vector.self)
                    UnsafeMutableRawPointer(phase(a, 2) + k * lanes).storeBytes(of: split.2, as: Vector.self)
                    UnsafeMutableRawPointer(phase(a, 3) + k * lanes).storeBytes(of: split.3, as: Vector.self)
                }
                // The last vector's tile reads phases 0 and 1 one tile further.
                phase(a, 0)[blocks * lanes] = line[4 * blocks * lanes]
                phase(a, 1)[blocks * lanes] = line[4 * blocks * lanes + 1]
            }
            var tx = 0
            while tx < wide {
                let target = UnsafeMutableRawPointer(v + c * stride + tx)
                inputTransform(load: { a, n in
                    UnsafeRawPointer(phase(a, n % 4) + tx + n / 4).loadUnaligned(as: Vector.self)
                }, store: { value, position in
                    target.storeBytes(of: value, toByteOffset: position * positionStride * 4, as: Vector.self)
                })
                tx += lanes
            }
        }
    }

    /// `transformInput` for `count` consecutive tile rows of a chunk at once (at most
    /// `rowsPerVector(tiles(width))`, which must exceed 1): rows `firstRow ..< firstRow + count`
    /// of the images' tile rows (`tileRowsPerImage` per image, images `inputImageStride` floats
    /// apart from `x`), row j's tiles in lanes `j·wide ..< (j + 1)·wide` of each vector, which is
    /// where `V` holds them (`into` is row `firstRow`'s first tile). Each tile's patch and
    /// transform are `transformInput`'s, so every value is the same.
    ///
    /// For each of the six input rows `a` under the tile rows, `near[a]` holds segment j =
    /// `x[row][−1 ..< 4·wide − 1]` of row j's input row and `far[a]` segment j =
    /// `x[row][3 ..< 4·wide + 3]` (zero outside the image), `4·wide` floats each, 4·L in all.
    /// Split into column phases (`deinterleaved`), `near` gives tile (j, t)'s patch columns 0–3
    /// in lane `j·wide + t`, and `far` its columns 4 and 5.
    @inline(never)
    static func transformInputPacked(
        _ x: UnsafePointer<Float>, inputImageStride: Int, tileRowsPerImage: Int, firstRow: Int, count: Int,
        channels: Int, height: Int, width: Int, into v: UnsafeMutablePointer<Float>, stride: Int,
        scratch: UnsafeMutablePointer<Float>
    ) {
        let wide = tiles(width), line = 4 * lanes, plane = height * width
        let positionStride = channels * stride
        precondition(WinogradConvolution.rowsPerVector(wide) > 1 && count <= WinogradConvolution.rowsPerVector(wide))
        let near = scratch, far = scratch + 6 * line, phases = scratch + 12 * line
        let group = PackedTileRows(firstRow: firstRow, count: count, tileRowsPerImage: tileRowsPerImage, imageStride: inputImageStride,
                                   tile: 4, height: height, width: width)
        near.update(repeating: 0, count: 12 * line)
        for c in 0..<channels {
            group.copyPatchRows(x + c * plane, near: near, far: far, line: line)
            for a in 0..<6 {
                let split = deinterleaved(UnsafeRawPointer(near + a * line).loadUnaligned(as: KernelVectorQuad.self))
                let farSplit = deinterleaved(UnsafeRawPointer(far + a * line).loadUnaligned(as: KernelVectorQuad.self))
                let phase = UnsafeMutableRawPointer(phases + 6 * a * lanes)
                phase.storeBytes(of: split.0, as: Vector.self)
                phase.storeBytes(of: split.1, toByteOffset: lanes * 4, as: Vector.self)
                phase.storeBytes(of: split.2, toByteOffset: 2 * lanes * 4, as: Vector.self)
                phase.storeBytes(of: split.3, toByteOffset: 3 * lanes * 4, as: Vector.self)
                phase.storeBytes(of: farSplit.0, toByteOffset: 4 * lanes * 4, as: Vector.self)
                phase.storeBytes(of: farSplit.1, toByteOffset: 5 * lanes * 4, as: Vector.self)
            }
            let target = UnsafeMutableRawPointer(v + c * stride)
            inputTransform(load: { a, n in
                UnsafeRawPointer(phases + (6 * a + n) * lanes).loadUnaligned(as: Vector.self)
            }, store: { value, position in
                target.storeBytes(of: value, toByteOffset: position * positionStride * 4, as: Vector.self)
            })
        }
    }

    /// `V = Bᵀ d B` for one 6x6 patch (a vector of lanes at a time): `load(a, n)` is `d[a][n]`,
    /// `store(value, ξ)` takes `V[ξ]`. Both input transforms compute it this way, in this order.
    @inline(__always)
    static func inputTransform(load: (Int, Int) -> Vector, store: (Vector, Int) -> Void) {
        // w[a][n] = (d B)[a][n] row by row, then V[6i + n] = (Bᵀ w)[i][n] column by column.
        var w = InlineArray<36, Vector>(repeating: Vector())
        for a in 0..<6 {
            let t = transform(load(a, 0), load(a, 1), load(a, 2), load(a, 3), load(a, 4), load(a, 5))
            w[6 * a] = t.0; w[6 * a + 1] = t.1; w[6 * a + 2] = t.2; w[6 * a + 3] = t.3; w[6 * a + 4] = t.4; w[6 * a + 5] = t.5
        }
        for n in 0..<6 {
            let t = transform(w[n], w[6 + n], w[12 + n], w[18 + n], w[24 + n], w[30 + n])
            store(t.0, n); store(t.1, 6 + n); store(t.2, 12 + n); store(t.3, 18 + n); store(t.4, 24 + n); store(t.5, 30 + n)
        }
    }

    /// `Bᵀ d` for a column `d` of six values.
    @inline(__always)
    static func transform(_ d0: Vector, _ d1: Vector, _ d2: Vector, _ d3: Vector, _ d4: Vector, _ d5: Vector)
        -> (Vector, Vector, Vector, Vector, Vector, Vector) {
        let four = Vector(repeating: 4), five = Vector(repeating: 5), two = Vector(repeating: 2)
        let a = d4 - four * d2, b = d3 - four * d1
        let c = d4 - d2, e = two * (d3 - d1)
        return (four * d0 - five * d2 + d4, a + b, a - b, c + e, c - e, four * d1 - five * d3 + d5)
    }

    /// `y = Aᵀ M A + b` for the tiles of tile row `tileRow` of one image (`M[ξ][o][tx]`, rows
    /// `stride` floats apart), dropping the pixels past the plane's edge. A vector of L tiles at
    /// a time, through `scratch` (16 × L floats), from which `storeInterleavedRows` writes the
    /// pixel rows.
    @inline(never)
    static func transformOutput(
        _ m: UnsafePointer<Float>, stride: Int, outputChannels: Int, bias: UnsafePointer<Float>?,
        height: Int, width: Int, tileRow: Int, into y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>
    ) {
        let wide = tiles(width), plane = height * width, positionStride = outputChannels * stride
        let top = 4 * tileRow, rows = min(4, height - top)
        for o in 0..<outputChannels {
            let b = Vector(repeating: bias?[o] ?? 0)
            let m0 = m + o * stride, out = y + o * plane + top * width
            var tx = 0
            while tx < wide {
                untransformTiles(m0 + tx, positionStride: positionStride, bias: b, into: scratch)
                storeInterleavedRows(scratch, rows: rows, count: min(4 * lanes, width - 4 * tx), width: width, to: out + 4 * tx)
                tx += lanes
            }
        }
    }

    /// `transformOutput` for `count` consecutive tile rows of a chunk at once (as
    /// `transformInputPacked` takes them): rows `firstRow ..< firstRow + count` of the images'
    /// tile rows, row j's tiles in lanes `j·wide ..< (j + 1)·wide` of `M`'s vectors (`m` is row
    /// `firstRow`'s first tile), written to images `outputImageStride` floats apart from `y`.
    /// Each tile's untransform is `transformOutput`'s, so every value is the same.
    @inline(never)
    static func transformOutputPacked(
        _ m: UnsafePointer<Float>, stride: Int, outputChannels: Int, bias: UnsafePointer<Float>?,
        height: Int, width: Int, outputImageStride: Int, tileRowsPerImage: Int, firstRow: Int, count: Int,
        into y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>
    ) {
        let wide = tiles(width), plane = height * width, positionStride = outputChannels * stride
        precondition(WinogradConvolution.rowsPerVector(wide) > 1 && count <= WinogradConvolution.rowsPerVector(wide))
        let group = PackedTileRows(firstRow: firstRow, count: count, tileRowsPerImage: tileRowsPerImage,
                                   imageStride: outputImageStride, tile: 4, height: height, width: width)
        for o in 0..<outputChannels {
            untransformTiles(m + o * stride, positionStride: positionStride, bias: Vector(repeating: bias?[o] ?? 0), into: scratch)
            storeInterleavedSegments(scratch, buffer: scratch + 16 * lanes, group: group, to: y + o * plane)
        }
    }

    /// `Aᵀ m A + b` for a vector of L tiles (`m0`: position 0's vector, positions
    /// `positionStride` floats apart), into `tile`: `tile[(4i + j)·L + l]` is pixel (i, j) of
    /// lane l's tile. Both output transforms compute it this way, in this order.
    @inline(__always)
    static func untransformTiles(_ m0: UnsafePointer<Float>, positionStride: Int, bias b: Vector, into tile: UnsafeMutablePointer<Float>) {
        // p[a] = (m A)[a] row by row, then column j of the tile, (Aᵀ p)[·][j].
        @inline(__always) func row(_ a: Int) -> (Vector, Vector, Vector, Vector) {
            @inline(__always) func load(_ n: Int) -> Vector {
                UnsafeRawPointer(m0 + (6 * a + n) * positionStride).loadUnaligned(as: Vector.self)
            }
            return untransform(load(0), load(1), load(2), load(3), load(4), load(5))
        }
        let p0 = row(0), p1 = row(1), p2 = row(2), p3 = row(3), p4 = row(4), p5 = row(5)
        let target = UnsafeMutableRawPointer(tile)
        @inline(__always) func column(_ j: Int, _ t: (Vector, Vector, Vector, Vector)) {
            target.storeBytes(of: t.0 + b, toByteOffset: j * lanes * 4, as: Vector.self)
            target.storeBytes(of: t.1 + b, toByteOffset: (4 + j) * lanes * 4, as: Vector.self)
            target.storeBytes(of: t.2 + b, toByteOffset: (8 + j) * lanes * 4, as: Vector.self)
            target.storeBytes(of: t.3 + b, toByteOffset: (12 + j) * lanes * 4, as: Vector.self)
        }
        column(0, untransform(p0.0, p1.0, p2.0, p3.0, p4.0, p5.0))
        column(1, untransform(p0.1, p1.1, p2.1, p3.1, p4.1, p5.1))
        column(2, untransform(p0.2, p1.2, p2.2, p3.2, p4.2, p5.2))
        column(3, untransform(p0.3, p1.3, p2.3, p3.3, p4.3, p5.3))
    }

    /// `Aᵀ m` for a column `m` of six values.
    @inline(__always)
    static func untransform(_ m0: Vector, _ m1: Vector, _ m2: Vector, _ m3: Vector, _ m4: Vector, _ m5: Vector)
        -> (Vector, Vector, Vector, Vector) {
        let s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4
        return (m0 + s12 + s34, d12 + Vector(repeating: 2) * d34, s12 + Vector(repeating: 4) * s34,
                d12 + Vector(repeating: 8) * d34 + m5)
    }
}

// MARK: The weight gradient

/// The transforms of `WinogradConvolution.weightGradient` with `GradientChunk.tile` 4: the same
/// driver, chunks and sums, on 6x6 patches at a stride of 4 and 36 positions.
extension Winograd4x4 {
    /// `∂M[ξ][tx][o] = (A ∂y Aᵀ)[ξ]` for the tiles of tile row `tileRow` of the channels-last
    /// output gradient `∂y: [H][W][channels]` (`channels` a multiple of L), each tile's pixels
    /// past the plane's edge taken as zero; positions `positionStride` floats apart.
    @inline(never)
    static func transformGradientChannelsLast(
        _ dy: UnsafePointer<Float>, channels: Int, height: Int, width: Int, tileRow: Int,
        into m: UnsafeMutablePointer<Float>, positionStride: Int
    ) {
        let top = 4 * tileRow, rows = min(4, height - top)
        for tx in 0..<tiles(width) {
            let left = 4 * tx, columns = min(4, width - left)
            let origin = UnsafeRawPointer(dy + (top * width + left) * channels)
            let target = UnsafeMutableRawPointer(m + tx * channels)
            var c = 0
            while c < channels {
                @inline(__always) func load(_ i: Int, _ j: Int) -> Vector {
                    i < rows && j < columns
                        ? origin.loadUnaligned(fromByteOffset: ((i * width + j) * channels + c) * 4, as: Vector.self) : Vector()
                }
                // p[i][n] = (∂y Aᵀ)[i][n] row by row, then ∂M[6a + n] = (A p)[a][n] column by column.
                // (Rows as tuples: an `InlineArray` of them was zeroed by a call per vector.)
                let p = (expand(load(0, 0), load(0, 1), load(0, 2), load(0, 3)), expand(load(1, 0), load(1, 1), load(1, 2), load(1, 3)),
                         expand(load(2, 0), load(2, 1), load(2, 2), load(2, 3)), expand(load(3, 0), load(3, 1), load(3, 2), load(3, 3)))
                for n in 0..<6 {
                    let t = expand(element(p.0, n), element(p.1, n), element(p.2, n), element(p.3, n))
                    @inline(__always) func store(_ value: Vector, _ a: Int) {
                        target.storeBytes(of: value, toByteOffset: ((6 * a + n) * positionStride + c) * 4, as: Vector.self)
                    }
                    store(t.0, 0); store(t.1, 1); store(t.2, 2); store(t.3, 3); store(t.4, 4); store(t.5, 5)
                }
                c += lanes
            }
        }
    }

    /// Element `n` of a row of six vectors (a constant `n` folds the switch away).
    @inline(__always)
    static func element(_ row: (Vector, Vector, Vector, Vector, Vector, Vector), _ n: Int) -> Vector {
        switch n {
        case 0: return row.0
        case 1: return row.1
        case 2: return row.2
        case 3: return row.3
        case 4: return row.4
        default: return row.5
        }
    }

    /// `A q` for a column `q` of four values (`A = (Aᵀ)ᵀ`, 6x4).
    @inline(__always)
    static func expand(_ q0: Vector, _ q1: Vector, _ q2: Vector, _ q3: Vector) -> (Vector, Vector, Vector, Vector, Vector, Vector) {
        let even = q0 + q2, odd = q1 + q3
        let evenFar = q0 + Vector(repeating: 4) * q2, oddFar = Vector(repeating: 2) * q1 + Vector(repeating: 8) * q3
        return (q0, even + odd, even - odd, evenFar + oddFar, evenFar - oddFar, q3)
    }

    /// `∂W[o][c] = Gᵀ ∂U[·][o][c] G` (in `Double`, rounded once) for the packed `∂U` of
    /// `WinogradConvolution.accumulateProducts` over 36 positions.
    static func untransformWeightGradient(
        _ du: UnsafePointer<Float>, outputChannels: Int, inputChannels: Int, paddedInputs: Int, into dw: UnsafeMutablePointer<Float>
    ) {
        let next = outputChannels * paddedInputs
        // (Gᵀ v)[i] for a column v of six values.
        @inline(__always) func reduce(_ v: (Double, Double, Double, Double, Double, Double), _ i: Int) -> Double {
            switch i {
            case 0: return v.0 / 4 - (v.1 + v.2) / 6 + (v.3 + v.4) / 24
            case 1: return (v.2 - v.1) / 6 + (v.3 - v.4) / 12
            default: return -(v.1 + v.2) / 6 + (v.3 + v.4) / 6 + v.5
            }
        }
        for o in 0..<outputChannels {
            for c in 0..<inputChannels {
                let u = du + (o / lanes * paddedInputs + c) * lanes + o % lanes
                @inline(__always) func value(_ a: Int, _ n: Int) -> Double { Double(u[(6 * a + n) * next]) }
                // t = Gᵀ ∂U (3x6), column by column, then ∂g = t G.
                var t = InlineArray<18, Double>(repeating: 0)
                for n in 0..<6 {
                    let column = (value(0, n), value(1, n), value(2, n), value(3, n), value(4, n), value(5, n))
                    for i in 0..<3 { t[6 * i + n] = reduce(column, i) }
                }
                let g = dw + (o * inputChannels + c) * 9
                for i in 0..<3 {
                    let row = (t[6 * i], t[6 * i + 1], t[6 * i + 2], t[6 * i + 3], t[6 * i + 4], t[6 * i + 5])
                    for j in 0..<3 { g[3 * i + j] = Float(reduce(row, j)) }
                }
            }
        }
    }
}
