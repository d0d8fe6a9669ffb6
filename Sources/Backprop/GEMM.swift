/// Single-precision matrix multiply, row-major: `C = op(A) · op(B)` or `C += op(A) · op(B)`.
///
/// Sizes are named as in BLAS: `op(A)` is `m x k`, `op(B)` is `k x n`, `C` is `m x n`.
/// `op(X)` is `X` or `Xᵀ`. Leading dimensions are row strides: `A` is stored `m x k` with
/// `lda >= k` (or `k x m` with `lda >= m` when transposed), likewise `B`, and `ldc >= n`.
///
/// The fast path packs panels of `op(A)` (`MR` rows) and `op(B)` (`NR` columns) into contiguous
/// scratch so that the register-blocked micro-kernel streams both with unit stride; transposes
/// are absorbed by the packing. `referenceGEMM` below is the plain triple loop it is tested
/// against.
public enum GEMM {
    /// Rows of `C` computed by one micro-kernel call: 12 with AVX-512 (24 accumulators, two
    /// vectors of B and a broadcast: 27 of its 32 registers), 6 otherwise (15 of AVX2's 16).
    static let mr = KernelVector.scalarCount == 16 ? 12 : 6
    /// Columns of `C` computed by one micro-kernel call: two vectors (32 floats with AVX-512,
    /// 16 with AVX2 or NEON; `KernelVector`).
    static let nr = 2 * KernelVector.scalarCount
    /// Depth of one packed panel: `kc x nr` floats of B stay in L1/L2 while A streams.
    static let kc = 256
    /// Rows of A packed at a time (`mc x kc` floats sized for L2).
    static let mc = 96

