import Backprop
import BackpropData
import BackpropTraining
import Foundation

/// An ONNX model read back into a Backprop network: its architecture as a `NetworkSpec`, the
/// network with the file's weights, and the file's metadata.
///
/// The graph must be a chain of layers from one input to the logits, with residual blocks (a
/// tensor read by two paths whose results an `Add` sums) — the nets Backprop builds, as
/// `backprop export` and `torch.onnx.export` write them:
///
/// | ONNX | Backprop layer |
/// |---|---|
/// | `Conv` (2-D, square kernel, symmetric pads, group 1) | conv2d |
/// | `Gemm`, or `MatMul` by a constant with an optional `Add` of a bias | dense |
/// | `Relu`; `Gelu`; any run of `Add`/`Sub`/`Mul`/`Div`/`Pow`/`Erf`/`Tanh`/`Sqrt`/`Neg` with scalar constants that computes `x·Φ(x)` (GELU, exact or tanh form) or `a·x` | relu; gelu; scale (identity when `a = 1`) |
/// | `BatchNormalization` (inference) | batchnorm2d / batchnorm1d |
/// | `MaxPool`, `AveragePool` (square, no padding) | maxpool2d, avgpool2d |
/// | `GlobalAveragePool`, `GlobalMaxPool` (then `Flatten`); `ReduceMean`, `ReduceMax` over H and W | global_avgpool2d, global_maxpool2d |
/// | `Flatten` (axis 1), `Reshape` to `[N, features]` | flatten |
/// | `Add` of two computed tensors | residual (first input: the main path) |
/// | `Dropout`, `Identity` | dropout, identity |
/// | a final `Softmax`/`LogSoftmax` | left out (Backprop's networks end in logits) |
///
/// `Constant` nodes are read as constants. Any other operator makes the file unreadable, and the
/// error names every such operator in the file at once. Every size in the file is checked before
/// anything is allocated for it.
public struct ONNXModel {
    /// The architecture read from the graph (layers named by position).
    public var spec: NetworkSpec
    /// The network with the file's weights and BatchNorm statistics.
    public var network: Network<Float>
    /// The model's `metadata_props`.
    public var metadata: [String: String]
    /// What was left out or changed on the way (e.g. a final Softmax), one line each.
    public var notes: [String]

    /// The operators Backprop reads.
    public static let supportedOperators = [
        "Add", "AveragePool", "BatchNormalization", "Constant", "Conv", "Div", "Dropout", "Erf", "Flatten", "Gelu", "Gemm",
        "GlobalAveragePool", "GlobalMaxPool", "Identity", "LogSoftmax", "MatMul", "MaxPool", "Mul", "Neg", "Pow",
        "ReduceMax", "ReduceMean", "Relu", "Reshape", "Softmax", "Sqrt", "Sub", "Tanh",
    ]

    /// The default domain's operator set versions Backprop reads.
    public static let supportedOpsets: ClosedRange<Int64> = 9...24

    /// The largest file Backprop reads (protobuf's own limit is 2 GiB).
    public static let maximumFileSize = 1 << 31 - 1

    /// Reads an ONNX file.
    /// - Throws: `ONNXError` (one line, naming the file) for anything that cannot be read.
    public init(contentsOf url: URL) throws(ONNXError) {
        let size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? nil
        guard let size else { throw ONNXError("\(url.path): cannot read the file") }
        guard size <= Self.maximumFileSize else { throw ONNXError("\(url.path): \(size) bytes, larger than an ONNX file can be") }
        guard let data = try? Data(contentsOf: url) else { throw ONNXError("\(url.path): cannot read the file") }
        try self.init(data: data, source: url.path)
    }

    /// Reads an ONNX model's bytes.
    /// - Parameter source: the file's name, for messages.
    public init(data: Data, source: String) throws(ONNXError) {
        func prefixed(_ error: ONNXError) -> ONNXError { ONNXError("\(source): \(error.description)") }
        let proto: Onnx_ModelProto
        do {
            proto = try Onnx_ModelProto(serializedBytes: data)
        } catch {
            throw ONNXError("\(source): not an ONNX model (the protobuf data is malformed: \(error))")
        }
        do throws(ONNXError) {
            var reader = try GraphReader(proto)
            let (spec, weights) = try reader.read()
            var generator = SeededGenerator(seed: 0)
            let network: Network<Float>
            do { network = try spec.makeNetwork(Float.self, using: &generator) } catch {
                throw ONNXError(error.description)
            }
            for (name, parameter) in network.namedParameters {
                guard let tensor = weights[name] else { throw ONNXError("no weights for \(name)") }
                guard tensor.shape == parameter.value.shape else {
                    throw ONNXError("\(name) has shape \(tensor.shape) in the file, the layer needs \(parameter.value.shape)")
                }
                parameter.value = tensor
            }
            for (name, buffer) in network.namedBuffers {
                guard let tensor = weights[name] else { continue }  // num_batches_tracked: not in ONNX, stays 0
                guard tensor.shape == buffer.value.shape else {
                    throw ONNXError("\(name) has shape \(tensor.shape) in the file, the layer needs \(buffer.value.shape)")
                }
                buffer.value = tensor
            }
            self.spec = spec
            self.network = network
            self.notes = reader.notes
            self.metadata = Dictionary(proto.metadataProps.map { ($0.key, $0.value) }, uniquingKeysWith: { _, last in last })
        } catch {
            throw prefixed(error)
        }
    }

    // MARK: - Metadata

