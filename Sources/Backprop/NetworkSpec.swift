import Foundation

/// A network's architecture as data: the input example shape and a list of layers.
///
/// JSON form (keys in snake_case; the course's layer names are accepted as aliases):
/// ```json
/// { "input": [1, 28, 28],
///   "layers": [
///     {"type": "conv2d", "out_channels": 16, "kernel_size": 5, "padding": 2},
///     {"type": "relu"},
///     {"type": "maxpool2d", "size": 2, "stride": 2},
///     {"type": "dense", "out_features": 10},
///     {"type": "softmaxloss"} ] }
/// ```
/// Input channels and features are inferred from the shapes. A `flatten` is inserted before a
/// `dense` layer whose input is not flat (as PyTorch needs an explicit `nn.Flatten`, parameter
/// names count it). `softmaxloss` may only come last; it names the loss, not a layer.
public struct NetworkSpec: Sendable, Equatable {
    /// One layer's description.
    public enum LayerSpec: Sendable, Equatable {
        case conv2d(outputChannels: Int, kernelSize: Int, stride: Int, padding: Int, initScale: Double)
        case relu
        case maxPool2d(size: Int, stride: Int)
        case flatten
        case dense(outputFeatures: Int, initScale: Double)
    }

    /// The shape of one input example, `[C, H, W]` or `[F]`.
    public var input: [Int]
    /// The layers in order (the loss excluded).
    public var layers: [LayerSpec]

    /// Creates a spec.
    public init(input: [Int], layers: [LayerSpec]) {
        self.input = input
        self.layers = layers
    }

    /// Builds the network in `Scalar` precision, drawing initial weights from `generator`
    /// (the same seed gives the same weights, up to rounding, in either precision).
    /// - Throws: `ShapeError` when the layers' shapes do not fit together.
    public func makeNetwork<Scalar: NetworkScalar>(
        _: Scalar.Type = Scalar.self, using generator: inout SeededGenerator
    ) throws(ShapeError) -> Sequential<Scalar> {
        var built: [any Layer<Scalar>] = []
        var shape = input
        for (position, spec) in layers.enumerated() {
            let layer: any Layer<Scalar>
            switch spec {
            case let .conv2d(outputChannels, kernelSize, stride, padding, initScale):
                guard shape.count == 3 else {
                    throw ShapeError("layer \(position) (conv2d) needs a CxHxW input, got \(describe(shape: shape))")
                }
                layer = Conv2D<Scalar>(inputChannels: shape[0], outputChannels: outputChannels, kernelSize: kernelSize,
                               stride: stride, padding: padding, initScale: Scalar(initScale), using: &generator)
            case .relu: layer = ReLU<Scalar>()
            case let .maxPool2d(size, stride): layer = MaxPool2D<Scalar>(size: size, stride: stride)
            case .flatten: layer = Flatten<Scalar>()
            case let .dense(outputFeatures, initScale):
                if shape.count != 1 {
                    built.append(Flatten<Scalar>())
                    shape = [shape.reduce(1, *)]
                }
                layer = Dense<Scalar>(inputSize: shape[0], outputSize: outputFeatures, initScale: Scalar(initScale), using: &generator)
            }
            do {
                shape = try layer.outputShape(for: shape)
            } catch {
                throw ShapeError("layer \(position) (\(spec.typeName)): \(error.description)")
            }
            built.append(layer)
        }
        return try Sequential<Scalar>(inputShape: input, layers: built)
    }
}

/// A spec file that cannot be used: one line saying where and why.
public struct SpecError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension NetworkSpec.LayerSpec {
    /// The canonical JSON `type` name.
    public var typeName: String {
        switch self {
        case .conv2d: "conv2d"
        case .relu: "relu"
        case .maxPool2d: "maxpool2d"
        case .flatten: "flatten"
        case .dense: "dense"
        }
    }

