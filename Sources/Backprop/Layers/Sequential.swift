/// Layers applied one after another — a container that is itself a layer, so sequences nest.
///
/// The container keeps the activations between its children and their input gradients, and
/// reuses those buffers from step to step. Its last child writes straight into the caller's
/// output, and its first child's input gradient is the caller's. Children are named as in
/// PyTorch's `nn.Sequential` by their index (`"0"`, `"1"`, …) unless given names, so a
/// parameter's path is e.g. `3.weight` or `features.0.weight`.
public final class Sequential<Scalar: NetworkScalar>: Layer {
    /// The layers in order.
    public let layers: [any Layer<Scalar>]
    /// Each layer's path component: its index or a given name.
    public let names: [String]
    /// `activations[i]` is layer `i`'s output from the last `forward` (the last layer's goes to
    /// the caller).
    private var activations: [Tensor<Scalar>]
    /// `gradients[i]` is `∂L/∂activations[i - 1]` from the last `backward` (slot 0 unused: the
    /// first layer's input gradient is the caller's).
    private var gradients: [Tensor<Scalar>?]
    /// The index of the first child with a trainable parameter (`layers.count` if none), found
    /// on the first backward pass that may use it and kept until `invalidateFrozenPrefix()` (a
    /// parameter trained for its first epochs only is frozen mid-run: `Network.trainabilityChanged()`).
    private var firstTrainable: Int?

    /// Creates a sequence.
    /// - Parameter names: one path component per layer (default: the indexes); must be distinct.
    public init(_ layers: [any Layer<Scalar>], names: [String]? = nil) {
        precondition(names == nil || names!.count == layers.count, "\(names!.count) names for \(layers.count) layers")
        self.layers = layers
        self.names = names ?? layers.indices.map(String.init)
        precondition(Set(self.names).count == self.names.count, "duplicate layer names \(self.names)")
        activations = Array(repeating: Tensor<Scalar>(shape: [0]), count: layers.count)
        gradients = Array(repeating: Tensor<Scalar>(shape: [0]), count: layers.count)
        if !gradients.isEmpty { gradients[0] = nil }
    }

    public var kind: String { "Sequential" }
    public var settings: String { "\(layers.count) layers" }
    public var children: [(name: String, layer: any Layer<Scalar>)] { Array(zip(names, layers)) }
    public var couplesExamples: Bool { layers.contains { $0.couplesExamples } }

