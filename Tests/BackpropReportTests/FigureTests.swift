import Backprop
import BackpropData
@testable import BackpropReport
import BackpropTraining
import Foundation
import BackpropTestSupport
import Testing

@Suite("Figures and tables")
struct FigureTests {
    // MARK: Kernels

    /// Two 1-channel 2x2 kernels, worked by hand: each maps its own min to 0 and max to 255,
    /// `round(255 · (w − min) / (max − min))`:
    /// ```
    /// kernel 0: [-1, 0, 1, 3]   min -1, max 3  →  0, 63.75 → 64, 127.5 → 128, 255
    /// kernel 1: [2, 2, 2, 2]    constant       →  128 everywhere (no range to scale)
    /// ```
    @Test("gray kernels: each scaled to its own range (hand-computed), enlarged, checked in the decoded PNG")
    func grayKernels() throws {
        let weight = Tensor<Float>(shape: [2, 1, 2, 2], scalars: [-1, 0, 1, 3, 2, 2, 2, 2])
        let grid = KernelGrid(weight: weight)
        #expect(grid.tiles(ofKernel: 0) == [PixelImage(width: 2, height: 2, channels: 1, pixels: [0, 64, 128, 255])])
        #expect(grid.tiles(ofKernel: 1) == [PixelImage(width: 2, height: 2, channels: 1, pixels: [128, 128, 128, 128])])
        #expect(grid.factor == 55)  // a 2x2 kernel becomes 110x110 pixels

        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let url = folder.file("kernels.png")
        try grid.image().pngData().write(to: url)
        let png = try #require(try PythonChecks.decode([url]).first)
        #expect(png.channels == 3)
        // Every pixel of each enlarged kernel pixel's 55x55 block.
        let expected: [[UInt8]] = [[0, 64, 128, 255], [128, 128, 128, 128]]
        for kernel in 0..<2 {
            let (x0, y0) = grid.origin(ofKernel: kernel)
            for y in 0..<110 {
                for x in 0..<110 {
                    let value = expected[kernel][(y / 55) * 2 + x / 55]
                    #expect(png.pixel(x0 + x, y0 + y) == [value, value, value], "kernel \(kernel) at \(x), \(y)")
                }
            }
        }
    }

    /// One RGB 1x2 kernel: the range is taken over all three channels together, so the colours
    /// keep their balance:
    /// ```
    /// R = [0, 4], G = [2, 2], B = [4, 0]   min 0, max 4
    /// pixel 0 = (0, 127.5 → 128, 255), pixel 1 = (255, 128, 0)
    /// ```
    @Test("RGB kernels: one colour tile scaled over all its channels (hand-computed)")
    func rgbKernel() throws {
        let weight = Tensor<Float>(shape: [1, 3, 1, 2], scalars: [0, 4, 2, 2, 4, 0])
        let grid = KernelGrid(weight: weight)
        #expect(grid.tiles(ofKernel: 0) == [PixelImage(width: 2, height: 1, channels: 3, pixels: [0, 128, 255, 255, 128, 0])])
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let url = folder.file("kernels.png")
        try grid.image().pngData().write(to: url)
        let png = try #require(try PythonChecks.decode([url]).first)
        let (x0, y0) = grid.origin(ofKernel: 0)
        #expect(png.pixel(x0, y0) == [0, 128, 255])
        #expect(png.pixel(x0 + grid.factor - 1, y0 + grid.factor - 1) == [0, 128, 255])
        #expect(png.pixel(x0 + grid.factor, y0) == [255, 128, 0])
    }

    @Test("the first convolution's weight is found; a network without one has none")
    func firstConvolution() throws {
        var generator = SeededGenerator(seed: 3)
        let conv = try NetworkSpec(input: [3, 8, 8], layers: [.conv2d(outputChannels: 4, kernelSize: 3, stride: 1, padding: 1, initScale: 1), .relu,
                                                                .conv2d(outputChannels: 2, kernelSize: 3, stride: 1, padding: 1, initScale: 1)])
            .makeNetwork(Float.self, using: &generator)
        #expect(KernelGrid.firstConvolutionWeight(of: conv)?.shape == [4, 3, 3, 3])
        let dense = try NetworkSpec(input: [4], layers: [.dense(outputFeatures: 2, initScale: 1)]).makeNetwork(Float.self, using: &generator)
        #expect(KernelGrid.firstConvolutionWeight(of: dense) == nil)
    }

    // MARK: Misclassified images

