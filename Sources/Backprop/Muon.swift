import Foundation

/// Muon for convolution filters and SGD for every other parameter, as airbench94_muon trains
/// (KellerJordan/cifar10-airbench; Muon: Keller Jordan, "Muon: An optimizer for hidden layers").
///
/// A **filter** is a trainable parameter of rank 4 (a convolution's weight, `out × in × k × k`).
/// Each filter `w` with gradient `g`, momentum buffer `b`, filter momentum `μ_f` and filter rate
/// `α_f` takes the step
/// ```
/// b = μ_f·b + g                          (b starts at 0)
/// d = g + μ_f·b                          (Nesterov)
/// w = w · √out / ‖w‖                     (every filter tensor keeps the norm √out)
/// w = w − α_f · NS(d as an out × (in·k·k) matrix)
/// ```
/// `NS` orthogonalises approximately: `X = d / (‖d‖ + 10⁻⁷)`, transposed when it has more rows
/// than columns, then three steps of the quintic Newton–Schulz iteration
/// `S = X·Xᵀ;  X = a·X + (b·S + c·S·S)·X` with airbench's `(a, b, c) = (3.4445, −4.7750, 2.0315)`,
/// which takes every singular value of `X` to roughly 0.5–1.5. Norms are summed in `Double`;
/// the products run on the scalar's GEMM in a fixed order (no threads), so a step is
/// deterministic. airbench runs the iteration in bfloat16; Backprop in the parameters' precision.
///
/// Weight decay does not apply to filters (their norm is fixed instead). Every other trainable
/// parameter — biases, BatchNorm, dense weights — takes `PyTorchSGD`'s step with this optimizer's
/// `learningRate`, `momentum`, Nesterov flag and weight decay.
///
/// A schedule sets `learningRate`; the filters' rate follows it in proportion:
/// `α_f = filterLearningRate · learningRate / baseLearningRate`.
///
/// State: `momentum_buffer` per parameter (SGD's and the filters'), scalar `step`.
public final class Muon<Scalar: NetworkScalar>: Optimizer {
    /// SGD's `α` for the non-filter parameters (a schedule sets it).
    public var learningRate: Double {
        get { sgd.learningRate }
        set { sgd.learningRate = newValue }
    }
    /// SGD's `μ` for the non-filter parameters.
    public var momentum: Double {
        get { sgd.momentum }
        set { sgd.momentum = newValue }
    }
    /// The learning rate that the filters' rate is in proportion to.
    public let baseLearningRate: Double
    /// `α_f` when `learningRate` is `baseLearningRate`.
    public let filterLearningRate: Double
    /// `μ_f`.
    public let filterMomentum: Double
    /// Newton–Schulz steps.
    public static var newtonSchulzSteps: Int { 3 }

    /// The rule for the other parameters.
    private let sgd: PyTorchSGD<Scalar>
    /// One `momentum_buffer` per filter.
    private var buffers = PerParameterState<Scalar>(names: ["momentum_buffer"])
    /// Newton–Schulz work space, grown to the largest filter on first use: the iterate `X`,
    /// the product `(b·S + c·S²)·X`, and the two square matrices `S` and `S²`.
    private let iterate = Scratch<Scalar>(), product = Scratch<Scalar>(), gram = Scratch<Scalar>(), square = Scratch<Scalar>()

    /// Creates the optimizer; `learningRate` is also the base the filters' rate is in
    /// proportion to.
    public init(learningRate: Double, momentum: Double, nesterov: Bool, weightDecay: Double,
                decoupledWeightDecay: Bool = false, filterLearningRate: Double, filterMomentum: Double) {
        precondition(filterLearningRate > 0 && filterMomentum >= 0 && filterMomentum < 1,
                     "Muon needs a filter learning rate > 0 and a filter momentum in [0, 1)")
        sgd = PyTorchSGD(learningRate: learningRate, momentum: momentum, nesterov: nesterov,
                         weightDecay: weightDecay, decoupledWeightDecay: decoupledWeightDecay)
        baseLearningRate = learningRate
        self.filterLearningRate = filterLearningRate
        self.filterMomentum = filterMomentum
    }

    /// Whether `parameter` is a filter (rank 4): when trainable, it takes Muon's step, not SGD's.
    public static func isFilter(_ parameter: Parameter<Scalar>) -> Bool {
        parameter.value.shape.count == 4
    }

