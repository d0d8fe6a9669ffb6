import Backprop
import BackpropData
import BackpropTraining
import Foundation
import BackpropTestSupport
import Testing

/// An untrained model of a preset, with weights from `seed` and a made-up preprocessing.
private func archive(_ name: String, seed: UInt64) throws -> ModelArchive {
    let experiment = try preset(name)
    let network: Network<Float> = try makeNetwork(experiment, seed: seed)
    // Nonzero biases, so a bias that is lost or swapped shows.
    var g = SeededGenerator(seed: seed ^ 0xB1A5)
    for (name, p) in network.namedParameters where name.hasSuffix(".bias") {
        p.value = .randomNormal(shape: p.value.shape, standardDeviation: 0.1, using: &g)
    }
    let preprocessing = experiment.dataset == .mnist
        ? Preprocessing(scale: 1 / 255, mean: [0.1307])
        : Preprocessing(scale: 1, mean: [125.3, 122.95, 113.87])
    let classNames = experiment.dataset == .mnist ? (0...9).map(String.init)
        : ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    return ModelArchive(network: network, spec: experiment.network, dataset: experiment.dataset,
                        preprocessing: preprocessing, classNames: classNames)
}

/// Inputs spread like the data set's preprocessed images.
private func inputs(for network: Network<Float>, count: Int, seed: UInt64) -> Tensor<Float> {
    var g = SeededGenerator(seed: seed)
    let spread: Float = network.inputShape[0] == 1 ? 0.3 : 60
    return .randomNormal(shape: [count] + network.inputShape, standardDeviation: spread, using: &g)
}

/// The one-line description of the `LoadError` that loading `url` throws.
private func loadError(_ url: URL, sourceLocation: SourceLocation = #_sourceLocation) -> String {
    do {
        _ = try ModelArchive.load(from: url)
        Issue.record("expected a LoadError, the model loaded", sourceLocation: sourceLocation)
    } catch {
        #expect(!error.description.contains("\n"), "not one line: \(error)", sourceLocation: sourceLocation)
        #expect(!error.description.isEmpty, sourceLocation: sourceLocation)
        return error.description
    }
    return ""
}

@Suite("ModelArchive")
struct ModelArchiveTests {
    @Test("save then load gives the same description and bit-identical weights and logits", arguments: Experiment.presetNames)
    func roundTrip(_ name: String) throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let model = try archive(name, seed: 11)
        try model.save(to: folder.url)
        #expect(FileManager.default.fileExists(atPath: folder.file(ModelArchive.weightsFile).path))
        #expect(FileManager.default.fileExists(atPath: folder.file(ModelArchive.descriptionFile).path))

        for location in [folder.url, folder.file(ModelArchive.weightsFile)] {  // a run folder or the file itself
            let loaded = try ModelArchive.load(from: location)
            #expect(loaded.spec == model.spec)
            #expect(loaded.dataset == model.dataset)
            #expect(loaded.preprocessing == model.preprocessing)
            #expect(loaded.classNames == model.classNames)
            #expect(parameterBits(loaded.network) == parameterBits(model.network))
            let x = inputs(for: model.network, count: 3, seed: 2)
            #expect(logitBits(loaded.network, x) == logitBits(model.network, x))
        }

