import Backprop
import BackpropData
import BackpropTraining
import Foundation

/// The names of the report's files. The figures go into the run folder; the page goes there
/// too unless another place is given.
public enum ReportFiles {
    public static let html = "report.html"
    /// The accuracy chart with its y axis zoomed to the data of the run's second half.
    public static let accuracy = "accuracy.svg"
    /// The same curves on a 0–100 % axis.
    public static let accuracyFull = "accuracy_full.svg"
    public static let loss = "loss.svg"
    /// Only for runs whose metrics record the learning rate.
    public static let learningRate = "learning_rate.svg"
    public static let kernels = "kernels.png"
    public static let misclassified = "misclassified.png"
    public static let confusion = "confusion.svg"
}

/// Choices about how much the report shows.
public struct ReportOptions: Sendable {
    /// Misclassified test images in the overview grid (the first ones in test-set order).
    public var gridImages: Int
    /// Misclassified images shown per (true, predicted) pair, linked from the confusion matrix.
    public var imagesPerPair: Int

    public init(gridImages: Int = 40, imagesPerPair: Int = 8) {
        precondition(gridImages >= 0 && imagesPerPair >= 0)
        self.gridImages = gridImages
        self.imagesPerPair = imagesPerPair
    }
}

/// A run's analysis report, rendered in memory: one self-contained HTML page (figures inline
/// as SVG, images as PNG data URIs, no scripts, nothing fetched) and each figure as a file.
///
/// The page is also well-formed XML (XHTML syntax in an HTML5 document), so any XML parser can
/// read it back.
public struct ReportDocument {
    /// The page.
    public var html: String
    /// The figure files (`ReportFiles`) and the evaluation files (`EvaluationFiles`), for the run folder.
    public var files: [(name: String, data: Data)]

    /// Renders every figure and table of `run`.
    public init(_ run: RunReport, options: ReportOptions = ReportOptions()) throws {
        let dataset = run.model.dataset.displayName
        let accuracy = Self.accuracyChart(run, zoomed: true)
        let accuracyFull = Self.accuracyChart(run, zoomed: false)
        let loss = Self.lossChart(run)
        let learningRate = Self.learningRateChart(run)
        let confusion = ConfusionMatrixFigure(report: run.evaluation, title: "Confusion matrix — \(dataset) test set")
        let kernelWeight = KernelGrid.firstConvolutionWeight(of: run.model.network)
        let kernels = kernelWeight.map(KernelGrid.init(weight:))
        let mistakes = run.misclassifications
        let grid = MisclassifiedGrid(images: run.testImages, items: Array(mistakes.prefix(options.gridImages)),
                                     classNames: run.evaluation.classNames)

        // Without training history (an imported model) there are no curves.
        let history = run.record != nil
        var files: [(name: String, data: Data)] = history ? [
            (ReportFiles.accuracy, Data(accuracy.svg(standalone: true, id: "accuracy").utf8)),
            (ReportFiles.accuracyFull, Data(accuracyFull.svg(standalone: true, id: "accuracy-full").utf8)),
            (ReportFiles.loss, Data(loss.svg(standalone: true, id: "loss").utf8)),
        ] : []
        files.append((ReportFiles.confusion, Data(confusion.svg(standalone: true, linkPairs: false, id: "confusion").utf8)))
        if let learningRate { files.append((ReportFiles.learningRate, Data(learningRate.svg(standalone: true, id: "learning-rate").utf8))) }
        let kernelImage = kernels?.image()
        let kernelPNG = try kernelImage?.pngData()
        if let kernelPNG { files.append((ReportFiles.kernels, kernelPNG)) }
        let gridImage = grid.items.isEmpty ? nil : grid.image()
        let gridPNG = try gridImage?.pngData()
        if let gridPNG { files.append((ReportFiles.misclassified, gridPNG)) }
        files += try EvaluationFiles.contents(run.evaluation, dataset: run.model.dataset.rawValue)
        self.files = files

        var page = PageWriter()
        page.header(run)
        if history {
            page.curves(accuracy: accuracy, accuracyFull: accuracyFull, loss: loss, learningRate: learningRate)
        } else {
            page.noCurves()
        }
        page.kernels(kernels, image: kernelImage, png: kernelPNG)
        page.misclassified(grid: grid, image: gridImage, png: gridPNG, total: mistakes.count, of: run.evaluation.total)
        page.confusion(confusion, report: run.evaluation)
        page.perClass(run.evaluation)
        page.parameters(ParameterTable(network: run.model.network), dataset: dataset)
        let testFile = run.model.dataset == .mnist ? "t10k-images-idx3-ubyte" : "test_batch.bin"
        try page.pairs(mistakes, images: run.testImages, report: run.evaluation, limit: options.imagesPerPair, testFile: testFile)
        page.footer(run, files: files.map(\.name))
        html = page.finished(title: "\(run.name) — Backprop report")
    }

