import Foundation

/// The softmax cross-entropy loss, averaged over the batch (the course's `softmaxloss`).
///
/// For logits `x: [N, K]` and labels `c: [N]`:
/// ```
/// L      = (1/N) Σ_n ( −x[n, c_n] + log Σ_j exp(x[n, j]) )
/// ∂L/∂x  = (softmax(x) − onehot(c)) / N
/// ```
/// Computed stably: the row maximum `m` is subtracted first, `log Σ exp(x) = m + log Σ exp(x − m)`,
/// so large scores cannot overflow `exp`.
public enum SoftmaxCrossEntropy {
    /// The mean loss over the batch and the number of rows whose largest logit is the label.
    /// - Parameters:
    ///   - logits: `[N, K]`.
    ///   - labels: `N` class indexes in `0..<K`.
    ///   - gradient: when non-nil, resized and overwritten with `∂L/∂logits`, `[N, K]`.
    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public static func evaluate<Scalar: NetworkScalar>(
        logits: Tensor<Scalar>, labels: [Int], gradient: inout Tensor<Scalar>?
    ) -> (loss: Double, correct: Int) {
        evaluate(logits: logits, labels: labels[...], gradient: &gradient)
    }

    /// `evaluate` with the labels of a slice of a batch (no copy).
    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public static func evaluate<Scalar: NetworkScalar>(
        logits: Tensor<Scalar>, labels: ArraySlice<Int>, gradient: inout Tensor<Scalar>?
    ) -> (loss: Double, correct: Int) {
        let (n, k) = (logits.shape[0], logits.count / max(logits.shape[0], 1))
        precondition(labels.count == n, "\(labels.count) labels for \(n) rows")
        if gradient != nil { gradient!.resize(to: logits.shape) }
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
                total += -Double(r[label] - m) + log(sum)
                guard gradient != nil else { continue }
                gradient!.scalars.withUnsafeMutableBufferPointer { g in
                    let gr = g.baseAddress! + row * k
                    for j in 0..<k { gr[j] = Scalar(exp(Double(r[j] - m)) / sum) / Scalar(n) }
                    gr[label] -= 1 / Scalar(n)
                }
            }
        }
        return (total / Double(n), correct)
    }
}
