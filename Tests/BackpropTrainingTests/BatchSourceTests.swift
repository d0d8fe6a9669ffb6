import Backprop
import BackpropData
import BackpropTraining
import Foundation
import Testing

/// Random bytes and labels: `count` images of `channels x height x width`.
private func randomImages(count: Int, channels: Int, height: Int, width: Int, seed: UInt64 = 1) -> LabeledImages {
    var generator = SeededGenerator(seed: seed)
    return LabeledImages(
        count: count, channels: channels, height: height, width: width,
        pixels: (0..<(count * channels * height * width)).map { _ in UInt8(truncatingIfNeeded: generator.next()) },
        labels: (0..<count).map { _ in UInt8(generator.nextInt(below: 10)) })
}

/// The training split `PreparedData` makes (a copy of its rule; `courseBatches` checks the copy
/// against `PreparedData.train`).
private func trainIndices(_ dataset: Dataset, _ options: TrainingOptions) -> [Int] {
    var generator = SeededGenerator(seed: options.seed ^ 0x5348_5546_464C_4521)
    let order = generator.permutation(min(options.trainSize, dataset.train.count))
    return Array(order.dropLast(options.validationSize))
}

/// The trainer's inline batch loop before `BatchSource` (Trainer.run at the commit before it,
/// copied verbatim but for collecting the batches): consecutive batches through the preprocessed
/// split, wrapping around, reshuffled in sequence when asked.
private func inlineLoopBatches(_ data: PreparedData, _ options: TrainingOptions, iterations: Int) -> [Batch] {
    let train = data.train  // (the preprocessed split, once)
    let n = data.trainLabels.count
    let b = options.batchSize
    let exampleShape = Array(train.shape.dropFirst())
    let exampleSize = exampleShape.reduce(1, *)
    var order = Array(0..<n)
    var shuffler = SeededGenerator(seed: options.seed ^ 0x4550_4F43_4853_2121)
    var batch = Tensor<Float>(shape: [b] + exampleShape)
    var labels = [Int](repeating: 0, count: b)
    var epoch = 0
    var batches: [Batch] = []
    for iteration in 1...iterations {
        let first = (iteration - 1) * b
        train.scalars.withUnsafeBufferPointer { source in
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
        batches.append(Batch(inputs: batch.scalars, labels: labels))
    }
    return batches
}

/// `iterations` batches from `next`.
private func sequentialBatches(_ source: BatchSource, iterations: Int) -> [Batch] {
    var inputs = Tensor<Float>(shape: [0]), labels: [Int] = []
    return (0..<iterations).map { _ in
        source.next(into: &inputs, labels: &labels)
        return Batch(inputs: inputs.scalars, labels: labels)
    }
}

/// A batch's inputs (`[B, C, H, W]`'s scalars) and labels, compared bit for bit (so −0 ≠ 0).
private struct Batch: Equatable {
    var inputs: [Float]
    var labels: [Int]

    init(inputs: [Float], labels: [Int]) {
        self.inputs = inputs
        self.labels = labels
    }

    init(_ batch: (inputs: Tensor<Float>, labels: [Int])) {
        self.init(inputs: batch.inputs.scalars, labels: batch.labels)
    }

    static func == (a: Batch, b: Batch) -> Bool {
        a.labels == b.labels && a.inputs.count == b.inputs.count
            && a.inputs.withUnsafeBytes { a in b.inputs.withUnsafeBytes { b in memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0 } }
    }
}

private func same(_ a: [Batch], _ b: [Batch]) -> Bool { a == b }

/// How many of this process's threads are prefetch threads (Linux; nil elsewhere).
private func prefetchThreads() -> Int? {
    #if os(Linux)
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
    return tasks.filter {
        (try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8))?.hasPrefix("backprop-batch") == true
    }.count
    #else
    return nil
    #endif
}

/// n = 19 examples of 3 x 4 x 5 (23 images, 4 held out), so batches of 4 and 7 straddle epochs
/// and a batch of 45 spans more than two.
private let images = randomImages(count: 23, channels: 3, height: 4, width: 5)
private let split = Array((0..<23).reversed().dropFirst(4))
private let preprocessing = Preprocessing(scale: 1, mean: [120, 128, 135.5])
private let augmentations = ["none", "flip", "altflip,crop:2:reflect", "translate:3:zero"]

private func makeSource(batchSize: Int = 7, order: BatchOrder, augmentation: String = "none", seed: UInt64 = 42) throws -> BatchSource {
    BatchSource(images: images, indices: split, preprocessing: preprocessing, batchSize: batchSize, order: order,
                augmentation: try Augmentation(parsing: augmentation), seed: seed)
}

@Suite("Batch source", .serialized)
struct BatchSourceTests {
    // MARK: Today's batches

