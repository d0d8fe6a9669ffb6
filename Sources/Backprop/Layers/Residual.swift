/// A residual block: a main path and a shortcut applied to the same input, their outputs summed.
///
/// ```
/// forward:   y = main(x) + shortcut(x)            (shortcut = identity when none is given)
/// backward:  ∂L/∂main(x) = ∂L/∂shortcut(x) = ∂L/∂y
///            ∂L/∂x = ∂main/∂x ᵀ·∂L/∂y + ∂shortcut/∂x ᵀ·∂L/∂y    (the two paths' input gradients add)
/// ```
/// Both paths must give the same shape; a 1x1 convolution (with stride) is the usual shortcut
/// when the main path changes the channels or the size. The block keeps the main path's output
/// (its layers need it in `backward`) apart from the sum.
///
/// Path names: the main path's layers sit under `mainName` and the shortcut's under
/// `shortcutName`. The defaults, `main` and `shortcut`, give `3.main.0.weight`; an empty
/// `mainName` puts the main path's layers directly under the block, as torchvision's
/// `BasicBlock` names `layer1.0.conv1.weight` and `layer1.0.downsample.0.weight`.
public final class Residual<Scalar: NetworkScalar>: Layer {
    public let main: any Layer<Scalar>
    /// `nil` for the identity.
    public let shortcut: (any Layer<Scalar>)?
    public let mainName: String, shortcutName: String
    /// `main(x)` from the last forward.
    private var mainOutput = Tensor<Scalar>(shape: [0])
    /// `shortcut(x)` from the last forward (unused for the identity).
    private var shortcutOutput = Tensor<Scalar>(shape: [0])
    /// The shortcut's input gradient, added to the main path's.
    private var shortcutGradient: Tensor<Scalar>? = Tensor<Scalar>(shape: [0])

    /// Creates a block.
    public init(main: any Layer<Scalar>, shortcut: (any Layer<Scalar>)? = nil, mainName: String = "main", shortcutName: String = "shortcut") {
        precondition(mainName != shortcutName || mainName.isEmpty, "the paths need different names")
        self.main = main
        self.shortcut = shortcut
        self.mainName = mainName
        self.shortcutName = shortcutName
    }

    public var kind: String { "Residual" }
    public var settings: String { shortcut == nil ? "identity shortcut" : "\(shortcut!.kind) shortcut" }
    public var children: [(name: String, layer: any Layer<Scalar>)] {
        [(mainName, main)] + (shortcut.map { [(shortcutName, $0)] } ?? [])
    }
    public var couplesExamples: Bool { main.couplesExamples || (shortcut?.couplesExamples ?? false) }

