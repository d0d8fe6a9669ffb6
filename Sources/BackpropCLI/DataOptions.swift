import ArgumentParser
import Backprop
import BackpropData
import Foundation

/// `--data-dir`: where the data sets are.
struct DataOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "The data folder (the data set's files, or a root with mnist/, fashion-mnist/ and cifar10/; for image-folder, the folder of class folders). Default: $BACKPROP_DATA, else the per-user cache folder.",
        valueName: "dir"))
    var dataDir: String?

    var directory: URL { DataDirectory.resolve(explicit: dataDir) }

    /// - Parameter imageShape: the network's input, to which an image folder's images are resized.
    func load(_ kind: DatasetKind, trainingLimit: Int? = nil, imageShape: [Int]? = nil) throws -> Dataset {
        try userFacing { try Dataset.load(kind, from: directory, trainingLimit: trainingLimit, imageShape: imageShape) }
    }
}

/// `--threads`: how many cores the kernels use.
struct ThreadOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: ArgumentHelp("Threads for the kernels (default: the machine's cores). Results do not depend on it.", valueName: "n"))
    var threads: Int?

    /// Applies the setting; call first in `run()`.
    func apply() throws {
        if let threads {
            guard threads > 0 else { throw UserError.usage("--threads must be at least 1, got \(threads)") }
            Parallel.threadCount = threads
        }
    }
}
