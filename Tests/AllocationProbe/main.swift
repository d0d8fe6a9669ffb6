// Counts the heap allocations of steady-state training steps, for `AllocationTests`.
//
// Usage: backprop-allocation-probe THREADS
// Runs the real training loop (`Trainer`) of every preset on synthetic data; after a few
// warm-up iterations it counts every allocation made by any thread during the next ones and
// prints one line per preset and batch size (16, the presets', and 128, which trains in
// slices): `<preset> <batch> <iterations counted> <allocations>`. Prints
// `unsupported` where the allocator cannot be counted.
import _AllocationCounter
import Backprop
import BackpropData
import BackpropTraining
import Foundation

guard allocation_counter_supported() != 0 else {
    print("unsupported")
    exit(0)
}
Parallel.threadCount = Int(CommandLine.arguments.dropFirst().first ?? "") ?? Parallel.threadCount

let (warmUp, counted) = (3, 10)
for name in Experiment.presetNames {
  for batchSize in [16, 128] {
    var experiment = Experiment.preset(named: name)!
    experiment.options.batchSize = batchSize
    let kind = experiment.dataset
    let shape = experiment.network.input
    // Enough images that no epoch ends (and reshuffles) in the window, and no validation runs.
    let count = 2_000
    var generator = SeededGenerator(seed: 5)
    let images = LabeledImages(
        count: count, channels: shape[0], height: shape[1], width: shape[2],
        pixels: (0..<(count * shape.reduce(1, *))).map { _ in UInt8(truncatingIfNeeded: generator.next()) },
        labels: (0..<count).map { _ in UInt8(generator.nextInt(below: 10)) })
    let dataset = Dataset(kind: kind, train: images, test: images, classNames: (0..<10).map { "\($0)" })
    experiment.options.trainSize = count
    experiment.options.validationSize = 100
    // One more iteration than counted: the last one also measures validation accuracy.
    experiment.options.iterations = warmUp + counted + 1
    // cifar-quick also runs Lookahead (its slow weights are synchronised on every other step).
    if name == "cifar-quick" { experiment.options.lookahead = LookaheadOptions(every: 2) }
    let data = PreparedData(dataset: dataset, options: experiment.options)
    let network = try experiment.network.makeNetwork(Float.self, using: &generator)
    let trainer = Trainer(network: network, options: experiment.options, data: data)
    var allocations = 0
    try trainer.run { metrics in
        if metrics.iteration == warmUp { allocation_counter_start() }
        if metrics.iteration == warmUp + counted { allocations = allocation_counter_stop() }
    }
    print(name, batchSize, counted, allocations)
  }
}
