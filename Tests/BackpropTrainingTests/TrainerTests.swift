import Backprop
import BackpropData
import BackpropTraining
import Foundation
import BackpropTestSupport
import Testing

/// The mnist preset's options for a short run on the first 12,000 training images
/// (1,000 held out for validation).
private func shortRunOptions(iterations: Int, seed: UInt64 = 42) throws -> TrainingOptions {
    var options = try preset("mnist").options
    options.iterations = iterations
    options.trainSize = TestData.mnistTrainingLimit
    options.validationSize = 1000
    options.seed = seed
    return options
}

/// MNIST prepared for `options` (the shared data set, read once).
private func prepared(_ options: TrainingOptions) throws -> PreparedData {
    PreparedData(dataset: try TestData.mnistDataset.get(), options: options)
}

/// Runs a fresh mnist-preset network, seeded by `options.seed`, and returns it with every
/// iteration's metrics.
private func train(_ options: TrainingOptions, data: PreparedData) throws -> (Network<Float>, [IterationMetrics]) {
    let network: Network<Float> = try makeNetwork(try preset("mnist"), seed: options.seed)
    var metrics: [IterationMetrics] = []
    try Trainer(network: network, options: options, data: data).run { metrics.append($0) }
    return (network, metrics)
}

@Suite("Training")
struct TrainerTests {
    @Test("PreparedData: the split, the shuffle and the preprocessing")
    func preparedData() throws {
        let dataset = try TestData.mnistDataset.get()
        let options = try shortRunOptions(iterations: 1)
        let data = try prepared(options)
        #expect(data.train.shape == [11_000, 1, 28, 28])
        #expect(data.validation.shape == [1000, 1, 28, 28])
        #expect(data.trainLabels.count == 11_000 && data.validationLabels.count == 1000)
        #expect(data.classNames == (0...9).map(String.init))
        #expect(data.preprocessing.scale == Float(1) / 255)
        #expect(data.preprocessing.mean.count == 1)

        // The mean is that of the training split only, so the training inputs average to ~0.
        let mean = data.train.scalars.reduce(0.0) { $0 + Double($1) } / Double(data.train.count)
        #expect(abs(mean) < 1e-4, "training inputs have mean \(mean) after subtracting the training mean")
        // MNIST's pixel mean is about 0.13 (README: 0.130660 over all 60,000).
        #expect(abs(Double(data.preprocessing.mean[0]) - 0.1307) < 0.005, "\(data.preprocessing.mean)")

        // Training and validation are disjoint and together are the first 12,000 images: find each
        // prepared example among the raw images by its pixels and label.
        var byPixels: [[UInt8]: [Int]] = [:]
        for index in 0..<dataset.train.count { byPixels[Array(dataset.train.pixels(ofImage: index)), default: []].append(index) }
        func sourceIndex(_ tensor: Tensor<Float>, _ row: Int, _ label: Int) -> Int? {
            let pixels = tensor.scalars[(row * 784)..<(row * 784 + 784)].map {
                UInt8((($0 + data.preprocessing.mean[0]) * 255).rounded())
            }
            return byPixels[pixels]?.first { Int(dataset.train.labels[$0]) == label }
        }
        var seen = Set<Int>()
        for row in stride(from: 0, to: 11_000, by: 97) {
            let index = try #require(sourceIndex(data.train, row, data.trainLabels[row]), "training row \(row)")
            seen.insert(index)
        }
        for row in stride(from: 0, to: 1000, by: 13) {
            let index = try #require(sourceIndex(data.validation, row, data.validationLabels[row]), "validation row \(row)")
            #expect(!seen.contains(index), "validation image \(index) is also a training image")
        }
        // Shuffled: the first training rows are not the first images.
        #expect(sourceIndex(data.train, 0, data.trainLabels[0]) != 0 || sourceIndex(data.train, 1, data.trainLabels[1]) != 1)

        // The same seed gives the same split; another seed another.
        let again = try prepared(options)
        #expect(again.trainLabels == data.trainLabels && again.train == data.train && again.validation == data.validation)
        let other = try prepared(try shortRunOptions(iterations: 1, seed: 43))
        #expect(other.trainLabels != data.trainLabels)
    }

