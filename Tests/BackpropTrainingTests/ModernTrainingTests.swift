import Backprop
import BackpropData
import BackpropTestSupport
import BackpropTraining
import Foundation
import Testing

/// A small net with every stateful piece: BatchNorm (buffers, couples the batch), dropout (masks
/// from seed and step), a residual block, and a dense head.
private func modernSpec() -> NetworkSpec {
    NetworkSpec(input: [1, 28, 28], layers: [
        .conv2d(outputChannels: 16, kernelSize: 3, padding: 1, bias: false), LayerSpec(BatchNorm2DSpec()), .relu,
        .maxPool2d(size: 2, stride: 2),
        LayerSpec(ResidualSpec(main: [.conv2d(outputChannels: 16, kernelSize: 3, padding: 1, bias: false), LayerSpec(BatchNorm2DSpec())])),
        .relu, .maxPool2d(size: 2, stride: 2), LayerSpec(DropoutSpec(probability: 0.2)),
        .dense(outputFeatures: 10),
    ])
}

/// Options that use every training feature: PyTorch SGD with Nesterov, one-cycle, label
/// smoothing, an EMA of the weights, augmentation and a reshuffle each epoch.
private func modernOptions(iterations: Int) -> TrainingOptions {
    var o = Experiment.defaultOptions(for: .mnist)
    o.iterations = iterations
    o.batchSize = 32
    o.trainSize = 2000
    o.validationSize = 200
    o.validationInterval = 10
    o.optimizer = .sgd
    o.nesterov = true
    o.learningRate = 0.05
    o.weightDecay = 5e-4
    o.schedule = .oneCycle(Schedule.OneCycle())
    o.labelSmoothing = 0.1
    o.ema = 0.9
    o.augmentation = try! Augmentation(parsing: "flip,crop:2")
    o.reshuffleEachEpoch = true
    return o
}

/// The network's parameters and buffers as the bytes of a safetensors file.
private func stateBytes(_ network: Network<Float>) throws -> Data {
    try Safetensors.encode(network.namedParameters.map { ($0.name, $0.parameter.value) } + network.namedBuffers.map { ($0.name, $0.buffer.value) })
}

@Suite("Modern training: resume, EMA, BatchNorm nets")
struct ModernTrainingTests {
    /// With Lookahead (every 5 steps), the stop at 33 falls between synchronisations, where the
    /// slow weights differ from the live ones, so only a checkpoint that keeps them resumes exactly.
    @Test("a run stopped halfway and resumed from its checkpoint ends with byte-identical weights, buffers and metrics",
          arguments: [false, true])
    func resumeIsByteIdentical(lookahead: Bool) throws {
        let dataset = try TestData.mnistDataset.get()
        var options = modernOptions(iterations: 70)
        if lookahead { options.lookahead = LookaheadOptions(every: 5, decay: 0.9, power: 1) }
        let data = PreparedData(dataset: dataset, options: options)
        func fresh() throws -> Trainer {
            var g = SeededGenerator(seed: options.seed)
            return Trainer(network: try modernSpec().makeNetwork(using: &g), options: options, data: data)
        }
        let straight = try fresh()
        var straightMetrics: [IterationMetrics] = []
        #expect(try straight.run { straightMetrics.append($0) } == .finished)

        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let first = try fresh()
        var metrics: [IterationMetrics] = []
        #expect(try first.run(shouldStop: { metrics.count == 33 }) { metrics.append($0) } == .stopped)
        try Checkpoint(of: first).save(to: folder.url)
        // Another process starts from scratch: a new network from the run's seed (as `--resume`
        // builds it: dropout layers draw their salts then), whose weights the checkpoint replaces.
        let second = try fresh()
        for p in second.network.parameters { p.value = Tensor(shape: p.value.shape, repeating: 0.5) }
        try Checkpoint.load(from: folder.url).restore(into: second)
        #expect(second.progress.iteration == 33)
        #expect(try second.run { metrics.append($0) } == .finished)

        #expect(try stateBytes(second.network) == stateBytes(straight.network))
        let strip = { (m: IterationMetrics) in [m.loss, m.smoothedLoss, m.accuracy, m.smoothedAccuracy, m.validationAccuracy ?? -1] }
        #expect(metrics.map(strip) == straightMetrics.map(strip))
        // The EMA's averages too.
        straight.average?.swapAverages()
        second.average?.swapAverages()
        #expect(try stateBytes(second.network) == stateBytes(straight.network))
    }

