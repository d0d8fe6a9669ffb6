import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// What a download is doing, reported to `Downloader.download`'s progress callback.
public enum DownloadEvent: Sendable, Equatable {
    /// `file` is already in place with the right SHA-256, so it is not fetched again.
    case alreadyPresent(file: String)
    /// Bytes of `file` have arrived: `receivedBytes` so far, of `expectedBytes` when the server said.
    /// Sent about once per MiB and once at the end.
    case receiving(file: String, receivedBytes: Int64, expectedBytes: Int64?)
    /// `file` matched its SHA-256 and is now in place.
    case verified(file: String)
}

/// Fetches the official MNIST, Fashion-MNIST and CIFAR-10 files over HTTP(S) into a data folder,
/// checking each file's SHA-256 before it is moved into place.
///
/// Files land in `<dataDirectory>/mnist/` and `<dataDirectory>/fashion-mnist/` (the four `.gz` IDX files) and
/// `<dataDirectory>/cifar10/cifar-10-batches-bin/` (the six `.bin` batches and `batches.meta.txt`),
/// where `Dataset.load(_:from:)` finds them. Every file is written under a temporary name in its
/// final folder and renamed only once verified, so an interrupted or corrupt download never leaves a
/// file at a final path. Files already in place with the right hash are not fetched again.
public struct Downloader: Sendable {
    /// Where MNIST is fetched from by default: torchvision's mirror of the original files.
    public static let officialMNISTBaseURL = URL(string: "https://ossci-datasets.s3.amazonaws.com/mnist/")!
    /// Where Fashion-MNIST is fetched from by default: Zalando's own bucket (plain HTTP only; the
    /// SHA-256 check below is what vouches for the files).
    public static let officialFashionMNISTBaseURL = URL(string: "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/")!
    /// Where CIFAR-10 (binary version) is fetched from by default.
    public static let officialCIFAR10URL = URL(string: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz")!

    /// The data folder; data sets go into its `mnist/` and `cifar10/` subfolders.
    public var dataDirectory: URL
    /// A base URL that replaces both official locations, or `nil` for the official ones. The official
    /// file names are appended to it: `<mirror>/train-images-idx3-ubyte.gz`, `<mirror>/cifar-10-binary.tar.gz`.
    public var mirror: URL?
    /// Seconds a download may go with less than `minimumProgress` bytes arriving before it fails:
    /// a stalled server, or one that trickles data too slowly to ever finish.
    public var idleTimeout: TimeInterval
    /// The bytes that must arrive within each `idleTimeout` (1 KiB).
    public static let minimumProgress: Int64 = 1024
    /// Checked about five times a second while a download runs; when it returns true the download
    /// stops, its temporary file is removed, and `download` throws (`backprop download` sets it
    /// from SIGINT and SIGTERM).
    public var isCancelled: @Sendable () -> Bool

    /// The most bytes fetched for one file: a server that sends more (an endless stream) is cut
    /// off. The official files are 9.9 MB (MNIST's largest) and 170 MB (CIFAR-10's tarball).
    static let maximumMNISTFileBytes: Int64 = 1 << 26
    static let maximumCIFAR10ArchiveBytes: Int64 = 1 << 28

    /// Creates a downloader into `dataDirectory`, from the official locations or from `mirror`.
    public init(dataDirectory: URL, mirror: URL? = nil, idleTimeout: TimeInterval = 60,
                isCancelled: @escaping @Sendable () -> Bool = { false }) {
        self.dataDirectory = dataDirectory
        self.mirror = mirror
        self.idleTimeout = idleTimeout
        self.isCancelled = isCancelled
    }

    /// The SHA-256 of each official MNIST file, as served (gzip-compressed).
    static let mnistFiles: KeyValuePairs = [
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ]

    /// The SHA-256 of each official Fashion-MNIST file, as served (gzip-compressed).
    ///
    /// Not computed here (no copy was at hand offline): two public libraries that check the
    /// downloads list these same values (Britefury's batchup `fashion_mnist.py` and a data-set
    /// fetching script whose MNIST values match `mnistFiles` above). zalandoresearch/fashion-mnist
    /// publishes MD5s: 8d4fb7e6c68d591d4c3dfef9ec88bf0d, 25c81989df183df01b3e8a0aad5dffbe,
    /// bef4ecab320f06d8554ea6380940ec79 and bb300cfdad3c16e7a12a480ee83cd310 in this order.
    static let fashionMNISTFiles: KeyValuePairs = [
        "train-images-idx3-ubyte.gz": "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
        "train-labels-idx1-ubyte.gz": "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
        "t10k-images-idx3-ubyte.gz": "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
        "t10k-labels-idx1-ubyte.gz": "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
    ]

    /// The SHA-256 of each CIFAR-10 batch as stored, uncompressed, inside `cifar-10-binary.tar.gz`.
    ///
    /// The members are checked rather than the tarball because no SHA-256 of the tarball was at hand
    /// offline when this was written (only its MD5, c32a1d4ab5d03f1284b67883e8d87530), and because they
    /// are what ends up on disk, so a mirror may repack the tarball. tensorflow/datasets lists the
    /// tarball (170052171 bytes) as SHA-256 c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd;
    /// that value is recorded here but not checked. `batches.meta.txt` (class names only) is not checked.
    static let cifar10Batches: KeyValuePairs = [
        "data_batch_1.bin": "cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5",
        "data_batch_2.bin": "a591ca11fa1708a91ee40f54b3da4784ccd871ecf2137de63f51ada8b3fa57ed",
        "data_batch_3.bin": "bbe8596564c0f86427f876058170b84dac6670ddf06d79402899d93ceea26f67",
        "data_batch_4.bin": "014e562d6e23c72197cc727519169a60359f5eccd8945ad5a09d710285ff4e48",
        "data_batch_5.bin": "755304fc0b379caeae8c14f0dac912fbc7d6cd469eb67a1029a08a39453a9add",
        "test_batch.bin": "8e2eb146ae340b09e24670f29cabc6326dba54da8789dab6768acf480273f65b",
    ]

    /// Downloads `kind` into its subfolder of `dataDirectory` and returns that subfolder.
    ///
    /// - Parameters:
    ///   - kind: the data set to fetch.
    ///   - progress: told about each file; called on a background thread.
    /// - Throws: `DataError` when a download fails, a file's SHA-256 does not match (nothing is
    ///   saved for that file), or a file cannot be written.
    @discardableResult
    public func download(_ kind: DatasetKind,
                         progress: @escaping @Sendable (DownloadEvent) -> Void = { _ in }) throws -> URL {
        let folder = dataDirectory.appendingPathComponent(kind.rawValue, isDirectory: true)
        switch kind {
        case .mnist:
            try downloadIDX(Self.mnistFiles, from: Self.officialMNISTBaseURL, into: folder, progress: progress)
        case .fashionMNIST:
            try downloadIDX(Self.fashionMNISTFiles, from: Self.officialFashionMNISTBaseURL, into: folder, progress: progress)
        case .cifar10: try downloadCIFAR10(into: folder, progress: progress)
        case .imageFolder: throw DataError(path: nil, reason: "an image folder is your own; there is nothing to download")
        }
        return folder
    }

    /// Fetches the four `.gz` IDX files of MNIST or Fashion-MNIST.
    private func downloadIDX(_ files: KeyValuePairs<String, String>, from base: URL, into folder: URL,
                             progress: @escaping @Sendable (DownloadEvent) -> Void) throws {
        try makeFolder(folder)
        for (name, sha256) in files {
            let target = folder.appendingPathComponent(name)
            if isFile(target), (try? sha256Hex(ofFileAt: target)) == sha256 {
                progress(.alreadyPresent(file: name))
                continue
            }
            let source = remoteURL(name, official: base.appendingPathComponent(name))
            let temporary = temporaryURL(for: target)
            defer { try? FileManager.default.removeItem(at: temporary) }
            let digest = try fetch(source, to: temporary, fileName: name, hashing: true, limit: Self.maximumMNISTFileBytes, progress: progress)
            try check(digest, expected: sha256, target: target, source: source.absoluteString)
            try moveIntoPlace(temporary, target)
            progress(.verified(file: name))
        }
    }

    private func downloadCIFAR10(into folder: URL, progress: @escaping @Sendable (DownloadEvent) -> Void) throws {
        let batchFolder = folder.appendingPathComponent(CIFAR10Reader.folderName, isDirectory: true)
        try makeFolder(batchFolder)
        let inPlace = Self.cifar10Batches.allSatisfy { name, sha256 in
            let target = batchFolder.appendingPathComponent(name)
            return isFile(target) && (try? sha256Hex(ofFileAt: target)) == sha256
        }
        if inPlace {
            for (name, _) in Self.cifar10Batches { progress(.alreadyPresent(file: name)) }
            return
        }

        let archiveName = CIFAR10Reader.archiveName
        let source = remoteURL(archiveName, official: Self.officialCIFAR10URL)
        let archive = temporaryURL(for: folder.appendingPathComponent(archiveName))
        defer { try? FileManager.default.removeItem(at: archive) }
        _ = try fetch(source, to: archive, fileName: archiveName, hashing: false, limit: Self.maximumCIFAR10ArchiveBytes,
                      progress: progress)  // members are checked below

        // Extract the batches and batches.meta.txt, each to a temporary file checked before any is moved.
        let wanted = Set(Self.cifar10Batches.map(\.key) + [CIFAR10Reader.metaName])
        var extracted: [String: URL] = [:]
        defer { for url in extracted.values { try? FileManager.default.removeItem(at: url) } }
        do {
            try forEachTarMember(in: ContentReader(url: archive)) { member in
                guard let fileName = member.fileName(within: CIFAR10Reader.folderName),
                      wanted.contains(fileName), extracted[fileName] == nil else { return }
                let target = batchFolder.appendingPathComponent(fileName)
                let temporary = temporaryURL(for: target)
                extracted[fileName] = temporary
                let digest = try copy(member, to: temporary)
                if let sha256 = Self.cifar10Batches.first(where: { $0.key == fileName })?.value {
                    try check(digest, expected: sha256, target: target, source: "\(source.absoluteString) member \(member.name)")
                }
            }
        } catch let error as DataError where error.path == archive.path {
            throw DataError(path: source.absoluteString, reason: error.reason)  // name the URL, not the temporary file
        }
        if let missing = Self.cifar10Batches.map(\.key).first(where: { extracted[$0] == nil }) {
            throw DataError(path: source.absoluteString, reason: "the archive has no \(CIFAR10Reader.folderName)/\(missing)")
        }
        for (name, temporary) in extracted.sorted(by: { $0.key < $1.key }) {
            try moveIntoPlace(temporary, batchFolder.appendingPathComponent(name))
            if name != CIFAR10Reader.metaName { progress(.verified(file: name)) }
        }
    }

    /// `official`, or the file `name` under `mirror` when one is set.
    private func remoteURL(_ name: String, official: URL) -> URL {
        guard let mirror else { return official }
        let base = mirror.absoluteString.hasSuffix("/") ? mirror.absoluteString : mirror.absoluteString + "/"
        return URL(string: base + name) ?? mirror.appendingPathComponent(name)
    }

    /// A hidden name next to `target`, so the final rename stays within one file system.
    private func temporaryURL(for target: URL) -> URL {
        target.deletingLastPathComponent()
            .appendingPathComponent(".\(target.lastPathComponent).partial-\(UUID().uuidString)")
    }

    private func makeFolder(_ folder: URL) throws {
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        } catch {
            throw DataError(folder, "cannot create the folder: \(ContentReader.describe(error))")
        }
    }