    /// 300 iterations of 16 images (4,800 images, under half an epoch of the 11,000) with the
    /// mnist preset's α = 0.1, μ = 0.9, λ = 0.005. Measured (Swift 6.3.1, x86-64): test accuracy
    /// 0.9463 (9,463 of 10,000), last validation accuracy 0.932, loss 2.148 → smoothed 0.319. The bar of 0.90 leaves room for
    /// rounding differences across platforms, not for a broken layer or optimizer (those stay
    /// near 0.10 or diverge).
    @Test("a short real MNIST run clears 90% test accuracy, with the smoothed metrics and validation where promised")
    func shortRun() throws {
        var options = try shortRunOptions(iterations: 300)
        options.validationInterval = 128  // validation at 128, 256 and the last iteration, 300
        let dataset = try TestData.mnistDataset.get()
        let data = try prepared(options)
        let initial: Network<Float> = try makeNetwork(try preset("mnist"), seed: options.seed)
        let (network, metrics) = try train(options, data: data)

        let test = Predictions(network: network, inputs: data.preprocessing.apply(to: dataset.test))
            .accuracy(labels: dataset.test.labels.map(Int.init))
        #expect(test >= 0.90, "test accuracy \(test)")

        try #require(metrics.count == 300)
        #expect(metrics.map(\.iteration) == Array(1...300))

        // Validation accuracy exactly at the interval and at the last iteration.
        #expect(metrics.filter { $0.validationAccuracy != nil }.map(\.iteration) == [128, 256, 300])
        if let validation = metrics.last?.validationAccuracy {
            #expect(validation >= 0.90, "validation accuracy \(validation)")
            #expect(validation == Predictions(network: network, inputs: data.validation).accuracy(labels: data.validationLabels),
                    "the last validation accuracy is that of the final weights")
        }

        // Smoothing: the plain mean of the raw values for the first 19 iterations, then
        // s = 0.99·s + 0.01·x. Checked against the raw losses and accuracies the callback saw.
        let a = options.movingAverage
        var loss = 0.0, accuracy = 0.0
        for (i, m) in metrics.enumerated() {
            if i < 19 {
                loss = metrics[0...i].reduce(0) { $0 + $1.loss } / Double(i + 1)
                accuracy = metrics[0...i].reduce(0) { $0 + $1.accuracy } / Double(i + 1)
            } else {
                loss = a * loss + (1 - a) * m.loss
                accuracy = a * accuracy + (1 - a) * m.accuracy
            }
            #expect(abs(m.smoothedLoss - loss) <= 1e-12 * max(1, abs(loss)), "iteration \(m.iteration): smoothed loss \(m.smoothedLoss), expected \(loss)")
            #expect(abs(m.smoothedAccuracy - accuracy) <= 1e-12, "iteration \(m.iteration): smoothed accuracy")
            #expect(m.totalLoss == m.smoothedLoss + m.weightDecayLoss, "iteration \(m.iteration)")
            #expect((m.accuracy * 16).rounded() == m.accuracy * 16, "iteration \(m.iteration): a batch accuracy is k/16")
            #expect(m.loss.isFinite && m.loss >= 0)
        }
        // The 20th value is where the two rules differ: with the mean it would be Σ/20.
        let mean20 = metrics[0..<20].reduce(0) { $0 + $1.loss } / 20
        #expect(abs(metrics[19].smoothedLoss - mean20) > 1e-9, "iteration 20 still uses the plain mean")

        // The weight-decay loss of iteration 1 is λ/2‖w‖² of the initial weights, biases included.
        let squares = initial.parameters.reduce(0.0) { sum, p in p.value.scalars.reduce(sum) { $0 + Double($1) * Double($1) } }
        #expect(abs(metrics[0].weightDecayLoss - Double(options.weightDecay) / 2 * squares) < 1e-9 * squares)

