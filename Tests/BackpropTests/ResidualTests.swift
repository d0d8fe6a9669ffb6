import Backprop
import Foundation
import Testing

/// Residual blocks, nested sequences and the paths they give parameters.
@Suite("Residual blocks and nested sequences")
struct ResidualTests {
    /// conv 3→4 · residual(identity; conv, relu, conv) · residual(1x1 stride-2 shortcut; conv stride 2,
    /// relu, conv) · flatten · dense: both kinds of shortcut, and a layer before the first block so
    /// that its weight gradient depends on the blocks' summed input gradients.
    private func network(_ g: inout SeededGenerator) throws -> Network<Double> {
        let identityBlock = Residual<Double>(main: Sequential([
            Conv2D(inputChannels: 4, outputChannels: 4, kernelSize: 3, padding: 1, using: &g), ReLU(),
            Conv2D(inputChannels: 4, outputChannels: 4, kernelSize: 3, padding: 1, using: &g),
        ]))
        let projectionBlock = Residual<Double>(
            main: Sequential([
                Conv2D(inputChannels: 4, outputChannels: 6, kernelSize: 3, stride: 2, padding: 1, using: &g), ReLU(),
                Conv2D(inputChannels: 6, outputChannels: 6, kernelSize: 3, padding: 1, using: &g),
            ]),
            shortcut: Sequential([Conv2D(inputChannels: 4, outputChannels: 6, kernelSize: 1, stride: 2, using: &g)]))
        return try Network(inputShape: [3, 6, 6], layers: [
            Conv2D(inputChannels: 3, outputChannels: 4, kernelSize: 3, padding: 1, using: &g),
            identityBlock, projectionBlock, Flatten(), Dense(inputSize: 6 * 3 * 3, outputSize: 5, using: &g),
        ])
    }

    @Test("every parameter of a net with both kinds of block passes a Double gradient check")
    func wholeNetworkGradientCheck() throws {
        var g = SeededGenerator(seed: 3)
        let net = try network(&g)
        let x: Tensor<Double> = randomTensor([3, 3, 6, 6], seed: 4)
        let labels = [0, 3, 4]
        let results = GradientCheck.check(network: net, inputs: x, labels: labels, entriesPerTensor: 30, step: 1e-4, using: &g)
        #expect(results.count == net.parameters.count)
        for r in results {
            #expect(r.maxRelativeError < 1e-6 && r.checked > 0, "\(r)")
        }
    }

    @Test("a block's input gradient is the sum of both paths' (checked on the input itself)")
    func inputGradientSumsBothPaths() throws {
        var g = SeededGenerator(seed: 5)
        let block = Residual<Double>(
            main: Sequential([Conv2D(inputChannels: 2, outputChannels: 3, kernelSize: 3, padding: 1, using: &g)]),
            shortcut: Sequential([Conv2D(inputChannels: 2, outputChannels: 3, kernelSize: 1, using: &g)]))
        let x: Tensor<Double> = randomTensor([2, 2, 5, 5], seed: 6)
        for r in gradientCheck(block, input: x) {
            #expect(r.maxRelativeError < gradientTolerance, "\(r)")
        }
        // The identity shortcut adds ∂L/∂y itself.
        let identity = Residual<Double>(main: Sequential([Conv2D(inputChannels: 2, outputChannels: 2, kernelSize: 3, padding: 1, using: &g)]))
        for r in gradientCheck(identity, input: x) {
            #expect(r.maxRelativeError < gradientTolerance, "\(r)")
        }
    }

    @Test("an input gradient that forgets the shortcut fails the check")
    func missingShortcutGradientFails() throws {
        var g = SeededGenerator(seed: 7)
        let main = Sequential<Double>([Conv2D(inputChannels: 2, outputChannels: 2, kernelSize: 3, padding: 1, using: &g)])
        let block = Residual<Double>(main: main)
        let x: Tensor<Double> = randomTensor([2, 2, 4, 4], seed: 8)
        var gradients = analyticGradients(block, input: x)
        // What a block whose backward only passed the main path's input gradient would give.
        gradients.input = zip(gradients.input, gradients.upstream.scalars).map { $0 - $1 }
        let results = gradientCheck(block, input: x, gradients: gradients)
        #expect(results[0].name == "input" && results[0].maxRelativeError > 1e-2, "\(results[0])")
    }

