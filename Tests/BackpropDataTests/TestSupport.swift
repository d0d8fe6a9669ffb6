import Foundation
import Testing
import BackpropTestSupport
@testable import BackpropData

/// Where the real MNIST and CIFAR-10 files are: `$BACKPROP_TEST_DATA`, else `../shared/data` next to
/// the package root (found by walking up from this file to `Package.swift`).
enum TestData {
    static var root: URL { TestPaths.dataRoot }
    static var mnist: URL { root.appendingPathComponent("mnist", isDirectory: true) }
    static var cifarBatches: URL { root.appendingPathComponent("cifar10/cifar-10-batches-bin", isDirectory: true) }

    /// The full, decompressed content of a (possibly gzipped) file.
    static func content(of url: URL) throws -> [UInt8] {
        try ContentReader(url: url).read(Int.max)
    }
}

/// Runs `script` with `/bin/sh -c` and returns its standard output; throws when it exits non-zero.
@discardableResult
func shell(_ script: String) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", script]
    let output = Pipe()
    process.standardOutput = output
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw DataError(path: nil, reason: "shell command failed (\(process.terminationStatus)): \(script)")
    }
    return String(decoding: data, as: UTF8.self)
}

/// Whether `python3` can be run (the download tests serve files with its `http.server`).
let hasPython: Bool = (try? shell("command -v python3 >/dev/null")) != nil

/// Runs `body`, expecting it to throw a `DataError`, and returns the error's one-line description
/// (or records an issue and returns "" when it does not throw one).
func dataErrorMessage(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> String {
    do {
        try body()
        Issue.record("expected a DataError, but nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as DataError {
        #expect(!error.description.contains("\n"), "error is not one line: \(error)", sourceLocation: sourceLocation)
        return error.description
    } catch {
        Issue.record("expected a DataError, got \(error)", sourceLocation: sourceLocation)
    }
    return ""
}
