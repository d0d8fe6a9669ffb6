import Foundation

/// Reads and writes the [safetensors](https://huggingface.co/docs/safetensors) format:
/// an 8-byte little-endian header length `H`, `H` bytes of JSON
/// (`{"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}}`),
/// then the raw little-endian tensor data. `F32` tensors are written and read; counts (PyTorch's
/// `num_batches_tracked`) are written as `I64` and read back as floats.
public enum Safetensors {
    /// A file that is not valid safetensors (one line).
    public struct FormatError: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// Encodes tensors (in the given order) and string metadata.
    /// - Parameter integers: the names of tensors to store as `I64` (their values are whole numbers).
    public static func encode(_ tensors: [(name: String, tensor: Tensor<Float>)], integers: Set<String> = [],
                              metadata: [String: String] = [:]) throws -> Data {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for (name, tensor) in tensors {
            precondition(name != "__metadata__" && header[name] == nil, "duplicate tensor name \(name)")
            let integer = integers.contains(name)
            let bytes = tensor.count * (integer ? 8 : 4)
            header[name] = ["dtype": integer ? "I64" : "F32", "shape": tensor.shape, "data_offsets": [offset, offset + bytes]] as [String: Any]
            offset += bytes
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
        while json.count % 8 != 0 { json.append(0x20) }
        var data = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(json)
        for (name, tensor) in tensors {
            if integers.contains(name) {
                for x in tensor.scalars {
                    withUnsafeBytes(of: Int64(exactly: x.rounded())?.littleEndian ?? 0) { data.append(contentsOf: $0) }
                }
                continue
            }
            tensor.scalars.withUnsafeBufferPointer { buffer in
                #if _endian(big)
                for x in buffer { withUnsafeBytes(of: x.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
                #else
                data.append(UnsafeBufferPointer(start: buffer.baseAddress, count: buffer.count))
                #endif
            }
        }
        return data
    }

    /// The largest header read (the reference library allows 100 MB; a Backprop header is a
    /// few kilobytes, and a smaller bound keeps a hostile file from making the JSON parser
    /// allocate hundreds of megabytes).
    public static let maximumHeaderSize = 1 << 24

    /// One tensor's entry in the header.
    public struct Entry: Sendable, Equatable {
        public var name: String
        /// `F32` or `I64`.
        public var dtype: String
        public var shape: [Int]
        /// The element count (the product of `shape`).
        public var count: Int
        /// The byte range in the data section (after the header).
        public var begin: Int, end: Int
    }

    /// A parsed and checked header: the tensors sorted by offset, the metadata, and where the
    /// data section starts in the file.
    public struct Header: Sendable {
        public var entries: [Entry]
        public var metadata: [String: String]
        /// The offset of the data section in the file (8 + the header length).
        public var dataStart: Int
        /// The entry for `name`, if any.
        public func entry(_ name: String) -> Entry? { entries.first { $0.name == name } }
    }

    /// The header length stored in a file's first 8 bytes, checked against the file's size and
    /// `maximumHeaderSize`.
    public static func headerLength(prefix: Data, fileSize: Int) throws(FormatError) -> Int {
        guard fileSize >= 8, prefix.count >= 8 else {
            throw FormatError(description: "file too short for a safetensors header (\(fileSize) bytes)")
        }
        let length = prefix.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard length <= UInt64(fileSize - 8) else {
            throw FormatError(description: "header length \(length) exceeds the file (\(fileSize) bytes)")
        }
        guard length <= UInt64(maximumHeaderSize) else {
            throw FormatError(description: "header length \(length) is over the \(maximumHeaderSize)-byte limit")
        }
        return Int(length)
    }

    /// Parses and checks a header's JSON as the reference library does: every entry well formed
    /// (a supported dtype, a shape of non-negative integers, two integer offsets), its byte
    /// count equal to its shape's, and the entries, in offset order, covering the data section
    /// exactly — contiguous from 0, no overlaps, no gaps, nothing after the last.
    /// - Parameters:
    ///   - json: the header's bytes (after the 8-byte length).
    ///   - dataSize: the size of the data section (the file's size minus 8 minus the header).
    public static func parseHeader(_ json: Data, dataSize: Int) throws(FormatError) -> Header {
        func fail(_ message: String) -> FormatError { FormatError(description: message) }
        guard json.first == UInt8(ascii: "{") else { throw fail("the header does not start with a JSON object") }
        let object: [String: Any]
        do {
            guard let decoded = try JSONSerialization.jsonObject(with: json) as? [String: Any] else {
                throw fail("header is not a JSON object")
            }
            object = decoded
        } catch let error as FormatError { throw error } catch {
            throw fail("header is not valid JSON")
        }
        var metadata: [String: String] = [:]
        var entries: [Entry] = []
        for (name, value) in object {
            if name == "__metadata__" {
                guard let m = value as? [String: String] else { throw fail("__metadata__ must map strings to strings") }
                metadata = m
                continue
            }
            guard let entry = value as? [String: Any], let dtype = entry["dtype"] as? String,
                  let shape = jsonIntegers(entry["shape"]), let offsets = jsonIntegers(entry["data_offsets"]), offsets.count == 2
            else { throw fail("tensor \(name): malformed entry") }
            guard dtype == "F32" || dtype == "I64" else { throw fail("tensor \(name): dtype \(dtype) is not supported (only F32, and I64 counts)") }
            let width = dtype == "F32" ? 4 : 8
            // Multiply with overflow checks: the header is untrusted input.
            var count: Int? = shape.allSatisfy({ $0 >= 0 }) ? 1 : nil
            for extent in shape {
                guard let c = count else { break }
                let (product, overflow) = c.multipliedReportingOverflow(by: extent)
                count = overflow || product > dataSize ? nil : product
            }
            guard let count, offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= dataSize,
                  offsets[1] - offsets[0] == count * width else {
                throw fail("tensor \(name): data_offsets \(offsets) do not fit shape \(shape) in a \(dataSize)-byte data section")
            }
            entries.append(Entry(name: name, dtype: dtype, shape: shape, count: count, begin: offsets[0], end: offsets[1]))
        }
        entries.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var covered = 0
        for entry in entries {
            guard entry.begin == covered else {
                throw fail(entry.begin < covered
                    ? "tensor \(entry.name): invalid offset: its data overlaps the tensor before it"
                    : "tensor \(entry.name): invalid offset: a gap of \(entry.begin - covered) bytes before its data")
            }
            covered = entry.end
        }
        guard covered == dataSize else {
            throw fail("file not fully covered: \(dataSize - covered) bytes after the last tensor's data")
        }
        return Header(entries: entries, metadata: metadata, dataStart: 0)
    }

    /// A tensor's values from its bytes (`entry.end - entry.begin` of them, little-endian).
    public static func tensor(_ entry: Entry, bytes: Data) -> Tensor<Float> {
        precondition(bytes.count == entry.end - entry.begin)
        if entry.dtype == "I64" {
            let values = (0..<entry.count).map { i in
                bytes[(bytes.startIndex + 8 * i)..<(bytes.startIndex + 8 * i + 8)].reversed().reduce(Int64(0)) { $0 << 8 | Int64($1) }
            }
            return Tensor<Float>(shape: entry.shape, scalars: values.map { Float($0) })
        }
        var scalars = [Float](repeating: 0, count: entry.count)
        _ = scalars.withUnsafeMutableBytes { destination in bytes.copyBytes(to: destination) }
        #if _endian(big)
        scalars = scalars.map { Float(bitPattern: UInt32(littleEndian: $0.bitPattern)) }
        #endif
        return Tensor<Float>(shape: entry.shape, scalars: scalars)
    }

    /// Decodes every tensor and the metadata of a file's bytes.
    /// - Throws: `FormatError` for a truncated file, a bad header, a dtype other than F32 or
    ///   I64, or offsets that do not match the shapes or do not cover the data exactly.
    public static func decode(_ data: Data) throws(FormatError) -> (tensors: [String: Tensor<Float>], metadata: [String: String]) {
        let data = data.startIndex == 0 ? data : Data(data)
        let length = try headerLength(prefix: data, fileSize: data.count)
        let header = try parseHeader(data.subdata(in: 8..<(8 + length)), dataSize: data.count - 8 - length)
        var tensors: [String: Tensor<Float>] = [:]
        for entry in header.entries {
            tensors[entry.name] = tensor(entry, bytes: data.subdata(in: (8 + length + entry.begin)..<(8 + length + entry.end)))
        }
        return (tensors, header.metadata)
    }

    /// A safetensors file opened for reading: its header is read and checked against the
    /// file's size; tensors are read one at a time on demand, so memory holds no more than the
    /// header and the tensors asked for.
    public final class File {
        public let url: URL
        public let header: Header
        private let handle: FileHandle

        /// Opens and checks `url` (a regular file; a FIFO or a folder is refused).
        /// - Throws: `FileError` when it cannot be opened, `FormatError` when it is not valid.
        public init(url: URL) throws {
            self.url = url
            let (handle, size) = try openRegularFile(url)
            self.handle = handle
            let prefix = try readBytes(handle, at: 0, count: min(size, 8), path: url.path)
            let length = try headerLength(prefix: prefix, fileSize: size)
            var header = try parseHeader(readBytes(handle, at: 8, count: length, path: url.path), dataSize: size - 8 - length)
            header.dataStart = 8 + length
            self.header = header
        }

        /// Reads one tensor.
        public func tensor(_ entry: Entry) throws(FileError) -> Tensor<Float> {
            Safetensors.tensor(entry, bytes: try readBytes(handle, at: header.dataStart + entry.begin, count: entry.end - entry.begin, path: url.path))
        }
    }
}

/// Integers decoded by `JSONSerialization`, or nil when `value` is not a list of whole
/// numbers (JSON `true` casts to 1 and `2.5` may cast too: both are refused).
public func jsonIntegers(_ value: Any?) -> [Int]? {
    guard let list = value as? [Any] else { return nil }
    var result: [Int] = []
    result.reserveCapacity(list.count)
    for item in list {
        guard let integer = jsonInteger(item) else { return nil }
        result.append(integer)
    }
    return result
}

/// A whole number decoded by `JSONSerialization`, or nil (`true`, `2.5`, `"3"`).
public func jsonInteger(_ value: Any?) -> Int? {
    guard let value, !isJSONBoolean(value) else { return nil }
    return value as? Int
}
