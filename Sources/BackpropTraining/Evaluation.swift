import Backprop
import Foundation

/// A network's predictions on a set of examples.
public struct Predictions: Sendable {
    /// The predicted class of each example (the largest logit).
    public var classes: [Int]
    /// The softmax probability of the predicted class.
    public var confidences: [Float]

    /// The examples a network runs at once to predict: about a training batch of the CIFAR-10
    /// presets (1,024). cifar-quick's inference ran at 1,030 img/s in batches of 250 and at
    /// 1,260 in batches of 1,024 (`backprop bench --presets cifar-quick --batch-sizes 250,1024`).
    public static let defaultBatchSize = 1000

    /// `requested`, or fewer for a network with large activations: at most 2^26 values (256 MB)
    /// per activation.
    static func batchSize(_ requested: Int, for network: Network<Float>) -> Int {
        max(1, min(requested, (1 << 26) / max(network.largestActivation, 1)))
    }

    /// Runs `network` over `inputs` (`[N, …]`) in batches.
    public init(network: Network<Float>, inputs: Tensor<Float>, batchSize: Int = defaultBatchSize) {
        let n = inputs.batchSize
        let batchSize = Self.batchSize(batchSize, for: network)
        let exampleSize = inputs.count / max(n, 1)
        classes = []
        confidences = []
        classes.reserveCapacity(n)
        confidences.reserveCapacity(n)
        var batch = Tensor<Float>(shape: [0])
        var start = 0
        while start < n {
            let end = min(start + batchSize, n)
            batch.resize(to: [end - start] + inputs.shape.dropFirst())
            batch.scalars.withUnsafeMutableBufferPointer { b in
                inputs.scalars.withUnsafeBufferPointer { x in
                    b.baseAddress!.update(from: x.baseAddress! + start * exampleSize, count: (end - start) * exampleSize)
                }
            }
            let logits = network.forward(batch)
            let k = logits.count / (end - start)
            logits.scalars.withUnsafeBufferPointer { scores in
                for row in 0..<(end - start) { append(scores: scores.baseAddress! + row * k, count: k) }
            }
            start = end
        }
    }

    /// Appends the prediction for one example's `count` logits: the first largest, and its
    /// softmax probability.
    mutating func append(scores r: UnsafePointer<Float>, count k: Int) {
        var best = 0
        for j in 1..<k where r[j] > r[best] { best = j }
        var sum = 0.0
        for j in 0..<k { sum += exp(Double(r[j] - r[best])) }
        classes.append(best)
        confidences.append(Float(1 / sum))
    }

    /// The fraction of `labels` predicted correctly.
    public func accuracy(labels: [Int]) -> Double {
        precondition(labels.count == classes.count)
        guard !labels.isEmpty else { return 0 }
        return Double(zip(classes, labels).filter { $0 == $1 }.count) / Double(labels.count)
    }
}

/// The confusion matrix and per-class metrics of a set of predictions — the one computation
/// behind `backprop evaluate` and the report.
public struct ClassificationReport: Codable, Sendable, Equatable {
    /// The class names, in class order.
    public var classNames: [String]
    /// `confusion[t][p]`: examples of true class `t` predicted as `p`. Row sums are the supports.
    public var confusion: [[Int]]
    /// Per class: `TP / (TP + FP)` — of the examples predicted as the class, the fraction that are
    /// (0 when the class is never predicted).
    public var precision: [Double]
    /// Per class: `TP / (TP + FN)` — of the class's examples, the fraction found (0 when it has none).
    public var recall: [Double]
    /// Per class: the harmonic mean of precision and recall (0 when both are 0).
    public var f1: [Double]
    /// Per class: the number of examples whose true class it is.
    public var support: [Int]
    /// Correct predictions over all examples.
    public var accuracy: Double
    /// Correct predictions.
    public var correct: Int
    /// All examples.
    public var total: Int

    /// The unweighted means over classes.
    public var macroPrecision: Double { precision.reduce(0, +) / Double(max(precision.count, 1)) }
    public var macroRecall: Double { recall.reduce(0, +) / Double(max(recall.count, 1)) }
    public var macroF1: Double { f1.reduce(0, +) / Double(max(f1.count, 1)) }

    /// Tallies `predicted` against `labels`.
    public init(labels: [Int], predicted: [Int], classNames: [String]) {
        precondition(labels.count == predicted.count)
        let k = classNames.count
        precondition((labels + predicted).allSatisfy { (0..<k).contains($0) }, "a label or prediction outside the \(k) classes")
        var confusion = Array(repeating: Array(repeating: 0, count: k), count: k)
        for (t, p) in zip(labels, predicted) { confusion[t][p] += 1 }
        let support = confusion.map { $0.reduce(0, +) }
        let predictedCounts = (0..<k).map { p in confusion.reduce(0) { $0 + $1[p] } }
        let precision = (0..<k).map { predictedCounts[$0] == 0 ? 0 : Double(confusion[$0][$0]) / Double(predictedCounts[$0]) }
        let recall = (0..<k).map { support[$0] == 0 ? 0 : Double(confusion[$0][$0]) / Double(support[$0]) }
        self.classNames = classNames
        self.confusion = confusion
        self.support = support
        self.precision = precision
        self.recall = recall
        f1 = zip(precision, recall).map { p, r in p + r == 0 ? 0 : 2 * p * r / (p + r) }
        correct = (0..<k).reduce(0) { $0 + confusion[$1][$1] }
        total = labels.count
        accuracy = total == 0 ? 0 : Double(correct) / Double(total)
    }

    enum CodingKeys: String, CodingKey {
        case classNames = "class_names", confusion, precision, recall, f1, support, accuracy, correct, total
    }

    /// The key `evaluation.json` used for the class names before every key was snake_case.
    private enum OldKeys: String, CodingKey { case classNames }

    /// Reads the snake_case keys (and `classNames`, as files written before them have it).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if c.contains(.classNames) {
            classNames = try c.decode([String].self, forKey: .classNames)
        } else {
            classNames = try decoder.container(keyedBy: OldKeys.self).decode([String].self, forKey: .classNames)
        }
        confusion = try c.decode([[Int]].self, forKey: .confusion)
        precision = try c.decode([Double].self, forKey: .precision)
        recall = try c.decode([Double].self, forKey: .recall)
        f1 = try c.decode([Double].self, forKey: .f1)
        support = try c.decode([Int].self, forKey: .support)
        accuracy = try c.decode(Double.self, forKey: .accuracy)
        correct = try c.decode(Int.self, forKey: .correct)
        total = try c.decode(Int.self, forKey: .total)
    }
}
