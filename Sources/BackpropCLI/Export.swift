import ArgumentParser
import Backprop
import BackpropONNX
import BackpropTraining
import Foundation

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a run's model as an ONNX file (opset 17), for onnxruntime and other ONNX tools.",
        discussion: """
            The graph takes preprocessed images [N, C, H, W] (float32) and gives logits and softmax \
            probabilities. The preprocessing (x = byte * scale - mean[channel]), the data set and the \
            class names are in the file's metadata_props (backprop.preprocessing.scale, \
            backprop.preprocessing.mean, backprop.dataset, backprop.class_names). Test-time augmentation \
            is not in the graph (one view); backprop.test_time_augmentation records it. The file is \
            written atomically.
            """)

    @Argument(help: ArgumentHelp("The run folder.", valueName: "run")) var runFolder: String
    @Option(help: ArgumentHelp("The ONNX file to write.", valueName: "file.onnx")) var onnx: String?

    func run() throws {
        guard let onnx else { throw UserError.usage("name the file to write with --onnx FILE (the only export format)") }
        let path = try nonEmpty(onnx, "--onnx")
        let folder = URL(fileURLWithPath: try nonEmpty(runFolder, "the run folder"), isDirectory: true)
        let target = URL(fileURLWithPath: path)
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: target.path, isDirectory: &isFolder), isFolder.boolValue {
            throw UserError("--onnx: \(path) is a folder; name the file to write (nothing was written)")
        }
        let parent = target.deletingLastPathComponent()
        if !FileManager.default.fileExists(atPath: parent.path, isDirectory: &isFolder) || !isFolder.boolValue {
            throw UserError("--onnx: the folder \(parent.path) does not exist (nothing was written)")
        }
        let model = try userFacing { try ModelArchive.load(from: folder) }
        let data = try userFacing { try ONNXExport.encode(model) }
        try userFacing("write \(path)") { try writeAtomically(data, to: target) }
        let scale = model.preprocessing.scale, mean = model.preprocessing.mean.map { String(format: "%g", $0) }.joined(separator: ", ")
        print("wrote \(path) (\(grouped(data.count)) bytes): ONNX opset \(ONNXExport.opsetVersion), input \"\(ONNXExport.inputName)\" "
              + "[N, \(model.network.inputShape.map(String.init).joined(separator: ", "))], outputs \"\(ONNXExport.logitsName)\" "
              + "and \"\(ONNXExport.probabilitiesName)\" [N, \(model.classNames.count)]")
        print("input preprocessing (also in the file's metadata): x = byte * \(String(format: "%g", scale)) - mean, mean [\(mean)]")
        if !model.testTimeAugmentation.isIdentity {
            print("note: the model's test-time augmentation (\(model.testTimeAugmentation)) is not in the graph, which computes one view "
                  + "(as `backprop evaluate --tta none`); it is recorded in the metadata (backprop.test_time_augmentation) and `backprop import` restores it")
        }
    }
}
