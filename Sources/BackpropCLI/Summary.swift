import ArgumentParser
import Backprop
import BackpropTraining
import Foundation

struct Summary: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print each layer's output shape and weight, bias and total parameter counts.",
        discussion: "Takes a preset, --spec FILE, or a run folder (runs/NAME) holding a trained model; --layers lists the layer types a spec may use; --print-spec prints a preset as a spec file to start your own from.")

    @OptionGroup var experiment: ExperimentChoice
    @Flag(help: "List every layer type a spec may name, with its keys and defaults.") var layers = false
    @Flag(help: "Print the preset's (or spec's) experiment as a spec file instead, every training option spelled out: `backprop summary cifar-fast --print-spec > my.json`, edit, then `backprop train --spec my.json`.")
    var printSpec = false

    func run() throws {
        if layers {
            print("Layer types (spec \"type\", aliases, keys with defaults; every layer also takes \"name\"):")
            for kind in NetworkSpec.kinds {
                let aliases = kind.aliases.isEmpty ? "" : " (\(kind.aliases.joined(separator: ", ")))"
                print("  \(kind.typeName)\(aliases): \(kind.keysHelp)")
            }
            print("  softmaxloss (softmax_cross_entropy): the loss; only as the last entry of the top-level list")
            return
        }
        if let path = experiment.preset, Experiment.preset(named: path) == nil,
           FileManager.default.fileExists(atPath: path) {
            if printSpec { throw UserError("\(path) is a run folder: its spec file is \(path)/experiment.json") }
            let model = try userFacing { try ModelArchive.load(from: URL(fileURLWithPath: path)) }
            printSummary(title: "\(path) (\(model.dataset.displayName), input \(describe(shape: model.network.inputShape)))",
                         network: model.network)
            return
        }
        let chosen = try experiment.resolve()
        if printSpec {
            let json = try JSONSerialization.data(withJSONObject: chosen.jsonObject, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: json, as: UTF8.self))
            return
        }
        let network = try makeNetwork(chosen, seed: chosen.options.seed)
        printSummary(title: "\(chosen.name) (\(chosen.dataset.displayName), input \(describe(shape: network.inputShape)))",
                     network: network)
    }
}