    @Test("the presets' options give the inline loop's batches, bit for bit", arguments: Experiment.presetNames, [false, true])
    func courseBatches(preset name: String, reshuffle: Bool) throws {
        var experiment = try #require(Experiment.preset(named: name))
        let shape = experiment.network.input
        // A small data set of the preset's shape, the preset's seed and batch size; n = 50 is
        // not a multiple of 16, so batches straddle epochs, and 12 iterations pass 3 epochs.
        let train = randomImages(count: 60, channels: shape[0], height: shape[1], width: shape[2], seed: 9)
        let dataset = Dataset(kind: experiment.dataset, train: train, test: train, classNames: (0..<10).map { "\($0)" })
        experiment.options.trainSize = 55
        experiment.options.validationSize = 5
        experiment.options.reshuffleEachEpoch = reshuffle
        let options = experiment.options
        let data = PreparedData(dataset: dataset, options: options)
        let indices = trainIndices(dataset, options)
        #expect(data.preprocessing.apply(to: dataset.train, indices: indices) == data.train, "the split's copy drifted")

        let expected = inlineLoopBatches(data, options, iterations: 12)
        let source = BatchSource(images: dataset.train, indices: indices, preprocessing: data.preprocessing, options: options)
        #expect(source.order == (reshuffle ? .reshuffledInSequence : .fixed))
        #expect(same(sequentialBatches(source, iterations: 12), expected))
        let prefetching = BatchSource(images: dataset.train, indices: indices, preprocessing: data.preprocessing, options: options)
        prefetching.startPrefetching()
        #expect(same(sequentialBatches(prefetching, iterations: 12), expected))
        #expect(same((1...12).map { Batch(source.batch(at: $0)) }, expected))
    }

