@testable import BackpropCLI
import Testing

/// The CLI's pure text functions: the progress line fitted to a terminal, the loss format, and
/// the typo suggestions.
@Suite("backprop terminal text")
struct TerminalTests {
    /// Halfway through 3000 iterations, validated at 1400.
    private let halfway = ProgressLine(iteration: 1500, total: 3000, loss: 0.1234, accuracy: 0.9712,
                                       validation: (accuracy: 0.971, iteration: 1400), imagesPerSecond: 1600,
                                       remainingSeconds: 3)

    /// The expected lines, counted by hand: the fields are "it 1500/3000" (12), "loss 0.1234"
    /// (11), "acc 97.12%" (10), "val 97.10%" (10), "1600 img/s" (10), "ETA 0:03" (8), two
    /// spaces apart; a bar of width w takes w + 3 ("[", "] "). The line may use columns − 1.
    @Test("the progress line fits 40, 60, 80 and 120 columns, dropping fields in order",
          arguments: [
            // 120: everything, full bar: 27 + 71 = 98.
            (120, "[████████████············] it 1500/3000  loss 0.1234  acc 97.12%  val 97.10%  1600 img/s  ETA 0:03"),
            // 80: no img/s (59 characters of fields), the bar narrowed to 79 − 59 − 3 = 17, half done.
            (80, "[████████·········] it 1500/3000  loss 0.1234  acc 97.12%  val 97.10%  ETA 0:03"),
            // 60: no accuracy either (47), a bar of 59 − 47 − 3 = 9.
            (60, "[████·····] it 1500/3000  loss 0.1234  val 97.10%  ETA 0:03"),
            // 40: no bar, no validation: 35.
            (40, "it 1500/3000  loss 0.1234  ETA 0:03"),
            // 26: iteration and loss only (25).
            (26, "it 1500/3000  loss 0.1234"),
            // 20: cut at 19 characters, without the space that ends them.
            (20, "it 1500/3000  loss"),
          ])
    func fitted(columns: Int, expected: String) {
        let line = halfway.fitted(columns: columns)
        #expect(line == expected)
        #expect(line.count <= columns - 1, "\(line.count) characters for \(columns) columns")
    }

    @Test("no progress line is wider than the terminal, whatever its width and values")
    func neverWider() {
        var early = halfway
        early.iteration = 7
        early.validation = nil
        early.loss = 1.1e21
        early.remainingSeconds = 36_000
        for line in [halfway, early] {
            for columns in 1...200 {
                let text = line.fitted(columns: columns)
                #expect(text.count <= max(columns - 1, 1), "\(columns) columns: \(text)")
                #expect(text.hasPrefix("[") || text.hasPrefix("it".prefix(columns - 1)), "\(columns) columns: \(text)")
            }
        }
    }

    @Test("a log line says when a validation accuracy was measured before it")
    func plainLine() {
        #expect(halfway.plain == "it 1500/3000  loss 0.1234  acc 97.12%  val 97.10% (it 1400)  1600 img/s  ETA 0:03")
        var fresh = halfway
        fresh.validation = (accuracy: 0.971, iteration: 1500)
        #expect(fresh.plain == "it 1500/3000  loss 0.1234  acc 97.12%  val 97.10%  1600 img/s  ETA 0:03")
        fresh.validation = nil
        #expect(fresh.plain == "it 1500/3000  loss 0.1234  acc 97.12%  1600 img/s  ETA 0:03")
    }

    @Test("losses past 1e6 or below 1e-4 are in scientific notation")
    func lossFormat() {
        #expect(formatLoss(2.302585) == "2.3026")
        #expect(formatLoss(0) == "0.0000")
        #expect(formatLoss(999_999.5) == "999999.5000")
        #expect(formatLoss(1_104_102_938_498_353_070_080) == "1.104e+21")
        #expect(formatLoss(-2.5e6) == "-2.500e+06")
        #expect(formatLoss(3.21e-7) == "3.210e-07")
        #expect(formatLoss(1e-4) == "0.0001")
        #expect(formatLoss(.nan) == "nan")
        #expect(formatLoss(.infinity) == "inf")
        var exploding = halfway
        exploding.loss = 1_104_102_938_498_353_070_080
        // Three characters more than "0.1234": the bar gives them up.
        #expect(exploding.fitted(columns: 80) == "[███████·······] it 1500/3000  loss 1.104e+21  acc 97.12%  val 97.10%  ETA 0:03")
    }

    @Test("a mistyped verb or preset suggests the nearest name")
    func suggestions() {
        #expect(editDistance("trian", "train") == 1)  // a swap of neighbours is one edit
        #expect(editDistance("", "bench") == 5)
        #expect(editDistance("evalute", "evaluate") == 1)
        let verbs = BackpropCommand.verbs
        #expect(closest(to: "trian", among: verbs) == "train")
        #expect(closest(to: "sumary", among: verbs) == "summary")
        #expect(closest(to: "bnch", among: verbs) == "bench")
        #expect(closest(to: "xyzzy", among: verbs) == nil)
        #expect(closest(to: "t", among: verbs) == nil)
        #expect(closest(to: "mnsit", among: ["mnist", "cifar10", "cifar10-improved"]) == "mnist")
    }
}
