/// Single-precision 3x3 convolutions with stride 1 and padding 1 by Winograd's minimal
/// filtering F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks",
/// 2016): each 2x2 block of output pixels ("tile") of each pair of channels takes 16
/// multiplications where the direct sum takes 36.
///
/// For one tile, `d` the 4x4 input patch under it (zero outside the image) and `g` a 3x3 filter:
/// ```
/// y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A        Bᵀ = | 1  0 −1  0 |   G = |  1    0    0  |   Aᵀ = | 1  1  1  0 |
///                                             | 0  1  1  0 |       | 1/2  1/2  1/2 |        | 0  1 −1 −1 |
///                                             | 0 −1  1  0 |       | 1/2 −1/2  1/2 |
///                                             | 0  1  0 −1 |       |  0    0    1  |
/// ```
/// Summed over input channels, the 16 elementwise products become 16 matrix products, one per
/// position `ξ` of the 4x4 transformed tile, over the tiles `t` of a chunk of images:
/// ```
/// M[ξ][o][t] = Σ_c U[ξ][o][c] · V[ξ][c][t]     U = G g Gᵀ (per o, c),  V = Bᵀ d B (per c, t)
/// ```
/// and each output tile is `Aᵀ M A` plus the bias. The products are the register tile of
/// `DirectConvolution.convolvePlanes` with input channels for patch entries and tiles for
/// pixels, so they run at its rate on 2.25x fewer multiply-adds (less where the planes have an
/// odd size: a 15x15 plane takes 8x8 tiles of 2x2).
///
/// The input gradient of such a convolution is again one (the kernel flipped and its channel
/// axes swapped, padding 3 − 1 − 1 = 1), so it takes the same path with other weights. The
/// weight gradient takes the same 16 products per tile the other way round, summed over the
/// tiles (`weightGradient`). The results differ from the direct sums by rounding only: the
/// transforms add and subtract in another order (F(2x2, 3x3)'s transforms multiply by 1/2 at
/// most, so the error stays within a few ulps of the inputs' magnitudes). `Winograd4x4` has the
/// transforms of F(4x4, 3x3), which the drivers here run with chunks of 4x4 tiles.
enum WinogradConvolution {
    typealias Vector = KernelVector
    static let lanes = Vector.scalarCount
    /// Positions of a transformed 4x4 tile.
    static let positions = 16
    /// Output channels per block of the products: 6, as in `DirectConvolution.blockChannels`.
    static let blockChannels = DirectConvolution.blockChannels
    /// Tiles per register tile of the products: `tileVectors` vectors of L tiles.
    static let tileVectors = DirectConvolution.tileVectors
    static let tileWidth = tileVectors * lanes

    /// Whether this path computes a convolution of these settings.
    static func supports(kernelSize: Int, stride: Int, padding: Int) -> Bool {
        kernelSize == 3 && stride == 1 && padding == 1
    }