    /// The preprocessing `backprop export` records (`backprop.preprocessing.scale` and `.mean`),
    /// nil when the file has none.
    /// - Throws: `ONNXError` when the entries are there but malformed.
    public func recordedPreprocessing() throws(ONNXError) -> Preprocessing? {
        guard let scaleText = metadata["backprop.preprocessing.scale"] ?? nil, let meanText = metadata["backprop.preprocessing.mean"] else {
            return nil
        }
        guard let scale = Double(scaleText), scale.isFinite, Float(scale).isFinite,
              let mean = (try? JSONSerialization.jsonObject(with: Data(meanText.utf8))) as? [Double],
              !mean.isEmpty, mean.count <= 4, mean.allSatisfy({ $0.isFinite && Float($0).isFinite }) else {
            throw ONNXError("the metadata's backprop.preprocessing.scale or .mean is malformed")
        }
        return Preprocessing(scale: Float(scale), mean: mean.map(Float.init))
    }

    /// The data set `backprop export` records (`backprop.dataset`), if it is one Backprop knows.
    public var recordedDataset: DatasetKind? {
        metadata["backprop.dataset"].flatMap(DatasetKind.init(rawValue:))
    }

    /// The test-time augmentation `backprop export` records (`backprop.test_time_augmentation`),
    /// nil when the file has none.
    /// - Throws: `ONNXError` when the entry is there but malformed or does not fit the input.
    public func recordedTestTimeAugmentation() throws(ONNXError) -> TestTimeAugmentation? {
        guard let text = metadata["backprop.test_time_augmentation"] else { return nil }
        do {
            let augmentation = try TestTimeAugmentation(parsing: text)
            guard network.inputShape.count == 3 else { throw SpecError("test-time augmentation needs image inputs") }
            try augmentation.validate(height: network.inputShape[1], width: network.inputShape[2])
            return augmentation
        } catch {
            throw ONNXError("the metadata's backprop.test_time_augmentation is unusable: \(error)")
        }
    }

    /// The class names `backprop export` records (`backprop.class_names`), if well-formed.
    public var recordedClassNames: [String]? {
        metadata["backprop.class_names"].flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String] }
    }
}

// MARK: - Reading the graph

/// One node of the graph, with its attributes by name.
private struct Node {
    var op: String
    var name: String
    var inputs: [String]
    var outputs: [String]
    var attributes: [String: Onnx_AttributeProto]
    /// `node "name" (Op)`, for messages.
    var label: String

    func int(_ key: String, default value: Int) throws(ONNXError) -> Int {
        guard let a = attributes[key] else { return value }
        guard a.type == .int || (a.type == .undefined && a.hasI) else { throw ONNXError("\(label): attribute \(key) is not an integer") }
        guard a.i >= Int64(Int32.min), a.i <= Int64(Int32.max) else { throw ONNXError("\(label): attribute \(key) = \(a.i) is out of range") }
        return Int(a.i)
    }

    func ints(_ key: String) throws(ONNXError) -> [Int]? {
        guard let a = attributes[key] else { return nil }
        guard a.type == .ints || a.type == .undefined, a.ints.count <= 8 else { throw ONNXError("\(label): attribute \(key) is not a short list of integers") }
        guard a.ints.allSatisfy({ $0 >= Int64(Int32.min) && $0 <= Int64(Int32.max) }) else {
            throw ONNXError("\(label): attribute \(key) = \(a.ints) is out of range")
        }
        return a.ints.map { Int($0) }
    }

    func float(_ key: String, default value: Double) throws(ONNXError) -> Double {
        guard let a = attributes[key] else { return value }
        guard a.type == .float || (a.type == .undefined && a.hasF), a.f.isFinite else { throw ONNXError("\(label): attribute \(key) is not a finite number") }
        return Double(a.f)
    }

    func string(_ key: String) throws(ONNXError) -> String? {
        guard let a = attributes[key] else { return nil }
        guard a.type == .string || a.type == .undefined else { throw ONNXError("\(label): attribute \(key) is not a string") }
        return String(decoding: a.s, as: UTF8.self)
    }
}

/// Turns a graph into layer specs and weights.
private struct GraphReader {
    var nodes: [Node] = []
    var constants: [String: ConstantTensor] = [:]
    /// The nodes reading each tensor (each node once).
    var consumers: [String: [Int]] = [:]
    var producer: [String: Int] = [:]
    var graphOutputs: Set<String> = []
    var inputName = ""
    var inputShape: [Int] = []
    /// Each node's position in a topological order.
    var order: [Int] = []
    var notes: [String] = []
    /// Weights by their path in the network (`3.weight`).
    var weights: [String: Tensor<Float>] = [:]
    /// Which nodes the walk has turned into layers.
    var visited: Set<Int> = []
    var generator = SeededGenerator(seed: 0)

    static let maximumNodes = 1 << 16
    static let maximumDepth = 64
    static let elementwiseBinary: Set<String> = ["Add", "Sub", "Mul", "Div", "Pow"]
    static let elementwiseUnary: Set<String> = ["Erf", "Tanh", "Sqrt", "Neg"]

