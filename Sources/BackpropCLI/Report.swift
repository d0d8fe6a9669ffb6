import ArgumentParser
import BackpropReport
import BackpropTraining
import Foundation

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a run's analysis report: one self-contained HTML page, and each figure as a file.",
        discussion: """
            Reads the run folder (training.json, metrics.jsonl, experiment.json, the model), evaluates \
            the model on the test set (as `evaluate` does) and writes into the run folder: report.html \
            (or --out), accuracy.svg, accuracy_full.svg, loss.svg, kernels.png, misclassified.png, confusion.svg, and the \
            evaluation (evaluation.json, confusion.csv, per_class.csv). Nothing is written when \
            something is missing.
            """)

    @Argument(help: ArgumentHelp("The run folder.", valueName: "run")) var runFolder: String
    @OptionGroup var data: DataOptions
    @OptionGroup var threading: ThreadOptions
    @Option(help: ArgumentHelp("Where to write the HTML page (default: RUN/report.html).", valueName: "file.html"))
    var out: String?
    // `.unconditional`: `--per-pair -1` reaches the range check instead of reading as a flag.
    @Option(parsing: .unconditional, help: "Misclassified images in the overview grid.") var misclassified = 40
    @Option(parsing: .unconditional, help: "Misclassified images shown per (true, predicted) pair.") var perPair = 8

    func run() throws {
        try threading.apply()
        guard misclassified >= 0, perPair >= 0 else { throw UserError.usage("--misclassified and --per-pair must be 0 or more") }
        let folder = URL(fileURLWithPath: try nonEmpty(runFolder, "the run folder"), isDirectory: true)
        // The paths as the user wrote them, for the messages.
        let pagePath = try out.map { try nonEmpty($0, "--out") } ?? (runFolder.hasSuffix("/") ? runFolder : runFolder + "/") + ReportFiles.html
        let htmlURL = URL(fileURLWithPath: pagePath)
        var isFolder: ObjCBool = false
        if out != nil {
            if FileManager.default.fileExists(atPath: htmlURL.path, isDirectory: &isFolder), isFolder.boolValue {
                throw UserError("--out: \(pagePath) is a folder; name the HTML file to write (nothing was written)")
            }
            let parent = htmlURL.deletingLastPathComponent()
            if !FileManager.default.fileExists(atPath: parent.path, isDirectory: &isFolder) || !isFolder.boolValue {
                throw UserError("--out: the folder \(parent.path) does not exist (nothing was written)")
            }
        }
        let report = try userFacing { try RunReport(runFolder: folder, dataDirectory: data.directory) }
        let document = try userFacing {
            try ReportDocument(report, options: ReportOptions(gridImages: misclassified, imagesPerPair: perPair))
        }
        let written = try userFacing("write the report") { try document.write(htmlTo: htmlURL, filesTo: folder) }
        for note in report.notes { print("note: \(note)") }
        let e = report.evaluation
        print(String(format: "test accuracy %.2f%% (%d of %d)", e.accuracy * 100, e.correct, e.total))
        print("wrote the report page \(pagePath)")
        let others = written.filter { $0 != htmlURL }.map(\.lastPathComponent)
        print("wrote the figures and the evaluation in \(runFolder): " + others.joined(separator: ", "))
    }
}
