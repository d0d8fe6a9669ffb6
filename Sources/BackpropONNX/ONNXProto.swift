import Foundation

// The messages of ONNX's `onnx.proto` (onnx 1.23.2) that Backprop writes and reads, with the
// protobuf wire format written out by hand: the fields below, by their numbers in onnx.proto;
// every other field is skipped when reading. (apple/swift-protobuf was measured first: as a
// dependency, `swift test` also builds its plugin tools — protoc's C++ sources included — which
// cost more build time than this file is worth; see README, "ONNX".)
//
// Wire format (https://protobuf.dev/programming-guides/encoding/): a message is a sequence of
// fields, each a varint key `field << 3 | wire type` and a value: 0 varint, 1 little-endian
// 64 bits, 2 a varint length and that many bytes (strings, bytes, messages, packed repeated
// scalars), 5 little-endian 32 bits. Repeated scalars are read packed or not.

/// Malformed protobuf data: what and at which byte.
struct ProtoError: Error, CustomStringConvertible {
    var description: String
}

/// Appends fields in the wire format.
struct ProtoWriter {
    var data = Data()

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 { data.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        data.append(UInt8(v))
    }

    mutating func key(_ field: Int, _ wireType: Int) { varint(UInt64(field << 3 | wireType)) }

    mutating func int(_ field: Int, _ value: Int64) {
        key(field, 0)
        varint(UInt64(bitPattern: value))
    }

    mutating func float(_ field: Int, _ value: Float) {
        key(field, 5)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { data.append(contentsOf: $0) }
    }

    mutating func bytes(_ field: Int, _ value: Data) {
        key(field, 2)
        varint(UInt64(value.count))
        data.append(value)
    }

    mutating func string(_ field: Int, _ value: String) { bytes(field, Data(value.utf8)) }

    mutating func message<M: ProtoMessage>(_ field: Int, _ value: M) { bytes(field, value.serialized) }

    /// A packed repeated varint field (nothing when empty).
    mutating func packedInts(_ field: Int, _ values: [Int64]) {
        guard !values.isEmpty else { return }
        var inner = ProtoWriter()
        for v in values { inner.varint(UInt64(bitPattern: v)) }
        bytes(field, inner.data)
    }

    /// A packed repeated float field (nothing when empty).
    mutating func packedFloats(_ field: Int, _ values: [Float]) {
        guard !values.isEmpty else { return }
        var inner = Data(capacity: values.count * 4)
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { inner.append(contentsOf: $0) } }
        bytes(field, inner)
    }
}

/// Reads fields from `bytes[position..<end]`, checking every length against what is left.
struct ProtoReader {
    let bytes: [UInt8]
    var position: Int
    let end: Int
    /// How deep in nested messages this reader is (a limit against hostile nesting).
    let depth: Int

    static let maximumDepth = 32

    init(_ data: Data) {
        bytes = [UInt8](data)
        position = 0
        end = bytes.count
        depth = 0
    }

    private init(bytes: [UInt8], range: Range<Int>, depth: Int) {
        self.bytes = bytes
        position = range.lowerBound
        end = range.upperBound
        self.depth = depth
    }

    func fail(_ reason: String) -> ProtoError { ProtoError(description: "\(reason) at byte \(position)") }

    mutating func varint() throws(ProtoError) -> UInt64 {
        var value: UInt64 = 0
        for shift in stride(from: 0, to: 70, by: 7) {
            guard position < end else { throw fail("a truncated varint") }
            let byte = bytes[position]
            position += 1
            guard shift < 64 else { throw fail("a varint longer than 10 bytes") }
            value |= UInt64(byte & 0x7F) << UInt64(shift)
            if byte < 0x80 { return value }
        }
        throw fail("a varint longer than 10 bytes")
    }

    /// The next field's number and wire type, or nil at the end.
    mutating func next() throws(ProtoError) -> (field: Int, wireType: Int)? {
        guard position < end else { return nil }
        let key = try varint()
        let field = Int(truncatingIfNeeded: key >> 3), wireType = Int(key & 7)
        guard field > 0, field < 1 << 29 else { throw fail("field number \(key >> 3)") }
        return (field, wireType)
    }

    /// The range of a length-delimited value.
    mutating func lengthDelimited() throws(ProtoError) -> Range<Int> {
        let length = try varint()
        guard length <= UInt64(end - position) else { throw fail("a length of \(length) bytes with \(end - position) left") }
        let range = position ..< position + Int(length)
        position = range.upperBound
        return range
    }