    /// Throws unless `digest`, the SHA-256 of what came from `source` for `target`, is `expected`.
    private func check(_ digest: String?, expected: String, target: URL, source: String) throws {
        guard digest != expected else { return }
        throw DataError(target, "SHA-256 mismatch, so nothing was saved: expected \(expected), got \(digest ?? "none") "
                        + "for \(source) (a corrupt download, or not the official file)")
    }

    private func moveIntoPlace(_ temporary: URL, _ target: URL) throws {
        // rename(2) replaces any old file at `target` in one step.
        guard rename(temporary.path, target.path) == 0 else {
            throw DataError(target, "cannot move the download into place: \(String(cString: strerror(errno)))")
        }
    }

    /// Writes the rest of `member` to a new file at `destination` and returns its SHA-256 in hex.
    private func copy(_ member: TarMember, to destination: URL) throws -> String {
        let output = try createFile(destination)
        defer { try? output.close() }
        var hasher = SHA256()
        while true {
            let chunk = try member.read(1 << 20)
            if chunk.isEmpty { break }
            hasher.update(chunk)
            do { try output.write(contentsOf: chunk) } catch {
                throw DataError(destination, "cannot write: \(ContentReader.describe(error))")
            }
        }
        return SHA256.hexString(hasher.finalize())
    }