    /// Writes the files into `folder` and then the page to `htmlURL`, each atomically; the page
    /// comes last, so a page on disk always has its figures beside it.
    /// - Returns: the paths written, in order.
    @discardableResult
    public func write(htmlTo htmlURL: URL, filesTo folder: URL) throws -> [URL] {
        var written: [URL] = []
        for (name, data) in files {
            let url = folder.appendingPathComponent(name)
            try writeAtomically(data, to: url)
            written.append(url)
        }
        try writeAtomically(Data(html.utf8), to: htmlURL)
        written.append(htmlURL)
        return written
    }

    // MARK: Charts

    /// Smoothed training accuracy every iteration and validation accuracy where measured, in percent.
    /// - Parameter zoomed: the y axis covers the values of the second half of the iterations
    ///   (rounded out to ticks; the first iterations' low accuracies leave it at the bottom), where
    ///   training and validation differ by a percent or two; otherwise 0–100 %.
    static func accuracyChart(_ run: RunReport, zoomed: Bool) -> LineChart {
        let training = run.metrics.map { (x: Double($0.iteration), y: $0.smoothedAccuracy * 100) }
        let validation = run.metrics.compactMap { m in m.validationAccuracy.map { (x: Double(m.iteration), y: $0 * 100) } }
        func last(_ points: [(x: Double, y: Double)]) -> String { points.last.map { String(format: " (last %.2f%%)", $0.y) } ?? "" }
        var series = [LineChart.Series(name: "training, smoothed" + last(training), points: training, color: SeriesColor.blue)]
        if !validation.isEmpty {
            series.append(LineChart.Series(name: "validation" + last(validation), points: validation, color: SeriesColor.orange, markers: true))
        }
        var range = 0.0...100.0
        if zoomed {
            let start = Double(run.metrics.last?.iteration ?? 0) * 0.5
            let values = (training + validation).filter { $0.x > start }.map(\.y).filter(\.isFinite)
            if let low = values.min(), let high = values.max() {
                let ticks = niceTicks(low, max(high, low + 0.5)).ticks
                range = max(0, ticks.first!)...min(100, ticks.last!)
            }
        }
        var chart = LineChart(title: "Accuracy per iteration — \(run.model.dataset.displayName)" + (zoomed ? "" : ", 0–100 %"),
                              xLabel: "iteration", yLabel: "accuracy (%)", series: series, yRange: range)
        chart.integerX = true
        return chart
    }

    /// Smoothed classification loss, weight-decay loss and their sum.
    static func lossChart(_ run: RunReport) -> LineChart {
        let m = run.metrics
        func last(_ value: Double?) -> String { value.map { String(format: " (last %.4g)", $0) } ?? "" }
        let series = [
            LineChart.Series(name: "classification, smoothed" + last(m.last?.smoothedLoss),
                             points: m.map { (Double($0.iteration), $0.smoothedLoss) }, color: SeriesColor.blue),
            LineChart.Series(name: "weight decay" + last(m.last?.weightDecayLoss),
                             points: m.map { (Double($0.iteration), $0.weightDecayLoss) }, color: SeriesColor.green),
            LineChart.Series(name: "total" + last(m.last?.totalLoss),
                             points: m.map { (Double($0.iteration), $0.totalLoss) }, color: SeriesColor.red, dashed: true),
        ]
        let top = m.map(\.totalLoss).filter(\.isFinite).max() ?? 1
        var chart = LineChart(title: "Loss per iteration — \(run.model.dataset.displayName)", xLabel: "iteration",
                              yLabel: "loss", series: series, yRange: 0...max(top, 1e-6))
        chart.integerX = true
        return chart
    }

