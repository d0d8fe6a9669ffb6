import BackpropTraining
import Foundation

/// The confusion matrix as an SVG heat map: rows are true classes, columns predicted ones,
/// each cell shows its count; the shade is the cell's share of its row (the diagonal's shade is
/// the class's recall), so rows of different sizes compare. The colour scale is the square root
/// of the share (not linear), so that shares of 1 % are visibly shaded; the colour bar's ticks
/// and title say so.
public struct ConfusionMatrixFigure: Sendable {
    public var report: ClassificationReport
    public var title: String

    public init(report: ClassificationReport, title: String) {
        self.report = report
        self.title = title
    }

    /// The anchor of the misclassified images of true class `t` predicted as `p` in the report page.
    public static func pairAnchor(true t: Int, predicted p: Int) -> String { "pair-\(t)-\(p)" }

    /// The stops of matplotlib's "Blues" colour map, light to dark.
    static let blues: [(Double, Double, Double)] = [
        (247, 251, 255), (222, 235, 247), (198, 219, 239), (158, 202, 225), (107, 174, 214),
        (66, 146, 198), (33, 113, 181), (8, 81, 156), (8, 48, 107),
    ]

    /// The fill of a cell whose count is `share` (0…1) of its row, on a square-root scale so that
    /// small off-diagonal shares stay visible, and a text colour that reads on it.
    static func shade(_ share: Double) -> (fill: String, text: String) {
        let s = min(max(share, 0), 1).squareRoot()
        let position = s * Double(blues.count - 1)
        let i = min(Int(position), blues.count - 2)
        let f = position - Double(i)
        let (a, b) = (blues[i], blues[i + 1])
        let channel = { (x: Double, y: Double) in Int((x + (y - x) * f).rounded()) }
        let fill = String(format: "#%02x%02x%02x", channel(a.0, b.0), channel(a.1, b.1), channel(a.2, b.2))
        return (fill, s > 0.62 ? "#ffffff" : "#111111")
    }

    /// The figure as an `<svg>` element.
    /// - Parameters:
    ///   - standalone: adds the XML declaration a file on its own has.
    ///   - linkPairs: wraps each non-empty off-diagonal cell in a link to `#pair-T-P`
    ///     (for the report page, where those anchors exist).
    ///   - id: a prefix for element ids inside, unique within a page.
    public func svg(standalone: Bool, linkPairs: Bool, id: String) -> String {
        let k = report.classNames.count
        let names = report.classNames
        let cell = k <= 10 ? 46.0 : max(18, 460 / Double(k))
        let fontSize = cell >= 40 ? 12.0 : 9.0
        let longest = Double(names.map(\.count).max() ?? 1)
        let labelWidth = longest * fontSize * 0.62 + 10
        let left = 28 + labelWidth, top = 40.0
        let gridSize = cell * Double(k)
        let rotate = longest > 3  // column labels at −45° unless they are as short as digits
        let bottomLabels = rotate ? labelWidth * 0.62 + 8 : fontSize + 12
        let colorBar = 96.0
        let width = left + gridSize + colorBar + 10
        let height = top + gridSize + bottomLabels + 30

        var s = standalone ? "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" : ""
        s += "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(svgNumber(width)) \(svgNumber(height))\" width=\"\(svgNumber(width))\" height=\"\(svgNumber(height))\" font-family=\"\(figureFont)\" font-size=\"\(svgNumber(fontSize))\" role=\"img\" aria-label=\"\(escapeXML(title))\">\n"
        s += "<rect x=\"0\" y=\"0\" width=\"\(svgNumber(width))\" height=\"\(svgNumber(height))\" fill=\"#ffffff\"/>\n"
        s += "<text x=\"\(svgNumber(left + gridSize / 2))\" y=\"22\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">\(escapeXML(title))</text>\n"

        for t in 0..<k {
            let support = report.support[t]
            for p in 0..<k {
                let count = report.confusion[t][p]
                let share = support == 0 ? 0 : Double(count) / Double(support)
                let (fill, textColor) = Self.shade(share)
                let x = left + Double(p) * cell, y = top + Double(t) * cell
                let tooltip = "true \(names[t]), predicted \(names[p]): \(count)" + (support > 0 ? String(format: " (%.1f%% of ", share * 100) + "\(names[t]))" : "")
                let link = linkPairs && t != p && count > 0
                if link { s += "<a href=\"#\(Self.pairAnchor(true: t, predicted: p))\">" }
                s += "<g class=\"cell\" data-true=\"\(t)\" data-predicted=\"\(p)\"><title>\(escapeXML(tooltip))</title>"
                s += "<rect x=\"\(svgNumber(x))\" y=\"\(svgNumber(y))\" width=\"\(svgNumber(cell))\" height=\"\(svgNumber(cell))\" fill=\"\(fill)\" stroke=\"\(t == p ? "#08306b" : "#d0d7de")\" stroke-width=\"\(t == p ? 1.5 : 0.5)\"/>"
                s += "<text x=\"\(svgNumber(x + cell / 2))\" y=\"\(svgNumber(y + cell / 2 + fontSize * 0.36))\" text-anchor=\"middle\" fill=\"\(textColor)\"\(t == p ? " font-weight=\"bold\"" : "")\(link ? " text-decoration=\"underline\"" : "")>\(count)</text></g>"
                if link { s += "</a>" }
            }
            s += "\n"
        }
        // Class names: true classes on the left, predicted classes under the grid at −45°.
        s += "<g fill=\"#222222\">"
        for (i, name) in names.enumerated() {
            let y = top + (Double(i) + 0.5) * cell + fontSize * 0.36
            s += "<text x=\"\(svgNumber(left - 6))\" y=\"\(svgNumber(y))\" text-anchor=\"end\">\(escapeXML(name))</text>"
        }
        for (i, name) in names.enumerated() {
            let x = left + (Double(i) + 0.5) * cell
            if rotate {
                let y = top + gridSize + 10
                s += "<text x=\"\(svgNumber(x))\" y=\"\(svgNumber(y))\" text-anchor=\"end\" transform=\"rotate(-45 \(svgNumber(x)) \(svgNumber(y)))\">\(escapeXML(name))</text>"
            } else {
                s += "<text x=\"\(svgNumber(x))\" y=\"\(svgNumber(top + gridSize + fontSize + 4))\" text-anchor=\"middle\">\(escapeXML(name))</text>"
            }
        }
        s += "</g>\n"
        s += "<text transform=\"translate(14 \(svgNumber(top + gridSize / 2))) rotate(-90)\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"bold\">true class</text>\n"
        s += "<text x=\"\(svgNumber(left + gridSize / 2))\" y=\"\(svgNumber(height - 8))\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"bold\">predicted class</text>\n"

