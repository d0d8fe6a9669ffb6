import Foundation

/// A dense, contiguous array of `Scalar` (`Float` for training, `Double` for gradient checks) with a shape.
///
/// ## Layout
/// Elements are stored **row-major**: the last dimension varies fastest. Image batches are
/// **NCHW** — `shape == [N, C, H, W]`, element `(n, c, h, w)` at
/// `((n * C + c) * H + h) * W + w` — the layout PyTorch uses, so that
/// - one image's channels are contiguous planes, which `im2col` turns into a `[C*kh*kw, H*W]`
///   matrix and one GEMM with the `[Cout, C*kh*kw]` weight matrix yields the `[Cout, H*W]`
///   output planes directly, with no transposes;
/// - flattening an image gives PyTorch's `nn.Flatten` order `(c, h, w)`.
///
/// Feature batches are `[N, F]`. Shapes passed between layers include the batch dimension;
/// *example shapes* (without `N`) are used for shape checks.
public struct Tensor<Scalar: NetworkScalar>: Sendable, Equatable {
    /// The extent of each dimension, outermost first.
    public private(set) var shape: [Int]
    /// The elements in row-major order; `scalars.count == shape.reduce(1, *)`.
    public var scalars: [Scalar]

    /// Creates a tensor of the given shape filled with `value`.
    public init(shape: [Int], repeating value: Scalar = 0) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        self.scalars = [Scalar](repeating: value, count: shape.reduce(1, *))
    }

    /// Creates a tensor from row-major `scalars`.
    public init(shape: [Int], scalars: [Scalar]) {
        precondition(shape.reduce(1, *) == scalars.count,
                     "shape \(shape) needs \(shape.reduce(1, *)) scalars, got \(scalars.count)")
        self.shape = shape
        self.scalars = scalars
    }

    /// The number of elements.
    @inlinable public var count: Int { scalars.count }

    /// The first dimension (the batch size for batched tensors).
    public var batchSize: Int { shape.first ?? 1 }

    /// The same values in another scalar type (e.g. a `Float` network's weights as `Double`).
    public func converted<Other: NetworkScalar>(to _: Other.Type = Other.self) -> Tensor<Other> {
        Tensor<Other>(shape: shape, scalars: scalars.map { Other($0) })
    }

    /// Reinterprets the elements with a new shape of the same element count.
    public func reshaped(to newShape: [Int]) -> Tensor {
        Tensor(shape: newShape, scalars: scalars)
    }

    /// Changes the shape in place, keeping the storage (its capacity is reused when it shrinks
    /// or regrows to a size seen before, so per-step buffers don't reallocate).
    public mutating func resize(to newShape: [Int]) {
        let newCount = newShape.reduce(1, *)
        shape = newShape
        if scalars.count != newCount {
            if scalars.count > newCount {
                scalars.removeLast(scalars.count - newCount)
            } else {
                scalars.append(contentsOf: repeatElement(0, count: newCount - scalars.count))
            }
        }
    }

    /// Resizes to `[n, c, h, w]`; builds no shape array (allocates nothing) when the tensor
    /// already has that shape, as it does from the second training step on.
    @inline(__always)
    public mutating func resize(_ n: Int, _ c: Int, _ h: Int, _ w: Int) {
        if shape.count == 4 && shape[0] == n && shape[1] == c && shape[2] == h && shape[3] == w { return }
        resize(to: [n, c, h, w])
    }

    /// Resizes to `[n, features]`, allocating nothing when the shape is already that.
    @inline(__always)
    public mutating func resize(_ n: Int, _ features: Int) {
        if shape.count == 2 && shape[0] == n && shape[1] == features { return }
        resize(to: [n, features])
    }

    /// Resizes to `[n] + example`, allocating nothing when the shape is already that.
    public mutating func resize(batchSize n: Int, example: [Int]) {
        if shape.count == example.count + 1 && shape[0] == n && shape.dropFirst().elementsEqual(example) { return }
        resize(to: [n] + example)
    }

    /// Makes this tensor a copy of `other`, reusing its own storage when the sizes match (so a
    /// caller may go on mutating `other`'s buffer without triggering a copy-on-write).
    public mutating func assign(_ other: Tensor) {
        if shape != other.shape { shape = other.shape }
        if scalars.count != other.count {
            scalars = other.scalars
            return
        }
        scalars.withUnsafeMutableBufferPointer { destination in
            _ = other.scalars.withUnsafeBufferPointer { destination.update(fromContentsOf: $0) }
        }
    }

    /// Sets every element to zero.
    public mutating func zero() {
        scalars.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    }

    /// The element at a multi-dimensional index (slow; for tests and small examples).
    public subscript(_ index: Int...) -> Scalar {
        get { scalars[offset(of: index)] }
        set { scalars[offset(of: index)] = newValue }
    }

    private func offset(of index: [Int]) -> Int {
        precondition(index.count == shape.count, "index \(index) for shape \(shape)")
        var offset = 0
        for (i, extent) in zip(index, shape) {
            precondition(i >= 0 && i < extent, "index \(index) out of range for shape \(shape)")
            offset = offset * extent + i
        }
        return offset
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let head = scalars.prefix(8).map { String(format: "%.4g", Double($0)) }.joined(separator: ", ")
        return "Tensor(\(shape), [\(head)\(count > 8 ? ", …" : "")])"
    }
}

/// Formats a shape the way PyTorch prints it, e.g. `16x14x14`.
public func describe(shape: [Int]) -> String {
    shape.map(String.init).joined(separator: "x")
}

extension Tensor {
    /// A tensor of independent `N(0, standardDeviation²)` samples drawn from `generator`
    /// in row-major order.
    public static func randomNormal(shape: [Int], standardDeviation: Scalar, using generator: inout SeededGenerator) -> Tensor {
        var t = Tensor(shape: shape)
        for i in 0..<t.count { t.scalars[i] = Scalar(generator.nextNormal()) * standardDeviation }
        return t
    }
}

/// `Σ x[0..<count]`, summed in eight interleaved partial sums (so the additions can overlap and
/// vectorize) and then combined in a fixed order: the result depends only on the data.
@inline(__always)
func sum<Scalar: NetworkScalar>(_ x: UnsafePointer<Scalar>, count: Int) -> Scalar {
    var partial: (Scalar, Scalar, Scalar, Scalar, Scalar, Scalar, Scalar, Scalar) = (0, 0, 0, 0, 0, 0, 0, 0)
    var i = 0
    while i + 8 <= count {
        partial.0 += x[i]; partial.1 += x[i + 1]; partial.2 += x[i + 2]; partial.3 += x[i + 3]
        partial.4 += x[i + 4]; partial.5 += x[i + 5]; partial.6 += x[i + 6]; partial.7 += x[i + 7]
        i += 8
    }
    var total = ((partial.0 + partial.1) + (partial.2 + partial.3)) + ((partial.4 + partial.5) + (partial.6 + partial.7))
    while i < count { total += x[i]; i += 1 }
    return total
}
