import Foundation
import BackpropTestSupport
import Testing
@testable import BackpropData

/// An IDX file: big-endian magic and dimensions, then the body.
private func idx(magic: Int, dimensions: [Int], body: [UInt8]) -> [UInt8] {
    ([magic] + dimensions).flatMap { value in (0 ..< 4).map { UInt8(truncatingIfNeeded: value >> (24 - 8 * $0)) } } + body
}

/// The real t10k images and labels, decompressed once: sources for small, hand-made MNIST folders.
private let t10k: (images: [UInt8], labels: [UInt8]) = {
    let images = try? TestData.content(of: TestData.mnist.appendingPathComponent("t10k-images-idx3-ubyte.gz"))
    let labels = try? TestData.content(of: TestData.mnist.appendingPathComponent("t10k-labels-idx1-ubyte.gz"))
    return (images ?? [], labels ?? [])
}()

/// Writes a valid, uncompressed MNIST folder with 100 training and 50 test images (taken from the real
/// t10k files), letting `modify` change any file's bytes first; keys are the official names.
private func writeSmallMNIST(in folder: TemporaryFolder, modify: (inout [String: [UInt8]]) -> Void = { _ in }) throws {
    try #require(t10k.images.count == 7_840_016, "real MNIST files not found under \(TestData.root.path)")
    let imageSize = 784
    let pixels = Array(t10k.images.dropFirst(16)), labels = Array(t10k.labels.dropFirst(8))
    var files = [
        "train-images-idx3-ubyte": idx(magic: 0x803, dimensions: [100, 28, 28], body: Array(pixels[0 ..< 100 * imageSize])),
        "train-labels-idx1-ubyte": idx(magic: 0x801, dimensions: [100], body: Array(labels[0 ..< 100])),
        "t10k-images-idx3-ubyte": idx(magic: 0x803, dimensions: [50, 28, 28],
                                      body: Array(pixels[100 * imageSize ..< 150 * imageSize])),
        "t10k-labels-idx1-ubyte": idx(magic: 0x801, dimensions: [50], body: Array(labels[100 ..< 150])),
    ]
    modify(&files)
    for (name, bytes) in files { try folder.write(bytes, to: name) }
}

@Suite("MNIST reader")
struct MNISTTests {
    @Test("reads the real files: counts, first labels, class counts, pixel mean")
    func realFiles() throws {
        let dataset = try Dataset.load(.mnist, from: TestData.root)  // a root holding mnist/
        #expect(dataset.kind == .mnist)
        #expect(dataset.classNames == ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"])
        #expect(dataset.train.count == 60000 && dataset.test.count == 10000)
        #expect(dataset.train.channels == 1 && dataset.train.height == 28 && dataset.train.width == 28)
        #expect(dataset.train.pixels.count == 60000 * 784 && dataset.test.pixels.count == 10000 * 784)
        // Expected values from shared/data/README.md.
        #expect(dataset.train.labels.prefix(10) == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
        #expect(dataset.test.labels.prefix(10) == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
        var classCounts = [Int](repeating: 0, count: 10)
        for label in dataset.test.labels { classCounts[Int(label)] += 1 }
        #expect(classCounts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
        let mean = Double(dataset.test.pixels.reduce(0) { $0 + Int($1) }) / Double(dataset.test.pixels.count) / 255
        #expect(abs(mean - 0.132515) < 1e-6)
    }

