import Backprop
import Foundation
import Testing

// A residual block with BatchNorm and the label-smoothed loss, checked against PyTorch.
//
// The fixtures `Fixtures/blocks_*.json` are written by `Scripts/make_reference_blocks.py`
// (float32 inputs stored exactly, results computed by PyTorch in float64 and rounded to float32;
// the header records the command, seed and versions).

private struct BlockTensor: Decodable {
    let shape: [Int]
    let data: [Double]
    var tensor: Tensor<Float> { Tensor(shape: shape, scalars: data.map { Float($0) }) }
}

private struct BlockCase: Decodable {
    let input_channels: Int, output_channels: Int, stride: Int
    let parameters: [String: BlockTensor]
    let input: BlockTensor, output: BlockTensor, output_gradient: BlockTensor, input_gradient: BlockTensor
    let parameter_gradients: [String: BlockTensor]
    let buffers_after: [String: BlockTensor]
    let state_dict_keys: [String]
}

private struct LossCase: Decodable {
    let label_smoothing: Double
    let logits: BlockTensor
    let labels: [Int]
    let loss: Double
    let logits_gradient: BlockTensor
}

private struct BlockFile<Case: Decodable>: Decodable {
    let cases: [String: Case]
}

private func load<Case: Decodable>(_ name: String, as _: Case.Type) throws -> [String: Case] {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)")
    return try JSONDecoder().decode(BlockFile<Case>.self, from: Data(contentsOf: url)).cases
}

/// `|a − e| ≤ 1e-5 + 1e-4·|e|` elementwise (the tolerance of ReferenceTests: float32 sums of a
/// few hundred terms; a wrong formula is off by ≥ 1e-2).
private func expectClose(_ actual: Tensor<Float>, _ expected: BlockTensor, _ what: String) {
    #expect(actual.shape == expected.shape, "\(what): shape \(actual.shape) vs \(expected.shape)")
    guard actual.count == expected.data.count else { return }
    let worst = zip(actual.scalars, expected.data).map { abs(Double($0) - $1) - 1e-4 * abs($1) }.max() ?? 0
    #expect(worst <= 1e-5, "\(what): worst excess \(worst)")
}

/// torchvision's `BasicBlock` (without its last ReLU) as a spec: the main path named inline
/// (`conv1`, `bn1`, `conv2`, `bn2`) and the shortcut as `downsample`.
func basicBlockSpec(channels: Int, stride: Int) -> LayerSpec {
    LayerSpec(ResidualSpec(
        main: [LayerSpec(Conv2DSpec(outputChannels: channels, kernelSize: 3, stride: stride, padding: 1, bias: false), name: "conv1"),
               LayerSpec(BatchNorm2DSpec(), name: "bn1"), .relu,
               LayerSpec(Conv2DSpec(outputChannels: channels, kernelSize: 3, padding: 1, bias: false), name: "conv2"),
               LayerSpec(BatchNorm2DSpec(), name: "bn2")],
        shortcut: [.conv2d(outputChannels: channels, kernelSize: 1, stride: stride, bias: false), LayerSpec(BatchNorm2DSpec())],
        mainName: "", shortcutName: "downsample"))
}

@Suite("Residual block with BatchNorm and label smoothing against PyTorch")
struct BlockReferenceTests {
    @Test("a BasicBlock in training mode: output, every gradient, running statistics and state-dict names")
    func basicBlock() throws {
        let c = try #require(try load("blocks_residual.json", as: BlockCase.self)["basic_block_stride2"])
        let spec = NetworkSpec(input: Array(c.input.shape.dropFirst()), layers: [basicBlockSpec(channels: c.output_channels, stride: c.stride)])
        var g = SeededGenerator(seed: 1)
        let net: Network<Float> = try spec.makeNetwork(using: &g)
        // Names: the state dict of the PyTorch module under the block's index.
        let names = net.namedParameters.map(\.name) + net.namedBuffers.map(\.name)
        #expect(Set(names) == Set(c.state_dict_keys.map { "0.\($0)" }), "\(names)")
        for (name, p) in net.namedParameters {
            p.value = try #require(c.parameters[String(name.dropFirst(2))], "\(name)").tensor
        }
        let block = try #require((net.body as? Sequential<Float>)?.layers.first)
        let context = StepContext.training(seed: 1, step: 1)
        var y = Tensor<Float>(shape: [])
        block.forward(c.input.tensor, into: &y, context: context)
        expectClose(y, c.output, "output")
        net.zeroGradients()
        var dx: Tensor<Float>? = Tensor(shape: [])
        block.backward(input: c.input.tensor, output: y, outputGradient: c.output_gradient.tensor, inputGradient: &dx, context: context)
        expectClose(dx!, c.input_gradient, "input gradient")
        for (name, p) in net.namedParameters {
            expectClose(p.gradient, try #require(c.parameter_gradients[String(name.dropFirst(2))]), "\(name) gradient")
        }
        for (name, b) in net.namedBuffers {
            expectClose(b.value, try #require(c.buffers_after[String(name.dropFirst(2))]), "\(name) after the pass")
        }
    }

    @Test("label-smoothed cross-entropy: loss and gradient", arguments: ["smoothing_0.1", "smoothing_0.2_large", "smoothing_0"])
    func smoothedLoss(name: String) throws {
        let c = try #require(try load("blocks_loss.json", as: LossCase.self)[name])
        var gradient: Tensor<Float>? = Tensor(shape: [])
        let result = SoftmaxCrossEntropy(labelSmoothing: c.label_smoothing).loss(logits: c.logits.tensor, labels: c.labels, gradient: &gradient)
        #expect(abs(result.loss - c.loss) <= 1e-6 + 1e-5 * abs(c.loss), "loss \(result.loss) vs \(c.loss)")
        expectClose(gradient!, c.logits_gradient, "logits gradient")
    }
}