    private static func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }

    /// Tiles along an edge of `n` output pixels.
    static func tiles(_ n: Int) -> Int { (n + 1) / 2 }

    // MARK: Weights

    /// The floats `transformWeights` writes: `[16][⌈Cout/6⌉][Cin][6]` (`Winograd4x4`'s:
    /// `positions` 36).
    static func transformedWeightCount(outputs: Int, inputs: Int, positions: Int = positions) -> Int {
        positions * DirectConvolution.channelBlocks(outputs) * inputs * blockChannels
    }

    /// `U[ξ][b][c][q] = (G g Gᵀ)[ξ]` for the filter `g = W[6b + q][c]` of `W: [Cout][Cin][3][3]`,
    /// zero past the last output channel. With `flippedForInputGradient`, the filters of the
    /// input-gradient convolution, whose outputs are the `Cin` channels and inputs the `Cout`
    /// ones: `g[i][j] = W[c][6b + q][2 − i][2 − j]`.
    static func transformWeights(
        _ w: UnsafePointer<Float>, outputChannels: Int, inputChannels: Int, flippedForInputGradient: Bool,
        into u: UnsafeMutablePointer<Float>
    ) {
        let (cout, cin) = (outputChannels, inputChannels)
        let (outputs, inputs) = flippedForInputGradient ? (cin, cout) : (cout, cin)
        let blocks = DirectConvolution.channelBlocks(outputs), b = blockChannels
        for block in 0..<blocks {
            for c in 0..<inputs {
                for q in 0..<b {
                    let output = block * b + q
                    // g[i][j] (the filter), then t = G g (4x3), then U = t Gᵀ (4x4); plain
                    // locals, which stay in registers.
                    @inline(__always) func g(_ i: Int, _ j: Int) -> Float {
                        guard output < outputs else { return 0 }
                        return flippedForInputGradient ? w[((c * cin + output) * 3 + (2 - i)) * 3 + (2 - j)]
                            : w[((output * cin + c) * 3 + i) * 3 + j]
                    }
                    for a in 0..<4 {
                        @inline(__always) func t(_ j: Int) -> Float {
                            switch a {
                            case 0: return g(0, j)
                            case 1: return 0.5 * (g(0, j) + g(1, j) + g(2, j))
                            case 2: return 0.5 * (g(0, j) - g(1, j) + g(2, j))
                            default: return g(2, j)
                            }
                        }
                        let (t0, t1, t2) = (t(0), t(1), t(2))
                        let first = u + ((a * 4 * blocks + block) * inputs + c) * b + q, next = blocks * inputs * b
                        first[0] = t0
                        first[next] = 0.5 * (t0 + t1 + t2)
                        first[2 * next] = 0.5 * (t0 - t1 + t2)
                        first[3 * next] = t2
                    }
                }
            }
        }
    }

    // MARK: The convolution

    /// How a chunk of tiles is laid out: `rows` rows of tiles (each `tilesWide` tiles of one
    /// image's tile row) side by side, `stride` floats per channel row (a whole number of
    /// register tiles), output tiles of `tile` x `tile` (2 here, 4 for `Winograd4x4`).
    struct Chunk {
        var tileRows: Int, tilesWide: Int, stride: Int
        var tile = 2
        /// The floats of the transforms' own rows, after `V` and `M`.
        var scratch: Int
        /// Positions of a transformed tile: 16 or 36.
        var positions: Int { (tile + 2) * (tile + 2) }
        /// The floats of a chunk's `V` (`positions × inputs × stride`) and `M`
        /// (`positions × outputs × stride`), then `scratch`.
        func workspace(inputs: Int, outputs: Int) -> Int { positions * (inputs + outputs) * stride + scratch }
    }

    /// The floats `transformInput` works in for planes `tilesWide` tiles wide: four input rows,
    /// each as its even and its odd columns; where rows are packed (`rowsPerVector`),
    /// `transformInputPacked`'s eight segmented rows (2 × L each) and 16 column vectors.
    static func rowScratch(_ tilesWide: Int) -> Int {
        rowsPerVector(tilesWide) > 1 ? 32 * lanes : 8 * parityRowLength(tilesWide)
    }

    /// The floats `transformOutputPacked` works in, after `rowScratch`: two interleaved pixel
    /// rows (2 × L each).
    static var outputScratch: Int { 4 * lanes }

    /// The tile rows that one vector of L tiles holds: `L / wide` where rows of `wide` tiles
    /// fill a vector exactly several times (with 8 lanes, 3x3 planes' rows of 2 tiles four to
    /// a vector), else 1. The packed transforms (`transformInputPacked`,
    /// `transformOutputPacked`, and `Winograd4x4`'s) take that many rows at once; a row at a
    /// time, `wide` of a vector's L lanes would be tiles and the rest wasted.
    static func rowsPerVector(_ tilesWide: Int) -> Int {
        tilesWide < lanes && lanes % tilesWide == 0 ? lanes / tilesWide : 1
    }

    /// The chunk for planes `width` wide with `inputs` and `outputs` channels: as many tile rows
    /// as keep its `V` and `M` within `budget` floats, but at least `minimumTiles` tiles (one
    /// register tile's worth; tests ask for fewer).
    static func chunk(width: Int, inputs: Int, outputs: Int, budget: Int, minimumTiles: Int = tileWidth) -> Chunk {
        chunk(tilesWide: tiles(width), tile: 2, inputs: inputs, outputs: outputs, budget: budget,
              minimumTiles: minimumTiles, scratch: rowScratch(tiles(width)) + outputScratch)
    }

    /// The chunk for rows of `wide` tiles of `tile` x `tile` outputs each.
    static func chunk(tilesWide wide: Int, tile: Int, inputs: Int, outputs: Int, budget: Int, minimumTiles: Int,
                      scratch: Int) -> Chunk {
        let perTile = (tile + 2) * (tile + 2) * (inputs + outputs)
        var rows = max(1, budget / max(perTile * wide, 1))
        // At least a register tile's worth of tiles, past the budget if need be: fewer leave
        // most of each product's columns empty (F(4x4, 3x3) on 256 channels of 15x15 planes:
        // one row of 4 tiles in the budget, where the register tile computes 16 or 64).
        rows = max(rows, (minimumTiles + wide - 1) / wide)
        // Whole register tiles where the budget allows: e.g. an even number of 8-tile rows.
        let whole = tileWidth / gcd(wide, tileWidth)
        if rows >= whole { rows -= rows % whole }
        // Whole register tiles, and room for the lanes that the last vector of a row of tiles
        // (`transformInput`, `transformOutput`) takes past it: none where L divides the row.
        let spill = (lanes - wide % lanes) % lanes
        let stride = (rows * wide + spill + tileWidth - 1) / tileWidth * tileWidth
        return Chunk(tileRows: rows, tilesWide: wide, stride: stride, tile: tile, scratch: scratch)
    }

    /// Convolves `images` NCHW images `x: [C][H][W]` (`inputImageStride` floats apart) with the
    /// transformed filters `u` (`transformWeights`, or `Winograd4x4.transformWeights` for a
    /// chunk of 4x4 tiles) and writes `y: [Cout][H][W]` (overwriting it; `outputImageStride`
    /// floats apart). `workspace` holds `chunk.workspace` floats.
    ///
    /// The images' tile rows are taken `chunk.tileRows` at a time, in order: transformed into
    /// `V`, multiplied into `M` position by position, transformed back into `y`. Every output is
    /// computed the same way whatever chunk it falls in, so no result depends on the chunking.
    static func convolve(
        _ x: UnsafePointer<Float>, images: Int, inputImageStride: Int, channels: Int, height: Int, width: Int,
        weights u: UnsafePointer<Float>, outputChannels: Int, bias: UnsafePointer<Float>?,
        into y: UnsafeMutablePointer<Float>, outputImageStride: Int,
        chunk: Chunk, workspace: UnsafeMutablePointer<Float>
    ) {
        let positions = chunk.positions, tileRowsPerImage = (height + chunk.tile - 1) / chunk.tile
        let v = workspace, m = workspace + positions * channels * chunk.stride
        let scratch = m + positions * outputChannels * chunk.stride
        let totalRows = images * tileRowsPerImage
        // The register tiles' spare columns past a chunk's tiles hold zeros or an earlier
        // chunk's values, never stale memory (a denormal there would slow every multiply-add of
        // its tile); their products are not read. So do the columns of `M` that
        // `Winograd4x4.transformOutput`'s last vector reads past a chunk's tiles (and drops).
        // The first chunk is the largest: zeroing the columns past its tiles in `V`, and past
        // its products in `M`, covers every chunk.
        let filled = min(chunk.tileRows, totalRows) * chunk.tilesWide
        let computed = min(chunk.stride, (filled + tileWidth - 1) / tileWidth * tileWidth)
        for row in 0..<(positions * channels) { (v + row * chunk.stride + filled).update(repeating: 0, count: chunk.stride - filled) }
        if chunk.tile == 4 {
            for row in 0..<(positions * outputChannels) {
                (m + row * chunk.stride + computed).update(repeating: 0, count: chunk.stride - computed)
            }
        }
        var first = 0
        while first < totalRows {
            let rows = min(chunk.tileRows, totalRows - first)
            // Rows narrower than a vector: several rows a vector.
            let packed = rowsPerVector(chunk.tilesWide)
            for r in Swift.stride(from: 0, to: rows, by: packed) where packed > 1 {
                if chunk.tile == 4 {
                    Winograd4x4.transformInputPacked(x, inputImageStride: inputImageStride, tileRowsPerImage: tileRowsPerImage,
                                                     firstRow: first + r, count: min(packed, rows - r), channels: channels,
                                                     height: height, width: width, into: v + r * chunk.tilesWide,
                                                     stride: chunk.stride, scratch: scratch)
                } else {
                    transformInputPacked(x, inputImageStride: inputImageStride, tileRowsPerImage: tileRowsPerImage,
                                         firstRow: first + r, count: min(packed, rows - r), channels: channels,
                                         height: height, width: width, into: v + r * chunk.tilesWide,
                                         stride: chunk.stride, scratch: scratch)
                }
            }
            for r in 0..<rows where packed == 1 {
                let (image, tileRow) = (first + r).quotientAndRemainder(dividingBy: tileRowsPerImage)
                let (source, target) = (x + image * inputImageStride, v + r * chunk.tilesWide)
                if chunk.tile == 4 {
                    Winograd4x4.transformInput(source, channels: channels, height: height, width: width, tileRow: tileRow,
                                               into: target, stride: chunk.stride, scratch: scratch)
                } else {
                    transformInput(source, channels: channels, height: height, width: width, tileRow: tileRow,
                                   into: target, stride: chunk.stride, scratch: scratch)
                }
            }
            let columns = (rows * chunk.tilesWide + tileWidth - 1) / tileWidth * tileWidth
            multiply(v, positions: positions, channels: channels, weights: u, outputChannels: outputChannels, into: m,
                     stride: chunk.stride, columns: columns)
            for r in Swift.stride(from: 0, to: rows, by: packed) where packed > 1 {
                if chunk.tile == 4 {
                    Winograd4x4.transformOutputPacked(m + r * chunk.tilesWide, stride: chunk.stride, outputChannels: outputChannels,
                                                      bias: bias, height: height, width: width, outputImageStride: outputImageStride,
                                                      tileRowsPerImage: tileRowsPerImage, firstRow: first + r,
                                                      count: min(packed, rows - r), into: y,
                                                      scratch: scratch + Winograd4x4.rowScratch(chunk.tilesWide))
                } else {
                    transformOutputPacked(m + r * chunk.tilesWide, stride: chunk.stride, outputChannels: outputChannels,
                                          bias: bias, height: height, width: width, outputImageStride: outputImageStride,
                                          tileRowsPerImage: tileRowsPerImage, firstRow: first + r,
                                          count: min(packed, rows - r), into: y, scratch: scratch + rowScratch(chunk.tilesWide))
                }
            }
            for r in 0..<rows where packed == 1 {
                let (image, tileRow) = (first + r).quotientAndRemainder(dividingBy: tileRowsPerImage)
                let (source, target) = (m + r * chunk.tilesWide, y + image * outputImageStride)
                if chunk.tile == 4 {
                    Winograd4x4.transformOutput(source, stride: chunk.stride, outputChannels: outputChannels, bias: bias,
                                                height: height, width: width, tileRow: tileRow, into: target,
                                                scratch: scratch + Winograd4x4.rowScratch(chunk.tilesWide))
                } else {
                    transformOutput(source, stride: chunk.stride, outputChannels: outputChannels, bias: bias,
                                    height: height, width: width, tileRow: tileRow, into: target)
                }
            }
            first += rows
        }
    }

    /// `V[ξ][c][tx] = (Bᵀ d B)[ξ]` for the tiles of tile row `tileRow` of one image, `d` the 4x4
    /// patch from input row `2·tileRow − 1` and column `2·tx − 1` (zero outside the image);
    /// `V[ξ][c]` rows are `stride` floats apart, `channels` of them per position. A vector of L
    /// tiles at a time: where a tile row is narrower than L, the vector's spare lanes are
    /// stored past it (at most L − 1 floats), where the next tile row's values or
    /// `convolve`'s zeros go afterwards. `scratch` holds `rowScratch` floats.
    @inline(never)
    static func transformInput(
        _ x: UnsafePointer<Float>, channels: Int, height: Int, width: Int, tileRow: Int,
        into v: UnsafeMutablePointer<Float>, stride: Int, scratch: UnsafeMutablePointer<Float>
    ) {
        let wide = tiles(width)
        let plane = height * width, positionStride = channels * stride
        // Each of the four input rows split by column parity, zero-bordered:
        // even[a][tx] = x[2·tileRow − 1 + a][2·tx − 1], odd[a][tx] = x[...][2·tx], so that tile
        // tx's patch row is (even[tx], odd[tx], even[tx + 1], odd[tx + 1]).
        let span = parityRowLength(wide)
        let even = scratch, odd = scratch + 4 * span
        for a in 0..<4 { (even + a * span).update(repeating: 0, count: span); (odd + a * span).update(repeating: 0, count: span) }
        for c in 0..<channels {
            let source = x + c * plane
            for a in 0..<4 {
                let y = 2 * tileRow - 1 + a
                guard y >= 0 && y < height else { continue }
                let row = source + y * width, e = even + a * span, o = odd + a * span
                for tx in 1..<(width / 2 + 1) { e[tx] = row[2 * tx - 1] }
                for tx in 0..<((width + 1) / 2) { o[tx] = row[2 * tx] }
            }
            var tx = 0
            while tx < wide {
                @inline(__always) func load(_ p: UnsafeMutablePointer<Float>, _ a: Int, _ shift: Int) -> Vector {
                    UnsafeRawPointer(p + a * span + tx + shift).loadUnaligned(as: Vector.self)
                }
                inputTransform(load: { a, n in
                    load(n % 2 == 0 ? even : odd, a, n / 2)
                }, store: { value, position in
                    UnsafeMutableRawPointer(v + position * positionStride + c * stride + tx).storeBytes(of: value, as: Vector.self)
                })
                tx += lanes
            }
        }
    }

    /// `transformInput` for `count` consecutive tile rows of a chunk at once (at most
    /// `rowsPerVector(tiles(width))`, which must exceed 1), as `Winograd4x4.transformInputPacked`
    /// takes them: row j's tiles in lanes `j·wide ..< (j + 1)·wide`, each tile's patch and
    /// transform `transformInput`'s, so every value is the same. For each of the four input rows
    /// `a`, `near[a]` holds segment j = `x[row][−1 ..< 2·wide − 1]` of row j's input row and
    /// `far[a]` segment j = `x[row][1 ..< 2·wide + 1]` (zero outside the image), `2·wide`
    /// floats each, 2·L in all; their even and odd floats are tile (j, t)'s patch columns 0, 1
    /// and 2, 3 in lane `j·wide + t`.
    @inline(never)
    static func transformInputPacked(
        _ x: UnsafePointer<Float>, inputImageStride: Int, tileRowsPerImage: Int, firstRow: Int, count: Int,
        channels: Int, height: Int, width: Int, into v: UnsafeMutablePointer<Float>, stride: Int,
        scratch: UnsafeMutablePointer<Float>
    ) {
        let wide = tiles(width), line = 2 * lanes, plane = height * width
        let positionStride = channels * stride
        precondition(rowsPerVector(wide) > 1 && count <= rowsPerVector(wide))
        let near = scratch, far = scratch + 4 * line, columns = scratch + 8 * line
        let group = PackedTileRows(firstRow: firstRow, count: count, tileRowsPerImage: tileRowsPerImage, imageStride: inputImageStride,
                                   tile: 2, height: height, width: width)
        near.update(repeating: 0, count: 8 * line)
        for c in 0..<channels {
            group.copyPatchRows(x + c * plane, near: near, far: far, line: line)
            for a in 0..<4 {
                let nearPair = UnsafeRawPointer(near + a * line).loadUnaligned(as: KernelVectorPair.self)
                let farPair = UnsafeRawPointer(far + a * line).loadUnaligned(as: KernelVectorPair.self)
                let column = UnsafeMutableRawPointer(columns + 4 * a * lanes)
                column.storeBytes(of: nearPair.evenHalf, as: Vector.self)
                column.storeBytes(of: nearPair.oddHalf, toByteOffset: lanes * 4, as: Vector.self)
                column.storeBytes(of: farPair.evenHalf, toByteOffset: 2 * lanes * 4, as: Vector.self)
                column.storeBytes(of: farPair.oddHalf, toByteOffset: 3 * lanes * 4, as: Vector.self)
            }
            let target = UnsafeMutableRawPointer(v + c * stride)
            inputTransform(load: { a, n in
                UnsafeRawPointer(columns + (4 * a + n) * lanes).loadUnaligned(as: Vector.self)
            }, store: { value, position in
                target.storeBytes(of: value, toByteOffset: position * positionStride * 4, as: Vector.self)
            })
        }
    }

    /// `V = Bᵀ d B` for one 4x4 patch (a vector of lanes at a time): `load(a, n)` is `d[a][n]`,
    /// `store(value, ξ)` takes `V[ξ]`. Both input transforms compute it this way, in this order.
    @inline(__always)
    static func inputTransform(load: (Int, Int) -> Vector, store: (Vector, Int) -> Void) {
        // u[a][n] = (d B)[a][n] for patch row a.
        @inline(__always) func rowTransform(_ a: Int) -> (Vector, Vector, Vector, Vector) {
            let (d0, d1, d2, d3) = (load(a, 0), load(a, 1), load(a, 2), load(a, 3))
            return (d0 - d2, d1 + d2, d2 - d1, d1 - d3)
        }
        let u0 = rowTransform(0), u1 = rowTransform(1), u2 = rowTransform(2), u3 = rowTransform(3)
        // V[4a + n] = (Bᵀ u)[a][n].
        store(u0.0 - u2.0, 0); store(u0.1 - u2.1, 1); store(u0.2 - u2.2, 2); store(u0.3 - u2.3, 3)
        store(u1.0 + u2.0, 4); store(u1.1 + u2.1, 5); store(u1.2 + u2.2, 6); store(u1.3 + u2.3, 7)
        store(u2.0 - u1.0, 8); store(u2.1 - u1.1, 9); store(u2.2 - u1.2, 10); store(u2.3 - u1.3, 11)
        store(u1.0 - u3.0, 12); store(u1.1 - u3.1, 13); store(u1.2 - u3.2, 14); store(u1.3 - u3.3, 15)
    }

    /// The floats of one of `transformInput`'s parity rows for planes `tilesWide` tiles wide:
    /// whole vectors of tiles and one more float, zero past the row.
    static func parityRowLength(_ tilesWide: Int) -> Int { (tilesWide + lanes - 1) / lanes * lanes + 1 }

    /// `M[ξ][o][t] = Σ_c U[ξ][o][c] · V[ξ][c][t]` for the first `columns` tiles (a whole number of
    /// register tiles) at each of `positions` positions, each sum in channel order. Not inlined:
    /// inlined into `convolve` as it grew, its register tile's accumulators went through the
    /// stack on every multiply-add (the products took 1.5x their time).
    @inline(never)
    static func multiply(
        _ v: UnsafePointer<Float>, positions: Int, channels: Int, weights u: UnsafePointer<Float>, outputChannels: Int,
        into m: UnsafeMutablePointer<Float>, stride: Int, columns: Int
    ) {
        let blocks = DirectConvolution.channelBlocks(outputChannels), b = blockChannels
        for position in 0..<positions {
            let vp = v + position * channels * stride, mp = m + position * outputChannels * stride
            for block in 0..<blocks {
                let weights = u + (position * blocks + block) * channels * b
                let count = min(b, outputChannels - block * b)
                var t = 0
                while t < columns {
                    productTile(vp + t, stride: stride, channels: channels, weights: weights,
                                into: mp + block * b * stride + t, outputs: count)
                    t += tileWidth
                }
            }
        }
    }

    /// One register tile of `multiply`: 6 output channels × `tileVectors` vectors of tiles,
    /// `m[q·stride + w·L ...] = Σ_c weights[c][q] · v[c·stride + w·L ...]` for the first
    /// `outputs` channels q. The tile is stored here rather than returned: returned, its 768
    /// bytes went through a memcpy per tile (measured).
    @inline(__always)
    private static func productTile(
        _ v: UnsafePointer<Float>, stride: Int, channels: Int, weights: UnsafePointer<Float>,
        into m: UnsafeMutablePointer<Float>, outputs: Int
    ) {
        var acc = DirectConvolution.PlaneTile(repeating: Vector())
        var row = UnsafeRawPointer(v), w = weights
        let step = stride &* 4
        if tileVectors == 4 {
            for _ in 0..<channels {
                let x0 = row.loadUnaligned(as: Vector.self)
                let x1 = row.loadUnaligned(fromByteOffset: lanes * 4, as: Vector.self)
                let x2 = row.loadUnaligned(fromByteOffset: lanes * 8, as: Vector.self)
                let x3 = row.loadUnaligned(fromByteOffset: lanes * 12, as: Vector.self)
                for q in 0..<6 {
                    let s = Vector(repeating: w[q])
                    acc[q] = acc[q].fusedAdding(s, x0)
                    acc[q &+ 6] = acc[q &+ 6].fusedAdding(s, x1)
                    acc[q &+ 12] = acc[q &+ 12].fusedAdding(s, x2)
                    acc[q &+ 18] = acc[q &+ 18].fusedAdding(s, x3)
                }
                row += step
                w += 6
            }
        } else {
            for _ in 0..<channels {
                let x0 = row.loadUnaligned(as: Vector.self)
                let x1 = row.loadUnaligned(fromByteOffset: lanes * 4, as: Vector.self)
                for q in 0..<6 {
                    let s = Vector(repeating: w[q])
                    acc[q] = acc[q].fusedAdding(s, x0)
                    acc[q &+ 6] = acc[q &+ 6].fusedAdding(s, x1)
                }
                row += step
                w += 6
            }
        }
        for q in 0..<outputs {
            let out = UnsafeMutableRawPointer(m + q * stride)
            for w in 0..<tileVectors { out.storeBytes(of: acc[q &+ 6 &* w], toByteOffset: w * lanes * 4, as: Vector.self) }
        }
    }

    /// `y = Aᵀ M A + b` for the tiles of tile row `tileRow` of one image (`M[ξ][o][tx]`, rows
    /// `stride` floats apart), dropping the pixels past the plane's edge.
    @inline(never)
    static func transformOutput(
        _ m: UnsafePointer<Float>, stride: Int, outputChannels: Int, bias: UnsafePointer<Float>?,
        height: Int, width: Int, tileRow: Int, into y: UnsafeMutablePointer<Float>
    ) {
        let wide = tiles(width), plane = height * width, positionStride = outputChannels * stride
        let top = 2 * tileRow, twoRows = top + 1 < height
        let pairs = width / 2
        for o in 0..<outputChannels {
            let b = bias?[o] ?? 0
            let m0 = m + o * stride
            let row0 = y + o * plane + top * width, row1 = row0 + width
            // Tile tx's outputs (y00, y01 / y10, y11): p_j[a] = (m A)[a][j] per row a of the
            // tile, then y[i][j] = (Aᵀ p_j)[i].
            @inline(__always) func tile(_ tx: Int) -> (Float, Float, Float, Float) {
                let q = m0 + tx
                @inline(__always) func rowSums(_ a: Int) -> (Float, Float) {
                    let r = q + 4 * a * positionStride
                    let (q0, q1, q2, q3) = (r[0], r[positionStride], r[2 * positionStride], r[3 * positionStride])
                    return (q0 + q1 + q2, q1 - q2 - q3)
                }
                let (p00, p10) = rowSums(0), (p01, p11) = rowSums(1), (p02, p12) = rowSums(2), (p03, p13) = rowSums(3)
                return (p00 + p01 + p02 + b, p10 + p11 + p12 + b, p01 - p02 - p03 + b, p11 - p12 - p13 + b)
            }
            var tx = 0
            // Whole vectors of tiles (the last one's right column only where the width is even).
            while tx + lanes <= wide {
                let (y00, y01, y10, y11) = untransformTiles(m0 + tx, positionStride: positionStride, bias: Vector(repeating: b))
                let right = 2 * (tx + lanes) <= width ? lanes : lanes - 1
                for l in 0..<lanes { row0[2 * (tx + l)] = y00[l] }
                for l in 0..<right { row0[2 * (tx + l) + 1] = y01[l] }
                if twoRows {
                    for l in 0..<lanes { row1[2 * (tx + l)] = y10[l] }
                    for l in 0..<right { row1[2 * (tx + l) + 1] = y11[l] }
                }
                tx += lanes
            }
            while tx < pairs {
                let (y00, y01, y10, y11) = tile(tx)
                row0[2 * tx] = y00
                row0[2 * tx + 1] = y01
                if twoRows {
                    row1[2 * tx] = y10
                    row1[2 * tx + 1] = y11
                }
                tx += 1
            }
            if tx < wide {
                // An odd width: the last tile's left column.
                let (y00, _, y10, _) = tile(pairs)
                row0[2 * pairs] = y00
                if twoRows { row1[2 * pairs] = y10 }
            }
        }
    }

    /// `transformOutput` for `count` consecutive tile rows of a chunk at once (as
    /// `transformInputPacked` takes them), row j's tiles in lanes `j·wide ..< (j + 1)·wide` of
    /// `M`'s vectors (`m` is row `firstRow`'s first tile), written to images
    /// `outputImageStride` floats apart from `y`. Each output is `transformOutput`'s sum, so every
    /// value is the same. The two pixel rows of the tiles are interleaved (`evenHalf`,
    /// `oddHalf`) into `scratch` (`outputScratch` floats) and stored segment by segment (`storeSegments`).
    @inline(never)
    static func transformOutputPacked(
        _ m: UnsafePointer<Float>, stride: Int, outputChannels: Int, bias: UnsafePointer<Float>?,
        height: Int, width: Int, outputImageStride: Int, tileRowsPerImage: Int, firstRow: Int, count: Int,
        into y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>
    ) {
        let wide = tiles(width), plane = height * width, positionStride = outputChannels * stride
        precondition(rowsPerVector(wide) > 1 && count <= rowsPerVector(wide))
        let group = PackedTileRows(firstRow: firstRow, count: count, tileRowsPerImage: tileRowsPerImage,
                                   imageStride: outputImageStride, tile: 2, height: height, width: width)
        let pixels = UnsafeMutableRawPointer(scratch)
        for o in 0..<outputChannels {
            let (y00, y01, y10, y11) = untransformTiles(m + o * stride, positionStride: positionStride,
                                                        bias: Vector(repeating: bias?[o] ?? 0))
            var top = KernelVectorPair(), bottom = KernelVectorPair()
            (top.evenHalf, top.oddHalf, bottom.evenHalf, bottom.oddHalf) = (y00, y01, y10, y11)
            pixels.storeBytes(of: top, as: KernelVectorPair.self)
            pixels.storeBytes(of: bottom, toByteOffset: 2 * lanes * 4, as: KernelVectorPair.self)
            group.storeRows(scratch, lineLength: 2 * lanes, to: y + o * plane)
        }
    }

    /// `Aᵀ m A + b` for a vector of L tiles (`m0`: position 0's vector, positions
    /// `positionStride` floats apart): the tiles' outputs (y00, y01, y10, y11), lane l being
    /// tile l's. Both output transforms' vector paths compute it this way, in this order (the
    /// scalar `tile` of `transformOutput` too).
    @inline(__always)
    static func untransformTiles(_ m0: UnsafePointer<Float>, positionStride: Int, bias: Vector) -> (Vector, Vector, Vector, Vector) {
        @inline(__always) func rowSums(_ a: Int) -> (Vector, Vector) {
            let r = UnsafeRawPointer(m0 + 4 * a * positionStride), step = positionStride * 4
            let q0 = r.loadUnaligned(as: Vector.self), q1 = r.loadUnaligned(fromByteOffset: step, as: Vector.self)
            let q2 = r.loadUnaligned(fromByteOffset: 2 * step, as: Vector.self)
            let q3 = r.loadUnaligned(fromByteOffset: 3 * step, as: Vector.self)
            return (q0 + q1 + q2, q1 - q2 - q3)
        }
        let (p00, p10) = rowSums(0), (p01, p11) = rowSums(1), (p02, p12) = rowSums(2), (p03, p13) = rowSums(3)
        return (p00 + p01 + p02 + bias, p10 + p11 + p12 + bias, p01 - p02 - p03 + bias, p11 - p12 - p13 + bias)
    }

    // MARK: The weight gradient

    /// How `weightGradient` takes a group's tiles: at most `tiles` at once (whole tile rows, at
    /// least one), the input channels padded with zeros to `paddedInputs` (whole vectors), with
    /// output tiles of `tile` x `tile` (2 here, 4 for `Winograd4x4`'s transforms).
    struct GradientChunk {
        var tiles: Int, paddedInputs: Int
        var tile = 2
        /// Positions of a transformed tile: 16 or 36.
        var positions: Int { (tile + 2) * (tile + 2) }
        /// Tiles along an edge of `n` output pixels.
        func tiles(_ n: Int) -> Int { (n + tile - 1) / tile }
        /// The zero-bordered input's rows and columns for planes `height x width`.
        func padded(height: Int, width: Int) -> (rows: Int, columns: Int) { (tile * tiles(height) + 2, tile * tiles(width) + 2) }
        /// The floats `weightGradient` works in for planes `height x width` and `outputs` channels.
        func workspace(outputs: Int, height: Int, width: Int) -> Int {
            let (rows, columns) = padded(height: height, width: width)
            return positions * (outputs * paddedInputs + tiles * (paddedInputs + outputs)) + rows * columns * paddedInputs
                + height * width * outputs
        }
    }

    /// Tiles a weight-gradient chunk takes by default: 256. Measured (BENCHMARKS.md, session 19)
    /// with 24 to 256 channels a side: 16 tiles made `∂W` 30–45 % slower, 32 and 64 up to 10 %,
    /// 512 up to 20 % (the products' accumulators are loaded and stored once per chunk; larger
    /// chunks' transforms leave the cache before the products read them).
    static let gradientTiles = 256

    /// The chunk for planes `width` wide with `inputs` input channels: whole tile rows, as many
    /// as `tiles` holds, at least one.
    static func gradientChunk(width: Int, inputs: Int, tiles: Int = gradientTiles, tile: Int = 2) -> GradientChunk {
        let wide = (width + tile - 1) / tile
        return GradientChunk(tiles: max(1, tiles / wide) * wide, paddedInputs: (inputs + lanes - 1) / lanes * lanes, tile: tile)
    }

    /// `∂W: [Cout][Cin][3][3]` (overwritten) of the convolution of `images` NCHW images
    /// `x: [Cin][H][W]` whose output gradient is `∂y: [Cout][H][W]` (`Cout` a multiple of L;
    /// `inputImageStride` and `gradientImageStride` floats apart). `workspace` holds
    /// `chunk.workspace` floats.
    ///
    /// The forward pass's `M = Σ_c U ⊙ V` per tile gives `∂U[ξ][o][c] = Σ_t ∂M[ξ][o][t] · V[ξ][c][t]`
    /// over all tiles `t`, with `∂M = A ∂y Aᵀ` for each 2x2 tile of `∂y` (zero past the plane's
    /// edge), and `∂W = Gᵀ ∂U G`: 16 products per tile and pair of channels where the direct
    /// sums take 36 (with `chunk.tile` 4, `Winograd4x4`'s transforms: 36 products per 4x4 tile
    /// where the direct sums take 144). Each position's sum over tiles is the weight gradient of
    /// a 1x1 convolution, `DirectConvolution.accumulateWeightGradient` on channels-last transforms
    /// (`V: [ξ][t][Cin]`, `∂M: [ξ][t][Cout]`), which adds each sum over the tiles in order to
    /// its stored value: a chunk of tiles at a time gives the same bits as all at once.
    static func weightGradient(
        _ x: UnsafePointer<Float>, images: Int, inputImageStride: Int, channels: Int, height: Int, width: Int,
        outputGradient dy: UnsafePointer<Float>, outputChannels: Int, gradientImageStride: Int,
        into dw: UnsafeMutablePointer<Float>, chunk: GradientChunk, workspace: UnsafeMutablePointer<Float>
    ) {
        let (cin, cout, cp, capacity, positions) = (channels, outputChannels, chunk.paddedInputs, chunk.tiles, chunk.positions)
        let (wide, high) = (chunk.tiles(width), chunk.tiles(height))
        let paddedWidth = chunk.padded(height: height, width: width).columns
        let paddedCount = chunk.padded(height: height, width: width).rows * paddedWidth * cp
        let du = workspace, v = du + positions * cout * cp, m = v + positions * capacity * cp
        let xp = m + positions * capacity * cout, dyc = xp + paddedCount
        du.update(repeating: 0, count: positions * cout * cp)
        // The border, the rows and columns past the last whole tile and the padding channels
        // stay zero; each image overwrites the rest.
        xp.update(repeating: 0, count: paddedCount)
        var filled = 0
        for image in 0..<images {
            let source = x + image * inputImageStride, interior = xp + (paddedWidth + 1) * cp
            if cin % lanes == 0 && height * width >= lanes {
                DirectConvolution.transposeToChannelsLast(source, channels: cin, height: height, width: width,
                                                          into: interior, rowPixels: paddedWidth)
            } else {
                for c in 0..<cin {
                    for row in 0..<height {
                        for column in 0..<width { interior[(row * paddedWidth + column) * cp + c] = source[(c * height + row) * width + column] }
                    }
                }
            }
            DirectConvolution.toChannelsLast(dy + image * gradientImageStride, channels: cout, pixels: height * width, into: dyc)
            for tileRow in 0..<high {
                if filled + wide > capacity {
                    accumulateProducts(v, m, positions: positions, tiles: filled, inputs: cp, outputs: cout, capacity: capacity, into: du)
                    filled = 0
                }
                transformInputChannelsLast(xp, channels: cp, paddedWidth: paddedWidth, tileRow: tileRow, tilesWide: wide,
                                           tile: chunk.tile, into: v + filled * cp, positionStride: capacity * cp)
                if chunk.tile == 4 {
                    Winograd4x4.transformGradientChannelsLast(dyc, channels: cout, height: height, width: width, tileRow: tileRow,
                                                              into: m + filled * cout, positionStride: capacity * cout)
                } else {
                    transformGradientChannelsLast(dyc, channels: cout, height: height, width: width, tileRow: tileRow,
                                                  into: m + filled * cout, positionStride: capacity * cout)
                }
                filled += wide
            }
        }
        if filled > 0 { accumulateProducts(v, m, positions: positions, tiles: filled, inputs: cp, outputs: cout, capacity: capacity, into: du) }
        if chunk.tile == 4 {
            Winograd4x4.untransformWeightGradient(du, outputChannels: cout, inputChannels: cin, paddedInputs: cp, into: dw)
        } else {
            untransformWeightGradient(du, outputChannels: cout, inputChannels: cin, paddedInputs: cp, into: dw)
        }
    }

    /// `V[ξ][tx][c] = (Bᵀ d B)[ξ]` for the tiles of tile row `tileRow`, `d` the 4x4 patch at row
    /// `2·tileRow` and column `2·tx` of the zero-bordered channels-last input
    /// `xp: [2·tilesHigh + 2][paddedWidth][channels]` (`channels` a multiple of L); positions
    /// `positionStride` floats apart. A vector of L channels at a time. With `tile` 4, the 6x6
    /// patches of `Winograd4x4` at row `4·tileRow` and column `4·tx`.
    @inline(never)
    static func transformInputChannelsLast(
        _ xp: UnsafePointer<Float>, channels: Int, paddedWidth: Int, tileRow: Int, tilesWide: Int, tile: Int = 2,
        into v: UnsafeMutablePointer<Float>, positionStride: Int
    ) {
        let rowFloats = paddedWidth * channels
        for tx in 0..<tilesWide {
            let origin = UnsafeRawPointer(xp + (tile * tileRow * paddedWidth + tile * tx) * channels)
            let target = UnsafeMutableRawPointer(v + tx * channels)
            var c = 0
            while c < channels {
                @inline(__always) func load(_ a: Int, _ b: Int) -> Vector {
                    origin.loadUnaligned(fromByteOffset: (a * rowFloats + b * channels + c) * 4, as: Vector.self)
                }
                @inline(__always) func store(_ value: Vector, _ position: Int) {
                    target.storeBytes(of: value, toByteOffset: (position * positionStride + c) * 4, as: Vector.self)
                }
                if tile == 4 { Winograd4x4.inputTransform(load: load, store: store) } else { inputTransform(load: load, store: store) }
                c += lanes
            }
        }
    }

    /// `∂M[ξ][tx][o] = (A ∂y Aᵀ)[ξ]` for the tiles of tile row `tileRow` of the channels-last
    /// output gradient `∂y: [H][W][channels]` (`channels` a multiple of L), each tile's pixels
    /// past the plane's edge taken as zero; positions `positionStride` floats apart.
    @inline(never)
    static func transformGradientChannelsLast(
        _ dy: UnsafePointer<Float>, channels: Int, height: Int, width: Int, tileRow: Int,
        into m: UnsafeMutablePointer<Float>, positionStride: Int
    ) {
        let top = 2 * tileRow, twoRows = top + 1 < height
        for tx in 0..<tiles(width) {
            let left = 2 * tx, twoColumns = left + 1 < width
            let p00 = UnsafeRawPointer(dy + (top * width + left) * channels), below = width * channels * 4
            let target = UnsafeMutableRawPointer(m + tx * channels)
            var c = 0
            while c < channels {
                let offset = c * 4
                // The tile (a b / e f).
                let a = p00.loadUnaligned(fromByteOffset: offset, as: Vector.self)
                let b = twoColumns ? p00.loadUnaligned(fromByteOffset: offset + channels * 4, as: Vector.self) : Vector()
                let e = twoRows ? p00.loadUnaligned(fromByteOffset: offset + below, as: Vector.self) : Vector()
                let f = twoRows && twoColumns ? p00.loadUnaligned(fromByteOffset: offset + below + channels * 4, as: Vector.self) : Vector()
                @inline(__always) func store(_ value: Vector, _ position: Int) {
                    target.storeBytes(of: value, toByteOffset: (position * positionStride + c) * 4, as: Vector.self)
                }
                // Row i of A ∂y is (p, q); row i of ∂M is (p, p + q, p − q, −q).
                @inline(__always) func row(_ i: Int, _ p: Vector, _ q: Vector) {
                    store(p, 4 * i); store(p + q, 4 * i + 1); store(p - q, 4 * i + 2); store(-q, 4 * i + 3)
                }
                row(0, a, b); row(1, a + e, b + f); row(2, a - e, b - f); row(3, -e, -f)
                c += lanes
            }
        }
    }

    /// `∂U[ξ] += Σ_t ∂M[ξ][t] ⊗ V[ξ][t]` over the first `tiles` tiles of a chunk (`V` and `∂M`
    /// `capacity` tiles per position): for each position the weight gradient of a 1x1
    /// convolution, into `∂U[ξ]` packed as `accumulateWeightGradient` packs it,
    /// `[Cout/L][inputs][L]`.
    static func accumulateProducts(
        _ v: UnsafePointer<Float>, _ m: UnsafePointer<Float>, positions: Int, tiles: Int, inputs: Int, outputs: Int, capacity: Int,
        into du: UnsafeMutablePointer<Float>
    ) {
        let (blocks, perTile) = (outputs / lanes, DirectConvolution.weightTileBlocks)
        for position in 0..<positions {
            let vp = v + position * capacity * inputs, mp = m + position * capacity * outputs, up = du + position * outputs * inputs
            for block in Swift.stride(from: 0, to: blocks, by: perTile) {
                DirectConvolution.accumulateWeightGradient(
                    vp, channels: inputs, paddedWidth: tiles, kernelSize: 1, outputHeight: 1, outputWidth: tiles,
                    outputGradient: mp + block * lanes, gradientPixelStride: outputs, gradientRowStride: tiles * outputs,
                    into: up + block * lanes * inputs, blockStride: lanes * inputs, blockCount: min(perTile, blocks - block))
            }
        }
    }

    /// `∂W[o][c] = Gᵀ ∂U[·][o][c] G` for the packed `∂U` of `accumulateProducts`.
    static func untransformWeightGradient(
        _ du: UnsafePointer<Float>, outputChannels: Int, inputChannels: Int, paddedInputs: Int, into dw: UnsafeMutablePointer<Float>
    ) {
        let next = outputChannels * paddedInputs
        for o in 0..<outputChannels {
            for c in 0..<inputChannels {
                let u = du + (o / lanes * paddedInputs + c) * lanes + o % lanes
                // t = Gᵀ ∂U (3x4), column by column, then ∂g = t G.
                var t = InlineArray<12, Float>(repeating: 0)
                for b in 0..<4 {
                    let (u0, u1, u2, u3) = (u[b * next], u[(4 + b) * next], u[(8 + b) * next], u[(12 + b) * next])
                    t[b] = u0 + 0.5 * (u1 + u2)
                    t[4 + b] = 0.5 * (u1 - u2)
                    t[8 + b] = 0.5 * (u1 + u2) + u3
                }
                let g = dw + (o * inputChannels + c) * 9
                for i in 0..<3 {
                    let (t0, t1, t2, t3) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3])
                    g[3 * i] = t0 + 0.5 * (t1 + t2)
                    g[3 * i + 1] = 0.5 * (t1 - t2)
                    g[3 * i + 2] = 0.5 * (t1 + t2) + t3
                }
            }
        }
    }
}