    init(_ model: Onnx_ModelProto) throws(ONNXError) {
        let opset = model.opsetImport.first { $0.domain == "" || $0.domain == "ai.onnx" }?.version
        guard let opset else { throw ONNXError("the model imports no version of the standard ONNX operators") }
        guard ONNXModel.supportedOpsets.contains(opset) else {
            throw ONNXError("opset \(opset) is outside the versions Backprop reads (\(ONNXModel.supportedOpsets.lowerBound)-\(ONNXModel.supportedOpsets.upperBound))")
        }
        guard model.hasGraph else { throw ONNXError("the model has no graph") }
        let graph = model.graph
        guard graph.node.count <= Self.maximumNodes, graph.initializer.count <= Self.maximumNodes else {
            throw ONNXError("the graph has \(graph.node.count) nodes and \(graph.initializer.count) initializers (at most \(Self.maximumNodes) each)")
        }

        // Every operator Backprop cannot read, all at once.
        var unsupported: [String: Int] = [:]
        for node in graph.node {
            let standard = node.domain == "" || node.domain == "ai.onnx"
            if !standard || !ONNXModel.supportedOperators.contains(node.opType) {
                unsupported[standard ? node.opType : "\(node.domain).\(node.opType)", default: 0] += 1
            }
        }
        if !unsupported.isEmpty {
            let list = unsupported.sorted { $0.key < $1.key }.map { "\($0.key) (\($0.value) node\($0.value == 1 ? "" : "s"))" }
            throw ONNXError("unsupported ONNX operators: \(list.joined(separator: ", ")); Backprop reads \(ONNXModel.supportedOperators.joined(separator: ", "))")
        }

        for tensor in graph.initializer {
            guard !tensor.name.isEmpty else { throw ONNXError("an initializer has no name") }
            constants[tensor.name] = try ConstantTensor(tensor, what: "initializer \(tensor.name)")
        }
        for (index, proto) in graph.node.enumerated() {
            var attributes: [String: Onnx_AttributeProto] = [:]
            for a in proto.attribute { attributes[a.name] = a }
            let label = proto.name.isEmpty ? "node #\(index) (\(proto.opType))" : "node \"\(proto.name)\" (\(proto.opType))"
            if proto.opType == "Constant" {
                guard proto.output.count == 1, let value = attributes["value"], value.hasT else {
                    throw ONNXError("\(label): only a Constant with a tensor \"value\" is read")
                }
                constants[proto.output[0]] = try ConstantTensor(value.t, what: label)
                continue
            }
            nodes.append(Node(op: proto.opType, name: proto.name, inputs: proto.input, outputs: proto.output,
                              attributes: attributes, label: label))
        }

        // The one input that is not a constant.
        let inputs = graph.input.filter { constants[$0.name] == nil }
        guard inputs.count == 1, let input = inputs.first else {
            throw ONNXError("the graph has \(inputs.count) inputs besides its weights; Backprop reads models with one (the images)")
        }
        inputName = input.name
        guard input.type.tensorType.elemType == Int32(Onnx_TensorProto.DataType.float.rawValue) else {
            throw ONNXError("input \(inputName) is not float32")
        }
        let dims = input.type.tensorType.shape.dim
        guard dims.count == 4 || dims.count == 2 else {
            throw ONNXError("input \(inputName) has \(dims.count) dimensions; Backprop reads [N, C, H, W] or [N, features]")
        }
        for d in dims.dropFirst() {
            guard case .dimValue(let v)? = d.value, v > 0, v <= Int64(SpecReader.maximumSize) else {
                throw ONNXError("input \(inputName) needs fixed sizes after the batch dimension, from 1 to \(SpecReader.maximumSize)")
            }
            inputShape.append(Int(v))
        }

        // Producers, consumers, and that everything read exists.
        for (index, node) in nodes.enumerated() {
            for output in node.outputs where !output.isEmpty {
                guard producer[output] == nil, constants[output] == nil, output != inputName else {
                    throw ONNXError("\(node.label): tensor \(output) is produced twice")
                }
                producer[output] = index
            }
        }
        for (index, node) in nodes.enumerated() {
            for input in node.inputs where !input.isEmpty {
                guard producer[input] != nil || constants[input] != nil || input == inputName else {
                    throw ONNXError("\(node.label) reads \(input), which no node, initializer or input provides")
                }
                if constants[input] == nil, consumers[input]?.last != index { consumers[input, default: []].append(index) }
            }
        }

        // A topological order (Kahn's algorithm); nodes left over sit on a cycle.
        var pending = nodes.map { node in Set(node.inputs.filter { producer[$0] != nil }).count }
        var ready = nodes.indices.filter { pending[$0] == 0 }
        order = [Int](repeating: -1, count: nodes.count)
        var position = 0
        while let next = ready.popLast() {
            order[next] = position
            position += 1
            for output in nodes[next].outputs where !output.isEmpty {
                for consumer in consumers[output] ?? [] {
                    pending[consumer] -= 1
                    if pending[consumer] == 0 { ready.append(consumer) }
                }
            }
        }
        if let stuck = order.firstIndex(of: -1) {
            throw ONNXError("the graph has a cycle (through \(nodes[stuck].label))")
        }

        graphOutputs = Set(graph.output.map(\.name))
        guard !graphOutputs.isEmpty else { throw ONNXError("the graph has no output") }
        for output in graphOutputs.sorted() where producer[output] == nil && output != inputName {
            throw ONNXError("the graph's output \(output) is produced by no node")
        }
    }

    /// The network's spec and weights.
    mutating func read() throws(ONNXError) -> (NetworkSpec, [String: Tensor<Float>]) {
        let walk = try self.walk(from: inputName, shape: inputShape, squeezed: false, path: "", depth: 0)
        if let merge = walk.merge { throw ONNXError("\(nodes[merge].label) adds two computed tensors outside a residual block") }
        guard !walk.layers.isEmpty else { throw ONNXError("the graph has no layers") }
        guard walk.shape.count == 1 else {
            throw ONNXError("the graph ends in a \(describe(shape: walk.shape)) tensor; Backprop's networks end in one score per class")
        }
        let ends = graphOutputs.subtracting(headOutputs)
        guard ends.isSubset(of: [walk.end]) else {
            throw ONNXError("the graph's output \(ends.sorted().first!) is not where its layers end (\(walk.end))")
        }
        let object: [String: Any] = ["input": inputShape, "layers": walk.layers.map(\.jsonObject)]
        do {
            return (try NetworkSpec(jsonObject: object), weights)
        } catch {
            throw ONNXError(error.description)
        }
    }

