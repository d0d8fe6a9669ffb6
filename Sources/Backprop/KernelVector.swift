import _CPUFeatures

/// The vector the kernels' register tiles are made of, sized for the register file the build
/// targets.
///
/// A tile only runs at speed when its accumulators, the vectors it loads and a broadcast all
/// stay in registers:
/// - AVX-512 has 32 registers of 16 floats: `SIMD16<Float>`, and tiles of 12–24 accumulators.
/// - AVX2 has 16 registers of 8 floats, and NEON 32 of 4: `SIMD8<Float>` (one AVX2 register,
///   two NEON ones), with the same tile shapes in vectors. `SIMD16` tiles there spill: the
///   GEMM ran at a third of the AVX2 machine's speed (BENCHMARKS.md).
///
/// The manifest defines `BACKPROP_AVX512` when the build machine has AVX-512.
#if BACKPROP_AVX512
typealias KernelVector = SIMD16<Float>
/// One vector per lane: a square block of `KernelVector.scalarCount` vectors (a transpose's).
typealias KernelTile = InlineArray<16, SIMD16<Float>>
#else
typealias KernelVector = SIMD8<Float>
/// One vector per lane: a square block of `KernelVector.scalarCount` vectors (a transpose's).
typealias KernelTile = InlineArray<8, SIMD8<Float>>
#endif

extension SIMD where Scalar == Float {
    /// `self + a * b`, one fused multiply-add per lane where the build targets a CPU that has it.
    ///
    /// On a baseline x86-64 build (no FMA), `addingProduct` would call a software `fma` per lane
    /// (about 100x slower), so the separate multiply and add are used unless the code is compiled
    /// for a CPU with FMA. That is read from the C compiler's own macros for the same target
    /// (`_CPUFeatures`), not from a flag that could disagree with the code generation; the
    /// constant folds away, leaving one of the two branches.
    @inline(__always)
    func fusedAdding(_ a: Self, _ b: Self) -> Self {
        if BACKPROP_TARGET_HAS_FMA != 0 {
            return addingProduct(a, b)
        } else {
            return self + a * b
        }
    }
}

/// Whether the kernels were compiled with fused multiply-adds (`bench` and the tests report it).
public let kernelsUseFusedMultiplyAdd = BACKPROP_TARGET_HAS_FMA != 0

/// The floats in one vector of the kernels' register tiles: 16 for a build with
/// `BACKPROP_AVX512`, else 8.
public let kernelVectorWidth = KernelVector.scalarCount

#if BACKPROP_AVX512
/// Two kernel vectors end to end (`DirectConvolution.transpose`, `interleaved`).
typealias KernelVectorPair = SIMD32<Float>
/// Four kernel vectors end to end (`interleaved`, `deinterleaved`).
typealias KernelVectorQuad = SIMD64<Float>
#else
/// Two kernel vectors end to end (`DirectConvolution.transpose`, `interleaved`).
typealias KernelVectorPair = SIMD16<Float>
/// Four kernel vectors end to end (`interleaved`, `deinterleaved`).
typealias KernelVectorQuad = SIMD32<Float>
#endif

/// `(a₀, b₀, c₀, d₀, a₁, b₁, c₁, d₁, …)`: four vectors interleaved lane by lane, e.g. the columns
/// of L 4-pixel-wide tiles made into the pixels of one image row. The stdlib's `evenHalf` and
/// `oddHalf` setters compile to a few shuffles per vector (a loop of lane stores would not).
@inline(__always)
func interleaved(_ a: KernelVector, _ b: KernelVector, _ c: KernelVector, _ d: KernelVector) -> KernelVectorQuad {
    @inline(__always) func zip(_ x: KernelVector, _ y: KernelVector) -> KernelVectorPair {
        var pair = KernelVectorPair()
        pair.evenHalf = x
        pair.oddHalf = y
        return pair
    }
    var quad = KernelVectorQuad()
    quad.evenHalf = zip(a, c)
    quad.oddHalf = zip(b, d)
    return quad
}

/// The inverse of `interleaved`: lanes `4l`, `4l + 1`, `4l + 2` and `4l + 3` of `quad`, e.g. an
/// image row split into the four column phases of its 4-pixel-wide tiles.
@inline(__always)
func deinterleaved(_ quad: KernelVectorQuad) -> (KernelVector, KernelVector, KernelVector, KernelVector) {
    let even = quad.evenHalf, odd = quad.oddHalf
    return (even.evenHalf, odd.evenHalf, even.oddHalf, odd.oddHalf)
}

