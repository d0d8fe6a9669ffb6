import Foundation
import Testing
@testable import Backprop

/// A training step's backward pass stops at the first trainable parameter
/// (`StepContext.skipsFrozenPrefix`): the frozen layers in front of it and that layer's input
/// gradient are left out, and every trainable gradient is what the whole pass gives.
@Suite("Backward pass: the frozen prefix")
struct FrozenPrefixTests {
    /// A frozen conv and GELU in front (airbench's whitening layer and its activation), then a
    /// trainable conv, BatchNorm, pooling and a classifier.
    func network() throws -> Network<Double> {
        let layers = """
            {"type": "conv2d", "out_channels": 6, "kernel_size": 2, "frozen": true},
            {"type": "gelu"},
            {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1, "bias": false},
            {"type": "batchnorm2d", "affine": "bias"}, {"type": "relu"},
            {"type": "global_maxpool2d"},
            {"type": "dense", "out_features": 10},
            {"type": "softmaxloss"}
            """
        let object = try JSONSerialization.jsonObject(with: Data("{\"input\": [3, 9, 9], \"layers\": [\(layers)]}".utf8)) as! [String: Any]
        var generator = SeededGenerator(seed: 3)
        return try NetworkSpec(jsonObject: object).makeNetwork(Double.self, using: &generator)
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
}