    @Test("a batch larger than the split walks several epochs", arguments: BatchOrder.allCases)
    func batchLargerThanSplit(order: BatchOrder) throws {
        let source = try makeSource(batchSize: 45, order: order)
        let indices = source.imageIndices(at: 2)  // positions 45 ..< 90: epochs 2, 3, 4
        #expect(Set(indices[12 ..< 31]) == Set(split), "epoch 3, whole, in the middle of batch 2")
        if order == .fixed { #expect(Array(indices[12 ..< 31]) == split) }
        if order != .fixed {
            #expect(source.imageIndices(at: 1)[0 ..< 19] != source.imageIndices(at: 1)[19 ..< 38], "epochs 0 and 1 share an order")
        }
    }

    // MARK: Determinism

    @Test("the same seed gives the same batches; another seed others", arguments: BatchOrder.allCases)
    func seeds(order: BatchOrder) throws {
        let a = sequentialBatches(try makeSource(order: order, augmentation: "altflip,crop:2:reflect"), iterations: 12)
        let b = sequentialBatches(try makeSource(order: order, augmentation: "altflip,crop:2:reflect"), iterations: 12)
        let c = sequentialBatches(try makeSource(order: order, augmentation: "altflip,crop:2:reflect", seed: 43), iterations: 12)
        #expect(same(a, b))
        #expect(!same(a, c))
    }

    @Test("prefetching, seeking and random access give the sequential run's batches",
          arguments: BatchOrder.allCases, augmentations)
    func prefetchAndResume(order: BatchOrder, augmentation: String) throws {
        let count = 20  // 140 examples: 7+ epochs
        let reference = sequentialBatches(try makeSource(order: order, augmentation: augmentation), iterations: count)

        // Prefetching from the start.
        let prefetching = try makeSource(order: order, augmentation: augmentation)
        prefetching.startPrefetching()
        #expect(prefetching.isPrefetching)
        #expect(same(sequentialBatches(prefetching, iterations: count), reference))

        // batch(at:) alone, in reverse order (nothing carried over from earlier batches).
        let random = try makeSource(order: order, augmentation: augmentation)
        #expect(same((1...count).reversed().map { Batch(random.batch(at: $0)) }, reference.reversed()))

        // Seeking (as a resumed run does), backwards and forwards, with prefetching switched on and off.
        let resumed = try makeSource(order: order, augmentation: augmentation)
        var inputs = Tensor<Float>(shape: [0]), labels: [Int] = []
        for (step, t) in [13, 14, 3, 4, 5, 19, 1, 20].enumerated() {
            if step == 2 { resumed.startPrefetching() }
            if step == 6 { resumed.stopPrefetching() }
            if step == 7 { resumed.startPrefetching() }
            if t != resumed.nextIteration { resumed.seek(to: t) }
            resumed.next(into: &inputs, labels: &labels)
            #expect(Batch(inputs: inputs.scalars, labels: labels) == reference[t - 1], "batch \(t)")
            #expect(resumed.nextIteration == t + 1)
        }
    }

    @Test("batches made on many threads at once equal the sequential ones")
    func concurrentBatches() throws {
        let source = try makeSource(order: .reshuffledInSequence, augmentation: "altflip,crop:2:reflect")
        let reference = sequentialBatches(try makeSource(order: .reshuffledInSequence, augmentation: "altflip,crop:2:reflect"),
                                          iterations: 32)
        // One slot per iteration, each written by one thread. (`batch(at:)` may be called from
        // any thread, though the source as a whole, with `next`'s state, is not Sendable.)
        nonisolated(unsafe) let shared = source
        nonisolated(unsafe) let slots = UnsafeMutableBufferPointer<Batch>.allocate(capacity: 32)
        slots.initialize(repeating: Batch(inputs: [], labels: []))
        defer { slots.deinitialize().deallocate() }
        DispatchQueue.concurrentPerform(iterations: 32) { i in
            slots[31 - i] = Batch(shared.batch(at: 32 - i))  // later iterations first
        }
        #expect(same(Array(slots), reference))
    }

    // MARK: What batches hold

    @Test("each augmented example is the augmentation of its image with its (seed, epoch, example) draw")
    func augmentedExamples() throws {
        let augmentation = try Augmentation(parsing: "flip,crop:2:zero")
        let source = try makeSource(batchSize: 7, order: .reshuffledByEpoch, augmentation: augmentation.description)
        for t in [1, 3, 6] {
            let batch = source.batch(at: t)
            let exampleSize = 3 * 4 * 5
            for (row, index) in source.imageIndices(at: t).enumerated() {
                let epoch = ((t - 1) * 7 + row) / split.count
                let expected = augmentation.apply(augmentation.draw(seed: 42, epoch: epoch, example: index),
                                                  to: images, index: index, preprocessing: preprocessing)
                #expect(Array(batch.inputs.scalars[row * exampleSize ..< (row + 1) * exampleSize]) == expected)
                #expect(batch.labels[row] == Int(images.labels[index]))
            }
        }
    }

    @Test("reshuffled by epoch: every epoch is a new permutation of the split")
    func epochsArePermutations() throws {
        let source = try makeSource(batchSize: 19, order: .reshuffledByEpoch)
        let epochs = (1...4).map { source.imageIndices(at: $0) }
        #expect(epochs.allSatisfy { $0.sorted() == split.sorted() })
        #expect(Set(epochs).count == 4)
    }

    @Test("altflip through the source over 3 epochs: the flipped images alternate")
    func alternatingFlipInBatches() throws {
        // One batch per epoch, in the split's order; 60 wide images so a flip is always visible.
        let wide = randomImages(count: 60, channels: 1, height: 2, width: 6, seed: 3)
        let p = Preprocessing(scale: 1, mean: [0])
        let source = BatchSource(images: wide, indices: Array(0..<60), preprocessing: p, batchSize: 60, order: .fixed,
                                 augmentation: Augmentation(flip: .alternating), seed: 5)
        let plain = p.apply(to: wide).scalars
        let mirrored = (0..<60).flatMap { Augmentation(flip: .random).apply(.init(flip: true), to: wide, index: $0, preprocessing: p) }
        var flipped: [[Bool]] = []
        for epoch in 0..<3 {
            let inputs = source.batch(at: epoch + 1).inputs.scalars
            flipped.append((0..<60).map { i in
                let row = Array(inputs[i * 12 ..< (i + 1) * 12])
                #expect(row == Array(plain[i * 12 ..< (i + 1) * 12]) || row == Array(mirrored[i * 12 ..< (i + 1) * 12]))
                return row != Array(plain[i * 12 ..< (i + 1) * 12])
            })
        }
        #expect((20...40).contains(flipped[0].filter { $0 }.count), "\(flipped[0].filter { $0 }.count) of 60 flipped in epoch 0")
        #expect(flipped[1] == flipped[0].map { !$0 })
        #expect(flipped[2] == flipped[0])
    }

    @Test("next swaps buffers: the caller's arrays come back filled, sized once")
    func buffers() throws {
        let source = try makeSource(batchSize: 4, order: .fixed)
        source.startPrefetching()
        var inputs = Tensor<Float>(shape: [4, 3, 4, 5]), labels = [Int](repeating: 0, count: 4)
        for t in 1...5 {
            source.next(into: &inputs, labels: &labels)
            #expect(inputs.shape == [4, 3, 4, 5] && labels.count == 4)
            #expect(labels == source.imageIndices(at: t).map { Int(images.labels[$0]) })
        }
    }

    // MARK: The thread

    @Test("the prefetch thread ends on stop and on deinit")
    func threadShutdown() throws {
        guard let before = prefetchThreads() else { return }
        do {
            let source = try makeSource(order: .reshuffledInSequence, augmentation: "flip")
            source.startPrefetching()
            source.startPrefetching()  // no second thread
            _ = sequentialBatches(source, iterations: 3)
            #expect(prefetchThreads() == before + 1)
            source.stopPrefetching()
            #expect(prefetchThreads() == before)
            source.stopPrefetching()  // idempotent
            source.startPrefetching()
            _ = sequentialBatches(source, iterations: 1)  // the thread has named itself
            #expect(prefetchThreads() == before + 1)
        }
        // The source is gone: its deinit joined the thread.
        #expect(prefetchThreads() == before)
        do {
            let idle = try makeSource(order: .fixed)
            idle.startPrefetching()  // prefetches batch 1, never taken
        }
        #expect(prefetchThreads() == before)
    }
}