    /// Outputs of the final Softmax/LogSoftmax nodes left out.
    var headOutputs: Set<String> = []

    // MARK: The walk

    /// A list of layers read from `start` on, up to the end of the graph or to the `Add` that
    /// closes the residual block the list is a path of (`merge`).
    struct Walk {
        var layers: [LayerSpec] = []
        var end: String
        var merge: Int?
        var shape: [Int]
        /// The ONNX tensor has trailing 1x1 dimensions that the Backprop layer's output has not
        /// (after a global pooling, until the `Flatten`).
        var squeezed: Bool
    }

    /// What reads a tensor: a run of elementwise nodes, one node, or the `Add` closing a block.
    enum Entry {
        case elementwise(nodes: [Int], output: String)
        case node(Int)
        case merge(Int)
    }

    mutating func walk(from start: String, shape: [Int], squeezed: Bool, path: String, depth: Int) throws(ONNXError) -> Walk {
        guard depth <= Self.maximumDepth else { throw ONNXError("residual blocks nest deeper than \(Self.maximumDepth) levels") }
        var walk = Walk(end: start, shape: shape, squeezed: squeezed)
        while true {
            let entries = try self.entries(at: walk.end)
            switch entries.count {
            case 0:
                return walk
            case 1:
                if case .merge(let add) = entries[0] { walk.merge = add; return walk }
                try step(entries[0], walk: &walk, path: path)
            case 2:
                try residual(entries, walk: &walk, path: path, depth: depth)
            default:
                throw ONNXError("tensor \(walk.end) is read by \(entries.count) paths; Backprop reads chains and residual blocks of two paths")
            }
        }
    }

    /// The readers of tensor `t`, final Softmax nodes left out (and noted).
    mutating func entries(at t: String) throws(ONNXError) -> [Entry] {
        var readers = consumers[t] ?? []
        readers.removeAll { index in
            let node = nodes[index]
            guard node.op == "Softmax" || node.op == "LogSoftmax", node.outputs.allSatisfy({ consumers[$0] == nil }) else { return false }
            if !visited.contains(index) {
                visited.insert(index)
                headOutputs.formUnion(node.outputs)
                notes.append("the final \(node.op) was left out: Backprop's networks end in logits (predictions take the largest)")
            }
            return true
        }
        let region = elementwiseRegion(from: t)
        var entries: [Entry] = []
        if !region.isEmpty {
            let outputs = Set(region.flatMap { nodes[$0].outputs })
            let escaping = outputs.filter { output in
                graphOutputs.contains(output) || (consumers[output] ?? []).contains { !region.contains($0) }
            }
            guard escaping.count == 1, let output = escaping.first else {
                throw ONNXError("the elementwise operations reading \(t) (\(region.map { nodes[$0].label }.sorted().joined(separator: ", "))) give \(escaping.count) results; Backprop reads one")
            }
            entries.append(.elementwise(nodes: region.sorted { order[$0] < order[$1] }, output: output))
        }
        for reader in readers where !region.contains(reader) {
            let node = nodes[reader]
            let computed = node.inputs.filter { !$0.isEmpty && constants[$0] == nil }
            entries.append(node.op == "Add" && computed.count == 2 ? .merge(reader) : .node(reader))
        }
        return entries
    }

    /// The elementwise nodes (with scalar constants) that compute from `t` alone: grown from
    /// `t`'s readers until no other node's computed inputs all lie in the region.
    func elementwiseRegion(from t: String) -> Set<Int> {
        var region: Set<Int> = [], known: Set<String> = [t]
        var frontier = [t]
        while let tensor = frontier.popLast() {
            for index in consumers[tensor] ?? [] where !region.contains(index) {
                let node = nodes[index]
                let binary = Self.elementwiseBinary.contains(node.op), unary = Self.elementwiseUnary.contains(node.op)
                guard (binary && node.inputs.count == 2) || (unary && node.inputs.count == 1), node.outputs.count == 1 else { continue }
                let fits = node.inputs.allSatisfy { input in known.contains(input) || constants[input]?.count == 1 }
                guard fits else { continue }
                region.insert(index)
                known.insert(node.outputs[0])
                frontier.append(node.outputs[0])
            }
        }
        return region
    }

    /// Adds the layer (if any) that one entry makes.
    mutating func step(_ entry: Entry, walk: inout Walk, path: String) throws(ONNXError) {
        let at = joinPath(path, String(walk.layers.count))
        switch entry {
        case .merge(let add):
            throw ONNXError("\(nodes[add].label) adds two computed tensors outside a residual block")
        case .elementwise(let region, let output):
            try requireUnsqueezed(walk, nodes[region[0]])
            region.forEach { visited.insert($0) }
            let object = try classify(region, input: walk.end)
            try append(object, at: at, to: &walk, label: nodes[region[0]].label)
            walk.end = output
        case .node(let index):
            visited.insert(index)
            try convert(nodes[index], at: at, walk: &walk)
        }
    }

