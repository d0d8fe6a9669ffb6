import Backprop
import BackpropData
import BackpropTestSupport
import BackpropTraining
import Foundation
import Testing
@testable import BackpropONNX

@Suite("ONNX export")
struct ONNXExportTests {
    @Test("the mnist preset's graph: opset 17, a free batch size, one node per layer, the weights under their state_dict names")
    func mnistGraph() throws {
        let model = try randomModel(try #require(Experiment.preset(named: "mnist")).network, dataset: .mnist, seed: 3)
        let data = try ONNXExport.encode(model)
        let proto = try Onnx_ModelProto(serializedBytes: data)
        #expect(proto.irVersion == 8)
        #expect(proto.opsetImport.map(\.version) == [17] && proto.opsetImport[0].domain == "")
        let graph = proto.graph
        #expect(graph.node.map(\.opType) == ["Conv", "Relu", "MaxPool", "Conv", "Relu", "MaxPool", "Flatten", "Gemm", "Softmax"])
        #expect(graph.node.map(\.name).prefix(8) == ["0/Conv", "1/Relu", "2/MaxPool", "3/Conv", "4/Relu", "5/MaxPool", "6/Flatten", "7/Gemm"])
        let input = try #require(graph.input.first)
        #expect(graph.input.count == 1 && input.name == "input")
        let dims = input.type.tensorType.shape.dim
        #expect(dims.count == 4 && dims[0].dimParam == "N" && dims.dropFirst().map(\.dimValue) == [1, 28, 28])
        #expect(graph.output.map(\.name) == ["logits", "probabilities"])
        #expect(graph.node[7].output == ["logits"] && graph.node[8].input == ["logits"])

        // Conv attributes: 5x5, stride 1, padding 2 on every side.
        let conv = graph.node[0]
        let attributes = Dictionary(uniqueKeysWithValues: conv.attribute.map { ($0.name, $0) })
        #expect(attributes["kernel_shape"]?.ints == [5, 5] && attributes["strides"]?.ints == [1, 1])
        #expect(attributes["pads"]?.ints == [2, 2, 2, 2] && attributes["group"]?.i == 1)
        #expect(conv.input == ["input", "0.weight", "0.bias"])
        #expect(graph.node[7].attribute.first { $0.name == "transB" }?.i == 1)

        // Every parameter as an initializer: its dims, and its bytes as little-endian float32,
        // read here byte by byte.
        #expect(Set(graph.initializer.map(\.name)) == Set(model.network.namedParameters.map(\.name)))
        for (name, parameter) in model.network.namedParameters {
            let tensor = try #require(graph.initializer.first { $0.name == name })
            #expect(tensor.dims == parameter.value.shape.map(Int64.init), "\(name)")
            #expect(tensor.dataType == 1, "\(name): float32")
            let bytes = [UInt8](tensor.rawData)
            let values = stride(from: 0, to: bytes.count, by: 4).map { i in
                UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24
            }
            #expect(values == parameter.value.scalars.map(\.bitPattern), "\(name)")
        }

        // The preprocessing, the data set and the class names in the metadata.
        let metadata = Dictionary(uniqueKeysWithValues: proto.metadataProps.map { ($0.key, $0.value) })
        #expect(metadata["backprop.dataset"] == "mnist")
        #expect(metadata["backprop.preprocessing.scale"].flatMap(Double.init).map(Float.init) == Float(1) / 255)
        #expect(metadata["backprop.preprocessing.mean"].flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [Double] }?.map(Float.init) == [0.1307])
        #expect(metadata["backprop.class_names"] == #"["0","1","2","3","4","5","6","7","8","9"]"#)
        #expect(metadata["backprop.preprocessing"]?.contains("byte * scale - mean") == true)
        #expect(metadata["backprop.model"].map { $0.contains("\"network\"") } == true)
    }

    @Test("BatchNorm in inference form, residual blocks as Add, GELU in opset-17 operators")
    func resnetGraph() throws {
        let experiment = try Experiment(specFile: TestPaths.packageRoot.appendingPathComponent("Examples/resnet-mnist.json"))
        let model = try randomModel(experiment.network, dataset: .mnist, seed: 3)
        let graph = try Onnx_ModelProto(serializedBytes: try ONNXExport.encode(model)).graph
        let norms = graph.node.filter { $0.opType == "BatchNormalization" }
        #expect(norms.count == 6)  // the stem, two in each block's main path, one in the second shortcut
        #expect(norms[0].input == ["input", "1.weight", "1.bias", "1.running_mean", "1.running_var"].enumerated().map { $0.offset == 0 ? graph.node[0].output[0] : $0.element })
        #expect(norms[0].attribute.first { $0.name == "momentum" }?.f == Float(0.9))
        #expect(norms[0].attribute.first { $0.name == "epsilon" }?.f == Float(1e-5))
        #expect(!norms.contains { $0.attribute.contains { $0.name == "training_mode" && $0.i != 0 } })
        let adds = graph.node.filter { $0.opType == "Add" }
        #expect(adds.count == 2)
        // The identity shortcut adds the block's input; the other block's shortcut is its own path.
        #expect(adds[0].input[1] == graph.node.first { $0.name == "2/Relu" }?.output[0])
        #expect(adds[1].input[1].hasPrefix("5.shortcut.1"))
        #expect(graph.node.contains { $0.opType == "GlobalAveragePool" })

        let gelu = try Onnx_ModelProto(serializedBytes: try ONNXExport.encode(try randomModel(
            NetworkSpec(input: [4], layers: [.gelu(), .gelu(approximation: .tanh), .dense(outputFeatures: 3)]), dataset: .mnist, seed: 1)))
        #expect(gelu.graph.node.map(\.opType).prefix(5) == ["Div", "Erf", "Add", "Mul", "Mul"])
        #expect(gelu.graph.node.contains { $0.opType == "Tanh" })
        #expect(!gelu.graph.node.contains { $0.opType == "Gelu" })
    }
}

@Suite("export and import commands")
struct ONNXCommandTests {
    @Test("export → import → evaluate: the imported run folder gives the same test accuracy")
    func exportImportEvaluate() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let data = TestPaths.dataRoot.path
        let run = folder.file("run").path, onnx = folder.file("model.onnx").path, back = folder.file("back").path
        let training = try backprop(["train", "mnist", "--iterations", "100", "--data-dir", data, "--out", run])
        #expect(training.exited && training.status == 0, "\(training.summary)")
        let export = try backprop(["export", run, "--onnx", onnx])
        #expect(export.exited && export.status == 0, "\(export.summary)")
        #expect(export.stdout.contains("ONNX opset 17") && export.stdout.contains("x = byte * 0.00392157 - mean"), "\(export.stdout)")
        let imported = try backprop(["import", onnx, "--out", back])
        #expect(imported.exited && imported.status == 0, "\(imported.summary)")
        #expect(imported.stdout.contains("note: the final Softmax was left out"), "\(imported.stdout)")
        let files = try FileManager.default.contentsOfDirectory(atPath: back).sorted()
        #expect(files == ["experiment.json", "model.json", "model.safetensors"])

