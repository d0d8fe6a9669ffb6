import Backprop
import Foundation
import Testing

// Optimizers and schedules checked against PyTorch.
//
// The fixtures `Fixtures/optim_*.json` are written by `Scripts/make_reference_optim.py` (its
// header records the command, seed and versions). Each optimizer case holds a `weight` [4, 3]
// (weight decay applies) and a `bias` [4] (no decay, torch's param group with
// weight_decay=0), random float32 gradients for every step, and torch's parameters after every
// step, computed in float64 from the float32 values and rounded once to float32. So step 1 of
// `nesterov_weight_decay` is one Nesterov step and step 1 of `weight_decay` one AdamW step, each
// checked on its own before the later steps are.
//
// Every case also carries a frozen parameter that torch never sees: it must come out bit-for-bit
// unchanged and without optimizer state.

// MARK: - Tolerances

/// `|actual − expected| ≤ absolute + relative · |expected|`.
private struct Allowance: CustomStringConvertible {
    var absolute: Double
    var relative: Double

    var description: String { "|Δ| ≤ \(absolute) + \(relative)·|expected|" }

    func admits(_ actual: Double, _ expected: Double) -> Bool {
        abs(actual - expected) <= absolute + relative * abs(expected)
    }

    /// Parameters after a few optimizer steps in float32, against float64 results rounded to
    /// float32. Each step adds a few float32 roundings of O(1) values (≈ 6e-8 relative each);
    /// AdamW's `m / (√v/√(1−β2ᵗ) + ε)` has relative error ≈ 3e-7 on an O(lr) update. Measured
    /// (Swift 6.3.1, x86-64): the worst element uses 3% of this allowance. The mistakes tried
    /// (no bias correction, ε inside the square root, decaying the bias, dampening ignored,
    /// Nesterov dropped, the first momentum buffer started at (1 − τ)·g) are ≥ 1e-4, 10x outside.
    static let parameters = Allowance(absolute: 1e-6, relative: 1e-5)

    /// Learning rates and momenta, which both sides compute in `Double`: torch chains factors
    /// step by step where Backprop uses the closed form, so they agree to ~1e-15 relative.
    /// Measured: the worst uses 0.001% of this. An off-by-one step is ≥ 1e-4 relative.
    static let schedule = Allowance(absolute: 1e-14, relative: 1e-10)
}

// MARK: - Fixtures

private struct OptimTensor: Decodable {
    let shape: [Int]
    let data: [Double]

    var tensor: Tensor<Float> { Tensor(shape: shape, scalars: data.map { Float($0) }) }
}

private struct OptimFixtureFile<Case: Decodable>: Decodable {
    struct Header: Decodable { let seed: Int; let torch: String }
    let header: Header
    let cases: [String: Case]
}

/// One optimizer run: settings, initial parameters, and per step the gradients, the lr and
/// momentum torch used, and the parameters after the step.
private struct OptimizerCase: Decodable {
    struct Settings: Decodable {
        var learningRate: Double
        var momentum: Double?
        var dampening: Double?
        var nesterov: Bool?
        var weightDecay: Double
        var decoupledWeightDecay: Bool?
        var beta1: Double?
        var beta2: Double?
        var epsilon: Double?
        var schedule: String?
        var totalSteps: Int?
        /// `bias`'s `learningRateScale` and `decays` (1 and false when absent).
        var biasLearningRateScale: Double?
        var biasDecays: Bool?
        /// Muon's filter rate and momentum.
        var muonLearningRate: Double?
        var muonMomentum: Double?

        enum CodingKeys: String, CodingKey {
            case momentum, dampening, nesterov, beta1, beta2, epsilon, schedule
            case learningRate = "learning_rate", weightDecay = "weight_decay"
            case decoupledWeightDecay = "decoupled_weight_decay", totalSteps = "total_steps"
            case biasLearningRateScale = "bias_lr_scale", biasDecays = "bias_decays"
            case muonLearningRate = "muon_learning_rate", muonMomentum = "muon_momentum"
        }
    }

    struct Step: Decodable {
        var learningRate: Double
        var momentum: Double
        var gradients: [String: OptimTensor]
        var parameters: [String: OptimTensor]

        enum CodingKeys: String, CodingKey {
            case momentum, gradients, parameters
            case learningRate = "learning_rate"
        }
    }

    var settings: Settings
    var initial: [String: OptimTensor]
    var steps: [Step]
}

private struct ScheduleCase: Decodable {
    var schedule: String
    var baseLearningRate: Double
    var totalSteps: Int
    var learningRates: [Double]
    var momenta: [Double]?

