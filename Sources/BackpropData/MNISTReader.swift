import Foundation

/// Reads MNIST, or Fashion-MNIST (the same format), from its four IDX files.
///
/// IDX format (big-endian): magic `0x00000803` for images, then N, H = 28, W = 28 as UInt32,
/// then N x 28 x 28 bytes; magic `0x00000801` for labels, then N as UInt32, then N bytes.
enum MNISTReader {
    static let classNames = (0 ... 9).map(String.init)
    /// The most images (or labels) an IDX file may hold: 2^20, 822 MB of 28 x 28 images.
    static let maximumItems = 1 << 20
    /// Fashion-MNIST's classes, from its README (zalandoresearch/fashion-mnist), label 0 first.
    static let fashionClassNames = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    static let side = 28

    /// The four files by their official names, without `.gz`.
    static let trainImages = "train-images-idx3-ubyte"
    static let trainLabels = "train-labels-idx1-ubyte"
    static let testImages = "t10k-images-idx3-ubyte"
    static let testLabels = "t10k-labels-idx1-ubyte"
    static let officialNames = [trainImages, trainLabels, testImages, testLabels]

    /// The names a file may have on disk: official, the `train-images.idx3-ubyte` spelling, each with or without `.gz`.
    static func spellings(of officialName: String) -> [String] {
        let dotted = officialName.replacingOccurrences(of: "-idx", with: ".idx")
        return [officialName + ".gz", officialName, dotted + ".gz", dotted]
    }

    static func load(_ kind: DatasetKind, from directory: URL, trainingLimit: Int?) throws -> Dataset {
        precondition(kind == .mnist || kind == .fashionMNIST, "MNISTReader reads MNIST and Fashion-MNIST")
        let name = kind.displayName
        if isFile(directory) {
            throw DataError(directory, "is a file; give the folder that holds the \(name) files")
        }
        let candidates = [directory, directory.appendingPathComponent(kind.rawValue)]
        let hasAnyFile = { (folder: URL) in
            officialNames.flatMap(spellings).contains { isFile(folder.appendingPathComponent($0)) }
        }
        guard let folder = candidates.first(where: hasAnyFile) else {
            let looked = candidates.map { $0.appendingPathComponent(trainImages).path + "[.gz]" }.joined(separator: ", ")
            throw DataError(path: directory.path,
                            reason: "no \(name) files found (looked for \(looked)); \(missingDataHint(kind))")
        }
        func file(_ officialName: String) throws -> URL {
            let urls = spellings(of: officialName).map { folder.appendingPathComponent($0) }
            guard let url = urls.first(where: isFile) else {
                throw DataError(folder, "missing \(officialName)[.gz] (or \(spellings(of: officialName)[3])); "
                                + missingDataHint(kind))
            }
            return url
        }
        let test = try readPair(images: file(testImages), labels: file(testLabels))
        guard test.count > 0 else {
            throw DataError(try file(testImages), "holds no images; a test set needs at least one")
        }
        // A limit of 0 (evaluating a saved model) needs no training files at all.
        var train = trainingLimit == 0
            ? LabeledImages(count: 0, channels: 1, height: side, width: side, pixels: [], labels: [])
            : try readPair(images: file(trainImages), labels: file(trainLabels))
        if let trainingLimit { train = train.prefix(trainingLimit) }
        return Dataset(kind: kind, train: train, test: test, classNames: kind == .mnist ? classNames : fashionClassNames)
    }

    /// Reads an image file and its label file and checks that they agree.
    static func readPair(images imagesURL: URL, labels labelsURL: URL) throws -> LabeledImages {
        let images = try readIDX(imagesURL, magic: 0x0000_0803, itemShape: [side, side])
        let labels = try readIDX(labelsURL, magic: 0x0000_0801, itemShape: [])
        guard labels.count == images.count else {
            throw DataError(labelsURL, "holds \(labels.count) labels but \(imagesURL.lastPathComponent) "
                            + "holds \(images.count) images")
        }
        if let index = labels.bytes.firstIndex(where: { $0 >= 10 }) {
            throw DataError(labelsURL, "label \(labels.bytes[index]) of image \(index) is not a digit 0-9")
        }
        return LabeledImages(count: images.count, channels: 1, height: side, width: side,
                             pixels: images.bytes, labels: labels.bytes)
    }

    /// Reads an IDX file of unsigned bytes holding `count` items of `itemShape`, checking its magic
    /// number, its item shape, and that its size matches its header.
    static func readIDX(_ url: URL, magic: UInt32, itemShape: [Int]) throws -> (count: Int, bytes: [UInt8]) {
        let reader = try ContentReader(url: url)
        let headerSize = 8 + 4 * itemShape.count
        let header = try reader.read(headerSize)
        guard header.count == headerSize else {
            throw DataError(url, "truncated: expected at least \(headerSize) bytes, found \(header.count)")
        }
        let words = (0 ..< headerSize / 4).map { index in
            header[4 * index ..< 4 * index + 4].reduce(0) { $0 << 8 | Int($1) }
        }
        guard words[0] == magic else {
            let hex = { (value: Int) -> String in
                let digits = String(value, radix: 16, uppercase: true)
                return "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
            }
            throw DataError(url, "not an MNIST IDX file: magic number is \(hex(words[0])), expected \(hex(Int(magic)))")
        }
        let count = words[1]
        // The count is a 32-bit field; a larger one than any MNIST-format set has is refused
        // before anything is read for it (EMNIST's largest file holds 731,668 images).
        guard count <= maximumItems else {
            throw DataError(url, "holds \(count) items by its header; at most \(maximumItems) are read")
        }
        guard Array(words[2...]) == itemShape else {
            let found = words[2...].map(String.init).joined(separator: "x")
            throw DataError(url, "items are \(found), expected \(itemShape.map(String.init).joined(separator: "x"))")
        }
        let bodySize = count * itemShape.reduce(1, *)  // <= 2^20 x 784: no overflow
        let body = try reader.read(bodySize + 1)  // one more, to notice extra bytes
        guard body.count == bodySize else {
            let expected = headerSize + bodySize
            if body.count < bodySize {
                throw DataError(url, "truncated: expected \(expected) bytes, found \(headerSize + body.count)")
            }
            try reader.skip(1 << 26)  // a corrupt .gz says so first (reading a bounded amount more)
            throw DataError(url, "longer than expected: the header promises \(expected) bytes, the file has more")
        }
        return (count, body)
    }
}
