/// A trainable tensor and the gradient of the loss with respect to it.
///
/// Gradients **accumulate**: a layer's `backward` adds into `gradient`; zeroing is the
/// caller's separate step (`Network.zeroGradients()`).
public final class Parameter<Scalar: NetworkScalar> {
    /// The name within its layer, as PyTorch names it: `weight` or `bias`.
    public let name: String
    /// The current value.
    public var value: Tensor<Scalar>
    /// `∂L/∂value`, same shape as `value`.
    public var gradient: Tensor<Scalar>
    /// Whether optimizers that honour the flag (`PyTorchSGD`, `AdamW`) apply weight decay to it.
    /// Layers set it: `true` for weights of convolutions and dense layers, `false` for biases
    /// and normalisation parameters. The course's `SGD` decays every parameter regardless.
    public var decays: Bool
    /// `false` for a frozen parameter: optimizers leave it as it is (its gradient may still be
    /// computed, e.g. by a gradient check).
    public var isTrainable: Bool
    /// A factor on the optimizer's learning rate for this parameter (a PyTorch parameter group's
    /// `lr` over the base; airbench trains BatchNorm biases 64 times faster). Honoured by
    /// `PyTorchSGD` and `AdamW`; it does not scale weight decay.
    public var learningRateScale: Double = 1
    /// Trained only during a run's first `trainingEpochs` epochs, frozen after (the trainer sets
    /// `isTrainable` before each step); `nil`: trained for the whole run. airbench trains its
    /// frozen whitening convolution's bias for 3 epochs.
    public var trainingEpochs: Int?

    /// Creates a parameter with a zero gradient.
    public init(name: String, value: Tensor<Scalar>, decays: Bool = true, isTrainable: Bool = true) {
        self.name = name
        self.value = value
        self.gradient = Tensor(shape: value.shape)
        self.decays = decays
        self.isTrainable = isTrainable
    }
}

/// State a layer keeps beside its parameters that is not trained by gradients, e.g.
/// BatchNorm's `running_mean`, `running_var` and `num_batches_tracked`. Saved in model files
/// under the same dotted paths as parameters, like PyTorch's persistent buffers.
public final class Buffer<Scalar: NetworkScalar> {
    /// How a buffer is stored in a model file.
    public enum Storage: Sendable {
        /// 32-bit floats (`F32`).
        case floating
        /// A count stored as 64-bit integers (`I64`), as PyTorch stores `num_batches_tracked`.
        case integer
    }
    /// The name within its layer, e.g. `running_mean`.
    public let name: String
    /// The current value (an `integer` buffer holds whole numbers).
    public var value: Tensor<Scalar>
    public let storage: Storage

    /// Creates a buffer.
    public init(name: String, value: Tensor<Scalar>, storage: Storage = .floating) {
        self.name = name
        self.value = value
        self.storage = storage
    }
}

/// What one forward or backward pass is part of, passed down the layer tree (no layer reads a
/// global).
///
/// A random layer (dropout) derives its mask from `seed`, `step` and the example's index in the
/// whole batch, `exampleOffset + n` for row `n` of the slice it is given: so the mask is the
/// same however the batch is sliced and however many threads run it.
public struct StepContext: Sendable, Equatable {
    /// Training (batch statistics, dropout) or inference (running statistics, no dropout).
    public enum Phase: Sendable, Equatable { case training, inference }

    public var phase: Phase
    /// The run's seed for random layers.
    public var seed: UInt64
    /// The training iteration (1-based; 0 outside training).
    public var step: Int
    /// The index, within the whole batch, of the first example of the tensor being passed.
    public var exampleOffset: Int
    /// Whether `backward` may leave out what only frozen parameters would need: the layers in
    /// front of a network's first trainable parameter (e.g. a frozen whitening convolution and
    /// the activation after it), the input gradient of the layer that holds it, and a frozen
    /// convolution weight's gradient (airbench's whitening filters while their bias trains).
    /// No optimizer reads those gradients. A training step sets it; a gradient check, which
    /// checks frozen parameters too, does not.
    public var skipsFrozenPrefix: Bool

    public init(phase: Phase, seed: UInt64 = 0, step: Int = 0, exampleOffset: Int = 0, skipsFrozenPrefix: Bool = false) {
        self.phase = phase
        self.seed = seed
        self.step = step
        self.exampleOffset = exampleOffset
        self.skipsFrozenPrefix = skipsFrozenPrefix
    }

    /// Inference: running statistics, no dropout.
    public static let inference = StepContext(phase: .inference)

    /// Training at `step` with `seed`, for the whole batch.
    public static func training(seed: UInt64 = 0, step: Int = 0) -> StepContext {
        StepContext(phase: .training, seed: seed, step: step)
    }

    /// Whether this is a training pass.
    @inlinable public var isTraining: Bool { phase == .training }
}