    mutating func fixed32() throws(ProtoError) -> UInt32 {
        guard end - position >= 4 else { throw fail("a truncated 32-bit value") }
        defer { position += 4 }
        return (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[position + $1]) << UInt32(8 * $1) }
    }

    mutating func fixed64() throws(ProtoError) -> UInt64 {
        guard end - position >= 8 else { throw fail("a truncated 64-bit value") }
        defer { position += 8 }
        return (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[position + $1]) << UInt64(8 * $1) }
    }

    /// Skips a field's value.
    mutating func skip(_ wireType: Int) throws(ProtoError) {
        switch wireType {
        case 0: _ = try varint()
        case 1: _ = try fixed64()
        case 2: _ = try lengthDelimited()
        case 5: _ = try fixed32()
        default: throw fail("wire type \(wireType)")
        }
    }

    /// Checks the wire type a field must have.
    func expect(_ wireType: Int, _ actual: Int, field: Int) throws(ProtoError) {
        guard wireType == actual else { throw fail("field \(field) has wire type \(actual), not \(wireType)") }
    }

    // Typed values.

    mutating func int64(_ wireType: Int, field: Int) throws(ProtoError) -> Int64 {
        try expect(0, wireType, field: field)
        return Int64(bitPattern: try varint())
    }

    mutating func float(_ wireType: Int, field: Int) throws(ProtoError) -> Float {
        try expect(5, wireType, field: field)
        return Float(bitPattern: try fixed32())
    }

    mutating func data(_ wireType: Int, field: Int) throws(ProtoError) -> Data {
        try expect(2, wireType, field: field)
        return Data(bytes[try lengthDelimited()])
    }

    mutating func string(_ wireType: Int, field: Int) throws(ProtoError) -> String {
        try expect(2, wireType, field: field)
        return String(decoding: bytes[try lengthDelimited()], as: UTF8.self)
    }

    mutating func message<M: ProtoMessage>(_ wireType: Int, field: Int) throws(ProtoError) -> M {
        try expect(2, wireType, field: field)
        guard depth < Self.maximumDepth else { throw fail("messages nested deeper than \(Self.maximumDepth)") }
        var inner = ProtoReader(bytes: bytes, range: try lengthDelimited(), depth: depth + 1)
        return try M(reading: &inner)
    }

    /// A repeated varint field's values, packed or one.
    mutating func ints(_ wireType: Int, field: Int) throws(ProtoError) -> [Int64] {
        guard wireType == 2 else { return [try int64(wireType, field: field)] }
        var inner = ProtoReader(bytes: bytes, range: try lengthDelimited(), depth: depth)
        var values: [Int64] = []
        while inner.position < inner.end { values.append(Int64(bitPattern: try inner.varint())) }
        return values
    }

    /// A repeated float (fixed32) field's values, packed or one.
    mutating func floats(_ wireType: Int, field: Int) throws(ProtoError) -> [Float] {
        guard wireType == 2 else { return [try float(wireType, field: field)] }
        let range = try lengthDelimited()
        guard range.count % 4 == 0 else { throw fail("packed floats of \(range.count) bytes") }
        var inner = ProtoReader(bytes: bytes, range: range, depth: depth)
        var values: [Float] = []
        values.reserveCapacity(range.count / 4)
        while inner.position < inner.end { values.append(Float(bitPattern: try inner.fixed32())) }
        return values
    }

    /// A repeated double (fixed64) field's values, packed or one.
    mutating func doubles(_ wireType: Int, field: Int) throws(ProtoError) -> [Double] {
        if wireType == 1 { return [Double(bitPattern: try fixed64())] }
        try expect(2, wireType, field: field)
        let range = try lengthDelimited()
        guard range.count % 8 == 0 else { throw fail("packed doubles of \(range.count) bytes") }
        var inner = ProtoReader(bytes: bytes, range: range, depth: depth)
        var values: [Double] = []
        while inner.position < inner.end { values.append(Double(bitPattern: try inner.fixed64())) }
        return values
    }
}

/// A message: written field by field, read by field number (unknown fields skipped).
protocol ProtoMessage {
    init()
    func write(to writer: inout ProtoWriter)
    /// Reads one field (skipping it when unknown).
    mutating func read(field: Int, wireType: Int, from reader: inout ProtoReader) throws(ProtoError)
}

extension ProtoMessage {
    init(reading reader: inout ProtoReader) throws(ProtoError) {
        self.init()
        while let (field, wireType) = try reader.next() { try read(field: field, wireType: wireType, from: &reader) }
    }

    /// The message's bytes.
    var serialized: Data {
        var writer = ProtoWriter()
        write(to: &writer)
        return writer.data
    }

