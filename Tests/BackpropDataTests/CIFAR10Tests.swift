import Foundation
import BackpropTestSupport
import Testing
@testable import BackpropData

/// A tar archive (POSIX ustar) holding `members`, written here by hand to test the reader on
/// hand-made damage; the download test checks the reader against GNU tar's output too.
func tarArchive(_ members: [(name: String, bytes: [UInt8])]) -> [UInt8] {
    var archive = [UInt8]()
    for (name, bytes) in members {
        var header = [UInt8](repeating: 0, count: 512)
        func put(_ text: String, at offset: Int) { header.replaceSubrange(offset ..< offset + text.utf8.count, with: text.utf8) }
        func octal(_ value: Int, width: Int) -> String {
            let digits = String(value, radix: 8)
            return String(repeating: "0", count: width - 1 - digits.count) + digits + "\0"
        }
        put(name, at: 0)
        put(octal(0o644, width: 8), at: 100)
        put(octal(bytes.count, width: 12), at: 124)
        put("0", at: 156)
        put("ustar\u{0}00", at: 257)
        put("        ", at: 148)
        put(String(octal(header.reduce(0) { $0 + Int($1) }, width: 7)) + " ", at: 148)
        archive += header + bytes + [UInt8](repeating: 0, count: (512 - bytes.count % 512) % 512)
    }
    return archive + [UInt8](repeating: 0, count: 1024)
}

/// A folder whose `cifar-10-batches-bin`-style content is links to the real `.bin.gz` files named in `batches`.
private func linkedBatchFolder(_ batches: [String]) throws -> TemporaryFolder {
    let folder = try TemporaryFolder()
    for name in batches {
        try FileManager.default.createSymbolicLink(
            at: folder.file(name + ".gz"), withDestinationURL: TestData.cifarBatches.appendingPathComponent(name + ".gz"))
    }
    return folder
}

@Suite("CIFAR-10 reader")
struct CIFAR10Tests {
    @Test("reads all real batches: counts, first labels, class names, class counts, red mean")
    func realFiles() throws {
        let dataset = try Dataset.load(.cifar10, from: TestData.root)  // a root holding cifar10/cifar-10-batches-bin
        #expect(dataset.kind == .cifar10)
        #expect(dataset.train.count == 50000 && dataset.test.count == 10000)
        #expect(dataset.train.channels == 3 && dataset.train.height == 32 && dataset.train.width == 32)
        #expect(dataset.train.pixels.count == 50000 * 3072 && dataset.test.pixels.count == 10000 * 3072)
        // Expected values from shared/data/README.md.
        #expect(dataset.classNames == CIFAR10Reader.standardClassNames)
        #expect(dataset.train.labels.prefix(10) == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3])
        #expect(dataset.test.labels.prefix(10) == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1])
        #expect(dataset.classNames[Int(dataset.train.labels[0])] == "frog")
        #expect(dataset.classNames[Int(dataset.test.labels[0])] == "cat")
        var trainCounts = [Int](repeating: 0, count: 10), testCounts = trainCounts
        for label in dataset.train.labels { trainCounts[Int(label)] += 1 }
        for label in dataset.test.labels { testCounts[Int(label)] += 1 }
        #expect(trainCounts == [Int](repeating: 5000, count: 10))
        #expect(testCounts == [Int](repeating: 1000, count: 10))
        // The R plane is the first 1024 bytes of each image (NCHW); its mean over the training set is 0.491400.
        let redSum = dataset.train.pixels.withUnsafeBufferPointer { pixels in
            (0 ..< 50000).reduce(0) { sum, image in
                pixels[image * 3072 ..< image * 3072 + 1024].reduce(sum) { $0 + Int($1) }
            }
        }
        #expect(abs(Double(redSum) / Double(50000 * 1024) / 255 - 0.491400) < 1e-6)
        // Image 0 of the test set is record 0 of test_batch without its label byte.
        let record = try TestData.content(of: TestData.cifarBatches.appendingPathComponent("test_batch.bin.gz")).prefix(3073)
        #expect(dataset.test.pixels(ofImage: 0).elementsEqual(record.dropFirst()))
    }

