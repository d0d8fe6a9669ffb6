import Foundation
import Testing

// Helpers shared by the test targets: where the package and the data sets are, temporary
// folders, and running the `backprop` executable. (A plain target under Tests/, used only by
// the test targets.)

/// Fixed locations.
public enum TestPaths {
    /// The package root: the first folder above this file that holds `Package.swift`.
    public static let packageRoot: URL = {
        var folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while folder.path != "/", !FileManager.default.fileExists(atPath: folder.appendingPathComponent("Package.swift").path) {
            folder.deleteLastPathComponent()
        }
        return folder
    }()

    /// The real MNIST and CIFAR-10 files: `$BACKPROP_TEST_DATA`, else `../shared/data` beside the
    /// package root. A missing folder fails the tests that need it; they are not skipped.
    public static let dataRoot: URL = {
        if let path = ProcessInfo.processInfo.environment["BACKPROP_TEST_DATA"], !path.isEmpty {
            return URL(fileURLWithPath: path, isDirectory: true)
        }
        return packageRoot.deletingLastPathComponent().appendingPathComponent("shared/data", isDirectory: true)
    }()
}

/// A fresh folder under the system's temporary folder; call `remove()` when done.
public struct TemporaryFolder: Sendable {
    public let url: URL

    public init() throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("BackpropTests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    public func file(_ name: String) -> URL { url.appendingPathComponent(name) }

    /// Writes `bytes` to `name` inside the folder (creating subfolders) and returns its URL.
    @discardableResult
    public func write(_ bytes: [UInt8], to name: String) throws -> URL {
        let target = file(name)
        try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: target)
        return target
    }

    public func remove() { try? FileManager.default.removeItem(at: url) }
}

/// Every regular file under `folder` (relative path → bytes), to show that a folder was left alone.
public func snapshot(of folder: URL) throws -> [String: Data] {
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

/// How a child process ended and what it printed.
public struct ProcessResult: Sendable {
    public var status: Int32
    /// True when the process ended normally (`exit`), false when a signal killed it (a crash).
    public var exited: Bool
    public var stdout: String
    public var stderr: String

    public var stderrLines: [String] { stderr.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) }
    public var summary: String { "status \(status) (\(exited ? "exit" : "signal")); stderr: \(stderr); stdout tail: \(stdout.suffix(400))" }
}

/// Runs `executable` with `arguments`, waiting for it; output is collected through files so a
/// chatty child cannot block on a full pipe.
public func runProcess(_ executable: URL, _ arguments: [String], in directory: URL? = nil,
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

/// The `backprop` executable built beside the test bundle: `$BACKPROP_CLI`, else the first
/// `backprop` file found in the test executable's folder or up to four folders above it
/// (SwiftPM on Linux puts `BackpropPackageTests.xctest` beside `backprop` in `.build/<config>`;
/// on macOS the bundle's executable sits three folders deeper).
public let backpropExecutable: URL? = builtExecutable(named: "backprop", override: "BACKPROP_CLI")

/// The allocation probe (`Tests/AllocationProbe`), found like `backpropExecutable`.
public let allocationProbeExecutable: URL? = builtExecutable(named: "backprop-allocation-probe", override: "BACKPROP_ALLOCATION_PROBE")

/// `$override` if set, else the first executable called `name` in the test executable's folder
/// or up to four folders above it.
private func builtExecutable(named name: String, override: String) -> URL? {
    if let path = ProcessInfo.processInfo.environment[override], !path.isEmpty {
        return URL(fileURLWithPath: path)
    }
    let starts = [Bundle.main.executableURL, URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0])].compactMap { $0 }
    for start in starts {
        var folder = start.resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<5 {
            let candidate = folder.appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            folder.deleteLastPathComponent()
        }
    }
    return nil
}

/// Runs `backprop` with `arguments` from the package root (so `../shared/data` resolves as in the docs).
public func backprop(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> ProcessResult {
    let executable = try #require(backpropExecutable,
                                  "the backprop executable was not found beside the test bundle; build with --build-tests or set BACKPROP_CLI",
                                  sourceLocation: sourceLocation)
    return try runProcess(executable, arguments, in: TestPaths.packageRoot)
}

/// A Python that can import every module in `modules` (e.g. `["onnxruntime", "onnx", "numpy"]`):
/// `$BACKPROP_PYTHON`, else `/work/venv/bin/python`, else `~/venv-torch/bin/python`, else
/// `python3` on the PATH; nil when none can (the tests that need it are then skipped).
public func python(importing modules: [String]) -> URL? {
    var candidates: [String] = []
    if let path = ProcessInfo.processInfo.environment["BACKPROP_PYTHON"], !path.isEmpty { candidates.append(path) }
    candidates.append("/work/venv/bin/python")
    candidates.append(FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent("venv-torch/bin/python").path)
    for folder in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        candidates.append("\(folder)/python3")
    }
    for path in candidates where FileManager.default.isExecutableFile(atPath: path) {
        let url = URL(fileURLWithPath: path)
        if let result = try? runProcess(url, ["-c", "import " + modules.joined(separator: ", ")]), result.exited, result.status == 0 {
            return url
        }
    }
    return nil
}
