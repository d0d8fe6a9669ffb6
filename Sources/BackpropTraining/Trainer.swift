import Backprop
import Foundation

/// What one training iteration measured (one line of a run's `metrics.jsonl`).
public struct IterationMetrics: Codable, Sendable {
    public var iteration: Int
    /// This batch's mean classification loss.
    public var loss: Double
    /// The smoothed classification loss (mean of the first 19 iterations, then the moving average).
    public var smoothedLoss: Double
    /// `Σ λ/2 ‖w‖²` for the weights that produced `loss`.
    public var weightDecayLoss: Double
    /// `smoothedLoss + weightDecayLoss`.
    public var totalLoss: Double
    /// This batch's accuracy.
    public var accuracy: Double
    /// Smoothed like the loss.
    public var smoothedAccuracy: Double
    /// Training throughput since the start (validation time excluded).
    public var imagesPerSecond: Double
    /// Seconds spent training since the start (validation time excluded).
    public var elapsed: Double
    /// Accuracy on the held-out validation images, on the iterations where it was measured.
    public var validationAccuracy: Double?
    /// The learning rate of this iteration's step, as the schedule set it (absent in runs made
    /// before it was recorded).
    public var learningRate: Double?

    enum CodingKeys: String, CodingKey {
        case iteration, loss, accuracy, elapsed
        case smoothedLoss = "smoothed_loss", weightDecayLoss = "weight_decay_loss", totalLoss = "total_loss"
        case smoothedAccuracy = "smoothed_accuracy", imagesPerSecond = "images_per_second"
        case validationAccuracy = "validation_accuracy", learningRate = "learning_rate"
    }
}

/// Training stopped because the loss became NaN or infinite.
public struct DivergenceError: Error, CustomStringConvertible, Sendable {
    public var iteration: Int
    public var loss: Double
    public var description: String {
        "training diverged: the loss became \(loss) at iteration \(iteration); the weights of iteration \(iteration - 1) were kept (try a smaller learning rate)"
    }
}

/// The course's smoothing: the plain mean of the first 19 values, then an exponential moving
/// average `s = a·s + (1 − a)·x`.
public struct Smoother: Codable, Sendable, Equatable {
    public let factor: Double
    public private(set) var value = 0.0
    private var count = 0

    public init(factor: Double) { self.factor = factor }

    public mutating func add(_ x: Double) -> Double {
        count += 1
        value = count <= 19 ? value + (x - value) / Double(count) : factor * value + (1 - factor) * x
        return value
    }
}

/// What a run carries from one iteration to the next besides the weights and the optimizer's
/// state: saved in checkpoints so that a resumed run continues exactly where it stopped.
public struct TrainingProgress: Codable, Sendable, Equatable {
    /// Iterations completed.
    public var iteration = 0
    public var loss: Smoother
    public var accuracy: Smoother
    /// Seconds spent training (validation excluded), over every session of the run.
    public var trainingSeconds = 0.0
    /// The best validation accuracy so far and its iteration (for `saveBest`).
    public var bestValidationAccuracy: Double?
    public var bestIteration: Int?

    public init(movingAverage: Double) {
        loss = Smoother(factor: movingAverage)
        accuracy = Smoother(factor: movingAverage)
    }

    enum CodingKeys: String, CodingKey {
        case iteration, loss, accuracy
        case trainingSeconds = "training_seconds", bestValidationAccuracy = "best_validation_accuracy", bestIteration = "best_iteration"
    }
}

/// How a call of `Trainer.run` ended.
public enum TrainingOutcome: Sendable, Equatable {
    /// Every iteration ran.
    case finished
    /// `shouldStop` asked to stop (an interrupt) after `progress.iteration` iterations.
    case stopped
}

/// The training loop: batches from a `BatchSource` (the course's order, optionally reshuffled
/// and augmented), the loss, the optimizer under its schedule, optionally Lookahead and a moving
/// average of the weights, smoothed metrics, and the validation accuracy every
/// `validationInterval` iterations.
///
/// All of its state between iterations — the network's parameters and buffers, the optimizer's
/// and the average's state, and `progress` — is what a `Checkpoint` saves; the batch order,
/// augmentation and dropout masks are functions of the seed and the iteration. So a run stopped
/// after any iteration and resumed from its checkpoint ends with the same bytes as a run that
/// never stopped.
public final class Trainer {
    public let network: Network<Float>
    public let options: TrainingOptions
    public let data: PreparedData
    public let optimizer: any Optimizer<Float>
    /// The moving average of the weights, when `options.ema > 0`.
    public let average: ExponentialMovingAverage<Float>?
    /// Lookahead's slow weights, when `options.lookahead` is set.
    public let lookahead: Lookahead<Float>?
    public let loss: SoftmaxCrossEntropy
    public private(set) var progress: TrainingProgress
    private let source: BatchSource
    /// The parameters trained only in a run's first epochs (`Parameter.trainingEpochs`).
    private let epochLimited: [Parameter<Float>]