    /// The message's bytes (throwing for the callers' `try`, as protobuf libraries do).
    func serializedBytes() throws -> Data { serialized }

    /// Reads a message from its bytes.
    init(serializedBytes data: Data) throws(ProtoError) {
        var reader = ProtoReader(data)
        try self.init(reading: &reader)
    }
}

// MARK: - onnx.proto's messages

/// `ModelProto`: the graph, the operator sets it uses, and metadata.
struct Onnx_ModelProto: ProtoMessage {
    var irVersion: Int64 = 0                                  // 1
    var producerName = ""                                     // 2
    var producerVersion = ""                                  // 3
    var domain = ""                                           // 4
    var modelVersion: Int64 = 0                               // 5
    var docString = ""                                        // 6
    var graph: Onnx_GraphProto { get { _graph ?? Onnx_GraphProto() } set { _graph = newValue } }  // 7
    var opsetImport: [Onnx_OperatorSetIdProto] = []           // 8
    var metadataProps: [Onnx_StringStringEntryProto] = []     // 14
    private var _graph: Onnx_GraphProto?

    var hasGraph: Bool { _graph != nil }
    mutating func clearGraph() { _graph = nil }

    func write(to w: inout ProtoWriter) {
        w.int(1, irVersion)
        if !producerName.isEmpty { w.string(2, producerName) }
        if !producerVersion.isEmpty { w.string(3, producerVersion) }
        if !domain.isEmpty { w.string(4, domain) }
        if modelVersion != 0 { w.int(5, modelVersion) }
        if !docString.isEmpty { w.string(6, docString) }
        if let _graph { w.message(7, _graph) }
        for o in opsetImport { w.message(8, o) }
        for p in metadataProps { w.message(14, p) }
    }

    mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws(ProtoError) {
        switch field {
        case 1: irVersion = try r.int64(wireType, field: field)
        case 2: producerName = try r.string(wireType, field: field)
        case 3: producerVersion = try r.string(wireType, field: field)
        case 4: domain = try r.string(wireType, field: field)
        case 5: modelVersion = try r.int64(wireType, field: field)
        case 6: docString = try r.string(wireType, field: field)
        case 7: _graph = try r.message(wireType, field: field)
        case 8: opsetImport.append(try r.message(wireType, field: field))
        case 14: metadataProps.append(try r.message(wireType, field: field))
        default: try r.skip(wireType)
        }
    }
}

/// `OperatorSetIdProto`: a domain ("" for the standard operators) and its version.
struct Onnx_OperatorSetIdProto: ProtoMessage {
    var domain = ""           // 1
    var version: Int64 = 0    // 2

    func write(to w: inout ProtoWriter) {
        w.string(1, domain)
        w.int(2, version)
    }

    mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws(ProtoError) {
        switch field {
        case 1: domain = try r.string(wireType, field: field)
        case 2: version = try r.int64(wireType, field: field)
        default: try r.skip(wireType)
        }
    }
}

/// `StringStringEntryProto`: one `metadata_props` entry.
struct Onnx_StringStringEntryProto: ProtoMessage {
    var key = ""      // 1
    var value = ""    // 2

    func write(to w: inout ProtoWriter) {
        w.string(1, key)
        w.string(2, value)
    }

    mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws(ProtoError) {
        switch field {
        case 1: key = try r.string(wireType, field: field)
        case 2: value = try r.string(wireType, field: field)
        default: try r.skip(wireType)
        }
    }
}

/// `GraphProto`: nodes, constants (initializers), inputs and outputs.
struct Onnx_GraphProto: ProtoMessage {
    var node: [Onnx_NodeProto] = []               // 1
    var name = ""                                 // 2
    var initializer: [Onnx_TensorProto] = []      // 5
    var docString = ""                            // 10
    var input: [Onnx_ValueInfoProto] = []         // 11
    var output: [Onnx_ValueInfoProto] = []        // 12
    var valueInfo: [Onnx_ValueInfoProto] = []     // 13

    func write(to w: inout ProtoWriter) {
        for n in node { w.message(1, n) }
        if !name.isEmpty { w.string(2, name) }
        for t in initializer { w.message(5, t) }
        if !docString.isEmpty { w.string(10, docString) }
        for i in input { w.message(11, i) }
        for o in output { w.message(12, o) }
        for v in valueInfo { w.message(13, v) }
    }

    mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws(ProtoError) {
        switch field {
        case 1: node.append(try r.message(wireType, field: field))
        case 2: name = try r.string(wireType, field: field)
        case 5: initializer.append(try r.message(wireType, field: field))
        case 10: docString = try r.string(wireType, field: field)
        case 11: input.append(try r.message(wireType, field: field))
        case 12: output.append(try r.message(wireType, field: field))
        case 13: valueInfo.append(try r.message(wireType, field: field))
        default: try r.skip(wireType)
        }
    }
}

/// `NodeProto`: one operator applied to named tensors.
struct Onnx_NodeProto: ProtoMessage {
    var input: [String] = []                  // 1
    var output: [String] = []                 // 2
    var name = ""                             // 3
    var opType = ""                           // 4
    var attribute: [Onnx_AttributeProto] = [] // 5
    var docString = ""                        // 6
    var domain = ""                           // 7

    func write(to w: inout ProtoWriter) {
        for i in input { w.string(1, i) }
        for o in output { w.string(2, o) }
        if !name.isEmpty { w.string(3, name) }
        w.string(4, opType)
        for a in attribute { w.message(5, a) }
        if !docString.isEmpty { w.string(6, docString) }
        if !domain.isEmpty { w.string(7, domain) }
    }

    mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws(ProtoError) {
        switch field {
        case 1: input.append(try r.string(wireType, field: field))
        case 2: output.append(try r.string(wireType, field: field))
        case 3: name = try r.string(wireType, field: field)
        case 4: opType = try r.string(wireType, field: field)
        case 5: attribute.append(try r.message(wireType, field: field))
        case 6: docString = try r.string(wireType, field: field)
        case 7: domain = try r.string(wireType, field: field)
        default: try r.skip(wireType)
        }
    }
}

/// `AttributeProto`: a node's named setting (the kinds Backprop uses; graphs and others skipped).
struct Onnx_AttributeProto: ProtoMessage {
    /// `AttributeProto.AttributeType`.
    enum AttributeType: Int64 {
        case undefined = 0, float = 1, int = 2, string = 3, tensor = 4, graph = 5
        case floats = 6, ints = 7, strings = 8, tensors = 9, graphs = 10, sparseTensor = 11, sparseTensors = 12
        case typeProto = 13, typeProtos = 14
    }

    var name = ""                           // 1
    var f: Float { get { _f ?? 0 } set { _f = newValue } }       // 2
    var i: Int64 { get { _i ?? 0 } set { _i = newValue } }      // 3
    var s = Data()                          // 4
    var t: Onnx_TensorProto { get { _t ?? Onnx_TensorProto() } set { _t = newValue } }  // 5
    var floats: [Float] = []                // 7
    var ints: [Int64] = []                  // 8
    var type: AttributeType = .undefined    // 20
    private var _f: Float?, _i: Int64?, _t: Onnx_TensorProto?

    var hasF: Bool { _f != nil }
    var hasI: Bool { _i != nil }
    var hasT: Bool { _t != nil }

    func write(to w: inout ProtoWriter) {
        w.string(1, name)
        if let _f { w.float(2, _f) }
        if let _i { w.int(3, _i) }
        if !s.isEmpty { w.bytes(4, s) }
        if let _t { w.message(5, _t) }
        for v in floats { w.float(7, v) }
        for v in ints { w.int(8, v) }
        w.int(20, type.rawValue)
    }

    mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws(ProtoError) {
        switch field {
        case 1: name = try r.string(wireType, field: field)
        case 2: _f = try r.float(wireType, field: field)
        case 3: _i = try r.int64(wireType, field: field)
        case 4: s = try r.data(wireType, field: field)
        case 5: _t = try r.message(wireType, field: field)
        case 7: floats += try r.floats(wireType, field: field)
        case 8: ints += try r.ints(wireType, field: field)
        case 20: type = AttributeType(rawValue: try r.int64(wireType, field: field)) ?? .undefined
        default: try r.skip(wireType)
        }
    }
}

/// `TensorProto`: a constant's dimensions, element type and values.
struct Onnx_TensorProto: ProtoMessage {
    /// `TensorProto.DataType` (the codes Backprop names).
    enum DataType: Int32 {
        case undefined = 0, float = 1, uint8 = 2, int8 = 3, uint16 = 4, int16 = 5, int32 = 6, int64 = 7
        case string = 8, bool = 9, float16 = 10, double = 11
    }

    /// `TensorProto.DataLocation`.
    enum DataLocation: Int64 { case `default` = 0, external = 1 }