    /// A residual block from the two entries reading `walk.end`.
    mutating func residual(_ entries: [Entry], walk: inout Walk, path: String, depth: Int) throws(ONNXError) {
        let at = joinPath(path, String(walk.layers.count))
        let start = walk.end
        if walk.squeezed { throw ONNXError("tensor \(start) after a global pooling must be flattened before a residual block") }
        var branches: [Walk] = []
        for (number, entry) in entries.enumerated() {
            if case .merge(let add) = entry {
                branches.append(Walk(end: start, merge: add, shape: walk.shape, squeezed: false))
                continue
            }
            // Each path is walked under a provisional name; the main path is chosen at the `Add`.
            var branch = Walk(end: start, shape: walk.shape, squeezed: false)
            let branchPath = joinPath(at, "branch\(number)")
            try step(entry, walk: &branch, path: branchPath)
            let rest = try self.walk(from: branch.end, shape: branch.shape, squeezed: branch.squeezed, path: branchPath + ".@", depth: depth + 1)
            branch.layers += rest.layers
            branch.end = rest.end
            branch.merge = rest.merge
            branch.shape = rest.shape
            branches.append(branch)
        }
        guard let add = branches[0].merge, branches[1].merge == add else {
            throw ONNXError("the two paths reading \(start) do not meet in one Add; Backprop reads residual blocks whose paths are summed")
        }
        let node = nodes[add]
        visited.insert(add)
        let ends = [branches[0].end, branches[1].end]
        guard Set(node.inputs) == Set(ends) else {
            throw ONNXError("\(node.label) does not add the two paths reading \(start)")
        }
        // `Add(main, shortcut)`; an empty path is the identity shortcut.
        var mainIndex = node.inputs[0] == ends[0] ? 0 : 1
        if branches[mainIndex].layers.isEmpty { mainIndex = 1 - mainIndex }
        let main = branches[mainIndex], shortcut = branches[1 - mainIndex]
        guard !main.layers.isEmpty else { throw ONNXError("\(node.label) adds a tensor to itself") }
        guard main.shape == shortcut.shape else {
            throw ONNXError("\(node.label) adds a \(describe(shape: main.shape)) tensor to a \(describe(shape: shortcut.shape)) one")
        }
        // Rename the provisional paths (`3.branch1.0` → `3.main.0`, `3.branch1.@.0` → `3.main.1`).
        renameWeights(from: joinPath(at, "branch\(mainIndex)"), to: joinPath(at, "main"), count: main.layers.count)
        renameWeights(from: joinPath(at, "branch\(1 - mainIndex)"), to: joinPath(at, "shortcut"), count: shortcut.layers.count)
        var object: [String: Any] = ["type": "residual", "main": main.layers.map(\.jsonObject)]
        if !shortcut.layers.isEmpty { object["shortcut"] = shortcut.layers.map(\.jsonObject) }
        try append(object, at: at, to: &walk, label: node.label, shape: main.shape)
        walk.end = node.outputs[0]
    }

    /// Moves the weights of a provisional path: its first layer sits at `from.0`, the rest at
    /// `from.@.i` (walked after it), and become `to.0`, `to.1`, ….
    mutating func renameWeights(from: String, to: String, count: Int) {
        let moved = weights.filter { $0.key.hasPrefix(from + ".") }
        for (key, _) in moved { weights[key] = nil }
        for (key, tensor) in moved {
            var rest = String(key.dropFirst(from.count + 1))
            if rest.hasPrefix("@.") {
                // `@.i.…` is layer i + 1 of the path.
                let tail = rest.dropFirst(2)
                let digits = tail.prefix { $0.isNumber }
                rest = "\((Int(digits) ?? 0) + 1)" + tail.dropFirst(digits.count)
            }
            weights[to + "." + rest] = tensor
        }
        _ = count
    }

    /// Reads a layer object through the spec reader (so its range checks apply), builds it for
    /// the current shape, and appends it.
    mutating func append(_ object: [String: Any], at path: String, to walk: inout Walk, label: String, shape: [Int]? = nil) throws(ONNXError) {
        let spec: LayerSpec
        do { spec = try LayerSpec.read(jsonObject: object, at: path) } catch { throw ONNXError("\(label): \(error.description)") }
        if let shape {
            walk.shape = shape
        } else {
            do {
                let layer: any Layer<Float> = try spec.kind.makeLayer(inputShape: walk.shape, path: path, using: &generator)
                walk.shape = try layer.outputShape(for: walk.shape)
            } catch {
                throw ONNXError("\(label): \(error.description)")
            }
        }
        walk.layers.append(spec)
    }

    func requireUnsqueezed(_ walk: Walk, _ node: Node) throws(ONNXError) {
        if walk.squeezed { throw ONNXError("\(node.label) reads the output of a global pooling that was not flattened") }
    }

    // MARK: Single nodes

    /// The constant input `index` of `node`, or an error naming it.
    func constant(_ node: Node, _ index: Int, _ role: String) throws(ONNXError) -> ConstantTensor {
        guard index < node.inputs.count, !node.inputs[index].isEmpty else { throw ONNXError("\(node.label) has no \(role)") }
        guard let c = constants[node.inputs[index]] else {
            throw ONNXError("\(node.label): its \(role) \(node.inputs[index]) is computed; Backprop reads it only as a constant")
        }
        return c
    }

    /// The outputs after the first must be unused (a pooling's indices, a dropout's mask).
    func requireOneOutput(_ node: Node) throws(ONNXError) {
        for extra in node.outputs.dropFirst() where !extra.isEmpty && (consumers[extra] != nil || graphOutputs.contains(extra)) {
            throw ONNXError("\(node.label): its output \(extra) is used; Backprop reads only the first")
        }
    }