    public init(network: Network<Float>, options: TrainingOptions, data: PreparedData) {
        self.network = network
        self.options = options
        self.data = data
        if network.awaitsData {
            // A first-layer whitening convolution takes its filters from the patches of the first
            // images of the (shuffled) training split, as airbench takes 5,000 — before the moving
            // average copies the weights.
            let sample = Array(data.trainIndices.prefix(Self.whiteningSampleSize))
            network.initializeFromData(data.preprocessing.apply(to: data.trainImages, indices: sample))
        }
        optimizer = options.makeOptimizer()
        average = options.ema > 0
            ? ExponentialMovingAverage(parameters: network.parameters, buffers: network.namedBuffers.map(\.buffer), decay: options.ema,
                                    warmUp: options.emaWarmUp)
            : nil
        lookahead = options.lookahead.map {
            Lookahead(parameters: network.parameters, buffers: network.namedBuffers.map(\.buffer), every: $0.every,
                      decay: $0.decay, power: $0.power)
        }
        loss = SoftmaxCrossEntropy(labelSmoothing: options.labelSmoothing)
        progress = TrainingProgress(movingAverage: options.movingAverage)
        epochLimited = network.parameters.filter { $0.trainingEpochs != nil }
        source = BatchSource(images: data.trainImages, indices: data.trainIndices, preprocessing: data.preprocessing,
                             options: options, augmentation: options.augmentation)
    }

    /// The training images whose patches a whitening convolution's filters come from.
    public static let whiteningSampleSize = 5000

    /// Continues from a checkpoint's progress (the caller restores the weights, the optimizer
    /// and the average).
    public func resume(at progress: TrainingProgress) {
        precondition(progress.iteration >= 0 && progress.iteration <= options.iterations, "progress outside the run")
        self.progress = progress
    }

    /// Trains from iteration `progress.iteration + 1` to `options.iterations`, calling
    /// `observe` after each iteration.
    ///
    /// - Parameters:
    ///   - shouldStop: asked after each iteration (and its `observe`); `true` ends the call with
    ///     `.stopped`, leaving a consistent state to checkpoint.
    ///   - improved: called when the validation accuracy beats every earlier one, with the
    ///     evaluated weights (the average's, with `ema`) in the network.
    ///   - observe: receives each iteration's metrics; its errors stop training.
    /// - Throws: `DivergenceError` when the loss becomes NaN or infinite; the network then holds
    ///   the last weights that gave a finite loss.
    @discardableResult
    public func run(shouldStop: () -> Bool = { false }, improved: (IterationMetrics) throws -> Void = { _ in },
                    observe: (IterationMetrics) throws -> Void) throws -> TrainingOutcome {
        let b = options.batchSize
        var batch = Tensor<Float>(shape: [0])
        var labels: [Int] = []
        var snapshot = network.parameters.map(\.value.scalars)
        let sessionStart = Date(), earlierSeconds = progress.trainingSeconds
        var validationTime = 0.0
        let baseRate = Double(options.learningRate)
        let first = progress.iteration + 1
        guard first <= options.iterations else { return .finished }
        source.seek(to: first)
        source.startPrefetching()
        defer { source.stopPrefetching() }

        for iteration in first...options.iterations {
            source.next(into: &batch, labels: &labels)
            options.schedule.apply(to: optimizer, atStep: iteration - 1, totalSteps: options.iterations, baseLearningRate: baseRate)
            // Iteration i starts in epoch ⌊(i − 1)·B / N⌋ (0-based); a parameter of `trainingEpochs`
            // E trains while that is below E, then stays frozen (airbench's whitening bias).
            // Freezing it ends the backward pass earlier (`Network.trainabilityChanged`).
            for p in epochLimited {
                let trains = (iteration - 1) * b < p.trainingEpochs! * data.trainIndices.count
                if p.isTrainable != trains {
                    p.isTrainable = trains
                    network.trainabilityChanged()
                }
            }
            network.zeroGradients()
            let result = network.accumulateGradients(batch: batch, labels: labels, loss: loss,
                                                     context: .training(seed: options.seed, step: iteration))
            guard result.loss.isFinite else {
                for (p, saved) in zip(network.parameters, snapshot) { p.value.scalars = saved }
                throw DivergenceError(iteration: iteration, loss: result.loss)
            }
            let decay = network.weightDecayLoss(Double(options.weightDecay))
            // Keep the weights that just gave a finite loss, in case the step makes them diverge.
            for (i, p) in network.parameters.enumerated() {
                snapshot[i].withUnsafeMutableBufferPointer { s in
                    _ = p.value.scalars.withUnsafeBufferPointer { s.update(fromContentsOf: $0) }
                }
            }
            optimizer.step(network.parameters)
            lookahead?.afterStep(iteration, of: options.iterations)
            average?.update()

            progress.iteration = iteration
            let elapsed = earlierSeconds + Date().timeIntervalSince(sessionStart) - validationTime
            progress.trainingSeconds = elapsed
            let smoothedLoss = progress.loss.add(result.loss)
            var metrics = IterationMetrics(
                iteration: iteration, loss: result.loss, smoothedLoss: smoothedLoss, weightDecayLoss: decay,
                totalLoss: smoothedLoss + decay, accuracy: Double(result.correct) / Double(b),
                smoothedAccuracy: progress.accuracy.add(Double(result.correct) / Double(b)),
                imagesPerSecond: Double(iteration * b) / max(elapsed, 1e-9), elapsed: elapsed, validationAccuracy: nil,
                learningRate: Double(optimizer.learningRate))
            if !data.validationLabels.isEmpty, iteration % options.validationInterval == 0 || iteration == options.iterations {
                let validationStart = Date()
                average?.swapAverages()
                let accuracy = Predictions(network: network, inputs: data.validation).accuracy(labels: data.validationLabels)
                metrics.validationAccuracy = accuracy
                if accuracy > (progress.bestValidationAccuracy ?? -1) {
                    progress.bestValidationAccuracy = accuracy
                    progress.bestIteration = iteration
                    do { try improved(metrics) } catch { average?.swapAverages(); throw error }
                }
                average?.swapAverages()
                validationTime += Date().timeIntervalSince(validationStart)
            }
            try observe(metrics)
            if iteration < options.iterations && shouldStop() { return .stopped }
        }
        return .finished
    }
}
