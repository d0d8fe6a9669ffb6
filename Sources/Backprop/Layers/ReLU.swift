/// The rectified linear unit, elementwise.
///
/// ```
/// forward:   y = max(x, 0)
/// backward:  ∂L/∂x = ∂L/∂y · [x > 0]      (the subgradient at 0 is taken as 0)
/// ```
/// `x > 0` exactly when `y > 0`, so the backward pass reads the saved output.
public final class ReLU<Scalar: NetworkScalar>: Layer {
    public var kind: String { "ReLU" }

    /// Creates a ReLU.
    public init() {}

    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] { inputShape }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func forward(_ input: Tensor<Scalar>, into output: inout Tensor<Scalar>, context: StepContext) {
        output.resize(to: input.shape)
        input.scalars.withUnsafeBufferPointer { x in
            output.scalars.withUnsafeMutableBufferPointer { y in
                Rectify.run(Rectify(source: x.baseAddress!, mask: nil, destination: y.baseAddress!, count: x.count))
            }
        }
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func backward(input: Tensor<Scalar>, output: Tensor<Scalar>, outputGradient: Tensor<Scalar>,
                         inputGradient: inout Tensor<Scalar>?, context: StepContext) {
        guard inputGradient != nil else { return }
        inputGradient!.resize(to: input.shape)
        output.scalars.withUnsafeBufferPointer { y in
            outputGradient.scalars.withUnsafeBufferPointer { dy in
                inputGradient!.scalars.withUnsafeMutableBufferPointer { dx in
                    Rectify.run(Rectify(source: dy.baseAddress!, mask: y.baseAddress!, destination: dx.baseAddress!, count: y.count))
                }
            }
        }
    }
}

/// One chunk of ReLU's forward pass (`y = max(x, 0)`) or, given the saved output as `mask`, of
/// its backward pass (`∂x = ∂y · [y > 0]`); chunks run in parallel.
private struct Rectify<Scalar: NetworkScalar>: ParallelWork {
    let source: UnsafePointer<Scalar>, mask: UnsafePointer<Scalar>?, destination: UnsafeMutablePointer<Scalar>
    let count: Int
    /// Elements per work item: large enough to amortize handing it to a thread.
    static var chunk: Int { 1 << 15 }

    static func run(_ work: Rectify) {
        Parallel.forEach((work.count + chunk - 1) / chunk, work)
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    func callAsFunction(_ part: Int) {
        let range = (part * Self.chunk)..<min(count, (part + 1) * Self.chunk)
        if let mask {
            for i in range { destination[i] = mask[i] > 0 ? source[i] : 0 }
        } else {
            for i in range { destination[i] = max(source[i], 0) }
        }
    }
}

/// `{"type": "relu"}`.
public struct ReLUSpec: LayerSpecKind {
    public static let typeName = "relu"
    public static let keysHelp = "no keys"
    public init() {}
    public init(reading reader: inout SpecReader) throws(SpecError) {}
    public var jsonKeys: [String: Any] { [:] }
    public func makeLayer<Scalar: NetworkScalar>(inputShape: [Int], path: String, using generator: inout SeededGenerator) throws(ShapeError) -> any Layer<Scalar> {
        ReLU<Scalar>()
    }
}

extension LayerSpec {
    /// A `relu` layer spec.
    public static var relu: LayerSpec { LayerSpec(ReLUSpec()) }
}
