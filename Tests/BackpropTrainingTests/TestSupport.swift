import Backprop
import BackpropData
import BackpropTraining
import Foundation
import Testing

// MARK: - Data

/// Where the real MNIST and CIFAR-10 files are: `$BACKPROP_TEST_DATA`, else `../shared/data` next to
/// the package root (found by walking up from this file to `Package.swift`).
enum TestData {
    /// The package root: the first folder above this file that holds `Package.swift`.
    static let packageRoot: URL = {
        var folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while folder.path != "/", !FileManager.default.fileExists(atPath: folder.appendingPathComponent("Package.swift").path) {
            folder.deleteLastPathComponent()
        }
        return folder
    }()

    static let root: URL = {
        if let path = ProcessInfo.processInfo.environment["BACKPROP_TEST_DATA"], !path.isEmpty {
            return URL(fileURLWithPath: path, isDirectory: true)
        }
        return packageRoot.deletingLastPathComponent().appendingPathComponent("shared/data", isDirectory: true)
    }()

    static var mnist: URL { root.appendingPathComponent("mnist", isDirectory: true) }

    /// Training images read by the library-level training tests (the test set is always read whole).
    static let mnistTrainingLimit = 12_000

    /// MNIST, read once for every test that needs it (the first 12,000 training images, all 10,000
    /// test images). A missing data folder fails the tests that use it; it is not skipped.
    static let mnistDataset: Result<Dataset, any Error> = Result {
        try Dataset.load(.mnist, from: root, trainingLimit: mnistTrainingLimit)
    }
}

// MARK: - Files

/// A fresh folder under the system's temporary folder, removed by `remove()`.
struct TemporaryFolder {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("BackpropTrainingTests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> URL { url.appendingPathComponent(name) }

    func remove() { try? FileManager.default.removeItem(at: url) }
}

/// Every regular file under `folder` (relative path → bytes), to show that a folder was left alone.
func snapshot(of folder: URL) throws -> [String: Data] {
    var files: [String: Data] = [:]
    let base = folder.standardizedFileURL.path
    guard let enumerator = FileManager.default.enumerator(atPath: base) else { return [:] }
    while let relative = enumerator.nextObject() as? String {
        var isDirectory: ObjCBool = false
        let path = base + "/" + relative
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
            files[relative] = try Data(contentsOf: URL(fileURLWithPath: path))
        }
    }
    return files
}

/// Writes `tensor`'s scalars as raw little-endian float32 (the layout `numpy.fromfile(…, "<f4")` reads).
func writeRawFloat32(_ tensor: Tensor<Float>, to url: URL) throws {
    var data = Data(capacity: tensor.count * 4)
    for x in tensor.scalars { withUnsafeBytes(of: x.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
    try data.write(to: url)
}

/// Reads raw little-endian float32 values.
func readRawFloat32(_ url: URL) throws -> [Float] {
    let data = try Data(contentsOf: url)
    return stride(from: 0, to: data.count - 3, by: 4).map { i in
        let bits = data[data.startIndex + i ..< data.startIndex + i + 4].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        return Float(bitPattern: bits)
    }
}

// MARK: - Safetensors surgery

/// A safetensors file split into its JSON header and its data, so tests can corrupt the header.
struct SafetensorsParts {
    var header: [String: Any]
    var body: Data

    init(_ data: Data) throws {
        let length = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        header = try #require(try JSONSerialization.jsonObject(with: data.subdata(in: 8 ..< 8 + length)) as? [String: Any])
        body = data.subdata(in: 8 + length ..< data.count)
    }

    /// The file again: the header (space-padded to 8 bytes, like the reference writer) and the data.
    var data: Data {
        get throws {
            var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
            while json.count % 8 != 0 { json.append(0x20) }
            var out = Data()
            withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
            return out + json + body
        }
    }
}

// MARK: - Processes

/// How a child process ended and what it printed.
struct ProcessResult {
    var status: Int32
    /// True when the process ended normally (`exit`), false when a signal killed it (a crash).
    var exited: Bool
    var stdout: String
    var stderr: String

    var stderrLines: [String] { stderr.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) }
    var summary: String { "status \(status) (\(exited ? "exit" : "signal")); stderr: \(stderr); stdout tail: \(stdout.suffix(400))" }
}

/// Runs `executable` with `arguments`, waiting for it; output is collected through files so a
/// chatty child cannot block on a full pipe.
func runProcess(_ executable: URL, _ arguments: [String], in directory: URL? = nil,
                environment: [String: String]? = nil) throws -> ProcessResult {
    let folder = try TemporaryFolder()
    defer { folder.remove() }
    let outURL = folder.file("stdout"), errURL = folder.file("stderr")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = directory }
    if let environment { process.environment = environment }
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    try out.close()
    try err.close()
    return ProcessResult(status: process.terminationStatus, exited: process.terminationReason == .exit,
                         stdout: String(decoding: try Data(contentsOf: outURL), as: UTF8.self),
                         stderr: String(decoding: try Data(contentsOf: errURL), as: UTF8.self))
}

