import Backprop
import BackpropData
import BackpropTraining
import Foundation
import BackpropTestSupport
import Testing

/// Checks the contract for a user's mistake: a normal exit (never a signal: no crash, no trap)
/// with a non-zero status and exactly one line on stderr, starting with "Error:".
private func expectUserError(_ result: ProcessResult, mentioning fragments: [String] = [],
                             sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(result.exited, "killed by signal \(result.status): \(result.summary)", sourceLocation: sourceLocation)
    #expect(result.status != 0, "exit status 0: \(result.summary)", sourceLocation: sourceLocation)
    #expect(result.stderrLines.count == 1, "stderr is not one line: \(result.stderr)", sourceLocation: sourceLocation)
    #expect(result.stderrLines.first?.hasPrefix("Error:") == true, "stderr: \(result.stderr)", sourceLocation: sourceLocation)
    for fragment in fragments {
        #expect(result.stderr.contains(fragment), "stderr lacks \"\(fragment)\": \(result.stderr)", sourceLocation: sourceLocation)
    }
}

private func expectSuccess(_ result: ProcessResult, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(result.exited && result.status == 0, "\(result.summary)", sourceLocation: sourceLocation)
}

private var dataDir: String { TestData.root.path }

/// Copies the four MNIST files into a fresh folder, replacing one with `replacement` bytes
/// (under the name `replacementName`), so a test can break one file without touching the others.
private func mnistCopy(replacing officialName: String, with replacement: Data, as replacementName: String) throws -> TemporaryFolder {
    let folder = try TemporaryFolder()
    for name in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    where name != officialName {
        try FileManager.default.copyItem(at: TestData.mnist.appendingPathComponent(name + ".gz"), to: folder.file(name + ".gz"))
    }
    try replacement.write(to: folder.file(replacementName))
    return folder
}

@Suite("backprop command line")
struct CLITests {
    @Test("`backprop summary <preset>` prints the parameter totals and shapes",
          arguments: [("mnist", "14,682", "16x7x7"), ("cifar10", "48,602", "4096"), ("cifar10-improved", "50,922", "16x16x16")])
    func summary(preset: String, total: String, shape: String) throws {
        let result = try backprop(["summary", preset])
        expectSuccess(result)
        #expect(result.stdout.contains("Total parameters: \(total)\n"), "\(result.stdout)")
        #expect(result.stdout.contains(shape), "\(result.stdout)")
        #expect(result.stderr.isEmpty, "\(result.stderr)")
    }

    @Test("`backprop gradcheck mnist` passes")
    func gradcheck() throws {
        let result = try backprop(["gradcheck", "mnist", "--entries", "3", "--batch-size", "2"])
        expectSuccess(result)
        #expect(result.stdout.contains("all 6 parameter tensors pass"), "\(result.stdout)")
    }

    /// `train mnist --iterations 200` writes the whole run folder; `evaluate` then reproduces the
    /// test accuracy recorded at training. Measured (200 iterations, the preset's seed 42,
    /// Swift 6.3.1 x86-64): test accuracy 0.9487, validation accuracy 0.940, ~6 s of training.
    @Test("train writes a complete run folder, and evaluate reproduces its test accuracy")
    func trainThenEvaluate() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let run = folder.url.appendingPathComponent("run")
        let training = try backprop(["train", "mnist", "--iterations", "200", "--data-dir", dataDir, "--out", run.path])
        expectSuccess(training)
        #expect(training.stderr.isEmpty, "\(training.stderr)")

