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

    enum CodingKeys: String, CodingKey {
        case iteration, loss, accuracy, elapsed
        case smoothedLoss = "smoothed_loss", weightDecayLoss = "weight_decay_loss", totalLoss = "total_loss"
        case smoothedAccuracy = "smoothed_accuracy", imagesPerSecond = "images_per_second"
        case validationAccuracy = "validation_accuracy"
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
public struct Smoother: Sendable {
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

/// The course's training loop (`training.m`): consecutive batches through the once-shuffled
/// training set, wrapping around; SGD with momentum and weight decay; smoothed metrics; the
/// validation accuracy every `validationInterval` iterations.
public final class Trainer {
    public let network: Network<Float>
    public let options: TrainingOptions
    public let data: PreparedData
    private let optimizer: SGD<Float>

    public init(network: Network<Float>, options: TrainingOptions, data: PreparedData) {
        self.network = network
        self.options = options
        self.data = data
        optimizer = SGD<Float>(learningRate: options.learningRate, momentum: options.momentum, weightDecay: options.weightDecay)
    }

    /// Trains for `options.iterations` steps, calling `observe` after each.
    ///
    /// - Throws: `DivergenceError` when the loss becomes NaN or infinite; the network then holds
    ///   the last weights that gave a finite loss. Errors thrown by `observe` stop training.
    public func run(observe: (IterationMetrics) throws -> Void) throws {
        let n = data.trainLabels.count
        let b = options.batchSize
        let exampleShape = Array(data.train.shape.dropFirst())
        let exampleSize = exampleShape.reduce(1, *)
        var order = Array(0..<n)
        var shuffler = SeededGenerator(seed: options.seed ^ 0x4550_4F43_4853_2121)
        var batch = Tensor<Float>(shape: [b] + exampleShape)
        var labels = [Int](repeating: 0, count: b)
        var snapshot = network.parameters.map(\.value.scalars)
        var loss = Smoother(factor: options.movingAverage), accuracy = Smoother(factor: options.movingAverage)
        var epoch = 0
        let start = Date()
        var validationTime = 0.0

        for iteration in 1...options.iterations {
            // Examples (iteration−1)·B ..< iteration·B of the shuffled order, modulo n.
            let first = (iteration - 1) * b
            data.train.scalars.withUnsafeBufferPointer { source in
                batch.scalars.withUnsafeMutableBufferPointer { destination in
                    for row in 0..<b {
                        if options.reshuffleEachEpoch, (first + row) / n != epoch {
                            epoch = (first + row) / n
                            order = shuffler.permutation(n)
                        }
                        let index = order[(first + row) % n]
                        (destination.baseAddress! + row * exampleSize)
                            .update(from: source.baseAddress! + index * exampleSize, count: exampleSize)
                        labels[row] = data.trainLabels[index]
                    }
                }
            }

            network.zeroGradients()
            let result = network.accumulateGradients(batch: batch, labels: labels)
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

            let elapsed = Date().timeIntervalSince(start) - validationTime
            let smoothedLoss = loss.add(result.loss)
            var metrics = IterationMetrics(
                iteration: iteration, loss: result.loss, smoothedLoss: smoothedLoss, weightDecayLoss: decay,
                totalLoss: smoothedLoss + decay, accuracy: Double(result.correct) / Double(b),
                smoothedAccuracy: accuracy.add(Double(result.correct) / Double(b)),
                imagesPerSecond: Double(iteration * b) / max(elapsed, 1e-9), elapsed: elapsed, validationAccuracy: nil)
            if !data.validationLabels.isEmpty, iteration % options.validationInterval == 0 || iteration == options.iterations {
                let validationStart = Date()
                metrics.validationAccuracy = Predictions(network: network, inputs: data.validation)
                    .accuracy(labels: data.validationLabels)
                validationTime += Date().timeIntervalSince(validationStart)
            }
            try observe(metrics)
        }
    }
}
