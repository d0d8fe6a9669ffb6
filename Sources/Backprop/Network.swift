/// A whole network: a tree of layers with its input shape, its state under dotted paths, and the
/// training step's forward, loss and backward passes.
///
/// The network checks at construction that every layer accepts its input (the course's shape
/// check), owns the batch and logits buffers, and names every parameter and buffer by its path
/// in the tree as PyTorch names its `state_dict`: `3.weight` for a flat sequence of layers
/// (`nn.Sequential`), `layer1.0.bn1.running_mean` for nested ones.
public final class Network<Scalar: NetworkScalar> {
    /// The shape of one input example (no batch dimension), e.g. `[1, 28, 28]`.
    public let inputShape: [Int]
    /// The root layer (usually a `Sequential`).
    public let body: any Layer<Scalar>
    /// The shape of one output example.
    public let outputShape: [Int]
    /// Every trainable parameter with its path, in tree order.
    public let namedParameters: [(name: String, parameter: Parameter<Scalar>)]
    /// Every buffer with its path, in tree order.
    public let namedBuffers: [(name: String, buffer: Buffer<Scalar>)]
    /// All parameters in tree order (fixed at construction: layers keep their `Parameter`
    /// objects, so the list is built once rather than on every training step).
    public let parameters: [Parameter<Scalar>]
    /// Whether some layer mixes the examples of a batch in training (so `accumulateGradients`
    /// never slices a batch).
    public let couplesExamples: Bool

    /// The batch given to the last `forward`.
    private var input = Tensor<Scalar>(shape: [0])
    /// The logits of the last `forward`.
    private var output = Tensor<Scalar>(shape: [0])
    /// `accumulateGradients`' loss gradient for one slice of the batch.
    private var lossGradient: Tensor<Scalar>? = Tensor<Scalar>(shape: [0])

    /// Builds a network and checks its shapes and its paths.
    /// - Throws: `ShapeError` naming the first layer whose input does not fit, with both shapes.
    public init(inputShape: [Int], body: any Layer<Scalar>) throws(ShapeError) {
        self.inputShape = inputShape
        self.body = body
        outputShape = try body.outputShape(for: inputShape)
        var parameters: [(String, Parameter<Scalar>)] = [], buffers: [(String, Buffer<Scalar>)] = []
        func visit(_ layer: any Layer<Scalar>, _ path: String) {
            for p in layer.parameters { parameters.append((joinPath(path, p.name), p)) }
            for b in layer.buffers { buffers.append((joinPath(path, b.name), b)) }
            for (name, child) in layer.children { visit(child, joinPath(path, name)) }
        }
        visit(body, "")
        var seen = Set<String>()
        for name in parameters.map(\.0) + buffers.map(\.0) where !seen.insert(name).inserted {
            throw ShapeError("two tensors have the path \(name); give the layers distinct names")
        }
        namedParameters = parameters
        namedBuffers = buffers
        // Weights set from data see the network's input as it is: only the first layer may.
        var allRows: [LayerRow<Scalar>] = []
        body.appendRows(inputShape: inputShape, path: "", depth: 0, into: &allRows)
        let leaves = allRows.filter { $0.layer.children.isEmpty }
        if let late = leaves.dropFirst().first(where: { ($0.layer as? Conv2D<Scalar>)?.awaitsData == true }) {
            throw ShapeError("layer \(late.path): init \"whitening\" is only for the network's first layer (it whitens the input images)")
        }
        self.parameters = parameters.map(\.1)
        couplesExamples = body.couplesExamples
    }

    /// Whether some weights are still to be set from training data (`initializeFromData`).
    public var awaitsData: Bool {
        rows.contains { ($0.layer as? Conv2D<Scalar>)?.awaitsData == true }
    }

    /// Sets the weights that come from data — a first-layer `Conv2DInitialization.whitening`
    /// convolution — from `inputs`, a sample of training inputs (`[N] + inputShape`).
    public func initializeFromData(_ inputs: Tensor<Scalar>) {
        precondition(Array(inputs.shape.dropFirst()) == inputShape, "initializeFromData: inputs of shape \(inputs.shape)")
        for row in rows {
            if let conv = row.layer as? Conv2D<Scalar>, conv.awaitsData { conv.initializeWhitening(from: inputs) }
        }
    }

    /// Tells the network that a parameter's `isTrainable` changed (the trainer freezes one trained
    /// for its first epochs only): a training step's backward pass finds the end of its frozen
    /// prefix again (`StepContext.skipsFrozenPrefix`), so it leaves out the layers in front of
    /// the first parameter that still trains. Walks the layer tree; call it when a flag flips, not
    /// every step.
    public func trainabilityChanged() {
        (body as? Sequential<Scalar>)?.invalidateFrozenPrefix()
        for row in rows { (row.layer as? Sequential<Scalar>)?.invalidateFrozenPrefix() }
    }

    /// Builds a network whose body is a `Sequential` of `layers` (named `0`, `1`, …).
    public convenience init(inputShape: [Int], layers: [any Layer<Scalar>]) throws(ShapeError) {
        try self.init(inputShape: inputShape, body: Sequential(layers))
    }

    /// Every layer of the tree with its path, depth and shapes, in data-flow order.
    public var rows: [LayerRow<Scalar>] {
        var rows: [LayerRow<Scalar>] = []
        body.appendRows(inputShape: inputShape, path: "", depth: 0, into: &rows)
        return rows
    }

