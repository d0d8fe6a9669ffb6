import Backprop
import Foundation
import Testing

// Helpers for the LayerCatalog* suites (BatchNorm, Dropout, GELU, the pools, Scale, Identity,
// dirac initialisation). Every pass names its `StepContext` explicitly: BatchNorm and Dropout
// behave differently in training and inference.

// MARK: - Gradient checks

/// What one layer's backward pass says for the objective `f = Σ layer(x) ⊙ R`.
struct CatalogGradients {
    /// `R`.
    var upstream: Tensor<Double>
    var input: [Double]
    /// One array per entry of `layer.parameters`.
    var parameters: [[Double]]
}

/// A tensor of `N(0, scale²)` samples plus `shift`, from a fixed seed.
func catalogRandom(_ shape: [Int], seed: UInt64, scale: Double = 1, shift: Double = 0) -> Tensor<Double> {
    var g = SeededGenerator(seed: seed)
    var t = Tensor<Double>.randomNormal(shape: shape, standardDeviation: scale, using: &g)
    t.scalars = t.scalars.map { $0 + shift }
    return t
}

/// Runs `forward` then `backward` once in `context`, with a fixed random upstream gradient.
func catalogAnalytic(_ layer: any Layer<Double>, input x: Tensor<Double>, context: StepContext, seed: UInt64 = 99) -> CatalogGradients {
    var y = Tensor<Double>(shape: [])
    layer.forward(x, into: &y, context: context)
    let r = catalogRandom(y.shape, seed: seed)
    for p in layer.parameters { p.gradient.zero() }
    var dx: Tensor<Double>? = Tensor(shape: [])
    layer.backward(input: x, output: y, outputGradient: r, inputGradient: &dx, context: context)
    return CatalogGradients(upstream: r, input: dx!.scalars, parameters: layer.parameters.map { $0.gradient.scalars })
}

/// Checks `gradients` against central differences of `f = Σ layer(x) ⊙ R` in `context`: the
/// input first, then each parameter (frozen ones too: their gradients are computed as well).
func catalogCheck(_ layer: any Layer<Double>, input x: Tensor<Double>, context: StepContext,
                  gradients: CatalogGradients, step: Double = 3e-5) -> [GradientCheck.Result] {
    func objective(_ input: Tensor<Double>) -> Double {
        var out = Tensor<Double>(shape: [])
        layer.forward(input, into: &out, context: context)
        return zip(out.scalars, gradients.upstream.scalars).reduce(0) { $0 + $1.0 * $1.1 }
    }
    var xs = x.scalars
    var results = [GradientCheck.compare(name: "input", x: &xs, analytic: gradients.input, step: step) {
        objective(Tensor(shape: x.shape, scalars: $0))
    }]
    for (p, analytic) in zip(layer.parameters, gradients.parameters) {
        var values = p.value.scalars
        results.append(GradientCheck.compare(name: p.name, x: &values, analytic: analytic, step: step) { v in
            p.value.scalars = v
            return objective(x)
        })
        p.value.scalars = values
    }
    return results
}

/// A layer's own backward pass, checked.
func catalogCheck(_ layer: any Layer<Double>, input x: Tensor<Double>, context: StepContext, step: Double = 3e-5) -> [GradientCheck.Result] {
    catalogCheck(layer, input: x, context: context, gradients: catalogAnalytic(layer, input: x, context: context), step: step)
}

/// The bound on a correct gradient's maximum relative error in `Double` (see `GradientCheck`).
let catalogGradientTolerance = 1e-6

/// Expects every result to pass, and at least one entry of each to have been compared.
func expectCatalogPasses(_ results: [GradientCheck.Result], _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    for r in results {
        #expect(r.maxRelativeError < catalogGradientTolerance && r.checked > 0, "\(what): \(r)", sourceLocation: sourceLocation)
    }
}

// MARK: - Fixtures

/// A row-major tensor as `Scripts/make_reference_layers.py` writes it.
struct CatalogTensor: Decodable {
    let shape: [Int]
    let data: [Double]

    var float: Tensor<Float> { Tensor<Float>(shape: shape, scalars: data.map { Float($0) }) }
}

struct CatalogFixtureHeader: Decodable {
    let command: String
    let seed: Int
    let torch: String
}

struct CatalogFixtureFile<Case: Decodable>: Decodable {
    let header: CatalogFixtureHeader
    let cases: [String: Case]
}

/// Loads one case from `Fixtures/<file>`, next to this source file.
func loadCatalogFixture<Case: Decodable>(_ file: String, case name: String, as type: Case.Type = Case.self) throws -> Case {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent(file)
    let fixture = try JSONDecoder().decode(CatalogFixtureFile<Case>.self, from: Data(contentsOf: url))
    return try #require(fixture.cases[name], "no case \(name) in \(file) (has \(fixture.cases.keys.sorted()))")
}

/// `|actual − expected| ≤ absolute + relative · |expected|`, elementwise.
struct CatalogTolerance: CustomStringConvertible {
    var absolute: Double
    var relative: Double

    var description: String { "|Δ| ≤ \(absolute) + \(relative)·|expected|" }

    /// The reference tests' tensor tolerance: Backprop's float32 rounding is a few 1e-6 at most
    /// on these small cases (sums of ≤ 48 terms of O(1)); a wrong formula is off by ≥ 1e-2.
    static let tensor = CatalogTolerance(absolute: 1e-5, relative: 1e-4)
}

/// Expects `actual` to match `expected` in shape and, elementwise, within `tolerance`; on
/// failure names the tensor, the number of bad elements and the worst one.
func expectNear(_ actual: Tensor<Float>, _ expected: CatalogTensor, _ what: String, _ tolerance: CatalogTolerance = .tensor,
                scale: Double = 1, sourceLocation: SourceLocation = #_sourceLocation) {
    guard actual.shape == expected.shape else {
        Issue.record("\(what): shape \(actual.shape), expected \(expected.shape)", sourceLocation: sourceLocation)
        return
    }
    var bad = 0
    var worst = (index: 0, difference: 0.0, excess: -Double.infinity)
    for (i, (a, e)) in zip(actual.scalars, expected.data).enumerated() {
        let e = e * scale
        let difference = abs(Double(a) - e)
        let allowed = tolerance.absolute + tolerance.relative * abs(e)
        if !(difference <= allowed) { bad += 1 }
        let excess = difference.isNaN ? .infinity : difference - allowed
        if excess > worst.excess { worst = (i, difference, excess) }
    }
    #expect(bad == 0, """
        \(what): \(bad) of \(actual.count) elements outside \(tolerance); max |Δ| = \(worst.difference) \
        at offset \(worst.index) (got \(actual.scalars[worst.index]), expected \(expected.data[worst.index] * scale))
        """, sourceLocation: sourceLocation)
}
