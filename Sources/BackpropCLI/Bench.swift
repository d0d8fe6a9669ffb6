import ArgumentParser
import Backprop
import BackpropTraining
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure training and inference throughput of the presets, and GEMM speed.",
        discussion: """
            For each preset and batch size: training img/s (forward + backward + SGD update on random \
            data), inference img/s (forward only), the GFLOP/s those imply (multiply-adds counted as 2), \
            and the process's peak resident memory. Then GEMM GFLOP/s at 2048^3 and at the shapes the \
            seed nets use. Scripts/bench_pytorch.py runs the same nets in PyTorch and prints the ratios.
            """)

    @Option(help: "Presets to measure (comma-separated).") var presets = Experiment.presetNames.joined(separator: ",")
    // `.unconditional`: `--seconds -1` reaches the range check instead of reading as a flag.
    @Option(parsing: .unconditional, help: "Batch sizes (comma-separated).") var batchSizes = "16,128"
    @Option(parsing: .unconditional, help: "Seconds to measure each row (after a warm-up).") var seconds = 3.0
    @Flag(help: "Skip the GEMM measurements.") var noGemm = false
    @Flag(help: "Measure training only (inference is reported as 0), e.g. to profile it.") var trainingOnly = false
    @Flag(help: "Print JSON instead of a table.") var json = false
    @Option(help: "Spec files to measure besides the presets (comma-separated).") var specs: String?
    @Flag(help: "Also time each layer's forward and backward pass on its own (the fastest of 5 calls), the backward pass of convolutions and dense layers split into ∂W and ∂X.") var layers = false
    @Option(help: "The Winograd kernels' output tile for every layer, to compare the two: 4 (F(4x4, 3x3)) or 2 (F(2x2, 3x3)); by default each layer's is chosen by its plane size.")
    var winogradTile: Int?
    @OptionGroup var threading: ThreadOptions

    struct Row: Codable {
        var preset: String
        var batchSize: Int
        var trainImagesPerSecond: Double
        var inferenceImagesPerSecond: Double
        var trainGFLOPS: Double
        var inferenceGFLOPS: Double
        var peakMemoryMB: Double

        enum CodingKeys: String, CodingKey {
            case preset, batchSize = "batch_size"
            case trainImagesPerSecond = "train_images_per_second", inferenceImagesPerSecond = "inference_images_per_second"
            case trainGFLOPS = "train_gflops", inferenceGFLOPS = "inference_gflops", peakMemoryMB = "peak_memory_mb"
        }
    }

    struct GEMMRow: Codable {
        var shape: String
        var gflops: Double
    }

    func run() throws {
        try threading.apply()
        guard seconds > 0, seconds <= 3600 else { throw UserError.usage("--seconds must be a number from 0 to 3600, got \(seconds)") }
        if let tile = winogradTile, tile != 2 && tile != 4 { throw UserError.usage("--winograd-tile must be 2 or 4, got \(tile)") }
        let experiments = try presets.split(separator: ",").map { name in
            guard let experiment = Experiment.preset(named: String(name)) else {
                throw UserError.usage("unknown preset '\(name)' (known: \(ExperimentChoice.presetList))")
            }
            return experiment
        } + (specs ?? "").split(separator: ",").map { path throws in try userFacing { try Experiment(specFile: URL(fileURLWithPath: String(path))) } }
        let batches = try batchSizes.split(separator: ",").map(parseBatch)
        // Every network and batch is checked before the first measurement.
        for experiment in experiments {
            let network = try makeNetwork(experiment, seed: 1)
            for batch in batches { try checkBatchMemory(network, batchSize: batch, flag: "--batch-sizes") }
        }
        var rows: [Row] = []
        for experiment in experiments {
            for batch in batches {
                rows.append(measure(experiment, batch: batch))
                if !json { print(format(rows.last!)) }
                if layers && !json { printLayers(experiment, batch: batch) }
            }
        }
        var gemms: [GEMMRow] = []
        if !noGemm {
            for (m, n, k, label) in gemmShapes() {
                gemms.append(GEMMRow(shape: label, gflops: measureGEMM(m: m, n: n, k: k)))
                if !json { print(String(format: "GEMM %@: %.1f GFLOP/s", label, gemms.last!.gflops)) }
            }
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let object = FileFormat.bench.jsonObject.merging([
                "rows": try JSONSerialization.jsonObject(with: encoder.encode(rows)),
                "gemm": try JSONSerialization.jsonObject(with: encoder.encode(gemms)),
            ]) { a, _ in a }
            print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self))
        }
    }

    private func parseBatch(_ text: Substring) throws -> Int {
        guard let b = Int(text), b > 0, b <= 1 << 16 else { throw UserError.usage("--batch-sizes: '\(text)' is not a whole number from 1 to 65536") }
        return b
    }

    private func format(_ r: Row) -> String {
        pad(r.preset, 17) + String(format: " batch %4d  train %8.0f img/s (%5.1f GFLOP/s)  inference %8.0f img/s (%5.1f GFLOP/s)  peak %6.1f MB",
               r.batchSize, r.trainImagesPerSecond, r.trainGFLOPS, r.inferenceImagesPerSecond, r.inferenceGFLOPS, r.peakMemoryMB)
    }

    /// One line per leaf layer: milliseconds per batch forward and backward, and the GFLOP/s of
    /// its products; for convolutions and dense layers, the backward pass's `∂W` and `∂X`.
    private func printLayers(_ experiment: Experiment, batch: Int) {
        var generator = SeededGenerator(seed: 1)
        let network = try! experiment.network.makeNetwork(Float.self, using: &generator)  // built once above: cannot fail
        setWinogradTile(network)
        let timings = LayerProfile.measure(network, batchSize: batch, repetitions: 5)
        let total = timings.reduce(0) { $0 + $1.forwardSeconds + $1.backwardSeconds }
        for t in timings {
            let rate = { (flops: Double, s: Double) in flops > 0 ? String(format: "%6.1f", flops * Double(batch) / s / 1e9) : "     -" }
            let shape = t.outputShape.map(String.init).joined(separator: "x")
            // The backward pass split into ∂W (timed on its own) and ∂X (the rest), where it computes both.
            let split = t.weightGradientSeconds.map { weight in
                let input = max(t.backwardSeconds - weight, 1e-9)
                return String(format: "  (∂W %7.2f ms %@, ∂X %7.2f ms %@ GFLOP/s)", weight * 1e3, rate(t.forwardFLOPs, weight) as NSString,
                              input * 1e3, rate(t.forwardFLOPs, input) as NSString)
            } ?? ""
            print("  " + pad(t.path, 14) + " " + pad(t.kind, 12) + " " + pad(shape, 10)
                  + String(format: " fwd %8.2f ms %@ GFLOP/s  bwd %8.2f ms %@ GFLOP/s  %4.1f %%",
                           t.forwardSeconds * 1e3, rate(t.forwardFLOPs, t.forwardSeconds) as NSString,
                           t.backwardSeconds * 1e3, rate(t.backwardFLOPs, t.backwardSeconds) as NSString,
                           100 * (t.forwardSeconds + t.backwardSeconds) / total)
                  + split)
        }
        // The convolutions together: their share of the timed passes and their rate over both.
        let convolutions = timings.filter { $0.kind == "Conv2D" }
        guard !convolutions.isEmpty else { return }
        let seconds = convolutions.reduce(0) { $0 + $1.forwardSeconds + $1.backwardSeconds }
        let flops = convolutions.reduce(0) { $0 + ($1.forwardFLOPs + $1.backwardFLOPs) * Double(batch) }
        print(String(format: "  convolutions: %.0f of %.0f ms (%.1f %%), %.1f GFLOP/s forward and backward",
                     seconds * 1e3, total * 1e3, 100 * seconds / total, flops / seconds / 1e9))
    }

    private func setWinogradTile(_ network: Network<Float>) {
        for row in network.rows { (row.layer as? Conv2D<Float>)?.winogradTile = winogradTile }
    }

    /// Runs `body` repeatedly for about `seconds` after one warm-up call; returns calls per second.
    private func rate(_ body: () -> Void) -> Double {
        body()
        var calls = 0
        let start = Date()
        repeat {
            body()
            calls += 1
        } while Date().timeIntervalSince(start) < seconds
        return Double(calls) / Date().timeIntervalSince(start)
    }

    private func measure(_ experiment: Experiment, batch: Int) -> Row {
        var generator = SeededGenerator(seed: 1)
        let network = try! experiment.network.makeNetwork(Float.self, using: &generator)  // built once above: cannot fail
        setWinogradTile(network)
        let inputs = Tensor<Float>.randomNormal(shape: [batch] + network.inputShape, standardDeviation: 1, using: &generator)
        let labels = (0..<batch).map { _ in generator.nextInt(below: 10) }
        let o = experiment.options
        let optimizer = SGD<Float>(learningRate: o.learningRate, momentum: o.momentum, weightDecay: o.weightDecay)
        let trainSteps = rate {
            network.zeroGradients()
            _ = network.accumulateGradients(batch: inputs, labels: labels)
            optimizer.step(network.parameters)
        }
        let inferenceSteps = trainingOnly ? 0 : rate { network.forward(inputs) }
        let (forward, training) = flopsPerImage(network)
        let train = trainSteps * Double(batch), inference = inferenceSteps * Double(batch)
        return Row(preset: experiment.name, batchSize: batch, trainImagesPerSecond: train, inferenceImagesPerSecond: inference,
                   trainGFLOPS: train * training / 1e9, inferenceGFLOPS: inference * forward / 1e9,
                   peakMemoryMB: peakResidentMegabytes())
    }

    /// Multiply-adds ×2 of one image's forward pass, and of forward + backward (the first
    /// layer computes no input gradient).
    private func flopsPerImage(_ network: Network<Float>) -> (forward: Double, training: Double) {
        var forward = 0.0, training = 0.0
        for (index, row) in network.rows.enumerated() {
            forward += row.forwardFLOPs
            training += row.forwardFLOPs * (index == 0 ? 2 : 3)  // forward, ∂W, and ∂X except for the first layer
        }
        return (forward, training)
    }

    /// 2048³; the products the presets' classifiers compute (their convolutions are direct, not
    /// GEMMs); and the per-image im2col GEMMs of the convolutions' reference path.
    private func gemmShapes() -> [(Int, Int, Int, String)] {
        [(2048, 2048, 2048, "2048x2048x2048"),
         (10, 4096, 16, "10x4096x16 (cifar10 classifier ∂W, batch 16)"),
         (16, 4096, 10, "16x4096x10 (cifar10 classifier ∂X, batch 16)"),
         (10, 784, 128, "10x784x128 (mnist classifier ∂W, batch 128)"),
         (16, 196, 400, "16x196x400 (mnist conv2 by im2col, the reference path)"),
         (16, 256, 400, "16x256x400 (cifar conv2 by im2col, the reference path)")]
    }

    private func measureGEMM(m: Int, n: Int, k: Int) -> Double {
        var generator = SeededGenerator(seed: 2)
        let a = Tensor<Float>.randomNormal(shape: [m, k], standardDeviation: 1, using: &generator).scalars
        let b = Tensor<Float>.randomNormal(shape: [k, n], standardDeviation: 1, using: &generator).scalars
        // Raw pointers taken once: passing arrays in the timed closure copied C (16 MB at 2048²)
        // on every call, a fifth of the measured time.
        let c = UnsafeMutablePointer<Float>.allocate(capacity: m * n)
        defer { c.deallocate() }
        let calls = a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                rate {
                    GEMM.multiply(transposeA: false, transposeB: false, m: m, n: n, k: k, a: a.baseAddress!, lda: k,
                                  b: b.baseAddress!, ldb: n, c: c, ldc: n, accumulate: false, parallel: true)
                }
            }
        }
        return calls * 2 * Double(m * n * k) / 1e9
    }

    /// The process's peak resident memory. On Linux this is `VmHWM`, which starts afresh at
    /// `exec` (unlike `ru_maxrss`, which a child started from a large process inherits).
    private func peakResidentMegabytes() -> Double {
        #if os(Linux)
        if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
           let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
           let kilobytes = Double(line.split(separator: " ")[1]) {
            return kilobytes / 1024
        }
        return 0
        #else
        var usage = rusage()
        getrusage(RUSAGE_SELF, &usage)
        return Double(usage.ru_maxrss) / 1_048_576
        #endif
    }
}
