/// Layers applied one after another, with the activations and gradients they pass kept here.
///
/// The network checks at construction that every layer accepts the previous layer's output
/// (the course's shape check) and afterwards reuses its activation buffers from step to step.
/// Parameters are named as in the equivalent PyTorch `nn.Sequential`: `"<index>.weight"`,
/// `"<index>.bias"`.
public final class Sequential<Scalar: NetworkScalar> {
    /// The shape of one input example (no batch dimension), e.g. `[1, 28, 28]`.
    public let inputShape: [Int]
    /// The layers in order.
    public let layers: [any Layer<Scalar>]
    /// The shape of one example after each layer (`outputShapes[i]` is layer `i`'s output).
    public let outputShapes: [[Int]]

    /// `activations[i]` is layer `i`'s output from the last `forward`.
    private var activations: [Tensor<Scalar>]
    /// The batch given to the last `forward`.
    private var input = Tensor<Scalar>(shape: [0])
    /// `gradients[i]` is `∂L/∂activations[i-1]` from the last `backward` (slot 0 unused).
    private var gradients: [Tensor<Scalar>?]
    /// `accumulateGradients`' loss gradient for one slice of the batch.
    private var lossGradient: Tensor<Scalar>? = Tensor<Scalar>(shape: [0])

    /// Builds a network and checks its shapes.
    /// - Throws: `ShapeError` naming the first layer whose input does not fit, with both shapes.
    public init(inputShape: [Int], layers: [any Layer<Scalar>]) throws(ShapeError) {
        self.inputShape = inputShape
        self.layers = layers
        var shapes: [[Int]] = []
        var shape = inputShape
        for (index, layer) in layers.enumerated() {
            do {
                shape = try layer.outputShape(for: shape)
            } catch {
                let previous = index == 0 ? "the input" : "layer \(index - 1) (\(layers[index - 1].kind))"
                throw ShapeError("layer \(index) (\(layer.kind) \(layer.settings)) does not fit the \(describe(shape: shape)) output of \(previous): \(error.description)")
            }
            shapes.append(shape)
        }
        outputShapes = shapes
        parameters = layers.flatMap { $0.parameters }
        activations = Array(repeating: Tensor<Scalar>(shape: [0]), count: layers.count)
        gradients = Array(repeating: Tensor<Scalar>(shape: [0]), count: layers.count)
        gradients[0] = nil
    }

    /// The shape of one output example.
    public var outputShape: [Int] { outputShapes.last ?? inputShape }

    /// Every parameter with its PyTorch-style name, in layer order.
    public var namedParameters: [(name: String, parameter: Parameter<Scalar>)] {
        layers.enumerated().flatMap { index, layer in
            layer.parameters.map { ("\(index).\($0.name)", $0) }
        }
    }

    /// All parameters in layer order (fixed at construction: layers keep their `Parameter`
    /// objects, so the list is built once rather than on every training step).
    public let parameters: [Parameter<Scalar>]

