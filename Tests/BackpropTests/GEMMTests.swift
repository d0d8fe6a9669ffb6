import Backprop
import Testing

@Suite struct GEMMTests {
    /// Split over threads by columns, the product is bit-identical to the one-thread product.
    @Test func parallelIsBitIdentical() {
        let (m, n, k) = (70, 517, 300)
        let a: [Float] = randomTensor([m * k], seed: 1).scalars
        let b: [Float] = randomTensor([k * n], seed: 2).scalars
        var one = [Float](repeating: 0, count: m * n), two = one
        GEMM.multiply(transposeA: false, transposeB: false, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n,
                      c: &one, ldc: n, accumulate: false)
        let saved = Parallel.threadCount
        defer { Parallel.threadCount = saved }
        Parallel.threadCount = 3
        GEMM.multiply(transposeA: false, transposeB: false, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n,
                      c: &two, ldc: n, accumulate: false, parallel: true)
        #expect(one == two)
        var transposed = [Float](repeating: 0, count: m * n)
        let bt = (0..<(n * k)).map { i in b[(i % k) * n + i / k] }  // Bᵀ stored n x k
        GEMM.multiply(transposeA: false, transposeB: true, m: m, n: n, k: k, a: a, lda: k, b: bt, ldb: k,
                      c: &transposed, ldc: n, accumulate: false, parallel: true)
        #expect(transposed == one)
    }

    /// Every element is summed in a fixed order, whatever tile computes it: K in panels of 256,
    /// each panel's products added in order from zero (fused when the kernels are), and the panel
    /// sums added to C one after the other. The order decides the bits of every trained model
    /// on the GEMM paths, so this test pins it; the shapes cover ragged tiles and panels.
    @Test(arguments: [(13, 97, 600), (7, 70, 300), (25, 130, 513), (12, 64, 256), (1, 33, 20)])
    func sumsInAFixedOrder(m: Int, n: Int, k: Int) {
        for (transA, transB) in [(false, false), (true, false), (false, true), (true, true)] {
            for accumulate in [false, true] {
                let a: [Float] = randomTensor([m * k], seed: 4).scalars
                let b: [Float] = randomTensor([k * n], seed: 5).scalars
                let lda = transA ? m : k, ldb = transB ? k : n
                var fast: [Float] = randomTensor([m * n], seed: 6).scalars
                var pinned = fast
                GEMM.multiply(transposeA: transA, transposeB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
                              c: &fast, ldc: n, accumulate: accumulate, parallel: true)
                for i in 0..<m {
                    for j in 0..<n {
                        var total = pinned[i * n + j]
                        for p0 in stride(from: 0, to: k, by: 256) {
                            var sum: Float = 0
                            for p in p0..<min(k, p0 + 256) {
                                let x = transA ? a[p * lda + i] : a[i * lda + p], y = transB ? b[j * ldb + p] : b[p * ldb + j]
                                sum = kernelsUseFusedMultiplyAdd ? sum.addingProduct(x, y) : sum + x * y
                            }
                            total = p0 == 0 && !accumulate ? sum : total + sum
                        }
                        pinned[i * n + j] = total
                    }
                }
                let differing = zip(fast, pinned).filter { $0.bitPattern != $1.bitPattern }.count
                #expect(differing == 0, "m \(m) n \(n) k \(k) transA \(transA) transB \(transB) accumulate \(accumulate): \(differing) of \(m * n) differ")
            }
        }
    }

    /// The fast GEMM against the triple loop on odd shapes (edges of every tile and block) and
    /// every transpose combination, accumulating and not.
    @Test(arguments: [(1, 1, 1), (7, 33, 5), (6, 32, 256), (13, 65, 300), (97, 31, 17), (200, 70, 513)])
    func fastMatchesReference(m: Int, n: Int, k: Int) {
        for (transA, transB) in [(false, false), (true, false), (false, true), (true, true)] {
            for accumulate in [false, true] {
                let a: [Float] = randomTensor([m * k], seed: 1).scalars
                let b: [Float] = randomTensor([k * n], seed: 2).scalars
                let lda = transA ? m : k, ldb = transB ? k : n
                var fast: [Float] = randomTensor([m * n], seed: 3).scalars
                var reference = fast
                GEMM.multiply(transposeA: transA, transposeB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
                              c: &fast, ldc: n, accumulate: accumulate)
                referenceGEMM(transposeA: transA, transposeB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
                              c: &reference, ldc: n, accumulate: accumulate)
                let worst = zip(fast, reference).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
                #expect(worst < 1e-4, "m \(m) n \(n) k \(k) transA \(transA) transB \(transB): \(worst)")

                // Double's kernel (used by gradient checks) against the same reference.
                let (a64, b64) = (a.map(Double.init), b.map(Double.init))
                var double = reference.map(Double.init), reference64 = double
                Double.gemm(transposeA: transA, transposeB: transB, m: m, n: n, k: k, a: a64, lda: lda, b: b64, ldb: ldb,
                            c: &double, ldc: n, accumulate: accumulate)
                referenceGEMM(transposeA: transA, transposeB: transB, m: m, n: n, k: k, a: a64, lda: lda, b: b64, ldb: ldb,
                              c: &reference64, ldc: n, accumulate: accumulate)
                let worst64 = zip(double, reference64).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
                #expect(worst64 < 1e-12, "Double m \(m) n \(n) k \(k) transA \(transA) transB \(transB): \(worst64)")
            }
        }
    }

    /// The dot-product path for few columns (`C += A·Bᵀ`) against the triple loop: odd row
    /// counts (a short last row pair), column counts that leave short tiles, depths with and
    /// without a scalar tail, and leading dimensions wider than the rows.
    @Test(arguments: [(16, 10, 4096), (1, 1, 1), (3, 5, 17), (7, 16, 33), (2, 4, 15), (5, 3, 64)])
    func dotProductsMatchReference(m: Int, n: Int, k: Int) {
        let (lda, ldb, ldc) = (k + 3, k + 1, n + 2)
        let a: [Float] = randomTensor([m * lda], seed: 4).scalars
        let b: [Float] = randomTensor([n * ldb], seed: 5).scalars
        var fast: [Float] = randomTensor([m * ldc], seed: 6).scalars
        var reference = fast
        GEMM.multiplyTransposedSmall(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: &fast, ldc: ldc)
        referenceGEMM(transposeA: false, transposeB: true, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
                      c: &reference, ldc: ldc, accumulate: true)
        let worst = zip(fast, reference).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
        #expect(worst < 1e-4, "m \(m) n \(n) k \(k): \(worst)")
    }
}
