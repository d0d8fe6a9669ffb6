import Backprop
import BackpropTraining
import Foundation

/// Writes a model as an ONNX file (opset 17), which onnxruntime and other ONNX tools run.
///
/// ## The graph
/// - Input `input`: float32 `[N, C, H, W]` (or `[N, F]`), `N` free (`dim_param` "N") — the
///   *preprocessed* images, exactly what `Network.forward` takes.
/// - Outputs `logits` `[N, classes]` and `probabilities` = `Softmax(logits, axis 1)`.
/// - One node per layer, named by the layer's path (`3`, `4.main.0`); weights and buffers are
///   initializers under their `state_dict` names (`0.weight`, `1.running_var`):
///
/// | Backprop layer | ONNX |
/// |---|---|
/// | conv2d | `Conv` (square kernel, `strides`, symmetric `pads`; no `B` without bias) |
/// | dense | `Gemm` with `transB = 1` (weight `[out, in]` as PyTorch's) |
/// | relu | `Relu` |
/// | gelu | `x · 0.5 · (1 + Erf(x / √2))`, or the tanh form, in `Div`/`Erf`/`Tanh`/`Add`/`Mul` (as `torch.onnx.export` writes it at opset 17, which has no `Gelu`) |
/// | maxpool2d, avgpool2d | `MaxPool`, `AveragePool` (no padding, floor mode) |
/// | global_avgpool2d, global_maxpool2d | `GlobalAveragePool`, `GlobalMaxPool`, then `Flatten` |
/// | batchnorm2d, batchnorm1d | `BatchNormalization` in inference form (running statistics; ONNX momentum = 1 − PyTorch's) |
/// | residual | the main path, the shortcut (or the input), `Add(main, shortcut)` |
/// | dropout, dropout2d | `Dropout` with its ratio, an identity at inference |
/// | flatten | `Flatten` (axis 1) |
/// | scale | `Mul` by a scalar constant |
/// | identity, sequential | `Identity`; a nested list's layers in line |
///
/// BatchNorm with `affine: none` gets γ = 1 and β = 0 as constants named `PATH/scale` and
/// `PATH/shift` (with parameters, `PATH.weight` and `PATH.bias`), so that an import gives
/// the same parameters back. Test-time augmentation is not in the graph: its logits are those
/// of one view (the file's `backprop.test_time_augmentation` says which views Backprop averages).
///
/// ## Preprocessing and labels: `metadata_props`
/// The graph takes preprocessed inputs, as the PyTorch twin of the net does; how to make them
/// is in the model's metadata:
/// - `backprop.preprocessing`: `x = byte * scale - mean[channel]`, the formula;
/// - `backprop.preprocessing.scale`: the scale, e.g. `0.00392156862745098` (1/255);
/// - `backprop.preprocessing.mean`: the means, a JSON array (one, or one per channel);
/// - `backprop.dataset`: `mnist` or `cifar10` (the input's channel order: RGB);
/// - `backprop.class_names`: a JSON array, label `i` is element `i`;
/// - `backprop.model`: the whole `model.json` description (architecture included);
/// - `backprop.test_time_augmentation`: the views Backprop averages (e.g. `flip`), only when
///   the model has them; the graph computes one view.
public enum ONNXExport {
    /// The ONNX operator set the graph is written for.
    public static let opsetVersion: Int64 = 17
    /// The ONNX IR version that goes with opset 17.
    static let irVersion: Int64 = 8
    /// The graph's input and output names.
    public static let inputName = "input", logitsName = "logits", probabilitiesName = "probabilities"