    public func outputShape(for inputShape: [Int]) throws(ShapeError) -> [Int] {
        func checked(_ path: String, _ layer: any Layer<Scalar>) throws(ShapeError) -> [Int] {
            do { return try layer.outputShape(for: inputShape) } catch {
                if error.description.hasPrefix("layer ") {
                    throw ShapeError("layer " + joinPath(path, String(error.description.dropFirst(6))))
                }
                throw ShapeError("layer \(path) (\(layer.kind)): \(error.description)")
            }
        }
        let mainShape = try checked(mainName.isEmpty ? "main" : mainName, main)
        let shortcutShape = try shortcut.map { layer throws(ShapeError) in try checked(shortcutName, layer) } ?? inputShape
        guard mainShape == shortcutShape else {
            throw ShapeError("the main path gives \(describe(shape: mainShape)) but the \(shortcut == nil ? "identity shortcut" : "shortcut") gives \(describe(shape: shortcutShape)) for input \(describe(shape: inputShape)); both must match to be summed")
        }
        return mainShape
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func forward(_ input: Tensor<Scalar>, into output: inout Tensor<Scalar>, context: StepContext) {
        main.forward(input, into: &mainOutput, context: context)
        if let shortcut { shortcut.forward(input, into: &shortcutOutput, context: context) }
        output.resize(to: mainOutput.shape)
        let other = shortcut == nil ? input : shortcutOutput
        output.scalars.withUnsafeMutableBufferPointer { y in
            mainOutput.scalars.withUnsafeBufferPointer { a in
                other.scalars.withUnsafeBufferPointer { b in
                    for i in 0..<y.count { y[i] = a[i] + b[i] }
                }
            }
        }
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func backward(input: Tensor<Scalar>, output: Tensor<Scalar>, outputGradient: Tensor<Scalar>,
                         inputGradient: inout Tensor<Scalar>?, context: StepContext) {
        main.backward(input: input, output: mainOutput, outputGradient: outputGradient, inputGradient: &inputGradient, context: context)
        let wantsInputGradient = inputGradient != nil
        if let shortcut {
            if wantsInputGradient {
                shortcut.backward(input: input, output: shortcutOutput, outputGradient: outputGradient,
                                  inputGradient: &shortcutGradient, context: context)
            } else {
                var none: Tensor<Scalar>? = nil
                shortcut.backward(input: input, output: shortcutOutput, outputGradient: outputGradient,
                                  inputGradient: &none, context: context)
            }
        }
        guard wantsInputGradient else { return }
        // Where the paths meet, their gradients add.
        let other = shortcut == nil ? outputGradient : shortcutGradient!
        inputGradient!.scalars.withUnsafeMutableBufferPointer { dx in
            other.scalars.withUnsafeBufferPointer { d in
                for i in 0..<dx.count { dx[i] += d[i] }
            }
        }
    }

    public func appendRows(inputShape: [Int], path: String, depth: Int, into rows: inout [LayerRow<Scalar>]) {
        rows.append(LayerRow(path: path, depth: depth, layer: self, inputShape: inputShape,
                             outputShape: (try? outputShape(for: inputShape)) ?? []))
        if mainName.isEmpty, let sequence = main as? Sequential<Scalar> {
            sequence.appendLayerRows(inputShape: inputShape, path: path, depth: depth + 1, into: &rows)
        } else {
            main.appendRows(inputShape: inputShape, path: joinPath(path, mainName), depth: depth + 1, into: &rows)
        }
        shortcut?.appendRows(inputShape: inputShape, path: joinPath(path, shortcutName), depth: depth + 1, into: &rows)
    }
}

/// `{"type": "residual", "main": [ … ], "shortcut": [ … ]}`: a residual block. Without
/// `shortcut` the shortcut is the identity. `main_name` (default `main`, `""` for none) and
/// `shortcut_name` (default `shortcut`) set the paths, e.g. `"main_name": "",
/// "shortcut_name": "downsample"` for torchvision's `BasicBlock` names.
public struct ResidualSpec: LayerSpecKind {
    public static let typeName = "residual"
    public static let aliases = ["residual_block"]
    public static let keysHelp = "main (layers), shortcut (layers; identity when absent), main_name (\"main\"), shortcut_name (\"shortcut\")"
    public var main: [LayerSpec]
    public var shortcut: [LayerSpec]?
    public var mainName: String, shortcutName: String

    public init(main: [LayerSpec], shortcut: [LayerSpec]? = nil, mainName: String = "main", shortcutName: String = "shortcut") {
        self.main = main
        self.shortcut = shortcut
        self.mainName = mainName
        self.shortcutName = shortcutName
    }

    public init(reading reader: inout SpecReader) throws(SpecError) {
        guard let main = try reader.layers("main"), !main.isEmpty else {
            throw SpecError("\(reader.location): \"main\" must be a non-empty list of layer objects")
        }
        let shortcut = try reader.layers("shortcut")
        if let shortcut, shortcut.isEmpty {
            throw SpecError("\(reader.location): \"shortcut\" must not be empty (leave it out for the identity)")
        }
        let mainName = try reader.string("main_name") ?? "main"
        let shortcutName = try reader.string("shortcut_name") ?? "shortcut"
        guard !shortcutName.isEmpty, !mainName.contains("."), !shortcutName.contains("."), mainName != shortcutName else {
            throw SpecError("\(reader.location): \"main_name\" and \"shortcut_name\" must differ, contain no \".\", and the shortcut's must not be empty")
        }
        self.init(main: main, shortcut: shortcut, mainName: mainName, shortcutName: shortcutName)
    }

    public var jsonKeys: [String: Any] {
        var keys: [String: Any] = ["main": main.map(\.jsonObject)]
        if let shortcut { keys["shortcut"] = shortcut.map(\.jsonObject) }
        if mainName != "main" { keys["main_name"] = mainName }
        if shortcutName != "shortcut" { keys["shortcut_name"] = shortcutName }
        return keys
    }

    public func makeLayer<Scalar: NetworkScalar>(inputShape: [Int], path: String, using generator: inout SeededGenerator) throws(ShapeError) -> any Layer<Scalar> {
        let mainPath: Sequential<Scalar> = try NetworkSpec.makeSequence(main, inputShape: inputShape, path: joinPath(path, "main"), using: &generator)
        let shortcutPath: Sequential<Scalar>? = try shortcut.map { specs throws(ShapeError) in
            try NetworkSpec.makeSequence(specs, inputShape: inputShape, path: joinPath(path, "shortcut"), using: &generator)
        }
        let block = Residual<Scalar>(main: mainPath, shortcut: shortcutPath, mainName: mainName, shortcutName: shortcutName)
        do { _ = try block.outputShape(for: inputShape) } catch {
            throw ShapeError("layer \(path) (residual): \(error.description)")
        }
        return block
    }
}