    /// Computes `C = op(A)·op(B)` (or `C += …` when `accumulate`), see the type's documentation.
    ///
    /// With `parallel`, a large product is split by columns of `C` over `Parallel.threadCount`
    /// threads; every element is still summed over `k` in the same order, so the result does not
    /// depend on the thread count. Layers that already run in parallel groups leave it off.
    public static func multiply(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
        a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        c: UnsafeMutablePointer<Float>, ldc: Int,
        accumulate: Bool, parallel: Bool = false
    ) {
        guard m > 0, n > 0 else { return }
        guard k > 0 else {
            if !accumulate { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
            return
        }
        let threads = parallel && m * n * k >= 1 << 21 ? min(Parallel.threadCount, n / nr) : 1
        guard threads > 1 else {
            multiplyColumns(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
                            a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, accumulate: accumulate)
            return
        }
        // Contiguous column ranges, each a whole number of micro-kernel tiles. A work struct,
        // not a closure: handing a capturing closure to the pool allocates its context.
        Parallel.forEach(threads, ColumnRanges(
            transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
            c: c, ldc: ldc, accumulate: accumulate, parts: threads))
    }

    /// Part `i` of `parts` of a product: a contiguous range of `C`'s columns.
    private struct ColumnRanges: ParallelWork {
        let transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int
        let a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int
        let c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool
        let parts: Int

        func callAsFunction(_ part: Int) {
            let tiles = (n + nr - 1) / nr
            let first = tiles * part / parts * nr, last = min(n, tiles * (part + 1) / parts * nr)
            guard first < last else { return }
            multiplyColumns(transposeA: transposeA, transposeB: transposeB, m: m, n: last - first, k: k,
                            a: a, lda: lda, b: b + (transposeB ? first * ldb : first), ldb: ldb,
                            c: c + first, ldc: ldc, accumulate: accumulate)
        }
    }

    /// `C (+)= op(A)·op(B)` on one thread: K in panels of `kc`, A in blocks of `mc` rows, then
    /// the micro-kernel over `mr x nr` tiles. Without `accumulate`, the first K panel stores its
    /// tiles instead of adding them (no separate pass to zero C).
    private static func multiplyColumns(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool
    ) {
        let panelColumns = (n + nr - 1) / nr * nr
        // The calling thread's workspace: no allocation once it has grown to the sizes in use.
        let packedB = ThreadWorkspace.floats(kc * panelColumns + mc * kc)
        let packedA = packedB + kc * panelColumns

        var p0 = 0
        while p0 < k {
            let kb = min(kc, k - p0)
            packB(transposed: transposeB, b: b, ldb: ldb, rows: p0, depth: kb, n: n, into: packedB)
            var i0 = 0
            while i0 < m {
                let mb = min(mc, m - i0)
                packA(transposed: transposeA, a: a, lda: lda, row: i0, rows: mb, column: p0, depth: kb, into: packedA)
                var j = 0
                while j < n {
                    let nb = min(nr, n - j)
                    var i = 0
                    while i < mb {
                        let rows = min(mr, mb - i)
                        microKernel(
                            depth: kb, a: packedA + i * kb, b: packedB + j * kb,
                            c: c + (i0 + i) * ldc + j, ldc: ldc, rows: rows, columns: nb,
                            overwrite: p0 == 0 && !accumulate)
                        i += mr
                    }
                    j += nr
                }
                i0 += mb
            }
            p0 += kb
        }
    }

    /// Packs `op(B)[p0 ..< p0+depth, 0 ..< n]` as consecutive `depth x nr` slivers, zero-padded.
    private static func packB(
        transposed: Bool, b: UnsafePointer<Float>, ldb: Int, rows p0: Int, depth: Int, n: Int,
        into packed: UnsafeMutablePointer<Float>
    ) {
        typealias V = KernelVector
        let half = V.scalarCount
        var j0 = 0
        while j0 < n {
            let width = min(nr, n - j0)
            let sliver = packed + j0 * depth
            if transposed {
                // op(B)[p, j] = B[j, p]: each row of B is read once, front to back, into a column
                // of the sliver (which stays in L1).
                for j in 0..<width {
                    let src = b + (j0 + j) * ldb + p0
                    for p in 0..<depth { sliver[p &* nr &+ j] = src[p] }
                }
                if width < nr { for p in 0..<depth { (sliver + p * nr + width).update(repeating: 0, count: nr - width) } }
            } else if width == nr {
                // Two vectors per row (a call to memmove per 64 bytes cost as much as the products
                // of a GEMM with few rows).
                for p in 0..<depth {
                    let src = UnsafeRawPointer(b + (p0 + p) * ldb + j0), dst = UnsafeMutableRawPointer(sliver + p * nr)
                    dst.storeBytes(of: src.loadUnaligned(as: V.self), as: V.self)
                    dst.storeBytes(of: src.loadUnaligned(fromByteOffset: half * 4, as: V.self), toByteOffset: half * 4, as: V.self)
                }
            } else {
                for p in 0..<depth {
                    let dst = sliver + p * nr
                    dst.update(from: b + (p0 + p) * ldb + j0, count: width)
                    (dst + width).update(repeating: 0, count: nr - width)
                }
            }
            j0 += nr
        }
    }

    /// Packs `op(A)[i0 ..< i0+rows, p0 ..< p0+depth]` as consecutive `depth x mr` slivers
    /// (column `p` of a sliver holds its `mr` rows together), zero-padded.
    private static func packA(
        transposed: Bool, a: UnsafePointer<Float>, lda: Int, row i0: Int, rows: Int,
        column p0: Int, depth: Int, into packed: UnsafeMutablePointer<Float>
    ) {
        var r0 = 0
        while r0 < rows {
            let height = min(mr, rows - r0)
            let sliver = packed + r0 * depth
            for p in 0..<depth {
                let dst = sliver + p * mr
                for r in 0..<height {
                    // op(A)[i, p] is A[i, p] or, transposed, A[p, i]
                    let i = i0 + r0 + r
                    dst[r] = transposed ? a[(p0 + p) * lda + i] : a[i * lda + p0 + p]
                }
                for r in height..<mr { dst[r] = 0 }
            }
            r0 += mr
        }
    }

    /// `C[0..<rows, 0..<columns] += Apanel · Bpanel` for one `mr x nr` tile.
    ///
    /// `2·mr` accumulators hold the tile in registers for the whole depth loop; each step loads
    /// two vectors of B and broadcasts `mr` scalars of A.
    @inline(__always)
    private static func microKernel(
        depth: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
        c: UnsafeMutablePointer<Float>, ldc: Int, rows: Int, columns: Int, overwrite: Bool
    ) {
        typealias V = KernelVector
        // acc[2r] and acc[2r + 1] are row r's two vectors.
        var acc = InlineArray<24, V>(repeating: V())
        let rawB = UnsafeRawPointer(b)
        // Wrapping arithmetic inside the loop: overflow checks would keep the tile out of registers.
        for p in 0..<depth {
            let b0 = rawB.loadUnaligned(fromByteOffset: p &* nr &* 4, as: V.self)
            let b1 = rawB.loadUnaligned(fromByteOffset: (p &* nr &+ V.scalarCount) &* 4, as: V.self)
            let ap = a + p &* mr
            for r in 0..<mr {
                let s = V(repeating: ap[r])
                acc[2 &* r] = acc[2 &* r].fusedAdding(s, b0)
                acc[2 &* r &+ 1] = acc[2 &* r &+ 1].fusedAdding(s, b1)
            }
        }
        // Add the tile into C; rows and columns past the matrix edge were zero padding.
        for r in 0..<min(rows, mr) {
            store(c + r * ldc, lo: acc[2 * r], hi: acc[2 * r + 1], columns: columns, overwrite: overwrite)
        }
    }

    /// `row[0..<columns] += (lo, hi)`, or `= (lo, hi)` when `overwrite`.
    @inline(__always)
    private static func store(
        _ row: UnsafeMutablePointer<Float>, lo: KernelVector, hi: KernelVector, columns: Int, overwrite: Bool
    ) {
        typealias V = KernelVector
        let half = V.scalarCount
        if columns == nr {
            let raw = UnsafeMutableRawPointer(row)
            if overwrite {
                raw.storeBytes(of: lo, as: V.self)
                raw.storeBytes(of: hi, toByteOffset: half * 4, as: V.self)
            } else {
                raw.storeBytes(of: raw.loadUnaligned(as: V.self) + lo, as: V.self)
                raw.storeBytes(of: raw.loadUnaligned(fromByteOffset: half * 4, as: V.self) + hi,
                               toByteOffset: half * 4, as: V.self)
            }
        } else {
            for j in 0..<columns {
                let value = j < half ? lo[j] : hi[j - half]
                row[j] = overwrite ? value : row[j] + value
            }
        }
    }
}

extension GEMM {
    /// `C += A · Bᵀ` by dot products of rows, for products with few columns (a classifier's
    /// `Y = X Wᵀ` with 10 outputs), where packing `Bᵀ` into `nr`-column panels would cost more
    /// than the product. `A` is `m x k` (`lda`), `B` is `n x k` (`ldb`), `C` is `m x n` (`ldc`).
    ///
    /// Tiles of 2 rows of `A` × 4 rows of `B` keep 8 vector accumulators; a tile's missing rows
    /// repeat its last one and are not stored.
    public static func multiplyTransposedSmall(
        m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        typealias V = KernelVector
        let vectorEnd = k / V.scalarCount * V.scalarCount
        var i = 0
        while i < m {
            let a0 = a + i * lda, a1 = a + min(i + 1, m - 1) * lda
            var j = 0
            while j < n {
                let bs = InlineArray<4, UnsafePointer<Float>> { t in b + min(j + t, n - 1) * ldb }
                var acc = InlineArray<8, V>(repeating: V())
                var p = 0
                while p < vectorEnd {
                    let x0 = UnsafeRawPointer(a0 + p).loadUnaligned(as: V.self)
                    let x1 = UnsafeRawPointer(a1 + p).loadUnaligned(as: V.self)
                    for t in 0..<4 {
                        let w = UnsafeRawPointer(bs[t] + p).loadUnaligned(as: V.self)
                        acc[t] = acc[t].fusedAdding(x0, w)
                        acc[t &+ 4] = acc[t &+ 4].fusedAdding(x1, w)
                    }
                    p &+= V.scalarCount
                }
                for t in 0..<min(4, n - j) {
                    var sum0 = acc[t].sum(), sum1 = acc[t + 4].sum()
                    for q in vectorEnd..<k {
                        sum0 += a0[q] * bs[t][q]
                        sum1 += a1[q] * bs[t][q]
                    }
                    c[i * ldc + j + t] += sum0
                    if i + 1 < m { c[(i + 1) * ldc + j + t] += sum1 }
                }
                j += 4
            }
            i += 2
        }
    }
}

/// The plain triple-loop GEMM the fast path is tested against (same contract as
/// `GEMM.multiply`; sums in `Double`).
public func referenceGEMM<Scalar: BinaryFloatingPoint>(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
    a: UnsafePointer<Scalar>, lda: Int, b: UnsafePointer<Scalar>, ldb: Int,
    c: UnsafeMutablePointer<Scalar>, ldc: Int, accumulate: Bool
) {
    for i in 0..<m {
        for j in 0..<n {
            var sum = 0.0
            for p in 0..<k {
                let x = transposeA ? a[p * lda + i] : a[i * lda + p]
                let y = transposeB ? b[j * ldb + p] : b[p * ldb + j]
                sum += Double(x) * Double(y)
            }
            c[i * ldc + j] = (accumulate ? c[i * ldc + j] : 0) + Scalar(sum)
        }
    }
}