    @Test("misclassified grid: each image enlarged at its place, labels drawn beneath in black and red")
    func misclassifiedGrid() throws {
        // Three 2x2 RGB "images" with distinct planar bytes.
        let pixels: [UInt8] = (0..<36).map { UInt8($0 * 7) }
        let images = LabeledImages(count: 3, channels: 3, height: 2, width: 2, pixels: pixels, labels: [0, 1, 2])
        let predictions = [0, 2, 1]
        let mistakes = zip(0..<3, predictions).compactMap { i, p in
            i == p ? nil : Misclassification(index: i, trueClass: i, predictedClass: p, confidence: 0.5)
        }
        #expect(mistakes.map(\.index) == [1, 2])
        let grid = MisclassifiedGrid(images: images, items: mistakes, classNames: ["cat", "dog", "owl"])
        #expect(grid.factor == 50)
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let url = folder.file("grid.png")
        try grid.image().pngData().write(to: url)
        let png = try #require(try PythonChecks.decode([url]).first)
        for (item, mistake) in mistakes.enumerated() {
            let (x0, y0) = grid.origin(ofItem: item)
            let source = PixelImage(planar: images.pixels(ofImage: mistake.index), channels: 3, height: 2, width: 2)
            for (x, y) in [(0, 0), (49, 49), (50, 0), (99, 99), (0, 99)] {
                #expect(png.pixel(x0 + x, y0 + y) == source[x / 50, y / 50], "item \(item) at \(x), \(y)")
            }
            // The label rows: black (true class) and red (predicted) text below the image.
            let below = (y0 + 100 + 4)..<(y0 + 100 + 50)
            let colours = Set(below.flatMap { y in (x0..<(x0 + 90)).map { png.pixel($0, y) } })
            #expect(colours.contains(FigureColor.text), "no true-label text under item \(item)")
            #expect(colours.contains(FigureColor.wrong), "no predicted-label text under item \(item)")
        }
    }

    // MARK: Charts

    @Test("nice ticks: 1, 2 or 5 times a power of ten, covering the range")
    func ticks() {
        #expect(niceTicks(0, 3000).ticks == [0, 500, 1000, 1500, 2000, 2500, 3000])
        #expect(niceTicks(0, 7000).step == 1000)
        #expect(niceTicks(0, 100).ticks == [0, 20, 40, 60, 80, 100])
        #expect(niceTicks(0.03, 2.57).step == 0.5)
        #expect(niceTicks(0.03, 2.57).ticks == [0, 0.5, 1, 1.5, 2, 2.5, 3])
        #expect(niceTicks(37, 98).ticks == [30, 40, 50, 60, 70, 80, 90, 100])
        #expect(tickLabel(2000, step: 1000) == "2,000")
        #expect(tickLabel(0.5, step: 0.5) == "0.5")
        #expect(niceTicks(5, 5).ticks.count >= 2, "an empty range still gets an axis")
        // Iterations: a run of 2 gets whole-number ticks, not 1.2, 1.4, …
        #expect(niceTicks(1, 2, minimumStep: 1).ticks == [1, 2])
        #expect(niceTicks(1, 2).step == 0.2)
        // A diverged run's losses: one exponent for the axis, no label longer than 6 characters.
        let huge = niceTicks(0, 1.1e21)
        let hugeLabels = tickLabels(huge.ticks, step: huge.step)
        #expect(hugeLabels.allSatisfy { $0.count <= 6 } && Set(hugeLabels).count == hugeLabels.count, "\(hugeLabels)")
        #expect(tickLabels([0, 5e20, 1e21, 1.5e21], step: 5e20) == ["0", "0.5e21", "1.0e21", "1.5e21"])
        #expect(tickLabels([0, 500, 1000], step: 500) == ["0", "500", "1,000"])
    }

    @Test("line chart SVG: well-formed, every series drawn, axis and tick labels and legend present")
    func lineChart() throws {
        let points = (1...3000).map { (x: Double($0), y: 100 * (1 - exp(-Double($0) / 300))) }
        let validation = stride(from: 200, through: 3000, by: 200).map { (x: Double($0), y: 90.0) }
        let chart = LineChart(title: "Accuracy per iteration", xLabel: "iteration", yLabel: "accuracy (%)",
                              series: [.init(name: "training", points: points, color: SeriesColor.blue),
                                       .init(name: "validation", points: validation, color: SeriesColor.orange, markers: true)],
                              yRange: 0...100)
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let url = folder.file("chart.svg")
        try Data(chart.svg(standalone: true, id: "a").utf8).write(to: url)
        let svg = try #require(try PythonChecks.readXML([url]).first)
        #expect(svg.root == "svg" && svg.viewBox == "0 0 600 400")
        #expect(svg.polylines.count == 2)
        #expect(svg.polylines[0] <= 1201 && svg.polylines[0] >= 1000, "training curve thinned to the plot's resolution: \(svg.polylines[0])")
        #expect(svg.polylines[1] == 15)
        let texts = svg.svgTexts.first ?? []
        for label in ["Accuracy per iteration", "iteration", "accuracy (%)", "training", "validation",
                      "0", "500", "1,000", "2,500", "3,000", "20", "100"] {
            #expect(texts.contains(label), "missing text \(label): \(texts)")
        }
        #expect(svg.external.isEmpty && svg.scripts == 0)
    }

