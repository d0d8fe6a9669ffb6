import Foundation

/// A problem with a data file, a data folder or a download, described in one line.
///
/// `description` reads `"<path>: <reason>"`, for example
/// `"/data/mnist/train-images-idx3-ubyte.gz: truncated: expected 47040016 bytes, found 1234"`,
/// so a command-line tool can print it as it is.
public struct DataError: Error, CustomStringConvertible, Sendable {
    /// The file or folder the problem is in, or `nil` when it concerns no single path.
    public var path: String?
    /// What is wrong, in one line, without the path.
    public var reason: String

    /// Creates an error about `path` (a file or folder) that says what is wrong with it.
    public init(path: String?, reason: String) {
        self.path = path
        self.reason = reason
    }

    /// One line: the path, a colon, and the reason.
    public var description: String {
        guard let path else { return reason }
        return "\(path): \(reason)"
    }
}

extension DataError {
    /// An error about the file at `url`.
    init(_ url: URL, _ reason: String) {
        self.init(path: url.path, reason: reason)
    }
}