        let files = try FileManager.default.contentsOfDirectory(atPath: run.path).sorted()
        #expect(files == ["confusion.csv", "evaluation.json", "experiment.json", "metrics.jsonl", "model.json", "model.safetensors",
                          "per_class.csv", "training.json"])

        // metrics.jsonl: 200 JSON objects, iterations 1...200, validation at 200 (the preset's interval and the last).
        let lines = try String(decoding: Data(contentsOf: run.appendingPathComponent("metrics.jsonl")), as: UTF8.self)
            .split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 201 && lines.last == "", "metrics.jsonl should be 200 newline-terminated lines")
        let metrics = try lines.filter { !$0.isEmpty }.map { try JSONDecoder().decode(IterationMetrics.self, from: Data($0.utf8)) }
        #expect(metrics.map(\.iteration) == Array(1...200))
        #expect(metrics.filter { $0.validationAccuracy != nil }.map(\.iteration) == [200])

        let record = try JSONDecoder().decode(RunRecord.self, from: Data(contentsOf: run.appendingPathComponent("training.json")))
        #expect(record.status == "finished")
        #expect(record.iterationsCompleted == 200)
        #expect(record.options.iterations == 200 && record.options.seed == 42)
        #expect(record.trainImages == 58_000 && record.validationImages == 2000)
        #expect(record.parameterCount == 14_682)
        #expect(record.finalValidationAccuracy == metrics.last?.validationAccuracy)
        let testAccuracy = try #require(record.testAccuracy)
        #expect(testAccuracy >= 0.9, "test accuracy after 200 iterations: \(testAccuracy)")

        let trainedEvaluation = try JSONDecoder().decode(EvaluationRecord.self, from: Data(contentsOf: run.appendingPathComponent("evaluation.json")))
        #expect(trainedEvaluation.images == 10_000 && trainedEvaluation.report.total == 10_000)
        #expect(trainedEvaluation.report.accuracy == testAccuracy)

        // experiment.json reruns the same experiment.
        let experiment = try Experiment(specFile: run.appendingPathComponent("experiment.json"))
        #expect(experiment.network == Experiment.preset(named: "mnist")?.network)
        #expect(experiment.options == record.options)

        // The model loads and its description matches.
        let model = try ModelArchive.load(from: run)
        #expect(model.dataset == .mnist && model.classNames == (0...9).map(String.init))

        // evaluate prints the same accuracy and writes the same report.
        let evaluation = try backprop(["evaluate", run.path, "--data-dir", dataDir])
        expectSuccess(evaluation)
        let expectedLine = String(format: "test accuracy %.2f%% (%d of %d)", testAccuracy * 100, trainedEvaluation.report.correct, 10_000)
        #expect(evaluation.stdout.hasPrefix(expectedLine + "\n"), "expected \"\(expectedLine)\", got: \(evaluation.stdout.prefix(200))")
        let evaluated = try JSONDecoder().decode(EvaluationRecord.self, from: Data(contentsOf: run.appendingPathComponent("evaluation.json")))
        #expect(evaluated.report == trainedEvaluation.report)

        // summary reads the run folder too.
        let summary = try backprop(["summary", run.path])
        expectSuccess(summary)
        #expect(summary.stdout.contains("Total parameters: 14,682"))
    }

    // MARK: User errors: one "Error:" line, a non-zero exit, never a crash

    @Test("a missing data folder")
    func missingDataFolder() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let run = folder.file("run")
        let result = try backprop(["train", "mnist", "--iterations", "5", "--data-dir", folder.file("no-such-folder").path, "--out", run.path])
        expectUserError(result, mentioning: ["no-such-folder"])
        #expect(!FileManager.default.fileExists(atPath: run.path), "the run folder was created before the data were found")
    }

    @Test("a truncated MNIST file (uncompressed)")
    func truncatedRawFile() throws {
        // t10k-labels: 8 header bytes + 10,000 labels; keep 5,000 bytes.
        let labels = try Data(contentsOf: TestData.mnist.appendingPathComponent("t10k-labels-idx1-ubyte.gz"))
        let raw = try gunzip(labels)
        try #require(raw.count == 10_008)
        let data = try mnistCopy(replacing: "t10k-labels-idx1-ubyte", with: raw.prefix(5000), as: "t10k-labels-idx1-ubyte")
        defer { data.remove() }
        let run = data.file("run")
        let result = try backprop(["train", "mnist", "--iterations", "5", "--train-size", "1000", "--validation-size", "100",
                                   "--data-dir", data.url.path, "--out", run.path])
        expectUserError(result, mentioning: ["t10k-labels-idx1-ubyte", "truncated"])
        #expect(!FileManager.default.fileExists(atPath: run.path))
    }

    @Test("a truncated MNIST file (gzip)")
    func truncatedGzipFile() throws {
        let labels = try Data(contentsOf: TestData.mnist.appendingPathComponent("t10k-labels-idx1-ubyte.gz"))
        let data = try mnistCopy(replacing: "t10k-labels-idx1-ubyte", with: labels.prefix(labels.count / 2), as: "t10k-labels-idx1-ubyte.gz")
        defer { data.remove() }
        let result = try backprop(["train", "mnist", "--iterations", "5", "--train-size", "1000", "--validation-size", "100",
                                   "--data-dir", data.url.path, "--out", data.file("run").path])
        expectUserError(result, mentioning: ["t10k-labels-idx1-ubyte.gz"])
    }

    @Test("a spec file whose shapes do not fit")
    func specWithBadShapes() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        // 28 → pool 14 → pool 7 → pool 3 → a 5x5 kernel does not fit 3x3.
        let spec = folder.file("bad.json")
        try Data("""
            {"dataset": "mnist", "input": [1, 28, 28], "layers": [
              {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1}, {"type": "relu"},
              {"type": "maxpool2d"}, {"type": "maxpool2d"}, {"type": "maxpool2d"},
              {"type": "conv2d", "out_channels": 8, "kernel_size": 5},
              {"type": "dense", "out_features": 10}, {"type": "softmaxloss"}]}
            """.utf8).write(to: spec)
        let run = folder.file("run")
        let result = try backprop(["train", "--spec", spec.path, "--iterations", "5", "--data-dir", dataDir, "--out", run.path])
        expectUserError(result, mentioning: ["layer 5", "8x3x3", "5x5"])
        #expect(!FileManager.default.fileExists(atPath: run.path))
        expectUserError(try backprop(["summary", "--spec", spec.path]), mentioning: ["layer 5"])
    }

    @Test("an unknown preset")
    func unknownPreset() throws {
        expectUserError(try backprop(["summary", "mnsit"]), mentioning: ["mnsit"])
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        expectUserError(try backprop(["train", "cifar100", "--data-dir", dataDir, "--out", folder.file("run").path]), mentioning: ["cifar100"])
    }

    @Test("--out pointing at a folder that is not empty leaves it untouched")
    func outFolderNotEmpty() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let run = folder.file("run")
        try FileManager.default.createDirectory(at: run.appendingPathComponent("nested"), withIntermediateDirectories: true)
        try Data("my notes\n".utf8).write(to: run.appendingPathComponent("notes.txt"))
        try Data("{\"precious\": true}".utf8).write(to: run.appendingPathComponent("training.json"))
        try Data([1, 2, 3]).write(to: run.appendingPathComponent("nested/model.safetensors"))
        let before = try snapshot(of: run)
        let result = try backprop(["train", "mnist", "--iterations", "5", "--data-dir", dataDir, "--out", run.path])
        expectUserError(result, mentioning: [run.path])
        #expect(try snapshot(of: run) == before, "the existing folder's files changed")
    }

    @Test("evaluate on a folder without a model, or with a broken one")
    func evaluateWithoutModel() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        expectUserError(try backprop(["evaluate", folder.url.path, "--data-dir", dataDir]), mentioning: ["model.safetensors"])
        expectUserError(try backprop(["evaluate", folder.file("missing").path, "--data-dir", dataDir]))

        // A saved (untrained) model, then the data missing, then the model truncated.
        let experiment = try preset("mnist")
        let network: Network<Float> = try makeNetwork(experiment, seed: 1)
        try ModelArchive(network: network, spec: experiment.network, dataset: .mnist,
                         preprocessing: Preprocessing(scale: 1 / 255, mean: [0.13]), classNames: (0...9).map(String.init))
            .save(to: folder.url)
        expectUserError(try backprop(["evaluate", folder.url.path, "--data-dir", folder.file("no-data").path]), mentioning: ["no-data"])
        let file = folder.file(ModelArchive.weightsFile)
        let good = try Data(contentsOf: file)
        try good.prefix(good.count / 2).write(to: file)
        expectUserError(try backprop(["evaluate", folder.url.path, "--data-dir", dataDir]), mentioning: ["model.safetensors"])
        expectUserError(try backprop(["summary", folder.url.path]), mentioning: ["model.safetensors"])
    }

    /// A shape in the safetensors header whose element count overflows `Int` (2^32 · 2^32):
    /// `Safetensors.decode` computes `shape.reduce(1, *)` before checking anything, which traps.
    @Test("a model header whose shape overflows is an error, not a crash")
    func overflowingShape() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let experiment = try preset("mnist")
        let network: Network<Float> = try makeNetwork(experiment, seed: 1)
        try ModelArchive(network: network, spec: experiment.network, dataset: .mnist,
                         preprocessing: Preprocessing(scale: 1 / 255, mean: [0.13]), classNames: (0...9).map(String.init))
            .save(to: folder.url)
        let file = folder.file(ModelArchive.weightsFile)
        var parts = try SafetensorsParts(Data(contentsOf: file))
        var entry = try #require(parts.header["0.bias"] as? [String: Any])
        entry["shape"] = [4_294_967_296, 4_294_967_296]
        parts.header["0.bias"] = entry
        try parts.data.write(to: file)
        let result = try backprop(["evaluate", folder.url.path, "--data-dir", dataDir])
        expectUserError(result, mentioning: ["0.bias"])
    }

    /// Model descriptions whose weights fit their architecture but whose architecture does not fit
    /// the data set they name (each once trapped in `evaluate`; `ModelArchive.load` now refuses them):
    /// - more outputs than class names (`ClassificationReport` would index past its matrix);
    /// - no mean (`Preprocessing.apply` would read `mean[0]` of an empty array);
    /// - a 1x28x28 network labelled CIFAR-10 (`Sequential.forward`'s batch-shape precondition).
    @Test("a model description that does not fit its data set is an error, not a crash",
          arguments: ["more outputs than classes", "no mean", "wrong data set"])
    func modelThatDoesNotFitItsData(_ defect: String) throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        var spec = try preset("mnist").network
        var dataset = DatasetKind.mnist
        var preprocessing = Preprocessing(scale: 1 / 255, mean: [0.13])
        switch defect {
        case "more outputs than classes": spec.layers[spec.layers.count - 1] = .dense(outputFeatures: 12, initScale: 1)
        case "no mean": preprocessing.mean = []
        default: dataset = .cifar10
        }
        var g = SeededGenerator(seed: 1)
        let network = try spec.makeNetwork(Float.self, using: &g)
        if defect == "more outputs than classes" {
            network.namedParameters.last!.parameter.value.scalars[11] = 1000  // class 11 wins everywhere
        }
        try ModelArchive(network: network, spec: spec, dataset: dataset, preprocessing: preprocessing,
                         classNames: (0...9).map(String.init)).save(to: folder.url)
        let result = try backprop(["evaluate", folder.url.path, "--data-dir", dataDir])
        expectUserError(result)
    }
}

/// The decompressed bytes of a gzip file (through the system's `gzip`, which every CI image has).
private func gunzip(_ data: Data) throws -> Data {
    let folder = try TemporaryFolder()
    defer { folder.remove() }
    let file = folder.file("x.gz")
    try data.write(to: file)
    let result = try runProcess(URL(fileURLWithPath: "/bin/sh"), ["-c", "gzip -dc \"$0\" > \"$0.out\"", file.path])
    try #require(result.exited && result.status == 0, "gzip failed: \(result.summary)")
    return try Data(contentsOf: URL(fileURLWithPath: file.path + ".out"))
}
