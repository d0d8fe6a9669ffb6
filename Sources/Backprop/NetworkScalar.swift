/// The element types networks compute in: `Float` (training and inference, with the fast
/// SIMD GEMM) and `Double` (gradient checks, where central differences need the precision).
///
/// Layers are generic over their scalar and pre-specialized for both, so the same source of
/// every forward and backward pass runs in both precisions.
public protocol NetworkScalar: BinaryFloatingPoint, Sendable, CustomStringConvertible
where RawSignificand: FixedWidthInteger {
    /// `C = op(A)·op(B)` or `C += op(A)·op(B)`, row-major; see `GEMM.multiply` for the contract.
    static func gemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
        a: UnsafePointer<Self>, lda: Int, b: UnsafePointer<Self>, ldb: Int,
        c: UnsafeMutablePointer<Self>, ldc: Int, accumulate: Bool)
}

extension Float: NetworkScalar {
    /// The packed, register-blocked SIMD kernel.
    @inlinable
    public static func gemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool
    ) {
        GEMM.multiply(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, lda: lda,
                      b: b, ldb: ldb, c: c, ldc: ldc, accumulate: accumulate)
    }
}

extension Double: NetworkScalar {
    /// A simple row-streaming loop (`C[i, :] += A[i, p] · B[p, :]`, vectorizable when `B` is
    /// not transposed): gradient checks need exactness more than speed.
    public static func gemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
        a: UnsafePointer<Double>, lda: Int, b: UnsafePointer<Double>, ldb: Int,
        c: UnsafeMutablePointer<Double>, ldc: Int, accumulate: Bool
    ) {
        for i in 0..<m {
            let row = c + i * ldc
            if !accumulate { row.update(repeating: 0, count: n) }
            for p in 0..<k {
                let scale = transposeA ? a[p * lda + i] : a[i * lda + p]
                if transposeB {
                    for j in 0..<n { row[j] += scale * b[j * ldb + p] }
                } else {
                    let source = b + p * ldb
                    for j in 0..<n { row[j] += scale * source[j] }
                }
            }
        }
    }
}

/// A `Scalar` buffer seen as the `Float` buffer it is on a `Float`-only path.
@inline(__always)
func floats<Scalar>(_ pointer: UnsafePointer<Scalar>) -> UnsafePointer<Float> {
    UnsafeRawPointer(pointer).assumingMemoryBound(to: Float.self)
}

@inline(__always)
func floats<Scalar>(_ pointer: UnsafeMutablePointer<Scalar>) -> UnsafeMutablePointer<Float> {
    UnsafeMutableRawPointer(pointer).assumingMemoryBound(to: Float.self)
}
