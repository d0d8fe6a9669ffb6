import Foundation

/// A network's architecture as data: the input example shape and a tree of layers.
///
/// JSON form (keys in snake_case; the course's layer names are accepted as aliases):
/// ```json
/// { "input": [1, 28, 28],
///   "layers": [
///     {"type": "conv2d", "out_channels": 16, "kernel_size": 5, "padding": 2},
///     {"type": "relu"},
///     {"type": "maxpool2d", "size": 2, "stride": 2},
///     {"type": "residual", "main": [ … ], "shortcut": [ … ]},
///     {"type": "dense", "out_features": 10},
///     {"type": "softmaxloss"} ] }
/// ```
/// Input channels and features are inferred from the shapes. A `flatten` is inserted before a
/// `dense` layer whose input is not flat (as PyTorch needs an explicit `nn.Flatten`, parameter
/// names count it). `softmaxloss` may only come last; it names the loss, not a layer. Any layer
/// may carry a `"name"`, which replaces its index in parameter paths.
///
/// Every layer type is one `LayerSpecKind` — its keys, its JSON and how to build it — kept in
/// the layer's own file and listed once in `NetworkSpec.kinds`.
public struct NetworkSpec: Sendable, Equatable {
    /// The shape of one input example, `[C, H, W]` or `[F]`.
    public var input: [Int]
    /// The layers in order (the loss excluded).
    public var layers: [LayerSpec]

    /// Creates a spec.
    public init(input: [Int], layers: [LayerSpec]) {
        self.input = input
        self.layers = layers
    }

    /// Every layer type a spec may name.
    public static let kinds: [any LayerSpecKind.Type] = [
        Conv2DSpec.self, ReLUSpec.self, MaxPool2DSpec.self, FlattenSpec.self, DenseSpec.self,
        SequentialSpec.self, ResidualSpec.self,
        BatchNorm2DSpec.self, BatchNorm1DSpec.self, DropoutSpec.self, Dropout2DSpec.self, GELUSpec.self,
        AvgPool2DSpec.self, GlobalAvgPool2DSpec.self, GlobalMaxPool2DSpec.self, ScaleSpec.self, IdentitySpec.self,
    ]

    /// The type for a JSON `type` name or alias (case-insensitive), if any.
    public static func kind(named name: String) -> (any LayerSpecKind.Type)? {
        let key = name.lowercased()
        return kinds.first { $0.typeName == key || $0.aliases.contains(key) }
    }

    /// Builds the network in `Scalar` precision, drawing initial weights from `generator`
    /// (the same seed gives the same weights, up to rounding, in either precision).
    /// - Throws: `ShapeError` naming the layer (by position) when the shapes do not fit together.
    public func makeNetwork<Scalar: NetworkScalar>(
        _: Scalar.Type = Scalar.self, using generator: inout SeededGenerator
    ) throws(ShapeError) -> Network<Scalar> {
        // At most `maximumParameters`, or the caller's tighter budget.
        if Self.scopedBudget == nil { return try makeNetwork(Scalar.self, parameterLimit: Self.maximumParameters, using: &generator) }
        let body: Sequential<Scalar> = try Self.makeSequence(layers, inputShape: input, path: "", using: &generator)
        return try Network(inputShape: input, body: body)
    }