    /// The number of trainable scalars.
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.value.count } }

    /// Runs the batch through the network.
    /// - Parameters:
    ///   - batch: `[N, …inputShape]`.
    ///   - context: inference by default (running statistics, no dropout).
    /// - Returns: `[N, …outputShape]`, valid until the next `forward`.
    @discardableResult
    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func forward(_ batch: Tensor<Scalar>, context: StepContext = .inference) -> Tensor<Scalar> {
        precondition(batch.shape.count == inputShape.count + 1 && batch.shape.dropFirst().elementsEqual(inputShape),
                     "batch \(describe(shape: batch.shape)) does not match input \(describe(shape: inputShape))")
        // A copy, not a second reference: the caller may refill its batch buffer in place.
        input.assign(batch)
        body.forward(input, into: &output, context: context)
        return output
    }

    /// Back-propagates `∂L/∂output` of the last `forward` through every layer, adding into each
    /// parameter's gradient.
    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func backward(_ outputGradient: Tensor<Scalar>, context: StepContext = .training()) {
        var none: Tensor<Scalar>? = nil
        body.backward(input: input, output: output, outputGradient: outputGradient, inputGradient: &none, context: context)
    }

    /// The forward and backward passes of one training step, adding `∂L/∂θ` of the batch's mean
    /// loss into every trainable parameter's gradient (the backward pass stops at the first
    /// trainable parameter: `StepContext.skipsFrozenPrefix`).
    ///
    /// When no layer couples the examples of a batch, the batch goes through in slices of
    /// `microBatch` examples — forward, loss, backward, then the next slice — so that a large
    /// batch's activations stay in cache; each slice's loss gradient is scaled by
    /// `slice / batch`, so the gradients add up to the whole batch's, and each slice's context
    /// carries its offset in the batch (dropout masks do not depend on the slicing). A network
    /// with BatchNorm in it takes the whole batch at once: its statistics are the batch's. A
    /// batch of at most `microBatch` examples is exactly `forward`, `loss` and `backward`. The
    /// result does not depend on the thread count.
    /// - Parameters:
    ///   - batch: `[N, …inputShape]`.
    ///   - labels: `N` class indexes.
    ///   - loss: the loss (softmax cross-entropy, possibly label-smoothed).
    ///   - context: the step's context (training, with the run's seed and the step).
    /// - Returns: the batch's mean loss and the number of examples whose top score is the label.
    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func accumulateGradients(
        batch: Tensor<Scalar>, labels: [Int], loss: SoftmaxCrossEntropy = SoftmaxCrossEntropy(),
        context: StepContext = .training(), microBatch: Int = 16
    ) -> (loss: Double, correct: Int) {
        precondition(batch.shape.count == inputShape.count + 1 && batch.shape.dropFirst().elementsEqual(inputShape),
                     "batch \(describe(shape: batch.shape)) does not match input \(describe(shape: inputShape))")
        precondition(labels.count == batch.batchSize && microBatch > 0, "\(labels.count) labels for \(batch.batchSize) examples")
        let n = batch.batchSize
        let slice = couplesExamples ? max(n, 1) : microBatch
        let exampleSize = batch.count / max(n, 1)
        var (total, correct) = (0.0, 0)
        var start = 0
        var none: Tensor<Scalar>? = nil
        while start < n {
            let end = min(n, start + slice), m = end - start
            input.resize(batchSize: m, example: inputShape)
            input.scalars.withUnsafeMutableBufferPointer { part in
                batch.scalars.withUnsafeBufferPointer { all in
                    part.baseAddress!.update(from: all.baseAddress! + start * exampleSize, count: m * exampleSize)
                }
            }
            var sliceContext = context
            sliceContext.exampleOffset = context.exampleOffset + start
            sliceContext.skipsFrozenPrefix = true
            body.forward(input, into: &output, context: sliceContext)
            let result = loss.loss(logits: output, labels: labels[start..<end], gradient: &lossGradient,
                                   scale: m == n ? 1 : Double(Scalar(m) / Scalar(n)))
            body.backward(input: input, output: output, outputGradient: lossGradient!, inputGradient: &none, context: sliceContext)
            total += result.loss * Double(m) / Double(n)
            correct += result.correct
            start = end
        }
        return (total, correct)
    }

    /// Copies every parameter's and buffer's value from a network of the same architecture in
    /// another precision (e.g. to gradient-check a `Float` network in `Double`). A whitening
    /// convolution then keeps the loaded filters: it no longer awaits data (`awaitsData`), so
    /// training from loaded weights (`train --init`) does not recompute them.
    public func loadState<Other: NetworkScalar>(from other: Network<Other>) {
        precondition(parameters.count == other.parameters.count && namedBuffers.count == other.namedBuffers.count,
                     "architectures differ")
        for (mine, theirs) in zip(parameters, other.parameters) {
            precondition(mine.value.shape == theirs.value.shape, "architectures differ")
            mine.value = theirs.value.converted(to: Scalar.self)
        }
        for (mine, theirs) in zip(namedBuffers, other.namedBuffers) {
            precondition(mine.buffer.value.shape == theirs.buffer.value.shape, "architectures differ")
            mine.buffer.value = theirs.buffer.value.converted(to: Scalar.self)
        }
        for row in rows { (row.layer as? Conv2D<Scalar>)?.skipDataInitialization() }
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

extension Network {
    /// The most values one example has between two layers, the input included: a batch of N
    /// needs about N times this per stored activation.
    public var largestActivation: Int {
        rows.reduce(elementCount(inputShape) ?? .max) { max($0, elementCount($1.outputShape) ?? .max) }
    }
}
