import Backprop
import BackpropData
import Foundation

/// The files of a run folder (`backprop train … --out runs/NAME`).
///
/// ```
/// experiment.json     the experiment as a spec file (`backprop train --spec` reruns it)
/// metrics.jsonl       one IterationMetrics object per line
/// training.json       RunRecord: options, sizes, status, wall time, throughput, accuracies
/// model.safetensors   the weights (PyTorch names and layouts) + description metadata
/// model.json          the description: architecture, preprocessing, class names
/// checkpoint.safetensors  the state to resume from (while a run is unfinished or was interrupted)
/// best.safetensors    the model with the best validation accuracy (--save-best)
/// evaluation.json     EvaluationRecord: test-set confusion matrix and per-class metrics
/// ```
public enum RunFiles {
    public static let experiment = "experiment.json"
    public static let metrics = "metrics.jsonl"
    public static let record = "training.json"
    public static let evaluation = "evaluation.json"
    /// The model with the best validation accuracy (`--save-best`), in `model.safetensors`' format.
    public static let best = "best.safetensors"
    /// The preprocessing of the model a run started from (`train --init`), which the run keeps
    /// (and a resume reads): `{"format": "backprop-initialization", "version": 1, "from": DIR,
    /// "preprocessing": {"scale": S, "mean": [M, …]}}`.
    public static let initialization = "initialization.json"
}

/// What a training run did, written when it ends (or stops): `training.json`, with
/// `"format": "backprop-training-record"` and `"version": 1` (`FileFormat`).
public struct RunRecord: Codable, Sendable {
    public var name: String
    public var dataset: String
    public var options: TrainingOptions
    /// `finished`, `diverged` or `interrupted` (a checkpoint to resume from is in the folder).
    public var status: String
    public var iterationsCompleted: Int
    public var trainImages: Int
    public var validationImages: Int
    /// Seconds from the start of training to the end of the last iteration (validation included).
    public var wallSeconds: Double
    /// Training throughput (validation passes excluded).
    public var imagesPerSecond: Double
    public var finalValidationAccuracy: Double?
    public var testAccuracy: Double?
    public var parameterCount: Int

    public init(name: String, dataset: String, options: TrainingOptions, status: String, iterationsCompleted: Int,
                trainImages: Int, validationImages: Int, wallSeconds: Double, imagesPerSecond: Double,
                finalValidationAccuracy: Double?, testAccuracy: Double?, parameterCount: Int) {
        self.name = name
        self.dataset = dataset
        self.options = options
        self.status = status
        self.iterationsCompleted = iterationsCompleted
        self.trainImages = trainImages
        self.validationImages = validationImages
        self.wallSeconds = wallSeconds
        self.imagesPerSecond = imagesPerSecond
        self.finalValidationAccuracy = finalValidationAccuracy
        self.testAccuracy = testAccuracy
        self.parameterCount = parameterCount
    }

    enum CodingKeys: String, CodingKey {
        case format, version
        case name, dataset, options, status
        case iterationsCompleted = "iterations_completed", trainImages = "train_images", validationImages = "validation_images"
        case wallSeconds = "wall_seconds", imagesPerSecond = "images_per_second"
        case finalValidationAccuracy = "final_validation_accuracy", testAccuracy = "test_accuracy", parameterCount = "parameter_count"
    }

