import ArgumentParser
import Foundation

/// `backprop`: train, analyse and check the seed's networks and your own.
@main
struct BackpropCommand: ParsableCommand {
    /// The version `backprop --version` prints.
    static let version = "0.4.0"

    static let configuration = CommandConfiguration(
        commandName: "backprop",
        abstract: "Build, train, check and analyse neural networks.",
        discussion: "Presets: \(ExperimentChoice.presetList). Run `backprop help <verb>` for a verb's options.",
        version: "backprop \(version)",
        subcommands: [Train.self, Evaluate.self, Predict.self, Report.self, Export.self, Import.self, Summary.self, GradCheck.self, Download.self, Bench.self]
    )

    /// The verbs, as typed.
    static var verbs: [String] { configuration.subcommands.map { $0._commandName } }

    /// Runs the verb the command line names. Every error ends as one `Error:` line on standard
    /// error (`terminate(reporting:verb:root:)`), with the exit statuses of `ExitStatus`.
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        do {
            try checkVerb(arguments)
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch {
            let verb = arguments.prefix(2).first { verbs.contains($0) }  // `train …` or `help train …`
            terminate(reporting: error, verb: verb, root: self)
        }
    }

    /// Refuses an unknown verb, also after `help`, with the nearest verb when it looks like a
    /// typo (the argument parser would show the top-level help for `help trian`, and a bare
    /// "unexpected argument" for `trian`).
    private static func checkVerb(_ arguments: [String]) throws {
        var words = arguments[...]
        if words.first == "help" { words = words.dropFirst() }
        guard let word = words.first, !word.hasPrefix("-"), !(verbs + ["help"]).contains(word) else { return }
        let guess = closest(to: word, among: verbs + ["help"]).map { "did you mean '\($0)'? " } ?? ""
        throw UserError.usage("unknown command '\(word)' (\(guess)commands: \(verbs.joined(separator: ", ")), help)")
    }
}