    mutating func convert(_ node: Node, at path: String, walk: inout Walk) throws(ONNXError) {
        guard node.outputs.first.map({ !$0.isEmpty }) == true else { throw ONNXError("\(node.label) has no output") }
        try requireOneOutput(node)
        let output = node.outputs[0]
        // Where the layer's result is: the node's output, or the bias `Add`'s after a `MatMul`.
        var end = output
        defer { walk.end = end }
        switch node.op {
        case "Identity", "Dropout":
            var object: [String: Any] = ["type": "identity"]
            if node.op == "Dropout" {
                if node.inputs.count > 2, !node.inputs[2].isEmpty {
                    guard let mode = constants[node.inputs[2]]?.doubles, mode == [0] else {
                        throw ONNXError("\(node.label) runs in training mode; Backprop reads inference graphs")
                    }
                }
                var ratio = try node.float("ratio", default: 0.5)
                if node.inputs.count > 1, !node.inputs[1].isEmpty {
                    let r = try constant(node, 1, "ratio")
                    guard r.count == 1 else { throw ONNXError("\(node.label): the ratio is not a scalar") }
                    ratio = r.doubles[0]
                }
                object = ["type": "dropout", "p": ratio]
            }
            try append(object, at: path, to: &walk, label: node.label)
        case "Relu":
            try requireUnsqueezed(walk, node)
            try append(["type": "relu"], at: path, to: &walk, label: node.label)
        case "Gelu":
            try requireUnsqueezed(walk, node)
            let approximate = try node.string("approximate") ?? "none"
            guard ["none", "tanh"].contains(approximate) else { throw ONNXError("\(node.label): approximate \"\(approximate)\" is neither none nor tanh") }
            try append(["type": "gelu", "approximate": approximate], at: path, to: &walk, label: node.label)
        case "Flatten", "Reshape":
            if node.op == "Flatten" {
                guard try node.int("axis", default: 1) == 1 else { throw ONNXError("\(node.label): Backprop flattens from axis 1 only") }
            } else {
                let target = try constant(node, 1, "shape")
                let features = walk.squeezed ? walk.shape[0] : walk.shape.reduce(1, *)
                guard let dims = target.integers, dims.count == 2, [0, -1].contains(dims[0]) || dims[0] > 0,
                      dims[1] == -1 || dims[1] == features, !(dims[0] == -1 && dims[1] == -1) else {
                    throw ONNXError("\(node.label): Backprop reads a Reshape only to [N, features] (a flatten)")
                }
            }
            if walk.shape.count > 1 {
                try append(["type": "flatten"], at: path, to: &walk, label: node.label)
            }
            walk.squeezed = false
        case "Conv":
            try requireUnsqueezed(walk, node)
            let w = try constant(node, 1, "weight")
            guard w.dims.count == 4, w.dims[2] == w.dims[3] else {
                throw ONNXError("\(node.label): the weight is \(w.dims); Backprop reads 2-D convolutions with square kernels")
            }
            let k = w.dims[2]
            guard try node.int("group", default: 1) == 1 else { throw ONNXError("\(node.label): grouped convolutions are not supported") }
            // The weight must fit the tensor it reads before anything else of the node is read.
            if walk.shape.count == 3, w.dims[1] != walk.shape[0] {
                throw ONNXError("\(node.label): its weight \(node.inputs[1]) has shape \(w.dims) in the file; on \(walk.shape[0]) input channels the layer needs \([w.dims[0], walk.shape[0], k, k])")
            }
            if let kernel = try node.ints("kernel_shape"), kernel != [k, k] { throw ONNXError("\(node.label): kernel_shape \(kernel) does not match the weight \(w.dims)") }
            if let dilations = try node.ints("dilations"), dilations.contains(where: { $0 != 1 }) {
                throw ONNXError("\(node.label): dilated convolutions are not supported")
            }
            let stride = try equalPair(node, "strides", default: 1)
            let padding = try symmetricPadding(node)
            var object: [String: Any] = ["type": "conv2d", "out_channels": w.dims[0], "kernel_size": k, "stride": stride, "padding": padding]
            let hasBias = node.inputs.count > 2 && !node.inputs[2].isEmpty
            if !hasBias { object["bias"] = false }
            try append(object, at: path, to: &walk, label: node.label)
            weights[path + ".weight"] = w.tensor()
            if hasBias {
                let b = try constant(node, 2, "bias")
                guard b.count == w.dims[0] else { throw ONNXError("\(node.label): \(b.count) biases for \(w.dims[0]) filters") }
                weights[path + ".bias"] = b.tensor(shape: [b.count])
            }
        case "Gemm":
            try requireUnsqueezed(walk, node)
            guard try node.int("transA", default: 0) == 0 else { throw ONNXError("\(node.label): transA is not supported") }
            let alpha = try node.float("alpha", default: 1), beta = try node.float("beta", default: 1)
            let w = try constant(node, 1, "weight")
            guard w.dims.count == 2 else { throw ONNXError("\(node.label): the weight is \(w.dims), not a matrix") }
            let transposed = try node.int("transB", default: 0) != 0
            var weight = transposed ? w.tensor() : transpose(w.tensor())
            if alpha != 1 { weight.scalars = weight.scalars.map { $0 * Float(alpha) } }
            try checkDenseInput(weight: weight, name: node.inputs[1], walk: walk, node: node)
            var bias: Tensor<Float>?
            if node.inputs.count > 2, !node.inputs[2].isEmpty {
                bias = try biasVector(try constant(node, 2, "bias"), count: weight.shape[0], node: node)
                if beta != 1 { bias!.scalars = bias!.scalars.map { $0 * Float(beta) } }
            }
            try appendDense(weight: weight, bias: bias, at: path, walk: &walk, node: node)
        case "MatMul":
            try requireUnsqueezed(walk, node)
            guard node.inputs[0] == walk.end else { throw ONNXError("\(node.label): Backprop reads x·W with the weight second") }
            let w = try constant(node, 1, "weight")
            guard w.dims.count == 2 else { throw ONNXError("\(node.label): the weight is \(w.dims), not a matrix") }
            let weight = transpose(w.tensor())
            try checkDenseInput(weight: weight, name: node.inputs[1], walk: walk, node: node)
            // A following `Add` of a constant vector is the bias.
            var bias: Tensor<Float>?
            if let readers = consumers[output], readers.count == 1, !graphOutputs.contains(output) {
                let add = nodes[readers[0]]
                let other = add.inputs.first { $0 != output } ?? ""
                if add.op == "Add", add.inputs.count == 2, let b = constants[other], b.count == weight.shape[0], b.dims.count <= 2 {
                    bias = try biasVector(b, count: weight.shape[0], node: add)
                    visited.insert(readers[0])
                    try appendDense(weight: weight, bias: bias, at: path, walk: &walk, node: node)
                    end = add.outputs[0]
                    return
                }
            }
            try appendDense(weight: weight, bias: nil, at: path, walk: &walk, node: node)
        case "BatchNormalization":
            try requireUnsqueezed(walk, node)
            if try node.int("training_mode", default: 0) != 0 { throw ONNXError("\(node.label) runs in training mode; Backprop reads inference graphs") }
            let channels = walk.shape.first ?? 0
            var tensors: [Tensor<Float>] = []
            for (index, role) in ["scale", "bias", "mean", "variance"].enumerated() {
                let c = try constant(node, index + 1, role)
                guard c.count == channels else { throw ONNXError("\(node.label): the \(role) has \(c.count) values for \(channels) channels") }
                tensors.append(c.tensor(shape: [channels]))
            }
            let epsilon = try node.float("epsilon", default: 1e-5)
            let momentum = 1 - (try node.float("momentum", default: 0.9))
            guard epsilon > 0 else { throw ONNXError("\(node.label): epsilon \(epsilon) is not positive") }
            // γ = 1 and β = 0 under names that are not a parameter's (`…weight`, `…bias`, as
            // Backprop and PyTorch name trained ones) are constants: no parameters (`affine:
            // none`, what `backprop export` writes for it and PyTorch's `affine=False`).
            let constantScale = !node.inputs[1].hasSuffix("weight") && tensors[0].scalars.allSatisfy { $0 == 1 }
            let constantShift = !node.inputs[2].hasSuffix("bias") && tensors[1].scalars.allSatisfy { $0 == 0 }
            let withoutParameters = constantScale && constantShift
            var object: [String: Any] = ["type": walk.shape.count == 3 ? "batchnorm2d" : "batchnorm1d", "eps": epsilon,
                                         "momentum": min(max(momentum, 0), 1)]
            if withoutParameters { object["affine"] = "none" }
            try append(object, at: path, to: &walk, label: node.label)
            let names = withoutParameters ? ["running_mean", "running_var"] : ["weight", "bias", "running_mean", "running_var"]
            for (name, tensor) in zip(names, withoutParameters ? Array(tensors[2...]) : tensors) { weights["\(path).\(name)"] = tensor }
        case "MaxPool", "AveragePool":
            try requireUnsqueezed(walk, node)
            guard let kernel = try node.ints("kernel_shape"), kernel.count == 2, kernel[0] == kernel[1] else {
                throw ONNXError("\(node.label): Backprop reads 2-D pooling over square windows")
            }
            let stride = try equalPair(node, "strides", default: 1)
            guard try symmetricPadding(node) == 0 else { throw ONNXError("\(node.label): padded pooling is not supported") }
            if let dilations = try node.ints("dilations"), dilations.contains(where: { $0 != 1 }) {
                throw ONNXError("\(node.label): dilated pooling is not supported")
            }
            if try node.int("ceil_mode", default: 0) != 0, walk.shape.count == 3,
               (walk.shape[1] - kernel[0]) % stride != 0 || (walk.shape[2] - kernel[0]) % stride != 0 {
                throw ONNXError("\(node.label): ceil_mode changes the output size here; Backprop pools in floor mode")
            }
            try append(["type": node.op == "MaxPool" ? "maxpool2d" : "avgpool2d", "size": kernel[0], "stride": stride],
                       at: path, to: &walk, label: node.label)
        case "GlobalAveragePool", "GlobalMaxPool":
            try requireUnsqueezed(walk, node)
            try append(["type": node.op == "GlobalAveragePool" ? "global_avgpool2d" : "global_maxpool2d"], at: path, to: &walk, label: node.label)
            walk.squeezed = true
        case "ReduceMean", "ReduceMax":
            try requireUnsqueezed(walk, node)
            var axes = try node.ints("axes")
            if axes == nil, node.inputs.count > 1, !node.inputs[1].isEmpty { axes = try constant(node, 1, "axes").integers }
            guard walk.shape.count == 3, let axes, Set(axes.map { $0 < 0 ? $0 + 4 : $0 }) == [2, 3], axes.count == 2 else {
                throw ONNXError("\(node.label): Backprop reads \(node.op) only over the height and width of images (a global pooling)")
            }
            try append(["type": node.op == "ReduceMean" ? "global_avgpool2d" : "global_maxpool2d"], at: path, to: &walk, label: node.label)
            walk.squeezed = try node.int("keepdims", default: 1) != 0
        default:
            // Elementwise nodes that do not compute from one tensor alone (e.g. `Mul` of two
            // computed tensors), and the rest.
            throw ONNXError("\(node.label) does not fit a Backprop layer here (it reads \(node.inputs.filter { !$0.isEmpty }.joined(separator: ", ")))")
        }
    }

