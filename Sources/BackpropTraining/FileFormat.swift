import Backprop

/// The `"format"` and `"version"` keys at the top of every JSON file Backprop writes, so that a
/// reader can tell which file it holds and whether it can read it.
///
/// | file | format |
/// |---|---|
/// | `training.json` | `backprop-training-record` |
/// | `evaluation.json` | `backprop-evaluation` |
/// | `experiment.json` (and spec files, optionally) | `backprop-experiment` |
/// | `model.json` | `backprop-model` |
/// | `bench --json` | `backprop-bench` |
///
/// Every key is snake_case. A file without the two keys was written before they existed and is
/// read as version 1; a file of another format, or of a later version, is refused with a message
/// that says so.
public struct FileFormat: Sendable, Equatable {
    /// The value of the `"format"` key.
    public let name: String
    /// The newest version this build writes and reads.
    public let version: Int

    public init(name: String, version: Int) {
        self.name = name
        self.version = version
    }

    public static let trainingRecord = FileFormat(name: "backprop-training-record", version: 1)
    public static let evaluation = FileFormat(name: "backprop-evaluation", version: 1)
    public static let experiment = FileFormat(name: "backprop-experiment", version: 1)
    public static let bench = FileFormat(name: "backprop-bench", version: 1)

    /// The two keys, for files built as dictionaries.
    public var jsonObject: [String: Any] { ["format": name, "version": version] }

    /// Checks the keys a file declares (nil: absent).
    /// - Throws: `SpecError` when the file is of another format or a later version.
    public func check(format: String?, version: Int?) throws(SpecError) {
        if let format, format != name {
            throw SpecError("\"format\" is \"\(format)\", not \"\(name)\"")
        }
        if let version, version > self.version || version < 1 {
            throw SpecError("\"version\" is \(version); this backprop reads \(name) version 1 to \(self.version) (a newer backprop wrote it?)")
        }
    }

    /// Checks the keys of a `Decodable`'s container, as a decoding error at `"format"` or `"version"`.
    func check<Key: CodingKey>(_ container: KeyedDecodingContainer<Key>, format formatKey: Key, version versionKey: Key) throws {
        let format = try container.decodeIfPresent(String.self, forKey: formatKey)
        let version = try container.decodeIfPresent(Int.self, forKey: versionKey)
        do { try check(format: format, version: version) } catch {
            throw DecodingError.dataCorruptedError(forKey: format != nil && format != name ? formatKey : versionKey,
                                                   in: container, debugDescription: error.description)
        }
    }
}
