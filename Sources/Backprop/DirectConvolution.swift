/// Single-precision stride-1 convolutions computed directly, without an im2col matrix.
///
/// Dimension letters: one image is `C x H x W`; the kernel is `kh x kw` (`k` when square);
/// `Hp x Wp` is the image with its zero border of `p` pixels; `Ho x Wo = (Hp − kh + 1) x
/// (Wp − kw + 1)` is the output; `e = (c, i, j)` indexes the `C·kh·kw` entries of a patch.
///
/// **Forward** (`convolvePlanes`): the image is copied into zero-bordered planes, and the
/// register tile is 6 output channels × V vectors of L output pixels (`tileVectors`), pixels in
/// the vector lanes:
/// ```
/// y[o][y][x0 ..< x0+L] = b[o] + Σ_e W[o][e] · xp[c][y + i][x0 + j ..< x0 + j + L]
/// ```
/// — per entry V unaligned input loads and 6 broadcast weights; the tile is stored into the
/// NCHW output planes (planes narrower than a vector through a flat copy).
///
/// **Input gradient**: for stride 1 it is itself a convolution — of `∂y` padded by
/// `kh − 1 − p`, with the kernel flipped in space and its channel axes swapped — so it is
/// `convolvePlanes` again with other packed weights.
///
/// **Weight gradient** (`accumulateWeightGradient`): a reduction over pixels, tiled the other
/// way round — E patch entries × 2L output channels (`weightTileEntries`), or 6 × 4L with
/// AVX-512 where there are more than two blocks of L channels, channels in the lanes — on
/// channels-last copies `xp: [Hp][Wp][C]` and `∂y: [Ho][Wo][Cout]`. In that layout
/// the patch entries `(j, c)` of kernel row `i` are the contiguous run
/// `xp[y + i][x ..< x + kw][0 ..< C]`, so
/// ```
/// ∂W[i][t][o] += Σ_{y,x} xp[y + i][x·C + t] · ∂y[y][x][o]        t = j·C + c
/// ```
/// loads a `∂y` vector per block of L channels per pixel and broadcasts E input scalars.
///
/// `L` is `lanes`, the floats in one `KernelVector`: 16 with AVX-512, 8 with AVX2 or NEON.
///
/// `Conv2D` calls these for `Float` when `supports` holds and falls back to im2col + GEMM
/// otherwise; tests hold the two paths together.
enum DirectConvolution {
    typealias Vector = KernelVector
    /// Output channels per block, pixels per vector, and patch entries per weight-gradient tile:
    /// 16 with AVX-512, 8 with AVX2 or NEON (`KernelVector`).
    static let lanes = Vector.scalarCount

    /// Whether the forward pass and `∂W` can run here: stride 1, output channels in whole
    /// vectors, and padding below the kernel size (so the flipped kernel's padding is ≥ 0).
    static func supports(outputChannels: Int, kernelSize: Int, stride: Int, padding: Int) -> Bool {
        stride == 1 && outputChannels % lanes == 0 && padding < kernelSize
    }

    // MARK: Layouts

    /// Copies one NCHW image `x: [C][H][W]` into `xp: [H+2p][W+2p][C]` with a zero border.
    static func padChannelsLast(
        _ x: UnsafePointer<Float>, channels: Int, height: Int, width: Int, padding: Int,
        into xp: UnsafeMutablePointer<Float>
    ) {
        let (c, wp) = (channels, width + 2 * padding)
        let rowCount = wp * c
        let plane = height * width
        for y in 0..<(height + 2 * padding) {
            let row = xp + y * rowCount
            let sourceRow = y - padding
            guard sourceRow >= 0 && sourceRow < height else { row.update(repeating: 0, count: rowCount); continue }
            row.update(repeating: 0, count: padding * c)
            (row + (padding + width) * c).update(repeating: 0, count: padding * c)
            let interior = row + padding * c
            let source = x + sourceRow * width
            if c == 1 {
                interior.update(from: source, count: width)
            } else if c % lanes != 0 || height * width < lanes {
                // A transpose of the row's `C x W` block; channel-major reads stream each plane.
                for channel in 0..<c {
                    let plane = source + channel * plane
                    for column in 0..<width { interior[column * c + channel] = plane[column] }
                }
            }
        }
        if c % lanes == 0 && height * width >= lanes {
            transposeToChannelsLast(x, channels: c, height: height, width: width,
                                    into: xp + (padding * wp + padding) * c, rowPixels: wp)
        }
    }

