import ArgumentParser
import Backprop
import BackpropTraining
import Foundation

struct Summary: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print each layer's output shape and weight, bias and total parameter counts.",
        discussion: "Takes a preset, --spec FILE, or a run folder (runs/NAME) holding a trained model.")

    @OptionGroup var experiment: ExperimentChoice

    func run() throws {
        if let path = experiment.preset, Experiment.preset(named: path) == nil,
           FileManager.default.fileExists(atPath: path) {
            let model = try userFacing { try ModelArchive.load(from: URL(fileURLWithPath: path)) }
            printSummary(title: "\(path) (\(model.dataset.displayName), input \(describe(shape: model.network.inputShape)))",
                         network: model.network)
            return
        }
        let chosen = try experiment.resolve()
        let network = try makeNetwork(chosen, seed: chosen.options.seed)
        printSummary(title: "\(chosen.name) (\(chosen.dataset.displayName), input \(describe(shape: network.inputShape)))",
                     network: network)
    }
}
