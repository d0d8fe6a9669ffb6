import Foundation
import Testing
@testable import Backprop

/// A training step's backward pass stops at the first trainable parameter
/// (`StepContext.skipsFrozenPrefix`): the frozen layers in front of it and that layer's input
/// gradient are left out, and every trainable gradient is what the whole pass gives.
@Suite("Backward pass: the frozen prefix")
struct FrozenPrefixTests {
    /// A frozen conv and GELU in front (airbench's whitening layer and its activation), then a
    /// trainable conv, BatchNorm, pooling and a classifier. `biasEpochs` > 0: the frozen conv's
    /// bias trains (airbench's whitening layer in its first epochs).
    func network<Scalar: NetworkScalar>(_: Scalar.Type = Double.self, firstChannels: Int = 6, biasEpochs: Int = 0) throws -> Network<Scalar> {
        let layers = """
            {"type": "conv2d", "out_channels": \(firstChannels), "kernel_size": 2, "frozen": true, "bias_epochs": \(biasEpochs)},
            {"type": "gelu"},
            {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1, "bias": false},
            {"type": "batchnorm2d", "affine": "bias"}, {"type": "relu"},
            {"type": "global_maxpool2d"},
            {"type": "dense", "out_features": 10},
            {"type": "softmaxloss"}
            """
        let object = try JSONSerialization.jsonObject(with: Data("{\"input\": [3, 9, 9], \"layers\": [\(layers)]}".utf8)) as! [String: Any]
        var generator = SeededGenerator(seed: 3)
        return try NetworkSpec(jsonObject: object).makeNetwork(Scalar.self, using: &generator)
    }

    @Test("a training step gives the whole pass's trainable gradients and skips the frozen layers'")
    func trainableGradientsUnchanged() throws {
        var generator = SeededGenerator(seed: 11)
        let batch = Tensor<Double>.randomNormal(shape: [5, 3, 9, 9], standardDeviation: 1, using: &generator)
        let labels = [1, 7, 3, 3, 0]

        // The whole pass, as a gradient check runs it.
        let whole = try network()
        let logits = whole.forward(batch, context: .training())
        var gradient: Tensor<Double>? = Tensor(shape: [0])  // non-nil: asks for ∂L/∂logits
        _ = SoftmaxCrossEntropy().loss(logits: logits, labels: labels[...], gradient: &gradient)
        whole.backward(gradient!, context: .training())

        // A training step.
        let step = try network()
        _ = step.accumulateGradients(batch: batch, labels: labels, context: .training())

        // Layer 0 (the frozen conv) is in front of the first trainable parameter; BatchNorm's
        // frozen γ (layer 3) is behind it, so its gradient is computed as before.
        for ((name, a), (_, b)) in zip(whole.namedParameters, step.namedParameters) {
            if name.hasPrefix("0.") {
                #expect(!a.isTrainable)
                #expect(a.gradient.scalars.contains { $0 != 0 }, "\(name): the whole pass computes it")
                #expect(b.gradient.scalars.allSatisfy { $0 == 0 }, "\(name): the training step should skip it")
            } else {
                #expect(a.gradient.scalars == b.gradient.scalars, "\(name): the training step's gradient differs")
            }
        }
        #expect(whole.namedParameters.map(\.name).filter { $0.hasPrefix("0.") } == ["0.weight", "0.bias"])
        #expect(whole.namedParameters.contains { $0.name == "3.weight" && !$0.parameter.isTrainable })
    }

    @Test("a frozen convolution whose bias trains: a step gives ∂b bit for bit and skips ∂W; once the bias freezes, it skips the layer",
          arguments: [ConvolutionPath.im2col, .batchedGEMM, .direct])
    func frozenWeightTrainableBias(path: ConvolutionPath) throws {
        var generator = SeededGenerator(seed: 11)
        let batch = Tensor<Float>.randomNormal(shape: [5, 3, 9, 9], standardDeviation: 1, using: &generator)
        let labels = [1, 7, 3, 3, 0]
        // 16 filters fill whole vectors, so each path runs as forced.
        func make() throws -> Network<Float> {
            let net = try network(Float.self, firstChannels: 16, biasEpochs: 3)
            let conv = try #require(net.rows.first?.layer as? Conv2D<Float>)
            conv.path = path
            let g = ConvolutionGeometry(channels: 3, height: 9, width: 9, kernelHeight: 2, kernelWidth: 2, stride: 1, padding: 0)
            #expect(conv.resolvedPath(g) == path)
            return net
        }
        let whole = try make()
        let logits = whole.forward(batch, context: .training())
        var gradient: Tensor<Float>? = Tensor(shape: [0])
        _ = SoftmaxCrossEntropy().loss(logits: logits, labels: labels[...], gradient: &gradient)
        whole.backward(gradient!, context: .training())

        let step = try make()
        _ = step.accumulateGradients(batch: batch, labels: labels, context: .training())
        for ((name, a), (_, b)) in zip(whole.namedParameters, step.namedParameters) {
            if name == "0.weight" {
                #expect(!b.isTrainable)
                #expect(a.gradient.scalars.contains { $0 != 0 }, "\(name): the whole pass computes it")
                #expect(b.gradient.scalars.allSatisfy { $0 == 0 }, "\(name): the training step should skip it")
            } else {
                #expect(a.gradient.scalars.contains { $0 != 0 }, "\(name): the whole pass computes it")
                #expect(a.gradient.scalars == b.gradient.scalars, "\(name): the training step's gradient differs")
            }
        }

        // The bias freezes (as the trainer does after its epochs): the step now ends before layer 2.
        let bias = try #require(step.namedParameters.first { $0.name == "0.bias" }?.parameter)
        #expect(bias.isTrainable && bias.trainingEpochs == 3)
        bias.isTrainable = false
        step.trainabilityChanged()
        step.zeroGradients()
        _ = step.accumulateGradients(batch: batch, labels: labels, context: .training())
        for ((name, a), (_, b)) in zip(whole.namedParameters, step.namedParameters) {
            if name.hasPrefix("0.") {
                #expect(b.gradient.scalars.allSatisfy { $0 == 0 }, "\(name): the training step should skip the frozen layer")
            } else {
                #expect(a.gradient.scalars == b.gradient.scalars, "\(name): the training step's gradient differs")
            }
        }
    }

    /// `backprop bench --layers` splits the backward pass of a layer with products into `∂W`
    /// and `∂X` where it computes both: not for the frozen first conv (no `∂W`, no `∂X`), nor for
    /// layers without products; for the trainable conv and the classifier.
    @Test func layerProfileSplitsTheWeightGradientWhereThereIsOne() throws {
        let timings = LayerProfile.measure(try network(Float.self), batchSize: 4, repetitions: 1)
        let split = timings.filter { $0.weightGradientSeconds != nil }.map(\.kind)
        #expect(split == ["Conv2D", "Dense"])
        for t in timings where t.weightGradientSeconds != nil {
            #expect(t.weightGradientSeconds! > 0 && t.forwardFLOPs > 0)
        }
        #expect(timings.first?.kind == "Conv2D" && timings.first?.weightGradientSeconds == nil)
    }
}
