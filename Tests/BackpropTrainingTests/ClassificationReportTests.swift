import Backprop
import BackpropTraining
import Foundation
import BackpropTestSupport
import Testing

@Suite("ClassificationReport")
struct ClassificationReportTests {
    /// Ten examples of three classes, worked on paper:
    /// ```
    /// labels     0 0 0 0 1 1 1 2 2 2
    /// predicted  0 0 1 2 1 1 0 2 2 1
    ///
    /// confusion (rows: true, columns: predicted)     support
    ///            p0  p1  p2
    ///      t0     2   1   1                             4
    ///      t1     1   2   0                             3
    ///      t2     0   1   2                             3
    /// predicted   3   4   3   (column sums)
    ///
    /// precision = diagonal / column sum:  2/3, 2/4 = 1/2, 2/3
    /// recall    = diagonal / row sum:     2/4 = 1/2, 2/3, 2/3
    /// F1 = 2PR/(P+R):  class 0: 2·(2/3)(1/2) / (7/6) = 4/7;  class 1: 4/7 (P and R swapped);
    ///                  class 2: 2/3 (P = R)
    /// correct = trace = 6 of 10 → accuracy 0.6
    /// macro precision = (2/3 + 1/2 + 2/3)/3 = 11/18; macro recall = 11/18;
    /// macro F1 = (4/7 + 4/7 + 2/3)/3 = 38/63
    /// ```
    @Test("a hand-computed three-class example")
    func handComputed() {
        let r = ClassificationReport(labels: [0, 0, 0, 0, 1, 1, 1, 2, 2, 2],
                                     predicted: [0, 0, 1, 2, 1, 1, 0, 2, 2, 1],
                                     classNames: ["cat", "dog", "owl"])
        #expect(r.classNames == ["cat", "dog", "owl"])
        #expect(r.confusion == [[2, 1, 1], [1, 2, 0], [0, 1, 2]])
        #expect(r.support == [4, 3, 3])
        func close(_ a: [Double], _ b: [Double]) -> Bool { a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) < 1e-12 } }
        #expect(close(r.precision, [2.0 / 3, 1.0 / 2, 2.0 / 3]), "\(r.precision)")
        #expect(close(r.recall, [1.0 / 2, 2.0 / 3, 2.0 / 3]), "\(r.recall)")
        #expect(close(r.f1, [4.0 / 7, 4.0 / 7, 2.0 / 3]), "\(r.f1)")
        #expect(r.correct == 6)
        #expect(r.total == 10)
        #expect(r.accuracy == 0.6)
        #expect(abs(r.macroPrecision - 11.0 / 18) < 1e-12)
        #expect(abs(r.macroRecall - 11.0 / 18) < 1e-12)
        #expect(abs(r.macroF1 - 38.0 / 63) < 1e-12)
    }

    /// A class that is never predicted has precision 0 (not NaN); one with no examples has recall
    /// 0; F1 is 0 when both are.
    /// ```
    /// labels     0 0 1 1      confusion  [[2, 0, 0],   precision  1/2, 0, 0
    /// predicted  0 0 0 0                  [2, 0, 0],   recall     1, 0, 0
    ///                                     [0, 0, 0]]   F1         2/3, 0, 0
    /// ```
    @Test("classes never predicted or without examples give zeros, not NaN")
    func emptyClasses() {
        let r = ClassificationReport(labels: [0, 0, 1, 1], predicted: [0, 0, 0, 0], classNames: ["a", "b", "c"])
        #expect(r.confusion == [[2, 0, 0], [2, 0, 0], [0, 0, 0]])
        #expect(r.support == [2, 2, 0])
        #expect(r.precision == [0.5, 0, 0])
        #expect(r.recall == [1, 0, 0])
        #expect(abs(r.f1[0] - 2.0 / 3) < 1e-12 && r.f1[1] == 0 && r.f1[2] == 0)
        #expect(r.accuracy == 0.5)
        let empty = ClassificationReport(labels: [], predicted: [], classNames: ["a", "b"])
        #expect(empty.total == 0 && empty.accuracy == 0 && empty.confusion == [[0, 0], [0, 0]])
    }

    @Test("invariants on random labels and predictions", arguments: [(1 as UInt64, 10, 1000), (2, 10, 37), (3, 4, 5000), (4, 2, 1)])
    func invariants(seed: UInt64, classes k: Int, count n: Int) throws {
        var g = SeededGenerator(seed: seed)
        let labels = (0..<n).map { _ in g.nextInt(below: k) }
        // Mostly right (like a trained network), sometimes a random class.
        let predicted = labels.map { g.nextUnit() < 0.7 ? $0 : g.nextInt(below: k) }
        let r = ClassificationReport(labels: labels, predicted: predicted, classNames: (0..<k).map { "class \($0)" })

        #expect(r.confusion.count == k && r.confusion.allSatisfy { $0.count == k })
        #expect(r.confusion.map { $0.reduce(0, +) } == r.support, "row sums are the supports")
        #expect(r.support == (0..<k).map { c in labels.filter { $0 == c }.count })
        #expect((0..<k).map { p in r.confusion.reduce(0) { $0 + $1[p] } } == (0..<k).map { c in predicted.filter { $0 == c }.count },
                "column sums are the predicted counts")
        #expect((0..<k).reduce(0) { $0 + r.confusion[$1][$1] } == r.correct, "trace = correct")
        #expect(r.correct == zip(labels, predicted).filter { $0 == $1 }.count)
        #expect(r.total == n)
        #expect(r.accuracy == Double(r.correct) / Double(n))
        #expect(r.support.reduce(0, +) == n)

        // Per class, from true/false positive and negative counts tallied independently.
        for c in 0..<k {
            let tp = zip(labels, predicted).filter { $0 == c && $1 == c }.count
            let fp = zip(labels, predicted).filter { $0 != c && $1 == c }.count
            let fn = zip(labels, predicted).filter { $0 == c && $1 != c }.count
            let precision = tp + fp == 0 ? 0 : Double(tp) / Double(tp + fp)
            let recall = tp + fn == 0 ? 0 : Double(tp) / Double(tp + fn)
            let f1 = precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall)
            #expect(abs(r.precision[c] - precision) < 1e-12, "class \(c) precision")
            #expect(abs(r.recall[c] - recall) < 1e-12, "class \(c) recall")
            #expect(abs(r.f1[c] - f1) < 1e-12, "class \(c) F1")
        }
        // What `backprop evaluate` writes reads back the same.
        let decoded = try JSONDecoder().decode(ClassificationReport.self, from: JSONEncoder().encode(r))
        #expect(decoded == r)
    }

    @Test("Predictions: argmax classes, softmax confidences and accuracy, across batch boundaries")
    func predictions() throws {
        // A one-layer "network": Dense 3→4 whose weights are the identity with a fourth row of zeros,
        // so the logits are (x0, x1, x2, 0).
        var g = SeededGenerator(seed: 1)
        let dense = Dense<Float>(inputSize: 3, outputSize: 4, using: &g)
        dense.weight.value = Tensor(shape: [4, 3], scalars: [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0])
        let network = try Network<Float>(inputShape: [3], layers: [dense])
        let inputs = Tensor<Float>(shape: [5, 3], scalars: [
            3, 1, 0,      // class 0
            0, 2, 1,      // class 1
            -1, -2, 5,    // class 2
            -1, -2, -3,   // class 3 (the zero logit)
            1, 1, 1,      // a tie between 0, 1 and 2: any of them, but its confidence is e/(3e + 1)
        ])
        let p = Predictions(network: network, inputs: inputs, batchSize: 2)
        #expect(Array(p.classes.prefix(4)) == [0, 1, 2, 3])
        #expect([0, 1, 2].contains(p.classes[4]))
        // softmax of (3, 1, 0, 0) at 3: e³ / (e³ + e + 2)
        let expected0 = exp(3.0) / (exp(3.0) + exp(1.0) + 2)
        #expect(abs(Double(p.confidences[0]) - expected0) < 1e-6)
        #expect(abs(Double(p.confidences[4]) - exp(1.0) / (3 * exp(1.0) + 1)) < 1e-6)
        #expect(p.accuracy(labels: [0, 1, 2, 0, 9]) == 0.6)
    }
}
