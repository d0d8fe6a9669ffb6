/// An update rule that moves parameters against their accumulated gradients and owns whatever
/// per-parameter state the rule needs (momentum buffers, moment estimates, step counts).
///
/// ## Contract
/// - `step(_:)` is given the **same parameter list, in the same order**, on every call (a
///   network's `parameters`); the optimizer keys its state by the index in that list.
/// - A parameter with `isTrainable == false` is skipped entirely: its value is not touched and
///   no state is created for it.
/// - State buffers are allocated the first time a parameter is updated and reused afterwards, so
///   a step allocates nothing from the second step on.
/// - Arithmetic is elementwise in `Scalar`, in a fixed order: results are deterministic.
/// - `learningRate` and `momentum` are read at the start of each `step`; a schedule sets them
///   before the step (`Schedule.apply(to:atStep:totalSteps:baseLearningRate:)`).
///
/// ## Saving and restoring
/// `state` lists per-parameter tensors by index and PyTorch's name for them (`momentum_buffer`,
/// `step`, `exp_avg`, `exp_avg_sq`; the course's `SGD` calls its buffer `velocity`) and a few
/// scalars (`step`: the number of `step` calls so far). Restoring it into a fresh optimizer
/// with the same settings and parameter list and continuing gives bit-identical results to a
/// run that was never interrupted. Hyperparameters (rates, betas, decay) are settings, not
/// state: the caller recreates the optimizer with them.
public protocol Optimizer<Scalar>: AnyObject {
    /// The element type of the parameters it updates.
    associatedtype Scalar: NetworkScalar

    /// The learning rate of the next step (schedules set it before each step).
    var learningRate: Double { get set }

    /// SGD's `μ` or Adam's `β1` for the next step (one-cycle schedules set it).
    var momentum: Double { get set }

    /// Updates every trainable parameter from its accumulated gradient; parameters with
    /// `isTrainable == false` are skipped. Gradients are read, not zeroed.
    func step(_ parameters: [Parameter<Scalar>])

    /// A copy of the optimizer's state (sharing no storage with the optimizer).
    var state: OptimizerState<Scalar> { get }

    /// Replaces the optimizer's state with `state`, as `state` returned it for the same
    /// parameter list.
    /// - Throws: `OptimizerStateError`, one line, when an entry names a parameter index outside
    ///   `parameters`, a name this optimizer does not keep, a shape unlike the parameter's, a
    ///   parameter with some but not all of its tensors, or a missing or unknown scalar.
    ///   Nothing is changed when it throws.
    func restoreState(_ state: OptimizerState<Scalar>, parameters: [Parameter<Scalar>]) throws(OptimizerStateError)
}

/// An optimizer's saveable state: per-parameter tensors and a few scalars.
///
/// A checkpoint can store tensor `(i, name)` as `state.<i>.<name>` — the layout of PyTorch's
/// `optimizer.state_dict()["state"]` — and the scalars as metadata.
public struct OptimizerState<Scalar: NetworkScalar>: Sendable, Equatable {
    /// One tensor of one parameter's state.
    public struct Entry: Sendable, Equatable {
        /// The parameter's index in the list given to `step`.
        public var parameterIndex: Int
        /// The state's name, e.g. `momentum_buffer`, `exp_avg`, `exp_avg_sq`, `step`.
        public var name: String
        /// Shaped like the parameter, or `[]` for a per-parameter count (`step`).
        public var tensor: Tensor<Scalar>

        /// Creates an entry.
        public init(parameterIndex: Int, name: String, tensor: Tensor<Scalar>) {
            self.parameterIndex = parameterIndex
            self.name = name
            self.tensor = tensor
        }
    }

    /// Sorted by parameter index, then in the optimizer's fixed order of names.
    public var tensors: [Entry]
    /// E.g. `step`: the number of steps taken so far.
    public var scalars: [String: Double]

    /// Creates a state (e.g. from a checkpoint) to give to `restoreState`.
    public init(tensors: [Entry], scalars: [String: Double]) {
        self.tensors = tensors
        self.scalars = scalars
    }
}

/// Optimizer (or EMA) state that does not fit the optimizer or the parameters it is restored for.
public struct OptimizerStateError: Error, CustomStringConvertible, Sendable {
    /// One line saying what does not fit.
    public var description: String

    /// Creates an error with a one-line message.
    public init(_ description: String) { self.description = description }
}

// MARK: - Shared bookkeeping

/// The per-parameter state tensors of one optimizer: for each parameter index, either nothing
/// yet (never updated, or frozen) or one tensor per name in `names`, allocated on first use.
struct PerParameterState<Scalar: NetworkScalar> {
    /// The names of each parameter's tensors, in order.
    let names: [String]
    /// `slots[i]` holds parameter `i`'s tensors (in `names` order), or is empty.
    private(set) var slots: [[Tensor<Scalar>]] = []

    init(names: [String]) { self.names = names }

    /// Sizes the table for `count` parameters on first use; afterwards checks the count.
    mutating func bind(count: Int, optimizer: String) {
        if slots.isEmpty && count > 0 { slots = Array(repeating: [], count: count) }
        precondition(slots.count == count,
                     "\(optimizer) stepped with \(count) parameters, but its state is for \(slots.count)")
    }

