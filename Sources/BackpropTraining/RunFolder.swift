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
}

/// What a training run did, written when it ends (or stops).
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
        case name, dataset, options, status
        case iterationsCompleted = "iterations_completed", trainImages = "train_images", validationImages = "validation_images"
        case wallSeconds = "wall_seconds", imagesPerSecond = "images_per_second"
        case finalValidationAccuracy = "final_validation_accuracy", testAccuracy = "test_accuracy", parameterCount = "parameter_count"
    }
}

/// A model's evaluation on the test set.
public struct EvaluationRecord: Codable, Sendable {
    public var dataset: String
    public var images: Int
    public var report: ClassificationReport

    public init(dataset: String, images: Int, report: ClassificationReport) {
        self.dataset = dataset
        self.images = images
        self.report = report
    }
}

extension ModelArchive {
    /// Preprocesses `images` as at training and classifies them.
    public func evaluate(on images: LabeledImages) -> (predictions: Predictions, report: ClassificationReport) {
        let predictions = Predictions(network: network, inputs: preprocessing.apply(to: images))
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