        // Color bar: the shade of a row share from 0 % (bottom) to 100 % (top), on the same
        // square-root scale as the cells.
        let barX = left + gridSize + 18, barWidth = 14.0
        let steps = 24
        for i in 0..<steps {
            let root = 1 - (Double(i) + 0.5) / Double(steps)
            let share = root * root
            let y = top + Double(i) * gridSize / Double(steps)
            s += "<rect x=\"\(svgNumber(barX))\" y=\"\(svgNumber(y))\" width=\"\(svgNumber(barWidth))\" height=\"\(svgNumber(gridSize / Double(steps) + 0.5))\" fill=\"\(Self.shade(share).fill)\"/>"
        }
        s += "<rect x=\"\(svgNumber(barX))\" y=\"\(svgNumber(top))\" width=\"\(svgNumber(barWidth))\" height=\"\(svgNumber(gridSize))\" fill=\"none\" stroke=\"#888888\"/>\n"
        for (share, label) in [(1.0, "100%"), (0.5, "50%"), (0.25, "25%"), (0.1, "10%"), (0.01, "1%"), (0.0, "0%")] {
            let y = top + gridSize * (1 - share.squareRoot())
            s += "<line x1=\"\(svgNumber(barX + barWidth))\" y1=\"\(svgNumber(y))\" x2=\"\(svgNumber(barX + barWidth + 3))\" y2=\"\(svgNumber(y))\" stroke=\"#888888\"/>"
            s += "<text x=\"\(svgNumber(barX + barWidth + 5))\" y=\"\(svgNumber(y + 3.5))\" font-size=\"10\">\(label)</text>"
        }
        // The scale's title, beside the tick labels (not squeezed between bar and grid), says
        // that the scale is not linear.
        s += "\n<text transform=\"translate(\(svgNumber(barX + barWidth + 46)) \(svgNumber(top + gridSize / 2))) rotate(-90)\" text-anchor=\"middle\" font-size=\"11\" fill=\"#444444\">share of the true class (√ scale)</text>\n"
        s += "</svg>\n"
        return s
    }
}
