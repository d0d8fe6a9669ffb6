import ArgumentParser
import Backprop
import BackpropData
import BackpropReport
import BackpropTraining
import Foundation

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a run's model on the test set: accuracy, confusion matrix, precision and recall.",
        discussion: "Writes evaluation.json, confusion.csv and per_class.csv into the run folder (given a .safetensors file instead, only prints them).")

    @Argument(help: ArgumentHelp("The run folder.", valueName: "run")) var runFolder: String
    @OptionGroup var data: DataOptions
    @OptionGroup var threading: ThreadOptions
    @Option(help: "Test-time augmentation instead of the model's own: none, flip, translate:K[:fill], shift:K[:fill], grid:K[:fill], comma-separated.")
    var tta: String?

    func run() throws {
        try threading.apply()
        let folder = URL(fileURLWithPath: try nonEmpty(runFolder, "the run folder"), isDirectory: true)
        var model = try userFacing { try ModelArchive.load(from: folder) }
        if let tta {
            model.testTimeAugmentation = try flagValue { try TestTimeAugmentation(parsing: tta) }
            try flagValue { try model.testTimeAugmentation.validate(height: model.spec.input[1], width: model.spec.input[2]) }
        }
        let dataset = try data.load(model.dataset, trainingLimit: 0, imageShape: model.spec.input)
        let (_, report) = model.evaluate(on: dataset.test)
        if let data = try? readRegularFile(folder.appendingPathComponent(RunFiles.record), limit: 1 << 24),
           let record = try? JSONDecoder().decode(RunRecord.self, from: data), record.status != "finished" {
            print("note: training \(record.status) after \(record.iterationsCompleted) of \(record.options.iterations) iterations; this is the model saved then"
                  + (record.status == "interrupted" ? " (continue with `backprop train --resume \(runFolder)`)" : ""))
        }
        let views = model.testTimeAugmentation.views.count
        print(String(format: "test accuracy %.2f%% (%d of %d)", report.accuracy * 100, report.correct, report.total)
              + (views > 1 ? ", logits averaged over \(views) views (test-time augmentation \(model.testTimeAugmentation))" : ""))
        print()
        printConfusion(report)
        print()
        printPerClass(report)
        // A model file rather than a run folder: nothing is written beside it.
        guard folder.pathExtension != "safetensors" else { return }
        try userFacing { try EvaluationFiles.write(report, dataset: model.dataset.rawValue, to: folder) }
    }
}

/// The confusion matrix as text: rows are true classes, columns predicted.
func printConfusion(_ r: ClassificationReport) {
    let names = r.classNames.map { String($0.prefix(10)) }
    let width = max(6, (names.map(\.count).max() ?? 0) + 1)
    print("confusion matrix (rows: true class, columns: predicted)")
    print(pad("", width) + names.map { pad($0, width, right: true) }.joined())
    for (t, row) in r.confusion.enumerated() {
        print(pad(names[t], width) + row.map { pad(String($0), width, right: true) }.joined())
    }
}

/// Precision, recall, F1 and support per class, with macro averages.
func printPerClass(_ r: ClassificationReport) {
    print([pad("class", 12), pad("precision", 10, right: true), pad("recall", 10, right: true),
           pad("f1", 10, right: true), pad("support", 9, right: true)].joined())
    func line(_ name: String, _ p: Double, _ rc: Double, _ f: Double, _ s: Int) {
        print([pad(name, 12), pad(String(format: "%.4f", p), 10, right: true), pad(String(format: "%.4f", rc), 10, right: true),
               pad(String(format: "%.4f", f), 10, right: true), pad(String(s), 9, right: true)].joined())
    }
    for k in r.classNames.indices { line(r.classNames[k], r.precision[k], r.recall[k], r.f1[k], r.support[k]) }
    line("macro avg", r.macroPrecision, r.macroRecall, r.macroF1, r.total)
}
