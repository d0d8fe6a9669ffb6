import Foundation

/// Where a network's training time goes: each leaf layer's forward and backward pass timed on
/// its own, on random data of its input shape (what `backprop bench --layers` prints).
public struct LayerTiming: Sendable {
    /// The layer's dotted path and kind (`"3"`, `"Conv2D"`).
    public var path: String, kind: String
    /// One example's input and output shapes.
    public var inputShape: [Int], outputShape: [Int]
    /// Seconds per batch.
    public var forwardSeconds: Double, backwardSeconds: Double
    /// Multiply-adds × 2 of one example's forward pass (0 for layers without products).
    public var forwardFLOPs: Double
    /// Of one example's backward pass: `∂W` unless the weight is frozen, and `∂X` unless the
    /// layer is the first.
    public var backwardFLOPs: Double
    /// Seconds per batch of the backward pass without `∂X` (the parameters' gradients alone),
    /// for a convolution or dense layer whose backward pass computes both; nil otherwise. The
    /// rest of `backwardSeconds` is `∂X`'s.
    public var weightGradientSeconds: Double?
}

extension LayerRow where Scalar == Float {
    /// Multiply-adds × 2 of one example's forward pass through a convolution or dense layer; 0
    /// for the others (their work is memory traffic, not products).
    public var forwardFLOPs: Double {
        if let conv = layer as? Conv2D<Float> {
            let perOutput = conv.outputChannels * conv.inputChannels * conv.kernelSize * conv.kernelSize
            return 2 * Double(perOutput) * Double(outputShape[1] * outputShape[2])
        }
        if let dense = layer as? Dense<Float> { return 2 * Double(dense.inputSize * dense.outputSize) }
        return 0
    }
}

public enum LayerProfile {
    /// Times every leaf layer of `network` on a batch of `batchSize` random examples:
    /// `repetitions` forward passes, then as many backward passes (after one of each to warm up),
    /// and for layers with products as many backward passes without `∂X`; each pass's time is
    /// its fastest call.
    /// Parameter gradients are accumulated (and left) as in training.
    public static func measure(_ network: Network<Float>, batchSize: Int, repetitions: Int) -> [LayerTiming] {
        var generator = SeededGenerator(seed: 7)
        var timings: [LayerTiming] = []
        let rows = network.rows.filter { $0.layer.children.isEmpty }
        for (index, row) in rows.enumerated() {
            let layer = row.layer
            let input = Tensor<Float>.randomNormal(shape: [batchSize] + row.inputShape, standardDeviation: 1, using: &generator)
            var output = Tensor<Float>(shape: [])
            var context = StepContext.training(seed: 1, step: 1)
            let forwardSeconds = seconds(repetitions) { layer.forward(input, into: &output, context: context) }
            let outputGradient = Tensor<Float>.randomNormal(shape: output.shape, standardDeviation: 1, using: &generator)
            var inputGradient: Tensor<Float>? = index == 0 ? nil : Tensor(shape: [])
            // As a training step runs it: a frozen convolution weight's ∂W is left out.
            context.skipsFrozenPrefix = true
            let backwardSeconds = seconds(repetitions) {
                layer.backward(input: input, output: output, outputGradient: outputGradient,
                               inputGradient: &inputGradient, context: context)
            }
            let forward = row.forwardFLOPs
            let weightTrains = (layer as? Conv2D<Float>)?.weight.isTrainable ?? true
            var weightGradientSeconds: Double?
            if forward > 0 && weightTrains && index > 0 {
                var none: Tensor<Float>? = nil
                weightGradientSeconds = seconds(repetitions) {
                    layer.backward(input: input, output: output, outputGradient: outputGradient, inputGradient: &none, context: context)
                }
            }
            timings.append(LayerTiming(path: row.path, kind: layer.kind, inputShape: row.inputShape, outputShape: row.outputShape,
                                       forwardSeconds: forwardSeconds, backwardSeconds: backwardSeconds,
                                       forwardFLOPs: forward, backwardFLOPs: forward * Double((weightTrains ? 1 : 0) + (index == 0 ? 0 : 1)),
                                       weightGradientSeconds: weightGradientSeconds))
        }
        return timings
    }

    /// Seconds of the fastest of `repetitions` calls of `body`, after one warm-up call. The
    /// fastest, not the mean: on a shared machine a disturbance only ever slows a call down.
    private static func seconds(_ repetitions: Int, _ body: () -> Void) -> Double {
        body()
        var fastest = Double.infinity
        for _ in 0..<max(repetitions, 1) {
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            fastest = min(fastest, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return fastest
    }
}