    /// The JSON object for this layer.
    public var jsonObject: [String: Any] {
        switch self {
        case let .conv2d(c, k, s, p, scale):
            var o: [String: Any] = ["type": typeName, "out_channels": c, "kernel_size": k, "stride": s, "padding": p]
            if scale != 1 { o["init_scale"] = scale }
            return o
        case .relu, .flatten: return ["type": typeName]
        case let .maxPool2d(size, stride): return ["type": typeName, "size": size, "stride": stride]
        case let .dense(f, scale):
            var o: [String: Any] = ["type": typeName, "out_features": f]
            if scale != 1 { o["init_scale"] = scale }
            return o
        }
    }
}

extension NetworkSpec {
    /// The JSON object form (see the type's documentation), loss included.
    public var jsonObject: [String: Any] {
        ["input": input, "layers": layers.map(\.jsonObject) + [["type": "softmaxloss"]]]
    }

    /// Reads `input` and `layers` from a decoded JSON object; other keys are the caller's.
    /// - Throws: `SpecError` naming the layer and key that is wrong.
    public init(jsonObject: [String: Any]) throws(SpecError) {
        guard let input = jsonObject["input"] as? [Int], !input.isEmpty, input.allSatisfy({ $0 > 0 }) else {
            throw SpecError("spec: \"input\" must be a list of positive sizes, e.g. [1, 28, 28]")
        }
        guard let layerObjects = jsonObject["layers"] as? [[String: Any]], !layerObjects.isEmpty else {
            throw SpecError("spec: \"layers\" must be a non-empty list of objects")
        }
        var layers: [LayerSpec] = []
        for (position, object) in layerObjects.enumerated() {
            let where_ = "spec layer \(position)"
            guard let type = object["type"] as? String else { throw SpecError("\(where_): missing \"type\"") }
            func integer(_ key: String, default value: Int? = nil, minimum: Int = 1) throws(SpecError) -> Int {
                guard let raw = object[key] else {
                    if let value { return value }
                    throw SpecError("\(where_) (\(type)): missing \"\(key)\"")
                }
                guard let number = raw as? Int, number >= minimum else {
                    throw SpecError("\(where_) (\(type)): \"\(key)\" must be an integer >= \(minimum)")
                }
                return number
            }
            func scale() throws(SpecError) -> Double {
                guard let raw = object["init_scale"] else { return 1 }
                guard let number = raw as? Double, number > 0, number.isFinite else {
                    throw SpecError("\(where_) (\(type)): \"init_scale\" must be a positive number")
                }
                return number
            }
            let allowed: Set<String>
            switch type.lowercased() {
            case "conv2d", "convolution", "conv":
                allowed = ["out_channels", "kernel_size", "stride", "padding", "init_scale"]
                layers.append(.conv2d(outputChannels: try integer("out_channels"), kernelSize: try integer("kernel_size"),
                                      stride: try integer("stride", default: 1), padding: try integer("padding", default: 0, minimum: 0),
                                      initScale: try scale()))
            case "relu":
                allowed = []
                layers.append(.relu)
            case "maxpool2d", "maxpooling", "maxpool":
                allowed = ["size", "stride"]
                let size = try integer("size", default: 2)
                layers.append(.maxPool2d(size: size, stride: try integer("stride", default: size)))
            case "flatten":
                allowed = []
                layers.append(.flatten)
            case "dense", "fully_connected", "linear":
                allowed = ["out_features", "init_scale"]
                layers.append(.dense(outputFeatures: try integer("out_features"), initScale: try scale()))
            case "softmaxloss", "softmax_cross_entropy":
                guard position == layerObjects.count - 1 else {
                    throw SpecError("\(where_): softmaxloss must be the last layer")
                }
                allowed = []
            default:
                throw SpecError("\(where_): unknown type \"\(type)\" (known: conv2d, relu, maxpool2d, flatten, dense, softmaxloss)")
            }
            if let unknown = Set(object.keys).subtracting(allowed).subtracting(["type"]).sorted().first {
                throw SpecError("\(where_) (\(type)): unknown key \"\(unknown)\"")
            }
        }
        guard !layers.isEmpty else { throw SpecError("spec: no layers before the loss") }
        self.init(input: input, layers: layers)
    }
}
