import ArgumentParser
import Backprop
import BackpropData
import BackpropReport
import BackpropTraining
import Foundation

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a preset or a spec file's network and save it in a run folder.",
        discussion: """
            Flags override the preset's (or spec's) options. The run folder receives the metrics of \
            every iteration (metrics.jsonl), the model (model.safetensors + model.json), training.json \
            and, unless --no-test, the test-set evaluation (evaluation.json, confusion.csv, per_class.csv).
            """)

    @OptionGroup var experiment: ExperimentChoice
    @OptionGroup var data: DataOptions
    @OptionGroup var threading: ThreadOptions
    @Option(help: "SGD iterations.") var iterations: Int?
    @Option(help: "Images per batch.") var batchSize: Int?
    @Option(help: "Learning rate α.") var learningRate: Float?
    @Option(help: "Momentum μ (0: plain SGD with weight decay).") var momentum: Float?
    @Option(help: "Weight decay λ.") var weightDecay: Float?
    @Option(help: "Training images read from the files; the validation images are held out of these.") var trainSize: Int?
    @Option(help: "Images held out for validation.") var validationSize: Int?
    @Option(help: "Measure validation accuracy every N iterations.") var validationInterval: Int?
    @Option(help: "Smoothing factor of the moving averages.") var movingAverage: Double?
    @Flag(help: "Reshuffle the training images at each pass (the course shuffles once).") var reshuffle = false
    @Option(help: "Seed for the initial weights and the shuffle.") var seed: UInt64?
    @Option(help: ArgumentHelp("The run folder to create.", valueName: "dir")) var out: String
    @Flag(help: "Skip the test-set evaluation at the end.") var noTest = false

    func run() throws {
        try threading.apply()
        var chosen = try experiment.resolve()
        var o = chosen.options
        if let iterations { o.iterations = iterations }
        if let batchSize { o.batchSize = batchSize }
        if let learningRate { o.learningRate = learningRate }
        if let momentum { o.momentum = momentum }
        if let weightDecay { o.weightDecay = weightDecay }
        if let trainSize { o.trainSize = trainSize }
        if let validationSize { o.validationSize = validationSize }
        if let validationInterval { o.validationInterval = validationInterval }
        if let movingAverage { o.movingAverage = movingAverage }
        if reshuffle { o.reshuffleEachEpoch = true }
        if let seed { o.seed = seed }
        chosen.options = o
        try userFacing { try o.validate() }

        // Everything that can fail on the user's input fails before the run folder is made.
        let folder = URL(fileURLWithPath: out, isDirectory: true)
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: folder.path, isDirectory: &isFolder), !isFolder.boolValue {
            throw UserError("\(out) is a file, not a folder; choose another --out")
        }
        if let contents = try? FileManager.default.contentsOfDirectory(atPath: folder.path), !contents.isEmpty {
            throw UserError("\(out) already exists and is not empty; choose another --out (nothing was overwritten)")
        }
        let network = try makeNetwork(chosen, seed: o.seed)
        let dataset = try data.load(chosen.dataset, trainingLimit: o.trainSize)
        try userFacing { try o.validate(availableTrainingImages: dataset.train.count) }
        try userFacing { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) }
        try userFacing {
            try writeAtomically(JSONSerialization.data(withJSONObject: chosen.jsonObject, options: [.prettyPrinted, .sortedKeys]),
                                to: folder.appendingPathComponent(RunFiles.experiment))
        }

        let prepared = PreparedData(dataset: dataset, options: o)
        print("\(chosen.name): \(dataset.kind.displayName), \(grouped(prepared.trainLabels.count)) training / \(grouped(prepared.validationLabels.count)) validation images, \(grouped(network.parameterCount)) parameters")
        print(String(format: "%d iterations, batch %d, lr %g, momentum %g, weight decay %g, seed %llu",
                     o.iterations, o.batchSize, o.learningRate, o.momentum, o.weightDecay, o.seed))

        let metricsURL = folder.appendingPathComponent(RunFiles.metrics)
        _ = FileManager.default.createFile(atPath: metricsURL.path, contents: nil)
        let log = try userFacing { try FileHandle(forWritingTo: metricsURL) }
        defer { try? log.close() }
        var pending = Data()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]

        var progress = ProgressDisplay(total: o.iterations)
        var last: IterationMetrics?
        var lastValidation: Double?
        var failure: DivergenceError?
        let start = Date()
        do {
            try Trainer(network: network, options: o, data: prepared).run { metrics in
                // Lines are collected and written in blocks: a write per iteration cost more
                // than the iteration's arithmetic on the small nets.
                pending.append(try encoder.encode(metrics))
                pending.append(0x0A)
                if pending.count >= 1 << 16 || metrics.iteration == o.iterations {
                    try log.write(contentsOf: pending)
                    pending.removeAll(keepingCapacity: true)
                }
                progress.update(metrics)
                last = metrics
                if let v = metrics.validationAccuracy { lastValidation = v }
            }
        } catch let error as DivergenceError {
            failure = error
        }
        try userFacing { try log.write(contentsOf: pending) }
        let wall = Date().timeIntervalSince(start)

        let model = ModelArchive(network: network, spec: chosen.network, dataset: dataset.kind,
                                 preprocessing: prepared.preprocessing, classNames: dataset.classNames)
        try userFacing { try model.save(to: folder) }
        var testAccuracy: Double?
        if failure == nil && !noTest {
            let (_, report) = model.evaluate(on: dataset.test)
            testAccuracy = report.accuracy
            try userFacing { try EvaluationFiles.write(report, dataset: dataset.kind.rawValue, to: folder) }
        }
        let record = RunRecord(
            name: chosen.name, dataset: dataset.kind.rawValue, options: o, status: failure == nil ? "finished" : "diverged",
            iterationsCompleted: failure.map { $0.iteration - 1 } ?? o.iterations,
            trainImages: prepared.trainLabels.count, validationImages: prepared.validationLabels.count,
            wallSeconds: wall, imagesPerSecond: last?.imagesPerSecond ?? 0,
            finalValidationAccuracy: lastValidation, testAccuracy: testAccuracy, parameterCount: network.parameterCount)
        try userFacing { try writeAtomically(prettyJSON(record), to: folder.appendingPathComponent(RunFiles.record)) }

        if let failure {
            if progress.interactive { print() }
            throw UserError("\(failure.description); model saved in \(out)")
        }
        print(String(format: "trained in %.1f s (%.0f img/s)", wall, record.imagesPerSecond)
              + (lastValidation.map { String(format: ", validation accuracy %.2f%%", $0 * 100) } ?? ""))
        if let testAccuracy { print(String(format: "test accuracy %.2f%% on %d images", testAccuracy * 100, dataset.test.count)) }
        print("saved \(out)/\(ModelArchive.weightsFile)")
    }
}