    /// Transposes `C` planes of `pixels` values, `[C][pixels]`, into `[pixels][C]`.
    static func toChannelsLast(_ x: UnsafePointer<Float>, channels: Int, pixels: Int, into destination: UnsafeMutablePointer<Float>) {
        if channels % lanes == 0 && pixels >= lanes {
            transposeToChannelsLast(x, channels: channels, height: 1, width: pixels, into: destination, rowPixels: pixels)
            return
        }
        for c in 0..<channels {
            let plane = x + c * pixels
            for pixel in 0..<pixels { destination[pixel * channels + c] = plane[pixel] }
        }
    }

    /// Copies NCHW planes `x: [C][H][W]` (`C` a multiple of L, `H·W ≥ L`) to channels-last
    /// pixels: `(y, x)` goes to `destination + (y·rowPixels + x)·C`.
    ///
    /// L channels × L consecutive pixels at a time (the last block moved back to end at the
    /// last pixel; its overlap is written twice, identically): L vector loads, an in-register
    /// transpose, L vector stores.
    static func transposeToChannelsLast(
        _ x: UnsafePointer<Float>, channels: Int, height: Int, width: Int,
        into destination: UnsafeMutablePointer<Float>, rowPixels: Int
    ) {
        let pixels = height * width
        for block in 0..<(channels / lanes) {
            let planes = x + block * lanes * pixels
            var next = 0
            while next < pixels {
                let first = min(next, pixels - lanes)
                var rows = KernelTile { c in UnsafeRawPointer(planes + (c &* pixels &+ first)).loadUnaligned(as: Vector.self) }
                transpose(&rows)
                var (y, column) = first.quotientAndRemainder(dividingBy: width)
                for q in 0..<lanes {
                    let target = destination + ((y &* rowPixels &+ column) &* channels &+ block &* lanes)
                    UnsafeMutableRawPointer(target).storeBytes(of: rows[q], as: Vector.self)
                    column &+= 1
                    if column == width { column = 0; y &+= 1 }
                }
                next += lanes
            }
        }
    }

    /// Transposes a `lanes x lanes` block held as `lanes` row vectors.
    ///
    /// One round splits each pair of rows `(2i, 2i+1)` into its even and odd elements, which
    /// become rows `i` and `i + lanes/2`: an element's position `(row, column)`, written in
    /// 2·log2(lanes) bits, rotates right by one bit. log2(lanes) rounds rotate it to `(column, row)`.
    @inline(__always)
    static func transpose(_ rows: inout KernelTile) {
        let half = lanes / 2
        for _ in 0..<lanes.trailingZeroBitCount {
            var next = KernelTile(repeating: Vector())
            for i in 0..<half {
                let pair = KernelVectorPair(lowHalf: rows[2 &* i], highHalf: rows[2 &* i &+ 1])
                next[i] = pair.evenHalf
                next[i &+ half] = pair.oddHalf
            }
            rows = next
        }
    }

    /// Adds a packed weight gradient (`accumulateWeightGradient`'s `[Cout/L][kh][kw][Cin][L]`)
    /// into `∂W: [Cout][Cin][kh][kw]`.
    static func unpackAdding(
        _ packed: UnsafePointer<Float>, outputChannels: Int, inputChannels: Int, kernelSize k: Int,
        into w: UnsafeMutablePointer<Float>
    ) {
        var source = packed
        for block in 0..<(outputChannels / lanes) {
            for i in 0..<k {
                for j in 0..<k {
                    for c in 0..<inputChannels {
                        for l in 0..<lanes { w[(((block * lanes + l) * inputChannels + c) * k + i) * k + j] += source[l] }
                        source += lanes
                    }
                }
            }
        }
    }

    /// How many images of a group the direct kernels take at once, when each needs
    /// `floatsPerImage` floats of copies (padded planes, channels-last layouts): as many as fit
    /// in `copyBudget` floats. Fixed by the shapes and the machine; no result depends on it.
    static func imagesTogether(floatsPerImage: Int, imagesPerGroup: Int) -> Int {
        max(1, min(imagesPerGroup, copyBudget / max(floatsPerImage, 1)))
    }