    @Test("paths: nested sequences, named layers and torchvision-style blocks")
    func paths() throws {
        let conv = { (c: Int, name: String?) in LayerSpec(Conv2DSpec(outputChannels: c, kernelSize: 3, padding: 1, bias: false), name: name) }
        let block = LayerSpec(ResidualSpec(main: [conv(4, "conv1"), .relu, conv(4, "conv2")],
                                           shortcut: [conv(4, nil)], mainName: "", shortcutName: "downsample"))
        let spec = NetworkSpec(input: [2, 4, 4], layers: [
            conv(4, "stem"),
            LayerSpec(SequentialSpec(layers: [block, LayerSpec(ResidualSpec(main: [conv(4, nil)]))]), name: "layer1"),
            .dense(outputFeatures: 3),
        ])
        var g = SeededGenerator(seed: 1)
        let net: Network<Float> = try spec.makeNetwork(using: &g)
        #expect(net.namedParameters.map(\.name) == [
            "stem.weight", "layer1.0.conv1.weight", "layer1.0.conv2.weight", "layer1.0.downsample.0.weight",
            "layer1.1.main.0.weight", "3.weight", "3.bias",
        ])
        // The summary rows: every layer once, in data-flow order, with its depth.
        let rows = net.rows.map { "\($0.depth) \($0.path) \($0.layer.kind)" }
        #expect(rows == ["0 stem Conv2D", "0 layer1 Sequential", "1 layer1.0 Residual", "2 layer1.0.conv1 Conv2D",
                         "2 layer1.0.1 ReLU", "2 layer1.0.conv2 Conv2D", "2 layer1.0.downsample Sequential",
                         "3 layer1.0.downsample.0 Conv2D", "1 layer1.1 Residual", "2 layer1.1.main Sequential",
                         "3 layer1.1.main.0 Conv2D", "0 2 Flatten", "0 3 Dense"], "\(rows)")
        // The spec round-trips through its JSON.
        let again = try NetworkSpec(jsonObject: spec.jsonObject)
        #expect(again == spec)
    }

    @Test("a block whose paths' shapes differ, and duplicate names, are one-line errors before anything runs")
    func badBlocks() throws {
        func error(_ spec: NetworkSpec) -> String {
            var g = SeededGenerator(seed: 1)
            do { let _: Network<Float> = try spec.makeNetwork(using: &g) } catch { return error.description }
            return "no error"
        }
        let mismatch = error(NetworkSpec(input: [4, 8, 8], layers: [
            .relu, LayerSpec(ResidualSpec(main: [.conv2d(outputChannels: 8, kernelSize: 3, padding: 1)])), .dense(outputFeatures: 2),
        ]))
        #expect(mismatch.contains("layer 1") && mismatch.contains("8x8x8") && mismatch.contains("4x8x8"), "\(mismatch)")
        #expect(!mismatch.contains("\n"))
        let inner = error(NetworkSpec(input: [4, 8, 8], layers: [
            LayerSpec(ResidualSpec(main: [.conv2d(outputChannels: 4, kernelSize: 3, padding: 1), .maxPool2d(size: 9, stride: 9)])),
        ]))
        #expect(inner.contains("layer 0.main.1") && inner.contains("maxpool2d"), "\(inner)")
        let duplicate = error(NetworkSpec(input: [4, 8, 8], layers: [
            LayerSpec(Conv2DSpec(outputChannels: 4, kernelSize: 1), name: "a"), LayerSpec(Conv2DSpec(outputChannels: 4, kernelSize: 1), name: "a"),
        ]))
        #expect(duplicate.contains("\"a\""), "\(duplicate)")
    }

    @Test("spec JSON: nested objects read, with errors that name the nested position")
    func json() throws {
        func read(_ text: String) -> String {
            do {
                let object = try NetworkSpec.parseJSON(Data(text.utf8), source: "s.json")
                _ = try NetworkSpec(jsonObject: object as? [String: Any] ?? [:])
                return "ok"
            } catch { return error.description }
        }
        #expect(read(#"{"input": [3, 8, 8], "layers": [{"type": "residual", "main": [{"type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1}]}, {"type": "dense", "out_features": 2}]}"#) == "ok")
        let unknown = read(#"{"input": [3, 8, 8], "layers": [{"type": "residual", "main": [{"type": "dropout3"}]}]}"#)
        #expect(unknown.contains("spec layer 0.main.0") && unknown.contains("dropout3"), "\(unknown)")
        let badKey = read(#"{"input": [3, 8, 8], "layers": [{"type": "residual", "main": [{"type": "relu"}], "shortcuts": []}]}"#)
        #expect(badKey.contains("shortcuts"), "\(badKey)")
        let syntax = read("{\"input\": [3, 8, 8],\n  \"layers\": [,]}")
        #expect(syntax.contains("line 2"), "\(syntax)")
        let boolean = read(#"{"input": [3, 8, 8], "layers": [{"type": "conv2d", "out_channels": true, "kernel_size": 3}]}"#)
        #expect(boolean.contains("out_channels"), "\(boolean)")
        let huge = read(#"{"input": [3, 8, 8], "layers": [{"type": "conv2d", "out_channels": 4, "kernel_size": 4294967296}]}"#)
        #expect(huge.contains("kernel_size"), "\(huge)")
    }
}

/// The label-smoothed loss: its gradient checks, and `ε = 0` is the course's loss exactly.
@Suite("Label smoothing")
struct LabelSmoothingTests {
    @Test("the gradient of the smoothed loss passes a central-difference check; a wrong target fails it")
    func gradient() {
        let logits: Tensor<Double> = randomTensor([4, 10], seed: 11, scale: 2)
        let labels = [3, 0, 9, 3]
        let loss = SoftmaxCrossEntropy(labelSmoothing: 0.2)
        var gradient: Tensor<Double>? = Tensor(shape: [])
        _ = loss.loss(logits: logits, labels: labels, gradient: &gradient)
        var none: Tensor<Double>? = nil
        var x = logits.scalars
        let good = GradientCheck.compare(name: "logits", x: &x, analytic: gradient!.scalars, step: 1e-4) {
            loss.loss(logits: Tensor(shape: [4, 10], scalars: $0), labels: labels, gradient: &none).loss
        }
        #expect(good.maxRelativeError < 1e-7, "\(good)")
        // The unsmoothed gradient is wrong for ε = 0.2.
        var plain: Tensor<Double>? = Tensor(shape: [])
        _ = SoftmaxCrossEntropy().loss(logits: logits, labels: labels, gradient: &plain)
        let bad = GradientCheck.compare(name: "logits", x: &x, analytic: plain!.scalars, step: 1e-4) {
            loss.loss(logits: Tensor(shape: [4, 10], scalars: $0), labels: labels, gradient: &none).loss
        }
        #expect(bad.maxRelativeError > 1e-2, "\(bad)")
    }

    /// PyTorch's values are checked in `BlockReferenceTests`; here the formula by hand.
    @Test("ε = 0 is exactly the course's loss, and a hand-computed smoothed value matches")
    func values() {
        let logits = Tensor<Double>(shape: [2, 3], scalars: [1, 2, 3, 0.5, -1, 2])
        var g1: Tensor<Double>? = Tensor(shape: []), g2: Tensor<Double>? = Tensor(shape: [])
        let a = SoftmaxCrossEntropy.evaluate(logits: logits, labels: [0, 2], gradient: &g1)
        let b = SoftmaxCrossEntropy(labelSmoothing: 0).loss(logits: logits, labels: [0, 2], gradient: &g2)
        #expect(a.loss == b.loss && g1 == g2)
        // By hand: row losses −log p with p = softmax; smoothed = 0.9·(−log p_c) + 0.1·mean_j(−log p_j).
        func rowLoss(_ r: [Double], _ c: Int, _ e: Double) -> Double {
            let lse = log(r.map(exp).reduce(0, +))
            let nll = r.map { lse - $0 }
            return (1 - e) * nll[c] + e * nll.reduce(0, +) / Double(r.count)
        }
        let expected = (rowLoss([1, 2, 3], 0, 0.1) + rowLoss([0.5, -1, 2], 2, 0.1)) / 2
        var none: Tensor<Double>? = nil
        let smoothed = SoftmaxCrossEntropy(labelSmoothing: 0.1).loss(logits: logits, labels: [0, 2], gradient: &none).loss
        #expect(abs(smoothed - expected) < 1e-12, "\(smoothed) vs \(expected)")
    }
}