        // model.json is the same description, readable on its own.
        let description = try #require(try JSONSerialization.jsonObject(
            with: Data(contentsOf: folder.file(ModelArchive.descriptionFile))) as? [String: Any])
        #expect(description["format"] as? String == "backprop-model")
        #expect(description["dataset"] as? String == model.dataset.rawValue)
        #expect(description["class_names"] as? [String] == model.classNames)
        #expect(try NetworkSpec(jsonObject: #require(description["network"] as? [String: Any])) == model.spec)
    }

    @Test("the safetensors file holds every parameter under its PyTorch name, F32, 8-byte aligned")
    func fileLayout() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let model = try archive("mnist", seed: 11)
        try model.save(to: folder.url)
        let data = try Data(contentsOf: folder.file(ModelArchive.weightsFile))
        let parts = try SafetensorsParts(data)
        #expect((data.count - parts.body.count) % 8 == 0, "the data should start 8-byte aligned")
        let metadata = try #require(parts.header["__metadata__"] as? [String: String])
        #expect(metadata["format"] == "pt")
        #expect(metadata["backprop.model"] != nil)
        let names = Set(parts.header.keys).subtracting(["__metadata__"])
        #expect(names == Set(model.network.namedParameters.map(\.name)))
        var covered = 0
        for (name, parameter) in model.network.namedParameters {
            let entry = try #require(parts.header[name] as? [String: Any])
            #expect(entry["dtype"] as? String == "F32")
            #expect(entry["shape"] as? [Int] == parameter.value.shape)
            let offsets = try #require(entry["data_offsets"] as? [Int])
            #expect(offsets[1] - offsets[0] == parameter.value.count * 4)
            covered += offsets[1] - offsets[0]
            // The bytes there are the parameter's little-endian float32 values.
            let bytes = parts.body.subdata(in: offsets[0]..<offsets[1])
            let values = stride(from: 0, to: bytes.count, by: 4).map { i in
                Float(bitPattern: bytes[i..<i + 4].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
            }
            #expect(values.map(\.bitPattern) == parameter.value.scalars.map(\.bitPattern), "\(name)")
        }
        #expect(covered == parts.body.count)
    }

    @Test("a corrupt or missing model file is a one-line LoadError naming the file")
    func corruptFiles() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let model = try archive("mnist", seed: 11)
        try model.save(to: folder.url)
        let file = folder.file(ModelArchive.weightsFile)
        let good = try Data(contentsOf: file)
        func corrupt(_ data: Data) throws -> String {
            try data.write(to: file)
            return loadError(folder.url)
        }

        let truncated = try corrupt(good.prefix(good.count - 100))
        #expect(truncated.contains(file.path) && truncated.contains("tensor 7."), "\(truncated)")  // the last two tensors lost their ends
        let tiny = try corrupt(good.prefix(5))
        #expect(tiny.contains("too short"), "\(tiny)")
        let headerOnly = try corrupt(good.prefix(20))
        #expect(headerOnly.contains("header length"), "\(headerOnly)")

        // The same number of elements in another shape: only the architecture can tell.
        var parts = try SafetensorsParts(good)
        var entry = try #require(parts.header["0.weight"] as? [String: Any])
        entry["shape"] = [16, 25, 1, 1]
        parts.header["0.weight"] = entry
        let reshaped = try corrupt(parts.data)
        #expect(reshaped.contains("0.weight") && reshaped.contains("[16, 25, 1, 1]") && reshaped.contains("[16, 1, 5, 5]"), "\(reshaped)")

        // A shape whose size does not match its data offsets.
        entry["shape"] = [16, 1, 5, 6]
        parts.header["0.weight"] = entry
        let wrongSize = try corrupt(parts.data)
        #expect(wrongSize.contains("0.weight"), "\(wrongSize)")

        // A tensor the architecture needs is missing (its bytes too: the data is still fully covered).
        parts = try SafetensorsParts(good)
        let lastOffsets = try #require((parts.header["7.bias"] as? [String: Any])?["data_offsets"] as? [Int])
        #expect(lastOffsets[1] == parts.body.count)
        parts.body = parts.body.prefix(lastOffsets[0])
        parts.header["7.bias"] = nil
        let missing = try corrupt(parts.data)
        #expect(missing.contains("7.bias") && missing.contains("missing"), "\(missing)")

        // Another dtype.
        parts = try SafetensorsParts(good)
        entry = try #require(parts.header["3.bias"] as? [String: Any])
        entry["dtype"] = "F16"
        parts.header["3.bias"] = entry
        let dtype = try corrupt(parts.data)
        #expect(dtype.contains("F16"), "\(dtype)")

        // No description, or a description of another architecture.
        parts = try SafetensorsParts(good)
        parts.header["__metadata__"] = ["format": "pt"]
        let noDescription = try corrupt(parts.data)
        #expect(noDescription.contains("backprop.model"), "\(noDescription)")

        parts = try SafetensorsParts(good)
        let cifarDescription: [String: Any] = [
            "format": "backprop-model", "version": 1, "dataset": "cifar10", "class_names": (0...9).map(String.init),
            "preprocessing": ["scale": 1.0, "mean": [0.0, 0.0, 0.0]], "network": try preset("cifar10").network.jsonObject,
        ]
        parts.header["__metadata__"] = [
            "format": "pt",
            "backprop.model": String(decoding: try JSONSerialization.data(withJSONObject: cifarDescription), as: UTF8.self),
        ]
        let otherArchitecture = try corrupt(parts.data)
        #expect(otherArchitecture.contains("0.weight") && otherArchitecture.contains("[16, 3, 5, 5]"), "\(otherArchitecture)")

        // The header is not JSON.
        var garbled = good
        garbled[garbled.startIndex + 8] = UInt8(ascii: "#")
        let notJSON = try corrupt(garbled)
        #expect(notJSON.contains("JSON"), "\(notJSON)")

        // Overlapping tensors, a gap, trailing bytes: the reference library's "invalid offset"
        // and "not fully covered". Each keeps every shape consistent with its own offsets.
        parts = try SafetensorsParts(good)
        entry = try #require(parts.header["7.bias"] as? [String: Any])
        let end = try #require(entry["data_offsets"] as? [Int])[1]
        entry["data_offsets"] = [end - 80, end - 40]  // over 7.weight's last 40 bytes
        parts.header["7.bias"] = entry
        let overlap = try corrupt(parts.data)
        #expect(overlap.contains("invalid offset"), "\(overlap)")

        parts = try SafetensorsParts(good)
        parts.body.append(Data(count: 8))
        let trailing = try corrupt(parts.data)
        #expect(trailing.contains("not fully covered: 8 bytes after"), "\(trailing)")

        parts = try SafetensorsParts(good)
        entry = try #require(parts.header["7.bias"] as? [String: Any])
        entry["data_offsets"] = [end - 40 + 4, end + 4]
        parts.header["7.bias"] = entry
        parts.body.append(Data(count: 4))
        let gap = try corrupt(parts.data)
        #expect(gap.contains("a gap of 4 bytes"), "\(gap)")

        // JSON true is not a size.
        parts = try SafetensorsParts(good)
        entry = try #require(parts.header["7.bias"] as? [String: Any])
        entry["shape"] = [true]
        parts.header["7.bias"] = entry
        let boolean = try corrupt(parts.data)
        #expect(boolean.contains("tensor 7.bias: malformed entry"), "\(boolean)")

        // No file at all.
        try FileManager.default.removeItem(at: file)
        let none = loadError(folder.url)
        #expect(none.contains(file.path), "\(none)")
    }
}

