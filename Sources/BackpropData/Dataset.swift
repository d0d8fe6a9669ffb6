import Foundation

/// The data sets this module reads and downloads.
public enum DatasetKind: String, Sendable, CaseIterable {
    /// MNIST handwritten digits: 60000 training and 10000 test images, 1 x 28 x 28, classes "0"..."9".
    case mnist
    /// CIFAR-10 photos: 50000 training and 10000 test images, 3 x 32 x 32, 10 classes (airplane ... truck).
    case cifar10
    /// Fashion-MNIST (Zalando): MNIST's format and sizes, 10 classes of clothing (T-shirt/top ... Ankle boot).
    case fashionMNIST = "fashion-mnist"
    /// Your own images: a folder with one subfolder of PNG/JPEG files per class (see
    /// `Dataset.load`), resized to the network's input; any number of classes up to 256.
    case imageFolder = "image-folder"

    /// The names as written on the command line and in spec files: "mnist, cifar10, fashion-mnist".
    public static var nameList: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// The data sets `backprop download` fetches: all but the image folder.
    public static var downloadable: [DatasetKind] { allCases.filter { $0 != .imageFolder } }

    /// One image's shape, `[channels, height, width]`; `nil` for an image folder, whose images
    /// take the network's input shape.
    public var imageShape: [Int]? {
        switch self {
        case .mnist, .fashionMNIST: [1, 28, 28]
        case .cifar10: [3, 32, 32]
        case .imageFolder: nil
        }
    }

    /// Whether the images are light figures on a dark background (MNIST's white digits on black,
    /// Fashion-MNIST's clothes on black): what a picture of a dark figure on paper must be
    /// inverted to match.
    public var hasDarkBackground: Bool { self == .mnist || self == .fashionMNIST }

    /// The name people write, e.g. "CIFAR-10".
    public var displayName: String {
        switch self {
        case .mnist: "MNIST"
        case .cifar10: "CIFAR-10"
        case .fashionMNIST: "Fashion-MNIST"
        case .imageFolder: "image folder"
        }
    }
}

/// A data set: training and test images with their class names.
public struct Dataset: Sendable {
    /// Which data set this is.
    public var kind: DatasetKind
    /// The training images (all of them, or the first `trainingLimit`).
    public var train: LabeledImages
    /// The test images, always all of them.
    public var test: LabeledImages
    /// The name of each class; label `i` means `classNames[i]`.
    public var classNames: [String]

    /// Creates a data set from its parts.
    public init(kind: DatasetKind, train: LabeledImages, test: LabeledImages, classNames: [String]) {
        self.kind = kind
        self.train = train
        self.test = test
        self.classNames = classNames
    }
}

extension Dataset {
    /// Reads a data set from disk, checking every file's format, sizes and labels.
    ///
    /// `directory` may hold the data set's files directly, or be a root with `mnist/`, `fashion-mnist/`
    /// and `cifar10/` inside (as written by `Downloader`). Files may be gzip-compressed or not.
    /// - MNIST and Fashion-MNIST: the four IDX files, named `train-images-idx3-ubyte` (official) or
    ///   `train-images.idx3-ubyte`, each optionally with `.gz` (both data sets use the same names, so
    ///   keep them in separate folders).
    /// - CIFAR-10 (binary version): a `cifar-10-batches-bin/` folder with `data_batch_1.bin` ... `data_batch_5.bin`
    ///   and `test_batch.bin` (each optionally `.bin.gz`), or the official `cifar-10-binary.tar.gz`.
    ///   Class names come from `batches.meta.txt` when present.
    /// - Image folder: `directory` holds one folder of .png/.jpg/.jpeg files per class, or `train/`
    ///   and `test/` folders that do. Without them, every fifth file of each class (sorted by name)
    ///   is a test image. Each image is converted to `imageShape`'s channels and resized to its
    ///   height and width; training images come round-robin over the classes (see `ImageFolderReader`).
    ///
    /// - Parameters:
    ///   - kind: which data set to read.
    ///   - directory: the folder to look in (or, for CIFAR-10, the `cifar-10-binary.tar.gz` file itself).
    ///   - trainingLimit: read at most this many training images; CIFAR-10 then reads only the batches
    ///     it needs (20000 reads batches 1 and 2). `nil` reads all. The test set is always read whole.
    ///   - imageShape: `[channels, height, width]` for an image folder (the network's input); ignored otherwise.
    /// - Returns: the data set, pixels in NCHW order (see `LabeledImages`).
    /// - Throws: `DataError` naming the file, or the paths looked for, when something is missing or wrong.
    public static func load(_ kind: DatasetKind, from directory: URL, trainingLimit: Int? = nil,
                            imageShape: [Int]? = nil) throws -> Dataset {
        if let trainingLimit, trainingLimit < 0 {
            throw DataError(path: nil, reason: "the training limit must be 0 or more, not \(trainingLimit)")
        }
        switch kind {
        case .imageFolder:
            guard let imageShape else { throw DataError(path: directory.path, reason: "an image folder needs the network's input shape") }
            return try ImageFolderReader.load(from: directory, imageShape: imageShape, trainingLimit: trainingLimit)
        case .mnist, .fashionMNIST: return try MNISTReader.load(kind, from: directory, trainingLimit: trainingLimit)
        case .cifar10: return try CIFAR10Reader.load(from: directory, trainingLimit: trainingLimit)
        }
    }
}

/// What to tell a user whose data is missing.
func missingDataHint(_ kind: DatasetKind) -> String {
    "run `backprop download \(kind.rawValue)` or pass --data-dir DIR"
}

/// Whether a regular file (or a link to one) exists at `url`.
func isFile(_ url: URL) -> Bool {
    var isDirectory: ObjCBool = false
    return FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) && !isDirectory.boolValue
}

/// Whether a folder (or a link to one) exists at `url`.
func isFolder(_ url: URL) -> Bool {
    var isDirectory: ObjCBool = false
    return FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) && isDirectory.boolValue
}
