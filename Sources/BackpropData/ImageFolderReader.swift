import Foundation

/// Reads a folder of PNG and JPEG images sorted into one subfolder per class, as torchvision's
/// `ImageFolder` does:
///
/// ```
/// root/cat/0001.png            root/train/cat/0001.png
/// root/cat/0002.jpg      or    root/train/dog/…
/// root/dog/…                   root/test/cat/…, root/test/dog/…
/// ```
///
/// - **Classes** are the subfolders, in sorted (byte) order; label `i` is the `i`-th. Names
///   starting with `.` are skipped, as are files whose names do not end in .png, .jpg or .jpeg
///   (any case). At most 256 classes.
/// - **Split**: with `train/` and `test/` folders (both, holding the same class folders), those
///   are the split. Otherwise, within each class the files are sorted by name and every fifth
///   (the 5th, 10th, … : positions 4, 9, … from 0) is a test image — 20 % of each class, the same
///   on every machine; a class of fewer than 5 images has none in the test set.
/// - **Order**: training images go round-robin over the classes (class 0's first file, class 1's
///   first, …, then everyone's second), so the first N of them — `train_size N` — hold about
///   N / classes of each class. Test images are in class order.
/// - **Pixels**: each image is decoded (`ImageDecoder`), converted to `channels` (luma or copies)
///   and resized to `height` x `width` (antialiased bilinear, aspect ratio not kept), as
///   `backprop predict` does; no inversion.
///
/// A class folder without images, an unreadable or corrupt image, or a size out of range is a
/// `DataError` naming the folder or file.
enum ImageFolderReader {
    /// Every fifth image of a class (positions 4, 9, … of its sorted files) is a test image.
    static let testEvery = 5
    /// The largest side an image-folder data set may be resized to.
    static let maximumSide = 4096

    static func load(from root: URL, imageShape: [Int], trainingLimit: Int?) throws -> Dataset {
        guard imageShape.count == 3, imageShape[0] == 1 || imageShape[0] == 3,
              (1...maximumSide).contains(imageShape[1]), (1...maximumSide).contains(imageShape[2]) else {
            throw DataError(path: root.path, reason: "an image folder is read as 1 or 3 channels of at most \(maximumSide)x\(maximumSide) pixels; the network's input is \(imageShape)")
        }
        guard isFolder(root) else {
            throw DataError(root, isFile(root) ? "is a file; give the folder that holds one folder of images per class"
                                               : "no such folder (an image folder data set is read from --data-dir)")
        }
        let trainRoot = root.appendingPathComponent("train"), testRoot = root.appendingPathComponent("test")
        let trainFiles: [[URL]], testFiles: [[URL]], classNames: [String]
        if isFolder(trainRoot) && isFolder(testRoot) {
            let train = try classFolders(trainRoot), test = try classFolders(testRoot)
            guard train.names == test.names else {
                throw DataError(root, "train/ has the classes \(train.names) but test/ has \(test.names); they must match")
            }
            classNames = train.names
            trainFiles = train.files
            testFiles = test.files
        } else {
            let all = try classFolders(root)
            classNames = all.names
            trainFiles = all.files.map { files in files.indices.filter { $0 % testEvery != testEvery - 1 }.map { files[$0] } }
            testFiles = all.files.map { files in files.indices.filter { $0 % testEvery == testEvery - 1 }.map { files[$0] } }
        }
        // Round-robin over the classes: (file, label) pairs.
        var trainOrder: [(URL, UInt8)] = []
        let longest = trainFiles.map(\.count).max() ?? 0
        for position in 0..<longest {
            for (label, files) in trainFiles.enumerated() where position < files.count {
                trainOrder.append((files[position], UInt8(label)))
            }
        }
        if let trainingLimit { trainOrder = Array(trainOrder.prefix(trainingLimit)) }
        let testOrder = testFiles.enumerated().flatMap { label, files in files.map { ($0, UInt8(label)) } }
        let train = try read(trainOrder, shape: imageShape)
        let test = try read(testOrder, shape: imageShape)
        return Dataset(kind: .imageFolder, train: train, test: test, classNames: classNames)
    }

    /// The class folders under `folder`, sorted, with each one's image files sorted by name.
    static func classFolders(_ folder: URL) throws -> (names: [String], files: [[URL]]) {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: folder.path)
                .filter { !$0.hasPrefix(".") && isFolder(folder.appendingPathComponent($0)) }.sorted()
        } catch {
            throw DataError(folder, "cannot list the folder: \(ContentReader.describe(error))")
        }
        guard !names.isEmpty else {
            throw DataError(folder, "holds no class folders (expected one folder of .png/.jpg images per class)")
        }
        guard names.count <= 256 else { throw DataError(folder, "holds \(names.count) class folders; at most 256 are supported") }
        let files = try names.map { name in
            let classFolder = folder.appendingPathComponent(name)
            let entries: [String]
            do { entries = try FileManager.default.contentsOfDirectory(atPath: classFolder.path) } catch {
                throw DataError(classFolder, "cannot list the folder: \(ContentReader.describe(error))")
            }
            let images = entries.filter { !$0.hasPrefix(".") }.sorted().map { classFolder.appendingPathComponent($0) }
                .filter { ImageDecoder.hasImageExtension($0) && isFile($0) }
            guard !images.isEmpty else {
                throw DataError(classFolder, "class '\(name)' holds no .png, .jpg or .jpeg files")
            }
            return images
        }
        return (names, files)
    }

    /// Decodes, converts and resizes the images, in order, into one `LabeledImages`.
    static func read(_ items: [(URL, UInt8)], shape: [Int]) throws -> LabeledImages {
        let (channels, height, width) = (shape[0], shape[1], shape[2])
        let imageBytes = channels * height * width  // at most 3 · 4096² < 2^26
        let (total, overflow) = items.count.multipliedReportingOverflow(by: imageBytes)
        guard !overflow, total <= 1 << 34 else {
            throw DataError(path: nil, reason: "\(items.count) images of \(channels)x\(height)x\(width) are too many to hold in memory")
        }
        var pixels = [UInt8]()
        pixels.reserveCapacity(total)
        for (url, _) in items {
            let image = try ImageDecoder.decode(fileAt: url)
            pixels += image.converted(toChannels: channels).resized(width: width, height: height).planarPixels
        }
        return LabeledImages(count: items.count, channels: channels, height: height, width: width,
                             pixels: pixels, labels: items.map(\.1))
    }
}