// MARK: - Hostile descriptions

/// A model file of `model` whose description (the `backprop.model` metadata) `change` edits.
private func withDescription(_ model: ModelArchive, in folder: TemporaryFolder, _ change: (inout [String: Any]) -> Void) throws -> URL {
    try model.save(to: folder.url)
    let file = folder.file(ModelArchive.weightsFile)
    var parts = try SafetensorsParts(Data(contentsOf: file))
    var metadata = try #require(parts.header["__metadata__"] as? [String: String])
    var description = try #require(JSONSerialization.jsonObject(with: Data(metadata["backprop.model"]!.utf8)) as? [String: Any])
    change(&description)
    metadata["backprop.model"] = String(decoding: try JSONSerialization.data(withJSONObject: description), as: UTF8.self)
    parts.header["__metadata__"] = metadata
    try parts.data.write(to: file)
    try FileManager.default.removeItem(at: folder.file(ModelArchive.descriptionFile))
    return file
}

@Suite("ModelArchive: hostile files")
struct HostileModelTests {
    @Test("fewer class names than the data set's classes, Float-overflowing preprocessing, NaN weights: refused at load")
    func descriptions() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let model = try archive("mnist", seed: 3)
        for count in [1, 5, 9] {
            let file = try withDescription(model, in: folder) { $0["class_names"] = (0..<count).map(String.init) }
            let message = loadError(file)
            #expect(message.contains("names \(count) classes; MNIST has 10"), "\(message)")
        }
        var file = try withDescription(model, in: folder) { $0["preprocessing"] = ["scale": 1e308, "mean": [0.1]] }
        var message = loadError(file)
        #expect(message.contains("finite Float"), "\(message)")
        file = try withDescription(model, in: folder) { $0["preprocessing"] = ["scale": 1.0, "mean": [-1e39]] }
        #expect(loadError(file).contains("finite Float"))