    /// The floats of copies taken at once: a megabyte, or a core's whole L2 where that is
    /// smaller. Each weight-gradient tile sweeps every copy, so they should stay in L2 from one
    /// tile to the next; more images at once, on the other hand, mean fewer passes over the
    /// gradient's accumulators (2.4 MB for a 256→256 3x3 kernel). Measured (BENCHMARKS.md,
    /// session 17) on Zen 3 (512 KiB of L2): 512 KiB made `∂W` of cifar-quick's layers 18–27 %
    /// and 256→256 at 7x7 6–11 % faster than a megabyte; 256 KiB lost 15–20 % on 256→256. On
    /// Intel (2 MiB) and Zen 4 (1 MiB) a megabyte is what sessions 13–15 measured.
    static let copyBudget = min(1 << 20, max(1 << 17, CacheSize.level2 ?? 1 << 20)) / MemoryLayout<Float>.size

    // MARK: Kernels

    /// Copies one NCHW image `x: [C][H][W]` into zero-bordered planes `xp: [C][Hp][rowStride]`
    /// (`planeRowStride`): `p` zero columns, the row, then zeros to the end of the row; then
    /// `planeSlack` zeros (`paddedPlanesCount` floats in all).
    static func padPlanes(
        _ x: UnsafePointer<Float>, channels: Int, height: Int, width: Int, padding: Int, rowStride: Int,
        into xp: UnsafeMutablePointer<Float>
    ) {
        let hp = height + 2 * padding
        for c in 0..<channels {
            let plane = xp + c * hp * rowStride, source = x + c * height * width
            plane.update(repeating: 0, count: padding * rowStride)
            for y in 0..<height {
                let row = plane + (y + padding) * rowStride
                row.update(repeating: 0, count: padding)
                (row + padding).update(from: source + y * width, count: width)
                (row + padding + width).update(repeating: 0, count: rowStride - padding - width)
            }
            (plane + (height + padding) * rowStride).update(repeating: 0, count: padding * rowStride)
        }
        (xp + channels * hp * rowStride).update(repeating: 0, count: planeSlack)
    }

    /// The row stride of `padPlanes`'s planes for a `k`-wide kernel and `wo` output columns: the
    /// padded row, `Wp = wo + k − 1` (wide rows' last tile moves left to end at the row's end;
    /// narrow rows' tiles run across row ends, `convolvePlanes`).
    static func planeRowStride(outputWidth wo: Int, kernelSize k: Int) -> Int { wo + k - 1 }

    /// The zeros `padPlanes` writes after the planes: a narrow-row tile that starts at the last
    /// output pixel reads up to `tileVectors`·L floats past the planes.
    static let planeSlack = tileVectors * lanes

    /// The floats `padPlanes` writes: `C` planes of `Hp` rows, then `planeSlack`.
    static func paddedPlanesCount(channels: Int, paddedHeight hp: Int, rowStride: Int) -> Int { channels * hp * rowStride + planeSlack }

    /// Output channels per block of `convolvePlanes`: its tile is 6 channels × `tileVectors`
    /// vectors of L pixels.
    static let blockChannels = 6

    /// Vectors of pixels per tile of `convolvePlanes`: 4 with AVX-512 (24 accumulators, the
    /// four input vectors and a broadcast: 29 of its 32 registers), 2 otherwise (12
    /// accumulators: 15 of AVX2's 16). Per patch entry a tile loads `tileVectors` vectors and
    /// broadcasts 6 weights for `6·tileVectors` multiply-adds, so the larger tile spends fewer
    /// loads per multiply-add.
    static let tileVectors = lanes == 16 ? 4 : 2

    /// The accumulators of one `convolvePlanes` tile: `acc[q + 6·v]` is channel q's vector v.
    typealias PlaneTile = InlineArray<24, Vector>

    /// The blocks of `blockChannels` that `outputs` channels take (the last may be partial).
    static func channelBlocks(_ outputs: Int) -> Int { (outputs + blockChannels - 1) / blockChannels }

    /// The floats `packPlaneWeights` writes: whole blocks, the last zero-padded.
    static func packedPlaneWeightCount(outputs: Int, patchSize: Int) -> Int { channelBlocks(outputs) * blockChannels * patchSize }