/// A group of consecutive tile rows of a chunk that the packed transforms take into one vector
/// (`WinogradConvolution.rowsPerVector`), tile row j of the group being the images' tile row
/// `firstRow + j`, its tiles in lanes `j·wide ..< (j + 1)·wide`. For either tile size t: tile
/// row r's patches start at input row `t·r − 1` and column −1, `t + 2` rows and columns each,
/// and its outputs are pixel rows `t·r ..< t·r + t`.
struct PackedTileRows {
    let count: Int, tile: Int, width: Int
    /// Per tile row, from the images' start in channel 0: its first patch row (input row
    /// `t·r − 1`, which may lie above the plane) and its first output row.
    private var patchOrigins = InlineArray<16, Int>(repeating: 0), outputOrigins = InlineArray<16, Int>(repeating: 0)
    /// Per tile row: its pixel rows inside the plane (outputs), and its patch rows inside the
    /// plane (inputs, `0 ..< t + 2` at most).
    private var outputRows = InlineArray<16, Int>(repeating: 0), patchRows = InlineArray<16, Range<Int>>(repeating: 0..<0)
    /// The floats from tile row j's first pixel row to its plane's end.
    private var room = InlineArray<16, Int>(repeating: 0)

    init(firstRow: Int, count: Int, tileRowsPerImage: Int, imageStride: Int, tile: Int, height: Int, width: Int) {
        precondition(count <= 16)
        (self.count, self.tile, self.width) = (count, tile, width)
        for j in 0..<count {
            let (image, tileRow) = (firstRow + j).quotientAndRemainder(dividingBy: tileRowsPerImage)
            let top = tile * tileRow, first = max(0, 1 - top)
            patchOrigins[j] = image * imageStride + (top - 1) * width
            outputOrigins[j] = image * imageStride + top * width
            outputRows[j] = min(tile, height - top)
            patchRows[j] = first..<max(first, min(tile + 2, height + 1 - top))
            room[j] = (height - top) * width
        }
    }