    /// That a dense layer's weight (`[out, in]`, `name` in the file) reads the features the
    /// walk has come to.
    func checkDenseInput(weight: Tensor<Float>, name: String, walk: Walk, node: Node) throws(ONNXError) {
        guard walk.shape.count == 1 else {
            throw ONNXError("\(node.label) reads a \(describe(shape: walk.shape)) tensor; flatten it first")
        }
        guard weight.shape[1] == walk.shape[0] else {
            throw ONNXError("\(node.label): its weight \(name) takes \(weight.shape[1]) features, the input has \(walk.shape[0])")
        }
    }

    mutating func appendDense(weight: Tensor<Float>, bias: Tensor<Float>?, at path: String, walk: inout Walk, node: Node) throws(ONNXError) {
        var object: [String: Any] = ["type": "dense", "out_features": weight.shape[0]]
        if bias == nil { object["bias"] = false }
        try append(object, at: path, to: &walk, label: node.label)
        weights[path + ".weight"] = weight
        if let bias { weights[path + ".bias"] = bias }
    }

    func biasVector(_ c: ConstantTensor, count: Int, node: Node) throws(ONNXError) -> Tensor<Float> {
        if c.count == count { return c.tensor(shape: [count]) }
        if c.count == 1 { return Tensor(shape: [count], repeating: c.tensor().scalars[0]) }
        throw ONNXError("\(node.label): \(c.count) biases for \(count) outputs")
    }