    /// The ONNX file's bytes for `model`.
    /// - Throws: `ONNXError` when a layer has no ONNX form.
    public static func encode(_ model: ModelArchive) throws(ONNXError) -> Data {
        var builder = GraphBuilder()
        let logits = try builder.emit(model.network.body, input: inputName, path: "")
        // The last layer's output is renamed `logits` (an Identity when it is the input itself).
        if let index = builder.nodes.lastIndex(where: { $0.output.first == logits }), logits != inputName {
            builder.nodes[index].output[0] = logitsName
        } else {
            builder.nodes.append(builder.node("Identity", [logits], outputs: [logitsName], name: "logits"))
        }
        builder.nodes.append(builder.node("Softmax", [logitsName], outputs: [probabilitiesName], name: "softmax",
                                          attributes: [.int("axis", 1)]))

        var graph = Onnx_GraphProto()
        graph.name = "backprop"
        graph.node = builder.nodes
        graph.initializer = builder.initializers
        graph.input = [valueInfo(inputName, ["N"] + model.network.inputShape.map { .value($0) })]
        graph.output = [valueInfo(logitsName, ["N"] + model.network.outputShape.map { .value($0) }),
                        valueInfo(probabilitiesName, ["N"] + model.network.outputShape.map { .value($0) })]

        var proto = Onnx_ModelProto()
        proto.irVersion = irVersion
        var opset = Onnx_OperatorSetIdProto()
        opset.domain = ""
        opset.version = opsetVersion
        proto.opsetImport = [opset]
        proto.producerName = "backprop"
        proto.graph = graph
        proto.docString = "Input: preprocessed images (see metadata backprop.preprocessing). Outputs: logits and softmax probabilities."
        proto.metadataProps = metadata(model).map { key, value in
            var entry = Onnx_StringStringEntryProto()
            entry.key = key
            entry.value = value
            return entry
        }
        do { return try proto.serializedBytes() } catch {
            throw ONNXError("cannot encode the ONNX model: \(error)")
        }
    }

    /// Writes `model` as an ONNX file at `url`, atomically (a temporary file renamed).
    public static func write(_ model: ModelArchive, to url: URL) throws {
        try writeAtomically(try encode(model), to: url)
    }

    /// The `metadata_props` entries, sorted by key.
    static func metadata(_ model: ModelArchive) -> [(String, String)] {
        func json(_ value: Any) -> String {
            (try? String(decoding: JSONSerialization.data(withJSONObject: value, options: [.sortedKeys]), as: UTF8.self)) ?? ""
        }
        return [
            ("backprop.class_names", json(model.classNames)),
            ("backprop.dataset", model.dataset.rawValue),
            ("backprop.model", json(model.descriptionObject)),
            ("backprop.preprocessing", "x = byte * scale - mean[channel]; input NCHW float32, bytes 0-255 in the data set's channel order"),
            ("backprop.preprocessing.mean", json(model.preprocessing.mean.map(Double.init))),
            ("backprop.preprocessing.scale", "\(Double(model.preprocessing.scale))"),
        ] + (model.testTimeAugmentation.isIdentity ? [] : [("backprop.test_time_augmentation", model.testTimeAugmentation.description)])
    }

    /// A tensor's name, element type float32 and dimensions (`"N"` for a free one).
    private static func valueInfo(_ name: String, _ dimensions: [Dimension]) -> Onnx_ValueInfoProto {
        var shape = Onnx_TensorShapeProto()
        shape.dim = dimensions.map { dimension in
            var d = Onnx_TensorShapeProto.Dimension()
            switch dimension {
            case .value(let v): d.dimValue = Int64(v)
            case .parameter(let p): d.dimParam = p
            }
            return d
        }
        var tensorType = Onnx_TypeProto.Tensor()
        tensorType.elemType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        tensorType.shape = shape
        var type = Onnx_TypeProto()
        type.tensorType = tensorType
        var info = Onnx_ValueInfoProto()
        info.name = name
        info.type = type
        return info
    }

    private enum Dimension: ExpressibleByStringLiteral {
        case value(Int), parameter(String)
        init(stringLiteral value: String) { self = .parameter(value) }
    }
}

/// The nodes and initializers of a graph under construction, one layer at a time.
struct GraphBuilder {
    var nodes: [Onnx_NodeProto] = []
    var initializers: [Onnx_TensorProto] = []
    /// Every tensor name given out, so that no two tensors share one.
    private var used: Set<String> = [ONNXExport.inputName, ONNXExport.logitsName, ONNXExport.probabilitiesName]

    /// `base`, or `base_2`, `base_3`… when taken.
    mutating func unique(_ base: String) -> String {
        var name = base, index = 2
        while used.contains(name) { name = "\(base)_\(index)"; index += 1 }
        used.insert(name)
        return name
    }

