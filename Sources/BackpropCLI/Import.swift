import ArgumentParser
import Backprop
import BackpropData
import BackpropONNX
import BackpropTraining
import Foundation

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Read an ONNX model (e.g. from torch.onnx.export or backprop export) into a new run folder.",
        discussion: """
            The graph must be a chain of the layers Backprop has (Conv, Gemm or MatMul+Add, Relu, GELU, \
            BatchNormalization, MaxPool, AveragePool, global pooling, Flatten, Dropout, Mul by a constant) \
            with residual blocks (two paths summed by Add); a final Softmax is left out. The run folder \
            gets model.safetensors, model.json and experiment.json, so `evaluate`, `export` and \
            `train --spec RUN/experiment.json --init RUN` work on it. The preprocessing comes from the \
            file's metadata (backprop export writes it) or from --scale and --mean.
            """)

    @Argument(help: ArgumentHelp("The ONNX file.", valueName: "model.onnx")) var file: String
    @Option(help: ArgumentHelp("The run folder to create.", valueName: "dir")) var out: String?
    @Option(help: "The data set the model classifies: \(DatasetKind.nameList) (default: the file's metadata, else the one whose images have the input's shape).")
    var dataset: String?
    @Option(parsing: .unconditional, help: "Preprocessing: the factor applied to each byte (x = byte * scale - mean), e.g. 0.00392156862745098 for 1/255.")
    var scale: Double?
    @Option(help: ArgumentHelp("Preprocessing: the mean subtracted after scaling, one value or one per channel, comma-separated.", valueName: "m[,m,m]"))
    var mean: String?

    func run() throws {
        guard let out else { throw UserError.usage("name the run folder to create with --out DIR") }
        let folder = URL(fileURLWithPath: try nonEmpty(out, "--out"), isDirectory: true)
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: folder.path, isDirectory: &isFolder), !isFolder.boolValue {
            throw UserError("\(out) is a file, not a folder; choose another --out")
        }
        if let contents = try? FileManager.default.contentsOfDirectory(atPath: folder.path), !contents.isEmpty {
            throw UserError("\(out) already exists and is not empty; choose another --out (nothing was overwritten)")
        }
        if (scale == nil) != (mean == nil) { throw UserError.usage("give --scale and --mean together") }
        var flagged: Preprocessing?
        if let scale, let mean {
            let means = mean.split(separator: ",", omittingEmptySubsequences: false).map { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard scale.isFinite, scale > 0, Float(scale).isFinite, !means.isEmpty, means.count <= 3,
                  means.allSatisfy({ $0 != nil && $0!.isFinite }) else {
                throw UserError.usage("--scale must be a positive number and --mean one to three comma-separated numbers")
            }
            flagged = Preprocessing(scale: Float(scale), mean: means.map { Float($0!) })
        }
        var kind: DatasetKind?
        if let dataset {
            guard let chosen = DatasetKind(rawValue: dataset) else {
                throw UserError.usage("unknown data set '\(dataset)' (\(DatasetKind.allCases.map(\.rawValue).joined(separator: " or ")))")
            }
            kind = chosen
        }

        let model = try userFacing { try ONNXModel(contentsOf: URL(fileURLWithPath: try nonEmpty(file, "the ONNX file"))) }
        let input = model.network.inputShape
        if kind == nil { kind = model.recordedDataset }
        if kind == nil {
            let fitting = DatasetKind.allCases.filter { $0.imageShape == input }
            guard fitting.count == 1 else {
                let fits = fitting.isEmpty ? "no data set Backprop has by name" : "\(fitting.map(\.rawValue).joined(separator: " and ")) images"
                throw UserError("\(file): the file names no data set and the input \(describe(shape: input)) fits \(fits); name one with --dataset (\(DatasetKind.nameList))")
            }
            kind = fitting[0]
        }
        let chosen = kind!
        if let shape = chosen.imageShape, shape != input {
            throw UserError("\(file): the model's input \(describe(shape: input)) does not match \(chosen.displayName) images (\(describe(shape: shape)))")
        }
        let classes = model.network.outputShape[0]
        let classNames = model.recordedClassNames.flatMap { $0.count == classes ? $0 : nil } ?? chosen.standardClassNames ?? []
        guard classNames.count == classes else {
            throw UserError("\(file): the model gives \(classes) scores; \(chosen.displayName) has \(classNames.count) classes")
        }
        let recorded = try userFacing { try model.recordedPreprocessing() }
        guard let preprocessing = flagged ?? recorded else {
            throw UserError("\(file): the file records no preprocessing; give the one the model was trained with, e.g. --scale 0.00392156862745098 --mean 0.1307 (x = byte * scale - mean)")
        }
        guard preprocessing.mean.count == 1 || preprocessing.mean.count == input[0] else {
            throw UserError.usage("--mean has \(preprocessing.mean.count) values for \(input[0]) channels")
        }

        let augmentation = try userFacing { try model.recordedTestTimeAugmentation() } ?? TestTimeAugmentation()
        let archive = ModelArchive(network: model.network, spec: model.spec, dataset: chosen, preprocessing: preprocessing, classNames: classNames,
                                   testTimeAugmentation: augmentation)
        let name = folder.lastPathComponent
        let experiment = Experiment(name: name, dataset: chosen, network: model.spec, options: Experiment.defaultOptions(for: chosen))
        try userFacing("create the run folder \(out)") { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) }
        try userFacing("write the model in \(out)") {
            try archive.save(to: folder)
            try writeAtomically(JSONSerialization.data(withJSONObject: experiment.jsonObject, options: [.prettyPrinted, .sortedKeys]),
                                to: folder.appendingPathComponent(RunFiles.experiment))
        }
        for note in model.notes { print("note: \(note)") }
        print("imported \(file): \(model.spec.layers.count) layers, \(grouped(model.network.parameterCount)) parameters, input \(describe(shape: input)) (\(chosen.displayName)), \(classes) classes")
        print("preprocessing: x = byte * \(String(format: "%g", preprocessing.scale)) - mean, mean [\(preprocessing.mean.map { String(format: "%g", $0) }.joined(separator: ", "))]")
        if !augmentation.isIdentity { print("test-time augmentation (from the file's metadata): \(augmentation.description)") }
        print("saved \(out)/\(ModelArchive.weightsFile), \(ModelArchive.descriptionFile) and \(RunFiles.experiment); try `backprop evaluate \(out)`")
    }
}