        let poisoned = try archive("mnist", seed: 3)
        poisoned.network.namedParameters[1].parameter.value.scalars[0] = .nan
        try poisoned.save(to: folder.url)
        message = loadError(folder.url)
        #expect(message.contains("tensor 0.bias holds NaN or infinite values"), "\(message)")
    }

    @Test("a description claiming a network larger than the file's tensors is refused before it is built")
    func oversizedNetwork() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let model = try archive("mnist", seed: 3)
        // 784 x 2^18 + 2^18 x 10 weights: about 208 M values (830 MB) for a 59 KB file.
        let file = try withDescription(model, in: folder) {
            $0["network"] = ["input": [1, 28, 28], "layers": [["type": "dense", "out_features": 1 << 18], ["type": "dense", "out_features": 10]]]
        }
        let started = Date()
        let message = loadError(file)
        #expect(message.contains("too many weights") && message.contains("the file holds 14682 values"), "\(message)")
        #expect(Date().timeIntervalSince(started) < 30)
    }

    @Test("model.json: absent is fine; one that differs from the weights file's description is refused")
    func descriptionBeside() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let model = try archive("mnist", seed: 3)
        try model.save(to: folder.url)
        _ = try ModelArchive.load(from: folder.url)
        let beside = folder.file(ModelArchive.descriptionFile)
        try Data("{\"junk\": 1}".utf8).write(to: beside)
        #expect(loadError(folder.url).contains("model.json: differs from the description"))
        try Data("not json".utf8).write(to: beside)
        #expect(loadError(folder.url).contains("model.json: not valid JSON"))
        try FileManager.default.removeItem(at: beside)
        #expect(try ModelArchive.load(from: folder.url).classNames.count == 10)
    }

    @Test("a FIFO in place of the model file is refused at once")
    func fifo() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        #expect(mkfifo(folder.file(ModelArchive.weightsFile).path, 0o644) == 0)
        let message = loadError(folder.url)
        #expect(message.contains("not a regular file"), "\(message)")
    }
}

// MARK: - PyTorch interop

/// Loads each preset's `model.safetensors` with `safetensors.torch.load_file`, puts it into the
/// equivalent hand-written `torch.nn.Sequential` with `load_state_dict(strict=True)` (so names and
/// shapes must match exactly), runs the batch Backprop ran, and writes the logits and the
/// re-saved state dict back for the Swift side to compare.
private let interopScript = #"""
import json, sys
import numpy as np
import torch
from torch import nn
from safetensors import safe_open
from safetensors.torch import load_file, save_file

folder = sys.argv[1]

def mnist():
    return nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2),
                         nn.Conv2d(16, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2),
                         nn.Flatten(), nn.Linear(16 * 7 * 7, 10))

def cifar10():
    return nn.Sequential(nn.Conv2d(3, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2),
                         nn.Conv2d(16, 16, 5, padding=2), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16 * 16 * 16, 10))

def cifar10_improved():
    return nn.Sequential(nn.Conv2d(3, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2),
                         nn.Conv2d(16, 16, 5, padding=2), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1),
                         nn.Flatten(), nn.Linear(16 * 16 * 16, 10))

report = {"torch": torch.__version__}
for name, build, shape in [("mnist", mnist, (1, 28, 28)), ("cifar10", cifar10, (3, 32, 32)),
                           ("cifar10-improved", cifar10_improved, (3, 32, 32))]:
    path = f"{folder}/{name}/model.safetensors"
    state = load_file(path)
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata()
    model = build()
    model.load_state_dict(state, strict=True)
    model.eval()
    x = np.fromfile(f"{folder}/{name}/input.f32", dtype="<f4").reshape((-1,) + shape)
    with torch.no_grad():
        logits = model(torch.from_numpy(x.copy())).numpy().astype("<f4")
    logits.tofile(f"{folder}/{name}/torch_logits.f32")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{folder}/{name}/resaved.safetensors")
    report[name] = {"keys": sorted(state.keys()), "dtypes": sorted({str(v.dtype) for v in state.values()}),
                    "format": metadata.get("format"), "has_description": "backprop.model" in metadata}