    enum CodingKeys: String, CodingKey {
        case schedule, momenta
        case baseLearningRate = "base_learning_rate", totalSteps = "total_steps", learningRates = "learning_rates"
    }
}

private func loadOptimFixture<Case: Decodable>(_ file: String, case name: String, as type: Case.Type = Case.self) throws -> Case {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent(file)
    let fixture = try JSONDecoder().decode(OptimFixtureFile<Case>.self, from: Data(contentsOf: url))
    return try #require(fixture.cases[name], "no case \(name) in \(file) (has \(fixture.cases.keys.sorted()))")
}

// MARK: - Running a case

/// Expects `actual` to match `expected` elementwise; names the worst element on failure.
private func expectClose(_ actual: Tensor<Float>, _ expected: OptimTensor, _ what: String, _ allowance: Allowance,
                         sourceLocation: SourceLocation = #_sourceLocation) {
    guard actual.shape == expected.shape else {
        Issue.record("\(what): shape \(actual.shape), expected \(expected.shape)", sourceLocation: sourceLocation)
        return
    }
    var bad = 0, worst = (index: 0, difference: 0.0)
    for (i, (a, e)) in zip(actual.scalars, expected.data).enumerated() {
        if !allowance.admits(Double(a), e) { bad += 1 }
        let difference = abs(Double(a) - e)
        if !(difference <= worst.difference) { worst = (i, difference) }
    }
    #expect(bad == 0, "\(what): \(bad) of \(actual.count) outside \(allowance); worst |Δ| = \(worst.difference) at \(worst.index) (got \(actual.scalars[worst.index]), expected \(expected.data[worst.index]))",
            sourceLocation: sourceLocation)
}

