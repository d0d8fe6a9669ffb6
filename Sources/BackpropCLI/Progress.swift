import BackpropTraining
import Foundation

/// Shows training progress: a redrawn bar on a terminal, plain periodic lines otherwise.
struct ProgressDisplay {
    let total: Int
    let interactive = isatty(STDOUT_FILENO) != 0
    private var lastDraw = Date.distantPast
    private var lastValidation: (accuracy: Double, iteration: Int)?

    init(total: Int) { self.total = total }

    mutating func update(_ m: IterationMetrics) {
        if let v = m.validationAccuracy { lastValidation = (v, m.iteration) }
        let line = ProgressLine(iteration: m.iteration, total: total, loss: m.smoothedLoss, accuracy: m.smoothedAccuracy,
                                validation: lastValidation, imagesPerSecond: m.imagesPerSecond,
                                remainingSeconds: Double(total - m.iteration) * m.elapsed / Double(m.iteration))
        if interactive {
            let now = Date()
            guard m.iteration == total || now.timeIntervalSince(lastDraw) > 0.1 else { return }
            lastDraw = now
            // `\r` and erase-line redraw one row only: a line wider than the terminal would wrap
            // and leave a copy behind on every draw. The width is asked each time (resizes).
            print("\r\u{1B}[2K" + line.fitted(columns: terminalColumns()), terminator: m.iteration == total ? "\n" : "")
            fflush(nil)
        } else if m.iteration % max(total / 20, 1) == 0 || m.iteration == total {
            print(line.plain)
            fflush(nil)
        }
    }
}

/// One progress report: the full line for a log, or the bar and the fields that fit a terminal.
struct ProgressLine {
    var iteration: Int
    var total: Int
    /// The smoothed loss and accuracy (accuracy in [0, 1]).
    var loss: Double
    var accuracy: Double
    /// The last validation accuracy measured, and at which iteration.
    var validation: (accuracy: Double, iteration: Int)?
    var imagesPerSecond: Double
    var remainingSeconds: Double

    /// The bar's width in characters: full, and the least worth drawing.
    static let barWidths = (full: 24, least: 8)

    private var iterationField: String { "it \(iteration)/\(total)" }
    private var lossField: String { "loss \(formatLoss(loss))" }
    private var accuracyField: String { String(format: "acc %5.2f%%", accuracy * 100) }
    private var speedField: String { String(format: "%.0f img/s", imagesPerSecond) }
    private var etaField: String { "ETA \(clock(remainingSeconds))" }
    private func validationField(marked: Bool) -> String? {
        guard let validation else { return nil }
        let mark = marked && validation.iteration != iteration ? " (it \(validation.iteration))" : ""
        return String(format: "val %5.2f%%", validation.accuracy * 100) + mark
    }

    /// Every field, for a log: `it 300/3000  loss 0.3299  acc 89.71%  val 94.15% (it 200)  1578 img/s  ETA 0:17`.
    /// A validation accuracy measured before this iteration says when it was measured.
    var plain: String {
        [iterationField, lossField, accuracyField, validationField(marked: true), speedField, etaField]
            .compactMap { $0 }.joined(separator: "  ")
    }

    /// The bar and fields for a terminal `columns` wide, in at most `columns − 1` characters (a
    /// character in the last column makes some terminals wrap). Fields go in this order as the
    /// width shrinks: img/s; then the bar narrows from 24 to 8 characters; the smoothed
    /// accuracy; the bar; the validation accuracy; the ETA. The iteration and the loss stay
    /// (cut at the right edge below about 25 columns).
    func fitted(columns: Int) -> String {
        let room = max(columns - 1, 1)
        let validation = validationField(marked: false)
        let (full, least) = Self.barWidths
        // From the fullest line to the barest: the fields, and the narrowest bar allowed (0: none).
        let choices: [(fields: [String?], narrowestBar: Int)] = [
            ([iterationField, lossField, accuracyField, validation, speedField, etaField], full),
            ([iterationField, lossField, accuracyField, validation, etaField], least),
            ([iterationField, lossField, validation, etaField], least),
            ([iterationField, lossField, validation, etaField], 0),
            ([iterationField, lossField, etaField], 0),
            ([iterationField, lossField], 0),
        ]
        for (fields, narrowest) in choices {
            let text = fields.compactMap { $0 }.joined(separator: "  ")
            if narrowest == 0 {
                if text.count <= room { return text }
                continue
            }
            let width = min(full, room - text.count - 3)  // "[" bar "] "
            guard width >= narrowest else { continue }
            let done = width * iteration / max(total, 1)
            return "[" + String(repeating: "█", count: done) + String(repeating: "·", count: width - done) + "] " + text
        }
        var cut = String("\(iterationField)  \(lossField)".prefix(room))
        while cut.last == " " { cut.removeLast() }
        return cut
    }

    /// `m:ss` or `h:mm:ss`.
    private func clock(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds < 1e9 else { return "?" }
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}

/// A loss for a progress line: four decimals, or scientific notation where those would hide the
/// value (|x| ≥ 10⁶, or 0 < |x| < 10⁻⁴): `2.3026`, `1.104e+21`, `3.210e-07`, `nan`.
func formatLoss(_ x: Double) -> String {
    let magnitude = abs(x)
    if x.isFinite && x != 0 && (magnitude >= 1e6 || magnitude < 1e-4) { return String(format: "%.3e", x) }
    return String(format: "%.4f", x)
}

/// The width of the terminal standard output shows: its window size (`TIOCGWINSZ`), else
/// `$COLUMNS`, else 80.
func terminalColumns() -> Int {
    var size = winsize()
    if ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 { return Int(size.ws_col) }
    if let columns = ProcessInfo.processInfo.environment["COLUMNS"].flatMap({ Int($0) }), columns > 0 { return columns }
    return 80
}
