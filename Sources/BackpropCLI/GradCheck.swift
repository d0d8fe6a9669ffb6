import ArgumentParser
import Backprop
import BackpropTraining
import Foundation

struct GradCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gradcheck",
        abstract: "Check a whole network's backprop gradients against central differences.",
        discussion: """
            Runs one random batch through the network with the softmax cross-entropy loss and \
            compares every parameter tensor's gradient with (L(w+h) - L(w-h)) / 2h on a random \
            sample of its entries. The check runs the network's layers in Double (the same code \
            as training, instantiated for Double): correct gradients agree to about 1e-8, wrong \
            ones (a transpose, a missing 1/N, a wrong pooling route) are off by order 1.
            """)

    @OptionGroup var experiment: ExperimentChoice
    @OptionGroup var threading: ThreadOptions
    // `.unconditional`: `--step -1` reaches the range checks instead of reading as a flag.
    @Option(parsing: .unconditional, help: "Examples in the random batch.") var batchSize = 4
    @Option(parsing: .unconditional, help: "Entries checked per parameter tensor.") var entries = 40
    @Option(parsing: .unconditional, help: "Finite-difference step h.") var step: Double = 3e-5
    @Option(parsing: .unconditional, help: "Largest accepted max relative error.") var tolerance = 1e-6
    @Option(parsing: .unconditional, help: "Seed for the weights, the batch and the sampled entries.") var seed: UInt64 = 1
    @Option(parsing: .unconditional, help: "Standard deviation of the random inputs (default: that of the preprocessed data set: 0.3 for MNIST, 60 for CIFAR-10).")
    var inputScale: Double?

    func run() throws {
        try threading.apply()
        guard batchSize > 0, batchSize <= 1 << 10 else { throw UserError.usage("--batch-size must be from 1 to 1024, got \(batchSize)") }
        guard entries > 0, entries <= 1 << 20 else { throw UserError.usage("--entries must be from 1 to 1048576, got \(entries)") }
        for (flag, value) in [("--step", step), ("--tolerance", tolerance), ("--input-scale", inputScale ?? 1)] {
            guard value > 0, value.isFinite else { throw UserError.usage("\(flag) must be a positive number, got \(value)") }
        }
        let chosen = try experiment.resolve()
        let trained = try makeNetwork(chosen, seed: seed)  // checks the shapes against the data set
        try checkBatchMemory(trained, batchSize: batchSize, flag: "--batch-size")
        var weights = SeededGenerator(seed: seed)
        let network = try userFacing { try chosen.network.makeNetwork(Double.self, using: &weights) }
        var generator = SeededGenerator(seed: seed ^ 0xC4EC4)
        let inputs = Tensor<Double>.randomNormal(shape: [batchSize] + network.inputShape, standardDeviation: inputScale ?? (chosen.dataset == .cifar10 ? 60 : 0.3), using: &generator)
        // A whitening first layer is set from the batch, as training sets it from its images
        // (in Float; then copied): left at its placeholder draw, it would feed GELU values so
        // large that many round to exactly 0 and tie in the max pools, kinks at every h.
        if trained.awaitsData { trained.initializeFromData(Tensor(shape: inputs.shape, scalars: inputs.scalars.map(Float.init))) }
        network.loadState(from: trained)
        let labels = (0..<batchSize).map { _ in generator.nextInt(below: 10) }
        print("gradient check (Double): \(chosen.name), batch \(batchSize), h \(step), tolerance \(tolerance)")
        print([pad("tensor", 12), pad("checked", 8, right: true), pad("at kinks", 9, right: true), pad("max rel err", 12, right: true), pad("norm rel err", 13, right: true), "  result"].joined())
        fflush(nil)
        // Each row as soon as its tensor is done: every checked entry costs a few forward passes
        // in Double, minutes in all for a large network.
        var failed = 0
        let results = GradientCheck.check(network: network, inputs: inputs, labels: labels, entriesPerTensor: entries,
                                          step: step, using: &generator) { r in
            let ok = r.maxRelativeError < tolerance && r.checked > 0
            if !ok { failed += 1 }
            print([pad(r.name, 12), pad(String(r.checked), 8, right: true), pad(String(r.skipped), 9, right: true),
                   pad(String(format: "%.2e", r.maxRelativeError), 12, right: true),
                   pad(String(format: "%.2e", r.normRelativeError), 13, right: true), ok ? "  ok" : "  FAIL"].joined())
            fflush(nil)
        }
        if failed > 0 { throw UserError("\(failed) of \(results.count) parameter tensors failed the gradient check") }
        print("all \(results.count) parameter tensors pass")
    }
}