/// The fixture's convolution filters if it has them (`filter`, `tall`), `weight` (decays),
/// `bias` (no decay unless the settings say so, with their learning-rate scale), and a frozen
/// parameter between the last two.
private func makeParameters(_ c: OptimizerCase) throws -> (all: [Parameter<Float>], frozen: Parameter<Float>) {
    let filters = ["filter", "tall"].compactMap { name in c.initial[name].map { Parameter(name: name, value: $0.tensor) } }
    let weight = Parameter(name: "weight", value: try #require(c.initial["weight"]).tensor, decays: true)
    let frozen = Parameter(name: "frozen", value: optimizerTestTensor([3, 2], seed: 5), decays: true, isTrainable: false)
    let bias = Parameter(name: "bias", value: try #require(c.initial["bias"]).tensor, decays: c.settings.biasDecays ?? false)
    bias.learningRateScale = c.settings.biasLearningRateScale ?? 1
    return (filters + [weight, frozen, bias], frozen)
}

/// Runs every step of `c` with `optimizer` and checks the parameters after each against torch.
/// With a schedule in the settings, Backprop's `Schedule` drives the lr and momentum (and they
/// are checked against torch's); otherwise the fixture's values are set.
private func run(_ c: OptimizerCase, with optimizer: some Optimizer<Float>, label: String) throws {
    let (parameters, frozen) = try makeParameters(c)
    let frozenBefore = frozen.value
    let schedule = try c.settings.schedule.map { s throws(ScheduleError) in try Schedule(parsing: s) }
    for (index, step) in c.steps.enumerated() {
        for p in parameters where p.isTrainable { p.gradient = try #require(step.gradients[p.name]).tensor }
        frozen.gradient = optimizerTestTensor([3, 2], seed: UInt64(index + 10))
        if let schedule, let total = c.settings.totalSteps {
            schedule.apply(to: optimizer, atStep: index, totalSteps: total, baseLearningRate: c.settings.learningRate)
            #expect(Allowance.schedule.admits(optimizer.learningRate, step.learningRate),
                    "\(label) step \(index + 1): lr \(optimizer.learningRate), torch \(step.learningRate)")
            #expect(Allowance.schedule.admits(optimizer.momentum, step.momentum),
                    "\(label) step \(index + 1): momentum \(optimizer.momentum), torch \(step.momentum)")
        } else {
            optimizer.learningRate = step.learningRate
            optimizer.momentum = step.momentum
        }
        optimizer.step(parameters)
        for p in parameters where p.isTrainable {
            expectClose(p.value, try #require(step.parameters[p.name]), "\(label) \(p.name) after step \(index + 1)", .parameters)
        }
    }
    #expect(frozen.value == frozenBefore, "\(label): the frozen parameter changed")
    let frozenIndex = try #require(parameters.firstIndex { $0 === frozen })
    #expect(!optimizer.state.tensors.contains { $0.parameterIndex == frozenIndex }, "\(label): state was created for the frozen parameter")
}

// MARK: - Tests

@Suite("Optimizers and schedules against PyTorch")
struct OptimizerReferenceTests {
    @Test("torch.optim.SGD (and decoupled decay)",
          arguments: ["momentum", "momentum_weight_decay", "nesterov_weight_decay", "dampening", "plain_weight_decay",
                      "decoupled_weight_decay", "scaled_bias_decay", "onecycle"])
    func pyTorchSGD(caseName: String) throws {
        let c = try loadOptimFixture("optim_sgd.json", case: caseName, as: OptimizerCase.self)
        let s = c.settings
        let optimizer = PyTorchSGD<Float>(
            learningRate: s.learningRate, momentum: s.momentum ?? 0, dampening: s.dampening ?? 0,
            nesterov: s.nesterov ?? false, weightDecay: s.weightDecay, decoupledWeightDecay: s.decoupledWeightDecay ?? false)
        try run(c, with: optimizer, label: "SGD \(caseName)")
    }

    @Test("torch.optim.AdamW", arguments: ["weight_decay", "large_eps", "onecycle"])
    func adamW(caseName: String) throws {
        let c = try loadOptimFixture("optim_adamw.json", case: caseName, as: OptimizerCase.self)
        let s = c.settings
        let optimizer = AdamW<Float>(learningRate: s.learningRate, beta1: try #require(s.beta1), beta2: try #require(s.beta2),
                                     epsilon: try #require(s.epsilon), weightDecay: s.weightDecay)
        try run(c, with: optimizer, label: "AdamW \(caseName)")
        // Per-parameter step counts as torch keeps them (the frozen parameter has none).
        let steps = optimizer.state.tensors.filter { $0.name == "step" }
        #expect(steps.map(\.parameterIndex) == [0, 2])
        #expect(steps.allSatisfy { $0.tensor.shape == [] && $0.tensor.scalars == [Float(c.steps.count)] })
    }

    @Test("airbench94_muon's Muon for filters, torch.optim.SGD for the rest", arguments: ["constant", "onecycle"])
    func muon(caseName: String) throws {
        let c = try loadOptimFixture("optim_muon.json", case: caseName, as: OptimizerCase.self)
        let s = c.settings
        let optimizer = Muon<Float>(learningRate: s.learningRate, momentum: try #require(s.momentum), nesterov: s.nesterov == true,
                                    weightDecay: s.weightDecay, filterLearningRate: try #require(s.muonLearningRate),
                                    filterMomentum: try #require(s.muonMomentum))
        try run(c, with: optimizer, label: "Muon \(caseName)")
        // One momentum buffer per trainable parameter, filters included; restoring the state
        // into a fresh optimizer gives it back.
        let state = optimizer.state
        #expect(state.tensors.map(\.parameterIndex) == [0, 1, 2, 4] && state.tensors.allSatisfy { $0.name == "momentum_buffer" })
        let (parameters, _) = try makeParameters(c)
        let restored = Muon<Float>(learningRate: s.learningRate, momentum: 0.85, nesterov: true, weightDecay: s.weightDecay,
                                   filterLearningRate: 0.24, filterMomentum: 0.6)
        try restored.restoreState(state, parameters: parameters)
        #expect(restored.state == state)
    }

    @Test("Learning rates (and momenta) of every step",
          arguments: ["onecycle_cos", "onecycle_linear", "onecycle_short_rise", "step", "cosine", "warmup_cosine", "warmup_step"])
    func schedule(caseName: String) throws {
        let c = try loadOptimFixture("optim_schedules.json", case: caseName, as: ScheduleCase.self)
        let schedule = try Schedule(parsing: c.schedule)
        try schedule.validate(totalSteps: c.totalSteps)
        #expect(schedule.description == c.schedule)
        for (t, expected) in c.learningRates.enumerated() {
            let actual = schedule.learningRate(atStep: t, totalSteps: c.totalSteps, base: c.baseLearningRate)
            #expect(Allowance.schedule.admits(actual, expected), "\(c.schedule) step \(t): lr \(actual), torch \(expected)")
        }
        for t in 0..<c.learningRates.count {
            let actual = schedule.momentum(atStep: t, totalSteps: c.totalSteps)
            if let momenta = c.momenta {
                let expected = momenta[t]
                #expect(actual.map { Allowance.schedule.admits($0, expected) } == true,
                        "\(c.schedule) step \(t): momentum \(String(describing: actual)), torch \(expected)")
            } else {
                #expect(actual == nil, "\(c.schedule) step \(t): sets the momentum to \(actual!)")
            }
        }
    }
}
