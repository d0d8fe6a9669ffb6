import Foundation
@testable import Backprop
@testable import BackpropData
import BackpropONNX
@testable import BackpropTraining

// One libFuzzer binary for every target: `BACKPROP_FUZZ_TARGET` names the one to run.
// Each target feeds the bytes to a reader the way a file on disk would reach it and accepts any
// thrown error: what it must never do is trap, hang, or allocate without bound (libFuzzer's
// -rss_limit_mb and -timeout catch those). Built with `-sanitize=fuzzer` by Scripts/fuzz.sh.

/// A file under /dev/shm (or the temporary folder) that each input is written to, per process.
private let scratch: URL = {
    let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
    let folder = URL(fileURLWithPath: base).appendingPathComponent("backprop-fuzz-\(getpid())", isDirectory: true)
    try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    return folder
}()

private func write(_ data: Data, _ name: String) -> URL {
    let url = scratch.appendingPathComponent(name)
    try? data.write(to: url)
    return url
}

/// The targets by name.
let targets: [String: @Sendable (Data) -> Void] = [
    // MNIST IDX files (images and labels), plain or gzipped: the header checks, the size checks.
    "idx": { data in
        let url = write(data, "t10k-images-idx3-ubyte")
        _ = try? MNISTReader.readIDX(url, magic: 0x0000_0803, itemShape: [28, 28])
        _ = try? MNISTReader.readIDX(url, magic: 0x0000_0801, itemShape: [])
    },
    // gzip (multi-member, trailing bytes, bombs): the whole content, bounded.
    "gzip": { data in
        let url = write(data, "content")
        guard let reader = try? ContentReader(url: url) else { return }
        _ = try? reader.read(1 << 24)
    },
    // tar (ustar, GNU long names, pax records), plain or gzipped: every member read to its end.
    "tar": { data in
        let url = write(data, "archive.tar")
        guard let reader = try? ContentReader(url: url) else { return }
        _ = try? forEachTarMember(in: reader) { member in
            _ = member.fileName(within: CIFAR10Reader.folderName)
            while try !member.read(1 << 16).isEmpty {}
        }
    },
    // CIFAR-10 from its archive: tar + gzip + the batch checks + batches.meta.txt.
    "cifar": { data in
        let url = write(data, "cifar-10-binary.tar.gz")
        _ = try? CIFAR10Reader.load(from: url, trainingLimit: 0)
        _ = try? CIFAR10Reader.parseClassNames([UInt8](data.prefix(1 << 16)), path: "fuzz")
    },
    // safetensors headers and data: the offset rules, from memory and from a file.
    "safetensors": { data in
        _ = try? Safetensors.decode(data)
        if let file = try? Safetensors.File(url: write(data, "weights.safetensors")) {
            for entry in file.header.entries.prefix(64) { _ = try? file.tensor(entry) }
        }
    },
    // A model file: safetensors + the description + the network built from it + the weights.
    "model": { data in
        _ = try? ModelArchive.load(from: write(data, "model.safetensors"))
    },
    // An ONNX file (untrusted protobuf): the hand-written decoder, the graph checks (cycles,
    // missing inputs, shapes), the walk into layers, the network built with the file's weights,
    // and the metadata readers.
    "onnx": { data in
        guard let model = try? ONNXModel(data: data, source: "fuzz") else { return }
        _ = try? model.recordedPreprocessing()
        _ = try? model.recordedTestTimeAugmentation()
        _ = model.recordedClassNames
        _ = model.recordedDataset
    },
    // A spec file: JSON, the layer registry, the training options and their validation, and the network builder
    // (within 2^22 parameters here, to keep each input fast; the limit itself is 2^28).
    "spec": { data in
        guard let experiment = try? Experiment(specData: data, source: "fuzz", dataset: .mnist) else { return }
        try? experiment.options.validate(imageHeight: 28, imageWidth: 28)
        var generator = SeededGenerator(seed: 1)
        _ = try? experiment.network.makeNetwork(Float.self, parameterLimit: 1 << 22, using: &generator)
    },
]

private let selected: @Sendable (Data) -> Void = {
    let name = ProcessInfo.processInfo.environment["BACKPROP_FUZZ_TARGET"] ?? ""
    guard let target = targets[name] else {
        FileHandle.standardError.write(Data("set BACKPROP_FUZZ_TARGET to one of: \(targets.keys.sorted().joined(separator: ", "))\n".utf8))
        exit(2)
    }
    return target
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let data = start.map { Data(bytes: $0, count: count) } ?? Data()
    selected(data)
    return 0
}

// SwiftPM links an executable built with -enable-testing (needed for `@testable import`) with
// `main` renamed to `BackpropFuzz_main`; so that is defined here and hands over to libFuzzer's
// driver (what libFuzzer's own `main` does).
@_silgen_name("LLVMFuzzerRunDriver")
private func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

@_cdecl("BackpropFuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc, arguments = argv
    return runFuzzerDriver(&count, &arguments) { start, size in fuzzOneInput(start, size) }
}