    // MARK: Confusion matrix and per-class numbers

    /// The three-class example of `ClassificationReportTests`, worked on paper:
    /// ```
    /// labels     0 0 0 0 1 1 1 2 2 2
    /// predicted  0 0 1 2 1 1 0 2 2 1
    /// confusion  [[2, 1, 1], [1, 2, 0], [0, 1, 2]]   supports 4, 3, 3   trace 6 = correct
    /// precision  2/3, 1/2, 2/3     recall  1/2, 2/3, 2/3     F1  4/7, 4/7, 2/3
    /// macro      P = R = 11/18 = 0.6111…,  F1 = 38/63 = 0.6031…
    /// ```
    static let handExample = ClassificationReport(labels: [0, 0, 0, 0, 1, 1, 1, 2, 2, 2],
                                                  predicted: [0, 0, 1, 2, 1, 1, 0, 2, 2, 1],
                                                  classNames: ["cat", "dog", "owl, snowy"])

    @Test("confusion and per-class CSV of the hand-computed example")
    func csv() {
        let r = Self.handExample
        #expect(r.confusionCSV == """
            true \\ predicted,cat,dog,"owl, snowy"
            cat,2,1,1
            dog,1,2,0
            "owl, snowy",0,1,2

            """)
        let rows = r.perClassCSV.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false) }
        #expect(rows.first == ["class", "precision", "recall", "f1", "support"])
        func value(_ row: Int, _ column: Int) -> Double { Double(String(rows[row][column]))! }
        let expected: [[Double]] = [[2.0 / 3, 1.0 / 2, 4.0 / 7, 4], [1.0 / 2, 2.0 / 3, 4.0 / 7, 3]]
        for (i, e) in expected.enumerated() {
            for c in 0..<4 { #expect(abs(value(i + 1, c + 1) - e[c]) < 1e-12, "row \(i + 1) column \(c + 1)") }
        }
        // "owl, snowy" is quoted, so its numbers are columns 3…6 of the split.
        #expect(rows[3].first == "\"owl")
        #expect(abs(Double(String(rows[3][2]))! - 2.0 / 3) < 1e-12)
        #expect(rows[4].first == "macro avg")
        #expect(abs(value(4, 1) - 11.0 / 18) < 1e-12 && abs(value(4, 2) - 11.0 / 18) < 1e-12 && abs(value(4, 3) - 38.0 / 63) < 1e-12)
        #expect(rows[4][4] == "10")
    }

    @Test("confusion heat map: one cell per pair with its count, class names on both axes, links only on the page")
    func confusionFigure() throws {
        let r = Self.handExample
        let figure = ConfusionMatrixFigure(report: r, title: "Confusion")
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let standalone = folder.file("confusion.svg"), inline = folder.file("inline.svg")
        try Data(figure.svg(standalone: true, linkPairs: false, id: "c").utf8).write(to: standalone)
        try Data(figure.svg(standalone: false, linkPairs: true, id: "c").utf8).write(to: inline)
        let svgs = try PythonChecks.readXML([standalone, inline])
        for svg in svgs {
            #expect(svg.cells.count == 9)
            for cell in svg.cells { #expect(cell.text == String(r.confusion[cell.trueClass][cell.predicted])) }
            let texts = svg.svgTexts.first ?? []
            for name in r.classNames { #expect(texts.filter { $0 == name }.count == 2, "\(name) on both axes") }
            #expect(texts.contains("true class") && texts.contains("predicted class"))
        }
        #expect(svgs[0].hrefs.isEmpty)
        // Off-diagonal cells with a count link to their pair; the diagonal and empty cells do not.
        for cell in svgs[1].cells {
            let linked = cell.trueClass != cell.predicted && r.confusion[cell.trueClass][cell.predicted] > 0
            #expect(cell.href == (linked ? "#pair-\(cell.trueClass)-\(cell.predicted)" : nil), "cell \(cell.trueClass),\(cell.predicted)")
        }
    }

    @Test("parameter table: the seed report's Table 2 for the mnist preset")
    func parameterTable() throws {
        var generator = SeededGenerator(seed: 1)
        let network = try Experiment.preset(named: "mnist")!.network.makeNetwork(Float.self, using: &generator)
        let table = ParameterTable(network: network)
        // Table 2: Convolution 400 + 16, Convolution 6,400 + 16, Fully connected 7,840 + 10; 14,640 + 42 = 14,682.
        #expect(table.rows.filter { $0.total > 0 }.map { [$0.weights, $0.biases] } == [[400, 16], [6400, 16], [7840, 10]])
        #expect(table.totalWeights == 14_640 && table.totalBiases == 42 && table.total == 14_682)
        #expect(table.rows.first?.layer == "Input" && table.rows.last?.layer == "Softmaxloss")
    }
}
