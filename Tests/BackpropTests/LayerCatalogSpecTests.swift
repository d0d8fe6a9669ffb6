import Backprop
import Foundation
import Testing

// The new layers' spec kinds (JSON round trip, one-line errors), their state (parameter and
// buffer paths, frozen flags), dropout's mask rules, and the dirac initialisations.

/// Parses a spec from a JSON object, as a spec file would give it.
private func spec(_ layers: [[String: Any]], input: [Int]) throws(SpecError) -> NetworkSpec {
    try NetworkSpec(jsonObject: ["input": input, "layers": layers + [["type": "softmaxloss"]]])
}

/// The one-line message of whatever parsing and building `layers` throws, or nil.
private func buildError(_ layers: [[String: Any]], input: [Int]) -> String? {
    do {
        var generator = SeededGenerator(seed: 1)
        _ = try spec(layers, input: input).makeNetwork(Float.self, using: &generator)
        return nil
    } catch let error as SpecError {
        return "SpecError: " + error.description
    } catch let error as ShapeError {
        return "ShapeError: " + error.description
    } catch {
        return "\(error)"
    }
}

/// Every new layer type, with settings off their defaults where they have any.
private var everyNewLayer: [[String: Any]] { [
    ["type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1, "init": "dirac", "frozen": true, "bias": false],
    ["type": "batchnorm2d", "momentum": 0.4, "eps": 1e-12, "affine": "bias", "bias_lr_scale": 64.0, "bias_decay": true, "name": "bn"],
    ["type": "gelu", "approximate": "tanh"],
    ["type": "dropout2d", "p": 0.1],
    ["type": "avgpool2d", "size": 2, "stride": 1],
    ["type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1, "init": "he_dirac", "bias_epochs": 2],
    ["type": "batchnorm2d"],
    ["type": "gelu"],
    ["type": "global_avgpool2d"],
    ["type": "identity"],
    ["type": "dense", "out_features": 6, "frozen": true],
    ["type": "batchnorm1d", "affine": "none"],
    ["type": "dropout", "p": 0.5],
    ["type": "dense", "out_features": 3],
    ["type": "scale", "factor": 0.125],
] }

@Suite("Layer catalog: specs, state and dropout masks")
struct LayerCatalogSpecTests {
    @Test("Every new type is registered and survives a JSON round trip")
    func roundTrip() throws {
        for type in ["batchnorm2d", "batchnorm1d", "dropout", "dropout2d", "gelu", "avgpool2d", "global_avgpool2d",
                     "global_maxpool2d", "scale", "identity"] {
            let kind = try #require(NetworkSpec.kind(named: type), "\(type) is not in NetworkSpec.kinds")
            #expect(!kind.keysHelp.isEmpty)
        }
        let parsed = try spec(everyNewLayer, input: [2, 6, 6])
        let text = try JSONSerialization.data(withJSONObject: parsed.jsonObject, options: [.sortedKeys])
        let reparsed = try NetworkSpec(jsonObject: try #require(try JSONSerialization.jsonObject(with: text) as? [String: Any]))
        #expect(reparsed == parsed)
        #expect(reparsed.layers.map(\.typeName) == everyNewLayer.map { $0["type"] as! String })
        // Defaults are left out; settings off their defaults are written.
        let keys = reparsed.layers.map(\.jsonObject)
        #expect(keys[0]["init"] as? String == "dirac" && keys[0]["frozen"] as? Bool == true)
        #expect(keys[1]["affine"] as? String == "bias" && keys[1]["momentum"] as? Double == 0.4 && keys[1]["eps"] as? Double == 1e-12
                && keys[1]["bias_lr_scale"] as? Double == 64 && keys[1]["bias_decay"] as? Bool == true)
        #expect(keys[5]["bias_epochs"] as? Int == 2 && keys[0]["bias_epochs"] == nil)
        #expect(keys[6].keys.sorted() == ["type"], "\(keys[6])")
        #expect(keys[2]["approximate"] as? String == "tanh" && keys[7]["approximate"] == nil)
        let globalMax = try spec([["type": "global_maxpool2d"], ["type": "dense", "out_features": 2]], input: [3, 4, 4])
        #expect(globalMax.layers[0].jsonObject.keys.sorted() == ["type"])
        // airbench's 1/9. (Foundation's JSON parser on Linux may read a decimal 1 ulp off, which is
        // why the round trip above uses 0.125.)
        let ninth = try spec([["type": "scale", "factor": 0.1111111111111111]], input: [4])
        let factor = try #require(ninth.layers[0].jsonObject["factor"] as? Double)
        #expect(abs(factor - 1.0 / 9) <= (1.0 / 9).ulp)
    }

    @Test("Parameter and buffer paths, frozen flags, weight decay flags")
    func state() throws {
        var generator = SeededGenerator(seed: 3)
        let network = try spec(everyNewLayer, input: [2, 6, 6]).makeNetwork(Float.self, using: &generator)
        let parameters = Dictionary(uniqueKeysWithValues: network.namedParameters.map { ($0.name, $0.parameter) })
        #expect(network.namedParameters.map(\.name) == [
            "0.weight", "bn.weight", "bn.bias", "5.weight", "5.bias", "6.weight", "6.bias", "10.weight", "10.bias", "13.weight", "13.bias",
        ], "global pooling gives a flat [C]: no Flatten before the dense layer")
        #expect(parameters["0.weight"]!.isTrainable == false, "frozen conv2d")
        #expect(parameters["10.weight"]!.isTrainable == false && parameters["10.bias"]!.isTrainable == false, "frozen dense")
        #expect(parameters["13.weight"]!.isTrainable && parameters["5.weight"]!.isTrainable)
        #expect(parameters["bn.weight"]!.isTrainable == false && parameters["bn.bias"]!.isTrainable, "affine bias")
        #expect(parameters["bn.bias"]!.learningRateScale == 64 && parameters["6.bias"]!.learningRateScale == 1, "bias_lr_scale")
        #expect(parameters["6.weight"]!.isTrainable && parameters["6.bias"]!.isTrainable)
        #expect(["bn.weight", "6.weight", "6.bias"].allSatisfy { parameters[$0]!.decays == false })
        #expect(parameters["bn.bias"]!.decays, "bias_decay")
        #expect(parameters["5.bias"]!.trainingEpochs == 2 && parameters["5.bias"]!.isTrainable && parameters["5.weight"]!.trainingEpochs == nil,
                "bias_epochs")
        #expect(parameters["13.bias"]!.trainingEpochs == nil)
        let buffers = network.namedBuffers
        #expect(buffers.map(\.name) == [
            "bn.running_mean", "bn.running_var", "bn.num_batches_tracked",
            "6.running_mean", "6.running_var", "6.num_batches_tracked",
            "11.running_mean", "11.running_var", "11.num_batches_tracked",
        ])
        #expect(buffers.filter { $0.buffer.storage == .integer }.map(\.name).allSatisfy { $0.hasSuffix("num_batches_tracked") })
        #expect(buffers[2].buffer.value.shape == [] && buffers[2].buffer.value.scalars == [0])
        #expect(network.couplesExamples)
        // A training step counts; an inference pass does not.
        let x: Tensor<Float> = catalogRandom([3, 2, 6, 6], seed: 4).converted()
        _ = network.accumulateGradients(batch: x, labels: [0, 1, 2], context: .training(seed: 1, step: 1))
        network.forward(x)
        #expect(buffers.filter { $0.name.hasSuffix("num_batches_tracked") }.allSatisfy { $0.buffer.value.scalars == [1] })
    }

    @Test("Bad specs give one line naming the layer")
    func errors() {
        let cases: [([[String: Any]], [Int], String)] = [
            ([["type": "batchnorm1d"]], [3, 4, 4], "ShapeError: layer 0 (batchnorm1d) does not fit its 3x4x4 input: batchnorm1d needs a flat input"),
            ([["type": "flatten"], ["type": "batchnorm2d"]], [3, 4, 4], "batchnorm2d needs a CxHxW input, got 48"),
            ([["type": "batchnorm2d", "affine": "scale"]], [3, 4, 4], #"SpecError: spec layer 0 (batchnorm2d): "affine" must be one of "both", "weight", "bias", "none""#),
            ([["type": "batchnorm2d", "momentum": 1.5]], [3, 4, 4], #""momentum" must be a number from 0.0 to 1.0"#),
            ([["type": "batchnorm1d", "eps": 0]], [4], #""eps" must be a positive number"#),
            ([["type": "batchnorm2d", "mommentum": 0.1]], [3, 4, 4], #"unknown key "mommentum""#),
            ([["type": "dropout", "p": 1.5]], [4], #""p" must be a number from 0.0 to 1.0"#),
            ([["type": "dropout2d"]], [12], "dropout2d drops channel planes and needs a CxHxW input, got 12"),
            ([["type": "gelu", "approximate": "fast"]], [4], #""approximate" must be one of "none", "tanh""#),
            ([["type": "avgpool2d", "size": 5]], [1, 4, 4], "window does not fit input 1x4x4"),
            ([["type": "global_avgpool2d"]], [16], "GlobalAvgPool2D expects input CxHxW, got 16"),
            ([["type": "global_maxpool2d"]], [16], "GlobalMaxPool2D expects input CxHxW, got 16"),
            ([["type": "scale"]], [4], #"SpecError: spec layer 0 (scale): missing "factor""#),
            ([["type": "conv2d", "out_channels": 2, "kernel_size": 3, "init": "xavier"]], [1, 4, 4], #""init" must be one of "he", "dirac", "he_dirac""#),
            ([["type": "dense", "out_features": 2, "frozen": "yes"]], [4], #""frozen" must be true or false"#),
            ([["type": "conv2d", "out_channels": 2, "kernel_size": 3, "bias": false, "bias_epochs": 3]], [1, 4, 4],
             #"SpecError: spec layer 0 (conv2d): "bias_epochs" needs "bias": true"#),
            ([["type": "conv2d", "out_channels": 2, "kernel_size": 3, "bias_epochs": -1]], [1, 4, 4], #""bias_epochs" must be an integer from 0"#),
            ([["type": "batchnorm2d", "bias_decay": 1]], [3, 4, 4], #""bias_decay" must be true or false"#),
        ]
        for (layers, input, expected) in cases {
            let message = buildError(layers, input: input)
            #expect(message?.contains(expected) == true && message?.contains("\n") == false,
                    "\(layers) on \(input): got \(message ?? "no error"), expected …\(expected)…")
        }
    }

    @Test("BatchNorm layers check their input shape")
    func batchNormShapes() {
        #expect(throws: ShapeError.self) { try BatchNorm<Float>(channels: 3, dimensions: 2).outputShape(for: [4, 5, 5]) }
        #expect(throws: ShapeError.self) { try BatchNorm<Float>(channels: 3, dimensions: 1).outputShape(for: [3, 1, 1]) }
        #expect((try? BatchNorm<Float>(channels: 3, dimensions: 1).outputShape(for: [3])) == [3])
    }

    // MARK: Dropout masks

    /// The kept fraction of the last training forward's mask.
    private func keptFraction(_ layer: Dropout<Float>) -> Double {
        Double(layer.mask.filter { $0 != 0 }.count) / Double(layer.mask.count)
    }

    @Test("Dropout: PyTorch's rate and scale, identity in inference, p = 0 and p = 1")
    func dropoutRate() {
        let x = Tensor<Float>(shape: [64, 1000], repeating: 1)
        var y = Tensor<Float>(shape: [0])
        for p in [0.1, 0.5, 0.8] {
            let layer = Dropout<Float>(probability: p, salt: 17)
            layer.forward(x, into: &y, context: .training(seed: 2, step: 1))
            // 64 000 Bernoulli draws: the kept fraction is within 5 standard deviations of 1 − p.
            let sigma = (p * (1 - p) / 64000).squareRoot()
            #expect(abs(keptFraction(layer) - (1 - p)) < 5 * sigma, "p \(p): kept \(keptFraction(layer))")
            #expect(Set(y.scalars) == [0, Float(1 / (1 - p))])
            layer.forward(x, into: &y, context: .inference)
            #expect(y == x)
        }
        Dropout<Float>(probability: 0, salt: 1).forward(x, into: &y, context: .training(seed: 2, step: 1))
        #expect(y == x)
        Dropout<Float>(probability: 1, salt: 1).forward(x, into: &y, context: .training(seed: 2, step: 1))
        #expect(y.scalars.allSatisfy { $0 == 0 })
        // Dropout2d: whole planes, at the same rate.
        let planes = Tensor<Float>(shape: [200, 50, 2, 2], repeating: 1)
        let spatial = Dropout<Float>(probability: 0.3, spatial: true, salt: 3)
        spatial.forward(planes, into: &y, context: .training(seed: 2, step: 1))
        #expect(spatial.mask.count == 200 * 50)
        #expect(abs(keptFraction(spatial) - 0.7) < 5 * (0.21 / 10000).squareRoot())
        #expect((0..<(200 * 50)).allSatisfy { plane in Set(y.scalars[(plane * 4)..<(plane * 4 + 4)]).count == 1 })
    }

    @Test("Dropout masks depend on seed, step, example and layer — not on slicing or threads")
    func dropoutMaskIndependence() {
        let x: Tensor<Float> = catalogRandom([12, 3, 4, 4], seed: 5).converted()
        func run(_ layer: Dropout<Float>, _ context: StepContext) -> Tensor<Float> {
            var y = Tensor<Float>(shape: [0])
            layer.forward(x, into: &y, context: context)
            return y
        }
        for spatial in [false, true] {
            let layer = Dropout<Float>(probability: 0.5, spatial: spatial, salt: 99)
            let whole = run(layer, .training(seed: 7, step: 3))
            // The same batch in slices of 5, 5 and 2 examples, each with its offset.
            var sliced: [Float] = []
            for (start, count) in [(0, 5), (5, 5), (10, 2)] {
                let part = Tensor<Float>(shape: [count, 3, 4, 4], scalars: Array(x.scalars[(start * 48)..<((start + count) * 48)]))
                var y = Tensor<Float>(shape: [0])
                layer.forward(part, into: &y, context: StepContext(phase: .training, seed: 7, step: 3, exampleOffset: start))
                sliced += y.scalars
            }
            #expect(sliced == whole.scalars, "spatial \(spatial): slicing changed the mask")
            let threads = Parallel.threadCount
            Parallel.threadCount = 1
            let single = run(layer, .training(seed: 7, step: 3))
            Parallel.threadCount = threads
            #expect(single == whole, "spatial \(spatial): the thread count changed the mask")
            #expect(run(layer, .training(seed: 7, step: 4)) != whole, "another step, another mask")
            #expect(run(layer, .training(seed: 8, step: 3)) != whole, "another seed, another mask")
            #expect(run(Dropout<Float>(probability: 0.5, spatial: spatial, salt: 100), .training(seed: 7, step: 3)) != whole,
                    "another layer, another mask")
        }
    }

    @Test("A dropout network's gradients do not depend on how accumulateGradients slices the batch")
    func dropoutMicroBatches() throws {
        func gradients(microBatch: Int) throws -> [[Double]] {
            var generator = SeededGenerator(seed: 8)
            let network = try spec([
                ["type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1],
                ["type": "gelu"], ["type": "dropout2d", "p": 0.3], ["type": "global_avgpool2d"],
                ["type": "dense", "out_features": 8], ["type": "dropout", "p": 0.4], ["type": "dense", "out_features": 3],
            ], input: [2, 5, 5]).makeNetwork(Double.self, using: &generator)
            #expect(!network.couplesExamples)
            network.zeroGradients()
            _ = network.accumulateGradients(batch: catalogRandom([10, 2, 5, 5], seed: 9), labels: [0, 1, 2, 0, 1, 2, 0, 1, 2, 0],
                                            context: .training(seed: 4, step: 2), microBatch: microBatch)
            return network.parameters.map { $0.gradient.scalars }
        }
        let whole = try gradients(microBatch: 16), sliced = try gradients(microBatch: 3)
        for (a, b) in zip(whole, sliced) {
            #expect(zip(a, b).allSatisfy { abs($0 - $1) <= 1e-12 * max(1, abs($0)) })
        }
    }

    // MARK: Dirac initialisation

    @Test("he_dirac: He weights with the first min(Cout, Cin) filters replaced by identities; the draw is the same")
    func heDirac() {
        var a = SeededGenerator(seed: 12), b = SeededGenerator(seed: 12), c = SeededGenerator(seed: 12)
        let he = Conv2D<Double>(inputChannels: 3, outputChannels: 5, kernelSize: 3, padding: 1, using: &a)
        let mixed = Conv2D<Double>(inputChannels: 3, outputChannels: 5, kernelSize: 3, padding: 1, initialization: .heDirac, using: &b)
        let dirac = Conv2D<Double>(inputChannels: 3, outputChannels: 5, kernelSize: 3, padding: 1, initialization: .dirac, using: &c)
        let (nextA, nextB, nextC) = (a.next(), b.next(), c.next())
        #expect(nextA == nextB && nextB == nextC, "every initialisation makes the same draws")
        for o in 0..<5 {
            for i in 0..<3 { for u in 0..<3 { for v in 0..<3 {
                let identity: Double = (o == i && u == 1 && v == 1) ? 1 : 0
                #expect(mixed.weight.value[o, i, u, v] == (o < 3 ? identity : he.weight.value[o, i, u, v]))
                #expect(dirac.weight.value[o, i, u, v] == identity)
            } } }
        }
        // A dirac convolution with "same" padding passes its first channels through.
        let x = catalogRandom([2, 3, 4, 4], seed: 13)
        var y = Tensor<Double>(shape: [0])
        dirac.forward(x, into: &y, context: .inference)
        #expect(Array(y.scalars[0..<48]) == Array(x.scalars[0..<48]) && y.scalars[48..<80].allSatisfy { $0 == 0 })
    }
}
