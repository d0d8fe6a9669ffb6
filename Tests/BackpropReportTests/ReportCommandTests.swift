import Backprop
import BackpropData
import BackpropReport
import BackpropTraining
import Foundation
import BackpropTestSupport
import Testing

/// The folder holding the shared run, removed when the test process exits.
nonisolated(unsafe) private var sharedRunParent: String?

/// A short real MNIST run, trained once by `backprop train` for every test here (each test works
/// on its own copy): 100 iterations on the first 4,000 training images, validation every 25.
enum SharedRun {
    static let folder: Result<URL, any Error> = Result {
        let parent = try TemporaryFolder()
        sharedRunParent = parent.url.path
        atexit { if let path = sharedRunParent { try? FileManager.default.removeItem(atPath: path) } }
        let run = parent.file("mnist")
        let result = try backprop(["train", "mnist", "--iterations", "100", "--train-size", "4000", "--validation-size", "500",
                                   "--validation-interval", "25", "--data-dir", TestData.root.path, "--out", run.path])
        guard result.exited, result.status == 0 else {
            throw PythonChecks.Failure(description: "backprop train failed: \(result.summary)")
        }
        return run
    }

    /// A fresh copy of the run in its own temporary folder.
    static func copy() throws -> (folder: TemporaryFolder, run: URL) {
        let source = try folder.get()
        let temporary = try TemporaryFolder()
        let run = temporary.file("mnist")
        try FileManager.default.copyItem(at: source, to: run)
        return (temporary, run)
    }
}

@Suite("backprop report")
struct ReportCommandTests {
    var dataDir: String { TestData.root.path }