    /// A node (not yet added).
    func node(_ op: String, _ inputs: [String], outputs: [String], name: String, attributes: [Onnx_AttributeProto] = []) -> Onnx_NodeProto {
        var node = Onnx_NodeProto()
        node.opType = op
        node.input = inputs
        node.output = outputs
        node.name = name
        node.attribute = attributes
        return node
    }

    /// Adds a node with one output, named after the node, and returns that output's name.
    mutating func add(_ op: String, _ inputs: [String], path: String, attributes: [Onnx_AttributeProto] = []) -> String {
        let name = unique(path.isEmpty ? op : "\(path)/\(op)")
        nodes.append(node(op, inputs, outputs: [name], name: name, attributes: attributes))
        return name
    }

    /// Adds a float32 initializer and returns its name.
    mutating func initializer(_ name: String, _ tensor: Tensor<Float>) -> String {
        let name = unique(name)
        initializers.append(.float32(name: name, shape: tensor.shape, values: tensor.scalars))
        return name
    }

    /// Adds a scalar float32 constant.
    mutating func scalar(_ value: Float, path: String, _ what: String) -> String {
        initializer(path.isEmpty ? what : "\(path)/\(what)", Tensor(shape: [], scalars: [value]))
    }

    /// Adds the nodes of `layer` (and its children) reading `input`; returns the output's name.
    mutating func emit(_ layer: any Layer<Float>, input: String, path: String) throws(ONNXError) -> String {
        let at = path.isEmpty ? "" : path
        func weight(_ p: Parameter<Float>) -> String { initializer(joinPath(path, p.name), p.value) }
        switch layer {
        case let sequence as Sequential<Float>:
            var x = input
            for (name, child) in sequence.children { x = try emit(child, input: x, path: joinPath(path, name)) }
            return x
        case let block as Residual<Float>:
            let main = try emit(block.main, input: input, path: joinPath(path, block.mainName))
            let shortcut = try block.shortcut.map { layer throws(ONNXError) in
                try emit(layer, input: input, path: joinPath(path, block.shortcutName))
            } ?? input
            return add("Add", [main, shortcut], path: at)
        case let conv as Conv2D<Float>:
            let k = conv.kernelSize, s = conv.stride, p = conv.padding
            let inputs = [input, weight(conv.weight)] + (conv.usesBias ? [weight(conv.bias)] : [])
            return add("Conv", inputs, path: at, attributes: [
                .ints("kernel_shape", [k, k]), .ints("strides", [s, s]), .ints("pads", [p, p, p, p]),
                .ints("dilations", [1, 1]), .int("group", 1),
            ])
        case let dense as Dense<Float>:
            let inputs = [input, weight(dense.weight)] + (dense.usesBias ? [weight(dense.bias)] : [])
            return add("Gemm", inputs, path: at, attributes: [.float("alpha", 1), .float("beta", 1), .int("transB", 1)])
        case is ReLU<Float>:
            return add("Relu", [input], path: at)
        case let gelu as GELU<Float>:
            return emitGELU(gelu.approximation, input: input, path: at)
        case let pool as MaxPool2D<Float>:
            return add("MaxPool", [input], path: at, attributes: windowAttributes(size: pool.size, stride: pool.stride))
        case let pool as AvgPool2D<Float>:
            return add("AveragePool", [input], path: at, attributes: windowAttributes(size: pool.size, stride: pool.stride))
        case is GlobalAvgPool2D<Float>:
            let pooled = add("GlobalAveragePool", [input], path: at)
            return add("Flatten", [pooled], path: at, attributes: [.int("axis", 1)])
        case is GlobalMaxPool2D<Float>:
            let pooled = add("GlobalMaxPool", [input], path: at)
            return add("Flatten", [pooled], path: at, attributes: [.int("axis", 1)])
        case let norm as BatchNorm<Float>:
            // γ and β are written even when frozen or absent. Without parameters (`affine:
            // none`, PyTorch's `affine=False`) they are constants named `PATH/scale` and
            // `PATH/shift` (1 and 0), not `PATH.weight`/`PATH.bias`: the importer reads them back
            // as no parameters by that.
            let scale = norm.affine == .neither ? initializer("\(at)/scale", norm.weight.value) : weight(norm.weight)
            let shift = norm.affine == .neither ? initializer("\(at)/shift", norm.bias.value) : weight(norm.bias)
            let inputs = [input, scale, shift,
                          initializer(joinPath(path, norm.runningMean.name), norm.runningMean.value),
                          initializer(joinPath(path, norm.runningVariance.name), norm.runningVariance.value)]
            return add("BatchNormalization", inputs, path: at, attributes: [
                .float("epsilon", Float(norm.epsilon)), .float("momentum", Float(1 - norm.momentum)),
            ])
        case let dropout as Dropout<Float>:
            return add("Dropout", [input, scalar(Float(dropout.probability), path: at, "ratio")], path: at)
        case is Flatten<Float>:
            return add("Flatten", [input], path: at, attributes: [.int("axis", 1)])
        case let scale as Scale<Float>:
            return add("Mul", [input, scalar(Float(scale.factor), path: at, "factor")], path: at)
        case is Identity<Float>:
            return add("Identity", [input], path: at)
        default:
            throw ONNXError("layer \(path.isEmpty ? "(root)" : path) (\(layer.kind)) has no ONNX form in this version of Backprop")
        }
    }