    /// Whether parameter `index` has its state tensors.
    func has(_ index: Int) -> Bool { !slots[index].isEmpty }

    /// Creates parameter `index`'s tensors, zero-filled, with `shapes` (one per name).
    mutating func allocate(_ index: Int, shapes: [[Int]]) {
        precondition(shapes.count == names.count)
        slots[index] = shapes.map { Tensor(shape: $0) }
    }

    /// Calls `body` with parameter `index`'s tensors (in `names` order), mutable in place: the
    /// tensors' storage is not copied, so nothing is allocated.
    @inline(__always)
    mutating func withTensors<R>(_ index: Int, _ body: (UnsafeMutableBufferPointer<Tensor<Scalar>>) -> R) -> R {
        slots[index].withUnsafeMutableBufferPointer { body($0) }
    }

    /// Every allocated tensor as state entries, by parameter index then name, copied so that
    /// the optimizer's next step does not have to copy its buffers on write.
    var entries: [OptimizerState<Scalar>.Entry] {
        var result: [OptimizerState<Scalar>.Entry] = []
        for (index, tensors) in slots.enumerated() {
            for (name, tensor) in zip(names, tensors) {
                result.append(.init(parameterIndex: index, name: name, tensor: tensor.copied()))
            }
        }
        return result
    }

    /// Checks `entries` against `parameters` (each tensor named in `names`, shaped as
    /// `shape(name, parameter)`, every parameter with all its tensors or none) and returns the
    /// table they make, with storage of its own; throws one line on the first mismatch.
    func validated(
        _ entries: [OptimizerState<Scalar>.Entry], parameters: [Parameter<Scalar>], optimizer: String,
        shape: (String, Parameter<Scalar>) -> [Int]
    ) throws(OptimizerStateError) -> PerParameterState {
        var found = Array(repeating: [Tensor<Scalar>?](repeating: nil, count: names.count), count: parameters.count)
        for entry in entries {
            guard parameters.indices.contains(entry.parameterIndex) else {
                throw OptimizerStateError("\(optimizer) state names parameter \(entry.parameterIndex), but there are \(parameters.count) parameters")
            }
            guard let slot = names.firstIndex(of: entry.name) else {
                throw OptimizerStateError("\(optimizer) state has '\(entry.name)' for parameter \(entry.parameterIndex); \(optimizer) keeps \(names.map { "'\($0)'" }.joined(separator: ", "))")
            }
            let parameter = parameters[entry.parameterIndex]
            let expected = shape(entry.name, parameter)
            guard entry.tensor.shape == expected else {
                throw OptimizerStateError("\(optimizer) state '\(entry.name)' of parameter \(entry.parameterIndex) (\(parameter.name)) has shape [\(describe(shape: entry.tensor.shape))], the parameter needs [\(describe(shape: expected))]")
            }
            guard found[entry.parameterIndex][slot] == nil else {
                throw OptimizerStateError("\(optimizer) state has '\(entry.name)' of parameter \(entry.parameterIndex) twice")
            }
            found[entry.parameterIndex][slot] = entry.tensor.copied()
        }
        var table = PerParameterState(names: names)
        table.slots = Array(repeating: [], count: parameters.count)
        for (index, tensors) in found.enumerated() {
            let present = tensors.compactMap { $0 }
            if present.isEmpty { continue }
            guard present.count == names.count else {
                let missing = zip(names, tensors).filter { $0.1 == nil }.map { "'\($0.0)'" }
                throw OptimizerStateError("\(optimizer) state of parameter \(index) (\(parameters[index].name)) lacks \(missing.joined(separator: ", "))")
            }
            table.slots[index] = present
        }
        return table
    }
}

/// Reads the scalar `step` (a whole number ≥ 0) and rejects any other scalar.
func validatedStepCount(_ scalars: [String: Double], optimizer: String) throws(OptimizerStateError) -> Int {
    if let unknown = scalars.keys.sorted().first(where: { $0 != "step" }) {
        throw OptimizerStateError("\(optimizer) state has an unknown scalar '\(unknown)' (it keeps only 'step')")
    }
    guard let step = scalars["step"] else { throw OptimizerStateError("\(optimizer) state lacks the scalar 'step'") }
    guard let count = wholeCount(step) else {
        throw OptimizerStateError("\(optimizer) state's 'step' must be a whole number ≥ 0, got \(step)")
    }
    return count
}

/// `value` as an `Int` when it is a whole number in `0...2⁵³`, else `nil`.
func wholeCount(_ value: Double) -> Int? {
    guard value.isFinite, value >= 0, value <= 9_007_199_254_740_992, value.rounded(.towardZero) == value else { return nil }
    return Int(value)
}

extension Tensor {
    /// A copy with storage of its own (not shared copy-on-write with `self`).
    func copied() -> Tensor {
        Tensor(shape: shape, scalars: scalars.withUnsafeBufferPointer { Array($0) })
    }
}
