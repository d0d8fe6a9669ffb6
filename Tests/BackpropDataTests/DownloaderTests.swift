import Foundation
import BackpropTestSupport
import Testing
@testable import BackpropData

/// Python's `http.server` serving one folder on 127.0.0.1 (loopback only) on a free port that the
/// server picks itself (port 0) and writes to a file, so no two tests race for a port.
///
/// The server exits when its standard input closes, so it cannot outlive the test process, and it
/// unblocks SIGTERM, which it may inherit blocked from the test runner's threads.
final class LocalHTTPServer {
    private(set) var port = 0
    private let process = Process()
    private let input = Pipe()
    private var stopped = false

    /// The server's base URL, ending in `/`.
    var url: URL { URL(string: "http://127.0.0.1:\(port)/")! }

    /// A server whose every GET answers 200 with an endless body: `chunk` bytes every
    /// `interval` seconds (a hostile or broken mirror).
    convenience init(streamingEndlessly chunk: Int, every interval: Double, folder: URL) throws {
        try self.init(serving: folder, handler: """
            class Endless(http.server.BaseHTTPRequestHandler):
                def do_GET(self):
                    self.send_response(200); self.end_headers()
                    try:
                        while True:
                            self.wfile.write(b"x" * \(chunk)); self.wfile.flush(); time.sleep(\(interval))
                    except OSError:
                        pass
            handler = Endless
            """)
    }

    init(serving folder: URL, handler: String = "handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])") throws {
        let portFile = folder.deletingLastPathComponent().appendingPathComponent("port-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: portFile) }
        let script = """
            import functools, http.server, os, signal, sys, threading, time
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])
            threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
            \(handler)
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
            with open(sys.argv[2] + ".tmp", "w") as f: f.write(str(server.server_address[1]))
            os.rename(sys.argv[2] + ".tmp", sys.argv[2])
            server.serve_forever()
            """
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, folder.path, portFile.path]
        process.standardInput = input
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice  // the request log
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        while !isFile(portFile), process.isRunning, Date() < deadline { usleep(20_000) }
        guard let text = try? String(contentsOf: portFile, encoding: .utf8), let port = Int(text) else {
            stop()
            throw DataError(path: folder.path, reason: "the python3 HTTP server did not start")
        }
        self.port = port
    }

    /// Stops the server: SIGTERM, then SIGKILL if it is still running after 5 seconds.
    func stop() {
        guard !stopped else { return }
        stopped = true
        try? input.fileHandleForWriting.close()
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning, Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { stop() }
}

/// Collects download events from the downloader's background thread.
final class EventLog: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [DownloadEvent] = []
    var events: [DownloadEvent] { lock.withLock { stored } }
    func record(_ event: DownloadEvent) { lock.withLock { stored.append(event) } }
}

/// The names of the files in `folder` that a download left behind under a temporary name.
private func leftovers(in folder: URL) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).filter { $0.contains(".partial-") }
}

@Suite("Downloader", .enabled(if: hasPython, "serves files with python3 -m http.server"))
struct DownloaderTests {
    @Test("MNIST from a local mirror: verified, loadable; a second run fetches nothing")
    func mnist() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let served = folder.file("served"), data = folder.file("data")
        try FileManager.default.createDirectory(at: served, withIntermediateDirectories: true)
        for (name, _) in Downloader.mnistFiles {
            try FileManager.default.createSymbolicLink(
                at: served.appendingPathComponent(name), withDestinationURL: TestData.mnist.appendingPathComponent(name))
        }
        let server = try LocalHTTPServer(serving: served)
        defer { server.stop() }