    /// `evaluate` prints, then `report` renders: every number on the page is the one `evaluate`
    /// printed and wrote; the PNGs decode (independently) to the right pixels; the SVGs and the
    /// page are well-formed and self-contained.
    @Test("report on a finished run: every figure and table, the same numbers as evaluate, valid files")
    func fullReport() throws {
        let (temporary, run) = try SharedRun.copy()
        defer { temporary.remove() }

        let evaluation = try backprop(["evaluate", run.path, "--data-dir", dataDir])
        expectSuccess(evaluation)
        let evaluated = try JSONDecoder().decode(EvaluationRecord.self, from: Data(contentsOf: run.appendingPathComponent(RunFiles.evaluation))).report
        let evaluateCSV = try [EvaluationFiles.confusionCSV, EvaluationFiles.perClassCSV].map { try Data(contentsOf: run.appendingPathComponent($0)) }

        // Confusion-matrix invariants on a real evaluation: rows sum to the supports, the trace
        // is the number correct, the supports are the test set's label counts.
        let test = try TestData.mnistTest.get()
        #expect(evaluated.confusion.map { $0.reduce(0, +) } == evaluated.support)
        #expect((0..<10).reduce(0) { $0 + evaluated.confusion[$1][$1] } == evaluated.correct)
        #expect(evaluated.support == (0..<10).map { c in test.labels.filter { Int($0) == c }.count })
        #expect(evaluated.total == 10_000)

        let report = try backprop(["report", run.path, "--data-dir", dataDir, "--misclassified", "12", "--per-pair", "3"])
        expectSuccess(report)
        #expect(report.stderr.isEmpty, "\(report.stderr)")
        #expect(report.stdout.contains(String(format: "test accuracy %.2f%% (%d of %d)", evaluated.accuracy * 100, evaluated.correct, evaluated.total)))
        for name in [ReportFiles.html, ReportFiles.accuracy, ReportFiles.accuracyFull, ReportFiles.loss, ReportFiles.learningRate, ReportFiles.kernels, ReportFiles.misclassified,
                     ReportFiles.confusion, EvaluationFiles.confusionCSV, EvaluationFiles.perClassCSV] {
            #expect(FileManager.default.fileExists(atPath: run.appendingPathComponent(name).path), "\(name) missing")
        }
        // The report's evaluation files are byte for byte evaluate's.
        #expect(try [EvaluationFiles.confusionCSV, EvaluationFiles.perClassCSV].map { try Data(contentsOf: run.appendingPathComponent($0)) } == evaluateCSV)

        // --- The page: well-formed, nothing from outside, no scripts.
        let xml = try PythonChecks.readXML([ReportFiles.html, ReportFiles.accuracy, ReportFiles.loss, ReportFiles.confusion, ReportFiles.learningRate,
                                            ReportFiles.accuracyFull]
            .map { run.appendingPathComponent($0) })
        let page = xml[0]
        #expect(page.root == "html")
        #expect(page.scripts == 0)
        #expect(page.external.isEmpty, "external references: \(page.external)")
        #expect(page.images.allSatisfy { $0.src.hasPrefix("data:image/png;base64,") })
        #expect(xml[1...].allSatisfy { $0.root == "svg" && $0.external.isEmpty && $0.scripts == 0 })

        // Every in-page link has its target.
        let ids = Set(page.ids)
        for href in page.hrefs { #expect(href.hasPrefix("#") && ids.contains(String(href.dropFirst())), "dangling link \(href)") }

        // --- Precision/recall table: the strings evaluate printed, line by line.
        let perClass = try #require(page.tables.first { $0.classes.contains("per-class") })
        let printed = evaluation.stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        for row in perClass.rows.dropFirst() {
            let line = try #require(printed.first { $0.count == 5 && $0[0] == row[0] || ($0.first == "macro" && row[0] == "macro avg") },
                                    "evaluate printed no line for \(row[0])")
            #expect(Array(line.suffix(4)) == Array(row.suffix(4)), "\(row[0]): page \(row), evaluate \(line)")
        }
        #expect(perClass.rows.count == 12)

        // --- Confusion matrix: the table and the heat map hold evaluate's counts.
        let table = try #require(page.tables.first { $0.classes.contains("confusion") })
        for t in 0..<10 {
            #expect(table.rows[t + 1].dropFirst().prefix(10).map { Int($0)! } == evaluated.confusion[t])
            #expect(Int(table.rows[t + 1][11]) == evaluated.support[t])
        }
        #expect(page.cells.count == 100 && xml[3].cells.count == 100)
        for cell in page.cells {
            #expect(Int(cell.text) == evaluated.confusion[cell.trueClass][cell.predicted])
            let linked = cell.trueClass != cell.predicted && evaluated.confusion[cell.trueClass][cell.predicted] > 0
            #expect((cell.href != nil) == linked)
        }
        #expect(page.svgTexts.count == 5, "accuracy (zoomed and 0–100 %), loss, learning-rate and confusion figures inline")
        // The full view's axis runs from 0 to 100 %; the zoomed one starts above 0 (the second
        // half of 100 iterations is well above chance).
        let fullTexts = xml[5].svgTexts.first ?? []
        #expect(fullTexts.contains("Accuracy per iteration — MNIST, 0–100 %") && fullTexts.contains("100"), "\(fullTexts)")
        let html = try String(contentsOf: run.appendingPathComponent(ReportFiles.html), encoding: .utf8)
        let zoom = try #require(html.firstMatch(of: /zoomed to (\d+(?:\.\d+)?)–(\d+(?:\.\d+)?) %/))
        #expect(Double(zoom.1)! > 0 && Double(zoom.2)! <= 100, "\(zoom.0)")
        #expect(html.contains("counted from 0"), "the pairs' image numbers say their base")
        #expect(xml[5].polylines == [100, 4])

        // --- Parameter table: Table 2's numbers.
        let parameters = try #require(page.tables.first { $0.classes.contains("parameters") })
        #expect(parameters.rows.last.map { Array($0.suffix(3)) } == ["14,640", "42", "14,682"])

        // --- The curves: one point per iteration (100), validation at 25, 50, 75, 100.
        #expect(xml[1].polylines == [100, 4])
        #expect(xml[2].polylines == [100, 100, 100])
        #expect(xml[4].polylines == [100], "the learning rate: one point per iteration")

        // --- PNGs, decoded by Python: the kernels are the model's, the images are the test set's.
        let model = try ModelArchive.load(from: run)
        let pngs = try PythonChecks.decode([ReportFiles.kernels, ReportFiles.misclassified].map { run.appendingPathComponent($0) })
        let weight = try #require(KernelGrid.firstConvolutionWeight(of: model.network))
        let grid = KernelGrid(weight: weight)
        for kernel in [0, 7, 15] {
            let tile = grid.tiles(ofKernel: kernel)[0]
            let values = Array(weight.scalars[(kernel * 25)..<((kernel + 1) * 25)])
            #expect(tile.pixels.min() == 0 && tile.pixels.max() == 255, "each kernel spans its own range")
            // The largest weight is white, the smallest black, in the decoded file.
            let (x0, y0) = grid.origin(ofKernel: kernel)
            let brightest = values.indices.max { values[$0] < values[$1] }!, darkest = values.indices.min { values[$0] < values[$1] }!
            #expect(pngs[0].pixel(x0 + (brightest % 5) * grid.factor + 3, y0 + (brightest / 5) * grid.factor + 3) == [255, 255, 255])
            #expect(pngs[0].pixel(x0 + (darkest % 5) * grid.factor + 3, y0 + (darkest / 5) * grid.factor + 3) == [0, 0, 0])
        }
        let (predictions, _) = model.evaluate(on: test)
        let mistakes = predictions.misclassifications(labels: test.labels.map(Int.init))
        #expect(mistakes.count == evaluated.total - evaluated.correct)
        let misclassified = MisclassifiedGrid(images: test, items: Array(mistakes.prefix(12)), classNames: model.classNames)
        #expect(pngs[1].width == misclassified.image().width)
        for item in [0, 11] {
            let (x0, y0) = misclassified.origin(ofItem: item)
            let source = test.pixels(ofImage: mistakes[item].index)
            for (x, y) in [(0, 0), (14, 14), (27, 27), (5, 20)] {
                let v = source[source.startIndex + y * 28 + x]
                #expect(pngs[1].pixel(x0 + x * misclassified.factor + 1, y0 + y * misclassified.factor + 1) == [v, v, v],
                        "item \(item) pixel \(x), \(y)")
            }
        }

