/// A trainable tensor and the gradient of the loss with respect to it.
///
/// Gradients **accumulate**: a layer's `backward` adds into `gradient`; zeroing is the
/// caller's separate step (`Sequential.zeroGradients()`).
public final class Parameter<Scalar: NetworkScalar> {
    /// The name within its layer, as PyTorch names it: `weight` or `bias`.
    public let name: String
    /// The current value.
    public var value: Tensor<Scalar>
    /// `∂L/∂value`, same shape as `value`.
    public var gradient: Tensor<Scalar>

    /// Creates a parameter with a zero gradient.
    public init(name: String, value: Tensor<Scalar>) {
        self.name = name
        self.value = value
        self.gradient = Tensor(shape: value.shape)
    }
}

/// One differentiable stage of a network.
///
/// Shapes passed to `forward`/`backward` include the batch dimension `N` first; the layer's
/// buffers' layouts are documented on each type. The network (`Sequential`) owns the
/// activations and passes each layer its saved input and output explicitly, so a layer holds
/// only its parameters and whatever extra forward state it documents (e.g. max-pool argmaxes).
public protocol Layer<Scalar>: AnyObject {
    /// The element type: `Float` or `Double`.
    associatedtype Scalar: NetworkScalar

    /// The layer's kind as shown in summaries, e.g. `Conv2D`.
    var kind: String { get }

    /// The layer's settings in a few words, e.g. `5x5, 1→16, pad 2`.
    var settings: String { get }

    /// The trainable parameters, weight first (empty for parameter-free layers).
    var parameters: [Parameter<Scalar>] { get }

    /// The shape of one output example for one input example of shape `inputShape`
    /// (no batch dimension), or a `ShapeError` when the input does not fit.
    func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int]

    /// Computes the output for a batch.
    /// - Parameters:
    ///   - input: `[N, …input example shape]`.
    ///   - output: resized and overwritten with `[N, …output example shape]`.
    func forward(_ input: Tensor<Scalar>, into output: inout Tensor<Scalar>)

    /// Back-propagates one batch: adds `∂L/∂parameters` into each parameter's `gradient` and,
    /// when `inputGradient` is non-nil, overwrites it with `∂L/∂input`.
    /// - Parameters:
    ///   - input: the input given to the last `forward`.
    ///   - output: the output that `forward` produced from it.
    ///   - outputGradient: `∂L/∂output`, shaped like `output`.
    ///   - inputGradient: resized and overwritten with `∂L/∂input`, shaped like `input`;
    ///     `nil` for the first layer, whose input gradient nobody needs.
    func backward(input: Tensor<Scalar>, output: Tensor<Scalar>, outputGradient: Tensor<Scalar>, inputGradient: inout Tensor<Scalar>?)
}

extension Layer {
    /// Runs `forward` into a new tensor (convenient; training uses the buffer-reusing form).
    public func callAsFunction(_ input: Tensor<Scalar>) -> Tensor<Scalar> {
        var output = Tensor<Scalar>(shape: [])
        forward(input, into: &output)
        return output
    }

    public var parameters: [Parameter<Scalar>] { [] }
    public var settings: String { "" }
}

/// A network whose layers' shapes do not fit together.
public struct ShapeError: Error, CustomStringConvertible, Sendable {
    /// One line naming the layer, the shape it got and the shape it needs.
    public var description: String

    /// Creates an error with a one-line message.
    public init(_ description: String) { self.description = description }
}