    /// Builds a list of layer specs as a `Sequential`, inserting a `Flatten` before a `dense`
    /// layer whose input is not flat.
    /// - Parameter path: the list's position in the spec, for error messages.
    public static func makeSequence<Scalar: NetworkScalar>(
        _ specs: [LayerSpec], inputShape: [Int], path: String, using generator: inout SeededGenerator
    ) throws(ShapeError) -> Sequential<Scalar> {
        var built: [any Layer<Scalar>] = [], names: [String] = []
        var shape = inputShape
        let budget = NetworkSpec.parameterBudget
        for (position, spec) in specs.enumerated() {
            let at = joinPath(path, String(position))
            if spec.kind is DenseSpec, shape.count != 1 {
                names.append(String(built.count))
                built.append(Flatten<Scalar>())
                shape = [elementCount(shape)!]  // every shape here passed the check below
            }
            let layer: any Layer<Scalar>
            let before = budget.used
            do throws(ShapeError) {
                layer = try spec.kind.makeLayer(inputShape: shape, path: at, using: &generator)
                let output = try layer.outputShape(for: shape)
                guard let values = elementCount(output), values <= maximumActivation else {
                    throw ShapeError("its output \(describe(shape: output)) is over \(maximumActivation) values per example")
                }
                shape = output
            } catch {
                if error.description.hasPrefix("layer ") { throw error }
                throw ShapeError("layer \(at) (\(type(of: spec.kind).typeName)) does not fit its \(describe(shape: shape)) input: \(error.description)")
            }
            // A container's layers counted themselves (in the nested call); count the rest.
            let own = layer.parameters.reduce(0) { $0 + $1.value.count } + layer.buffers.reduce(0) { $0 + $1.value.count }
            budget.used += max(0, own - (budget.used - before))
            guard budget.used <= budget.limit else {
                throw ShapeError("layer \(at) (\(type(of: spec.kind).typeName)): the network has over \(budget.limit) parameters and buffers\(budget.reason)")
            }
            names.append(spec.name ?? String(built.count))
            built.append(layer)
        }
        if let duplicate = Dictionary(grouping: names.filter { !$0.isEmpty }, by: { $0 }).first(where: { $0.value.count > 1 })?.key {
            throw ShapeError("layer \(path.isEmpty ? "list" : path): two layers are named \"\(duplicate)\"")
        }
        return Sequential(built, names: names)
    }
}

extension NetworkSpec {
    /// The most values one example may have between two layers (as for `input`): 2^26, a
    /// 256 MB activation in `Float`.
    public static let maximumActivation = 1 << 26
    /// The most parameters and buffers (together) a spec may build: 2^28, 1 GiB of `Float`.
    public static let maximumParameters = 1 << 28

    /// How many parameters and buffers the networks built in this task may still hold; a
    /// build stops at the first layer that goes over (each layer's own tensors are bounded by
    /// its kind, so the memory allocated before the check is bounded too).
    public final class ParameterBudget: @unchecked Sendable {
        public let limit: Int
        /// Appended to the error: why the limit is what it is (" (the model file holds 1,234)").
        public let reason: String
        var used = 0
        public init(limit: Int, reason: String = "") {
            self.limit = limit
            self.reason = reason
        }
    }

    /// Checks, before a layer allocates them, that `count` more parameters fit: at most 2^28 in
    /// one layer, and within what the network being built may still hold.
    /// - Parameter what: the layer for the message, e.g. `dense 784→10`.
    public static func reserveParameters(_ count: Int?, for what: String) throws(ShapeError) {
        let budget = scopedBudget
        let room = min(1 << 28, budget.map { $0.limit - $0.used } ?? maximumParameters)
        guard let count, count <= room else {
            throw ShapeError("\(what) has too many weights (\(count.map(String.init) ?? "over 2^63")); \(max(room, 0)) more fit\(budget?.reason ?? "")")
        }
    }

    /// The budget of the builds under `withParameterBudget`; a fresh one of `maximumParameters`
    /// per build otherwise.
    @TaskLocal static var scopedBudget: ParameterBudget?
    static var parameterBudget: ParameterBudget { scopedBudget ?? ParameterBudget(limit: maximumParameters) }

    /// Builds the network with at most `limit` parameters and buffers: a model file whose data
    /// holds N values needs no network over N, so a description that claims more is refused
    /// before its layers are allocated.
    public func makeNetwork<Scalar: NetworkScalar>(
        _: Scalar.Type = Scalar.self, parameterLimit limit: Int, reason: String = "", using generator: inout SeededGenerator
    ) throws(ShapeError) -> Network<Scalar> {
        let budget = ParameterBudget(limit: min(limit, Self.maximumParameters), reason: reason)
        let result: Result<Network<Scalar>, ShapeError> = Self.$scopedBudget.withValue(budget) {
            do throws(ShapeError) { return .success(try makeNetwork(Scalar.self, using: &generator)) } catch { return .failure(error) }
        }
        return try result.get()
    }
}