    /// The floats of a segment: a tile row's `wide` tiles, `tile` floats each.
    var segment: Int { (width + tile - 1) / tile * tile }

    /// Copies the patch rows of one channel (`source`: image 0's plane of it) side by side: for
    /// patch row a, segment j of `near[a]` (`line` floats a row) gets tile row j's input columns
    /// `−1 ..< segment − 1` and segment j of `far[a]` its columns `t − 1 ..< segment + t − 1`,
    /// whose even/odd (F(2x2, 3x3)) or column phases (F(4x4, 3x3)) are the tiles' patch columns
    /// from 0 and from t. Columns and rows outside the plane are not written: the caller zeroes
    /// the lines once, and every channel writes the same floats.
    @inline(__always)
    func copyPatchRows(_ source: UnsafePointer<Float>, near: UnsafeMutablePointer<Float>, far: UnsafeMutablePointer<Float>,
                       line: Int) {
        let segment = segment, nearCount = min(width, segment - 1), farCount = max(0, width - (tile - 1))
        for j in 0..<count {
            let first = source + patchOrigins[j]
            for a in patchRows[j] {
                let row = first + a * width
                copyFloats(from: row, count: nearCount, to: near + a * line + j * segment + 1)
                copyFloats(from: row + tile - 1, count: farCount, to: far + a * line + j * segment)
            }
        }
    }

    /// Stores one channel's output pixel rows from `buffer`, where pixel row i of the group's
    /// tiles is `lineLength` floats from row i − 1, to the plane of that channel in image 0
    /// (`plane`), through `storeSegments`.
    @inline(__always)
    func storeRows(_ buffer: UnsafePointer<Float>, lineLength: Int, to plane: UnsafeMutablePointer<Float>) {
        storeSegments(buffer, lineLength: lineLength, segments: count, segmentLength: segment, rows: outputRows, width: width,
                      origins: outputOrigins, room: room, to: plane)
    }
}