// MARK: - The command-line tool

/// The `backprop` executable built beside this test bundle: `$BACKPROP_CLI`, else the first
/// `backprop` file found in the test executable's folder or up to four folders above it
/// (SwiftPM on Linux puts `BackpropPackageTests.xctest` beside `backprop` in `.build/<config>`;
/// on macOS the bundle's executable sits three folders deeper).
let backpropExecutable: URL? = {
    if let path = ProcessInfo.processInfo.environment["BACKPROP_CLI"], !path.isEmpty {
        return URL(fileURLWithPath: path)
    }
    let starts = [Bundle.main.executableURL, URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0])].compactMap { $0 }
    for start in starts {
        var folder = start.resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<5 {
            let candidate = folder.appendingPathComponent("backprop")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            folder.deleteLastPathComponent()
        }
    }
    return nil
}()

/// Runs `backprop` with `arguments` from the package root (so `../shared/data` resolves as in the docs).
func backprop(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> ProcessResult {
    let executable = try #require(backpropExecutable,
                                  "the backprop executable was not found beside the test bundle; build with --build-tests or set BACKPROP_CLI",
                                  sourceLocation: sourceLocation)
    return try runProcess(executable, arguments, in: TestData.packageRoot)
}

// MARK: - Python

/// A Python interpreter that can `import safetensors, torch, numpy`: `$BACKPROP_PYTHON`, else
/// `/work/venv/bin/python`, else `python3` on the PATH; nil when none can (the interop tests are
/// then skipped, not failed).
let pythonWithTorch: URL? = {
    var candidates: [String] = []
    if let path = ProcessInfo.processInfo.environment["BACKPROP_PYTHON"], !path.isEmpty { candidates.append(path) }
    candidates.append("/work/venv/bin/python")
    for folder in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        candidates.append("\(folder)/python3")
    }
    for path in candidates where FileManager.default.isExecutableFile(atPath: path) {
        let url = URL(fileURLWithPath: path)
        if let result = try? runProcess(url, ["-c", "import safetensors, torch, numpy"]), result.exited, result.status == 0 {
            return url
        }
    }
    return nil
}()

// MARK: - Networks

/// A preset by name (the presets are part of the contract under test, so a missing one fails).
func preset(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> Experiment {
    try #require(Experiment.preset(named: name), "no preset named \(name)", sourceLocation: sourceLocation)
}

/// The experiment's network in `Scalar`, with weights drawn from `seed`.
func makeNetwork<Scalar: NetworkScalar>(_ experiment: Experiment, _: Scalar.Type = Scalar.self, seed: UInt64) throws -> Sequential<Scalar> {
    var generator = SeededGenerator(seed: seed)
    return try experiment.network.makeNetwork(Scalar.self, using: &generator)
}

/// Every parameter's scalars as bit patterns, by name (for bit-identical comparisons).
func parameterBits(_ network: Sequential<Float>) -> [String: [UInt32]] {
    Dictionary(uniqueKeysWithValues: network.namedParameters.map { ($0.name, $0.parameter.value.scalars.map(\.bitPattern)) })
}

/// The forward pass's output as bit patterns.
func logitBits(_ network: Sequential<Float>, _ inputs: Tensor<Float>) -> [UInt32] {
    network.forward(inputs).scalars.map(\.bitPattern)
}