    @Test("a training limit reads only the batches it needs")
    func trainingLimit() throws {
        let folder = try linkedBatchFolder(["data_batch_1.bin", "data_batch_2.bin", "test_batch.bin"])
        defer { folder.remove() }
        let dataset = try Dataset.load(.cifar10, from: folder.url, trainingLimit: 15000)
        #expect(dataset.train.count == 15000 && dataset.train.pixels.count == 15000 * 3072)
        #expect(dataset.train.labels.prefix(10) == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3])
        let batch2 = try TestData.content(of: TestData.cifarBatches.appendingPathComponent("data_batch_2.bin.gz"))
        #expect(dataset.train.labels[10000] == batch2[0])
        #expect(dataset.train.pixels(ofImage: 10000).elementsEqual(batch2[1 ..< 3073]))
        #expect(dataset.test.count == 10000)
        #expect(dataset.classNames == CIFAR10Reader.standardClassNames)  // no batches.meta.txt here

        #expect(try Dataset.load(.cifar10, from: folder.url, trainingLimit: 20000).train.count == 20000)
        #expect(try Dataset.load(.cifar10, from: folder.url, trainingLimit: 0).train.count == 0)
        let message = dataErrorMessage { _ = try Dataset.load(.cifar10, from: folder.url, trainingLimit: 20001) }
        #expect(message.contains("missing data_batch_3.bin (or data_batch_3.bin.gz)")
            && message.contains("backprop download cifar10"), "\(message)")
    }

    @Test("damaged batches: truncated, a label of 10, bad gzip, wrong class-name file")
    func damagedBatches() throws {
        let folder = try linkedBatchFolder(["data_batch_1.bin", "test_batch.bin"])
        defer { folder.remove() }
        let testBatch = try TestData.content(of: TestData.cifarBatches.appendingPathComponent("test_batch.bin.gz"))

        try folder.write(Array(testBatch.prefix(3073 * 10)), to: "data_batch_1.bin")  // the plain file wins over .gz
        var message = dataErrorMessage { _ = try Dataset.load(.cifar10, from: folder.url, trainingLimit: 1) }
        #expect(message.contains("data_batch_1.bin: truncated: expected 30730000 bytes (10000 records of 3073), found 30730"),
                "\(message)")

        try folder.write(testBatch + [0], to: "data_batch_1.bin")
        message = dataErrorMessage { _ = try Dataset.load(.cifar10, from: folder.url, trainingLimit: 1) }
        #expect(message.contains("data_batch_1.bin: longer than expected"), "\(message)")
        try FileManager.default.removeItem(at: folder.file("data_batch_1.bin"))

        var badLabel = testBatch
        badLabel[3073 * 5] = 10
        try folder.write(badLabel, to: "test_batch.bin")
        message = dataErrorMessage { _ = try Dataset.load(.cifar10, from: folder.url, trainingLimit: 0) }
        #expect(message.contains("test_batch.bin: label 10 of record 5 is not a class 0-9"), "\(message)")
        try FileManager.default.removeItem(at: folder.file("test_batch.bin"))

        var gzipped = try [UInt8](Data(contentsOf: TestData.cifarBatches.appendingPathComponent("test_batch.bin.gz")))
        for index in 5_000_000 ..< 5_000_100 { gzipped[index] ^= 0xa5 }
        try FileManager.default.removeItem(at: folder.file("test_batch.bin.gz"))
        try folder.write(gzipped, to: "test_batch.bin.gz")
        message = dataErrorMessage { _ = try Dataset.load(.cifar10, from: folder.url, trainingLimit: 0) }
        #expect(message.contains("test_batch.bin.gz: corrupt gzip data"), "\(message)")

        try folder.write(testBatch, to: "test_batch.bin")
        try folder.write(Array("airplane\nautomobile\nbird\n".utf8), to: "batches.meta.txt")
        message = dataErrorMessage { _ = try Dataset.load(.cifar10, from: folder.url, trainingLimit: 0) }
        #expect(message.contains("batches.meta.txt: expected 10 class names, one per line, found 3"), "\(message)")

        try folder.write(Array("a\r\nb\r\nc\r\nd\r\n e \r\nf\r\ng\r\nh\r\ni\r\nj\r\n\r\n".utf8), to: "batches.meta.txt")
        #expect(try Dataset.load(.cifar10, from: folder.url, trainingLimit: 0).classNames
            == ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"])
    }

    @Test("reads batches from a tar archive, and reports damaged archives")
    func tarArchives() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let batch1 = try TestData.content(of: TestData.cifarBatches.appendingPathComponent("data_batch_1.bin.gz"))
        let test = try TestData.content(of: TestData.cifarBatches.appendingPathComponent("test_batch.bin.gz"))
        let names = Array("n0\nn1\nn2\nn3\nn4\nn5\nn6\nn7\nn8\nn9\n".utf8)
        // Named .tar.gz but not gzipped: the reader goes by the magic bytes, not the name.
        let archive = try folder.write(tarArchive([
            ("cifar-10-batches-bin/", []), ("cifar-10-batches-bin/batches.meta.txt", names),
            ("cifar-10-batches-bin/test_batch.bin", test), ("cifar-10-batches-bin/data_batch_1.bin", batch1),
        ]), to: "cifar10/cifar-10-binary.tar.gz")

        let fromArchive = try Dataset.load(.cifar10, from: folder.url, trainingLimit: 10000)  // finds cifar10/<archive>
        let fromFiles = try Dataset.load(.cifar10, from: TestData.cifarBatches, trainingLimit: 10000)
        #expect(fromArchive.train == fromFiles.train)
        #expect(fromArchive.test == fromFiles.test)
        #expect(fromArchive.classNames == (0 ..< 10).map { "n\($0)" })
        #expect(try Dataset.load(.cifar10, from: archive, trainingLimit: 3).train.count == 3)  // the archive itself

        var message = dataErrorMessage { _ = try Dataset.load(.cifar10, from: archive, trainingLimit: 10001) }
        #expect(message.contains("cifar-10-binary.tar.gz: the archive has no cifar-10-batches-bin/data_batch_2.bin"),
                "\(message)")

        var damaged = try [UInt8](Data(contentsOf: archive))
        damaged[512 + 3] ^= 1  // a name byte of the second header
        try Data(damaged).write(to: archive)
        message = dataErrorMessage { _ = try Dataset.load(.cifar10, from: archive) }
        #expect(message.contains("cifar-10-binary.tar.gz: not a tar archive, or a corrupt one (header checksum mismatch)"),
                "\(message)")

        try Data(tarArchive([("cifar-10-batches-bin/test_batch.bin", test)]).prefix(512 + 1_000_000)).write(to: archive)
        message = dataErrorMessage { _ = try Dataset.load(.cifar10, from: archive, trainingLimit: 0) }
        #expect(message.contains("truncated tar archive: member cifar-10-batches-bin/test_batch.bin ends early"), "\(message)")

        try Data(tarArchive([("cifar-10-batches-bin/test_batch.bin", Array(test.prefix(3073)))])).write(to: archive)
        message = dataErrorMessage { _ = try Dataset.load(.cifar10, from: archive, trainingLimit: 0) }
        #expect(message.contains("member cifar-10-batches-bin/test_batch.bin: truncated"), "\(message)")

        try Data("not a tar file at all".utf8).write(to: archive)
        message = dataErrorMessage { _ = try Dataset.load(.cifar10, from: archive) }
        #expect(message.contains("cifar-10-binary.tar.gz: truncated tar archive"), "\(message)")
    }

    @Test("no data: the message says where it looked and how to get it")
    func missingData() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let message = dataErrorMessage { _ = try Dataset.load(.cifar10, from: folder.url) }
        #expect(message.contains("no CIFAR-10 data found") && message.contains("cifar-10-binary.tar.gz")
            && message.contains(folder.url.appendingPathComponent("cifar10").path), "\(message)")
        #expect(message.contains("backprop download cifar10") && message.contains("--data-dir"))
    }
}
