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

    /// Decodes every tensor and the metadata.
    /// - Throws: `FormatError` for a truncated file, a bad header, a dtype other than F32, or
    ///   offsets that do not match the shapes or the file.
    public static func decode(_ data: Data) throws(FormatError) -> (tensors: [String: Tensor<Float>], metadata: [String: String]) {
        func fail(_ message: String) -> FormatError { FormatError(description: message) }
        guard data.count >= 8 else { throw fail("file too short for a safetensors header (\(data.count) bytes)") }
        let headerLength = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard headerLength <= UInt64(data.count - 8) else {
            throw fail("header length \(headerLength) exceeds the file (\(data.count) bytes)")
        }
        let headerEnd = 8 + Int(headerLength)
        let header: [String: Any]
        do {
            guard let object = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<headerEnd)) as? [String: Any] else {
                throw fail("header is not a JSON object")
            }
            header = object
        } catch let error as FormatError { throw error } catch {
            throw fail("header is not valid JSON")
        }
        let body = data.count - headerEnd
        var metadata: [String: String] = [:]
        var tensors: [String: Tensor<Float>] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                guard let m = value as? [String: String] else { throw fail("__metadata__ must map strings to strings") }
                metadata = m
                continue
            }
            guard let entry = value as? [String: Any], let dtype = entry["dtype"] as? String,
                  let shape = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int], offsets.count == 2
            else { throw fail("tensor \(name): malformed entry") }
            guard dtype == "F32" || dtype == "I64" else { throw fail("tensor \(name): dtype \(dtype) is not supported (only F32, and I64 counts)") }
            let width = dtype == "F32" ? 4 : 8
            // Multiply with overflow checks: the header is untrusted input.
            var count: Int? = shape.allSatisfy({ $0 >= 0 }) ? 1 : nil
            for extent in shape {
                guard let c = count else { break }
                let (product, overflow) = c.multipliedReportingOverflow(by: extent)
                count = overflow || product > body ? nil : product
            }
            guard let count, offsets[0] >= 0, offsets[1] <= body, offsets[0] <= offsets[1],
                  offsets[1] - offsets[0] == count * width else {
                throw fail("tensor \(name): data_offsets \(offsets) do not fit shape \(shape) in a \(body)-byte body")
            }
            let start = data.startIndex + headerEnd + offsets[0]
            if width == 8 {
                let values = (0..<count).map { i in
                    data[(start + 8 * i)..<(start + 8 * i + 8)].reversed().reduce(Int64(0)) { $0 << 8 | Int64($1) }
                }
                tensors[name] = Tensor<Float>(shape: shape, scalars: values.map { Float($0) })
                continue
            }
            var scalars = [Float](repeating: 0, count: count)
            _ = scalars.withUnsafeMutableBytes { destination in
                data.copyBytes(to: destination, from: start..<(start + count * 4))
            }
            #if _endian(big)
            scalars = scalars.map { Float(bitPattern: UInt32(littleEndian: $0.bitPattern)) }
            #endif
            tensors[name] = Tensor<Float>(shape: shape, scalars: scalars)
        }
        return (tensors, metadata)
    }
}

/// Writes `data` to `url` atomically: to a temporary file in the same folder, then renamed over
/// the destination, so a crash or a full disk never leaves a half-written file at `url`.
public func writeAtomically(_ data: Data, to url: URL) throws {
    let folder = url.deletingLastPathComponent()
    let temporary = folder.appendingPathComponent(".\(url.lastPathComponent).\(ProcessInfo.processInfo.processIdentifier).tmp")
    do {
        try data.write(to: temporary)
        if rename(temporary.path, url.path) != 0 {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: url.path])
        }
    } catch {
        try? FileManager.default.removeItem(at: temporary)
        throw error
    }
}
