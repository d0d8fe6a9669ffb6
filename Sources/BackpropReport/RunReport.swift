import Backprop
import BackpropData
import BackpropTraining
import Foundation

/// A run folder that cannot be reported on, or data that cannot be read (one line saying what
/// is missing or wrong).
public struct ReportError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Everything the report shows about one run: what training recorded (`training.json`,
/// `metrics.jsonl`, `experiment.json`), the saved model, and the model's predictions on the test
/// set — computed here by `ModelArchive.evaluate(on:)`, the code path of `backprop evaluate`,
/// because the per-image predictions behind the misclassified images are not stored.
public struct RunReport {
    public var runFolder: URL
    /// The run's name (the preset's or the spec's).
    public var name: String
    /// `experiment.json`, when present.
    public var experiment: Experiment?
    /// `training.json`; nil for a model without training history (a folder made by
    /// `backprop import`: the model and `experiment.json` only).
    public var record: RunRecord?
    /// One entry per iteration, in order (none without training history).
    public var metrics: [IterationMetrics]
    public var model: ModelArchive
    public var testImages: LabeledImages
    public var predictions: Predictions
    /// The confusion matrix and per-class metrics of `predictions`.
    public var evaluation: ClassificationReport
    /// Things a reader should know (e.g. that `evaluation.json` was missing and computed now).
    public var notes: [String]

    /// The files training writes that the report reads, and when each is written.
    static let requiredFiles: [(name: String, writtenWhen: String)] = [
        (RunFiles.metrics, "written from the first iteration on"),
        (ModelArchive.weightsFile, "written when training ends"),
        (RunFiles.record, "written when training ends"),
    ]

    /// Reads a run folder and evaluates its model on the test set found in `dataDirectory`.
    ///
    /// - Throws: `ReportError` naming every missing file at once (with what writes it), a
    ///   malformed file with the line or key that is wrong, or the data files that are missing.
    public init(runFolder: URL, dataDirectory: URL) throws(ReportError) {
        let fm = FileManager.default
        var isFolder: ObjCBool = false
        guard fm.fileExists(atPath: runFolder.path, isDirectory: &isFolder), isFolder.boolValue else {
            throw ReportError("\(runFolder.path): no such run folder (make one with `backprop train … --out \(runFolder.path)`)")
        }
        let missing = Self.requiredFiles.filter { !fm.fileExists(atPath: runFolder.appendingPathComponent($0.name).path) }
        // A model with no training record and no metrics at all (`backprop import` makes such
        // folders) is reported as a model: everything but the training curves.
        let modelOnly = missing.map(\.name).sorted() == [RunFiles.metrics, RunFiles.record].sorted()
        if !missing.isEmpty && !modelOnly {
            let list = missing.map { "\($0.name) (\($0.writtenWhen))" }.joined(separator: ", ")
            let hint = missing.count < Self.requiredFiles.count
                ? "training has not finished, or was stopped before it could save; wait for it or train again"
                : "this does not look like a run folder of `backprop train`"
            throw ReportError("\(runFolder.path): cannot make a report: missing \(list); \(hint)")
        }
        self.runFolder = runFolder

        var notes: [String] = []
        let recordURL = runFolder.appendingPathComponent(RunFiles.record)
        if modelOnly {
            record = nil
            metrics = []
            notes.append("The folder has a model but no training history (\(RunFiles.record), \(RunFiles.metrics)), as `backprop import` makes: the report shows the model and its test-set evaluation.")
        } else {
            do {
                record = try JSONDecoder().decode(RunRecord.self, from: readRegularFile(recordURL, limit: 1 << 24))
            } catch {
                throw ReportError("\(recordURL.path): not a training record (\(Self.reason(error)))")
            }
            metrics = try Self.readMetrics(runFolder.appendingPathComponent(RunFiles.metrics))
            guard !metrics.isEmpty else {
                throw ReportError("\(runFolder.appendingPathComponent(RunFiles.metrics).path): no iterations recorded")
            }
        }

        let experimentURL = runFolder.appendingPathComponent(RunFiles.experiment)
        if fm.fileExists(atPath: experimentURL.path) {
            do { experiment = try Experiment(specFile: experimentURL) } catch {
                throw ReportError("\(experimentURL.path): \(error.description)")
            }
        } else {
            experiment = nil
            notes.append("\(RunFiles.experiment) is missing; the architecture shown is the saved model's.")
        }
        name = experiment?.name ?? record?.name ?? runFolder.lastPathComponent

        do { model = try ModelArchive.load(from: runFolder) } catch { throw ReportError(error.description) }

        let dataset: Dataset
        do { dataset = try Dataset.load(model.dataset, from: dataDirectory, trainingLimit: 0, imageShape: model.spec.input) } catch {
            throw ReportError("cannot read the \(model.dataset.displayName) test set: \(Self.reason(error))")
        }
        testImages = dataset.test
        (predictions, evaluation) = model.evaluate(on: dataset.test)

        // The recorded evaluation, when there is one, must be this one: same model, same test set.
        let evaluationURL = runFolder.appendingPathComponent(RunFiles.evaluation)
        if let data = try? readRegularFile(evaluationURL, limit: 1 << 24) {
            if let recorded = try? JSONDecoder().decode(EvaluationRecord.self, from: data), recorded.report != evaluation {
                notes.append("\(RunFiles.evaluation) held a different result (accuracy \(String(format: "%.2f%%", recorded.report.accuracy * 100))) from this evaluation of the saved model; it has been rewritten.")
            }
        } else {
            notes.append("\(RunFiles.evaluation) was missing: the test set was evaluated now.")
        }
        if let record, record.status != "finished" {
            notes.append("Training did not finish (status: \(record.status)); the model is the one saved when it stopped, after \(record.iterationsCompleted) iterations."
                         + (record.status == "interrupted" ? " Continue it with `backprop train --resume \(runFolder.path)`." : ""))
        }
        self.notes = notes
    }

    /// The test images the model got wrong, in test-set order.
    public var misclassifications: [Misclassification] {
        predictions.misclassifications(labels: testImages.labels.map(Int.init))
    }

    /// Parses `metrics.jsonl`, naming the first line that is not an `IterationMetrics` object.
    static func readMetrics(_ url: URL) throws(ReportError) -> [IterationMetrics] {
        let text: String
        do { text = String(decoding: try readRegularFile(url, limit: 1 << 30), as: UTF8.self) } catch {
            throw ReportError("\(url.path): cannot read (\(reason(error)))")
        }
        let decoder = JSONDecoder()
        var out: [IterationMetrics] = []
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
            do { out.append(try decoder.decode(IterationMetrics.self, from: Data(line.utf8))) } catch {
                throw ReportError("\(url.path): line \(number + 1) is not an iteration's metrics (\(reason(error)))")
            }
        }
        return out
    }

    /// A short reason for a decoding or file error.
    static func reason(_ error: any Error) -> String {
        switch error {
        case let DecodingError.keyNotFound(key, _): return "missing key \"\(key.stringValue)\""
        case let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context):
            return "wrong value at \"\(context.codingPath.map(\.stringValue).joined(separator: "."))\""
        case let DecodingError.dataCorrupted(context) where !context.codingPath.isEmpty:
            return "\"\(context.codingPath.map(\.stringValue).joined(separator: "."))\": \(context.debugDescription)"
        case DecodingError.dataCorrupted: return "not valid JSON"
        case let error as CocoaError: return error.localizedDescription
        case let error as CustomStringConvertible: return error.description
        default: return error.localizedDescription
        }
    }
}
