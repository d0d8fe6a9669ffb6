import Backprop
import BackpropData
import BackpropTestSupport
import BackpropTraining
import Foundation
import Testing
@testable import BackpropONNX

/// The one-line `ONNXError` that reading `data` throws.
private func importError(_ data: Data, sourceLocation: SourceLocation = #_sourceLocation) -> String {
    do {
        _ = try ONNXModel(data: data, source: "test.onnx")
        Issue.record("expected an ONNXError, the model loaded", sourceLocation: sourceLocation)
    } catch {
        #expect(!error.description.contains("\n"), "not one line: \(error)", sourceLocation: sourceLocation)
        #expect(error.description.hasPrefix("test.onnx: "), "\(error)", sourceLocation: sourceLocation)
        return error.description
    }
    return ""
}

/// The mnist preset's export, decoded, for surgery.
private func mnistProto() throws -> Onnx_ModelProto {
    let model = try randomModel(try #require(Experiment.preset(named: "mnist")).network, dataset: .mnist, seed: 3)
    return try Onnx_ModelProto(serializedBytes: try ONNXExport.encode(model))
}

private func node(_ op: String, _ inputs: [String], _ outputs: [String], name: String = "") -> Onnx_NodeProto {
    var node = Onnx_NodeProto()
    node.opType = op
    node.input = inputs
    node.output = outputs
    node.name = name
    return node
}

@Suite("ONNX import")
struct ONNXImportTests {
    @Test("export then import gives bit-identical weights and logits", arguments: try testNetworks().map(\.name))
    func roundTrip(_ name: String) throws {
        let (_, spec, dataset) = try #require(try testNetworks().first { $0.name == name })
        let model = try randomModel(spec, dataset: dataset, seed: 5)
        let imported = try ONNXModel(data: try ONNXExport.encode(model), source: "\(name).onnx")
        // Same tensors in the same order (names may differ: a nested sequence is read in line).
        let original = model.network.namedParameters.map { $0.parameter.value }, read = imported.network.namedParameters.map { $0.parameter.value }
        #expect(read.map(\.shape) == original.map(\.shape))
        #expect(read.map { $0.scalars.map(\.bitPattern) } == original.map { $0.scalars.map(\.bitPattern) })
        let x = randomInputs(for: model.network, count: 8, seed: 6)
        let expected = model.network.forward(x).scalars.map(\.bitPattern)
        #expect(imported.network.forward(x).scalars.map(\.bitPattern) == expected, "\(name): logits differ")
        #expect(imported.recordedDataset == dataset)
        #expect(try imported.recordedPreprocessing() == model.preprocessing)
        #expect(imported.recordedClassNames == model.classNames)
        #expect(imported.notes.count == 1 && imported.notes[0].contains("Softmax"), "\(imported.notes)")
        // Exported again, the graph is the same.
        let again = try Onnx_ModelProto(serializedBytes: try ONNXExport.encode(ModelArchive(
            network: imported.network, spec: imported.spec, dataset: dataset, preprocessing: model.preprocessing, classNames: model.classNames)))
        let first = try Onnx_ModelProto(serializedBytes: try ONNXExport.encode(model))
        #expect(again.graph.node.map(\.opType) == first.graph.node.map(\.opType))
    }

    @Test("test-time augmentation and BatchNorm without parameters survive export and import")
    func augmentationAndConstantNorm() throws {
        let spec = NetworkSpec(input: [1, 28, 28], layers: [
            .conv2d(outputChannels: 4, kernelSize: 3, stride: 2), .batchNorm2d(affine: .neither), .relu,
            .flatten, .dense(outputFeatures: 10)])
        var model = try randomModel(spec, dataset: .mnist, seed: 11)
        model.testTimeAugmentation = try TestTimeAugmentation(parsing: "flip")
        let data = try ONNXExport.encode(model)
        let proto = try Onnx_ModelProto(serializedBytes: data)
        // γ and β as constants, not under a parameter's name.
        let norm = try #require(proto.graph.node.first { $0.opType == "BatchNormalization" })
        #expect(norm.input[1] == "1/scale" && norm.input[2] == "1/shift", "\(norm.input)")
        let imported = try ONNXModel(data: data, source: "tta.onnx")
        #expect(imported.network.namedParameters.map(\.name) == model.network.namedParameters.map(\.name))
        #expect(imported.network.namedBuffers.map(\.name) == model.network.namedBuffers.map(\.name))
        #expect(try imported.recordedTestTimeAugmentation() == model.testTimeAugmentation)
        let x = randomInputs(for: model.network, count: 4, seed: 12)
        #expect(imported.network.forward(x).scalars.map(\.bitPattern) == model.network.forward(x).scalars.map(\.bitPattern))

        // A trained γ that happens to be 1 everywhere keeps its parameter (named as one).
        var plain = try randomModel(NetworkSpec(input: [1, 28, 28], layers: [
            .conv2d(outputChannels: 4, kernelSize: 3, stride: 2), .batchNorm2d(), .flatten, .dense(outputFeatures: 10)]), dataset: .mnist, seed: 13)
        for (name, p) in plain.network.namedParameters where name == "1.weight" || name == "1.bias" {
            p.value.scalars = p.value.scalars.map { _ in name == "1.weight" ? 1 : 0 }
        }
        plain.testTimeAugmentation = TestTimeAugmentation()
        let back = try ONNXModel(data: try ONNXExport.encode(plain), source: "plain.onnx")
        #expect(back.network.namedParameters.map(\.name) == plain.network.namedParameters.map(\.name))
        #expect(try back.recordedTestTimeAugmentation() == nil)
    }

    /// `Scripts/make_onnx_fixtures.py` built each fixture spec's PyTorch twin (state_dict names
    /// as Backprop's), gave it random weights and BatchNorm statistics, saved them
    /// (`NAME.safetensors`) and exported the net with `torch.onnx.export` (`NAME.onnx`: BatchNorm
    /// folded into the convolutions, GELU as its Erf/Tanh formula, ReduceMean for the global
    /// pooling, no dropout), with PyTorch's logits for four inputs. Measured: imported vs
    /// PyTorch 1e-7 to 3e-7 relative; labels identical on the first 2000 test images.
    @Test("a torch.onnx.export of the same net with the same weights imports and predicts the same labels",
          arguments: ["torch_residual", "torch_global"])
    func torchExport(_ name: String) throws {
        let experiment = try Experiment(specFile: fixture("\(name).json"))
        var g = SeededGenerator(seed: 0)
        let twin = try experiment.network.makeNetwork(Float.self, using: &g)
        let weights = try Safetensors.decode(Data(contentsOf: fixture("\(name).safetensors"))).tensors
        for (key, p) in twin.namedParameters { p.value = try #require(weights[key], "\(key)") }
        for (key, b) in twin.namedBuffers { b.value = try #require(weights[key], "\(key)") }

        let imported = try ONNXModel(contentsOf: fixture("\(name).onnx"))
        #expect(imported.network.inputShape == experiment.network.input)

        // PyTorch's own logits for the fixture inputs.
        let inputs = try readRawFloat32(fixture("\(name).input.f32"))
        let x = Tensor<Float>(shape: [inputs.count / experiment.network.input.reduce(1, *)] + experiment.network.input, scalars: inputs)
        let torchLogits = try readRawFloat32(fixture("\(name).logits.f32"))
        let ours = twin.forward(x).scalars, theirs = imported.network.forward(x).scalars
        print("\(name): Backprop twin vs PyTorch \(String(format: "%.1e", relativeDifference(ours, torchLogits))), imported ONNX vs PyTorch \(String(format: "%.1e", relativeDifference(theirs, torchLogits))) relative")
        #expect(relativeDifference(ours, torchLogits) <= 1e-4)
        #expect(relativeDifference(theirs, torchLogits) <= 1e-4)

        // The same labels on real images.
        let data = try testSet(experiment.dataset)
        let preprocessing = experiment.dataset == .mnist ? Preprocessing(scale: 1 / 255, mean: [0.1307])
                                                         : Preprocessing(scale: 1, mean: [125.3, 122.95, 113.87])
        let images = preprocessing.apply(to: data.test, indices: Array(0..<2000))
        let expected = labels(twin.forward(images)), got = labels(imported.network.forward(images))
        #expect(got == expected, "\(zip(got, expected).filter { $0 != $1 }.count) of 2000 labels differ")
        #expect(Set(expected).count >= 3, "the labels are too uniform to tell nets apart")
    }

    @Test("an unsupported operator: one error naming every unsupported operator in the file")
    func unsupportedOperators() throws {
        var proto = try mnistProto()
        proto.graph.node.insert(node("LSTM", ["input"], ["a"]), at: 0)
        proto.graph.node.insert(node("Sigmoid", ["a"], ["b"]), at: 1)
        proto.graph.node.insert(node("Sigmoid", ["b"], ["c"]), at: 2)
        var custom = node("FusedConv", ["c"], ["d"])
        custom.domain = "com.microsoft"
        proto.graph.node.append(custom)
        let message = importError(try proto.serializedBytes())
        #expect(message.contains("unsupported ONNX operators: LSTM (1 node), Sigmoid (2 nodes), com.microsoft.FusedConv (1 node)"), "\(message)")
    }

    @Test("corrupt bytes: a one-line error, never a trap")
    func corruptBytes() throws {
        let good = try ONNXExport.encode(try randomModel(try #require(Experiment.preset(named: "mnist")).network, dataset: .mnist, seed: 3))
        #expect(importError(Data()).contains("no opset") || importError(Data()).contains("standard ONNX"))
        var g = SeededGenerator(seed: 99)
        for length in [1, 7, 100, 5000] {
            let noise = Data((0..<length).map { _ in UInt8(truncatingIfNeeded: g.next()) })
            _ = importError(noise)
        }
        // Truncated anywhere: malformed protobuf, or a tensor whose data is short.
        for cut in stride(from: 1, to: good.count, by: good.count / 37) { _ = importError(good.prefix(cut)) }
        // Bytes flipped: either an error or a model that loads; never a crash.
        for position in stride(from: 0, to: good.count, by: good.count / 101) {
            var bad = good
            bad[position] ^= 0xFF
            _ = try? ONNXModel(data: bad, source: "flipped.onnx")
        }
    }

    @Test("graphs with cycles, missing inputs, mismatched shapes or huge sizes: one-line errors")
    func hostileGraphs() throws {
        // A cycle.
        var proto = try mnistProto()
        proto.graph.node = [node("Relu", ["input", "c"], ["a"], name: "r1"), node("Relu", ["a"], ["b"], name: "r2"),
                            node("Relu", ["b"], ["c"], name: "r3")]
        #expect(importError(try proto.serializedBytes()).contains("cycle"))

        // A node reading a tensor nothing provides.
        proto = try mnistProto()
        proto.graph.node[1].input = ["nowhere"]
        let missing = importError(try proto.serializedBytes())
        #expect(missing.contains("nowhere") && missing.contains("no node, initializer or input"), "\(missing)")

        // The second convolution's weight with 8 input channels where the first gives 16.
        proto = try mnistProto()
        let index = try #require(proto.graph.initializer.firstIndex { $0.name == "3.weight" })
        proto.graph.initializer[index].dims = [32, 8, 5, 5]
        let mismatched = importError(try proto.serializedBytes())
        #expect(mismatched.contains("3.weight") && mismatched.contains("[32, 8, 5, 5]") && mismatched.contains("[32, 16, 5, 5]"), "\(mismatched)")

        // The dense layer's weight for another input size.
        proto = try mnistProto()
        let dense = try #require(proto.graph.initializer.firstIndex { $0.name == "7.weight" })
        proto.graph.initializer[dense].dims = [20, 392]
        let denseMessage = importError(try proto.serializedBytes())
        #expect(denseMessage.contains("392") && denseMessage.contains("784"), "\(denseMessage)")

        // Huge dimensions: refused before anything is allocated.
        proto = try mnistProto()
        proto.graph.initializer[0].dims = [1 << 40, 1 << 30]
        #expect(importError(try proto.serializedBytes()).contains("dimension"))
        proto = try mnistProto()
        proto.graph.initializer[0].dims = [1 << 20, 1 << 20, 16]
        #expect(importError(try proto.serializedBytes()).contains("more than"))
        proto = try mnistProto()
        proto.graph.input[0].type.tensorType.shape.dim[2].dimValue = 1 << 40
        #expect(importError(try proto.serializedBytes()).contains("fixed sizes"))
        proto = try mnistProto()
        proto.graph.input[0].type.tensorType.shape.dim[2].dimValue = 1 << 20
        proto.graph.input[0].type.tensorType.shape.dim[3].dimValue = 1 << 20
        _ = importError(try proto.serializedBytes())

        // A data length that does not match the dimensions.
        proto = try mnistProto()
        proto.graph.initializer[0].rawData = proto.graph.initializer[0].rawData.prefix(10)
        #expect(importError(try proto.serializedBytes()).contains("bytes of data"))

        // Weights kept in another file.
        proto = try mnistProto()
        proto.graph.initializer[0].dataLocation = .external
        #expect(importError(try proto.serializedBytes()).contains("external"))

        // An opset Backprop does not read; no graph; two inputs.
        proto = try mnistProto()
        proto.opsetImport[0].version = 3
        #expect(importError(try proto.serializedBytes()).contains("opset 3"))
        proto = try mnistProto()
        proto.clearGraph()
        #expect(importError(try proto.serializedBytes()).contains("no graph"))
        proto = try mnistProto()
        proto.graph.input.append(proto.graph.input[0])
        proto.graph.input[1].name = "second"
        #expect(importError(try proto.serializedBytes()).contains("inputs"))

        // Three paths from one tensor; a product of two computed tensors.
        proto = try mnistProto()
        let first = proto.graph.node[0].output[0]
        proto.graph.node.insert(node("Relu", [first], ["extra1"]), at: 1)
        proto.graph.node.insert(node("Relu", [first], ["extra2"]), at: 1)
        #expect(importError(try proto.serializedBytes()).contains("3 paths"))
        proto = try mnistProto()
        proto.graph.node[1] = node("Mul", [first, first + "x"], [proto.graph.node[1].output[0]])
        proto.graph.node.insert(node("Relu", [first], [first + "x"]), at: 1)
        _ = importError(try proto.serializedBytes())
    }

    @Test("a Gemm without transB, and MatMul plus Add, read as dense layers")
    func denseForms() throws {
        let model = try randomModel(try #require(Experiment.preset(named: "mnist")).network, dataset: .mnist, seed: 3)
        let x = randomInputs(for: model.network, count: 4, seed: 4)
        let expected = model.network.forward(x).scalars
        var proto = try Onnx_ModelProto(serializedBytes: try ONNXExport.encode(model))
        let gemm = try #require(proto.graph.node.firstIndex { $0.opType == "Gemm" })
        let w = try #require(proto.graph.initializer.firstIndex { $0.name == "7.weight" })
        // W stored as [in, out].
        let values = ConstantTensorTestView(proto.graph.initializer[w]).floats
        var transposed = [Float](repeating: 0, count: values.count)
        for o in 0..<10 { for i in 0..<784 { transposed[i * 10 + o] = values[o * 784 + i] } }
        proto.graph.initializer[w] = .float32(name: "7.weight", shape: [784, 10], values: transposed)
        proto.graph.node[gemm].attribute.removeAll { $0.name == "transB" }
        let viaGemm = try ONNXModel(data: try proto.serializedBytes(), source: "gemm.onnx")
        #expect(relativeDifference(viaGemm.network.forward(x).scalars, expected) <= 1e-6)

        let output = proto.graph.node[gemm].output[0]
        let bias = proto.graph.node[gemm].input[2]
        proto.graph.node[gemm] = node("MatMul", [proto.graph.node[gemm].input[0], "7.weight"], ["product"])
        proto.graph.node.insert(node("Add", ["product", bias], [output]), at: gemm + 1)
        let viaMatMul = try ONNXModel(data: try proto.serializedBytes(), source: "matmul.onnx")
        #expect(relativeDifference(viaMatMul.network.forward(x).scalars, expected) <= 1e-6)
    }
}

/// Reads a float32 initializer's raw data independently of the importer.
private struct ConstantTensorTestView {
    var floats: [Float]
    init(_ t: Onnx_TensorProto) {
        let bytes = [UInt8](t.rawData)
        floats = stride(from: 0, to: bytes.count, by: 4).map { i in
            Float(bitPattern: UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24)
        }
    }
}
