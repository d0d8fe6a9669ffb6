import Foundation

/// The softmax cross-entropy loss, averaged over the batch (the course's `softmaxloss`), with
/// optional label smoothing as in PyTorch's `CrossEntropyLoss(label_smoothing: ε)`.
///
/// For logits `x: [N, K]`, labels `c: [N]`, `p = softmax(x)` and target distribution
/// `q = (1 − ε)·onehot(c) + ε/K`:
/// ```
/// L      = (1/N) Σ_n Σ_j −q[n, j] · log p[n, j]
///        = (1/N) Σ_n ( (1 − ε)·(−log p[n, c_n]) + ε · mean_j(−log p[n, j]) )
/// ∂L/∂x  = (p − q) / N
/// ```
/// With `ε = 0` this is the course's loss. Computed stably: the row maximum `m` is subtracted
/// first, `log Σ exp(x) = m + log Σ exp(x − m)`, so large scores cannot overflow `exp`.
public struct SoftmaxCrossEntropy: Sendable, Equatable {
    /// `ε` in `[0, 1]`.
    public var labelSmoothing: Double

    /// Creates the loss.
    public init(labelSmoothing: Double = 0) {
        precondition(labelSmoothing >= 0 && labelSmoothing <= 1, "label smoothing \(labelSmoothing) outside [0, 1]")
        self.labelSmoothing = labelSmoothing
    }

    /// The mean loss over the batch and the number of rows whose largest logit is the label.
    /// - Parameters:
    ///   - logits: `[N, K]`.
    ///   - labels: `N` class indexes in `0..<K`.
    ///   - gradient: when non-nil, resized and overwritten with `∂L/∂logits`, `[N, K]`.
    ///   - scale: multiplies the gradient (a slice of a batch passes `slice / batch`).
    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func loss<Scalar: NetworkScalar>(
        logits: Tensor<Scalar>, labels: ArraySlice<Int>, gradient: inout Tensor<Scalar>?, scale: Double = 1
    ) -> (loss: Double, correct: Int) {
        let (n, k) = (logits.shape[0], logits.count / max(logits.shape[0], 1))
        precondition(labels.count == n, "\(labels.count) labels for \(n) rows")
        if gradient != nil { gradient!.resize(to: logits.shape) }
        let epsilon = labelSmoothing
        var total = 0.0
        var correct = 0
        logits.scalars.withUnsafeBufferPointer { x in
            for row in 0..<n {
                let r = x.baseAddress! + row * k
                let label = labels[labels.startIndex + row]
                precondition(label >= 0 && label < k, "label \(label) outside 0..<\(k)")
                var best = 0
                for j in 1..<k where r[j] > r[best] { best = j }
                if best == label { correct += 1 }
                let m = r[best]
                var sum = 0.0
                for j in 0..<k { sum += exp(Double(r[j] - m)) }
                let logSum = log(sum)
                // −log p[c] = −(x[c] − m) + log Σ exp(x − m)
                var rowLoss = -Double(r[label] - m) + logSum
                if epsilon != 0 {
                    var meanNegativeLog = 0.0
                    for j in 0..<k { meanNegativeLog += -Double(r[j] - m) + logSum }
                    rowLoss = (1 - epsilon) * rowLoss + epsilon * meanNegativeLog / Double(k)
                }
                total += rowLoss
                guard gradient != nil else { continue }
                gradient!.scalars.withUnsafeMutableBufferPointer { g in
                    let gr = g.baseAddress! + row * k
                    if epsilon == 0 {
                        for j in 0..<k { gr[j] = Scalar(exp(Double(r[j] - m)) / sum) / Scalar(n) }
                        gr[label] -= 1 / Scalar(n)
                        if scale != 1 {
                            let s = Scalar(scale)
                            for j in 0..<k { gr[j] *= s }
                        }
                    } else {
                        let s = scale / Double(n), uniform = epsilon / Double(k)
                        for j in 0..<k {
                            let target = (j == label ? 1 - epsilon : 0) + uniform
                            gr[j] = Scalar((exp(Double(r[j] - m)) / sum - target) * s)
                        }
                    }
                }
            }
        }
        return (total / Double(n), correct)
    }

    /// `loss` with a whole array of labels.
    public func loss<Scalar: NetworkScalar>(
        logits: Tensor<Scalar>, labels: [Int], gradient: inout Tensor<Scalar>?
    ) -> (loss: Double, correct: Int) {
        loss(logits: logits, labels: labels[...], gradient: &gradient)
    }

    /// The course's loss (no smoothing).
    public static func evaluate<Scalar: NetworkScalar>(
        logits: Tensor<Scalar>, labels: [Int], gradient: inout Tensor<Scalar>?
    ) -> (loss: Double, correct: Int) {
        SoftmaxCrossEntropy().loss(logits: logits, labels: labels[...], gradient: &gradient)
    }
}
