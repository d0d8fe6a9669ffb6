import Foundation

/// Escapes text for XML content and attribute values (SVG and the XHTML-compatible report).
func escapeXML(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.count)
    for character in text {
        switch character {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&#39;"
        default: out.append(character)
        }
    }
    return out
}

/// A coordinate for an SVG attribute: at most two decimals, no trailing zeros.
func svgNumber(_ x: Double) -> String {
    let rounded = (x * 100).rounded() / 100
    if rounded == rounded.rounded() { return String(Int(rounded)) }
    return String(format: "%.2f", rounded).replacingOccurrences(of: #"0+$"#, with: "", options: .regularExpression)
}

/// An integer with thousands separators: 14,682.
public func groupedDigits(_ n: Int) -> String {
    let digits = String(n.magnitude)
    var out = ""
    for (i, c) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(c)
    }
    return (n < 0 ? "-" : "") + out
}

/// The font stack of every figure and the page (DejaVu Sans is on every Debian desktop and in
/// headless Chromium's image; the rest are fallbacks).
let figureFont = "DejaVu Sans, Verdana, Helvetica, Arial, sans-serif"

/// Colors of the data series (matplotlib's tab10, which readers know from the course's plots).
enum SeriesColor {
    static let blue = "#1f77b4"
    static let orange = "#ff7f0e"
    static let green = "#2ca02c"
    static let red = "#d62728"
    static let purple = "#9467bd"
}

/// Axis ticks at "nice" values (1, 2 or 5 times a power of ten) covering `lower...upper`.
///
/// Of the nice steps near `(upper − lower) / (count − 1)`, the one whose axis has about
/// `count − 1` intervals and extends least beyond the data
/// (score: `|intervals − target| / target + 2 · overshoot / range`; 0…3,000 → 500,
/// 0…7,000 → 1,000, 0…100 → 20, 0.03…2.57 → 0.5).
/// - Parameter minimumStep: the smallest step allowed (1 for an axis of whole numbers such as
///   iterations, so that a short run gets no ticks at 1.2, 1.4, …).
/// - Returns: the step and the ticks from the largest multiple of the step at or below `lower`
///   to the smallest at or above `upper`.
func niceTicks(_ lower: Double, _ upper: Double, count: Int = 6, minimumStep: Double = 0) -> (step: Double, ticks: [Double]) {
    var upper = upper
    if !(upper > lower) { upper = lower + 1 }
    let range = upper - lower
    let target = Double(max(count - 1, 1))
    func axis(_ step: Double) -> (first: Double, last: Double) {
        (floor(lower / step + 1e-9) * step, ceil(upper / step - 1e-9) * step)
    }
    func score(_ step: Double) -> Double {
        let (first, last) = axis(step)
        return abs((last - first) / step - target) / target + 2 * ((last - first) - range) / range
    }
    let magnitude = pow(10, floor(log10(range / target)))
    let step = max([1.0, 2, 5, 10].map { $0 * magnitude }.min { score($0) < score($1) }!, minimumStep)
    let (first, last) = axis(step)
    let n = Int(((last - first) / step).rounded())
    return (step, (0...n).map { first + Double($0) * step })
}

/// Formats a tick value with as many decimals as the step needs.
func tickLabel(_ value: Double, step: Double) -> String {
    let decimals = max(0, Int(-floor(log10(step) + 1e-9)))
    if decimals == 0 { return groupedDigits(Int(value.rounded())) }
    return String(format: "%.\(decimals)f", value)
}

/// The labels of an axis's ticks: `tickLabel`'s, or, when a tick reaches a million or the step
/// is below 0.001, scientific notation with one exponent for the axis and as many decimals as
/// the step needs (`0`, `5.0e20`, `1.0e21`, `1.5e21`), so that a diverged run's losses keep
/// short labels.
func tickLabels(_ ticks: [Double], step: Double) -> [String] {
    let largest = ticks.map(abs).max() ?? 0
    guard largest >= 1e6 || (step < 1e-3 && largest > 0) else { return ticks.map { tickLabel($0, step: step) } }
    let exponent = Int(floor(log10(largest) + 1e-9))
    let decimals = max(0, exponent - Int(floor(log10(step) + 1e-9)))
    let scale = pow(10, Double(exponent))
    return ticks.map { $0 == 0 ? "0" : String(format: "%.\(decimals)fe%d", $0 / scale, exponent) }
}

// MARK: - Line chart

/// A line chart with real axes: ticks, tick labels, axis labels, a grid, a title and a legend,
/// as an SVG element.
///
/// Coordinates: the plot area is `[left, width − right] x [top, height − bottom]` in SVG user
/// units; data `x` maps linearly onto it, `y` upwards.
public struct LineChart: Sendable {
    /// One line of the chart.
    public struct Series: Sendable {
        /// The legend's text.
        public var name: String
        /// (x, y) in data units, x increasing.
        public var points: [(x: Double, y: Double)]
        /// An SVG colour, e.g. `#1f77b4`.
        public var color: String
        /// Draws a small circle at every point (for sparse series such as validation accuracy).
        public var markers: Bool
        /// Draws the line dashed (for a series that is the sum of others).
        public var dashed: Bool

