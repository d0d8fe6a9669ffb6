import Backprop
import Foundation
import Testing

// A residual block with BatchNorm and the label-smoothed loss, checked against PyTorch.
//
// The fixtures `Fixtures/blocks_*.json` are written by `Scripts/make_reference_blocks.py`
// (float32 inputs stored exactly, results computed by PyTorch in float64 and rounded to float32;
// the header records the command, seed and versions). Fixture types, loader and tolerance are
// `LayerCatalogSupport.swift`'s.

private struct BlockCase: Decodable {
    let input_channels: Int, output_channels: Int, stride: Int
    let parameters: [String: CatalogTensor]
    let input: CatalogTensor, output: CatalogTensor, output_gradient: CatalogTensor, input_gradient: CatalogTensor
    let parameter_gradients: [String: CatalogTensor]
    let buffers_after: [String: CatalogTensor]
    let state_dict_keys: [String]
}

private struct LossCase: Decodable {
    let label_smoothing: Double
    let logits: CatalogTensor
    let labels: [Int]
    let loss: Double
    let logits_gradient: CatalogTensor
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
        let c = try loadCatalogFixture("blocks_residual.json", case: "basic_block_stride2", as: BlockCase.self)
        let spec = NetworkSpec(input: Array(c.input.shape.dropFirst()), layers: [basicBlockSpec(channels: c.output_channels, stride: c.stride)])
        var g = SeededGenerator(seed: 1)
        let net: Network<Float> = try spec.makeNetwork(using: &g)
        // Names: the state dict of the PyTorch module under the block's index.
        let names = net.namedParameters.map(\.name) + net.namedBuffers.map(\.name)
        #expect(Set(names) == Set(c.state_dict_keys.map { "0.\($0)" }), "\(names)")
        for (name, p) in net.namedParameters {
            p.value = try #require(c.parameters[String(name.dropFirst(2))], "\(name)").float
        }
        let block = try #require((net.body as? Sequential<Float>)?.layers.first)
        let context = StepContext.training(seed: 1, step: 1)
        var y = Tensor<Float>(shape: [])
        block.forward(c.input.float, into: &y, context: context)
        expectNear(y, c.output, "output")
        net.zeroGradients()
        var dx: Tensor<Float>? = Tensor(shape: [])
        block.backward(input: c.input.float, output: y, outputGradient: c.output_gradient.float, inputGradient: &dx, context: context)
        expectNear(dx!, c.input_gradient, "input gradient")
        for (name, p) in net.namedParameters {
            expectNear(p.gradient, try #require(c.parameter_gradients[String(name.dropFirst(2))]), "\(name) gradient")
        }
        for (name, b) in net.namedBuffers {
            expectNear(b.value, try #require(c.buffers_after[String(name.dropFirst(2))]), "\(name) after the pass")
        }
    }

    @Test("label-smoothed cross-entropy: loss and gradient", arguments: ["smoothing_0.1", "smoothing_0.2_large", "smoothing_0"])
    func smoothedLoss(name: String) throws {
        let c = try loadCatalogFixture("blocks_loss.json", case: name, as: LossCase.self)
        var gradient: Tensor<Float>? = Tensor(shape: [])
        let result = SoftmaxCrossEntropy(labelSmoothing: c.label_smoothing).loss(logits: c.logits.float, labels: c.labels, gradient: &gradient)
        #expect(abs(result.loss - c.loss) <= 1e-6 + 1e-5 * abs(c.loss), "loss \(result.loss) vs \(c.loss)")
        expectNear(gradient!, c.logits_gradient, "logits gradient")
    }
}