    /// The learning rate of every iteration's step (the schedule's shape), when recorded.
    static func learningRateChart(_ run: RunReport) -> LineChart? {
        let points = run.metrics.compactMap { m in m.learningRate.map { (x: Double(m.iteration), y: $0) } }
        guard !points.isEmpty else { return nil }
        let top = points.map(\.y).filter(\.isFinite).max() ?? 1
        let series = LineChart.Series(name: String(format: "learning rate (peak %.4g, last %.4g)", top, points.last!.y),
                                      points: points, color: SeriesColor.blue)
        var chart = LineChart(title: "Learning rate per iteration — schedule \(run.record?.options.schedule.description ?? "—")", xLabel: "iteration",
                              yLabel: "learning rate", series: [series], yRange: 0...max(top, 1e-12))
        chart.integerX = true
        return chart
    }
}

// MARK: - The page

/// Builds the HTML text section by section.
struct PageWriter {
    private var body = ""
    private var figureNumber = 0
    private var tableNumber = 0

    mutating func line(_ s: String) { body += s + "\n" }

    mutating func nextFigure() -> Int { figureNumber += 1; return figureNumber }
    mutating func nextTable() -> Int { tableNumber += 1; return tableNumber }

    static func dataURI(_ png: Data) -> String { "data:image/png;base64," + png.base64EncodedString() }

    static func percent(_ x: Double) -> String { String(format: "%.2f%%", x * 100) }

    static func duration(_ seconds: Double) -> String {
        if seconds < 120 { return String(format: "%.1f s", seconds) }
        let s = Int(seconds.rounded())
        if s < 3600 { return "\(s / 60) min \(s % 60) s" }
        return "\(s / 3600) h \(s / 60 % 60) min"
    }

    /// `0.1` → "0.1", `0.0005` → "0.0005": a hyperparameter as written.
    static func number(_ x: Float) -> String { String(format: "%g", Double(x)) }

    // MARK: Header

