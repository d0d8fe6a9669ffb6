/// An ONNX file that cannot be written or read: one line saying what and where.
public struct ONNXError: Error, CustomStringConvertible, Sendable {
    public var description: String

    /// Creates an error with a one-line message.
    public init(_ description: String) { self.description = description }
}
