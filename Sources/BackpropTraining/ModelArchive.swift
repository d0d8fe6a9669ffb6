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
    /// The views whose logits a prediction averages (none: one forward pass).
    public var testTimeAugmentation: TestTimeAugmentation

    public init(network: Network<Float>, spec: NetworkSpec, dataset: DatasetKind, preprocessing: Preprocessing, classNames: [String],
                testTimeAugmentation: TestTimeAugmentation = TestTimeAugmentation()) {
        self.network = network
        self.spec = spec
        self.dataset = dataset
        self.preprocessing = preprocessing
        self.classNames = classNames
        self.testTimeAugmentation = testTimeAugmentation
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
        var object: [String: Any] = [
            "format": "backprop-model", "version": 1,
            "dataset": dataset.rawValue,
            "class_names": classNames,
            "preprocessing": ["scale": Double(preprocessing.scale), "mean": preprocessing.mean.map(Double.init),
                              "formula": "x = byte * scale - mean[channel]; images NCHW"],
            "network": spec.jsonObject,
        ]
        // Written only when there is one, so files without it stay as they were.
        if !testTimeAugmentation.isIdentity { object["test_time_augmentation"] = testTimeAugmentation.description }
        return object
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
    ///
    /// Memory stays bounded by what a valid file of the same size needs: the header is read
    /// first (at most `Safetensors.maximumHeaderSize` bytes) and checked against the file's
    /// size, the network is built only up to as many values as the file's tensors hold, and
    /// each tensor is read only once its name and shape are known to be needed. `model.json`
    /// beside the weights, when present, must hold the same description (it is the same text,
    /// pretty-printed, for people and other tools).
    public static func load(from location: URL) throws(LoadError) -> ModelArchive {
        let file = location.pathExtension == "safetensors" ? location : location.appendingPathComponent(weightsFile)
        func fail(_ message: String) -> LoadError { LoadError(description: "\(file.path): \(message)") }
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: file.path, isDirectory: &isFolder) else {
            throw fail("no model file here (train one with `backprop train … --out \(location.path)`)")
        }
        let weights: Safetensors.File
        do { weights = try Safetensors.File(url: file) } catch {
            if let error = error as? FileError { throw LoadError(description: error.description) }
            throw fail(String(describing: error))
        }
        guard let text = weights.header.metadata["backprop.model"],
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
        // The description must fit the data set it names, or evaluation would index past it.
        if let shape = dataset.imageShape, spec.input != shape {
            throw fail("the network's input \(describe(shape: spec.input)) does not match \(dataset.displayName) images (\(describe(shape: shape)))")
        }
        // An image folder has as many classes as subfolders (at most 256); the others have 10.
        if dataset == .imageFolder {
            guard (2...256).contains(classNames.count) else {
                throw fail("the description names \(classNames.count) classes; an image folder has 2 to 256")
            }
        } else if classNames.count != 10 {
            throw fail("the description names \(classNames.count) classes; \(dataset.displayName) has 10")
        }
        guard spec.input.count == 3, mean.count == 1 || mean.count == spec.input[0] else {
            throw fail("the preprocessing has \(mean.count) means for \(spec.input.first ?? 0) channels")
        }
        // Finite as Double is not enough: the network computes in Float.
        guard Float(scale).isFinite, scale > 0, mean.allSatisfy({ Float($0).isFinite }) else {
            throw fail("the preprocessing's scale and means must be finite Float numbers (scale > 0)")
        }
        let stored = weights.header.entries.reduce(0) { $0 + $1.count }
        var generator = SeededGenerator(seed: 0)
        let network: Network<Float>
        do {
            network = try spec.makeNetwork(Float.self, parameterLimit: stored + (1 << 20), reason: " (the file holds \(stored) values)", using: &generator)
        } catch { throw fail(error.description) }
        guard network.outputShape == [classNames.count] else {
            throw fail("the network has \(describe(shape: network.outputShape)) outputs for \(classNames.count) class names")
        }
        var testTimeAugmentation = TestTimeAugmentation()
        if let text = object["test_time_augmentation"] {
            guard let text = text as? String else { throw fail("test_time_augmentation must be a string") }
            do {
                testTimeAugmentation = try TestTimeAugmentation(parsing: text)
                try testTimeAugmentation.validate(height: spec.input[1], width: spec.input[2])
            } catch { throw fail(error.description) }
        }
        func read(_ name: String, shape: [Int]) throws(LoadError) -> Tensor<Float> {
            guard let entry = weights.header.entry(name) else { throw fail("tensor \(name) is missing") }
            guard entry.shape == shape else {
                throw fail("tensor \(name) has shape \(entry.shape), the architecture needs \(shape)")
            }
            let tensor: Tensor<Float>
            do { tensor = try weights.tensor(entry) } catch { throw LoadError(description: error.description) }
            guard tensor.scalars.allSatisfy(\.isFinite) else { throw fail("tensor \(name) holds NaN or infinite values") }
            return tensor
        }
        for (name, parameter) in network.namedParameters { parameter.value = try read(name, shape: parameter.value.shape) }
        for (name, buffer) in network.namedBuffers { buffer.value = try read(name, shape: buffer.value.shape) }
        let description = location.pathExtension == "safetensors" ? nil : location.appendingPathComponent(descriptionFile)
        if let description, FileManager.default.fileExists(atPath: description.path) {
            let same: Bool
            do {
                let data = try readRegularFile(description, limit: Safetensors.maximumHeaderSize)
                let besides = try JSONSerialization.jsonObject(with: data)
                let canonical = { (value: Any) throws -> Data in try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys]) }
                same = try canonical(besides) == canonical(object)
            } catch let error as FileError {
                throw LoadError(description: error.description)
            } catch {
                throw LoadError(description: "\(description.path): not valid JSON; it should hold the description in \(file.lastPathComponent)'s metadata (delete it, or put it back)")
            }
            guard same else {
                throw LoadError(description: "\(description.path): differs from the description in \(file.lastPathComponent)'s metadata; the folder was changed by hand (delete \(descriptionFile) to use the weights file's)")
            }
        }
        return ModelArchive(network: network, spec: spec, dataset: dataset,
                            preprocessing: Preprocessing(scale: Float(scale), mean: mean.map(Float.init)), classNames: classNames,
                            testTimeAugmentation: testTimeAugmentation)
    }
}