    /// Updates every trainable parameter: filters by Muon, the rest by SGD.
    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func step(_ parameters: [Parameter<Scalar>]) {
        sgd.step(parameters, including: { !Self.isFilter($0) })
        buffers.bind(count: parameters.count, optimizer: "Muon")
        let rate = Scalar(filterLearningRate * learningRate / baseLearningRate), mu = Scalar(filterMomentum)
        for (index, p) in parameters.enumerated() where p.isTrainable && Self.isFilter(p) {
            if !buffers.has(index) { buffers.allocate(index, shapes: [p.value.shape]) }
            let rows = p.value.shape[0], columns = p.value.count / max(rows, 1)
            let d = iterate.reserve(rows * columns)
            p.gradient.scalars.withUnsafeBufferPointer { g in
                buffers.withTensors(index) { tensors in
                    tensors[0].scalars.withUnsafeMutableBufferPointer { b in
                        for i in 0..<g.count {
                            b[i] = mu * b[i] + g[i]
                            d[i] = g[i] + mu * b[i]
                        }
                    }
                }
            }
            orthogonalize(d, rows: rows, columns: columns)
            p.value.scalars.withUnsafeMutableBufferPointer { w in
                let norm = (0..<w.count).reduce(0.0) { $0 + Double(w[$1]) * Double(w[$1]) }.squareRoot()
                let scale = norm > 0 ? Scalar(Double(rows).squareRoot() / norm) : 1
                for i in 0..<w.count { w[i] = w[i] * scale - rate * d[i] }
            }
        }
    }

    /// Replaces the `rows × columns` matrix at `x` with `NS` of it (see the type), in place, in
    /// the same layout.
    private func orthogonalize(_ x: UnsafeMutablePointer<Scalar>, rows: Int, columns: Int) {
        let count = rows * columns
        let a: Scalar = 3.4445, b: Scalar = -4.7750, c: Scalar = 2.0315
        // X is r × s with r ≤ s; a tall matrix is worked on as its transpose.
        let tall = rows > columns
        let r = tall ? columns : rows, s = tall ? rows : columns
        let y = product.reserve(count), g = gram.reserve(r * r), q = square.reserve(r * r)
        let norm = (0..<count).reduce(0.0) { $0 + Double(x[$1]) * Double(x[$1]) }.squareRoot()
        let inverse = Scalar(1 / (norm + 1e-7))
        if tall {
            for i in 0..<rows { for j in 0..<columns { y[j * rows + i] = x[i * columns + j] * inverse } }
            x.update(from: y, count: count)
        } else {
            for i in 0..<count { x[i] *= inverse }
        }
        for _ in 0..<Self.newtonSchulzSteps {
            Scalar.gemm(transposeA: false, transposeB: true, m: r, n: r, k: s, a: x, lda: s, b: x, ldb: s, c: g, ldc: r, accumulate: false)
            Scalar.gemm(transposeA: false, transposeB: false, m: r, n: r, k: r, a: g, lda: r, b: g, ldb: r, c: q, ldc: r, accumulate: false)
            for i in 0..<(r * r) { q[i] = b * g[i] + c * q[i] }
            Scalar.gemm(transposeA: false, transposeB: false, m: r, n: s, k: r, a: q, lda: r, b: x, ldb: s, c: y, ldc: s, accumulate: false)
            for i in 0..<count { x[i] = a * x[i] + y[i] }
        }
        if tall {
            for i in 0..<r { for j in 0..<s { y[j * r + i] = x[i * s + j] } }
            x.update(from: y, count: count)
        }
    }

    /// A copy of the state: per parameter `momentum_buffer` (SGD's and the filters'); scalar
    /// `step`.
    public var state: OptimizerState<Scalar> {
        let sgdState = sgd.state
        let tensors = (sgdState.tensors + buffers.entries).sorted { $0.parameterIndex < $1.parameterIndex }
        return OptimizerState(tensors: tensors, scalars: sgdState.scalars)
    }

    /// Restores what `state` returned, for the same parameter list; throws one line on a mismatch.
    public func restoreState(_ state: OptimizerState<Scalar>, parameters: [Parameter<Scalar>]) throws(OptimizerStateError) {
        let isFilter = { (entry: OptimizerState<Scalar>.Entry) in
            parameters.indices.contains(entry.parameterIndex) && Self.isFilter(parameters[entry.parameterIndex])
        }
        let filters = try buffers.validated(state.tensors.filter(isFilter), parameters: parameters, optimizer: "Muon") { _, p in p.value.shape }
        try sgd.restoreState(OptimizerState(tensors: state.tensors.filter { !isFilter($0) }, scalars: state.scalars),
                             parameters: parameters)
        buffers = filters
    }
}