    /// Reads a record; one without `format`/`version` (written before they existed) is version 1.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try FileFormat.trainingRecord.check(c, format: .format, version: .version)
        name = try c.decode(String.self, forKey: .name)
        dataset = try c.decode(String.self, forKey: .dataset)
        options = try c.decode(TrainingOptions.self, forKey: .options)
        status = try c.decode(String.self, forKey: .status)
        iterationsCompleted = try c.decode(Int.self, forKey: .iterationsCompleted)
        trainImages = try c.decode(Int.self, forKey: .trainImages)
        validationImages = try c.decode(Int.self, forKey: .validationImages)
        wallSeconds = try c.decode(Double.self, forKey: .wallSeconds)
        imagesPerSecond = try c.decode(Double.self, forKey: .imagesPerSecond)
        finalValidationAccuracy = try c.decodeIfPresent(Double.self, forKey: .finalValidationAccuracy)
        testAccuracy = try c.decodeIfPresent(Double.self, forKey: .testAccuracy)
        parameterCount = try c.decode(Int.self, forKey: .parameterCount)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(FileFormat.trainingRecord.name, forKey: .format)
        try c.encode(FileFormat.trainingRecord.version, forKey: .version)
        try c.encode(name, forKey: .name)
        try c.encode(dataset, forKey: .dataset)
        try c.encode(options, forKey: .options)
        try c.encode(status, forKey: .status)
        try c.encode(iterationsCompleted, forKey: .iterationsCompleted)
        try c.encode(trainImages, forKey: .trainImages)
        try c.encode(validationImages, forKey: .validationImages)
        try c.encode(wallSeconds, forKey: .wallSeconds)
        try c.encode(imagesPerSecond, forKey: .imagesPerSecond)
        try c.encodeIfPresent(finalValidationAccuracy, forKey: .finalValidationAccuracy)
        try c.encodeIfPresent(testAccuracy, forKey: .testAccuracy)
        try c.encode(parameterCount, forKey: .parameterCount)
    }
}

/// A model's evaluation on the test set: `evaluation.json`, with
/// `"format": "backprop-evaluation"` and `"version": 1` (`FileFormat`).
public struct EvaluationRecord: Codable, Sendable {
    public var dataset: String
    public var images: Int
    public var report: ClassificationReport

    public init(dataset: String, images: Int, report: ClassificationReport) {
        self.dataset = dataset
        self.images = images
        self.report = report
    }

    enum CodingKeys: String, CodingKey { case format, version, dataset, images, report }

    /// Reads a record; one without `format`/`version` (written before they existed) is version 1.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try FileFormat.evaluation.check(c, format: .format, version: .version)
        dataset = try c.decode(String.self, forKey: .dataset)
        images = try c.decode(Int.self, forKey: .images)
        report = try c.decode(ClassificationReport.self, forKey: .report)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(FileFormat.evaluation.name, forKey: .format)
        try c.encode(FileFormat.evaluation.version, forKey: .version)
        try c.encode(dataset, forKey: .dataset)
        try c.encode(images, forKey: .images)
        try c.encode(report, forKey: .report)
    }
}

extension ModelArchive {
    /// Preprocesses `images` as at training and classifies them (averaging the logits over the
    /// test-time augmentation's views, when the model has one).
    public func evaluate(on images: LabeledImages) -> (predictions: Predictions, report: ClassificationReport) {
        let predictions = Predictions(network: network, images: images, preprocessing: preprocessing,
                                      augmentation: testTimeAugmentation)
        let report = ClassificationReport(labels: images.labels.map(Int.init), predicted: predictions.classes,
                                          classNames: classNames)
        return (predictions, report)
    }
}

/// A process's exclusive claim on a run folder, held while it trains into it: a second
/// `train --out` or `train --resume` on the same folder fails at once instead of mixing its
/// files with the first's. The claim is an advisory `flock` on `.backprop.lock` in the folder;
/// the system drops it when the process ends, however it ends (a kill included), so a stale
/// lock file never blocks anything.
public final class RunFolderLock {
    /// The lock file's name (hidden; it holds nothing).
    public static let fileName = ".backprop.lock"
    private let descriptor: Int32

    /// Takes the lock of `folder`, which must exist.
    /// - Throws: `FileError` when another process holds it, or the lock file cannot be made.
    public init(folder: URL) throws(FileError) {
        let path = folder.appendingPathComponent(Self.fileName).path
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw FileError(path: path, errno: errno) }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            close(descriptor)
            if code == EWOULDBLOCK {
                throw FileError(path: folder.path, reason: "another `backprop train` is using this run folder")
            }
            throw FileError(path: path, errno: code)
        }
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }

    /// Whether `folder` holds nothing of a run: no entries besides the lock file and temporary
    /// files of writes that a killed process left (those are removed).
    public static func isUnused(_ folder: URL) -> Bool {
        removeStaleTemporaryFiles(in: folder)
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder.path) else { return true }
        return names.allSatisfy { $0 == fileName }
    }
}