    /// Packs `W: [Cout][Cin][kh][kw]` for `convolvePlanes`, `blockChannels` output channels at a
    /// time: `packed[b][(c, i, j)][q] = W[6b + q][c][i][j]`, zero past the last channel.
    ///
    /// With `flippedForInputGradient`, packs the kernel of the input-gradient convolution,
    /// whose outputs are the `Cin` channels and inputs the `Cout` ones:
    /// `packed[b][(o, i, j)][q] = W[o][6b + q][kh−1−i][kw−1−j]`.
    static func packPlaneWeights(
        _ w: UnsafePointer<Float>, outputChannels: Int, inputChannels: Int, kernelSize k: Int,
        flippedForInputGradient: Bool, into packed: UnsafeMutablePointer<Float>
    ) {
        let (cout, cin) = (outputChannels, inputChannels)
        let (outputs, inputs) = flippedForInputGradient ? (cin, cout) : (cout, cin)
        var destination = packed
        for block in 0..<channelBlocks(outputs) {
            for c in 0..<inputs {
                for i in 0..<k {
                    for j in 0..<k {
                        for q in 0..<blockChannels {
                            let output = block * blockChannels + q
                            destination[q] = output >= outputs ? 0 : flippedForInputGradient
                                ? w[((c * cin + output) * k + (k - 1 - i)) * k + (k - 1 - j)]
                                : w[((output * cin + c) * k + i) * k + j]
                        }
                        destination += blockChannels
                    }
                }
            }
        }
    }

    /// Where patch entry `(c, i, j)` sits relative to a tile's first pixel in `padPlanes`'s layout.
    static func patchOffsets(channels: Int, kernelSize k: Int, paddedHeight hp: Int, rowStride: Int, into offsets: UnsafeMutablePointer<Int>) {
        var e = 0
        for c in 0..<channels {
            for i in 0..<k {
                for j in 0..<k {
                    offsets[e] = (c * hp + i) * rowStride + j
                    e += 1
                }
            }
        }
    }

    /// Convolves one image held as padded planes (`padPlanes`) and writes the NCHW output
    /// `y: [Cout][Ho][Wo]` (overwriting it).
    ///
    /// The register tile is 6 output channels × V vectors of L output pixels (`tileVectors`;
    /// pixels in the lanes): each patch entry `e = (c, i, j)` loads the V input vectors and
    /// broadcasts 6 weights, `acc[o][v] += W[o][e] · xp[c][pixels of v + (i, j)]`.
    /// Each output is its bias plus the entries' products in entry order, whatever tile it falls
    /// in, so the two ways of placing the vectors give the same bits:
    /// - **Wide rows** (`Wo ≥ L`): the vectors are L consecutive pixels of V adjacent rows. A
    ///   row's last tile is moved left to end at the row's end, and the last rows' tile moves up
    ///   to end at the last row (the overlap is computed twice, identically); planes of fewer
    ///   than V rows repeat their last row in the spare vectors, which are not stored.
    /// - **Narrow rows** (`Wo < L`, e.g. 7x7 planes with AVX-512's 16 lanes): a vector of one row
    ///   would leave most lanes idle, so the vectors run over the planes' flat index
    ///   `f = y·rowStride + x` (`rowStride` = `Wp`, `planeRowStride`), V·L consecutive positions
    ///   a tile, across row ends; lanes with `x ≥ Wo` (the border columns) are computed and dropped.
    ///
    /// Several images at once: `images` of them, each block of channels convolving one image
    /// after the other, so that the block's weights can stay in cache across them (a 256→256 3x3
    /// kernel packs to 2.4 MB, more than a core's L2). Measured on the Intel VM of session 13,
    /// this pass gained nothing noticeable from it (its 7x7 planes are bound by idle lanes); the
    /// weight gradient did. How many images go together changes no result.
    /// - Parameters:
    ///   - xp: `[C][Hp][rowStride]`, `C·kh·kw` entries located by `offsets` (`patchOffsets`),
    ///     followed by `planeSlack` floats; image m's planes `inputImageStride` floats after.
    ///   - weights: `packPlaneWeights`'s layout, `[⌈Cout/6⌉][C·kh·kw][6]`.
    ///   - bias: `[Cout]`, or nil for none.
    ///   - y: the first image's output; image m's `outputImageStride` floats after.
    static func convolvePlanes(
        _ xp: UnsafePointer<Float>, images: Int = 1, inputImageStride: Int = 0, rowStride: Int,
        offsets: UnsafePointer<Int>, patchSize: Int, outputHeight ho: Int, outputWidth wo: Int,
        weights: UnsafePointer<Float>, outputChannels: Int, bias: UnsafePointer<Float>?,
        into output: UnsafeMutablePointer<Float>, outputImageStride: Int = 0
    ) {
        for block in 0..<channelBlocks(outputChannels) {
            for image in 0..<images {
                convolveBlock(block, xp + image * inputImageStride, rowStride: rowStride, offsets: offsets, patchSize: patchSize,
                              outputHeight: ho, outputWidth: wo, weights: weights, outputChannels: outputChannels, bias: bias,
                              into: output + image * outputImageStride)
            }
        }
    }