    /// The number of trainable scalars.
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.value.count } }

    /// Runs the batch through every layer.
    /// - Parameter batch: `[N, …inputShape]`.
    /// - Returns: `[N, …outputShape]`, valid until the next `forward`.
    @discardableResult
    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func forward(_ batch: Tensor<Scalar>) -> Tensor<Scalar> {
        precondition(batch.shape.count == inputShape.count + 1 && batch.shape.dropFirst().elementsEqual(inputShape),
                     "batch \(describe(shape: batch.shape)) does not match input \(describe(shape: inputShape))")
        // A copy, not a second reference: the caller may refill its batch buffer in place.
        input.assign(batch)
        return forwardInput()
    }

    /// Runs `input` through every layer.
    private func forwardInput() -> Tensor<Scalar> {
        for index in layers.indices {
            layers[index].forward(index == 0 ? input : activations[index - 1], into: &activations[index])
        }
        // Not `activations.last`: the unspecialized generic getter boxes its result on the heap.
        return activations.isEmpty ? input : activations[activations.count - 1]
    }

    /// The forward and backward passes of one training step with the softmax cross-entropy
    /// loss, adding `∂L/∂θ` of the batch's mean loss into every parameter's gradient.
    ///
    /// The batch goes through in slices of `microBatch` examples — forward, loss, backward, then
    /// the next slice — so that a large batch's activations stay in cache; each slice's loss
    /// gradient is scaled by `slice / batch`, so the gradients add up to the whole batch's. A batch
    /// of at most `microBatch` examples is exactly `forward`, `SoftmaxCrossEntropy.evaluate` and
    /// `backward`. The result does not depend on the thread count.
    /// - Parameters:
    ///   - batch: `[N, …inputShape]`.
    ///   - labels: `N` class indexes.
    /// - Returns: the batch's mean loss and the number of examples whose top score is the label.
    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func accumulateGradients(batch: Tensor<Scalar>, labels: [Int], microBatch: Int = 16) -> (loss: Double, correct: Int) {
        precondition(batch.shape.count == inputShape.count + 1 && batch.shape.dropFirst().elementsEqual(inputShape),
                     "batch \(describe(shape: batch.shape)) does not match input \(describe(shape: inputShape))")
        precondition(labels.count == batch.batchSize && microBatch > 0, "\(labels.count) labels for \(batch.batchSize) examples")
        let n = batch.batchSize
        let exampleSize = batch.count / max(n, 1)
        var (loss, correct) = (0.0, 0)
        var start = 0
        while start < n {
            let end = min(n, start + microBatch), m = end - start
            input.resize(batchSize: m, example: inputShape)
            input.scalars.withUnsafeMutableBufferPointer { slice in
                batch.scalars.withUnsafeBufferPointer { all in
                    slice.baseAddress!.update(from: all.baseAddress! + start * exampleSize, count: m * exampleSize)
                }
            }
            let result = SoftmaxCrossEntropy.evaluate(logits: forwardInput(), labels: labels[start..<end], gradient: &lossGradient)
            if m != n {
                let scale = Scalar(m) / Scalar(n)
                lossGradient!.scalars.withUnsafeMutableBufferPointer { g in
                    for i in g.indices { g[i] *= scale }
                }
            }
            backward(lossGradient!)
            loss += result.loss * Double(m) / Double(n)
            correct += result.correct
            start = end
        }
        return (loss, correct)
    }

    /// Back-propagates `∂L/∂output` of the last `forward` through every layer, adding into each
    /// parameter's gradient.
    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func backward(_ outputGradient: Tensor<Scalar>) {
        var upstream = outputGradient
        for index in layers.indices.reversed() {
            let layerInput = index == 0 ? input : activations[index - 1]
            layers[index].backward(input: layerInput, output: activations[index],
                                   outputGradient: upstream, inputGradient: &gradients[index])
            if index > 0 { upstream = gradients[index]! }
        }
    }

    /// Copies every parameter's value from a network of the same architecture in another
    /// precision (e.g. to gradient-check a `Float` network in `Double`).
    public func loadParameters<Other: NetworkScalar>(from other: Sequential<Other>) {
        precondition(parameters.count == other.parameters.count, "architectures differ")
        for (mine, theirs) in zip(parameters, other.parameters) {
            precondition(mine.value.shape == theirs.value.shape, "architectures differ")
            mine.value = theirs.value.converted(to: Scalar.self)
        }
    }

    /// Sets every parameter's gradient to zero.
    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func zeroGradients() {
        for p in parameters { p.gradient.zero() }
    }

    /// `Σ λ/2 ‖w‖²` over all parameters, biases included (the course's weight-decay loss).
    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func weightDecayLoss(_ lambda: Double) -> Double {
        guard lambda != 0 else { return 0 }
        var sum = 0.0
        for p in parameters {
            p.value.scalars.withUnsafeBufferPointer { w in
                for x in w { sum += Double(x) * Double(x) }
            }
        }
        return lambda / 2 * sum
    }
}