    mutating func header(_ run: RunReport) {
        let e = run.evaluation
        let dataset = run.model.dataset.displayName
        line("<header>")
        line("<h1>\(escapeXML(run.name)) <span class=\"muted\">· analysis report</span></h1>")
        line("<p class=\"lead\">\(escapeXML(describeOrigin(run))) · \(dataset) · run folder <code>\(escapeXML(run.runFolder.path))</code></p>")
        if !run.notes.isEmpty {
            line("<div class=\"notes\"><ul>" + run.notes.map { "<li>\(escapeXML($0))</li>" }.joined() + "</ul></div>")
        }
        line("<div class=\"kpis\">")
        func kpi(_ value: String, _ label: String, id: String? = nil) {
            line("<div class=\"kpi\"\(id.map { " id=\"\($0)\"" } ?? "")><div class=\"value\">\(escapeXML(value))</div><div class=\"label\">\(escapeXML(label))</div></div>")
        }
        kpi(Self.percent(e.accuracy), "test accuracy (\(e.correct) of \(e.total))", id: "test-accuracy")
        if let r = run.record {
            kpi(r.finalValidationAccuracy.map(Self.percent) ?? "—", "final validation accuracy")
            kpi(Self.duration(r.wallSeconds), "wall time")
            kpi(groupedDigits(Int(r.imagesPerSecond.rounded())), "training images / s")
        }
        kpi(groupedDigits(run.model.network.parameterCount), "parameters")
        line("</div>")

        let pre = run.model.preprocessing
        let means = pre.mean.map { String(format: "%.4g", Double($0)) }
        let preprocessing = "x = byte · \(String(format: "%.6g", Double(pre.scale))) − "
            + (means.count == 1 ? means[0] : "[" + means.joined(separator: ", ") + "] per channel")
        var tables: [(String, [(String, String)])] = [("Data", [("test images", groupedDigits(e.total)), ("preprocessing", preprocessing)])]
        if let r = run.record {
        let o = r.options
        let rows: [(String, String)] = [
            ("iterations", groupedDigits(r.iterationsCompleted) + (r.iterationsCompleted == o.iterations ? "" : " of \(groupedDigits(o.iterations))")),
            ("batch size", String(o.batchSize)),
            ("learning rate α", Self.number(o.learningRate)),
            ("momentum μ", Self.number(o.momentum)),
            ("weight decay λ", Self.number(o.weightDecay)),
            ("smoothing factor", String(format: "%g", o.movingAverage)),
            ("validation every", "\(o.validationInterval) iterations"),
            ("shuffle", o.reshuffleEachEpoch ? "every pass" : "once"),
            ("seed", String(o.seed)),
        ]
        let data: [(String, String)] = [
            ("training images", groupedDigits(r.trainImages)),
            ("validation images", groupedDigits(r.validationImages)),
            ("test images", groupedDigits(e.total)),
            ("preprocessing", preprocessing),
            ("status", r.status),
            ("iterations / s", String(format: "%.1f", r.imagesPerSecond / Double(max(o.batchSize, 1)))),
        ]
        tables = [("Hyperparameters", rows), ("Data and run", data)]
        }
        line("<div class=\"facts\">")
        for (title, pairs) in tables {
            line("<table class=\"facts\"><caption>\(title)</caption><tbody>")
            for (key, value) in pairs { line("<tr><th>\(escapeXML(key))</th><td>\(escapeXML(value))</td></tr>") }
            line("</tbody></table>")
        }
        line("</div>")
        // The top-level layers; a block shows as its kind (the parameter table lists its insides).
        let layers = run.model.network.rows.filter { $0.depth == 0 }.map(\.layer).map { $0.settings.isEmpty ? $0.kind : "\($0.kind) (\($0.settings))" }
        line("<p class=\"network\"><strong>Network:</strong> \(escapeXML(describe(shape: run.model.network.inputShape))) → "
             + layers.map(escapeXML).joined(separator: " → ") + " → Softmax loss</p>")
        if let experiment = run.experiment,
           let json = try? JSONSerialization.data(withJSONObject: experiment.jsonObject, options: [.prettyPrinted, .sortedKeys]) {
            line("<details><summary>The experiment as a spec file (<code>backprop train --spec \(escapeXML(run.runFolder.appendingPathComponent(RunFiles.experiment).path))</code> reruns it)</summary>")
            line("<pre>\(escapeXML(String(decoding: json, as: UTF8.self)))</pre></details>")
        }
        line("<nav><strong>Contents:</strong> <a href=\"#curves\">training curves</a> · <a href=\"#kernels\">first-layer kernels</a> · <a href=\"#misclassified\">misclassified images</a> · <a href=\"#confusion\">confusion matrix</a> · <a href=\"#per-class\">precision and recall</a> · <a href=\"#parameters\">parameters</a> · <a href=\"#pairs\">misclassified images by pair</a></nav>")
        line("</header>")
    }

    /// "preset mnist", "preset mnist with iterations 100 (preset: 3,000)", or "spec NAME".
    private func describeOrigin(_ run: RunReport) -> String {
        guard let experiment = run.experiment else { return "run \(run.name)" }
        guard let preset = Experiment.preset(named: experiment.name), preset.network == experiment.network,
              preset.dataset == experiment.dataset else {
            return "spec \(experiment.name)"
        }
        let mine = (try? JSONSerialization.jsonObject(with: JSONEncoder().encode(experiment.options))) as? [String: Any] ?? [:]
        let theirs = (try? JSONSerialization.jsonObject(with: JSONEncoder().encode(preset.options))) as? [String: Any] ?? [:]
        let changed = mine.keys.sorted().filter { "\(mine[$0]!)" != "\(theirs[$0] ?? "")" }
            .map { "\($0.replacingOccurrences(of: "_", with: " ")) \(mine[$0]!) (preset: \(theirs[$0] ?? "—"))" }
        return "preset \(experiment.name)" + (changed.isEmpty ? "" : " with " + changed.joined(separator: ", "))
    }

    // MARK: Figures

    mutating func curves(accuracy: LineChart, accuracyFull: LineChart, loss: LineChart, learningRate: LineChart?) {
        line("<section id=\"curves\"><h2>Training curves</h2><div class=\"two\">")
        let a = nextFigure()
        let range = accuracy.yRange.map { String(format: "%g–%g %%", $0.lowerBound, $0.upperBound) } ?? ""
        line("<figure>\(accuracy.svg(standalone: false, id: "accuracy"))<figcaption><b>Figure \(a).</b> Training accuracy (smoothed: mean of the first 19 iterations, then a moving average) and validation accuracy per iteration, the y axis zoomed to \(range), the range of the second half of the run (earlier values may lie below it; Figure \(a + 1) shows 0–100 %). File: <code>\(ReportFiles.accuracy)</code>.</figcaption></figure>")
        let f = nextFigure()
        line("<figure>\(accuracyFull.svg(standalone: false, id: "accuracy-full"))<figcaption><b>Figure \(f).</b> The curves of Figure \(a) on a 0–100 % axis: the whole run. File: <code>\(ReportFiles.accuracyFull)</code>.</figcaption></figure>")
        let l = nextFigure()
        line("<figure>\(loss.svg(standalone: false, id: "loss"))<figcaption><b>Figure \(l).</b> Classification loss (smoothed), weight-decay loss Σ λ/2 ‖w‖² and their sum per iteration. File: <code>\(ReportFiles.loss)</code>.</figcaption></figure>")
        if let learningRate {
            let r = nextFigure()
            line("<figure>\(learningRate.svg(standalone: false, id: "learning-rate"))<figcaption><b>Figure \(r).</b> The learning rate of each iteration's step, as the schedule set it. File: <code>\(ReportFiles.learningRate)</code>.</figcaption></figure>")
        }
        line("</div></section>")
    }

    mutating func kernels(_ grid: KernelGrid?, image: PixelImage?, png: Data?) {
        line("<section id=\"kernels\"><h2>First-layer kernels</h2>")
        guard let grid, let image, let png else {
            line("<p>The network has no convolution layer, so there are no kernels to show.</p></section>")
            return
        }
        let n = nextFigure()
        let shape = grid.weight.shape
        let kind = shape[1] == 3 ? "in colour (input channels as red, green, blue)" : (shape[1] == 1 ? "in gray" : "one gray tile per input channel")
        line("<figure><img class=\"pixelated\" src=\"\(Self.dataURI(png))\" width=\"\(image.width)\" height=\"\(image.height)\" alt=\"\(shape[0]) kernels of the first convolution layer\"/>")
        line("<figcaption><b>Figure \(n).</b> The \(shape[0]) kernels (\(shape[2])x\(shape[3]), \(shape[1]) input channel\(shape[1] == 1 ? "" : "s")) of the first convolution layer, \(kind), each scaled to its own range (its smallest weight black, its largest white) and enlarged \(grid.factor) times; numbers are output channels. File: <code>\(ReportFiles.kernels)</code>.</figcaption></figure></section>")
    }

    mutating func misclassified(grid: MisclassifiedGrid, image: PixelImage?, png: Data?, total: Int, of count: Int) {
        line("<section id=\"misclassified\"><h2>Misclassified test images</h2>")
        guard let image, let png else {
            line("<p>The network classified all \(groupedDigits(count)) test images correctly.</p></section>")
            return
        }
        let n = nextFigure()
        line("<figure><img class=\"pixelated\" src=\"\(Self.dataURI(png))\" width=\"\(image.width)\" height=\"\(image.height)\" alt=\"misclassified test images with their true and predicted labels\"/>")
        line("<figcaption><b>Figure \(n).</b> The first \(grid.items.count) of the \(groupedDigits(total)) misclassified test images (of \(groupedDigits(count))), in test-set order, enlarged \(grid.factor) times: true label (black), predicted label (red) and the network's confidence in it (softmax probability). All of them, by pair, are <a href=\"#pairs\">below</a>. File: <code>\(ReportFiles.misclassified)</code>.</figcaption></figure></section>")
    }

    mutating func confusion(_ figure: ConfusionMatrixFigure, report r: ClassificationReport) {
        line("<section id=\"confusion\"><h2>Confusion matrix</h2>")
        let n = nextFigure()
        line("<figure>\(figure.svg(standalone: false, linkPairs: true, id: "confusion"))<figcaption><b>Figure \(n).</b> Test-set confusion matrix: rows are true classes, columns predicted ones; shade is the cell's share of its row, on a square-root (non-linear) colour scale so that small shares stay visible: 1 % of a row is already a tenth of the way to the darkest blue, 25 % half of it. Click an off-diagonal count to see those images. File: <code>\(ReportFiles.confusion)</code>.</figcaption></figure>")
        let t = nextTable()
        line("<table class=\"numbers confusion\" id=\"confusion-table\"><caption><b>Table \(t).</b> The confusion matrix as numbers (rows: true class, columns: predicted); the last column is each class's support, the last row how often each class was predicted. File: <code>\(EvaluationFiles.confusionCSV)</code>.</caption>")
        line("<thead><tr><th class=\"corner\">true \\ predicted</th>" + r.classNames.map { "<th>\(escapeXML($0))</th>" }.joined() + "<th class=\"sum\">support</th></tr></thead><tbody>")
        for (t, row) in r.confusion.enumerated() {
            var cells = "<tr><th>\(escapeXML(r.classNames[t]))</th>"
            for (p, count) in row.enumerated() {
                if t == p {
                    cells += "<td class=\"diagonal\">\(count)</td>"
                } else if count > 0 {
                    cells += "<td><a href=\"#\(ConfusionMatrixFigure.pairAnchor(true: t, predicted: p))\">\(count)</a></td>"
                } else {
                    cells += "<td class=\"zero\">0</td>"
                }
            }
            line(cells + "<td class=\"sum\">\(r.support[t])</td></tr>")
        }
        let predicted = r.classNames.indices.map { p in r.confusion.reduce(0) { $0 + $1[p] } }
        line("<tr class=\"sum\"><th>predicted</th>" + predicted.map { "<td>\($0)</td>" }.joined() + "<td>\(r.total)</td></tr>")
        line("</tbody></table></section>")
    }

    mutating func perClass(_ r: ClassificationReport) {
        let t = nextTable()
        line("<section id=\"per-class\"><h2>Precision and recall</h2>")
        line("<table class=\"numbers per-class\"><caption><b>Table \(t).</b> Per class: precision TP/(TP+FP), recall TP/(TP+FN), F1 (their harmonic mean) and support (test images of the class); macro averages are unweighted means over classes. Test accuracy \(Self.percent(r.accuracy)) (\(r.correct) of \(r.total)). File: <code>\(EvaluationFiles.perClassCSV)</code>.</caption>")
        line("<thead><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr></thead><tbody>")
        func f(_ x: Double) -> String { String(format: "%.4f", x) }
        for k in r.classNames.indices {
            line("<tr><th>\(escapeXML(r.classNames[k]))</th><td>\(f(r.precision[k]))</td><td>\(f(r.recall[k]))</td><td>\(f(r.f1[k]))</td><td>\(r.support[k])</td></tr>")
        }
        line("<tr class=\"sum\"><th>macro avg</th><td>\(f(r.macroPrecision))</td><td>\(f(r.macroRecall))</td><td>\(f(r.macroF1))</td><td>\(r.total)</td></tr>")
        line("</tbody></table></section>")
    }

    mutating func parameters(_ table: ParameterTable, dataset: String) {
        let t = nextTable()
        line("<section id=\"parameters\"><h2>Parameters per layer</h2>")
        line("<table class=\"numbers parameters\"><caption><b>Table \(t).</b> Weights, biases and their total for each layer of the \(dataset) network (the seed report's Tables 2, 3 and 5); # is the layer's index in <code>model.safetensors</code>.</caption>")
        line("<thead><tr><th>#</th><th class=\"text\">layer</th><th class=\"text\">settings</th><th class=\"text\">output</th><th>weights</th><th>biases</th><th>total</th></tr></thead><tbody>")
        for row in table.rows {
            line("<tr><td>\(row.index)</td><td class=\"text\">\(String(repeating: "&#160;&#160;", count: row.depth))\(escapeXML(row.layer))</td><td class=\"text\">\(escapeXML(row.settings))</td><td class=\"text\">\(escapeXML(row.outputShape))</td><td>\(groupedDigits(row.weights))</td><td>\(groupedDigits(row.biases))</td><td>\(groupedDigits(row.total))</td></tr>")
        }
        line("<tr class=\"sum\"><td></td><td class=\"text\">Total</td><td></td><td></td><td>\(groupedDigits(table.totalWeights))</td><td>\(groupedDigits(table.totalBiases))</td><td>\(groupedDigits(table.total))</td></tr>")
        line("</tbody></table></section>")
    }

    /// One section per (true, predicted) pair with mistakes: the first `limit` images, each its
    /// own small PNG (drawn enlarged by the browser, pixelated), captioned with its 0-based
    /// position in `testFile`.
    mutating func pairs(_ mistakes: [Misclassification], images: LabeledImages, report r: ClassificationReport, limit: Int,
                        testFile: String) throws {
        line("<section id=\"pairs\"><h2>Misclassified images by pair</h2>")
        line("<p>Each pair of true and predicted class with at least one mistake, in confusion-matrix order; the first \(limit) images of each in test-set order, with the network's confidence and their number in the test set: #<i>n</i> is image <i>n</i> of <code>\(testFile)</code> counted from 0 (#0 is its first image).</p>")
        var byPair: [Int: [Misclassification]] = [:]
        let k = r.classNames.count
        for m in mistakes { byPair[m.trueClass * k + m.predictedClass, default: []].append(m) }
        let size = max(images.width, images.height) >= 32 ? 2 : 3
        line("<div class=\"pairs\">")
        for key in byPair.keys.sorted() {
            let items = byPair[key]!
            let t = key / k, p = key % k
            line("<div class=\"pair\" id=\"\(ConfusionMatrixFigure.pairAnchor(true: t, predicted: p))\"><h3>true <span class=\"true\">\(escapeXML(r.classNames[t]))</span>, predicted <span class=\"wrong\">\(escapeXML(r.classNames[p]))</span>: \(items.count) image\(items.count == 1 ? "" : "s")\(items.count > limit ? ", first \(limit) shown" : "") <a class=\"back\" href=\"#confusion\">↑ matrix</a></h3><div class=\"thumbs\">")
            for item in items.prefix(limit) {
                let png = try PixelImage(planar: images.pixels(ofImage: item.index), channels: images.channels,
                                         height: images.height, width: images.width).pngData()
                line("<figure class=\"thumb\"><img class=\"pixelated\" src=\"\(Self.dataURI(png))\" width=\"\(images.width * size)\" height=\"\(images.height * size)\" alt=\"test image \(item.index)\" data-index=\"\(item.index)\"/><figcaption>#\(item.index)<br/>\(String(format: "%.1f%%", item.confidence * 100))</figcaption></figure>")
            }
            line("</div></div>")
        }
        line("</div></section>")
    }

    mutating func noCurves() {
        line("<section id=\"curves\"><h2>Training curves</h2><p>No training history: this model was not trained in this folder (e.g. made by <code>backprop import</code>).</p></section>")
    }

    mutating func footer(_ run: RunReport, files: [String]) {
        guard run.record != nil else {
            line("<footer><p>Made by <code>backprop report \(escapeXML(run.runFolder.path))</code> from the saved model and <code>\(RunFiles.experiment)</code>, evaluated on the test set now (no training history). Written beside it in the run folder: " + files.map { "<code>\($0)</code>" }.joined(separator: ", ") + ".</p></footer>")
            return
        }
        line("<footer><p>Made by <code>backprop report \(escapeXML(run.runFolder.path))</code> from <code>\(RunFiles.record)</code>, <code>\(RunFiles.metrics)</code> (\(groupedDigits(run.metrics.count)) iterations), <code>\(RunFiles.experiment)</code> and the saved model, evaluated on the test set now. Written beside it in the run folder: " + files.map { "<code>\($0)</code>" }.joined(separator: ", ") + ".</p></footer>")
    }

    // MARK: Page

    func finished(title: String) -> String {
        """
        <!DOCTYPE html>
        <html lang="en" xmlns="http://www.w3.org/1999/xhtml">
        <head>
        <meta charset="utf-8"/>
        <meta name="viewport" content="width=device-width, initial-scale=1"/>
        <title>\(escapeXML(title))</title>
        <style>
        \(Self.css)
        </style>
        </head>
        <body>
        <main>
        \(body)</main>
        </body>
        </html>

        """
    }

    static let css = """
        body { margin: 0; background: #eef1f4; color: #1b1f24; font: 15px/1.45 \(figureFont); }
        main { max-width: 1180px; margin: 0 auto; padding: 20px 28px 40px; background: #ffffff; }
        h1 { font-size: 28px; margin: 6px 0 2px; }
        h2 { font-size: 21px; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #d8dee4; }
        h3 { font-size: 15px; margin: 16px 0 6px; }
        .muted { color: #6a737d; font-weight: normal; }
        .lead { margin: 0 0 12px; color: #444d56; }
        code, pre { font-family: DejaVu Sans Mono, Menlo, Consolas, monospace; font-size: 13px; }
        pre { background: #f6f8fa; padding: 10px; overflow: auto; max-height: 360px; }
        .notes { background: #fff8c5; border: 1px solid #e6d87a; padding: 4px 12px; margin: 8px 0; }
        .kpis { display: flex; flex-wrap: wrap; gap: 12px; margin: 10px 0 14px; }
        .kpi { border: 1px solid #d8dee4; border-radius: 6px; padding: 8px 16px; min-width: 150px; }
        .kpi .value { font-size: 24px; font-weight: bold; font-variant-numeric: tabular-nums; }
        #test-accuracy { border-color: #2c7a3f; background: #f0faf2; }
        .kpi .label { color: #57606a; font-size: 13px; }
        div.facts { display: flex; flex-wrap: wrap; gap: 28px; align-items: flex-start; }
        table { border-collapse: collapse; }
        caption { caption-side: top; text-align: left; color: #444d56; font-size: 13px; padding: 4px 0 6px; max-width: 640px; }
        table.facts caption { font-weight: bold; color: #1b1f24; font-size: 15px; }
        table.facts th { text-align: left; font-weight: normal; color: #57606a; padding: 2px 18px 2px 0; }
        table.facts td { padding: 2px 0; font-variant-numeric: tabular-nums; }
        .network { margin: 12px 0; }
        details { margin: 8px 0; }
        nav { margin: 14px 0 0; padding: 8px 12px; background: #f6f8fa; }
        .two { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 20px; }
        figure { margin: 0 0 12px; }
        figure svg { max-width: 100%; height: auto; display: block; }
        figure img { max-width: 100%; height: auto; display: block; }
        figcaption { font-size: 13px; color: #444d56; margin-top: 4px; max-width: 900px; }
        img.pixelated { image-rendering: pixelated; }
        table.numbers { margin: 8px 0 16px; font-variant-numeric: tabular-nums; }
        table.numbers th, table.numbers td { border: 1px solid #d8dee4; padding: 3px 9px; text-align: right; }
        table.numbers thead th { background: #f6f8fa; }
        table.numbers tbody th { text-align: left; background: #f6f8fa; }
        table.numbers .text { text-align: left; }
        table.numbers tr.sum td, table.numbers tr.sum th, table.numbers td.sum, table.numbers th.sum { font-weight: bold; background: #f1f3f5; }
        table.confusion td.diagonal { background: #dbe9f6; font-weight: bold; }
        table.confusion td.zero { color: #b0b7bf; }
        table.confusion th.corner { font-weight: normal; color: #57606a; font-size: 12px; }
        svg a text { fill: inherit; }
        .pairs { display: flex; flex-wrap: wrap; gap: 4px 36px; align-items: flex-start; }
        .pair { scroll-margin-top: 10px; }
        .pair h3 .true { color: #1b1f24; }
        .pair h3 .wrong { color: #c81e1e; }
        .back { font-weight: normal; font-size: 13px; margin-left: 8px; }
        .thumbs { display: flex; flex-wrap: wrap; gap: 6px; }
        figure.thumb { margin: 0; }
        figure.thumb figcaption { font-size: 11px; line-height: 1.25; margin: 2px 0 0; text-align: center; }
        table.numbers thead th:first-child { text-align: left; }
        footer { margin-top: 34px; color: #57606a; font-size: 13px; border-top: 1px solid #d8dee4; }
        a { color: #0a58ca; }
        """
}
