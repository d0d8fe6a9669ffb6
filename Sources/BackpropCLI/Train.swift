import ArgumentParser
import Backprop
import BackpropData
import BackpropReport
import BackpropTraining
import Foundation

/// Set by SIGINT/SIGTERM during training; the loop checks it after each iteration.
nonisolated(unsafe) private var interruptRequested: sig_atomic_t = 0

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a preset or a spec file's network and save it in a run folder, or resume an interrupted run.",
        discussion: """
            Flags override the preset's (or spec's) options. The run folder receives the metrics of \
            every iteration (metrics.jsonl), the model (model.safetensors + model.json), training.json \
            and, unless --no-test, the test-set evaluation (evaluation.json, confusion.csv, per_class.csv). \
            A checkpoint (checkpoint.safetensors) is written every --checkpoint-interval iterations and on \
            Ctrl-C or SIGTERM; `backprop train --resume runs/NAME` continues from it, ending with the \
            same model bytes as a run that never stopped.
            """)

    @OptionGroup var experiment: ExperimentChoice
    @OptionGroup var data: DataOptions
    @OptionGroup var threading: ThreadOptions
    // Numbers are read `.unconditional`ly: by default `--learning-rate -1` takes `-1` for a flag
    // and reports a missing value; this way it reaches the range checks.
    @Option(parsing: .unconditional, help: "Optimizer steps.") var iterations: Int?
    @Option(parsing: .unconditional, help: "Images per batch.") var batchSize: Int?
    @Option(parsing: .unconditional, help: "Learning rate α (a schedule's base or peak).") var learningRate: Float?
    @Option(parsing: .unconditional, help: "Momentum μ (0: plain SGD with weight decay); AdamW's β1.") var momentum: Float?
    @Option(parsing: .unconditional, help: "Weight decay λ.") var weightDecay: Float?
    @Option(help: "course_sgd (the course's momentum SGD), sgd (torch.optim.SGD) or adamw.") var optimizer: String?
    @Flag(help: "Nesterov momentum (sgd).") var nesterov = false
    @Flag(help: "Decoupled weight decay w *= 1 − αλ (sgd; adamw always decouples).") var decoupledWeightDecay = false
    @Option(help: "Learning-rate schedule: constant, step:EVERY:FACTOR, cosine[:MIN], onecycle[:key=value,…], warmup:STEPS+SCHEDULE.")
    var schedule: String?
    @Option(parsing: .unconditional, help: "Label smoothing ε of the loss.") var labelSmoothing: Double?
    @Option(parsing: .unconditional, help: "Decay of a moving average of the weights, used for validation and saved as the model (0: off).") var ema: Double?
    @Flag(help: "Warm the moving average's decay up as min(ema, (1 + n)/(10 + n)) after n steps.") var emaWarmup = false
    @Flag(help: "Lookahead as airbench94 runs it: every 5 steps the slow weights move towards the live ones (decay 0.95^5 · (t/T)^3) and the live ones are reset to them; the model is the slow weights.")
    var lookahead = false
    @Option(help: "Augmentation: none, flip, altflip, crop:P[:zero|reflect], translate:K[:zero|reflect], comma-separated.")
    var augment: String?
    @Option(help: "Test-time augmentation of the saved model: none, flip, translate:K[:fill], shift:K[:fill], grid:K[:fill], comma-separated.")
    var tta: String?
    @Option(parsing: .unconditional, help: "Training images read from the files; the validation images are held out of these.") var trainSize: Int?
    @Option(parsing: .unconditional, help: "Images held out for validation.") var validationSize: Int?
    @Option(parsing: .unconditional, help: "Measure validation accuracy every N iterations.") var validationInterval: Int?
    @Option(parsing: .unconditional, help: "Smoothing factor of the moving averages.") var movingAverage: Double?
    @Flag(help: "Reshuffle the training images at each pass (the course shuffles once).") var reshuffle = false
    @Option(parsing: .unconditional, help: "Seed for the initial weights, the shuffle, dropout and augmentation.") var seed: UInt64?
    @Option(parsing: .unconditional, help: "Write a checkpoint every K iterations (0: only on an interrupt).") var checkpointInterval: Int?
    @Flag(help: "Also keep the model with the best validation accuracy (best.safetensors).") var saveBest = false
    @Option(help: ArgumentHelp("The run folder to create (default: runs/<preset>-<date>-<time>, a new folder each time).", valueName: "dir"))
    var out: String?
    @Option(help: ArgumentHelp("Continue the interrupted run in this folder.", valueName: "dir")) var resume: String?
    @Option(name: .customLong("init"), help: ArgumentHelp(
        "Start from the weights and preprocessing of this run folder's model (e.g. one made by `backprop import`) instead of fresh ones; without a preset or --spec, the folder's experiment.json gives the network and options.",
        valueName: "dir"))
    var initialModel: String?
    @Flag(help: "Skip the test-set evaluation at the end.") var noTest = false

    /// Whether any flag that changes the training options was given.
    private var setsTrainingOptions: Bool {
        let values: [Any?] = [iterations, batchSize, learningRate, momentum, weightDecay, optimizer, schedule, labelSmoothing,
                              ema, augment, tta, trainSize, validationSize, validationInterval, movingAverage, seed, checkpointInterval]
        return values.contains { $0 != nil } || initialModel != nil || nesterov || decoupledWeightDecay || reshuffle || saveBest || emaWarmup || lookahead
    }

    /// The options the flags set, over the experiment's.
    private func options(over base: TrainingOptions) throws -> TrainingOptions {
        var o = base
        if let iterations { o.iterations = iterations }
        if let batchSize { o.batchSize = batchSize }
        if let learningRate { o.learningRate = learningRate }
        if let momentum { o.momentum = momentum }
        if let weightDecay { o.weightDecay = weightDecay }
        if let optimizer {
            guard let kind = OptimizerKind(rawValue: optimizer) else {
                throw UserError.usage("unknown optimizer '\(optimizer)' (course_sgd, sgd or adamw)")
            }
            o.optimizer = kind
        }
        if nesterov { o.nesterov = true }
        if decoupledWeightDecay { o.decoupledWeightDecay = true }
        if let schedule { o.schedule = try flagValue { try Schedule(parsing: schedule) } }
        if let labelSmoothing { o.labelSmoothing = labelSmoothing }
        if let ema { o.ema = ema }
        if emaWarmup { o.emaWarmUp = true }
        if lookahead && o.lookahead == nil { o.lookahead = LookaheadOptions() }
        if let augment { o.augmentation = try flagValue { try Augmentation(parsing: augment) } }
        if let tta { o.testTimeAugmentation = try flagValue { try TestTimeAugmentation(parsing: tta) } }
        if let trainSize { o.trainSize = trainSize }
        if let validationSize { o.validationSize = validationSize }
        if let validationInterval { o.validationInterval = validationInterval }
        if let movingAverage { o.movingAverage = movingAverage }
        if reshuffle { o.reshuffleEachEpoch = true }
        if let seed { o.seed = seed }
        if let checkpointInterval { o.checkpointInterval = checkpointInterval }
        if saveBest { o.saveBest = true }
        return o
    }

    func run() throws {
        try threading.apply()
        if let resume { return try resumeRun(at: resume) }
        if let out { _ = try nonEmpty(out, "--out") }
        var chosen: Experiment
        if let initialModel, experiment.preset == nil, experiment.spec == nil {
            // `train --init RUN` alone: the run's own experiment.json (`train` and `import` write
            // one), so the architecture is the model's.
            let path = try nonEmpty(initialModel, "--init")
            let file = URL(fileURLWithPath: path, isDirectory: true).appendingPathComponent(RunFiles.experiment)
            guard FileManager.default.fileExists(atPath: file.path) else {
                throw UserError.usage("--init \(path): the folder has no \(RunFiles.experiment); name the network with a preset or --spec FILE")
            }
            chosen = try userFacing { try Experiment(specFile: file) }
            if let name = experiment.dataset {
                guard let kind = DatasetKind(rawValue: name) else { throw UserError.usage("unknown data set '\(name)' (\(DatasetKind.nameList))") }
                if let shape = kind.imageShape, shape != chosen.network.input {
                    throw UserError.usage("--dataset \(name) has \(describe(shape: shape)) images; the model in \(path) takes \(describe(shape: chosen.network.input))")
                }
                chosen.dataset = kind
            }
        } else {
            chosen = try experiment.resolve()
        }
        // A spec file's own options are the file's fault; what fails only with the flags is the
        // command line's.
        do { try chosen.options.validate() } catch { throw UserError("\(experiment.spec ?? chosen.name): training: \(error.description)") }
        var o = try options(over: chosen.options)
        chosen.options = o
        do { try o.validate() } catch { throw UserError.usage(error.description) }

        // Everything that can fail on the user's input fails before the run folder is made.
        if let out {
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: out, isDirectory: &isFolder), !isFolder.boolValue {
                throw UserError("\(out) is a file, not a folder; choose another --out")
            }
            if isFolder.boolValue, !RunFolderLock.isUnused(URL(fileURLWithPath: out, isDirectory: true)) {
                throw UserError("\(out) already exists and is not empty; choose another --out (nothing was overwritten)")
            }
        }
        let network = try makeNetwork(chosen, seed: o.seed)
        // `--init`: the model's weights (a whitening convolution keeps them: `loadState`), and
        // the preprocessing they were trained with, not one fitted anew.
        var initialization: (path: String, preprocessing: Preprocessing)?
        if let initialModel {
            let path = try nonEmpty(initialModel, "--init")
            let source = try userFacing { try ModelArchive.load(from: URL(fileURLWithPath: path, isDirectory: true)) }
            guard source.network.namedParameters.map(\.parameter.value.shape) == network.namedParameters.map(\.parameter.value.shape),
                  source.network.namedBuffers.map(\.buffer.value.shape) == network.namedBuffers.map(\.buffer.value.shape) else {
                throw UserError("--init: the model in \(path) has another architecture than \(chosen.name)'s network")
            }
            guard source.network.inputShape == network.inputShape else {
                throw UserError("--init: the model in \(path) takes \(describe(shape: source.network.inputShape)) inputs, \(chosen.name)'s network \(describe(shape: network.inputShape))")
            }
            network.loadState(from: source.network)
            initialization = (path, source.preprocessing)
        }
        try checkBatchMemory(network, batchSize: o.batchSize, flag: "--batch-size")
        // BatchNorm normalises over the batch (and the plane): it needs two values per channel.
        for row in network.rows where row.layer is BatchNorm<Float> && o.batchSize * row.inputShape.dropFirst().reduce(1, *) < 2 {
            throw UserError("layer \(row.path) (\(row.layer.kind)) needs more than one value per channel in a training batch; use --batch-size 2 or more")
        }
        let dataset = try data.load(chosen.dataset, trainingLimit: o.trainSize, imageShape: chosen.network.input)
        try checkClasses(of: network, fit: dataset)
        if chosen.dataset == .imageFolder && o.trainSize > dataset.train.count {
            // An image folder's size is known only now: a larger train size means all its images.
            o.trainSize = dataset.train.count
            chosen.options = o
        }
        try userFacing {
            try o.validate(availableTrainingImages: dataset.train.count, imageHeight: dataset.train.height, imageWidth: dataset.train.width)
        }
        let out: String
        if let chosenOut = self.out {
            out = chosenOut
            try userFacing("create the run folder \(out)") {
                try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            }
        } else {
            out = try makeDefaultRunFolder(named: chosen.name)
            print("run folder: \(out)")
        }
        let folder = URL(fileURLWithPath: out, isDirectory: true)
        // Claim the folder, then look again: another run may have started into it meanwhile.
        let lock = try userFacing { try RunFolderLock(folder: folder) }
        guard RunFolderLock.isUnused(folder) else {
            throw UserError("\(out) already exists and is not empty; choose another --out (nothing was overwritten)")
        }
        try userFacing {
            try writeAtomically(JSONSerialization.data(withJSONObject: chosen.jsonObject, options: [.prettyPrinted, .sortedKeys]),
                                to: folder.appendingPathComponent(RunFiles.experiment))
            if let initialization {
                let object: [String: Any] = [
                    "format": "backprop-initialization", "version": 1, "from": initialization.path,
                    "preprocessing": ["scale": Double(initialization.preprocessing.scale),
                                      "mean": initialization.preprocessing.mean.map(Double.init)],
                ]
                try writeAtomically(JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]),
                                    to: folder.appendingPathComponent(RunFiles.initialization))
            }
        }
        let metricsURL = folder.appendingPathComponent(RunFiles.metrics)
        _ = FileManager.default.createFile(atPath: metricsURL.path, contents: nil)
        let prepared = PreparedData(dataset: dataset, options: o, preprocessing: initialization?.preprocessing)
        let trainer = Trainer(network: network, options: o, data: prepared)
        try withExtendedLifetime(lock) {
            try train(trainer, experiment: chosen, dataset: dataset, folder: folder, name: out)
        }
    }

    /// Creates `runs/<name>-<yyyyMMdd-HHmmss>` (local time), or with `-2`, `-3`, … appended when
    /// that exists: a folder that did not exist before, so a run without `--out` never
    /// overwrites one (even two started in the same second).
    private func makeDefaultRunFolder(named name: String) throws -> String {
        try userFacing("create the folder runs") {
            try FileManager.default.createDirectory(atPath: "runs", withIntermediateDirectories: true)
        }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        // A spec file's name may hold characters a folder name should not.
        let safe = String(name.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" })
        let base = "runs/\(safe.isEmpty ? "run" : safe)-\(formatter.string(from: Date()))"
        for attempt in 1...1000 {
            let path = attempt == 1 ? base : "\(base)-\(attempt)"
            // mkdir fails with EEXIST rather than reuse a folder: no check-then-create race.
            if mkdir(path, 0o777) == 0 { return path }
            guard errno == EEXIST else {
                throw UserError("cannot create the run folder \(path) (\(String(cString: strerror(errno))))")
            }
        }
        throw UserError("cannot create a new run folder: \(base) and 999 more exist; choose one with --out")
    }

    /// `--resume DIR`: the experiment and options of the run, its checkpoint, and the metrics
    /// up to the checkpoint's iteration.
    private func resumeRun(at path: String) throws {
        guard experiment.preset == nil, experiment.spec == nil, out == nil, !setsTrainingOptions else {
            throw UserError.usage("--resume continues a run with the options it was started with; give only --resume DIR (and --data-dir, --threads, --no-test)")
        }
        let folder = URL(fileURLWithPath: try nonEmpty(path, "--resume"), isDirectory: true)
        guard FileManager.default.fileExists(atPath: folder.appendingPathComponent(RunFiles.experiment).path) else {
            throw UserError("\(path): not a run folder of `backprop train` (no \(RunFiles.experiment)); nothing to resume")
        }
        let lock = try userFacing { try RunFolderLock(folder: folder) }
        removeStaleTemporaryFiles(in: folder)
        let chosen = try userFacing { try Experiment(specFile: folder.appendingPathComponent(RunFiles.experiment)) }
        let checkpoint = try userFacing { try Checkpoint.load(from: folder) }
        guard checkpoint.options == chosen.options else {
            throw UserError("\(path): the checkpoint's options differ from experiment.json; the folder was changed by hand")
        }
        let o = chosen.options
        let network = try makeNetwork(chosen, seed: o.seed)
        let dataset = try data.load(chosen.dataset, trainingLimit: o.trainSize, imageShape: chosen.network.input)
        try checkClasses(of: network, fit: dataset)
        try userFacing { try o.validate(availableTrainingImages: dataset.train.count) }
        // A run started from a model (`--init`) keeps that model's preprocessing.
        var initial: Preprocessing?
        let initialization = folder.appendingPathComponent(RunFiles.initialization)
        if FileManager.default.fileExists(atPath: initialization.path) {
            let object = try? JSONSerialization.jsonObject(with: try userFacing { try readRegularFile(initialization, limit: 1 << 16) })
            guard let preprocessing = (object as? [String: Any])?["preprocessing"] as? [String: Any],
                  let scale = preprocessing["scale"] as? Double, let mean = preprocessing["mean"] as? [Double],
                  scale.isFinite, scale > 0, (1...3).contains(mean.count), mean.allSatisfy(\.isFinite) else {
                throw UserError("\(initialization.path) is malformed; the folder was changed by hand")
            }
            initial = Preprocessing(scale: Float(scale), mean: mean.map(Float.init))
        }
        let trainer = Trainer(network: network, options: o, data: PreparedData(dataset: dataset, options: o, preprocessing: initial))
        try userFacing { try checkpoint.restore(into: trainer) }
        // The metrics file keeps the lines of the iterations the checkpoint covers.
        let metricsURL = folder.appendingPathComponent(RunFiles.metrics)
        let text = String(decoding: try userFacing { try readRegularFile(metricsURL, limit: 1 << 30) }, as: UTF8.self)
        let kept = text.split(separator: "\n", omittingEmptySubsequences: true).prefix(checkpoint.progress.iteration)
        guard kept.count == checkpoint.progress.iteration else {
            throw UserError("\(metricsURL.path) has \(kept.count) lines for the checkpoint's \(checkpoint.progress.iteration) iterations")
        }
        try userFacing { try writeAtomically(Data((kept.joined(separator: "\n") + (kept.isEmpty ? "" : "\n")).utf8), to: metricsURL) }
        let earlier = (try? readRegularFile(folder.appendingPathComponent(RunFiles.record), limit: 1 << 24))
            .flatMap { try? JSONDecoder().decode(RunRecord.self, from: $0) }
        print("resuming \(path) at iteration \(checkpoint.progress.iteration + 1) of \(o.iterations)")
        try withExtendedLifetime(lock) {
            try train(trainer, experiment: chosen, dataset: dataset, folder: folder, name: path, earlierWall: earlier?.wallSeconds ?? 0)
        }
    }

    /// Runs the trainer, writing metrics, checkpoints and, at the end or on an interrupt, the
    /// model and the record.
    /// - Parameter earlierWall: the wall time of the run's earlier sessions (before a resume).
    private func train(_ trainer: Trainer, experiment chosen: Experiment, dataset: Dataset, folder: URL, name: String,
                       earlierWall: Double = 0) throws {
        let o = trainer.options, network = trainer.network, prepared = trainer.data
        print("\(chosen.name): \(dataset.kind.displayName), \(grouped(prepared.trainLabels.count)) training / \(grouped(prepared.validationLabels.count)) validation images, \(grouped(network.parameterCount)) parameters")
        print(String(format: "%d iterations, batch %d, %@, lr %g%@, momentum %g, weight decay %g, seed %llu",
                     o.iterations, o.batchSize, o.optimizer.rawValue, o.learningRate,
                     o.schedule == .constant ? "" : " (\(o.schedule))", o.momentum, o.weightDecay, o.seed)
              + (o.augmentation.isIdentity ? "" : ", augment \(o.augmentation)") + (o.ema > 0 ? ", ema \(o.ema)" + (o.emaWarmUp ? " (warm-up)" : "") : "")
              + (o.lookahead.map { ", lookahead every \($0.every) (decay \($0.decay)·(t/T)^\($0.power))" } ?? "")
              + (o.labelSmoothing > 0 ? ", label smoothing \(o.labelSmoothing)" : "")
              + (o.testTimeAugmentation.isIdentity ? "" : ", test-time augmentation \(o.testTimeAugmentation)"))

        let metricsURL = folder.appendingPathComponent(RunFiles.metrics)
        let log = try userFacing { try FileHandle(forWritingTo: metricsURL) }
        defer { try? log.close() }
        try userFacing { _ = try log.seekToEnd() }
        var pending = Data()
        var lastFlush = Date()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        func flush() throws {
            do { try log.write(contentsOf: pending) } catch {
                throw FileError(path: metricsURL.path, reason: plainDescription(of: error))
            }
            pending.removeAll(keepingCapacity: true)
            lastFlush = Date()
        }
        func model() -> ModelArchive {
            ModelArchive(network: network, spec: chosen.network, dataset: dataset.kind,
                         preprocessing: prepared.preprocessing, classNames: dataset.classNames,
                         testTimeAugmentation: o.testTimeAugmentation)
        }

        var progress = ProgressDisplay(total: o.iterations)
        var last: IterationMetrics?
        var lastValidation: Double?
        var failure: DivergenceError?
        var outcome = TrainingOutcome.finished
        let start = Date()
        interruptRequested = 0
        signal(SIGINT) { _ in interruptRequested = 1 }
        signal(SIGTERM) { _ in interruptRequested = 1 }
        // A parent may have started us with the signals blocked (the mask is inherited).
        var handled = sigset_t()
        sigemptyset(&handled)
        sigaddset(&handled, SIGINT)
        sigaddset(&handled, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &handled, nil)
        defer {
            signal(SIGINT, SIG_DFL)
            signal(SIGTERM, SIG_DFL)
        }
        do {
            outcome = try trainer.run(shouldStop: { interruptRequested != 0 }, improved: { _ in
                guard o.saveBest else { return }
                try model().saveWeights(to: folder.appendingPathComponent(RunFiles.best))
            }) { metrics in
                // Lines are collected and written in blocks: a write per iteration cost more
                // than the iteration's arithmetic on the small nets. A slow run's lines still
                // reach the file every few seconds, for `backprop report` or `tail -f` to follow.
                pending.append(try encoder.encode(metrics))
                pending.append(0x0A)
                if pending.count >= 1 << 16 || metrics.iteration == o.iterations || Date().timeIntervalSince(lastFlush) >= 5 {
                    try flush()
                }
                if o.checkpointInterval > 0, metrics.iteration % o.checkpointInterval == 0, metrics.iteration < o.iterations {
                    try flush()
                    try Checkpoint(of: trainer).save(to: folder)
                }
                progress.update(metrics)
                last = metrics
                if let v = metrics.validationAccuracy { lastValidation = v }
            }
        } catch let error as DivergenceError {
            failure = error
        } catch {
            // A write failed (a full disk): the run stops. The last checkpoint and the metrics
            // up to it were written before (atomically), so `--resume` continues from there
            // once there is space; try to save the model as it is now too.
            let problem = plainDescription(of: error)
            trainer.average?.swapAverages()
            let saved = (try? model().save(to: folder)) != nil
            throw UserError("\(problem); training stopped at iteration \(trainer.progress.iteration) of \(o.iterations)"
                            + (saved ? "; the model so far is saved in \(name)" : "")
                            + (FileManager.default.fileExists(atPath: folder.appendingPathComponent(Checkpoint.fileName).path)
                               ? "; continue from the last checkpoint with: backprop train --resume \(name)" : ""))
        }
        try userFacing { try flush() }
        let wall = Date().timeIntervalSince(start)
        let interrupted = outcome == .stopped
        if interrupted {
            try userFacing { try Checkpoint(of: trainer).save(to: folder) }
        } else {
            try? FileManager.default.removeItem(at: folder.appendingPathComponent(Checkpoint.fileName))
        }
        // With a moving average, the model is the averaged weights.
        trainer.average?.swapAverages()
        try userFacing { try model().save(to: folder) }
        var testAccuracy: Double?
        if failure == nil && !interrupted && !noTest {
            let (_, report) = model().evaluate(on: dataset.test)
            testAccuracy = report.accuracy
            try userFacing { try EvaluationFiles.write(report, dataset: dataset.kind.rawValue, to: folder) }
        }
        let status = failure != nil ? "diverged" : interrupted ? "interrupted" : "finished"
        let record = RunRecord(
            name: chosen.name, dataset: dataset.kind.rawValue, options: o, status: status,
            iterationsCompleted: failure.map { $0.iteration - 1 } ?? trainer.progress.iteration,
            trainImages: prepared.trainLabels.count, validationImages: prepared.validationLabels.count,
            wallSeconds: earlierWall + wall,
            imagesPerSecond: last?.imagesPerSecond ?? 0,
            finalValidationAccuracy: lastValidation, testAccuracy: testAccuracy, parameterCount: network.parameterCount)
        try userFacing { try writeAtomically(prettyJSON(record), to: folder.appendingPathComponent(RunFiles.record)) }

        if progress.interactive && (failure != nil || interrupted) { print() }
        if let failure { throw UserError("\(failure.description); model saved in \(name)") }
        if interrupted {
            printToStandardError("Interrupted at iteration \(trainer.progress.iteration) of \(o.iterations); the model and a checkpoint are saved in \(name). Continue with: backprop train --resume \(name)")
            throw ExitCode(ExitStatus.interrupted)
        }
        print(String(format: "trained in %.1f s (%.0f img/s)", wall, record.imagesPerSecond)
              + (lastValidation.map { String(format: ", validation accuracy %.2f%%", $0 * 100) } ?? ""))
        if let testAccuracy { print(String(format: "test accuracy %.2f%% on %d images", testAccuracy * 100, dataset.test.count)) }
        print("saved \(name)/\(ModelArchive.weightsFile)" + (o.saveBest ? " and \(name)/\(RunFiles.best)" : ""))
    }
}