        public init(name: String, points: [(x: Double, y: Double)], color: String, markers: Bool = false, dashed: Bool = false) {
            self.name = name
            self.points = points
            self.color = color
            self.markers = markers
            self.dashed = dashed
        }
    }

    /// Shown above the plot.
    public var title: String
    /// The axis labels.
    public var xLabel: String
    public var yLabel: String
    /// The lines, drawn in order (the last on top).
    public var series: [Series]
    /// The y range shown; nil fits the data (rounded out to ticks).
    public var yRange: ClosedRange<Double>?
    /// The size of the whole figure in SVG user units (pixels at 100 %).
    public var width = 600.0
    public var height = 400.0
    /// Lines keep at most this many points (every k-th, and the last): more than the plot has pixels
    /// only makes the file larger.
    public var maxPointsPerSeries = 1200
    /// Legend rows reserved above the plot even when fewer are needed, so that charts shown side
    /// by side have plots of the same height.
    public var minimumLegendRows = 2
    /// Whether x values are whole numbers (iterations): x ticks are then 1 apart at least.
    public var integerX = false

    public init(title: String, xLabel: String, yLabel: String, series: [Series], yRange: ClosedRange<Double>? = nil) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.series = series
        self.yRange = yRange
    }

    /// The chart as an `<svg>` element.
    /// - Parameters:
    ///   - standalone: adds the XML declaration a file on its own has.
    ///   - id: a prefix for the element ids inside (the clip path), unique within a page.
    public func svg(standalone: Bool, id: String) -> String {
        let allX = series.flatMap { $0.points.map(\.x) }
        let allY = series.flatMap { $0.points.map(\.y) }.filter(\.isFinite)
        let xTicks = niceTicks(allX.min() ?? 0, allX.max() ?? 1, minimumStep: integerX ? 1 : 0)
        let yTicks: (step: Double, ticks: [Double])
        if let yRange {
            yTicks = niceTicks(yRange.lowerBound, yRange.upperBound)
        } else {
            yTicks = niceTicks(allY.min() ?? 0, allY.max() ?? 1)
        }
        let x0 = xTicks.ticks.first!, x1 = xTicks.ticks.last!
        let y0 = yRange?.lowerBound ?? yTicks.ticks.first!, y1 = yRange?.upperBound ?? yTicks.ticks.last!
        let visibleYTicks = yTicks.ticks.filter { $0 >= y0 - 1e-9 && $0 <= y1 + 1e-9 }
        let yLabels = tickLabels(visibleYTicks, step: yTicks.step)
        let xLabels = tickLabels(xTicks.ticks, step: xTicks.step)
        // The left margin holds the y axis's title and its longest tick label (about 7.2 units a
        // character at 12 px), so no label is cut off.
        let left = max(68, 44 + 7.2 * Double(yLabels.map(\.count).max() ?? 0)), right = 18.0, bottom = 52.0
        // Legend: rows under the title (so it never covers a curve), wrapped to the plot's width.
        // Text width is estimated at 0.6 em per character (12 px type).
        var legend: [(series: Series, x: Double, y: Double)] = []
        var legendX = left, legendY = 42.0
        for line in series {
            let itemWidth = 30 + Double(line.name.count) * 7.2
            if legendX > left, legendX + itemWidth > width - right {
                legendX = left
                legendY += 18
            }
            legend.append((line, legendX, legendY))
            legendX += itemWidth + 22
        }
        let top = max(legendY, 42 + 18 * Double(minimumLegendRows - 1)) + 20
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * plotWidth }
        // Values outside the range are drawn up to one plot height beyond it and clipped, so a
        // line leaving a zoomed axis leaves it at its own slope (and no coordinate is huge).
        func py(_ y: Double) -> Double {
            let span = y1 - y0
            return top + plotHeight - (min(max(y, y0 - span), y1 + span) - y0) / span * plotHeight
        }

        var s = standalone ? "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" : ""
        s += "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(svgNumber(width)) \(svgNumber(height))\" width=\"\(svgNumber(width))\" height=\"\(svgNumber(height))\" font-family=\"\(figureFont)\" font-size=\"12\" role=\"img\" aria-label=\"\(escapeXML(title))\">\n"
        s += "<rect x=\"0\" y=\"0\" width=\"\(svgNumber(width))\" height=\"\(svgNumber(height))\" fill=\"#ffffff\"/>\n"
        s += "<text x=\"\(svgNumber(width / 2))\" y=\"22\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">\(escapeXML(title))</text>\n"

        for (line, x, y) in legend {
            s += "<line x1=\"\(svgNumber(x))\" y1=\"\(svgNumber(y))\" x2=\"\(svgNumber(x + 24))\" y2=\"\(svgNumber(y))\" stroke=\"\(line.color)\" stroke-width=\"2.5\"\(line.dashed ? " stroke-dasharray=\"6 3\"" : "")/>"
            if line.markers { s += "<circle cx=\"\(svgNumber(x + 12))\" cy=\"\(svgNumber(y))\" r=\"3.5\" fill=\"\(line.color)\"/>" }
            s += "<text x=\"\(svgNumber(x + 30))\" y=\"\(svgNumber(y + 4))\">\(escapeXML(line.name))</text>\n"
        }

        // Grid and ticks (y ticks only inside the plotted range).
        s += "<g stroke=\"#e3e3e3\" stroke-width=\"1\">"
        for t in visibleYTicks {
            s += "<line x1=\"\(svgNumber(left))\" y1=\"\(svgNumber(py(t)))\" x2=\"\(svgNumber(left + plotWidth))\" y2=\"\(svgNumber(py(t)))\"/>"
        }
        for t in xTicks.ticks {
            s += "<line x1=\"\(svgNumber(px(t)))\" y1=\"\(svgNumber(top))\" x2=\"\(svgNumber(px(t)))\" y2=\"\(svgNumber(top + plotHeight))\"/>"
        }
        s += "</g>\n<g fill=\"#333333\">"
        for (t, label) in zip(visibleYTicks, yLabels) {
            s += "<text x=\"\(svgNumber(left - 8))\" y=\"\(svgNumber(py(t) + 4))\" text-anchor=\"end\">\(label)</text>"
        }
        for (t, label) in zip(xTicks.ticks, xLabels) {
            s += "<text x=\"\(svgNumber(px(t)))\" y=\"\(svgNumber(top + plotHeight + 18))\" text-anchor=\"middle\">\(label)</text>"
        }
        s += "</g>\n<g stroke=\"#333333\" stroke-width=\"1\">"
        for t in visibleYTicks {
            s += "<line x1=\"\(svgNumber(left - 5))\" y1=\"\(svgNumber(py(t)))\" x2=\"\(svgNumber(left))\" y2=\"\(svgNumber(py(t)))\"/>"
        }
        for t in xTicks.ticks {
            s += "<line x1=\"\(svgNumber(px(t)))\" y1=\"\(svgNumber(top + plotHeight))\" x2=\"\(svgNumber(px(t)))\" y2=\"\(svgNumber(top + plotHeight + 5))\"/>"
        }
        s += "</g>\n"
        s += "<rect x=\"\(svgNumber(left))\" y=\"\(svgNumber(top))\" width=\"\(svgNumber(plotWidth))\" height=\"\(svgNumber(plotHeight))\" fill=\"none\" stroke=\"#333333\"/>\n"
        s += "<text x=\"\(svgNumber(left + plotWidth / 2))\" y=\"\(svgNumber(height - 10))\" text-anchor=\"middle\" font-size=\"13\">\(escapeXML(xLabel))</text>\n"
        s += "<text transform=\"translate(16 \(svgNumber(top + plotHeight / 2))) rotate(-90)\" text-anchor=\"middle\" font-size=\"13\">\(escapeXML(yLabel))</text>\n"

        // The data, clipped to the plot area.
        let clip = "\(id)-plot-area"
        s += "<defs><clipPath id=\"\(clip)\"><rect x=\"\(svgNumber(left))\" y=\"\(svgNumber(top))\" width=\"\(svgNumber(plotWidth))\" height=\"\(svgNumber(plotHeight))\"/></clipPath></defs>\n"
        s += "<g clip-path=\"url(#\(clip))\">\n"
        for line in series {
            let points = thinned(line.points.filter { $0.y.isFinite })
            guard !points.isEmpty else { continue }
            let coordinates = points.map { "\(svgNumber(px($0.x))),\(svgNumber(py($0.y)))" }.joined(separator: " ")
            s += "<polyline fill=\"none\" stroke=\"\(line.color)\" stroke-width=\"2\" stroke-linejoin=\"round\"\(line.dashed ? " stroke-dasharray=\"6 3\"" : "") points=\"\(coordinates)\"><title>\(escapeXML(line.name))</title></polyline>\n"
            if line.markers {
                s += "<g fill=\"\(line.color)\">"
                for p in points { s += "<circle cx=\"\(svgNumber(px(p.x)))\" cy=\"\(svgNumber(py(p.y)))\" r=\"3\"/>" }
                s += "</g>\n"
            }
        }
        s += "</g>\n</svg>\n"
        return s
    }

    /// Every k-th point and the last, so that at most `maxPointsPerSeries` remain.
    private func thinned(_ points: [(x: Double, y: Double)]) -> [(x: Double, y: Double)] {
        guard points.count > maxPointsPerSeries else { return points }
        let k = (points.count + maxPointsPerSeries - 1) / maxPointsPerSeries
        var out = stride(from: 0, to: points.count, by: k).map { points[$0] }
        if out.last!.x != points.last!.x { out.append(points.last!) }
        return out
    }
}