    @Test("the checkpoint refuses a network it does not fit, in one line")
    func checkpointMismatch() throws {
        let dataset = try TestData.mnistDataset.get()
        let options = modernOptions(iterations: 4)
        let data = PreparedData(dataset: dataset, options: options)
        var g = SeededGenerator(seed: 1)
        let trainer = Trainer(network: try modernSpec().makeNetwork(using: &g), options: options, data: data)
        try trainer.run { _ in }
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        try Checkpoint(of: trainer).save(to: folder.url)
        let other = Trainer(network: try makeNetwork(try preset("mnist"), seed: 1), options: options, data: data)
        do {
            try Checkpoint.load(from: folder.url).restore(into: other)
            Issue.record("a checkpoint of another network was accepted")
        } catch {
            #expect(error.description.contains("missing") || error.description.contains("shape"), "\(error)")
            #expect(!error.description.contains("\n"))
        }
    }

    @Test("BatchNorm batches are not sliced: the step's gradients equal one whole-batch pass")
    func batchNormIsNotSliced() throws {
        var g = SeededGenerator(seed: 3)
        let net: Network<Float> = try modernSpec().makeNetwork(using: &g)
        #expect(net.couplesExamples)
        let x = Tensor<Float>.randomNormal(shape: [40, 1, 28, 28], standardDeviation: 1, using: &g)
        let labels = (0..<40).map { $0 % 10 }
        let context = StepContext.training(seed: 5, step: 2)
        net.zeroGradients()
        _ = net.accumulateGradients(batch: x, labels: labels, context: context, microBatch: 16)
        let sliced = net.parameters.map(\.gradient)
        net.zeroGradients()
        var dLogits: Tensor<Float>? = Tensor(shape: [])
        _ = SoftmaxCrossEntropy().loss(logits: net.forward(x, context: context), labels: labels, gradient: &dLogits)
        net.backward(dLogits!, context: context)
        #expect(sliced == net.parameters.map(\.gradient))
    }
}

// MARK: - The README's residual net, trained, evaluated, and loaded by PyTorch

private let resnetScript = #"""
import json, sys
import numpy as np
import torch
from torch import nn
from safetensors.torch import load_file

folder = sys.argv[1]

class Residual(nn.Module):
    def __init__(self, main, shortcut=None):
        super().__init__()
        self.main = main
        self.shortcut = shortcut
    def forward(self, x):
        return self.main(x) + (x if self.shortcut is None else self.shortcut(x))

class GlobalAvgPool(nn.Module):   # Backprop's global_avgpool2d: [N, C, H, W] -> [N, C]
    def forward(self, x):
        return x.mean(dim=(2, 3))

def conv(cin, cout, k=3, stride=1):
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)

model = nn.Sequential(
    conv(1, 16), nn.BatchNorm2d(16), nn.ReLU(),
    Residual(nn.Sequential(conv(16, 16), nn.BatchNorm2d(16), nn.ReLU(), conv(16, 16), nn.BatchNorm2d(16))),
    nn.ReLU(),
    Residual(nn.Sequential(conv(16, 32, stride=2), nn.BatchNorm2d(32), nn.ReLU(), conv(32, 32), nn.BatchNorm2d(32)),
             nn.Sequential(conv(16, 32, k=1, stride=2), nn.BatchNorm2d(32))),
    nn.ReLU(), GlobalAvgPool(), nn.Linear(32, 10))