    func transpose(_ t: Tensor<Float>) -> Tensor<Float> {
        let (rows, columns) = (t.shape[0], t.shape[1])
        var out = Tensor<Float>(shape: [columns, rows])
        for r in 0..<rows { for c in 0..<columns { out.scalars[c * rows + r] = t.scalars[r * columns + c] } }
        return out
    }

    /// An attribute of two equal values (strides), or `default`.
    func equalPair(_ node: Node, _ key: String, default value: Int) throws(ONNXError) -> Int {
        guard let pair = try node.ints(key) else { return value }
        guard pair.count == 2, pair[0] == pair[1], pair[0] >= 1 else { throw ONNXError("\(node.label): \(key) \(pair) must be two equal positive numbers") }
        return pair[0]
    }

    /// The one padding of all four sides (`auto_pad` NOTSET or VALID).
    func symmetricPadding(_ node: Node) throws(ONNXError) -> Int {
        let autoPad = try node.string("auto_pad") ?? "NOTSET"
        guard autoPad == "NOTSET" || autoPad == "VALID" || autoPad.isEmpty else {
            throw ONNXError("\(node.label): auto_pad \(autoPad) is not supported (give explicit pads)")
        }
        guard let pads = try node.ints("pads"), autoPad != "VALID" else { return 0 }
        guard pads.count == 4, Set(pads).count == 1, pads[0] >= 0 else {
            throw ONNXError("\(node.label): pads \(pads) differ between sides; Backprop pads all four sides alike")
        }
        return pads[0]
    }

    // MARK: Elementwise runs

    /// The layer an elementwise run computes, found by evaluating it: `a·x` (scale, or identity
    /// for `a = 1`), exact GELU, or its tanh form.
    func classify(_ region: [Int], input: String) throws(ONNXError) -> [String: Any] {
        let samples = stride(from: -4.0, through: 4.0, by: 0.25).map { $0 }
        var values: [String: [Double]] = [input: samples]
        for index in region {
            let node = nodes[index]
            let operands = node.inputs.map { name in values[name] ?? [Double](repeating: constants[name]!.doubles[0], count: samples.count) }
            let result: [Double]
            switch node.op {
            case "Add": result = zip(operands[0], operands[1]).map { $0 + $1 }
            case "Sub": result = zip(operands[0], operands[1]).map { $0 - $1 }
            case "Mul": result = zip(operands[0], operands[1]).map { $0 * $1 }
            case "Div": result = zip(operands[0], operands[1]).map { $0 / $1 }
            case "Pow": result = zip(operands[0], operands[1]).map { Foundation.pow($0, $1) }
            case "Erf": result = operands[0].map { Foundation.erf($0) }
            case "Tanh": result = operands[0].map { Foundation.tanh($0) }
            case "Sqrt": result = operands[0].map { $0.squareRoot() }
            default: result = operands[0].map { -$0 }  // Neg
            }
            values[node.outputs[0]] = result
        }
        let y = values[nodes[region.last!].outputs[0]]!
        func matches(_ f: (Double) -> Double) -> Bool {
            zip(samples, y).allSatisfy { x, v in v.isFinite && abs(v - f(x)) <= 1e-5 * max(1, abs(f(x))) }
        }
        let a = y[samples.firstIndex(of: 1)!]
        if a.isFinite, matches({ a * $0 }) {
            return abs(a - 1) <= 1e-7 ? ["type": "identity"] : ["type": "scale", "factor": a]
        }
        if matches({ $0 * 0.5 * (1 + Foundation.erf($0 / 2.0.squareRoot())) }) { return ["type": "gelu"] }
        let c = (2 / Double.pi).squareRoot()
        if matches({ $0 * 0.5 * (1 + Foundation.tanh(c * ($0 + 0.044715 * $0 * $0 * $0))) }) {
            return ["type": "gelu", "approximate": "tanh"]
        }
        let labels = region.map { nodes[$0].label }.joined(separator: ", ")
        throw ONNXError("the elementwise operations \(labels) compute a function Backprop has no layer for (it reads a·x, GELU and GELU's tanh form)")
    }
}