        // It learned: the smoothed loss fell from ~ln 10 to well below.
        #expect(metrics[0].loss > 1.5 && metrics[299].smoothedLoss < 0.6, "loss \(metrics[0].loss) → \(metrics[299].smoothedLoss)")
        #expect(metrics.allSatisfy { $0.imagesPerSecond > 0 && $0.elapsed >= 0 })
        #expect(zip(metrics, metrics.dropFirst()).allSatisfy { $0.elapsed <= $1.elapsed })
    }

    /// Convolutions spread fixed groups of images over the threads and sum the groups' partial
    /// gradients in group order, so the thread count cannot change a single bit. (Other tests may
    /// change `Parallel.threadCount` concurrently; by the same argument that cannot matter.)
    @Test("one thread and two threads train bit-identical weights", arguments: [16, 13])
    func threadCountDoesNotChangeResults(batchSize: Int) throws {
        var options = try shortRunOptions(iterations: 20)
        options.batchSize = batchSize  // 13: a last group of one image
        let data = try prepared(options)
        let saved = Parallel.threadCount
        defer { Parallel.threadCount = saved }
        Parallel.threadCount = 1
        let (single, singleMetrics) = try train(options, data: data)
        Parallel.threadCount = 2
        let (double, doubleMetrics) = try train(options, data: data)
        Parallel.threadCount = 3
        let (triple, _) = try train(options, data: data)
        #expect(parameterBits(single) == parameterBits(double))
        #expect(parameterBits(single) == parameterBits(triple))
        #expect(singleMetrics.map(\.loss) == doubleMetrics.map(\.loss))
    }

    @Test("two runs with the same seed end with bit-identical weights; another seed does not")
    func determinism() throws {
        let options = try shortRunOptions(iterations: 30)
        let data = try prepared(options)
        let (first, firstMetrics) = try train(options, data: data)
        let (second, secondMetrics) = try train(options, data: data)
        #expect(parameterBits(first) == parameterBits(second))
        #expect(firstMetrics.map(\.loss) == secondMetrics.map(\.loss))

        var reshuffled = options
        reshuffled.reshuffleEachEpoch = true
        reshuffled.trainSize = 300  // 200 training images: the 30 batches of 16 (480 images) wrap around twice
        reshuffled.validationSize = 100
        let small = try prepared(reshuffled)
        let (third, _) = try train(reshuffled, data: small)
        let (fourth, _) = try train(reshuffled, data: small)
        #expect(parameterBits(third) == parameterBits(fourth))

        var otherSeed = options
        otherSeed.seed = 43
        let (other, _) = try train(otherSeed, data: data)
        #expect(parameterBits(other) != parameterBits(first))
    }

    /// With α = 1e6 the first step throws the weights so far that a later forward pass overflows
    /// (measured: the loss is NaN at iteration 3, so the weights after one step are kept).
    /// `run` must then throw `DivergenceError` and leave the last weights that gave a finite loss:
    /// those that iteration `error.iteration − 1` computed its loss with, i.e. the weights after
    /// `error.iteration − 2` steps.
    @Test("a huge learning rate throws DivergenceError and keeps the last finite weights")
    func divergence() throws {
        var options = try shortRunOptions(iterations: 50)
        options.learningRate = 1e6
        let data = try prepared(options)
        let network: Network<Float> = try makeNetwork(try preset("mnist"), seed: options.seed)
        var seen: [IterationMetrics] = []
        do {
            try Trainer(network: network, options: options, data: data).run { seen.append($0) }
            Issue.record("training with learning rate 1e6 did not diverge")
        } catch let error as DivergenceError {
            #expect(!error.loss.isFinite)
            #expect(error.iteration >= 2 && error.iteration <= 50)
            #expect(seen.count == error.iteration - 1, "the callback saw every finite iteration and no more")
            #expect(seen.allSatisfy { m in m.loss.isFinite })
            #expect(!error.description.contains("\n") && error.description.contains("\(error.iteration)"))
            for (name, p) in network.namedParameters {
                #expect(p.value.scalars.allSatisfy { $0.isFinite }, "\(name) has non-finite values")
            }
            // The same run stopped after `error.iteration − 2` steps holds the same weights.
            let expected: Network<Float> = try makeNetwork(try preset("mnist"), seed: options.seed)
            if error.iteration > 2 {
                var shorter = options
                shorter.iterations = error.iteration - 2
                try Trainer(network: expected, options: shorter, data: data).run { _ in }
            }
            #expect(parameterBits(network) == parameterBits(expected))
        }
    }

    @Test("an error thrown by the observer stops training at that iteration")
    func observerStops() throws {
        struct Stop: Error {}
        let options = try shortRunOptions(iterations: 20)
        let data = try prepared(options)
        let network: Network<Float> = try makeNetwork(try preset("mnist"), seed: 1)
        var count = 0
        #expect(throws: Stop.self) {
            try Trainer(network: network, options: options, data: data).run { m in
                count += 1
                if m.iteration == 3 { throw Stop() }
            }
        }
        #expect(count == 3)
    }

    @Test("each iteration records the learning rate its step used, as the schedule set it")
    func recordsTheLearningRate() throws {
        var options = try shortRunOptions(iterations: 12)
        options.optimizer = .sgd
        options.schedule = try Schedule(parsing: "onecycle")
        let data = try prepared(options)
        let (_, metrics) = try train(options, data: data)
        #expect(metrics.count == 12)
        for m in metrics {
            let expected = options.schedule.learningRate(atStep: m.iteration - 1, totalSteps: 12, base: Double(options.learningRate))
            #expect(m.learningRate == expected, "iteration \(m.iteration)")
        }
        // A one-cycle schedule rises, then falls.
        let rates = metrics.compactMap(\.learningRate)
        #expect(rates.max()! > rates.first! && rates.max()! > rates.last!)
    }

    @Test("a frozen convolution's bias_epochs: the bias trains in the first epochs only, the weight never")
    func biasTrainsForItsEpochs() throws {
        var options = try shortRunOptions(iterations: 10)
        options.trainSize = 1256   // 256 training images, 4 batches of 64 an epoch
        options.batchSize = 64
        options.optimizer = .sgd
        options.momentum = 0.9
        options.weightDecay = 1e-3
        let data = try prepared(options)
        #expect(data.trainIndices.count == 256)
        let spec = NetworkSpec(input: [1, 28, 28], layers: [
            LayerSpec(Conv2DSpec(outputChannels: 4, kernelSize: 3, frozen: true, biasEpochs: 2)), .relu,
            .maxPool2d(size: 2, stride: 2), .dense(outputFeatures: 10),
        ])
        var generator = SeededGenerator(seed: 1)
        let network: Network<Float> = try spec.makeNetwork(using: &generator)
        let weight = network.parameters[0], bias = network.parameters[1]
        let initialWeight = weight.value.scalars
        var biases = [bias.value.scalars]
        try Trainer(network: network, options: options, data: data).run { _ in biases.append(bias.value.scalars) }
        // Iterations 1–8 are epochs 0 and 1 ((i − 1)·64 < 2·256); the momentum buffer of
        // iteration 8 is not applied at 9 and 10.
        for i in 1...10 {
            #expect((biases[i] != biases[i - 1]) == (i <= 8), "iteration \(i)")
        }
        #expect(weight.value.scalars == initialWeight)
        #expect(!bias.isTrainable && !weight.isTrainable)
    }

    @Test("Smoother: the mean of the first 19 values, then the moving average")
    func smoother() {
        var s = Smoother(factor: 0.5)
        var values: [Double] = []
        for i in 1...19 {
            values.append(Double(i * i))
            let smoothed = s.add(Double(i * i)), mean = values.reduce(0, +) / Double(i)
            #expect(abs(smoothed - mean) <= 1e-13 * mean, "value \(i): \(smoothed), mean \(mean)")
        }
        let mean19 = values.reduce(0, +) / 19  // (19·20·39/6)/19 = 130
        #expect(mean19 == 130)
        #expect(abs(s.add(30) - (0.5 * 130 + 0.5 * 30)) < 1e-12)  // 80
        #expect(abs(s.add(0) - 40) < 1e-12)
    }

    @Test("TrainingOptions.validate rejects what a user could mistype")
    func optionValidation() throws {
        let good = try shortRunOptions(iterations: 10)
        try good.validate(availableTrainingImages: 60_000)
        func rejected(_ change: (inout TrainingOptions) -> Void, _ available: Int? = nil) -> Bool {
            var o = good
            change(&o)
            do { try o.validate(availableTrainingImages: available); return false } catch { return !error.description.contains("\n") }
        }
        #expect(rejected { $0.iterations = 0 })
        #expect(rejected { $0.batchSize = 0 })
        #expect(rejected { $0.learningRate = 0 })
        #expect(rejected { $0.learningRate = .nan })
        #expect(rejected { $0.momentum = 1 })
        #expect(rejected { $0.weightDecay = -1 })
        #expect(rejected { $0.validationSize = $0.trainSize })
        #expect(rejected({ $0.trainSize = 70_000 }, 60_000))
        #expect(rejected { $0.validationInterval = 0 })
        #expect(rejected { $0.movingAverage = 1 })
        #expect(rejected { $0.emaWarmUp = true })  // without an ema decay
    }

    @Test("ema_warmup reaches the trainer's moving average, and round-trips through JSON")
    func emaWarmUp() throws {
        var options = try shortRunOptions(iterations: 10)
        options.ema = 0.99
        options.emaWarmUp = true
        try options.validate(availableTrainingImages: 60_000)
        let decoded = try JSONDecoder().decode(TrainingOptions.self, from: JSONEncoder().encode(options))
        #expect(decoded == options)
        let network: Network<Float> = try makeNetwork(try preset("mnist"), seed: 1)
        let trainer = Trainer(network: network, options: options, data: try prepared(options))
        #expect(trainer.average?.warmUp == true)
        #expect(trainer.average?.decay == 0.99)
    }
}