    /// `convolvePlanes` for one image and one block of `blockChannels` output channels.
    @inline(__always)
    private static func convolveBlock(
        _ block: Int, _ xp: UnsafePointer<Float>, rowStride: Int, offsets: UnsafePointer<Int>, patchSize: Int,
        outputHeight ho: Int, outputWidth wo: Int,
        weights: UnsafePointer<Float>, outputChannels: Int, bias: UnsafePointer<Float>?,
        into y: UnsafeMutablePointer<Float>
    ) {
        let planeSize = ho * wo, b = blockChannels, vectors = tileVectors
        let channels = min(b, outputChannels - block * b)
        let blockWeights = weights + block * patchSize * b
        let blockBias = bias.map { $0 + block * b }
        let outputPlanes = y + block * b * planeSize
        if wo < lanes {
            // Narrow rows; lane l of vector v is flat position `position + v·L + l`. The
            // tiles' vectors go whole into a flat copy of the block's planes (this thread's
            // workspace), whose rows are then copied out without their border columns:
            // picking lanes out of a tile one by one cost a quarter of the pass.
            let tileFloats = vectors * lanes
            let positions = (ho - 1) * rowStride + wo
            let span = (positions + tileFloats - 1) / tileFloats * tileFloats
            let flat = ThreadWorkspace.floats(b * span)
            let starts = InlineArray<4, Int> { v in v * lanes }
            var position = 0
            while position < positions {
                let acc = planeTile(xp + position, vectorStarts: starts, offsets: offsets, patchSize: patchSize,
                                    weights: blockWeights, bias: blockBias, channels: channels)
                for q in 0..<b {
                    let row = UnsafeMutableRawPointer(flat + q * span + position)
                    for v in 0..<vectors { row.storeBytes(of: acc[q &+ 6 &* v], toByteOffset: v * lanes * 4, as: Vector.self) }
                }
                position += tileFloats
            }
            for q in 0..<channels {
                for y in 0..<ho {
                    (outputPlanes + q * planeSize + y * wo).update(from: flat + q * span + y * rowStride, count: wo)
                }
            }
        } else {
            // Wide rows: vector v is row `top + min(v, Ho − 1)`.
            let starts = InlineArray<4, Int> { v in min(v, ho - 1) * rowStride }
            var row = 0
            while row < ho {
                let top = max(0, min(row, ho - vectors))
                var x0 = 0
                while x0 < wo {
                    let start = min(x0, wo - lanes)
                    let acc = planeTile(xp + top * rowStride + start, vectorStarts: starts, offsets: offsets,
                                        patchSize: patchSize, weights: blockWeights, bias: blockBias, channels: channels)
                    for r in 0..<min(vectors, ho) {
                        let outputRow = outputPlanes + (top + r) * wo + start
                        for q in 0..<channels {
                            UnsafeMutableRawPointer(outputRow + q * planeSize).storeBytes(of: acc[q &+ 6 &* r], as: Vector.self)
                        }
                    }
                    x0 += lanes
                }
                row += vectors
            }
        }
    }