print(json.dumps(report))
"""#

@Suite("Safetensors interop with PyTorch")
struct PyTorchInteropTests {
    @Test("PyTorch loads Backprop's models strictly and computes the same logits",
          .enabled(if: pythonWithTorch != nil, "needs a Python with torch, safetensors and numpy"))
    func pytorchComputesTheSameLogits() throws {
        let python = try #require(pythonWithTorch)
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        var models: [String: (ModelArchive, Tensor<Float>)] = [:]
        for (index, name) in Experiment.seedPresetNames.enumerated() {
            let model = try archive(name, seed: 20 + UInt64(index))
            let sub = folder.url.appendingPathComponent(name, isDirectory: true)
            try FileManager.default.createDirectory(at: sub, withIntermediateDirectories: true)
            try model.save(to: sub)
            let x = inputs(for: model.network, count: 6, seed: 30 + UInt64(index))
            try writeRawFloat32(x, to: sub.appendingPathComponent("input.f32"))
            models[name] = (model, x)
        }
        let script = folder.file("interop.py")
        try Data(interopScript.utf8).write(to: script)
        let result = try runProcess(python, [script.path, folder.url.path])
        try #require(result.exited && result.status == 0, "python failed: \(result.summary)")
        let report = try #require(try JSONSerialization.jsonObject(
            with: Data(result.stdout.split(separator: "\n").last.map { Data($0.utf8) } ?? Data())) as? [String: Any])

        for name in Experiment.seedPresetNames {
            let (model, x) = try #require(models[name])
            let sub = folder.url.appendingPathComponent(name, isDirectory: true)
            let entry = try #require(report[name] as? [String: Any])
            #expect(entry["keys"] as? [String] == model.network.namedParameters.map(\.name).sorted(), "\(name)")
            #expect(entry["dtypes"] as? [String] == ["torch.float32"], "\(name)")
            #expect(entry["format"] as? String == "pt", "\(name)")
            #expect(entry["has_description"] as? Bool == true, "\(name)")

            // Logits: both sides compute in float32 with different summation orders. Measured:
            // max |Δ| 1.8e-6 (mnist, max |logit| 1.9), 3.1e-6 (cifar10, 3.8), 5.1e-7
            // (cifar10-improved, 0.7) — far inside 1e-4, while a transposed or flipped kernel, a
            // flatten in another order or a lost bias changes logits by a sizeable fraction of
            // their spread.
            let ours = model.network.forward(x).scalars
            let theirs = try readRawFloat32(sub.appendingPathComponent("torch_logits.f32"))
            try #require(theirs.count == ours.count, "\(name): \(theirs.count) torch logits for \(ours.count)")
            let worst = zip(ours, theirs).map { abs($0 - $1) }.max() ?? .infinity
            #expect(worst <= 1e-4, "\(name): max |Δlogit| = \(worst)")
            let spread = (ours.max() ?? 0) - (ours.min() ?? 0)
            #expect(spread > 0.5, "\(name): logits spread only \(spread): too flat to tell layouts apart")

            // The arrays PyTorch loaded, saved again by PyTorch, are bit for bit ours.
            let resaved = try Safetensors.decode(Data(contentsOf: sub.appendingPathComponent("resaved.safetensors"))).tensors
            #expect(Set(resaved.keys) == Set(model.network.namedParameters.map(\.name)), "\(name)")
            for (parameterName, parameter) in model.network.namedParameters {
                let tensor = try #require(resaved[parameterName], "\(name): \(parameterName)")
                #expect(tensor.shape == parameter.value.shape, "\(name): \(parameterName)")
                #expect(tensor.scalars.map(\.bitPattern) == parameter.value.scalars.map(\.bitPattern), "\(name): \(parameterName)")
            }
        }
    }
}