/// The number of elements of `shape` (the product of its extents), or nil when an extent is
/// negative or the product overflows `Int`.
public func elementCount(_ shape: [Int]) -> Int? {
    var count = 1
    for extent in shape {
        guard extent >= 0 else { return nil }
        let (product, overflow) = count.multipliedReportingOverflow(by: extent)
        if overflow { return nil }
        count = product
    }
    return count
}

/// A spec file that cannot be used: one line saying where and why.
public struct SpecError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

// MARK: - Layer specs

/// One layer type as specs know it: its JSON name, how it reads and writes its keys, and how
/// it builds its layer. Each layer's file holds its kind; `NetworkSpec.kinds` lists them.
public protocol LayerSpecKind: Sendable {
    /// The canonical JSON `type`, lower case.
    static var typeName: String { get }
    /// Other accepted names, lower case (e.g. the course's).
    static var aliases: [String] { get }
    /// One line for `summary --layers` and errors: the keys with their defaults.
    static var keysHelp: String { get }
    /// Reads the layer's keys; `reader` rejects keys nobody read.
    init(reading reader: inout SpecReader) throws(SpecError)
    /// The layer's JSON keys besides `type` and `name` (defaults may be left out).
    var jsonKeys: [String: Any] { get }
    /// Builds the layer for an input example of `inputShape`.
    /// - Parameter path: the layer's position in the spec (`3`, `2.main.0`) for nested errors.
    func makeLayer<Scalar: NetworkScalar>(inputShape: [Int], path: String, using generator: inout SeededGenerator) throws(ShapeError) -> any Layer<Scalar>
}

extension LayerSpecKind {
    public static var aliases: [String] { [] }

    /// `init(reading:)` as a value of the existential (called through `any LayerSpecKind.Type`).
    static func decode(from reader: inout SpecReader) -> Result<any LayerSpecKind, SpecError> {
        do throws(SpecError) { return .success(try Self(reading: &reader)) } catch { return .failure(error) }
    }
}

/// One layer of a spec: its kind with settings, and an optional path name.
public struct LayerSpec: Sendable, Equatable, CustomStringConvertible {
    /// The settings of the layer.
    public var kind: any LayerSpecKind
    /// The layer's path component instead of its index (e.g. `conv1`).
    public var name: String?

    public init(_ kind: any LayerSpecKind, name: String? = nil) {
        self.kind = kind
        self.name = name
    }

    /// The canonical JSON `type` name.
    public var typeName: String { type(of: kind).typeName }

    /// The JSON object for this layer.
    public var jsonObject: [String: Any] {
        var object = kind.jsonKeys
        object["type"] = typeName
        if let name { object["name"] = name }
        return object
    }

    /// Specs are equal when their canonical JSON (sorted keys) is.
    public static func == (a: LayerSpec, b: LayerSpec) -> Bool {
        a.description == b.description
    }

    public var description: String {
        (try? String(decoding: JSONSerialization.data(withJSONObject: jsonObject, options: [.sortedKeys]), as: UTF8.self)) ?? typeName
    }

    /// Reads one layer object.
    /// - Parameter at: its position, for messages (`spec layer 3`, `spec layer 2.main.0`).
    public static func read(jsonObject object: [String: Any], at position: String) throws(SpecError) -> LayerSpec {
        guard let type = object["type"] as? String else { throw SpecError("spec layer \(position): missing \"type\"") }
        guard let kindType = NetworkSpec.kind(named: type) else {
            let known = NetworkSpec.kinds.map { $0.typeName }.joined(separator: ", ")
            throw SpecError("spec layer \(position): unknown type \"\(type)\" (known: \(known), softmaxloss)")
        }
        var reader = SpecReader(object: object, at: "spec layer \(position) (\(type))", position: position)
        let name = try reader.string("name")
        if let name, name.isEmpty || name.contains(".") {
            throw SpecError("spec layer \(position) (\(type)): \"name\" must be non-empty and contain no \".\"")
        }
        let kind = try kindType.decode(from: &reader).get()
        try reader.rejectUnread()
        return LayerSpec(kind, name: name)
    }
}