    /// Downloads `url` into a new file at `destination`; returns the SHA-256 in hex of what arrived
    /// when `hashing`, else `nil`.
    /// - Parameter limit: the most bytes accepted; a larger response fails.
    private func fetch(_ url: URL, to destination: URL, fileName: String, hashing: Bool, limit: Int64,
                       progress: @escaping @Sendable (DownloadEvent) -> Void) throws -> String? {
        let output = try createFile(destination)
        defer { try? output.close() }
        let delegate = DownloadDelegate(url: url, fileName: fileName, output: output, limit: limit, progress: progress)
        if hashing { delegate.hasher = SHA256() }
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = idleTimeout
        // The delegate's callbacks and the checks below share one serial queue.
        let queue = OperationQueue()
        queue.maxConcurrentOperationCount = 1
        queue.underlyingQueue = delegate.queue
        let session = URLSession(configuration: configuration, delegate: delegate, delegateQueue: queue)
        let task = session.dataTask(with: url)
        task.resume()
        var windowStart = Date(), bytesAtWindowStart: Int64 = 0
        while delegate.finished.wait(timeout: .now() + 0.2) == .timedOut {
            let cancelled = isCancelled()
            delegate.queue.sync {
                guard delegate.failure == nil else { return }
                if cancelled {
                    delegate.fail("the download was interrupted; its partial file is removed", task)
                } else if Date().timeIntervalSince(windowStart) >= idleTimeout {
                    if delegate.receivedBytes - bytesAtWindowStart < Self.minimumProgress {
                        delegate.fail(String(format: "download stalled: less than %lld bytes in %.0f s", Self.minimumProgress, idleTimeout), task)
                    }
                    windowStart = Date()
                    bytesAtWindowStart = delegate.receivedBytes
                }
            }
        }
        session.finishTasksAndInvalidate()
        if let failure = delegate.failure { throw failure }
        return delegate.hasher.map { SHA256.hexString($0.finalize()) }
    }