    @Test("Fashion-MNIST: the same format, its own folder and class names")
    func fashionMNIST() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        // Small IDX files in a root's fashion-mnist/ folder (their pixels are MNIST's; the reader
        // cannot tell, and only the downloader's checksums know the official files).
        let fashion = try TemporaryFolder()
        defer { fashion.remove() }
        try writeSmallMNIST(in: fashion)
        try FileManager.default.moveItem(at: fashion.url, to: folder.file("fashion-mnist"))
        let dataset = try Dataset.load(.fashionMNIST, from: folder.url)
        #expect(dataset.kind == .fashionMNIST && dataset.train.count == 100 && dataset.test.count == 50)
        #expect(dataset.classNames == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"])
        #expect(DatasetKind(rawValue: "fashion-mnist") == .fashionMNIST && DatasetKind.fashionMNIST.imageShape == [1, 28, 28])
        // A root with only mnist/ is not Fashion-MNIST: the error says what to do.
        let message = dataErrorMessage { _ = try Dataset.load(.fashionMNIST, from: TestData.root) }
        #expect(message.contains("no Fashion-MNIST files found") && message.contains("fashion-mnist/train-images-idx3-ubyte")
                && message.contains("backprop download fashion-mnist"), "\(message)")
    }

    @Test("a training limit keeps the first images; the test set stays whole")
    func trainingLimit() throws {
        let dataset = try Dataset.load(.mnist, from: TestData.mnist, trainingLimit: 1000)
        #expect(dataset.train.count == 1000 && dataset.train.pixels.count == 1000 * 784)
        #expect(dataset.train.labels.prefix(10) == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
        #expect(dataset.test.count == 10000)
        #expect(try Dataset.load(.mnist, from: TestData.mnist, trainingLimit: 0).train.count == 0)
        #expect(dataErrorMessage { _ = try Dataset.load(.mnist, from: TestData.mnist, trainingLimit: -1) }
            .contains("training limit"))
    }

    /// `evaluate` and `report` read with a limit of 0: the test files alone must do.
    @Test("a training limit of 0 needs only the test files; any other limit names the missing training file")
    func testFilesAlone() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        for name in MNISTReader.officialNames where name.hasPrefix("t10k") {
            try folder.write(TestData.content(of: TestData.mnist.appendingPathComponent(name + ".gz")), to: name)
        }
        let alone = try Dataset.load(.mnist, from: folder.url, trainingLimit: 0)
        #expect(alone.train.count == 0)
        #expect(alone.test == (try Dataset.load(.mnist, from: TestData.mnist, trainingLimit: 0)).test)
        #expect(dataErrorMessage { _ = try Dataset.load(.mnist, from: folder.url, trainingLimit: 10) }
            .contains("missing train-images-idx3-ubyte"))
    }

    @Test("reads uncompressed files spelled train-images.idx3-ubyte")
    func uncompressedDottedSpelling() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        for name in MNISTReader.officialNames {
            let dotted = name.replacingOccurrences(of: "-idx", with: ".idx")
            try folder.write(TestData.content(of: TestData.mnist.appendingPathComponent(name + ".gz")), to: dotted)
        }
        #expect(isFile(folder.file("train-images.idx3-ubyte")))
        let plain = try Dataset.load(.mnist, from: folder.url)
        let gzipped = try Dataset.load(.mnist, from: TestData.mnist)
        #expect(plain.train == gzipped.train)
        #expect(plain.test == gzipped.test)
    }

    @Test("a small hand-made folder loads")
    func smallFolder() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        try writeSmallMNIST(in: folder)
        let dataset = try Dataset.load(.mnist, from: folder.url)
        #expect(dataset.train.count == 100 && dataset.test.count == 50)
        #expect(dataset.train.labels.prefix(3) == [7, 2, 1])
    }

    @Test("a truncated IDX file: the message names the file and both sizes")
    func truncatedFile() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        try writeSmallMNIST(in: folder) { $0["train-images-idx3-ubyte"]!.removeLast(1000) }
        let message = dataErrorMessage { _ = try Dataset.load(.mnist, from: folder.url) }
        #expect(message.contains("train-images-idx3-ubyte: truncated: expected 78416 bytes, found 77416"), "\(message)")
    }

    @Test("a truncated .gz file is reported as truncated gzip data")
    func truncatedGzip() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let real = try Data(contentsOf: TestData.mnist.appendingPathComponent("train-images-idx3-ubyte.gz"))
        try folder.write([UInt8](real.prefix(100_000)), to: "train-images-idx3-ubyte.gz")
        try writeSmallMNIST(in: folder) { $0["train-images-idx3-ubyte"] = nil }
        let message = dataErrorMessage { _ = try Dataset.load(.mnist, from: folder.url) }
        #expect(message.contains("train-images-idx3-ubyte.gz: truncated gzip data"), "\(message)")
    }

    @Test("a corrupt .gz file is reported as corrupt gzip data")
    func corruptGzip() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        var bytes = try [UInt8](Data(contentsOf: TestData.mnist.appendingPathComponent("t10k-labels-idx1-ubyte.gz")))
        for index in 1000 ..< 1100 { bytes[index] ^= 0x5a }
        try folder.write(bytes, to: "t10k-labels-idx1-ubyte.gz")
        try writeSmallMNIST(in: folder) { $0["t10k-labels-idx1-ubyte"] = nil }
        let message = dataErrorMessage { _ = try Dataset.load(.mnist, from: folder.url) }
        #expect(message.contains("t10k-labels-idx1-ubyte.gz: corrupt gzip data"), "\(message)")
    }

    @Test("a wrong magic number")
    func wrongMagic() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        try writeSmallMNIST(in: folder) { $0["t10k-images-idx3-ubyte"]![3] = 0x01 }  // a label file's magic
        let message = dataErrorMessage { _ = try Dataset.load(.mnist, from: folder.url) }
        #expect(message.contains("t10k-images-idx3-ubyte: not an MNIST IDX file: magic number is 0x00000801, expected 0x00000803"),
                "\(message)")
    }

    @Test("image and label counts that disagree")
    func mismatchedCounts() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        try writeSmallMNIST(in: folder) { files in
            files["train-labels-idx1-ubyte"] = idx(magic: 0x801, dimensions: [99], body: [UInt8](repeating: 1, count: 99))
        }
        let message = dataErrorMessage { _ = try Dataset.load(.mnist, from: folder.url) }
        #expect(message.contains("train-labels-idx1-ubyte: holds 99 labels but train-images-idx3-ubyte holds 100 images"),
                "\(message)")
    }

    @Test("a label that is not a digit")
    func labelOutOfRange() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        try writeSmallMNIST(in: folder) { $0["t10k-labels-idx1-ubyte"]![8 + 7] = 10 }
        let message = dataErrorMessage { _ = try Dataset.load(.mnist, from: folder.url) }
        #expect(message.contains("t10k-labels-idx1-ubyte: label 10 of image 7 is not a digit 0-9"), "\(message)")
    }

    @Test("images that are not 28x28, extra bytes, a header claiming 4 billion images")
    func badShapes() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        try writeSmallMNIST(in: folder) { files in
            files["t10k-images-idx3-ubyte"] = idx(magic: 0x803, dimensions: [50, 32, 32], body: [UInt8](repeating: 0, count: 50 * 1024))
        }
        #expect(dataErrorMessage { _ = try Dataset.load(.mnist, from: folder.url) }
            .contains("t10k-images-idx3-ubyte: items are 32x32, expected 28x28"))

        try writeSmallMNIST(in: folder) { $0["t10k-labels-idx1-ubyte"]! += [0] }
        #expect(dataErrorMessage { _ = try Dataset.load(.mnist, from: folder.url) }
            .contains("t10k-labels-idx1-ubyte: longer than expected: the header promises 58 bytes"))

        try writeSmallMNIST(in: folder) { $0["t10k-images-idx3-ubyte"]!.replaceSubrange(4 ..< 8, with: [0xff, 0xff, 0xff, 0xff]) }
        #expect(dataErrorMessage { _ = try Dataset.load(.mnist, from: folder.url) }
            .contains("t10k-images-idx3-ubyte: holds 4294967295 items by its header; at most 1048576 are read"))

        try folder.write([0, 0, 8], to: "t10k-images-idx3-ubyte")
        #expect(dataErrorMessage { _ = try Dataset.load(.mnist, from: folder.url) }
            .contains("t10k-images-idx3-ubyte: truncated: expected at least 16 bytes, found 3"))
    }

    @Test("missing files: the message says where it looked and how to get them")
    func missingFiles() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let none = dataErrorMessage { _ = try Dataset.load(.mnist, from: folder.url) }
        #expect(none.contains("no MNIST files found"))
        #expect(none.contains(folder.url.appendingPathComponent("mnist/train-images-idx3-ubyte").path))
        #expect(none.contains("backprop download mnist") && none.contains("--data-dir"))

        try writeSmallMNIST(in: folder) { $0["t10k-labels-idx1-ubyte"] = nil }
        let one = dataErrorMessage { _ = try Dataset.load(.mnist, from: folder.url) }
        #expect(one.contains("missing t10k-labels-idx1-ubyte[.gz]") && one.contains("backprop download mnist"), "\(one)")
    }
}