/// Reads a layer object's keys with range checks, remembering which keys were read.
public struct SpecReader {
    /// The JSON object.
    public let object: [String: Any]
    /// `spec layer 3 (conv2d)`, for messages.
    public let location: String
    /// `3`, `2.main.0`: the layer's position, for nested lists.
    public let position: String
    private var read: Set<String> = ["type"]

    public init(object: [String: Any], at location: String, position: String) {
        self.object = object
        self.location = location
        self.position = position
    }

    /// The largest size a spec may give (channels, features, kernel sizes…): sizes are checked
    /// before anything is allocated.
    public static let maximumSize = 1 << 20

    /// An integer in `minimum...maximum`, or `default` when absent (required when `default` is nil).
    public mutating func integer(_ key: String, default value: Int? = nil, minimum: Int = 1, maximum: Int = SpecReader.maximumSize) throws(SpecError) -> Int {
        read.insert(key)
        guard let raw = object[key] else {
            if let value { return value }
            throw SpecError("\(location): missing \"\(key)\"")
        }
        guard !isJSONBoolean(raw), let number = raw as? Int, number >= minimum, number <= maximum else {
            throw SpecError("\(location): \"\(key)\" must be an integer from \(minimum) to \(maximum)")
        }
        return number
    }

    /// A finite number in `range`, or `default` when absent.
    public mutating func number(_ key: String, default value: Double, in range: ClosedRange<Double>) throws(SpecError) -> Double {
        read.insert(key)
        guard let raw = object[key] else { return value }
        guard !isJSONBoolean(raw), let number = raw as? Double, number.isFinite, range.contains(number) else {
            throw SpecError("\(location): \"\(key)\" must be a number from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }

    /// A positive, finite number, or `default` when absent.
    public mutating func positiveNumber(_ key: String, default value: Double) throws(SpecError) -> Double {
        read.insert(key)
        guard let raw = object[key] else { return value }
        guard !isJSONBoolean(raw), let number = raw as? Double, number > 0, number.isFinite, Float(number).isFinite, Float(number) > 0 else {
            throw SpecError("\(location): \"\(key)\" must be a positive number")
        }
        return number
    }

    /// `true`/`false`, or `default` when absent.
    public mutating func bool(_ key: String, default value: Bool) throws(SpecError) -> Bool {
        read.insert(key)
        guard let raw = object[key] else { return value }
        guard isJSONBoolean(raw), let flag = raw as? Bool else { throw SpecError("\(location): \"\(key)\" must be true or false") }
        return flag
    }

    /// A string, or nil when absent.
    public mutating func string(_ key: String) throws(SpecError) -> String? {
        read.insert(key)
        guard let raw = object[key] else { return nil }
        guard let text = raw as? String else { throw SpecError("\(location): \"\(key)\" must be a string") }
        return text
    }

    /// One of `choices`, or `default` when absent.
    public mutating func choice(_ key: String, _ choices: [String], default value: String) throws(SpecError) -> String {
        guard let text = try string(key) else { return value }
        guard choices.contains(text) else {
            throw SpecError("\(location): \"\(key)\" must be one of \(choices.map { "\"\($0)\"" }.joined(separator: ", "))")
        }
        return text
    }

    /// A nested list of layers (e.g. a residual block's `main`), or nil when absent.
    public mutating func layers(_ key: String) throws(SpecError) -> [LayerSpec]? {
        read.insert(key)
        guard let raw = object[key] else { return nil }
        guard let list = raw as? [Any] else { throw SpecError("\(location): \"\(key)\" must be a list of layer objects") }
        var layers: [LayerSpec] = []
        for (index, item) in list.enumerated() {
            let at = "\(position).\(key).\(index)"
            guard let object = item as? [String: Any] else { throw SpecError("spec layer \(at): must be an object") }
            if let type = object["type"] as? String, ["softmaxloss", "softmax_cross_entropy"].contains(type.lowercased()) {
                throw SpecError("spec layer \(at): softmaxloss may only end the top-level list")
            }
            layers.append(try LayerSpec.read(jsonObject: object, at: at))
        }
        return layers
    }

    /// Fails on the first key (sorted) that no read asked for.
    public func rejectUnread() throws(SpecError) {
        if let unknown = Set(object.keys).subtracting(read).sorted().first {
            throw SpecError("\(location): unknown key \"\(unknown)\"")
        }
    }
}

// MARK: - JSON

/// Whether a value decoded by `JSONSerialization` was `true`/`false` in the text (which also
/// casts to `Int` 1/0, and a JSON `1` casts to `Bool`: the number's type tells them apart).
public func isJSONBoolean(_ value: Any) -> Bool {
    guard let number = value as? NSNumber else { return false }
    return String(cString: number.objCType) == "c"
}

extension NetworkSpec {
    /// The JSON object form (see the type's documentation), loss included.
    public var jsonObject: [String: Any] {
        ["input": input, "layers": layers.map(\.jsonObject) + [["type": "softmaxloss"]]]
    }

    /// Reads `input` and `layers` from a decoded JSON object; other keys are the caller's.
    /// - Throws: `SpecError` naming the layer and key that is wrong.
    public init(jsonObject: [String: Any]) throws(SpecError) {
        guard let input = jsonIntegers(jsonObject["input"]), !input.isEmpty, input.count <= 3,
              input.allSatisfy({ $0 > 0 && $0 <= SpecReader.maximumSize }),
              input.reduce(1, { $0.multipliedReportingOverflow(by: $1).partialValue }) <= 1 << 26 else {
            throw SpecError("spec: \"input\" must be a list of one to three positive sizes, e.g. [1, 28, 28]")
        }
        guard let layerObjects = jsonObject["layers"] as? [Any], !layerObjects.isEmpty else {
            throw SpecError("spec: \"layers\" must be a non-empty list of objects")
        }
        var layers: [LayerSpec] = []
        for (position, item) in layerObjects.enumerated() {
            guard let object = item as? [String: Any] else { throw SpecError("spec layer \(position): must be an object") }
            if let type = object["type"] as? String, ["softmaxloss", "softmax_cross_entropy"].contains(type.lowercased()) {
                guard position == layerObjects.count - 1 else {
                    throw SpecError("spec layer \(position): softmaxloss must be the last layer")
                }
                if let unknown = Set(object.keys).subtracting(["type"]).sorted().first {
                    throw SpecError("spec layer \(position) (\(type)): unknown key \"\(unknown)\"")
                }
                continue
            }
            layers.append(try LayerSpec.read(jsonObject: object, at: String(position)))
        }
        guard !layers.isEmpty else { throw SpecError("spec: no layers before the loss") }
        self.init(input: input, layers: layers)
    }

    /// Decodes JSON text, reporting a syntax error with its line and column.
    public static func parseJSON(_ data: Data, source: String) throws(SpecError) -> Any {
        do {
            return try JSONSerialization.jsonObject(with: data)
        } catch {
            let nsError = error as NSError
            // Darwin gives the offset as a number; Linux's Foundation only in the description
            // ("Invalid value around character 34.").
            var described: Int?
            if let text = nsError.userInfo[NSDebugDescriptionErrorKey] as? String,
               let range = text.range(of: #"character \d+"#, options: .regularExpression) {
                described = Int(text[range].dropFirst("character ".count))
            }
            if let index = nsError.userInfo["NSJSONSerializationErrorIndex"] as? Int ?? described {
                let prefix = data.prefix(max(0, min(index, data.count)))
                let line = prefix.reduce(1) { $0 + ($1 == 0x0A ? 1 : 0) }
                let column = prefix.count - (prefix.lastIndex(of: 0x0A).map { $0 + 1 } ?? 0) + 1
                throw SpecError("\(source): invalid JSON at line \(line), column \(column)")
            }
            throw SpecError("\(source): invalid JSON (\(nsError.localizedDescription))")
        }
    }
}