    /// One tile of `convolvePlanes`: 6 output channels × `tileVectors` vectors, vector v at
    /// `vectorStarts[v]` floats after `first`; each output its bias (or 0) plus
    /// `Σ_e W[o][e] · xp[first + vectorStarts[v] + offsets[e] ...]` in entry order.
    @inline(__always)
    private static func planeTile(
        _ first: UnsafePointer<Float>, vectorStarts: InlineArray<4, Int>, offsets: UnsafePointer<Int>, patchSize: Int,
        weights: UnsafePointer<Float>, bias: UnsafePointer<Float>?, channels: Int
    ) -> PlaneTile {
        var acc = PlaneTile(repeating: Vector())
        if let bias {
            for q in 0..<channels {
                for v in 0..<tileVectors { acc[q &+ 6 &* v] = Vector(repeating: bias[q]) }
            }
        }
        // One base pointer per vector, so that each load is base + offset (no address arithmetic
        // in the loop). Wrapping arithmetic inside the loop: overflow checks would keep the tile
        // out of registers.
        let bases = InlineArray<4, UnsafeRawPointer> { v in UnsafeRawPointer(first + vectorStarts[v]) }
        // One loop per tile shape, written out: with the vectors in a loop of their own, LLVM
        // leaves the loop over channels rolled and the accumulators in memory (measured).
        if tileVectors == 4 {
            for e in 0..<patchSize {
                let offset = offsets[e] &* 4
                let x0 = bases[0].loadUnaligned(fromByteOffset: offset, as: Vector.self)
                let x1 = bases[1].loadUnaligned(fromByteOffset: offset, as: Vector.self)
                let x2 = bases[2].loadUnaligned(fromByteOffset: offset, as: Vector.self)
                let x3 = bases[3].loadUnaligned(fromByteOffset: offset, as: Vector.self)
                let w = weights + e &* 6
                for q in 0..<6 {
                    let s = Vector(repeating: w[q])
                    acc[q] = acc[q].fusedAdding(s, x0)
                    acc[q &+ 6] = acc[q &+ 6].fusedAdding(s, x1)
                    acc[q &+ 12] = acc[q &+ 12].fusedAdding(s, x2)
                    acc[q &+ 18] = acc[q &+ 18].fusedAdding(s, x3)
                }
            }
        } else {
            for e in 0..<patchSize {
                let offset = offsets[e] &* 4
                let x0 = bases[0].loadUnaligned(fromByteOffset: offset, as: Vector.self)
                let x1 = bases[1].loadUnaligned(fromByteOffset: offset, as: Vector.self)
                let w = weights + e &* 6
                for q in 0..<6 {
                    let s = Vector(repeating: w[q])
                    acc[q] = acc[q].fusedAdding(s, x0)
                    acc[q &+ 6] = acc[q &+ 6].fusedAdding(s, x1)
                }
            }
        }
        return acc
    }

    /// Patch entries per tile of `accumulateWeightGradient` for two blocks of channels: 12 with
    /// AVX-512 (24 accumulators, two `∂y` vectors and a broadcast: 27 of its 32 registers), 6
    /// otherwise (12 accumulators: 15 of AVX2's 16). Each pixel's two `∂y` vectors then serve
    /// more multiply-adds.
    static let weightTileEntries = lanes == 16 ? 12 : 6

    /// Blocks of L output channels one `accumulateWeightGradient` tile takes at most: 4 with
    /// AVX-512 (6 patch entries × 4 blocks: per pixel four `∂y` vectors and six broadcasts for 24
    /// multiply-adds, where 12 × 2 takes two and twelve), 2 otherwise.
    static let weightTileBlocks = lanes == 16 ? 4 : 2