/// Writes `rows` rows of L tiles 4 pixels wide from `tiles`, where pixel `(i, 4l + j)` is
/// `tiles[(4i + j)·L + l]`, to `target` (rows `width` floats apart): each row's four vectors
/// interleaved and stored as one vector, or the first `count` floats of it as at most one store
/// per power of two from registers (a row's tail, where a whole vector would spill past it).
///
/// Not inlined into the transform that computes `tiles`: there, LLVM spread the shuffles into
/// the arithmetic and broke it into 4-lane and single-lane pieces (1.6x slower than a scalar
/// copy). Reloading the vectors just stored forwards them from the store buffer.
@inline(never)
func storeInterleavedRows(_ tiles: UnsafePointer<Float>, rows: Int, count: Int, width: Int, to target: UnsafeMutablePointer<Float>) {
    let lanes = KernelVector.scalarCount, source = UnsafeRawPointer(tiles)
    for i in 0..<rows {
        @inline(__always) func column(_ j: Int) -> KernelVector {
            source.load(fromByteOffset: (4 * i + j) * lanes * 4, as: KernelVector.self)
        }
        let quad = interleaved(column(0), column(1), column(2), column(3))
        var rest = count, at = UnsafeMutableRawPointer(target + i * width)
        if rest == KernelVectorQuad.scalarCount {
            at.storeBytes(of: quad, as: KernelVectorQuad.self)
            continue
        }
        #if BACKPROP_AVX512
        var v32 = quad.lowHalf
        if rest >= 32 { at.storeBytes(of: v32, as: SIMD32<Float>.self); at += 128; rest -= 32; v32 = quad.highHalf }
        var v16 = v32.lowHalf
        if rest >= 16 { at.storeBytes(of: v16, as: SIMD16<Float>.self); at += 64; rest -= 16; v16 = v32.highHalf }
        #else
        var v16 = quad.lowHalf
        if rest >= 16 { at.storeBytes(of: v16, as: SIMD16<Float>.self); at += 64; rest -= 16; v16 = quad.highHalf }
        #endif
        var v8 = v16.lowHalf
        if rest >= 8 { at.storeBytes(of: v8, as: SIMD8<Float>.self); at += 32; rest -= 8; v8 = v16.highHalf }
        var v4 = v8.lowHalf
        if rest >= 4 { at.storeBytes(of: v4, as: SIMD4<Float>.self); at += 16; rest -= 4; v4 = v8.highHalf }
        var v2 = v4.lowHalf
        if rest >= 2 { at.storeBytes(of: v2, as: SIMD2<Float>.self); at += 8; rest -= 2; v2 = v4.highHalf }
        if rest >= 1 { at.storeBytes(of: v2[0], as: Float.self) }
    }
}

/// Writes the pixel rows of a vector of 4x4 tiles that holds several tile rows (`group`):
/// `tiles` as `storeInterleavedRows` takes it, each of its four rows interleaved into 4·L
/// floats of `buffer` (16·L in all), then stored by `group.storeRows`. Not inlined, as
/// `storeInterleavedRows`.
@inline(never)
func storeInterleavedSegments(_ tiles: UnsafePointer<Float>, buffer: UnsafeMutablePointer<Float>, group: PackedTileRows,
                              to target: UnsafeMutablePointer<Float>) {
    let lanes = KernelVector.scalarCount, source = UnsafeRawPointer(tiles), line = 4 * lanes
    for i in 0..<4 {
        @inline(__always) func column(_ j: Int) -> KernelVector {
            source.load(fromByteOffset: (4 * i + j) * lanes * 4, as: KernelVector.self)
        }
        UnsafeMutableRawPointer(buffer + i * line).storeBytes(of: interleaved(column(0), column(1), column(2), column(3)),
                                                              as: KernelVectorQuad.self)
    }
    group.storeRows(buffer, lineLength: line, to: target)
}

/// Writes pixel rows that hold several tile rows side by side (segments): `buffer`'s rows of
/// tiles' pixels, `lineLength` floats apart, of which segment j (`segmentLength` floats from
/// `j·segmentLength`) is a pixel row of tile row j. Row i of segment j goes, its first `width`
/// floats, to `target + origins[j] + i·width` when `i < rows[j]`.
///
/// Segment by segment, row by row: a row is stored as its whole segment (one or two vectors,
/// whose loads each lie within one of the caller's vector stores to `buffer`, so they are
/// forwarded from it) when the floats past the row up to the segment's end still lie in the
/// plane (`room[j]`: the floats from segment j's first row to the plane's end). Those floats
/// belong to later rows of the same plane, which the caller writes afterwards. Otherwise (a
/// plane's last rows) only `width` floats are copied.
@inline(__always)
func storeSegments(_ buffer: UnsafePointer<Float>, lineLength: Int, segments: Int, segmentLength: Int, rows: InlineArray<16, Int>,
                   width: Int, origins: InlineArray<16, Int>, room: InlineArray<16, Int>, to target: UnsafeMutablePointer<Float>) {
    for j in 0..<segments {
        for i in 0..<rows[j] {
            let (from, to) = (buffer + i * lineLength + j * segmentLength, target + origins[j] + i * width)
            copyFloats(from: from, count: i * width + segmentLength <= room[j] ? segmentLength : width, to: to)
        }
    }
}

/// Copies `count` floats (the two ranges apart): whole kernel vectors, then one more vector
/// ending at the last float (it copies some floats twice, the same values); below a vector,
/// two overlapping moves of the largest power of two that fits. No loop per piece size and at
/// most two moves below a vector: for the short rows of the convolutions' planes (7–31
/// floats), where a call to `memmove` cost more than the copy.
@inline(__always)
func copyFloats(from source: UnsafePointer<Float>, count: Int, to target: UnsafeMutablePointer<Float>) {
    let from = UnsafeRawPointer(source), to = UnsafeMutableRawPointer(target), lanes = KernelVector.scalarCount
    @inline(__always) func move<V>(_: V.Type, at offset: Int) {
        to.storeBytes(of: from.loadUnaligned(fromByteOffset: 4 * offset, as: V.self), toByteOffset: 4 * offset, as: V.self)
    }
    if count >= lanes {
        var done = 0
        while done + lanes <= count {
            move(KernelVector.self, at: done)
            done += lanes
        }
        if done < count { move(KernelVector.self, at: count - lanes) }
        return
    }
    #if BACKPROP_AVX512
    if count >= 8 { move(SIMD8<Float>.self, at: 0); move(SIMD8<Float>.self, at: count - 8); return }
    #endif
    if count >= 4 { move(SIMD4<Float>.self, at: 0); move(SIMD4<Float>.self, at: count - 4); return }
    if count >= 2 { move(SIMD2<Float>.self, at: 0); move(SIMD2<Float>.self, at: count - 2); return }
    if count == 1 { move(Float.self, at: 0) }
}