/// One differentiable stage of a network — a single operation or a container of layers.
///
/// Shapes passed to `forward`/`backward` include the batch dimension `N` first; each layer's
/// buffers' layouts are documented on its type. Whoever holds a layer (a container or the
/// `Network`) owns the activations around it and passes the layer its saved input and output
/// explicitly, so a layer holds only its parameters, buffers and whatever extra forward state it
/// documents (e.g. max-pool argmaxes, batch statistics).
///
/// **Gradients meet in containers.** `backward` *overwrites* `inputGradient`; where two paths
/// read the same tensor (a residual block's main path and shortcut), the container that splits
/// the paths adds their input gradients. Parameter gradients accumulate.
public protocol Layer<Scalar>: AnyObject {
    /// The element type: `Float` or `Double`.
    associatedtype Scalar: NetworkScalar

    /// The layer's kind as shown in summaries, e.g. `Conv2D`.
    var kind: String { get }

    /// The layer's settings in a few words, e.g. `5x5, 1→16, pad 2`.
    var settings: String { get }

    /// The layer's own trainable parameters, weight first (not its children's).
    var parameters: [Parameter<Scalar>] { get }

    /// The layer's own buffers (not its children's).
    var buffers: [Buffer<Scalar>] { get }

    /// The sub-layers of a container, each with its path component (`"0"`, `"conv1"`; an empty
    /// name puts the child's contents directly under this layer's path).
    var children: [(name: String, layer: any Layer<Scalar>)] { get }

    /// Whether a training forward pass mixes the examples of a batch (BatchNorm does), so that
    /// the batch must not be cut into slices. Containers answer for their children.
    var couplesExamples: Bool { get }

    /// The shape of one output example for one input example of shape `inputShape`
    /// (no batch dimension), or a `ShapeError` when the input does not fit.
    func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int]

    /// Computes the output for a batch.
    /// - Parameters:
    ///   - input: `[N, …input example shape]`.
    ///   - output: resized and overwritten with `[N, …output example shape]`.
    ///   - context: training or inference, and what random layers draw from.
    func forward(_ input: Tensor<Scalar>, into output: inout Tensor<Scalar>, context: StepContext)

    /// Back-propagates one batch: adds `∂L/∂parameters` into each parameter's `gradient` and,
    /// when `inputGradient` is non-nil, overwrites it with `∂L/∂input`.
    /// - Parameters:
    ///   - input: the input given to the last `forward`.
    ///   - output: the output that `forward` produced from it.
    ///   - outputGradient: `∂L/∂output`, shaped like `output`.
    ///   - inputGradient: resized and overwritten with `∂L/∂input`, shaped like `input`;
    ///     `nil` for the first layer, whose input gradient nobody needs.
    ///   - context: the context the forward pass had.
    func backward(input: Tensor<Scalar>, output: Tensor<Scalar>, outputGradient: Tensor<Scalar>,
                  inputGradient: inout Tensor<Scalar>?, context: StepContext)

    /// Reports this layer, then (for a container) its children in data-flow order, each with the
    /// example shape it receives; `summary` and the report print the rows.
    func appendRows(inputShape: [Int], path: String, depth: Int, into rows: inout [LayerRow<Scalar>])
}

extension Layer {
    /// Runs an inference `forward` into a new tensor (convenient; training uses the
    /// buffer-reusing form).
    public func callAsFunction(_ input: Tensor<Scalar>) -> Tensor<Scalar> {
        var output = Tensor<Scalar>(shape: [])
        forward(input, into: &output, context: .inference)
        return output
    }

    public var parameters: [Parameter<Scalar>] { [] }
    public var buffers: [Buffer<Scalar>] { [] }
    public var children: [(name: String, layer: any Layer<Scalar>)] { [] }
    public var settings: String { "" }
    public var couplesExamples: Bool { children.contains { $0.layer.couplesExamples } }

    public func appendRows(inputShape: [Int], path: String, depth: Int, into rows: inout [LayerRow<Scalar>]) {
        rows.append(LayerRow(path: path, depth: depth, layer: self, inputShape: inputShape,
                             outputShape: (try? outputShape(for: inputShape)) ?? []))
    }
}

/// One row of a network's description: a layer, where it sits and the shapes it sees.
public struct LayerRow<Scalar: NetworkScalar> {
    /// The dotted path of the layer (`"3"`, `"layer1.0.conv1"`); parameters are `path.weight`.
    public var path: String
    /// Nesting depth (0 for the network's top-level layers).
    public var depth: Int
    public var layer: any Layer<Scalar>
    /// One example's shape in and out.
    public var inputShape: [Int], outputShape: [Int]
}

/// Joins path components, skipping empty ones: `join("layer1", "0")` is `layer1.0`.
public func joinPath(_ parent: String, _ child: String) -> String {
    if parent.isEmpty { return child }
    if child.isEmpty { return parent }
    return parent + "." + child
}

/// A network whose layers' shapes do not fit together.
public struct ShapeError: Error, CustomStringConvertible, Sendable {
    /// One line naming the layer, the shape it got and the shape it needs.
    public var description: String

    /// Creates an error with a one-line message.
    public init(_ description: String) { self.description = description }
}