        let log = EventLog()
        let downloader = Downloader(dataDirectory: data, mirror: server.url)
        let destination = try downloader.download(.mnist, progress: log.record)
        #expect(destination.standardizedFileURL == data.appendingPathComponent("mnist").standardizedFileURL)
        #expect(log.events.filter { if case .verified = $0 { true } else { false } }.count == 4)
        #expect(log.events.contains(.receiving(file: "train-images-idx3-ubyte.gz", receivedBytes: 9_912_422,
                                               expectedBytes: 9_912_422)))
        #expect(leftovers(in: destination).isEmpty)

        let downloaded = try Dataset.load(.mnist, from: data)
        let original = try Dataset.load(.mnist, from: TestData.mnist)
        #expect(downloaded.train == original.train && downloaded.test == original.test)

        server.stop()  // nothing is fetched a second time
        let again = EventLog()
        try downloader.download(.mnist, progress: again.record)
        #expect(again.events == Downloader.mnistFiles.map { .alreadyPresent(file: $0.key) })
    }

    @Test("a corrupt file fails its SHA-256 and leaves nothing at its final path; a missing one is HTTP 404")
    func corruptAndMissingFiles() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let served = folder.file("served"), data = folder.file("data")
        for (name, _) in Downloader.mnistFiles {
            var bytes = try [UInt8](Data(contentsOf: TestData.mnist.appendingPathComponent(name)))
            if name == "t10k-labels-idx1-ubyte.gz" { bytes[100] ^= 1 }
            try folder.write(bytes, to: "served/\(name)")
        }
        let server = try LocalHTTPServer(serving: served)
        defer { server.stop() }
        let mnistFolder = data.appendingPathComponent("mnist")
        let downloader = Downloader(dataDirectory: data, mirror: server.url)

        var message = dataErrorMessage { try downloader.download(.mnist) }
        #expect(message.contains("t10k-labels-idx1-ubyte.gz: SHA-256 mismatch, so nothing was saved: expected f7ae60f9"),
                "\(message)")
        #expect(message.contains(server.url.absoluteString + "t10k-labels-idx1-ubyte.gz"))
        #expect(!FileManager.default.fileExists(atPath: mnistFolder.appendingPathComponent("t10k-labels-idx1-ubyte.gz").path))
        #expect(isFile(mnistFolder.appendingPathComponent("t10k-images-idx3-ubyte.gz")))  // verified before the bad one
        #expect(leftovers(in: mnistFolder).isEmpty)

        try FileManager.default.removeItem(at: served.appendingPathComponent("t10k-labels-idx1-ubyte.gz"))
        message = dataErrorMessage { try downloader.download(.mnist) }
        #expect(message.contains("t10k-labels-idx1-ubyte.gz: the server answered HTTP 404"), "\(message)")
        #expect(leftovers(in: mnistFolder).isEmpty)

        server.stop()
        message = dataErrorMessage { try downloader.download(.mnist) }
        #expect(message.contains("t10k-labels-idx1-ubyte.gz: download failed"), "\(message)")
    }

    /// The MNIST files served under Fashion-MNIST's (identical) names fail Fashion-MNIST's own
    /// checksums, and nothing lands in `fashion-mnist/`.
    @Test("Fashion-MNIST is checked against its own SHA-256 values and goes to fashion-mnist/")
    func fashionMNIST() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let served = folder.file("served"), data = folder.file("data")
        try FileManager.default.createDirectory(at: served, withIntermediateDirectories: true)
        for (name, _) in Downloader.fashionMNISTFiles {
            try FileManager.default.createSymbolicLink(
                at: served.appendingPathComponent(name), withDestinationURL: TestData.mnist.appendingPathComponent(name))
        }
        let server = try LocalHTTPServer(serving: served)
        defer { server.stop() }
        let message = dataErrorMessage { try Downloader(dataDirectory: data, mirror: server.url).download(.fashionMNIST) }
        #expect(message.contains("fashion-mnist/train-images-idx3-ubyte.gz: SHA-256 mismatch, so nothing was saved: expected 08dc20ab"), "\(message)")
        #expect(message.contains("got 440fcabf"), "\(message)")  // MNIST's own hash
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: data.appendingPathComponent("fashion-mnist").path)) ?? []).isEmpty)
        #expect(Set(Downloader.fashionMNISTFiles.map(\.key)) == Set(Downloader.mnistFiles.map(\.key)))
    }

    @Test("CIFAR-10 from a local mirror serving a tarball built with tar and gzip")
    func cifar10() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let served = folder.file("served"), data = folder.file("data"), source = folder.file("source")
        // The official layout: cifar-10-batches-bin/*.bin (uncompressed) in a gzipped tar.
        try shell("""
            set -e
            mkdir -p '\(source.path)/cifar-10-batches-bin' '\(served.path)'
            for name in data_batch_1 data_batch_2 data_batch_3 data_batch_4 data_batch_5 test_batch; do
                gzip -dc '\(TestData.cifarBatches.path)'/$name.bin.gz > '\(source.path)'/cifar-10-batches-bin/$name.bin
            done
            cp '\(TestData.cifarBatches.path)/batches.meta.txt' '\(source.path)/cifar-10-batches-bin/'
            tar -C '\(source.path)' -cf - cifar-10-batches-bin | gzip -1 > '\(served.path)/cifar-10-binary.tar.gz'
            rm -r '\(source.path)'
            """)
        let server = try LocalHTTPServer(serving: served)
        defer { server.stop() }

        let log = EventLog()
        let destination = try Downloader(dataDirectory: data, mirror: server.url).download(.cifar10, progress: log.record)
        server.stop()
        let batchFolder = destination.appendingPathComponent("cifar-10-batches-bin")
        #expect(try FileManager.default.contentsOfDirectory(atPath: destination.path) == ["cifar-10-batches-bin"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: batchFolder.path).sorted()
            == ["batches.meta.txt"] + Downloader.cifar10Batches.map(\.key).sorted())
        #expect(log.events.filter { if case .verified = $0 { true } else { false } }.count == 6)

        let downloaded = try Dataset.load(.cifar10, from: data)
        #expect(downloaded.train.count == 50000 && downloaded.test.count == 10000)
        #expect(downloaded.train.labels.prefix(10) == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3])
        let original = try Dataset.load(.cifar10, from: TestData.root, trainingLimit: 10000)
        #expect(downloaded.test == original.test)
        #expect(downloaded.train.prefix(10000) == original.train)

        // The GNU tar + gzip archive itself loads too.
        let fromArchive = try Dataset.load(.cifar10, from: served, trainingLimit: 10000)
        #expect(fromArchive.train == original.train && fromArchive.test == original.test)
        #expect(fromArchive.classNames == CIFAR10Reader.standardClassNames)
    }

    @Test("a CIFAR-10 archive with a wrong batch fails its SHA-256 and leaves nothing behind")
    func cifar10CorruptMember() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let junk = [UInt8](repeating: 3, count: 3073 * 10)
        try folder.write(tarArchive([("cifar-10-batches-bin/data_batch_1.bin", junk)]), to: "served/cifar-10-binary.tar.gz")
        let server = try LocalHTTPServer(serving: folder.file("served"))
        defer { server.stop() }
        let data = folder.file("data")

        let message = dataErrorMessage { try Downloader(dataDirectory: data, mirror: server.url).download(.cifar10) }
        #expect(message.contains("cifar-10-batches-bin/data_batch_1.bin: SHA-256 mismatch, so nothing was saved"),
                "\(message)")
        #expect(message.contains("cifar-10-binary.tar.gz member cifar-10-batches-bin/data_batch_1.bin"))
        let cifarFolder = data.appendingPathComponent("cifar10")
        #expect(try FileManager.default.contentsOfDirectory(atPath: cifarFolder.path) == ["cifar-10-batches-bin"])
        #expect(try FileManager.default.contentsOfDirectory(
            atPath: cifarFolder.appendingPathComponent("cifar-10-batches-bin").path).isEmpty)
    }

    @Test("an endless mirror: cut off at the size cap when fast, as stalled when it trickles, and on cancel; nothing left behind")
    func endlessMirror() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let data = folder.file("data")
        let mnistFolder = data.appendingPathComponent("mnist")

        let fast = try LocalHTTPServer(streamingEndlessly: 1 << 16, every: 0, folder: folder.url)
        var message = dataErrorMessage { try Downloader(dataDirectory: data, mirror: fast.url).download(.mnist) }
        fast.stop()
        #expect(message.contains("the server sends more than 67108864 bytes"), "\(message)")
        #expect(leftovers(in: mnistFolder).isEmpty)

        let slow = try LocalHTTPServer(streamingEndlessly: 100, every: 0.25, folder: folder.url)
        defer { slow.stop() }
        let started = Date()
        message = dataErrorMessage { try Downloader(dataDirectory: data, mirror: slow.url, idleTimeout: 1).download(.mnist) }
        #expect(message.contains("download stalled: less than 1024 bytes in 1 s"), "\(message)")
        #expect(Date().timeIntervalSince(started) < 20)
        #expect(leftovers(in: mnistFolder).isEmpty)

        let cancelAt = Date().addingTimeInterval(0.5)
        message = dataErrorMessage {
            try Downloader(dataDirectory: data, mirror: slow.url, isCancelled: { Date() > cancelAt }).download(.mnist)
        }
        #expect(message.contains("the download was interrupted"), "\(message)")
        #expect(leftovers(in: mnistFolder).isEmpty)
    }

    @Test("the official locations, and a mirror without a trailing slash")
    func urls() throws {
        #expect(Downloader.officialMNISTBaseURL.absoluteString == "https://ossci-datasets.s3.amazonaws.com/mnist/")
        #expect(Downloader.officialCIFAR10URL.absoluteString == "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz")
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        try FileManager.default.createDirectory(at: folder.file("served/sub"), withIntermediateDirectories: true)
        let server = try LocalHTTPServer(serving: folder.file("served"))
        defer { server.stop() }
        let mirror = URL(string: server.url.absoluteString + "sub")!  // no trailing slash
        let message = dataErrorMessage { try Downloader(dataDirectory: folder.file("data"), mirror: mirror).download(.mnist) }
        #expect(message.hasPrefix(server.url.absoluteString + "sub/train-images-idx3-ubyte.gz: the server answered HTTP 404"),
                "\(message)")
    }
}
