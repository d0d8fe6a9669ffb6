import Foundation

/// Reads the binary version of CIFAR-10.
///
/// Each batch file holds 10000 records of 3073 bytes: the label (0-9), then the 32 x 32 image as a
/// 1024-byte R plane, a G plane and a B plane, each row-major. That is already CHW, so records are
/// copied as they are. Training batches are `data_batch_1.bin` ... `data_batch_5.bin`, the test batch
/// `test_batch.bin`; `batches.meta.txt` lists the 10 class names, one per line.
enum CIFAR10Reader {
    static let standardClassNames = [
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
    ]
    static let side = 32
    static let imagesPerBatch = 10000
    static let recordSize = 1 + 3 * 32 * 32
    static let batchFileSize = imagesPerBatch * recordSize  // 30730000
    static let folderName = "cifar-10-batches-bin"
    static let archiveName = "cifar-10-binary.tar.gz"
    static let trainingBatchNames = (1 ... 5).map { "data_batch_\($0).bin" }
    static let testBatchName = "test_batch.bin"
    static let metaName = "batches.meta.txt"

    /// Where the batches are: a folder of batch files, or the official tarball.
    enum Source {
        case folder(URL)
        case archive(URL)
    }

    static func load(from directory: URL, trainingLimit: Int?) throws -> Dataset {
        let trainingCount = min(trainingLimit ?? Int.max, 5 * imagesPerBatch)
        let batchesNeeded = (trainingCount + imagesPerBatch - 1) / imagesPerBatch
        let wanted = Array(trainingBatchNames.prefix(batchesNeeded)) + [testBatchName]

        var batches: [String: [UInt8]] = [:]
        var classNames = standardClassNames
        switch try locate(directory) {
        case .folder(let folder):
            for name in wanted {
                let url = try batchFile(name, in: folder)
                let reader = try ContentReader(url: url)
                let bytes = try reader.read(batchFileSize + 1)  // one more, to notice extra bytes
                if bytes.count > batchFileSize { try reader.skip(1 << 26) }  // a corrupt .gz says so first (a bounded read more)
                if let problem = problem(inBatch: bytes) { throw DataError(url, problem) }
                batches[name] = bytes
            }
            let metaURL = folder.appendingPathComponent(metaName)
            if isFile(metaURL) {
                let bytes = try ContentReader(url: metaURL).read(1 << 16)
                classNames = try parseClassNames(bytes, path: metaURL.path)
            }
        case .archive(let archive):
            let reader = try ContentReader(url: archive)
            var sawMeta = false
            try forEachTarMember(in: reader) { member in
                guard let fileName = member.fileName(within: folderName) else { return }
                if wanted.contains(fileName), batches[fileName] == nil {
                    let bytes = try member.read(batchFileSize + 1)
                    if let problem = problem(inBatch: bytes) {
                        throw DataError(archive, "member \(member.name): \(problem)")
                    }
                    batches[fileName] = bytes
                } else if fileName == metaName, !sawMeta {
                    classNames = try parseClassNames(member.read(1 << 16), path: "\(archive.path): member \(member.name)")
                    sawMeta = true
                }
            }
            if let missing = wanted.first(where: { batches[$0] == nil }) {
                throw DataError(archive, "the archive has no \(folderName)/\(missing); is it cifar-10-binary.tar.gz?")
            }
        }
        let train = takeImages(trainingCount, from: wanted.dropLast().map { batches.removeValue(forKey: $0)! })
        let test = takeImages(imagesPerBatch, from: [batches.removeValue(forKey: testBatchName)!])
        return Dataset(kind: .cifar10, train: train, test: test, classNames: classNames)
    }

    /// Finds the batches under `directory`: a `cifar-10-batches-bin` folder (the directory itself, inside
    /// it, or inside its `cifar10/`), else `cifar-10-binary.tar.gz` (the path itself, inside it, or inside `cifar10/`).
    static func locate(_ directory: URL) throws -> Source {
        if isFile(directory) { return .archive(directory) }
        let cifarFolder = directory.appendingPathComponent("cifar10")
        let folders = [
            directory, directory.appendingPathComponent(folderName),
            cifarFolder.appendingPathComponent(folderName), cifarFolder,
        ]
        let holdsBatches = { (folder: URL) in
            (trainingBatchNames + [testBatchName]).contains {
                isFile(folder.appendingPathComponent($0)) || isFile(folder.appendingPathComponent($0 + ".gz"))
            }
        }
        if let folder = folders.first(where: holdsBatches) { return .folder(folder) }
        let archives = [directory.appendingPathComponent(archiveName), cifarFolder.appendingPathComponent(archiveName)]
        if let archive = archives.first(where: isFile) { return .archive(archive) }
        throw DataError(path: directory.path, reason: "no CIFAR-10 data found (looked for \(folderName)/ with "
                        + "data_batch_N.bin[.gz] and test_batch.bin[.gz], and for \(archiveName), in "
                        + "\(directory.path) and \(cifarFolder.path)); \(missingDataHint(.cifar10))")
    }

    /// The file for batch `name` in `folder`: `name` itself or `name.gz`.
    static func batchFile(_ name: String, in folder: URL) throws -> URL {
        let plain = folder.appendingPathComponent(name)
        let gzipped = folder.appendingPathComponent(name + ".gz")
        if isFile(plain) { return plain }
        if isFile(gzipped) { return gzipped }
        throw DataError(folder, "missing \(name) (or \(name).gz); \(missingDataHint(.cifar10))")
    }

    /// What is wrong with the content of a batch file, or `nil` when it is a valid batch.
    static func problem(inBatch bytes: [UInt8]) -> String? {
        if bytes.count < batchFileSize {
            return "truncated: expected \(batchFileSize) bytes (10000 records of 3073), found \(bytes.count)"
        }
        if bytes.count > batchFileSize {
            return "longer than expected: a batch has exactly \(batchFileSize) bytes (10000 records of 3073)"
        }
        for record in 0 ..< imagesPerBatch where bytes[record * recordSize] >= 10 {
            return "label \(bytes[record * recordSize]) of record \(record) is not a class 0-9"
        }
        return nil
    }

    /// The first `count` images of `batches` (each a valid batch file's bytes), in order.
    static func takeImages(_ count: Int, from batches: [[UInt8]]) -> LabeledImages {
        let imageSize = recordSize - 1
        var labels = [UInt8]()
        var pixels = [UInt8]()
        labels.reserveCapacity(count)
        pixels.reserveCapacity(count * imageSize)
        for batch in batches {
            for record in 0 ..< min(imagesPerBatch, count - labels.count) {
                let start = record * recordSize
                labels.append(batch[start])
                pixels.append(contentsOf: batch[start + 1 ..< start + recordSize])
            }
        }
        return LabeledImages(count: count, channels: 3, height: side, width: side, pixels: pixels, labels: labels)
    }

    /// The class names in `batches.meta.txt`: one per line, blank lines and surrounding spaces ignored.
    static func parseClassNames(_ bytes: [UInt8], path: String) throws -> [String] {
        let names = String(decoding: bytes, as: UTF8.self)
            .split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
        guard names.count == 10 else {
            throw DataError(path: path, reason: "expected 10 class names, one per line, found \(names.count)")
        }
        return names
    }
}
