import BackpropTraining
import Foundation

/// Shows training progress: a redrawn bar on a terminal, plain periodic lines otherwise.
struct ProgressDisplay {
    let total: Int
    let interactive = isatty(STDOUT_FILENO) != 0
    private var lastDraw = Date.distantPast
    private var lastValidation: Double?

    init(total: Int) { self.total = total }

    mutating func update(_ m: IterationMetrics) {
        if let v = m.validationAccuracy { lastValidation = v }
        let remaining = Double(total - m.iteration) * m.elapsed / Double(m.iteration)
        let validation = lastValidation.map { String(format: "  val %5.2f%%", $0 * 100) } ?? ""
        let stats = String(format: "it %d/%d  loss %.4f  acc %5.2f%%", m.iteration, total, m.smoothedLoss, m.smoothedAccuracy * 100)
            + validation + String(format: "  %.0f img/s  ETA %@", m.imagesPerSecond, clock(remaining))
        if interactive {
            let now = Date()
            guard m.iteration == total || now.timeIntervalSince(lastDraw) > 0.1 else { return }
            lastDraw = now
            let width = 24
            let done = width * m.iteration / total
            let bar = String(repeating: "█", count: done) + String(repeating: "·", count: width - done)
            print("\r\u{1B}[2K[\(bar)] \(stats)", terminator: m.iteration == total ? "\n" : "")
            fflush(nil)
        } else if m.iteration % max(total / 20, 1) == 0 || m.iteration == total {
            print(stats)
            fflush(nil)
        }
    }

    /// `m:ss` or `h:mm:ss`.
    private func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}
