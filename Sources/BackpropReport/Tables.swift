import Backprop
import BackpropTraining
import Foundation

// MARK: - Parameter table

/// Each layer's output shape and weight, bias and total parameter counts — the seed report's
/// Tables 2, 3 and 5 (an `Input` row first, a `Softmaxloss` row and the totals last).
public struct ParameterTable: Sendable {
    public struct Row: Sendable, Equatable {
        /// The layer's path in the network (its parameters' name prefix, e.g. `3` or
        /// `layer1.0.conv1`); empty for Input, Softmaxloss and Total.
        public var index: String
        /// Nesting depth: 0 for top-level layers, 1 inside a block, …
        public var depth: Int = 0
        public var layer: String
        public var settings: String
        public var outputShape: String
        public var weights: Int
        public var biases: Int
        public var total: Int { weights + biases }
    }

    /// Input, each layer, Softmaxloss.
    public var rows: [Row]
    public var totalWeights: Int { rows.reduce(0) { $0 + $1.weights } }
    public var totalBiases: Int { rows.reduce(0) { $0 + $1.biases } }
    public var total: Int { totalWeights + totalBiases }

    public init(network: Network<Float>) {
        var rows = [Row(index: "", layer: "Input", settings: "", outputShape: describe(shape: network.inputShape), weights: 0, biases: 0)]
        for row in network.rows {
            // A layer's own parameters: `bias` counts as biases, every other one as weights.
            let parameters = row.layer.parameters
            let biases = parameters.filter { $0.name == "bias" }.reduce(0) { $0 + $1.value.count }
            let weights = parameters.filter { $0.name != "bias" }.reduce(0) { $0 + $1.value.count }
            rows.append(Row(index: row.path, depth: row.depth, layer: row.layer.kind, settings: row.layer.settings,
                            outputShape: describe(shape: row.outputShape), weights: weights, biases: biases))
        }
        rows.append(Row(index: "", layer: "Softmaxloss", settings: "", outputShape: describe(shape: network.outputShape), weights: 0, biases: 0))
        self.rows = rows
    }
}

// MARK: - CSV and JSON of an evaluation

/// Quotes a CSV field when it holds a comma, a quote or a line break (RFC 4180).
func csvField(_ s: String) -> String {
    s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" })
        ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
}

extension ClassificationReport {
    /// The confusion matrix as CSV: a header row of predicted class names, then one row per true
    /// class (its name, then its counts).
    /// ```
    /// true \ predicted,0,1,…
    /// 0,973,0,…
    /// ```
    public var confusionCSV: String {
        var lines = [(["true \\ predicted"] + classNames).map(csvField).joined(separator: ",")]
        for (t, row) in confusion.enumerated() {
            lines.append(([csvField(classNames[t])] + row.map(String.init)).joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Precision, recall, F1 and support per class, then the macro averages (support: all examples),
    /// with full precision (`evaluate` prints the same values to 4 decimals).
    public var perClassCSV: String {
        var lines = ["class,precision,recall,f1,support"]
        for k in classNames.indices {
            lines.append("\(csvField(classNames[k])),\(precision[k]),\(recall[k]),\(f1[k]),\(support[k])")
        }
        lines.append("macro avg,\(macroPrecision),\(macroRecall),\(macroF1),\(total)")
        return lines.joined(separator: "\n") + "\n"
    }
}

/// The files an evaluation leaves in a run folder — written by `backprop evaluate` and by the
/// report, from the same `ClassificationReport`.
public enum EvaluationFiles {
    public static let confusionCSV = "confusion.csv"
    public static let perClassCSV = "per_class.csv"

    /// `evaluation.json` (`EvaluationRecord`), `confusion.csv` and `per_class.csv`, as bytes.
    public static func contents(_ report: ClassificationReport, dataset: String) throws -> [(name: String, data: Data)] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return [
            (RunFiles.evaluation, try encoder.encode(EvaluationRecord(dataset: dataset, images: report.total, report: report))),
            (confusionCSV, Data(report.confusionCSV.utf8)),
            (perClassCSV, Data(report.perClassCSV.utf8)),
        ]
    }

    /// Writes the three files into `folder`, each atomically.
    public static func write(_ report: ClassificationReport, dataset: String, to folder: URL) throws {
        for (name, data) in try contents(report, dataset: dataset) {
            try writeAtomically(data, to: folder.appendingPathComponent(name))
        }
    }
}
