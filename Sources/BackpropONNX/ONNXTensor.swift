import Backprop
import Foundation

/// A constant of an ONNX graph (an initializer or a `Constant` node's value): its dimensions,
/// checked, and its values, read on demand.
struct ConstantTensor {
    /// The dimensions (empty for a scalar).
    let dims: [Int]
    /// `dims`' product, overflow-checked and at most `maximumElements`.
    let count: Int
    private let proto: Onnx_TensorProto

    /// The most elements one constant may hold (1 GiB of float32).
    static let maximumElements = 1 << 28

    /// Checks the dimensions, the element type and that the data holds exactly `count` values —
    /// before anything is allocated for them.
    init(_ proto: Onnx_TensorProto, what: String) throws(ONNXError) {
        guard proto.dataLocation != .external else {
            throw ONNXError("\(what) keeps its data in an external file, which Backprop does not read")
        }
        guard !proto.hasSegment else { throw ONNXError("\(what) is segmented, which Backprop does not read") }
        guard proto.dims.count <= 8 else { throw ONNXError("\(what) has \(proto.dims.count) dimensions (at most 8)") }
        var count = 1
        for d in proto.dims {
            guard d >= 0, d <= Int64(Self.maximumElements) else { throw ONNXError("\(what) has a dimension of \(d)") }
            let (product, overflow) = count.multipliedReportingOverflow(by: Int(d))
            guard !overflow, product <= Self.maximumElements else {
                throw ONNXError("\(what) has \(proto.dims) elements, more than \(Self.maximumElements)")
            }
            count = product
        }
        let width: Int
        switch proto.dataType {
        case Int32(Onnx_TensorProto.DataType.float.rawValue), Int32(Onnx_TensorProto.DataType.int32.rawValue): width = 4
        case Int32(Onnx_TensorProto.DataType.double.rawValue), Int32(Onnx_TensorProto.DataType.int64.rawValue): width = 8
        default: throw ONNXError("\(what) has ONNX element type \(proto.dataType); Backprop reads float32, float64, int32 and int64")
        }
        let stored: Int
        if proto.hasRawData {
            guard proto.rawData.count == count * width else {
                throw ONNXError("\(what) has \(proto.rawData.count) bytes of data for \(count) values of \(width) bytes")
            }
            stored = count
        } else {
            switch Int(proto.dataType) {
            case Int(Onnx_TensorProto.DataType.float.rawValue): stored = proto.floatData.count
            case Int(Onnx_TensorProto.DataType.int32.rawValue): stored = proto.int32Data.count
            case Int(Onnx_TensorProto.DataType.double.rawValue): stored = proto.doubleData.count
            default: stored = proto.int64Data.count
            }
        }
        guard stored == count else { throw ONNXError("\(what) has \(stored) values for its shape \(proto.dims) (\(count))") }
        dims = proto.dims.map { Int($0) }
        self.count = count
        self.proto = proto
    }

    /// Whether the values are whole numbers (int32/int64).
    var isInteger: Bool {
        proto.dataType == Int32(Onnx_TensorProto.DataType.int32.rawValue) || proto.dataType == Int32(Onnx_TensorProto.DataType.int64.rawValue)
    }

    /// The values as `Double` (whatever the element type).
    var doubles: [Double] {
        let raw = proto.rawData
        switch Int(proto.dataType) {
        case Int(Onnx_TensorProto.DataType.float.rawValue):
            return proto.hasRawData ? littleEndian(raw, UInt32.self).map { Double(Float(bitPattern: $0)) } : proto.floatData.map(Double.init)
        case Int(Onnx_TensorProto.DataType.double.rawValue):
            return proto.hasRawData ? littleEndian(raw, UInt64.self).map { Double(bitPattern: $0) } : proto.doubleData
        case Int(Onnx_TensorProto.DataType.int32.rawValue):
            return proto.hasRawData ? littleEndian(raw, UInt32.self).map { Double(Int32(bitPattern: $0)) } : proto.int32Data.map(Double.init)
        default:
            return proto.hasRawData ? littleEndian(raw, UInt64.self).map { Double(Int64(bitPattern: $0)) } : proto.int64Data.map(Double.init)
        }
    }

    /// The values as float32, shaped `dims` (or `shape` when given; same count).
    func tensor(shape: [Int]? = nil) -> Tensor<Float> {
        let values: [Float]
        if proto.dataType == Int32(Onnx_TensorProto.DataType.float.rawValue) {
            values = proto.hasRawData ? littleEndian(proto.rawData, UInt32.self).map { Float(bitPattern: $0) } : proto.floatData
        } else {
            values = doubles.map { Float($0) }
        }
        return Tensor(shape: shape ?? dims, scalars: values)
    }

    /// The whole numbers, or nil when the values are not integers.
    var integers: [Int]? {
        let values = doubles
        guard values.allSatisfy({ $0 == $0.rounded() && abs($0) < 1e15 }) else { return nil }
        return values.map { Int($0) }
    }

    private func littleEndian<T: FixedWidthInteger>(_ data: Data, _: T.Type) -> [T] {
        let width = MemoryLayout<T>.size
        var out = [T](repeating: 0, count: data.count / width)
        data.withUnsafeBytes { bytes in
            for i in out.indices { out[i] = T(littleEndian: bytes.loadUnaligned(fromByteOffset: i * width, as: T.self)) }
        }
        return out
    }
}