    /// Adds one image's weight gradient into `gradient` for `blockCount` (1 to
    /// `weightTileBlocks`) consecutive blocks of L output channels (`[kh][kw][C][L]` each,
    /// `blockStride` floats apart): `gradient[i][t] += Σ_{y,x} xp[y+i][x·C + t] · ∂y[y][x]`.
    ///
    /// The register tile is E patch entries × 2L channels (E = `weightTileEntries`), or with
    /// more than two blocks, 6 entries × 4L: per pixel, a `∂y` vector per block and E broadcast
    /// inputs. Missing blocks repeat the last one: it is computed and stored again, identically.
    /// Every sum runs over the pixels in order from its stored value, whatever tile it falls in,
    /// and over `images` images in order: a tile loaded once for several images (its 2.4 MB of
    /// 256→256 filters no longer leaving the cache after every image) gives the same bits as
    /// one image at a time.
    /// - Parameters:
    ///   - xp: the padded channels-last input, `[Hp][Wp][C]`; image m's `inputImageStride`
    ///     floats after.
    ///   - outputGradient: `∂y` of pixel `(0, 0)` for the first block's L channels, channels-last;
    ///     pixel `(y, x)` is at `y·gradientRowStride + x·gradientPixelStride`, and the next
    ///     blocks' channels L floats on each; image m's `gradientImageStride` floats after.
    static func accumulateWeightGradient(
        _ xp: UnsafePointer<Float>, images: Int = 1, inputImageStride: Int = 0, channels c: Int, paddedWidth wp: Int, kernelSize k: Int,
        outputHeight ho: Int, outputWidth wo: Int,
        outputGradient dy: UnsafePointer<Float>, gradientImageStride: Int = 0, gradientPixelStride: Int, gradientRowStride: Int,
        into gradient: UnsafeMutablePointer<Float>, blockStride: Int, blockCount: Int
    ) {
        precondition(blockCount >= 1 && blockCount <= weightTileBlocks)
        let rowStride = wp * c, depth = k * c
        let wide = blockCount > 2
        let (tile, groups) = wide ? (6, 4) : (weightTileEntries, 2)
        // Tile vector group v holds block `min(v, blockCount − 1)`.
        let block = InlineArray<4, Int> { v in min(v, blockCount - 1) }
        let entries = k * depth
        let sweep = WeightSweep(images: images, inputImageStride: inputImageStride, rowStride: rowStride, channels: c,
                                outputHeight: ho, outputWidth: wo, gradientImageStride: gradientImageStride,
                                gradientRowStride: gradientRowStride, gradientPixelStride: gradientPixelStride,
                                blockBytes: InlineArray<4, Int> { v in block[v] * lanes * 4 })
        var first = 0
        while first < entries {
            let count = min(tile, entries - first)
            // Where entry (i, t) of this tile sits relative to the pixel: i rows down, t floats on.
            // Entries past the end read offset 0 and are not stored.
            var offsets = InlineArray<12, Int>(repeating: 0)
            for u in 0..<count { offsets[u] = (first + u) / depth * rowStride + (first + u) % depth }
            let raw = UnsafeMutableRawPointer(gradient + first * lanes)
            // acc[u + tile·v] is entry u of tile vector group v.
            var acc = WeightTile(repeating: Vector())
            for v in 0..<groups {
                for u in 0..<count { acc[u + tile * v] = raw.loadUnaligned(fromByteOffset: (block[v] * blockStride + u * lanes) * 4, as: Vector.self) }
            }
            let run = count == tile && first / depth == (first + tile - 1) / depth
            acc = withUnsafeBytes(of: offsets) { table in
                let offsets = table.assumingMemoryBound(to: Int.self).baseAddress!
                return run ? weightTileRun(acc, xp + offsets[0], dy, sweep, wide: wide)
                    : weightTileScattered(acc, xp, offsets, dy, sweep, wide: wide)
            }
            for v in 0..<groups {
                for u in 0..<count { raw.storeBytes(of: acc[u + tile * v], toByteOffset: (block[v] * blockStride + u * lanes) * 4, as: Vector.self) }
            }
            first += tile
        }
    }

    /// The accumulators of one `accumulateWeightGradient` tile: entry u of tile vector group v
    /// at `u + E·v` (E = 12 or 6 entries).
    typealias WeightTile = InlineArray<24, Vector>

    /// What a weight-gradient tile sweeps: `images` images of `Ho x Wo` pixels, each pixel's
    /// inputs `channels` floats apart along a row of `rowStride`, its `∂y` vectors at
    /// `gradientPixelStride` and `gradientRowStride` (tile vector group v's `blockBytes[v]` on).
    struct WeightSweep {
        var images, inputImageStride, rowStride, channels, outputHeight, outputWidth: Int
        var gradientImageStride, gradientRowStride, gradientPixelStride: Int
        var blockBytes: InlineArray<4, Int>
    }

    /// One tile's sums when its entries are consecutive floats from `first` (all in one kernel
    /// row): per pixel, a `∂y` vector per block and a broadcast per entry (`wide`: the 6 × 4-block
    /// tile, else 12 × 2).
    ///
    /// The tile is a value in and out, indexed only by constants in the sweep, so that it stays
    /// in registers from the first pixel to the last. Loading and storing it by a variable count
    /// in the same function left it in memory between rows (24 512-bit stores per row; this core
    /// retires one such store per cycle against two multiply-adds).
    @inline(never)
    private static func weightTileRun(
        _ tile: WeightTile, _ first: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ sweep: WeightSweep, wide: Bool
    ) -> WeightTile {
        wide ? sweepWideWeightTile(tile, first, dy, sweep) { u in u } : sweepWeightTile(tile, first, dy, sweep) { u in u }
    }

    /// `weightTileRun` for entries anywhere in the patch: entry u at `offsets[u]` from the pixel.
    @inline(never)
    private static func weightTileScattered(
        _ tile: WeightTile, _ xp: UnsafePointer<Float>, _ offsets: UnsafePointer<Int>, _ dy: UnsafePointer<Float>,
        _ sweep: WeightSweep, wide: Bool
    ) -> WeightTile {
        wide ? sweepWideWeightTile(tile, xp, dy, sweep) { u in offsets[u] } : sweepWeightTile(tile, xp, dy, sweep) { u in offsets[u] }
    }

