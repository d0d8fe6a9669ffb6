import Backprop
import BackpropData
import Foundation

/// A trained model as files: `model.safetensors` (the weights and buffers — BatchNorm's running
/// statistics — under their PyTorch `state_dict` names, with
/// the description below in its `__metadata__` as `backprop.model`) and `model.json` beside it
/// (the same description, for people and other tools).
///
/// The description holds the architecture (`NetworkSpec` JSON), the preprocessing and the class
/// names — everything needed to turn an image into a prediction.
public struct ModelArchive {
    public var network: Network<Float>
    public var spec: NetworkSpec
    public var dataset: DatasetKind
    public var preprocessing: Preprocessing
    public var classNames: [String]

    public init(network: Network<Float>, spec: NetworkSpec, dataset: DatasetKind, preprocessing: Preprocessing, classNames: [String]) {
        self.network = network
        self.spec = spec
        self.dataset = dataset
        self.preprocessing = preprocessing
        self.classNames = classNames
    }

    /// The file names inside a run folder.
    public static let weightsFile = "model.safetensors"
    public static let descriptionFile = "model.json"

    /// A model file that cannot be used (one line).
    public struct LoadError: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// The description `model.json` holds (also in the safetensors metadata and ONNX `metadata_props`).
    public var descriptionObject: [String: Any] {
        [
            "format": "backprop-model", "version": 1,
            "dataset": dataset.rawValue,
            "class_names": classNames,
            "preprocessing": ["scale": Double(preprocessing.scale), "mean": preprocessing.mean.map(Double.init),
                              "formula": "x = byte * scale - mean[channel]; images NCHW"],
            "network": spec.jsonObject,
        ]
    }

    /// Writes both files into `folder` (atomically each).
    public func save(to folder: URL) throws {
        try saveWeights(to: folder.appendingPathComponent(Self.weightsFile))
        let description = try JSONSerialization.data(withJSONObject: descriptionObject, options: [.prettyPrinted, .sortedKeys])
        try writeAtomically(description, to: folder.appendingPathComponent(Self.descriptionFile))
    }

    /// Writes the safetensors file alone (the description in its metadata), atomically.
    public func saveWeights(to file: URL) throws {
        let description = try JSONSerialization.data(withJSONObject: descriptionObject, options: [.prettyPrinted, .sortedKeys])
        let weights = try Safetensors.encode(
            network.namedParameters.map { ($0.name, $0.parameter.value) } + network.namedBuffers.map { ($0.name, $0.buffer.value) },
            integers: Set(network.namedBuffers.filter { $0.buffer.storage == .integer }.map(\.name)),
            metadata: ["backprop.model": String(decoding: description, as: UTF8.self), "format": "pt"])
        try writeAtomically(weights, to: file)
    }

    /// Reads a model from a run folder (or a `.safetensors` file), rebuilding the network and
    /// checking that every weight is present with the shape the architecture needs.
    public static func load(from location: URL) throws(LoadError) -> ModelArchive {
        let file = location.pathExtension == "safetensors" ? location : location.appendingPathComponent(weightsFile)
        func fail(_ message: String) -> LoadError { LoadError(description: "\(file.path): \(message)") }
        guard let data = try? Data(contentsOf: file) else {
            throw fail("no model file here (train one with `backprop train … --out \(location.path)`)")
        }
        let decoded: (tensors: [String: Tensor<Float>], metadata: [String: String])
        do { decoded = try Safetensors.decode(data) } catch { throw fail(error.description) }
        guard let text = decoded.metadata["backprop.model"],
              let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw fail("no backprop.model description in the safetensors metadata")
        }
        guard let datasetName = object["dataset"] as? String, let dataset = DatasetKind(rawValue: datasetName),
              let classNames = object["class_names"] as? [String],
              let pre = object["preprocessing"] as? [String: Any], let scale = pre["scale"] as? Double,
              let mean = pre["mean"] as? [Double], let networkObject = object["network"] as? [String: Any] else {
            throw fail("the model description is incomplete")
        }
        let spec: NetworkSpec
        do { spec = try NetworkSpec(jsonObject: networkObject) } catch { throw fail(error.description) }
        var generator = SeededGenerator(seed: 0)
        let network: Network<Float>
        do { network = try spec.makeNetwork(Float.self, using: &generator) } catch { throw fail(error.description) }
        // The description must fit the data set it names, or evaluation would index past it.
        guard spec.input == dataset.imageShape else {
            throw fail("the network's input \(describe(shape: spec.input)) does not match \(dataset.displayName) images (\(describe(shape: dataset.imageShape)))")
        }
        guard network.outputShape == [classNames.count] else {
            throw fail("the network has \(describe(shape: network.outputShape)) outputs for \(classNames.count) class names")
        }
        guard mean.count == 1 || mean.count == dataset.imageShape[0], scale.isFinite, mean.allSatisfy(\.isFinite) else {
            throw fail("the preprocessing has \(mean.count) means for \(dataset.imageShape[0]) channels")
        }
        for (name, parameter) in network.namedParameters {
            guard let tensor = decoded.tensors[name] else { throw fail("tensor \(name) is missing") }
            guard tensor.shape == parameter.value.shape else {
                throw fail("tensor \(name) has shape \(tensor.shape), the architecture needs \(parameter.value.shape)")
            }
            parameter.value = tensor
        }
        for (name, buffer) in network.namedBuffers {
            guard let tensor = decoded.tensors[name] else { throw fail("tensor \(name) is missing") }
            guard tensor.shape == buffer.value.shape else {
                throw fail("tensor \(name) has shape \(tensor.shape), the architecture needs \(buffer.value.shape)")
            }
            buffer.value = tensor
        }
        return ModelArchive(network: network, spec: spec, dataset: dataset,
                            preprocessing: Preprocessing(scale: Float(scale), mean: mean.map(Float.init)), classNames: classNames)
    }
}
