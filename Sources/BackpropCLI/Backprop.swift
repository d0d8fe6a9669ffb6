import ArgumentParser

/// `backprop`: train, analyse and check the seed's networks and your own.
@main
struct BackpropCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backprop",
        abstract: "Build, train, check and analyse neural networks.",
        discussion: "Presets: \(ExperimentChoice.presetList). Run `backprop help <verb>` for a verb's options.",
        subcommands: [Train.self, Evaluate.self, Report.self, Summary.self, GradCheck.self, Download.self, Bench.self]
    )
}
