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