    /// The sweep of `weightTileRun` and `weightTileScattered`: entry u of a pixel's inputs at
    /// `entryOffset(u)` floats from the pixel's first.
    @inline(__always)
    private static func sweepWeightTile(
        _ tile: WeightTile, _ xp: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ sweep: WeightSweep,
        entryOffset: (Int) -> Int
    ) -> WeightTile {
        let entries = weightTileEntries, second = sweep.blockBytes[1]
        return sweepPixels(tile, xp, dy, sweep) { acc, d, pixel in
            let d0 = d.loadUnaligned(as: Vector.self), d1 = d.loadUnaligned(fromByteOffset: second, as: Vector.self)
            for u in 0..<entries {
                let s = Vector(repeating: pixel[entryOffset(u)])
                acc[u] = acc[u].fusedAdding(s, d0)
                acc[u &+ entries] = acc[u &+ entries].fusedAdding(s, d1)
            }
        }
    }

    /// `sweepWeightTile` for 6 entries × 4 blocks: per pixel, four `∂y` vectors and six broadcasts.
    @inline(__always)
    private static func sweepWideWeightTile(
        _ tile: WeightTile, _ xp: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ sweep: WeightSweep,
        entryOffset: (Int) -> Int
    ) -> WeightTile {
        let (b1, b2, b3) = (sweep.blockBytes[1], sweep.blockBytes[2], sweep.blockBytes[3])
        return sweepPixels(tile, xp, dy, sweep) { acc, d, pixel in
            let d0 = d.loadUnaligned(as: Vector.self), d1 = d.loadUnaligned(fromByteOffset: b1, as: Vector.self)
            let d2 = d.loadUnaligned(fromByteOffset: b2, as: Vector.self), d3 = d.loadUnaligned(fromByteOffset: b3, as: Vector.self)
            for u in 0..<6 {
                let s = Vector(repeating: pixel[entryOffset(u)])
                acc[u] = acc[u].fusedAdding(s, d0)
                acc[u &+ 6] = acc[u &+ 6].fusedAdding(s, d1)
                acc[u &+ 12] = acc[u &+ 12].fusedAdding(s, d2)
                acc[u &+ 18] = acc[u &+ 18].fusedAdding(s, d3)
            }
        }
    }

    /// The pixels a weight-gradient tile sweeps, in order (images, rows, columns): `step` once
    /// per pixel with the tile, the pixel's first block of `∂y` and its first input.
    @inline(__always)
    private static func sweepPixels(
        _ tile: WeightTile, _ xp: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ sweep: WeightSweep,
        step: (inout WeightTile, UnsafeRawPointer, UnsafePointer<Float>) -> Void
    ) -> WeightTile {
        var acc = tile
        for image in 0..<sweep.images {
            let xp = xp + image &* sweep.inputImageStride, dy = dy + image &* sweep.gradientImageStride
            for y in 0..<sweep.outputHeight {
                let inputRow = xp + y &* sweep.rowStride
                let gradientRow = UnsafeRawPointer(dy + y &* sweep.gradientRowStride)
                for x in 0..<sweep.outputWidth {
                    step(&acc, gradientRow + x &* sweep.gradientPixelStride &* 4, inputRow + x &* sweep.channels)
                }
            }
        }
        return acc
    }
}

/// `DirectConvolution.patchOffsets` for one geometry, kept from call to call.
final class PatchOffsetTable {
    private struct Geometry: Equatable { var channels, kernelSize, paddedHeight, rowStride: Int }
    private var key = Geometry(channels: 0, kernelSize: 0, paddedHeight: 0, rowStride: 0)
    private var offsets: [Int] = []

    /// The offsets of every patch entry `(c, i, j)` in planes `[C][Hp][rowStride]`; valid until
    /// the next call with another geometry.
    func table(channels: Int, kernelSize: Int, paddedHeight: Int, rowStride: Int) -> UnsafePointer<Int> {
        let wanted = Geometry(channels: channels, kernelSize: kernelSize, paddedHeight: paddedHeight, rowStride: rowStride)
        if wanted != key {
            key = wanted
            offsets = [Int](repeating: 0, count: channels * kernelSize * kernelSize)
            offsets.withUnsafeMutableBufferPointer {
                DirectConvolution.patchOffsets(channels: channels, kernelSize: kernelSize, paddedHeight: paddedHeight,
                                               rowStride: rowStride, into: $0.baseAddress!)
            }
        }
        // The array is not mutated again until the geometry changes.
        return offsets.withUnsafeBufferPointer { $0.baseAddress! }
    }
}