    private func createFile(_ url: URL) throws -> FileHandle {
        guard FileManager.default.createFile(atPath: url.path, contents: nil),
              let handle = try? FileHandle(forWritingTo: url) else {
            throw DataError(url, "cannot create the file")
        }
        return handle
    }
}

/// The SHA-256 in hex of the file at `url`, read in 1 MiB pieces.
func sha256Hex(ofFileAt url: URL) throws -> String {
    let handle = try FileHandle(forReadingFrom: url)
    defer { try? handle.close() }
    var hasher = SHA256()
    while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(chunk) }
    return SHA256.hexString(hasher.finalize())
}

/// Receives one download: writes and hashes the bytes as they arrive, then signals `finished`.
///
/// `@unchecked Sendable`: its mutable state is touched only on the session's serial delegate queue,
/// and read by the waiting thread only after `finished` is signalled.
private final class DownloadDelegate: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    let url: URL
    let fileName: String
    let output: FileHandle
    let progress: @Sendable (DownloadEvent) -> Void
    let finished = DispatchSemaphore(value: 0)
    /// The serial queue of every callback and of `fetch`'s checks.
    let queue = DispatchQueue(label: "backprop.download")
    /// The most bytes accepted.
    let limit: Int64
    var hasher: SHA256?
    var receivedBytes: Int64 = 0
    var reportedBytes: Int64 = -1
    var failure: DataError?

    init(url: URL, fileName: String, output: FileHandle, limit: Int64, progress: @escaping @Sendable (DownloadEvent) -> Void) {
        self.url = url
        self.fileName = fileName
        self.output = output
        self.limit = limit
        self.progress = progress
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        guard failure == nil else { return }
        if let problem = statusProblem(dataTask.response) {
            fail(problem, dataTask)
            return
        }
        guard receivedBytes + Int64(data.count) <= limit, (expectedBytes(dataTask.response) ?? 0) <= limit else {
            fail("the server sends more than \(limit) bytes, more than the official file has; stopped", dataTask)
            return
        }
        do { try output.write(contentsOf: data) } catch {
            fail("cannot write the download: \(ContentReader.describe(error))", dataTask)
            return
        }
        hasher?.update(data)
        receivedBytes += Int64(data.count)
        let expected = expectedBytes(dataTask.response)
        if receivedBytes - reportedBytes >= 1 << 20 || receivedBytes == expected {
            reportedBytes = receivedBytes
            progress(.receiving(file: fileName, receivedBytes: receivedBytes, expectedBytes: expected))
        }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        if failure == nil {
            if let error {
                failure = DataError(path: url.absoluteString, reason: "download failed: \(ContentReader.describe(error))")
            } else if let problem = statusProblem(task.response) {
                failure = DataError(path: url.absoluteString, reason: problem)
            } else if let expected = expectedBytes(task.response), expected != receivedBytes {
                failure = DataError(path: url.absoluteString,
                                    reason: "download ended early: \(receivedBytes) of \(expected) bytes")
            }
        }
        finished.signal()
    }

    func fail(_ reason: String, _ task: URLSessionTask) {
        failure = DataError(path: url.absoluteString, reason: reason)
        task.cancel()
    }

    private func statusProblem(_ response: URLResponse?) -> String? {
        guard let http = response as? HTTPURLResponse, !(200 ..< 300).contains(http.statusCode) else { return nil }
        return "the server answered HTTP \(http.statusCode)"
    }

    private func expectedBytes(_ response: URLResponse?) -> Int64? {
        guard let length = response?.expectedContentLength, length >= 0 else { return nil }
        return length
    }
}