        // The per-pair thumbnails are the test images they name.
        let thumbnails = page.images.filter { $0.index != nil }.prefix(3)
        #expect(!thumbnails.isEmpty)
        for (i, thumbnail) in thumbnails.enumerated() {
            let url = temporary.file("thumbnail-\(i).png")
            try Data(base64Encoded: String(thumbnail.src.dropFirst("data:image/png;base64,".count)))!.write(to: url)
            let png = try #require(try PythonChecks.decode([url]).first)
            #expect(png.width == 28 && png.height == 28 && png.channels == 1)
            #expect(png.pixels == Array(test.pixels(ofImage: thumbnail.index!)))
            #expect(mistakes.contains { $0.index == thumbnail.index })
        }
    }

    @Test("--out writes the page elsewhere; the figures still go into the run folder")
    func outElsewhere() throws {
        let (temporary, run) = try SharedRun.copy()
        defer { temporary.remove() }
        let page = temporary.file("elsewhere.html")
        let result = try backprop(["report", run.path, "--data-dir", dataDir, "--out", page.path, "--misclassified", "4", "--per-pair", "1"])
        expectSuccess(result)
        #expect(FileManager.default.fileExists(atPath: page.path))
        #expect(!FileManager.default.fileExists(atPath: run.appendingPathComponent(ReportFiles.html).path))
        #expect(FileManager.default.fileExists(atPath: run.appendingPathComponent(ReportFiles.kernels).path))

        let nowhere = try backprop(["report", run.path, "--data-dir", dataDir, "--out", temporary.file("no/such/folder/r.html").path])
        expectUserError(nowhere, mentioning: ["no/such/folder"])
    }

    // MARK: Missing pieces: computed, or named — never a half-written report

    @Test("no evaluation yet: the report evaluates the model itself and says so")
    func missingEvaluation() throws {
        let (temporary, run) = try SharedRun.copy()
        defer { temporary.remove() }
        let recorded = try Data(contentsOf: run.appendingPathComponent(RunFiles.evaluation))
        try FileManager.default.removeItem(at: run.appendingPathComponent(RunFiles.evaluation))
        let result = try backprop(["report", run.path, "--data-dir", dataDir, "--misclassified", "4", "--per-pair", "1"])
        expectSuccess(result)
        #expect(result.stdout.contains("evaluation.json was missing"))
        #expect(FileManager.default.fileExists(atPath: run.appendingPathComponent(ReportFiles.html).path))
        let rewritten = try Data(contentsOf: run.appendingPathComponent(RunFiles.evaluation))
        #expect(try JSONDecoder().decode(EvaluationRecord.self, from: rewritten).report
                == JSONDecoder().decode(EvaluationRecord.self, from: recorded).report)
    }

    @Test("an unfinished run: names every missing file, writes nothing")
    func unfinishedRun() throws {
        let (temporary, run) = try SharedRun.copy()
        defer { temporary.remove() }
        for name in [RunFiles.record, ModelArchive.weightsFile, ModelArchive.descriptionFile, RunFiles.evaluation] {
            try FileManager.default.removeItem(at: run.appendingPathComponent(name))
        }
        let before = try snapshot(of: run)
        let result = try backprop(["report", run.path, "--data-dir", dataDir])
        expectUserError(result, mentioning: [RunFiles.record, ModelArchive.weightsFile, "has not finished"])
        #expect(try snapshot(of: run) == before, "the folder changed")

        let empty = temporary.file("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        expectUserError(try backprop(["report", empty.path, "--data-dir", dataDir]), mentioning: [RunFiles.metrics, "not look like a run folder"])
        expectUserError(try backprop(["report", temporary.file("nothing").path]), mentioning: ["no such run folder"])
    }

    @Test("a damaged metrics file or missing data: one error line naming the problem, nothing written")
    func damagedInputs() throws {
        let (temporary, run) = try SharedRun.copy()
        defer { temporary.remove() }
        let metrics = run.appendingPathComponent(RunFiles.metrics)
        var lines = try String(contentsOf: metrics, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines[2] = "{\"iteration\": 3, \"loss\": "
        try lines.joined(separator: "\n").write(to: metrics, atomically: true, encoding: .utf8)
        let before = try snapshot(of: run)
        expectUserError(try backprop(["report", run.path, "--data-dir", dataDir]), mentioning: ["metrics.jsonl", "line 3"])
        #expect(try snapshot(of: run) == before)

        // Restore the metrics; point at a data folder without MNIST.
        try FileManager.default.removeItem(at: metrics)
        try FileManager.default.copyItem(at: try SharedRun.folder.get().appendingPathComponent(RunFiles.metrics), to: metrics)
        let noData = temporary.file("no-data")
        try FileManager.default.createDirectory(at: noData, withIntermediateDirectories: true)
        let beforeData = try snapshot(of: run)
        expectUserError(try backprop(["report", run.path, "--data-dir", noData.path]), mentioning: ["MNIST", "no-data"])
        #expect(try snapshot(of: run) == beforeData)
    }
}