        let first = try backprop(["evaluate", run, "--data-dir", data]), second = try backprop(["evaluate", back, "--data-dir", data])
        #expect(first.exited && first.status == 0 && second.exited && second.status == 0, "\(second.summary)")
        let line = { (r: ProcessResult) in r.stdout.split(separator: "\n").first.map(String.init) ?? "" }
        #expect(line(first).hasPrefix("test accuracy") && line(first) == line(second), "\(line(first)) vs \(line(second))")

        // It is reported on: the model and its evaluation, no training curves.
        let report = try backprop(["report", back, "--data-dir", data, "--misclassified", "4", "--per-pair", "1"])
        #expect(report.exited && report.status == 0, "\(report.summary)")
        #expect(report.stdout.contains("no training history") && report.stdout.contains(line(first).dropFirst("test accuracy ".count).prefix(6)),
                "\(report.stdout)")
        let page = try String(contentsOfFile: back + "/report.html", encoding: .utf8)
        #expect(page.contains("No training history") && !page.contains("accuracy.svg"))

        // It fine-tunes: training starts from the imported weights, not from fresh ones.
        let accuracy = { (text: String) -> Double in
            guard let range = text.range(of: #"test accuracy [0-9.]+"#, options: .regularExpression) else { return -1 }
            return Double(text[range].dropFirst("test accuracy ".count)) ?? -1
        }
        // The folder's experiment.json gives the network. On 5,000 images (whose own mean differs
        // from the 58,000 the model was trained on), it keeps the model's preprocessing.
        let tuned = try backprop(["train", "--init", back, "--iterations", "10",
                                  "--learning-rate", "0.001", "--train-size", "5000", "--data-dir", data, "--out", folder.file("tuned").path])
        #expect(tuned.exited && tuned.status == 0, "\(tuned.summary)")
        #expect(accuracy(tuned.stdout) >= accuracy(first.stdout) - 2, "\(tuned.stdout.suffix(300)) vs \(line(first))")
        let preprocessing = { (run: String) throws -> [String: Double]? in
            let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: run + "/model.json"))) as? [String: Any]
            let p = object?["preprocessing"] as? [String: Any]
            return (p?["mean"] as? [Double]).map { ["scale": p?["scale"] as? Double ?? 0, "mean": $0[0]] }
        }
        let kept = try preprocessing(folder.file("tuned").path), original = try preprocessing(back)
        #expect(kept != nil && kept == original, "\(String(describing: kept)) vs \(String(describing: original))")
        #expect(FileManager.default.fileExists(atPath: folder.file("tuned").path + "/initialization.json"))
        let fresh = try backprop(["train", "--spec", back + "/experiment.json", "--iterations", "10",
                                  "--learning-rate", "0.001", "--data-dir", data, "--out", folder.file("fresh").path])
        #expect(accuracy(fresh.stdout) < accuracy(first.stdout) - 20, "\(fresh.stdout.suffix(200))")

        // And it exports again.
        let again = try backprop(["export", back, "--onnx", folder.file("again.onnx").path])
        #expect(again.exited && again.status == 0, "\(again.summary)")
    }

    @Test("user errors: one Error line and a non-zero exit; nothing half-written")
    func userErrors() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        func expectError(_ arguments: [String], _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let result = try backprop(arguments)
            #expect(result.exited && result.status != 0, "\(result.summary)", sourceLocation: sourceLocation)
            #expect(result.stderrLines.count == 1 && result.stderr.hasPrefix("Error: ") && result.stderr.contains(fragment),
                    "\(result.stderr)", sourceLocation: sourceLocation)
        }
        try expectError(["export", folder.url.path], "--onnx")
        try expectError(["export", folder.url.path, "--onnx", folder.file("x.onnx").path], "no model file")
        try expectError(["export", folder.url.path, "--onnx", folder.file("missing/x.onnx").path], "does not exist")
        let garbage = try folder.write([0x08, 0x07, 0xFF, 0xFF, 0xFF, 0x12, 0x99], to: "garbage.onnx")
        try expectError(["import", garbage.path, "--out", folder.file("out").path], "garbage.onnx")
        #expect(!FileManager.default.fileExists(atPath: folder.file("out").path))
        try expectError(["import", folder.file("none.onnx").path, "--out", folder.file("out").path], "cannot read")
        try expectError(["import", fixture("torch_global.onnx").path, "--out", folder.file("out").path], "records no preprocessing")
        try expectError(["import", fixture("torch_global.onnx").path, "--out", folder.file("out").path, "--scale", "1"], "together")
        let ok = try backprop(["import", fixture("torch_global.onnx").path, "--out", folder.file("out").path, "--scale", "1", "--mean", "125,123,114"])
        #expect(ok.exited && ok.status == 0, "\(ok.summary)")
        #expect(ok.stdout.contains("CIFAR-10"), "\(ok.stdout)")
        try expectError(["import", fixture("torch_global.onnx").path, "--out", folder.file("out").path, "--scale", "1", "--mean", "0"], "not empty")
    }
}