state = load_file(f"{folder}/run/model.safetensors")
model.load_state_dict(state, strict=True)
model.eval()
x = np.fromfile(f"{folder}/input.f32", dtype="<f4").reshape(-1, 1, 28, 28)
with torch.no_grad():
    logits = model(torch.from_numpy(x.copy())).numpy().astype("<f4")
logits.tofile(f"{folder}/torch_logits.f32")
print(json.dumps({"keys": len(state), "tracked": int(state["1.num_batches_tracked"].item()),
                  "tracked_dtype": str(state["1.num_batches_tracked"].dtype)}))
"""#

@Suite("The README's residual net")
struct ResidualNetTests {
    static let specFile = TestPaths.packageRoot.appendingPathComponent("Examples/resnet-mnist.json")

    @Test("trains through the CLI, evaluates, and PyTorch (strict load) predicts the same test labels",
          .enabled(if: TestData.mnistDataset.isSuccess, "needs the MNIST files"))
    func trainsAndLoadsIntoPyTorch() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let run = folder.url.appendingPathComponent("run")
        let train = try backprop(["train", "--spec", Self.specFile.path, "--data-dir", TestData.root.path,
                                  "--iterations", "150", "--train-size", "6000", "--validation-size", "500", "--out", run.path])
        try #require(train.exited && train.status == 0, "train failed: \(train.summary)")
        let model = try ModelArchive.load(from: run)
        let test = try TestData.mnistDataset.get().test
        let (predictions, report) = model.evaluate(on: test)
        #expect(report.accuracy > 0.9, "accuracy \(report.accuracy) after 150 iterations")
        let evaluate = try backprop(["evaluate", run.path, "--data-dir", TestData.root.path])
        #expect(evaluate.exited && evaluate.status == 0 && evaluate.stdout.contains(String(format: "%.2f%%", report.accuracy * 100)), "\(evaluate.summary)")

        guard let python = pythonWithTorch else {
            print("notice: no Python with torch and safetensors; the PyTorch half of this test was skipped")
            return
        }
        let count = 1000
        let inputs = model.preprocessing.apply(to: test, indices: Array(0..<count))
        try writeRawFloat32(inputs, to: folder.file("input.f32"))
        let script = folder.file("resnet.py")
        try Data(resnetScript.utf8).write(to: script)
        let result = try runProcess(python, [script.path, folder.url.path])
        try #require(result.exited && result.status == 0, "python failed: \(result.summary)")
        let report2 = try #require(try JSONSerialization.jsonObject(with: Data((result.stdout.split(separator: "\n").last ?? "").utf8)) as? [String: Any])
        #expect(report2["keys"] as? Int == model.network.namedParameters.count + model.network.namedBuffers.count)
        #expect(report2["tracked"] as? Int == 150 && report2["tracked_dtype"] as? String == "torch.int64", "\(report2)")
        let theirs = try readRawFloat32(folder.file("torch_logits.f32"))
        let ours = model.network.forward(inputs).scalars
        try #require(theirs.count == ours.count)
        let worst = zip(ours, theirs).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? .infinity
        #expect(worst < 1e-4, "max relative |Δlogit| \(worst)")
        var same = 0
        for row in 0..<count {
            let a = theirs[(row * 10)..<(row * 10 + 10)]
            let torchLabel = a.indices.max { a[$0] < a[$1] }! - row * 10
            if torchLabel == predictions.classes[row] { same += 1 }
        }
        #expect(same == count, "PyTorch agrees on \(same) of \(count) labels")
    }
}

extension Result {
    var isSuccess: Bool { if case .success = self { true } else { false } }
}

@Suite("Ctrl-C and --resume through the CLI")
struct InterruptTests {
    @Test("SIGINT mid-run: exit 130, a usable folder that evaluate calls interrupted, and --resume ends with the bytes of an uninterrupted run",
          .enabled(if: TestData.mnistDataset.isSuccess, "needs the MNIST files"))
    func interruptAndResume() throws {
        let executable = try #require(backpropExecutable)
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let data = TestData.root.path
        let common = ["--iterations", "1500", "--train-size", "4000", "--validation-size", "500", "--data-dir", data, "--no-test",
                      "--optimizer", "sgd", "--nesterov", "--schedule", "onecycle", "--augment", "flip,crop:2", "--ema", "0.9"]
        let straight = folder.url.appendingPathComponent("straight"), stopped = folder.url.appendingPathComponent("stopped")
        let whole = try backprop(["train", "mnist", "--out", straight.path, "--save-best"] + common)
        try #require(whole.exited && whole.status == 0, "\(whole.summary)")
        // --save-best keeps a loadable model beside the final one.
        let best = try ModelArchive.load(from: straight.appendingPathComponent(RunFiles.best))
        #expect(best.network.parameterCount == 14_682)

        // Start the same run, wait until it has trained a while, then interrupt it.
        let process = Process()
        process.executableURL = executable
        process.arguments = ["train", "mnist", "--out", stopped.path] + common
        process.standardOutput = FileHandle.nullDevice
        let errors = folder.file("stderr")
        _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: errors)
        try process.run()
        let metrics = stopped.appendingPathComponent(RunFiles.metrics)
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline, ((try? Data(contentsOf: metrics))?.count ?? 0) < 1 << 16 { usleep(20_000) }
        process.interrupt()
        process.waitUntilExit()
        let message = String(decoding: try Data(contentsOf: errors), as: UTF8.self)
        #expect(process.terminationReason == .exit && process.terminationStatus == 130, "status \(process.terminationStatus): \(message)")
        #expect(message.contains("--resume"), "\(message)")
        for file in [Checkpoint.fileName, ModelArchive.weightsFile, RunFiles.record] {
            #expect(FileManager.default.fileExists(atPath: stopped.appendingPathComponent(file).path), "\(file) missing after the interrupt")
        }
        let record = try JSONDecoder().decode(RunRecord.self, from: Data(contentsOf: stopped.appendingPathComponent(RunFiles.record)))
        #expect(record.status == "interrupted" && record.iterationsCompleted > 0 && record.iterationsCompleted < 1500, "\(record.status) \(record.iterationsCompleted)")
        let evaluate = try backprop(["evaluate", stopped.path, "--data-dir", data])
        #expect(evaluate.exited && evaluate.status == 0 && evaluate.stdout.contains("interrupted"), "\(evaluate.summary)")

        // Other options may not accompany --resume.
        let refused = try backprop(["train", "--resume", stopped.path, "--iterations", "9"])
        #expect(refused.status != 0 && refused.stderrLines.count == 1, "\(refused.summary)")

        let resumed = try backprop(["train", "--resume", stopped.path, "--data-dir", data, "--no-test"])
        try #require(resumed.exited && resumed.status == 0, "\(resumed.summary)")
        #expect(try Data(contentsOf: stopped.appendingPathComponent(ModelArchive.weightsFile))
                == Data(contentsOf: straight.appendingPathComponent(ModelArchive.weightsFile)), "the resumed model differs")
        let lines = { (url: URL) in try String(contentsOf: url.appendingPathComponent(RunFiles.metrics), encoding: .utf8)
            .split(separator: "\n").map { line in
                // Everything but the timings.
                (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]).map { o in
                    ["iteration", "loss", "accuracy", "validation_accuracy"].map { "\(o[$0] ?? "-")" }.joined(separator: " ")
                } ?? ""
            }
        }
        #expect(try lines(stopped) == lines(straight))
        #expect(!FileManager.default.fileExists(atPath: stopped.appendingPathComponent(Checkpoint.fileName).path),
                "a finished run keeps no checkpoint")
    }
}
