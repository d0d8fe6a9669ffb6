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

/// Checks the contract for a command line that is wrong (README, "Exit status"): exit status 2,
/// one `Error:` line, and, when the argument parser could not read the line (`hint`), a second
/// line pointing at the verb's help.
private func expectUsageError(_ result: ProcessResult, mentioning fragments: [String] = [], hint: String? = nil,
                              sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(result.exited && result.status == 2, "\(result.summary)", sourceLocation: sourceLocation)
    #expect(result.stderrLines.count == (hint == nil ? 1 : 2), "stderr: \(result.stderr)", sourceLocation: sourceLocation)
    #expect(result.stderrLines.first?.hasPrefix("Error: ") == true, "stderr: \(result.stderr)", sourceLocation: sourceLocation)
    if let hint { #expect(result.stderrLines.last == hint, "stderr: \(result.stderr)", sourceLocation: sourceLocation) }
    for fragment in fragments {
        #expect(result.stderr.contains(fragment), "stderr lacks \"\(fragment)\": \(result.stderr)", sourceLocation: sourceLocation)
    }
    #expect(result.stdout.isEmpty, "stdout: \(result.stdout)", sourceLocation: sourceLocation)
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

    /// The printed spec is a file `train --spec` takes, and it reads back as the preset itself
    /// (network and every training option), so a user can start their own spec from it.
    @Test("`backprop summary <preset> --print-spec` prints a spec file that reads back as the preset",
          arguments: ["mnist", "cifar-quick", "cifar-fast"])
    func printSpec(preset: String) throws {
        let result = try backprop(["summary", preset, "--print-spec"])
        expectSuccess(result)
        #expect(result.stderr.isEmpty, "\(result.stderr)")
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let file = folder.file("spec.json")
        try Data(result.stdout.utf8).write(to: file)
        let experiment = try Experiment(specFile: file)
        let expected = try #require(Experiment.preset(named: preset))
        #expect(experiment.name == expected.name && experiment.dataset == expected.dataset)
        #expect(experiment.network == expected.network)
        #expect(experiment.options == expected.options)

        expectUserError(try backprop(["summary", folder.url.path, "--print-spec"]), mentioning: ["experiment.json"])
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
        // .backprop.lock: the run's lock file (empty; the lock itself went with the process).
        #expect(files == [".backprop.lock", "confusion.csv", "evaluation.json", "experiment.json", "metrics.jsonl", "model.json",
                          "model.safetensors", "per_class.csv", "training.json"])

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

        // Every JSON file the run holds says what it is, and every key is snake_case.
        for (name, format) in [("training.json", "backprop-training-record"), ("evaluation.json", "backprop-evaluation"),
                               ("experiment.json", "backprop-experiment"), ("model.json", "backprop-model")] {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent(name))) as? [String: Any])
            #expect(object["format"] as? String == format && object["version"] as? Int == 1, "\(name)")
            #expect(camelCaseKeys(in: object).isEmpty, "\(name): \(camelCaseKeys(in: object))")
        }
        let firstLine = try #require(lines.first)
        #expect(camelCaseKeys(in: try JSONSerialization.jsonObject(with: Data(firstLine.utf8))).isEmpty)

        // summary reads the run folder too.
        let summary = try backprop(["summary", run.path])
        expectSuccess(summary)
        #expect(summary.stdout.contains("Total parameters: 14,682"))
    }

    @Test("bench --json: format, version and snake_case keys")
    func benchJSON() throws {
        let result = try backprop(["bench", "--presets", "mnist", "--batch-sizes", "4", "--seconds", "0.01", "--no-gemm", "--json"])
        expectSuccess(result)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(object["format"] as? String == "backprop-bench" && object["version"] as? Int == 1)
        let rows = try #require(object["rows"] as? [[String: Any]])
        #expect(rows.count == 1 && rows.first?["batch_size"] as? Int == 4 && rows.first?["preset"] as? String == "mnist")
        #expect((rows.first?["train_images_per_second"] as? Double ?? 0) > 0)
        #expect(camelCaseKeys(in: object).isEmpty, "\(camelCaseKeys(in: object))")
    }

    @Test("train without --out makes a new runs/<preset>-<date>-<time> folder each time and says which")
    func defaultRunFolder() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let executable = try #require(backpropExecutable)
        let arguments = ["train", "mnist", "--iterations", "2", "--train-size", "300", "--validation-size", "100",
                         "--no-test", "--data-dir", dataDir]
        var made: [String] = []
        for _ in 0..<2 {
            let result = try runProcess(executable, arguments, in: folder.url)
            expectSuccess(result)
            let line = try #require(result.stdout.split(separator: "\n").first { $0.hasPrefix("run folder: ") })
            let path = String(line.dropFirst("run folder: ".count))
            #expect(path.wholeMatch(of: /runs\/mnist-\d{8}-\d{6}(-\d+)?/) != nil, "\(path)")
            #expect(FileManager.default.fileExists(atPath: folder.file(path).appendingPathComponent("model.safetensors").path))
            #expect(result.stdout.contains("saved \(path)/model.safetensors"))
            made.append(path)
        }
        #expect(made[0] != made[1], "the second run reused \(made[0])")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.file("runs").path).count == 2)
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

    // MARK: Terminal and messages: the command line, exit statuses, stdout and stderr

    @Test("negative numbers are read as values, then range-checked")
    func negativeNumbers() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let run = folder.file("run")
        let train = ["train", "mnist", "--data-dir", dataDir, "--out", run.path]
        expectUsageError(try backprop(train + ["--learning-rate", "-1"]), mentioning: ["learning rate", "-1"])
        expectUsageError(try backprop(train + ["--learning-rate=-1"]), mentioning: ["learning rate", "-1"])
        expectUsageError(try backprop(train + ["--momentum", "-0.5"]), mentioning: ["momentum", "-0.5"])
        expectUsageError(try backprop(train + ["--iterations", "-5"]), mentioning: ["iterations", "-5"])
        expectUsageError(try backprop(train + ["--learning-rate", "inf"]), mentioning: ["learning rate", "inf"])
        expectUsageError(try backprop(train + ["--threads", "-2"]), mentioning: ["--threads", "-2"])
        #expect(!FileManager.default.fileExists(atPath: run.path), "a range error created the run folder")
        expectUsageError(try backprop(["bench", "--seconds", "-1"]), mentioning: ["--seconds", "-1"])
        expectUsageError(try backprop(["gradcheck", "mnist", "--step", "-1e-5"]), mentioning: ["--step"])
        expectUsageError(try backprop(["report", run.path, "--per-pair", "-3"]), mentioning: ["--per-pair"])
        // A value the option's type cannot hold is the argument parser's error: with the hint.
        expectUsageError(try backprop(train + ["--seed", "-1"]), mentioning: ["'-1'", "--seed"], hint: "See 'backprop train --help'.")
    }

    @Test("an unknown verb is an error with a suggestion, also after `help`")
    func unknownVerb() throws {
        for arguments in [["help", "trian"], ["trian"], ["trian", "mnist", "--out", "x"]] {
            expectUsageError(try backprop(arguments), mentioning: ["unknown command 'trian'", "did you mean 'train'?"])
        }
        expectUsageError(try backprop(["frobnicate"]), mentioning: ["unknown command 'frobnicate'", "train, evaluate"])
        let help = try backprop(["help", "train"])
        expectSuccess(help)
        #expect(help.stdout.contains("USAGE: backprop train"), "\(help.stdout.prefix(300))")
    }

    @Test("--version prints the version")
    func version() throws {
        let result = try backprop(["--version"])
        expectSuccess(result)
        #expect(result.stdout.wholeMatch(of: /backprop \d+\.\d+\.\d+\n/) != nil, "\(result.stdout)")
        #expect(result.stderr.isEmpty, "\(result.stderr)")
    }

    @Test("a command line the parser cannot read: exit 2, one Error: line and one hint")
    func parserErrors() throws {
        expectUsageError(try backprop(["train", "mnist", "--learnig-rate", "0.1"]),
                         mentioning: ["'--learnig-rate'", "'--learning-rate'"], hint: "See 'backprop train --help'.")
        expectUsageError(try backprop(["train", "mnist", "--learning-rate"]), mentioning: ["--learning-rate"],
                         hint: "See 'backprop train --help'.")
        expectUsageError(try backprop(["--bogus"]), mentioning: ["--bogus"], hint: "See 'backprop --help'.")
    }

    @Test("an empty path is refused by name")
    func emptyPaths() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        expectUsageError(try backprop(["train", "mnist", "--data-dir", dataDir, "--out", ""]), mentioning: ["--out is empty"])
        expectUsageError(try backprop(["train", "--resume", ""]), mentioning: ["--resume is empty"])
        expectUsageError(try backprop(["report", folder.url.path, "--out", ""]), mentioning: ["--out is empty"])
        expectUsageError(try backprop(["evaluate", ""]), mentioning: ["run folder is empty"])
        expectUsageError(try backprop(["summary", "--spec", ""]), mentioning: ["--spec is empty"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.url.path).isEmpty)
    }

    /// Foundation's own text ("The file doesn't exist.", "NSCocoaErrorDomain error 512") names
    /// no path; the message must name the folder that could not be made.
    @Test("a run folder that cannot be created: one line naming the path and the reason")
    func unwritableOut() throws {
        let result = try backprop(["train", "mnist", "--iterations", "2", "--train-size", "1000", "--validation-size", "100",
                                   "--data-dir", dataDir, "--out", "/proc/forbidden/x"])
        expectUserError(result, mentioning: ["cannot create the run folder /proc/forbidden/x ("])
        #expect(result.status == 1, "\(result.summary)")
        #if os(Linux)
        #expect(result.stderr.contains("/proc/forbidden: no such file or directory"), "\(result.stderr)")
        #endif
        for foundation in ["Error Domain", "NSCocoaErrorDomain", "could not be completed", "doesn’t exist"] {
            #expect(!result.stderr.contains(foundation), "\(result.stderr)")
        }
    }

    /// With `> log 2>&1` standard output is block-buffered and standard error is not: unless
    /// the error is written after a flush, it lands above the lines printed before it.
    @Test("with stdout and stderr in one file, the error comes after the output before it")
    func outputOrder() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        // A learning rate of 1000 diverges at iteration 5 (measured), long before the first
        // progress line (at 50 of 1000 iterations) would flush the two header lines.
        let (status, output) = try backpropMergingOutput(["train", "mnist", "--learning-rate", "1000", "--iterations", "1000",
                                                          "--train-size", "1000", "--validation-size", "100",
                                                          "--data-dir", dataDir, "--out", folder.file("run").path])
        #expect(status == 1, "\(output)")
        let lines = output.split(separator: "\n").map(String.init)
        #expect(lines.count == 3, "\(output)")
        #expect(lines.first?.hasPrefix("mnist: MNIST") == true, "\(output)")
        #expect(lines.last?.hasPrefix("Error: training diverged") == true, "\(output)")
    }

    @Test("an exploding loss is printed in scientific notation")
    func explodingLoss() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        // Measured: the loss is 2.5e5 at iteration 2 and 5.8e21 at iteration 4; NaN at 5.
        let result = try backprop(["train", "mnist", "--learning-rate", "1000", "--iterations", "40",
                                   "--train-size", "1000", "--validation-size", "100",
                                   "--data-dir", dataDir, "--out", folder.file("run").path])
        expectUserError(result, mentioning: ["diverged"])
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.contains { $0.contains(#/^it \d+/40  loss \d\.\d{3}e\+\d\d  /#) }, "\(result.stdout)")
        #expect(!lines.contains { $0.contains(/loss -?\d{7,}\./) }, "\(result.stdout)")
    }
}

/// Runs `backprop` with standard output and standard error going to one file, as `> log 2>&1`
/// does; returns the exit status and the file.
private func backpropMergingOutput(_ arguments: [String]) throws -> (status: Int32, output: String) {
    let executable = try #require(backpropExecutable, "the backprop executable was not found beside the test bundle")
    let folder = try TemporaryFolder()
    defer { folder.remove() }
    let logURL = folder.file("log")
    _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
    let log = try FileHandle(forWritingTo: logURL)
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    process.currentDirectoryURL = TestPaths.packageRoot
    process.standardOutput = log
    process.standardError = log
    process.standardInput = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    try log.close()
    return (process.terminationStatus, String(decoding: try Data(contentsOf: logURL), as: UTF8.self))
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

/// The keys of `json` (nested objects and arrays included) that hold an upper-case letter.
func camelCaseKeys(in json: Any) -> [String] {
    if let object = json as? [String: Any] {
        return object.keys.filter { $0.contains(where: \.isUppercase) } + object.values.flatMap { camelCaseKeys(in: $0) }
    }
    if let array = json as? [Any] { return array.flatMap { camelCaseKeys(in: $0) } }
    return []
}
