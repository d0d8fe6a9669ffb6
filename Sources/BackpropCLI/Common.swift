import ArgumentParser
import Backprop
import BackpropData
import BackpropReport
import BackpropTraining
import Foundation

/// `<preset> | --spec FILE [--dataset NAME]`: which experiment a verb works on.
struct ExperimentChoice: ParsableArguments {
    static let presetList = Experiment.presetNames.joined(separator: ", ")

    @Argument(help: ArgumentHelp("A preset: \(ExperimentChoice.presetList).", valueName: "preset"))
    var preset: String?

    @Option(name: .long, help: ArgumentHelp("A network spec file (JSON) instead of a preset.", valueName: "file"))
    var spec: String?

    @Option(name: .long, help: "The data set for a spec that names none, or instead of a preset's (of the same image shape): \(DatasetKind.nameList).")
    var dataset: String?

    func resolve() throws -> Experiment {
        var fallback: DatasetKind?
        if let dataset {
            guard let kind = DatasetKind(rawValue: dataset) else {
                throw UserError.usage("unknown data set '\(dataset)' (\(DatasetKind.nameList))")
            }
            fallback = kind
        }
        switch (preset, spec) {
        case (nil, nil): throw UserError.usage("name a preset (\(Self.presetList)) or pass --spec FILE")
        case (.some, .some): throw UserError.usage("give a preset or --spec, not both")
        case let (name?, nil):
            guard var experiment = Experiment.preset(named: name) else {
                let guess = closest(to: name, among: Experiment.presetNames).map { "did you mean '\($0)'? " } ?? ""
                throw UserError.usage("unknown preset '\(name)' (\(guess)known: \(Self.presetList))")
            }
            // `train mnist --dataset fashion-mnist`: the preset's network and options on other data of
            // its shape, or on an image folder (resized to the network's input).
            if let fallback, fallback != experiment.dataset {
                if let shape = fallback.imageShape, shape != experiment.network.input {
                    throw UserError.usage("--dataset \(fallback.rawValue) has \(describe(shape: shape)) images; the preset \(name) takes \(describe(shape: experiment.network.input))")
                }
                experiment.dataset = fallback
            }
            return experiment
        case let (nil, path?):
            let file = try nonEmpty(path, "--spec")
            return try userFacing { try Experiment(specFile: URL(fileURLWithPath: file), dataset: fallback) }
        }
    }
}

/// Builds the experiment's network and checks that it fits the data set's images and classes (an
/// image folder's: `checkClasses(of:fit:)` once it is read).
func makeNetwork(_ experiment: Experiment, seed: UInt64) throws -> Network<Float> {
    if let shape = experiment.dataset.imageShape, experiment.network.input != shape {
        throw UserError("the network's input \(describe(shape: experiment.network.input)) does not match \(experiment.dataset.displayName) images (\(describe(shape: shape)))")
    }
    var generator = SeededGenerator(seed: seed)
    let network = try userFacing { try experiment.network.makeNetwork(Float.self, using: &generator) }
    guard experiment.dataset == .imageFolder || network.outputShape == [10] else {
        throw UserError("the network's output \(describe(shape: network.outputShape)) does not match the 10 classes of \(experiment.dataset.displayName)")
    }
    return network
}

/// Refuses a batch whose activations would not fit: `batchSize` examples of the network's
/// largest activation must stay within 2^31 values (8 GiB of `Float`), checked before any
/// batch is allocated.
func checkBatchMemory(_ network: Network<Float>, batchSize: Int, flag: String) throws {
    let largest = network.largestActivation
    guard let values = elementCount([batchSize, largest]), values <= 1 << 31 else {
        throw UserError.usage("\(flag) \(batchSize) is too large for this network: \(batchSize) examples of its largest activation (\(grouped(largest)) values) exceed \(grouped(1 << 31)) values")
    }
}

/// Checks that the network has one output per class of the data set read.
func checkClasses(of network: Network<Float>, fit dataset: Dataset) throws {
    guard network.outputShape == [dataset.classNames.count] else {
        throw UserError("the network's output \(describe(shape: network.outputShape)) does not match the \(dataset.classNames.count) classes of the \(dataset.kind.displayName) (\(dataset.classNames.prefix(5).joined(separator: ", "))\(dataset.classNames.count > 5 ? ", …" : ""))")
    }
}

/// Formats an integer with thousands separators: 14,682.
func grouped(_ n: Int) -> String {
    let digits = String(abs(n))
    var out = ""
    for (i, c) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(c)
    }
    return (n < 0 ? "-" : "") + out
}

/// Pads or truncates for a text table.
func pad(_ s: String, _ width: Int, right: Bool = false) -> String {
    let padding = String(repeating: " ", count: max(0, width - s.count))
    return right ? padding + s : s + padding
}

/// Prints the per-layer table of the report's Tables 2, 3 and 5 (the rows the HTML report shows):
/// the layer tree, each layer at its path, indented by depth, with its output shape and its own
/// parameter counts.
func printSummary(title: String, network: Network<Float>) {
    print(title)
    let table = ParameterTable(network: network)
    let pathWidth = max(3, table.rows.map(\.index.count).max() ?? 0)
    let kindWidth = max(11, table.rows.map { $0.layer.count + 2 * $0.depth }.max() ?? 0)
    let settingsWidth = max(20, table.rows.map(\.settings.count).max() ?? 0)
    func line(_ index: String, _ kind: String, _ settings: String, _ shape: String, _ w: String, _ b: String, _ t: String) {
        print([pad(index, pathWidth), pad(kind, kindWidth), pad(settings, settingsWidth), pad(shape, 10), pad(w, 9, right: true),
               pad(b, 7, right: true), pad(t, 9, right: true)].joined(separator: "  "))
    }
    line("#", "Layer", "Settings", "Output", "Weights", "Biases", "Total")
    for r in table.rows {
        line(r.index, String(repeating: "  ", count: r.depth) + r.layer, r.settings, r.outputShape,
             grouped(r.weights), grouped(r.biases), grouped(r.total))
    }
    line("", "Total", "", "", grouped(table.totalWeights), grouped(table.totalBiases), grouped(table.total))
    print("Total parameters: \(grouped(table.total))")
    let buffers = network.namedBuffers.reduce(0) { $0 + $1.buffer.value.count }
    if buffers > 0 { print("Buffers (running statistics, not trained): \(grouped(buffers)) values") }
    let frozen = network.parameters.filter { !$0.isTrainable }.reduce(0) { $0 + $1.value.count }
    if frozen > 0 { print("Frozen parameters (not updated): \(grouped(frozen))") }
}

/// Writes text atomically.
func write(_ text: String, to url: URL) throws {
    try writeAtomically(Data(text.utf8), to: url)
}

/// JSON for files people read: sorted keys, indented.
func prettyJSON<T: Encodable>(_ value: T) throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    return try encoder.encode(value)
}