    private func windowAttributes(size: Int, stride: Int) -> [Onnx_AttributeProto] {
        [.ints("kernel_shape", [size, size]), .ints("strides", [stride, stride]), .ints("pads", [0, 0, 0, 0])]
    }

    /// GELU in opset-17 operators.
    /// ```
    /// exact:  y = (x · (Erf(x / √2) + 1)) · 0.5                    (torch.onnx.export's form)
    /// tanh:   y = (x · 0.5) · (Tanh(√(2/π) · (x + 0.044715 · x·x·x)) + 1)
    /// ```
    private mutating func emitGELU(_ approximation: GELUApproximation, input x: String, path: String) -> String {
        let at = path.isEmpty ? "gelu" : path
        switch approximation {
        case .exact:
            let scaled = add("Div", [x, scalar(Float(2).squareRoot(), path: at, "sqrt2")], path: at)
            let erf = add("Erf", [scaled], path: at)
            let onePlus = add("Add", [erf, scalar(1, path: at, "one")], path: at)
            let product = add("Mul", [x, onePlus], path: at)
            return add("Mul", [product, scalar(0.5, path: at, "half")], path: at)
        case .tanh:
            let square = add("Mul", [x, x], path: at)
            let cube = add("Mul", [square, x], path: at)
            let term = add("Mul", [cube, scalar(0.044715, path: at, "coefficient")], path: at)
            let sum = add("Add", [x, term], path: at)
            let u = add("Mul", [sum, scalar(Float((2 / Double.pi).squareRoot()), path: at, "sqrt_2_over_pi")], path: at)
            let t = add("Tanh", [u], path: at)
            let onePlus = add("Add", [t, scalar(1, path: at, "one")], path: at)
            let half = add("Mul", [x, scalar(0.5, path: at, "half")], path: at)
            return add("Mul", [half, onePlus], path: at)
        }
    }
}

// MARK: - Protobuf helpers

extension Onnx_AttributeProto {
    static func int(_ name: String, _ value: Int) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .int
        a.i = Int64(value)
        return a
    }

    static func ints(_ name: String, _ values: [Int]) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .ints
        a.ints = values.map(Int64.init)
        return a
    }

    static func float(_ name: String, _ value: Float) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .float
        a.f = value
        return a
    }
}

extension Onnx_TensorProto {
    /// A float32 tensor with its values as little-endian `raw_data`.
    static func float32(name: String, shape: [Int], values: [Float]) -> Onnx_TensorProto {
        var t = Onnx_TensorProto()
        t.name = name
        t.dims = shape.map(Int64.init)
        t.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        var raw = Data(capacity: values.count * 4)
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { raw.append(contentsOf: $0) } }
        t.rawData = raw
        return t
    }
}
