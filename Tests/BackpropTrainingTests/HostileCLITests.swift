import Backprop
import BackpropTraining
import Foundation
import Synchronization
import BackpropTestSupport
import Testing

/// A normal exit (no signal: no trap) with a non-zero status and one `Error:` line naming `fragment`.
private func expectOneLineError(_ result: ProcessResult, _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(result.exited && result.status != 0, "\(result.summary)", sourceLocation: sourceLocation)
    #expect(result.stderrLines.count == 1 && result.stderr.hasPrefix("Error: ") && result.stderr.contains(fragment),
            "\(result.summary)", sourceLocation: sourceLocation)
    #expect(!result.stderr.contains("NSCocoaErrorDomain") && !result.stderr.contains("Error Domain="), sourceLocation: sourceLocation)
}

private var dataDir: String { TestPaths.dataRoot.path }

@Suite("backprop on hostile input")
struct HostileCLITests {
    @Test("sizes from flags: over-range batch sizes, entries and seconds are refused before anything runs",
          arguments: [
            (["train", "mnist", "--batch-size=2147483648"], "batch size must be from 1 to 65536"),
            (["gradcheck", "mnist", "--batch-size=-1"], "--batch-size must be from 1 to 1024"),
            (["gradcheck", "mnist", "--batch-size=2147483648"], "--batch-size must be from 1 to 1024"),
            (["gradcheck", "mnist", "--entries=-1"], "--entries must be from 1"),
            (["bench", "--seconds=inf"], "--seconds must be a number from 0 to 3600"),
            (["bench", "--seconds=nan"], "--seconds must be a number from 0 to 3600"),
            (["bench", "--seconds=-1"], "--seconds must be a number from 0 to 3600"),
            (["bench", "--batch-sizes=2147483648"], "not a whole number from 1 to 65536"),
            (["bench", "--winograd-tile=3"], "--winograd-tile must be 2 or 4, got 3"),
          ])
    func flagSizes(arguments: [String], fragment: String) throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let run = folder.file("run")
        let result = try backprop(arguments + (arguments[0] == "train" ? ["--data-dir", dataDir, "--out", run.path] : []))
        expectOneLineError(result, fragment)
        #expect(!FileManager.default.fileExists(atPath: run.path), "the run folder was created")
    }

    @Test("sizes from a spec: 2^32 kernels, 2^20 outputs over a huge activation, JSON true, a too-large batch",
          arguments: [
            (#"{"type": "conv2d", "out_channels": 8, "kernel_size": 4294967296}"#, "\"kernel_size\" must be an integer from 1 to 1024"),
            (#"{"type": "conv2d", "out_channels": 65536, "kernel_size": 1, "padding": 1024}"#, "over 67108864 values per example"),
            (#"{"type": "conv2d", "out_channels": 64, "kernel_size": 1024, "padding": 1024}"#, "patch matrix"),
            (#"{"type": "dense", "out_features": true}"#, "\"out_features\" must be an integer"),
            (#"{"type": "conv2d", "out_channels": 4096, "kernel_size": 1, "padding": 30}, {"type": "global_avgpool2d"}"#, "--batch-sizes 128 is too large"),
          ])
    func specSizes(layer: String, fragment: String) throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let spec = try folder.write(Array(#"{"dataset": "mnist", "input": [1, 28, 28], "layers": [\#(layer), {"type": "dense", "out_features": 10}]}"#.utf8), to: "spec.json")
        let verb = fragment.hasPrefix("--batch-sizes") ? ["bench", "--no-gemm", "--presets", "", "--specs", spec.path, "--batch-sizes", "128"]
                                                      : ["summary", "--spec", spec.path]
        expectOneLineError(try backprop(verb), fragment)
    }

    @Test("two trainings started at once into one new --out: exactly one succeeds, and the folder is its alone")
    func concurrentRuns() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let run = folder.file("run")
        let arguments = ["train", "mnist", "--iterations", "3", "--train-size", "600", "--validation-size", "100",
                         "--no-test", "--data-dir", dataDir, "--out", run.path]
        let results = Mutex<[ProcessResult]>([])
        DispatchQueue.concurrentPerform(iterations: 2) { _ in
            if let result = try? backprop(arguments) { results.withLock { $0.append(result) } }
        }
        let all = results.withLock { $0 }
        #expect(all.count == 2)
        #expect(all.filter { $0.exited && $0.status == 0 }.count == 1, "\(all.map(\.summary))")
        if let loser = all.first(where: { $0.status != 0 }) {
            #expect(loser.stderr.contains("another `backprop train` is using this run folder") || loser.stderr.contains("already exists and is not empty"),
                    "\(loser.summary)")
        }
    }

    /// The race above is mostly settled by creating the folder exclusively; this one can only be
    /// settled by the lock: the folder exists and is empty, and another process holds it.
    @Test("a run folder whose lock another process holds is refused by train, and taken once it is released")
    func heldLock() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let run = folder.file("run")
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        let arguments = ["train", "mnist", "--iterations", "2", "--train-size", "600", "--validation-size", "100",
                         "--no-test", "--data-dir", dataDir, "--out", run.path]
        var holder: RunFolderLock? = try RunFolderLock(folder: run)
        expectOneLineError(try backprop(arguments), "another `backprop train` is using this run folder")
        #expect(!FileManager.default.fileExists(atPath: run.appendingPathComponent(ModelArchive.weightsFile).path))
        holder = nil
        _ = holder
        let result = try backprop(arguments)
        #expect(result.exited && result.status == 0, "\(result.summary)")
    }

    @Test("a temporary file that a killed save left does not block a new run in that folder")
    func staleTemporaryFile() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let run = folder.file("run")
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        // pid 2^22 + 1 is above Linux's largest pid (pid_max is at most 2^22): no such process.
        let stale = run.appendingPathComponent(".model.safetensors.4194305.tmp")
        try Data(count: 100).write(to: stale)
        let result = try backprop(["train", "mnist", "--iterations", "2", "--train-size", "600", "--validation-size", "100",
                                   "--no-test", "--data-dir", dataDir, "--out", run.path])
        #expect(result.exited && result.status == 0, "\(result.summary)")
        #expect(!FileManager.default.fileExists(atPath: stale.path))
        _ = try ModelArchive.load(from: run)
    }

    @Test("file-system errors are one line with the path: a FIFO model, a model file as the run folder, --out under /proc")
    func paths() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let fifoRun = folder.file("fifo")
        try FileManager.default.createDirectory(at: fifoRun, withIntermediateDirectories: true)
        #expect(mkfifo(fifoRun.appendingPathComponent("model.safetensors").path, 0o644) == 0)
        expectOneLineError(try backprop(["evaluate", fifoRun.path, "--data-dir", dataDir]), "not a regular file")

        let notAFolder = try folder.write([1, 2, 3], to: "model.safetensors")
        expectOneLineError(try backprop(["evaluate", notAFolder.path, "--data-dir", dataDir]), notAFolder.path)

        expectOneLineError(try backprop(["train", "mnist", "--iterations", "1", "--train-size", "600", "--validation-size", "100",
                                         "--data-dir", dataDir, "--out", "/proc/backprop-test/run"]), "/proc/backprop-test")
    }
}