    var dims: [Int64] = []              // 1
    var dataType: Int32 = 0             // 2
    var hasSegment = false              // 3 (only noted: segments are refused)
    var floatData: [Float] = []         // 4
    var int32Data: [Int32] = []         // 5
    var int64Data: [Int64] = []         // 7
    var name = ""                       // 8
    var rawData: Data { get { _rawData ?? Data() } set { _rawData = newValue } }  // 9
    var doubleData: [Double] = []       // 10
    var dataLocation: DataLocation = .default  // 14
    private var _rawData: Data?

    var hasRawData: Bool { _rawData != nil }

    func write(to w: inout ProtoWriter) {
        for d in dims { w.int(1, d) }   // not packed in onnx.proto (proto2)
        w.int(2, Int64(dataType))
        w.packedFloats(4, floatData)
        w.packedInts(5, int32Data.map(Int64.init))
        w.packedInts(7, int64Data)
        w.string(8, name)
        if let _rawData { w.bytes(9, _rawData) }
        if dataLocation != .default { w.int(14, dataLocation.rawValue) }
    }

    mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws(ProtoError) {
        switch field {
        case 1: dims += try r.ints(wireType, field: field)
        case 2: dataType = Int32(truncatingIfNeeded: try r.int64(wireType, field: field))
        case 3: hasSegment = true; try r.skip(wireType)
        case 4: floatData += try r.floats(wireType, field: field)
        case 5: int32Data += try r.ints(wireType, field: field).map { Int32(truncatingIfNeeded: $0) }
        case 7: int64Data += try r.ints(wireType, field: field)
        case 8: name = try r.string(wireType, field: field)
        case 9: _rawData = try r.data(wireType, field: field)
        case 10: doubleData += try r.doubles(wireType, field: field)
        case 14: dataLocation = DataLocation(rawValue: try r.int64(wireType, field: field)) ?? .external
        default: try r.skip(wireType)
        }
    }
}

/// `ValueInfoProto`: a graph input's or output's name and type.
struct Onnx_ValueInfoProto: ProtoMessage {
    var name = ""                                 // 1
    var type = Onnx_TypeProto()                   // 2

    func write(to w: inout ProtoWriter) {
        w.string(1, name)
        w.message(2, type)
    }

    mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws(ProtoError) {
        switch field {
        case 1: name = try r.string(wireType, field: field)
        case 2: type = try r.message(wireType, field: field)
        default: try r.skip(wireType)
        }
    }
}

/// `TypeProto`, its tensor case only (sequences, maps… are skipped).
struct Onnx_TypeProto: ProtoMessage {
    /// `TypeProto.Tensor`: element type and shape.
    struct Tensor: ProtoMessage {
        var elemType: Int32 = 0                  // 1
        var shape = Onnx_TensorShapeProto()      // 2

        func write(to w: inout ProtoWriter) {
            w.int(1, Int64(elemType))
            w.message(2, shape)
        }

        mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws(ProtoError) {
            switch field {
            case 1: elemType = Int32(truncatingIfNeeded: try r.int64(wireType, field: field))
            case 2: shape = try r.message(wireType, field: field)
            default: try r.skip(wireType)
            }
        }
    }

    var tensorType = Tensor()      // 1

    func write(to w: inout ProtoWriter) { w.message(1, tensorType) }

    mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws(ProtoError) {
        switch field {
        case 1: tensorType = try r.message(wireType, field: field)
        default: try r.skip(wireType)
        }
    }
}

/// `TensorShapeProto`: dimensions, each a size or a name (a free one).
struct Onnx_TensorShapeProto: ProtoMessage {
    struct Dimension: ProtoMessage {
        enum Value: Equatable { case dimValue(Int64), dimParam(String) }

        var value: Value?     // oneof: dim_value 1, dim_param 2

        var dimValue: Int64 {
            get { if case .dimValue(let v)? = value { return v } else { return 0 } }
            set { value = .dimValue(newValue) }
        }
        var dimParam: String {
            get { if case .dimParam(let p)? = value { return p } else { return "" } }
            set { value = .dimParam(newValue) }
        }

        func write(to w: inout ProtoWriter) {
            switch value {
            case .dimValue(let v)?: w.int(1, v)
            case .dimParam(let p)?: w.string(2, p)
            case nil: break
            }
        }

        mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws(ProtoError) {
            switch field {
            case 1: value = .dimValue(try r.int64(wireType, field: field))
            case 2: value = .dimParam(try r.string(wireType, field: field))
            default: try r.skip(wireType)
            }
        }
    }

    var dim: [Dimension] = []     // 1

    func write(to w: inout ProtoWriter) { for d in dim { w.message(1, d) } }

    mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws(ProtoError) {
        switch field {
        case 1: dim.append(try r.message(wireType, field: field))
        default: try r.skip(wireType)
        }
    }
}
