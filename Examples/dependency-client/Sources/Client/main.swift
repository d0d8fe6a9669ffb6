// A program that uses Backprop as a versioned dependency (README, "Backprop as a dependency";
// `DependencyTests` builds it against a tagged copy of the working tree).
//
// It multiplies two matrices with Backprop's GEMM, checks the product against the plain triple
// loop, and says how the kernels were compiled. With `--bench SECONDS` it also times a
// 512x512x512 product, as `backprop bench` does.
import Backprop
import Foundation

func randomMatrix(_ count: Int, seed: UInt64) -> [Float] {
    var generator = SeededGenerator(seed: seed)
    return Tensor<Float>.randomNormal(shape: [count], standardDeviation: 1, using: &generator).scalars
}

let (m, n, k) = (37, 45, 29)
let a = randomMatrix(m * k, seed: 1), b = randomMatrix(k * n, seed: 2)
var fast = [Float](repeating: 0, count: m * n), slow = fast
GEMM.multiply(transposeA: false, transposeB: false, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n,
              c: &fast, ldc: n, accumulate: false)
referenceGEMM(transposeA: false, transposeB: false, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n,
              c: &slow, ldc: n, accumulate: false)
let error = zip(fast, slow).map { abs($0 - $1) }.max()!
print("gemm \(m)x\(n)x\(k): max difference from the reference \(error)")
print("fused multiply-add: \(kernelsUseFusedMultiplyAdd ? "yes" : "no"), vector width: \(kernelVectorWidth)")
guard error < 1e-3 else {
    print("Error: the product is wrong")
    exit(1)
}

if let i = CommandLine.arguments.firstIndex(of: "--bench"), i + 1 < CommandLine.arguments.count,
   let seconds = Double(CommandLine.arguments[i + 1]) {
    let size = 512
    let x = randomMatrix(size * size, seed: 3), y = randomMatrix(size * size, seed: 4)
    var z = [Float](repeating: 0, count: size * size)
    var calls = 0
    let start = Date()
    repeat {
        GEMM.multiply(transposeA: false, transposeB: false, m: size, n: size, k: size, a: x, lda: size, b: y, ldb: size,
                      c: &z, ldc: size, accumulate: false, parallel: true)
        calls += 1
    } while Date().timeIntervalSince(start) < seconds
    let rate = Double(calls) * 2 * Double(size * size * size) / Date().timeIntervalSince(start) / 1e9
    print(String(format: "gemm 512x512x512: %.1f GFLOP/s", rate))
}
