import Backprop
import BackpropData
import BackpropTraining
import Foundation
import BackpropTestSupport
import Testing

/// Writes `object` as JSON to `name` in `folder`.
private func writeSpec(_ object: Any, named name: String = "spec.json", in folder: TemporaryFolder) throws -> URL {
    let url = folder.file(name)
    try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]).write(to: url)
    return url
}

/// Writes JSON text to a file.
private func writeSpec(text: String, named name: String = "spec.json", in folder: TemporaryFolder) throws -> URL {
    let url = folder.file(name)
    try Data(text.utf8).write(to: url)
    return url
}

/// The one-line description of the `SpecError` that `body` throws (records an issue otherwise).
private func specError(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> String {
    do {
        try body()
        Issue.record("expected a SpecError, nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as SpecError {
        #expect(!error.description.contains("\n"), "not one line: \(error)", sourceLocation: sourceLocation)
        return error.description
    } catch {
        Issue.record("expected a SpecError, got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
    }
    return ""
}

/// The one-line description of the `ShapeError` that building `spec` throws.
private func shapeError(_ spec: NetworkSpec, sourceLocation: SourceLocation = #_sourceLocation) -> String {
    var generator = SeededGenerator(seed: 1)
    do {
        _ = try spec.makeNetwork(Float.self, using: &generator)
        Issue.record("expected a ShapeError, the network was built", sourceLocation: sourceLocation)
    } catch {
        #expect(!error.description.contains("\n"), "not one line: \(error)", sourceLocation: sourceLocation)
        return error.description
    }
    return ""
}

@Suite("Spec files")
struct SpecTests {
    @Test("a preset written as a spec file reads back as the same experiment", arguments: Experiment.presetNames)
    func presetRoundTrip(_ name: String) throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let experiment = try preset(name)
        let url = try writeSpec(experiment.jsonObject, named: "\(name).json", in: folder)
        let read = try Experiment(specFile: url)
        #expect(read.network == experiment.network)
        #expect(read.options == experiment.options)
        #expect(read.dataset == experiment.dataset)
        #expect(read.name == experiment.name)
        // And the network built from it is the same, weight for weight.
        let a: Network<Float> = try makeNetwork(experiment, seed: 3)
        let b: Network<Float> = try makeNetwork(read, seed: 3)
        #expect(parameterBits(a) == parameterBits(b))
    }

    @Test("options that differ from the defaults survive the round trip")
    func changedOptionsRoundTrip() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        var experiment = try preset("cifar10")
        experiment.name = "custom"
        experiment.options = TrainingOptions(iterations: 123, batchSize: 7, learningRate: 0.0375, momentum: 0.5, weightDecay: 0,
                                             trainSize: 999, validationSize: 99, seed: 12_345_678_901, validationInterval: 17,
                                             movingAverage: 0.9, reshuffleEachEpoch: true)
        let read = try Experiment(specFile: writeSpec(experiment.jsonObject, in: folder))
        #expect(read.options == experiment.options)
        #expect(read.name == "custom")
        #expect(read.network == experiment.network)
    }

    @Test("lookahead: true, an object with defaults for missing keys, round-trips, and values out of range are one-line errors")
    func lookaheadOptions() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        var object = try preset("cifar-fast").jsonObject
        var training = try #require(object["training"] as? [String: Any])
        training["lookahead"] = true
        object["training"] = training
        let on = try Experiment(specFile: writeSpec(object, in: folder))
        #expect(on.options.lookahead == LookaheadOptions(every: 5, decay: 0.7737809375, power: 3))
        #expect(abs(0.7737809375 - pow(0.95, 5)) < 1e-12)
        training["lookahead"] = ["every": 7]
        object["training"] = training
        let seven = try Experiment(specFile: writeSpec(object, in: folder))
        #expect(seven.options.lookahead == LookaheadOptions(every: 7))
        #expect(try Experiment(specFile: writeSpec(seven.jsonObject, in: folder)).options == seven.options)
        training["lookahead"] = false
        object["training"] = training
        #expect(try Experiment(specFile: writeSpec(object, in: folder)).options.lookahead == nil)
        // Out of range: the options' validation (run before training) refuses them.
        for (bad, fragment) in [(["every": 0], "every"), (["decay": 1.5], "decay"), (["power": -1], "power")] as [([String: Any], String)] {
            training["lookahead"] = bad
            object["training"] = training
            let read = try Experiment(specFile: writeSpec(object, in: folder))
            do {
                try read.options.validate()
                Issue.record("lookahead \(bad) was accepted")
            } catch {
                #expect(error.description.contains(fragment) && !error.description.contains("\n"), "\(error)")
            }
        }
        // A misspelt key is a SpecError when the file is read.
        training["lookahead"] = ["evry": 5]
        object["training"] = training
        do {
            _ = try Experiment(specFile: writeSpec(object, in: folder))
            Issue.record("lookahead {evry: 5} was accepted")
        } catch {
            #expect("\(error)".contains("evry") && "\(error)".contains("lookahead"), "\(error)")
        }
    }

    @Test("the documented JSON form, with the course's aliases and a partial training object")
    func handWrittenSpec() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let url = try writeSpec(text: """
            { "dataset": "mnist",
              "input": [1, 28, 28],
              "layers": [
                {"type": "convolution", "out_channels": 8, "kernel_size": 3, "padding": 1, "init_scale": 0.5},
                {"type": "relu"},
                {"type": "maxpooling"},
                {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "stride": 2},
                {"type": "fully_connected", "out_features": 10},
                {"type": "softmaxloss"} ],
              "training": {"iterations": 5, "learning_rate": 0.25} }
            """, named: "tiny.json", in: folder)
        let experiment = try Experiment(specFile: url)
        #expect(experiment.name == "tiny")
        #expect(experiment.dataset == .mnist)
        #expect(experiment.network == NetworkSpec(input: [1, 28, 28], layers: [
            .conv2d(outputChannels: 8, kernelSize: 3, stride: 1, padding: 1, initScale: 0.5), .relu,
            .maxPool2d(size: 2, stride: 2),
            .conv2d(outputChannels: 4, kernelSize: 3, stride: 2, padding: 0, initScale: 1),
            .dense(outputFeatures: 10, initScale: 1),
        ]))
        var expectedOptions = Experiment.defaultOptions(for: .mnist)
        expectedOptions.iterations = 5
        expectedOptions.learningRate = 0.25
        #expect(experiment.options == expectedOptions)

        // 28 → conv3 pad 1 → 28 → pool → 14 → conv3 stride 2 → 6; dense infers 4·6·6 = 144 inputs
        // and gets a Flatten inserted before it (PyTorch needs one, so it is counted in the names).
        let network: Network<Float> = try makeNetwork(experiment, seed: 1)
        #expect(network.rows.map(\.outputShape) == [[8, 28, 28], [8, 28, 28], [8, 14, 14], [4, 6, 6], [144], [10]])
        #expect(network.rows.map(\.layer.kind) == ["Conv2D", "ReLU", "MaxPool2D", "Conv2D", "Flatten", "Dense"])
        #expect(network.namedParameters.map(\.name) == ["0.weight", "0.bias", "3.weight", "3.bias", "5.weight", "5.bias"])
        #expect(network.namedParameters[4].parameter.value.shape == [10, 144])
    }

    @Test("a spec without a dataset takes the fallback, or fails without one")
    func datasetFallback() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        var object = try preset("cifar10").jsonObject
        object["dataset"] = nil
        object["training"] = nil
        let url = try writeSpec(object, in: folder)
        let read = try Experiment(specFile: url, dataset: .cifar10)
        #expect(read.dataset == .cifar10 && read.options == Experiment.defaultOptions(for: .cifar10))
        #expect(specError { _ = try Experiment(specFile: url) }.contains("dataset"))
    }

    // MARK: Errors

    @Test("shapes that do not fit throw a ShapeError naming the layer and both shapes")
    func shapesThatDoNotFit() throws {
        // 1x8x8 → conv 3x3 pad 1 → 4x8x8 → pool → 4x4x4 → a 9x9 kernel cannot fit 4x4.
        let kernelTooLarge = shapeError(NetworkSpec(input: [1, 8, 8], layers: [
            .conv2d(outputChannels: 4, kernelSize: 3, stride: 1, padding: 1, initScale: 1), .relu, .maxPool2d(size: 2, stride: 2),
            .conv2d(outputChannels: 8, kernelSize: 9, stride: 1, padding: 0, initScale: 1),
            .dense(outputFeatures: 10, initScale: 1),
        ]))
        #expect(kernelTooLarge.contains("layer 3"), "\(kernelTooLarge)")
        #expect(kernelTooLarge.lowercased().contains("conv2d"), "\(kernelTooLarge)")
        #expect(kernelTooLarge.contains("4x4x4"), "the input shape: \(kernelTooLarge)")
        #expect(kernelTooLarge.contains("9x9"), "the kernel's shape: \(kernelTooLarge)")

        // 1x8x8 → pool 4x4 → pool 2x2 → pool 1x1 → a fourth 2x2 pool has no window.
        let pooledAway = shapeError(NetworkSpec(input: [1, 8, 8], layers: [
            .maxPool2d(size: 2, stride: 2), .maxPool2d(size: 2, stride: 2), .maxPool2d(size: 2, stride: 2),
            .maxPool2d(size: 2, stride: 2), .dense(outputFeatures: 10, initScale: 1),
        ]))
        #expect(pooledAway.contains("layer 3"), "\(pooledAway)")
        #expect(pooledAway.lowercased().contains("maxpool2d"), "\(pooledAway)")
        #expect(pooledAway.contains("1x1x1"), "the input shape: \(pooledAway)")
        #expect(pooledAway.contains("2x2"), "the window's shape: \(pooledAway)")

        // A convolution after flattening.
        let flat = shapeError(NetworkSpec(input: [1, 8, 8], layers: [
            .flatten, .conv2d(outputChannels: 4, kernelSize: 3, stride: 1, padding: 1, initScale: 1),
        ]))
        #expect(flat.contains("layer 1") && flat.contains("64"), "\(flat)")
    }

    @Test("a spec file whose shapes do not fit reads, then fails to build with the layer and shapes")
    func specFileWithBadShapes() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        // The mnist preset with two more poolings (7 → 3 → 1) and then a 5x5 convolution.
        let url = try writeSpec(text: """
            {"dataset": "mnist", "input": [1, 28, 28], "layers": [
              {"type": "conv2d", "out_channels": 16, "kernel_size": 5, "padding": 2}, {"type": "relu"}, {"type": "maxpool2d"},
              {"type": "conv2d", "out_channels": 16, "kernel_size": 5, "padding": 2}, {"type": "relu"}, {"type": "maxpool2d"},
              {"type": "maxpool2d"}, {"type": "maxpool2d"},
              {"type": "conv2d", "out_channels": 16, "kernel_size": 5},
              {"type": "dense", "out_features": 10}, {"type": "softmaxloss"}]}
            """, in: folder)
        let experiment = try Experiment(specFile: url)
        let message = shapeError(experiment.network)
        #expect(message.contains("layer 8") && message.contains("16x1x1") && message.contains("5x5"), "\(message)")
    }

    @Test("Sequential names the first layer that does not fit, with both shapes")
    func sequentialShapeError() throws {
        var g = SeededGenerator(seed: 1)
        do {
            _ = try Network<Float>(inputShape: [1, 4, 4], layers: [Flatten(), Dense(inputSize: 15, outputSize: 2, using: &g)])
            Issue.record("expected a ShapeError")
        } catch {
            let message = error.description
            #expect(message.contains("layer 1") && message.contains("Dense") && message.contains("16") && message.contains("15"), "\(message)")
            #expect(!message.contains("\n"))
        }
    }

    /// PyTorch refuses a kernel larger than the padded input whatever the stride
    /// (`Conv2d(1, 1, 5, stride=2)` on a 4x4 image: "Kernel size can't be greater than actual
    /// input size"). `⌊(H + 2p − k)/s⌋ + 1` alone would not: Swift's division truncates toward
    /// zero, so (4 − 5)/2 + 1 = 1.
    @Test("a kernel larger than the padded input is refused even with a stride")
    func stridedKernelLargerThanInput() throws {
        let message = shapeError(NetworkSpec(input: [1, 4, 4], layers: [
            .conv2d(outputChannels: 2, kernelSize: 5, stride: 2, padding: 0, initScale: 1),
        ]))
        #expect(message.contains("4x4"), "\(message)")
    }

    @Test("unknown layer types, unknown keys and a misplaced softmaxloss are SpecErrors naming the layer")
    func specErrors() throws {
        func layers(_ list: [[String: Any]]) -> [String: Any] { ["input": [1, 28, 28], "layers": list] }
        let relu: [String: Any] = ["type": "relu"], dense: [String: Any] = ["type": "dense", "out_features": 10]

        let unknownType = specError { _ = try NetworkSpec(jsonObject: layers([relu, ["type": "lstm"], dense])) }
        #expect(unknownType.contains("layer 1") && unknownType.contains("lstm") && unknownType.contains("dropout"), "the message lists the known types: \(unknownType)")

        let unknownKey = specError {
            _ = try NetworkSpec(jsonObject: layers([["type": "conv2d", "out_channels": 4, "kernel_size": 3, "dilation": 2], dense]))
        }
        #expect(unknownKey.contains("layer 0") && unknownKey.contains("dilation"), "\(unknownKey)")

        let lossInMiddle = specError { _ = try NetworkSpec(jsonObject: layers([relu, ["type": "softmaxloss"], dense])) }
        #expect(lossInMiddle.contains("layer 1") && lossInMiddle.contains("softmaxloss"), "\(lossInMiddle)")

        let missing = specError { _ = try NetworkSpec(jsonObject: layers([["type": "conv2d", "kernel_size": 3]])) }
        #expect(missing.contains("out_channels"), "\(missing)")

        let negative = specError { _ = try NetworkSpec(jsonObject: layers([["type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": -1]])) }
        #expect(negative.contains("padding"), "\(negative)")

        let onlyLoss = specError { _ = try NetworkSpec(jsonObject: layers([["type": "softmaxloss"]])) }
        #expect(!onlyLoss.isEmpty)
        let badInput = specError { _ = try NetworkSpec(jsonObject: ["input": [1, 0, 28], "layers": [dense]]) }
        #expect(badInput.contains("input"), "\(badInput)")
    }

    @Test("spec files: unknown top-level or training keys, bad JSON, a bad dataset and a missing file are SpecErrors")
    func specFileErrors() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        var object = try preset("mnist").jsonObject

        object["optimizer"] = "adam"
        let topLevel = specError { _ = try Experiment(specFile: writeSpec(object, named: "a.json", in: folder)) }
        #expect(topLevel.contains("optimizer") && topLevel.contains("a.json"), "\(topLevel)")
        object["optimizer"] = nil

        object["training"] = ["iterations": 10, "epochs": 3]
        let training = specError { _ = try Experiment(specFile: writeSpec(object, named: "b.json", in: folder)) }
        #expect(training.contains("epochs"), "\(training)")

        object["training"] = ["iterations": "many"]
        let wrongType = specError { _ = try Experiment(specFile: writeSpec(object, named: "c.json", in: folder)) }
        #expect(wrongType.contains("training"), "\(wrongType)")
        object["training"] = nil

        object["dataset"] = "imagenet"
        let dataset = specError { _ = try Experiment(specFile: writeSpec(object, named: "d.json", in: folder)) }
        #expect(dataset.contains("dataset"), "\(dataset)")

        let notJSON = specError { _ = try Experiment(specFile: writeSpec(text: "{\"input\": [1, 28", named: "e.json", in: folder)) }
        #expect(notJSON.contains("e.json"), "\(notJSON)")

        let missingFile = specError { _ = try Experiment(specFile: folder.file("nope.json")) }
        #expect(missingFile.contains("nope.json"), "\(missingFile)")
    }
}
