import Foundation

/// Filters that whiten an image's k×k patches: the frozen first convolution of the fast CIFAR-10
/// recipes (airbench; Page, "How to train your ResNet").
///
/// With `P` the `[n, d]` matrix of the training inputs' k×k patches (`d = C·k·k`, every position
/// of every image, stride 1, no padding) and `Σ = PᵀP / n` their second-moment matrix
/// (eigenvalues `λ₁ ≥ … ≥ λ_d`, unit eigenvectors `v_i`):
/// ```
/// filter i       =  v_i / √(λ_i + ε)          i = 1 … d
/// filter d + i   = −v_i / √(λ_i + ε)          (when 2d filters are asked for)
/// ε              = relativeEpsilon · trace(Σ) / d
/// ```
/// so the layer's outputs are decorrelated with unit variance along each principal direction
/// (ε keeps the smallest directions from blowing up noise). airbench's ε is 5e-4 on inputs of unit
/// variance per pixel, which is `relativeEpsilon = 5e-4` here whatever the input scale.
/// Each eigenvector's sign is fixed so that its largest-magnitude entry is positive (the first
/// such entry on a tie), so the filters do not depend on the eigen-solver's sign choices.
public enum Whitening {
    /// The `[filters, C, k, k]` whitening weights for `inputs` (`[N, C, H, W]`).
    ///
    /// - Parameters:
    ///   - filters: `C·k·k` (the whitening directions) or `2·C·k·k` (each also negated, so a ReLU
    ///     or GELU after it keeps both signs).
    ///   - relativeEpsilon: ε over the mean eigenvalue.
    public static func filters(for inputs: Tensor<Float>, kernelSize k: Int, filters: Int,
                               relativeEpsilon: Double = 5e-4) -> Tensor<Float> {
        precondition(inputs.shape.count == 4 && k >= 1 && k <= inputs.shape[2] && k <= inputs.shape[3])
        let c = inputs.shape[1]
        let d = c * k * k
        precondition(filters == d || filters == 2 * d, "Whitening: \(filters) filters for \(d)-value patches")
        let sigma = patchMoments(inputs, kernelSize: k)
        let (values, vectors) = symmetricEigen(sigma, n: d)
        let epsilon = relativeEpsilon * values.reduce(0, +) / Double(d)
        var weight = Tensor<Float>(shape: [filters, c, k, k])
        for i in 0..<d {
            var v = Array(vectors[(i * d)..<((i + 1) * d)])
            var largest = 0
            for j in 1..<d where abs(v[j]) > abs(v[largest]) { largest = j }
            if v[largest] < 0 { v = v.map { -$0 } }
            let s = 1 / (max(values[i], 0) + epsilon).squareRoot()
            for j in 0..<d {
                weight.scalars[i * d + j] = Float(v[j] * s)
                if filters == 2 * d { weight.scalars[(d + i) * d + j] = Float(-v[j] * s) }
            }
        }
        return weight
    }

    /// `Σ = PᵀP / n` over every k×k patch (stride 1, no padding) of every image, `[d, d]`
    /// row-major, summed in `Double` image by image.
    static func patchMoments(_ inputs: Tensor<Float>, kernelSize k: Int) -> [Double] {
        let (n, c, h, w) = (inputs.shape[0], inputs.shape[1], inputs.shape[2], inputs.shape[3])
        let d = c * k * k, (ho, wo) = (h - k + 1, w - k + 1)
        var sums = [Double](repeating: 0, count: d * d)
        var patch = [Double](repeating: 0, count: d)
        inputs.scalars.withUnsafeBufferPointer { x in
            for image in 0..<n {
                let base = x.baseAddress! + image * c * h * w
                for u in 0..<ho {
                    for v in 0..<wo {
                        // The patch in PyTorch's weight order: channel, row, column.
                        var j = 0
                        for ch in 0..<c {
                            for i in 0..<k {
                                for l in 0..<k {
                                    patch[j] = Double(base[(ch * h + u + i) * w + v + l])
                                    j += 1
                                }
                            }
                        }
                        for a in 0..<d {
                            let pa = patch[a]
                            for b in a..<d { sums[a * d + b] += pa * patch[b] }
                        }
                    }
                }
            }
        }
        let count = Double(max(n * ho * wo, 1))
        for a in 0..<d {
            for b in a..<d {
                sums[a * d + b] /= count
                sums[b * d + a] = sums[a * d + b]
            }
        }
        return sums
    }

    /// The eigenvalues (descending) and unit eigenvectors (row `i` of the result belongs to value
    /// `i`) of the symmetric `n×n` matrix `a` (row-major), by cyclic Jacobi rotations — exact to
    /// rounding for the small matrices whitening needs (`n` = 12 for 2x2 RGB patches).
    public static func symmetricEigen(_ matrix: [Double], n: Int) -> (values: [Double], vectors: [Double]) {
        precondition(matrix.count == n * n)
        var a = matrix
        var v = [Double](repeating: 0, count: n * n)
        for i in 0..<n { v[i * n + i] = 1 }
        for _ in 0..<100 {
            var off = 0.0
            for p in 0..<n { for q in (p + 1)..<n { off += a[p * n + q] * a[p * n + q] } }
            let diagonal = (0..<n).reduce(0.0) { $0 + abs(a[$1 * n + $1]) }
            if off == 0 || off.squareRoot() < 1e-15 * diagonal { break }
            for p in 0..<n {
                for q in (p + 1)..<n where a[p * n + q] != 0 {
                    // The rotation that zeroes a[p][q] (Golub & Van Loan, Algorithm 8.4.2).
                    let theta = (a[q * n + q] - a[p * n + p]) / (2 * a[p * n + q])
                    let t = (theta >= 0 ? 1.0 : -1.0) / (abs(theta) + (theta * theta + 1).squareRoot())
                    let cs = 1 / (t * t + 1).squareRoot(), sn = t * cs
                    for k in 0..<n {
                        let (akp, akq) = (a[k * n + p], a[k * n + q])
                        a[k * n + p] = cs * akp - sn * akq
                        a[k * n + q] = sn * akp + cs * akq
                    }
                    for k in 0..<n {
                        let (apk, aqk) = (a[p * n + k], a[q * n + k])
                        a[p * n + k] = cs * apk - sn * aqk
                        a[q * n + k] = sn * apk + cs * aqk
                    }
                    for k in 0..<n {
                        let (vkp, vkq) = (v[k * n + p], v[k * n + q])
                        v[k * n + p] = cs * vkp - sn * vkq
                        v[k * n + q] = sn * vkp + cs * vkq
                    }
                }
            }
        }
        // Column j of v is the eigenvector of a[j][j]; sort by value, descending.
        let order = (0..<n).sorted { a[$0 * n + $0] > a[$1 * n + $1] }
        var vectors = [Double](repeating: 0, count: n * n)
        for (row, j) in order.enumerated() { for k in 0..<n { vectors[row * n + k] = v[k * n + j] } }
        return (order.map { a[$0 * n + $0] }, vectors)
    }
}