    /// Chains the children's shapes.
    /// - Throws: `ShapeError` naming the first layer (by path) whose input does not fit, its
    ///   settings, and the shape it got from the layer before.
    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        var shape = inputShape
        for (index, layer) in layers.enumerated() {
            do {
                shape = try layer.outputShape(for: shape)
            } catch {
                // A child container already named the innermost layer: prefix our position.
                if error.description.hasPrefix("layer ") {
                    throw ShapeError("layer " + joinPath(names[index], String(error.description.dropFirst(6))))
                }
                let previous = index == 0 ? "the input" : "layer \(names[index - 1]) (\(layers[index - 1].kind))"
                throw ShapeError("layer \(names[index]) (\(layer.kind) \(layer.settings)) does not fit the \(describe(shape: shape)) output of \(previous): \(error.description)")
            }
        }
        return shape
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func forward(_ input: Tensor<Scalar>, into output: inout Tensor<Scalar>, context: StepContext) {
        let last = layers.count - 1
        guard last >= 0 else { output.assign(input); return }
        for index in 0..<last {
            layers[index].forward(index == 0 ? input : activations[index - 1], into: &activations[index], context: context)
        }
        layers[last].forward(last == 0 ? input : activations[last - 1], into: &output, context: context)
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func backward(input: Tensor<Scalar>, output: Tensor<Scalar>, outputGradient: Tensor<Scalar>,
                         inputGradient: inout Tensor<Scalar>?, context: StepContext) {
        let last = layers.count - 1
        guard last >= 0 else {
            if inputGradient != nil { inputGradient!.assign(outputGradient) }
            return
        }
        // Nothing in front of the first trainable parameter learns: when the caller wants no
        // input gradient either, the pass ends at that layer, which computes no input gradient.
        var stop = 0
        if inputGradient == nil && context.skipsFrozenPrefix {
            if firstTrainable == nil { firstTrainable = layers.firstIndex(where: hasTrainableParameter) ?? layers.count }
            stop = firstTrainable!
            guard stop <= last else { return }  // nothing here trains
        }
        var upstream = outputGradient
        for index in stride(from: last, through: 1, by: -1) {
            if index == stop {
                var none: Tensor<Scalar>? = nil
                layers[index].backward(input: activations[index - 1], output: index == last ? output : activations[index],
                                       outputGradient: upstream, inputGradient: &none, context: context)
                return
            }
            layers[index].backward(input: activations[index - 1], output: index == last ? output : activations[index],
                                   outputGradient: upstream, inputGradient: &gradients[index], context: context)
            upstream = gradients[index]!
        }
        layers[0].backward(input: input, output: last == 0 ? output : activations[0],
                           outputGradient: upstream, inputGradient: &inputGradient, context: context)
    }

    /// Forgets the first trainable child: the next backward pass that may stop there finds it
    /// again (after a parameter's `isTrainable` changed).
    func invalidateFrozenPrefix() {
        firstTrainable = nil
    }

    /// A nested sequence is a row of its own with its layers one level deeper; the network's
    /// top-level sequence (empty path) lists only its layers.
    public func appendRows(inputShape: [Int], path: String, depth: Int, into rows: inout [LayerRow<Scalar>]) {
        guard !path.isEmpty else { return appendLayerRows(inputShape: inputShape, path: path, depth: depth, into: &rows) }
        rows.append(LayerRow(path: path, depth: depth, layer: self, inputShape: inputShape,
                             outputShape: (try? outputShape(for: inputShape)) ?? []))
        appendLayerRows(inputShape: inputShape, path: path, depth: depth + 1, into: &rows)
    }

    /// The rows of the layers alone, at `depth`, under `path`.
    public func appendLayerRows(inputShape: [Int], path: String, depth: Int, into rows: inout [LayerRow<Scalar>]) {
        var shape = inputShape
        for (name, layer) in zip(names, layers) {
            layer.appendRows(inputShape: shape, path: joinPath(path, name), depth: depth, into: &rows)
            shape = (try? layer.outputShape(for: shape)) ?? []
        }
    }
}

/// `{"type": "sequential", "layers": [ … ]}`: a nested list of layers, named like
/// `nn.Sequential` (give it a `"name"` such as `features` for `features.0.weight`).
public struct SequentialSpec: LayerSpecKind {
    public static let typeName = "sequential"
    public static let keysHelp = "layers (a list of layer objects)"
    public var layers: [LayerSpec]

    public init(layers: [LayerSpec]) { self.layers = layers }

    public init(reading reader: inout SpecReader) throws(SpecError) {
        guard let layers = try reader.layers("layers"), !layers.isEmpty else {
            throw SpecError("\(reader.location): \"layers\" must be a non-empty list of layer objects")
        }
        self.layers = layers
    }

    public var jsonKeys: [String: Any] { ["layers": layers.map(\.jsonObject)] }

    public func makeLayer<Scalar: NetworkScalar>(inputShape: [Int], path: String, using generator: inout SeededGenerator) throws(ShapeError) -> any Layer<Scalar> {
        let sequence: Sequential<Scalar> = try NetworkSpec.makeSequence(layers, inputShape: inputShape, path: joinPath(path, "layers"), using: &generator)
        return sequence
    }
}

/// Whether `layer` or a layer inside it has a parameter that training updates.
private func hasTrainableParameter<Scalar: NetworkScalar>(_ layer: any Layer<Scalar>) -> Bool {
    layer.parameters.contains { $0.isTrainable } || layer.children.contains { hasTrainableParameter($0.layer) }
}
