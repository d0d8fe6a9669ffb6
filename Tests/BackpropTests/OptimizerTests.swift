import Backprop
import Foundation
import Testing

// Optimizer state (save → restore → continue), frozen parameters, the course SGD's arithmetic,
// the schedule grammar, and the exponential moving average.

/// `N(0, 1)` samples from a fixed seed.
func optimizerTestTensor(_ shape: [Int], seed: UInt64) -> Tensor<Float> {
    var g = SeededGenerator(seed: seed)
    return .randomNormal(shape: shape, standardDeviation: 1, using: &g)
}

/// A small parameter list: a decaying weight, a frozen weight, a non-decaying bias, and a
/// convolution filter (Muon's).
private func makeParameters(seed: UInt64) -> [Parameter<Float>] {
    [Parameter(name: "weight", value: optimizerTestTensor([5, 4], seed: seed), decays: true),
     Parameter(name: "frozen", value: optimizerTestTensor([3], seed: seed + 1), decays: true, isTrainable: false),
     Parameter(name: "bias", value: optimizerTestTensor([5], seed: seed + 2), decays: false),
     Parameter(name: "filter", value: optimizerTestTensor([3, 2, 2, 2], seed: seed + 3), decays: true)]
}

/// Sets step `t`'s gradients (the same for every run: a function of `t` only).
private func setGradients(_ parameters: [Parameter<Float>], step t: Int) {
    for (i, p) in parameters.enumerated() {
        p.gradient = optimizerTestTensor(p.value.shape, seed: UInt64(1000 + 10 * t + i))
    }
}

/// The optimizers with settings that exercise every branch (momentum, Nesterov, decoupled
/// decay, bias correction, Muon's filters).
private let optimizerKinds = ["SGD", "PyTorchSGD", "AdamW", "Muon"]

private func makeOptimizer(_ kind: String) -> any Optimizer<Float> {
    switch kind {
    case "SGD": SGD<Float>(learningRate: 0.1, momentum: 0.9, weightDecay: 0.005)
    case "PyTorchSGD": PyTorchSGD<Float>(learningRate: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.01, decoupledWeightDecay: true)
    case "Muon": Muon<Float>(learningRate: 0.1, momentum: 0.85, nesterov: true, weightDecay: 0.01, filterLearningRate: 0.2, filterMomentum: 0.6)
    default: AdamW<Float>(learningRate: 0.01, weightDecay: 0.1)
    }
}

/// Steps `t` in `range` of a run under a one-cycle schedule (so the lr and momentum change).
private func train(_ optimizer: some Optimizer<Float>, _ parameters: [Parameter<Float>], steps range: Range<Int>) {
    let schedule = Schedule.oneCycle(.init())
    for t in range {
        setGradients(parameters, step: t)
        schedule.apply(to: optimizer, atStep: t, totalSteps: 10, baseLearningRate: 0.05)
        optimizer.step(parameters)
    }
}

@Suite("Optimizer state, frozen parameters, schedules and EMA")
struct OptimizerTests {
    // MARK: Optimizers

    @Test("Save → restore into a fresh optimizer → continue is bit-identical", arguments: optimizerKinds)
    func resume(kind: String) throws {
        let uninterrupted = makeParameters(seed: 1)
        let a = makeOptimizer(kind)
        train(a, uninterrupted, steps: 0..<10)

        let first = makeParameters(seed: 1)
        let b = makeOptimizer(kind)
        train(b, first, steps: 0..<4)
        let saved = b.state
        #expect(saved.scalars == ["step": 4])
        // A new process: fresh parameters holding the saved values, a fresh optimizer.
        let resumed = makeParameters(seed: 99)
        for (p, q) in zip(resumed, first) { p.value = q.value }
        let c = makeOptimizer(kind)
        try c.restoreState(saved, parameters: resumed)
        #expect(c.state == saved)
        train(c, resumed, steps: 4..<10)
        for (p, q) in zip(resumed, uninterrupted) {
            #expect(p.value == q.value, "\(kind): \(p.name) differs after resuming")
        }
        #expect(c.state == a.state, "\(kind): state differs after resuming")
        // The saved copy shares nothing with the optimizer: it did not move when b stepped on.
        train(b, first, steps: 4..<5)
        #expect(saved != b.state)
        try c.restoreState(saved, parameters: resumed)
        #expect(c.state == saved)
    }

    @Test("Frozen parameters are left alone and get no state", arguments: optimizerKinds)
    func frozen(kind: String) {
        let parameters = makeParameters(seed: 2)
        let frozenValue = parameters[1].value
        let optimizer = makeOptimizer(kind)
        train(optimizer, parameters, steps: 0..<3)
        #expect(parameters[1].value == frozenValue)
        #expect(parameters[0].value != makeParameters(seed: 2)[0].value)
        #expect(Set(optimizer.state.tensors.map(\.parameterIndex)) == [0, 2, 3])
        // Unfreezing later starts the parameter's state then (torch: state on first update).
        parameters[1].isTrainable = true
        train(optimizer, parameters, steps: 3..<4)
        #expect(parameters[1].value != frozenValue)
        #expect(Set(optimizer.state.tensors.map(\.parameterIndex)) == [0, 1, 2, 3])
    }

    @Test("Restoring mismatched state throws one line and changes nothing", arguments: optimizerKinds)
    func restoreErrors(kind: String) throws {
        let parameters = makeParameters(seed: 3)
        let optimizer = makeOptimizer(kind)
        train(optimizer, parameters, steps: 0..<2)
        let good = optimizer.state
        var cases: [(String, OptimizerState<Float>)] = []
        var shape = good; shape.tensors[0].tensor = Tensor(shape: [4, 5]); cases.append(("shape", shape))
        var name = good; name.tensors[0].name = "nonsense"; cases.append(("name", name))
        var index = good; index.tensors[0].parameterIndex = 7; cases.append(("index", index))
        var twice = good; twice.tensors.append(good.tensors[0]); cases.append(("twice", twice))
        var noStep = good; noStep.scalars = [:]; cases.append(("no step", noStep))
        var extra = good; extra.scalars["lr"] = 1; cases.append(("unknown scalar", extra))
        var fraction = good; fraction.scalars["step"] = 2.5; cases.append(("fractional step", fraction))
        if kind == "AdamW" {   // a parameter with only some of its tensors
            var partial = good; partial.tensors.removeFirst(); cases.append(("partial", partial))
        }
        for (what, bad) in cases {
            let fresh = makeOptimizer(kind)
            do {
                try fresh.restoreState(bad, parameters: parameters)
                Issue.record("\(kind): restoring state with a bad \(what) did not throw")
            } catch {
                #expect(!error.description.contains("\n") && !error.description.isEmpty, "\(kind) \(what): \(error)")
            }
            #expect(fresh.state.tensors.isEmpty && fresh.state.scalars == ["step": 0], "\(kind) \(what): state changed")
        }
        // A shorter parameter list is caught by the index or the shapes.
        #expect(throws: OptimizerStateError.self) { try makeOptimizer(kind).restoreState(good, parameters: Array(parameters.prefix(1))) }
    }

    @Test("The course SGD: Float settings give exactly the Float arithmetic of the formulas")
    func courseSGD() {
        let (alpha, mu, lambda): (Float, Float, Float) = (0.1, 0.9, 0.005)
        let p = Parameter(name: "weight", value: optimizerTestTensor([7], seed: 4))
        let sgd = SGD<Float>(learningRate: alpha, momentum: mu, weightDecay: lambda)
        var w = p.value.scalars, m = [Float](repeating: 0, count: 7)
        for t in 0..<3 {
            p.gradient = optimizerTestTensor([7], seed: UInt64(40 + t))
            sgd.step([p])
            for i in 0..<7 {   // report Eq. 20–22, literally
                m[i] = mu * m[i] + (1 - mu) * p.gradient.scalars[i]
                w[i] -= alpha * (m[i] + lambda * w[i])
            }
            #expect(p.value.scalars == w, "step \(t + 1)")
        }
        #expect(sgd.learningRate == Double(alpha))
        // μ = 0 is plain SGD with weight decay on every parameter, biases included.
        let bias = Parameter<Float>(name: "bias", value: Tensor(shape: [1], scalars: [2]), decays: false)
        bias.gradient = Tensor(shape: [1], scalars: [0.5])
        SGD<Float>(learningRate: 0.5, weightDecay: 0.25).step([bias])
        #expect(bias.value.scalars == [2 - 0.5 * (0.5 + 0.25 * 2)])   // = 1.5, exact
    }

    @Test("PyTorchSGD and AdamW by hand: one step on one number")
    func handChecked() {
        // PyTorchSGD, coupled decay: d = g + λw = 0.5 + 0.5·2 = 1.5; first buffer b = d;
        // Nesterov: d + μb = 1.5 + 0.5·1.5 = 2.25; w = 2 − 0.25·2.25 = 1.4375 (exact in Float).
        let p = Parameter<Float>(name: "weight", value: Tensor(shape: [1], scalars: [2]))
        p.gradient = Tensor(shape: [1], scalars: [0.5])
        PyTorchSGD<Float>(learningRate: 0.25, momentum: 0.5, nesterov: true, weightDecay: 0.5).step([p])
        #expect(p.value.scalars == [1.4375])
        // AdamW, first step: m̂ = g, v̂ = g², so w = w·(1 − αλ) − α·g/(|g| + ε):
        // 2·(1 − 0.25·0.5) − 0.25·(0.5/(0.5 + 0.5)) = 1.75 − 0.125 = 1.625 (ε = 0.5 to show it).
        let q = Parameter<Float>(name: "weight", value: Tensor(shape: [1], scalars: [2]))
        q.gradient = Tensor(shape: [1], scalars: [0.5])
        AdamW<Float>(learningRate: 0.25, beta1: 0.5, beta2: 0.75, epsilon: 0.5, weightDecay: 0.5).step([q])
        #expect(q.value.scalars == [1.625])
    }

    @Test("A parameter's learning-rate scale multiplies its step, not its decay (PyTorchSGD, AdamW)")
    func learningRateScale() {
        // PyTorchSGD, decoupled decay, no momentum: w = 2·(1 − 0.25·0.5) − (0.25·4)·0.5 = 1.75 − 0.5 = 1.25.
        let p = Parameter<Float>(name: "bias", value: Tensor(shape: [1], scalars: [2]))
        p.learningRateScale = 4
        p.gradient = Tensor(shape: [1], scalars: [0.5])
        PyTorchSGD<Float>(learningRate: 0.25, weightDecay: 0.5, decoupledWeightDecay: true).step([p])
        #expect(p.value.scalars == [1.25])
        // AdamW, first step: 2·(1 − 0.25·0.5) − (0.25·4)·(0.5/(0.5 + 0.5)) = 1.75 − 0.5 = 1.25.
        let q = Parameter<Float>(name: "bias", value: Tensor(shape: [1], scalars: [2]))
        q.learningRateScale = 4
        q.gradient = Tensor(shape: [1], scalars: [0.5])
        AdamW<Float>(learningRate: 0.25, beta1: 0.5, beta2: 0.75, epsilon: 0.5, weightDecay: 0.5).step([q])
        #expect(q.value.scalars == [1.25])
        // PyTorchSGD, coupled decay (airbench's BatchNorm biases: weight_decay = wd / lr_biases):
        // d = g + (λ/s)·w = 0.5 + (0.5/4)·2 = 0.75; first buffer b = d; Nesterov d + μb = 0.75 +
        // 0.5·0.75 = 1.125; w = 2 − (0.25·4)·1.125 = 0.875 (exact). Without the division by s:
        // d = 1.5, w = 2 − 2.25 = −0.25.
        let r = Parameter<Float>(name: "bias", value: Tensor(shape: [1], scalars: [2]))
        r.learningRateScale = 4
        r.gradient = Tensor(shape: [1], scalars: [0.5])
        PyTorchSGD<Float>(learningRate: 0.25, momentum: 0.5, nesterov: true, weightDecay: 0.5).step([r])
        #expect(r.value.scalars == [0.875])
    }

    // MARK: Schedules

    @Test("Schedule strings parse, print back and round-trip through JSON")
    func scheduleStrings() throws {
        let canonical = ["constant", "step:1000:0.1", "cosine", "cosine:0.01", "onecycle",
                         "onecycle:pct_start=0.25,anneal_strategy=linear,div_factor=10,final_div_factor=100,cycle_momentum=false,base_momentum=0.8,max_momentum=0.9",
                         "warmup:500+cosine", "warmup:500:0.1+step:30:0.5", "warmup:3:0+constant"]
        for text in canonical {
            let schedule = try Schedule(parsing: text)
            #expect(schedule.description == text)
            let json = try JSONEncoder().encode(["schedule": schedule])
            #expect(String(decoding: json, as: UTF8.self) == "{\"schedule\":\"\(text)\"}")
            #expect(try JSONDecoder().decode([String: Schedule].self, from: json)["schedule"] == schedule)
        }
        #expect(try Schedule(parsing: "warmup:500+cosine") == .warmup(steps: 500, startFactor: 0.01, then: .cosine(minimumFactor: 0)))
        #expect(try Schedule(parsing: "onecycle:final_div_factor=1e4") == .oneCycle(.init()))
        #expect(try Schedule(parsing: "step:10:0.5") == .stepDecay(every: 10, factor: 0.5))
    }

    @Test("Bad schedule strings are one-line errors", arguments: [
        "", "linear", "constant:1", "step", "step:0:0.1", "step:10", "step:10:-1", "step:x:0.1", "cosine:2",
        "onecycle:pct_start=1", "onecycle:anneal_strategy=exp", "onecycle:bogus=1", "onecycle:div_factor",
        "onecycle:pct_start=0.2,pct_start=0.3", "onecycle:cycle_momentum=yes", "onecycle:max_momentum=1",
        "warmup:10", "warmup:0+cosine", "warmup:10+onecycle", "warmup:10+warmup:5+cosine", "cosine+constant",
        "warmup:10:2+cosine", "warmup:10+nothing",
    ])
    func scheduleErrors(text: String) {
        do {
            let schedule = try Schedule(parsing: text)
            Issue.record("'\(text)' parsed as \(schedule)")
        } catch {
            #expect(!error.description.contains("\n") && error.description.contains("'"), "\(error)")
        }
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([Schedule].self, from: Data("[\"\(text)\"]".utf8)) }
    }

    @Test("Schedules: validation against the run's length, warm-up values, clamping past the end")
    func scheduleValues() throws {
        #expect(throws: ScheduleError.self) { try Schedule.warmup(steps: 10, startFactor: 0.1, then: .cosine(minimumFactor: 0)).validate(totalSteps: 10) }
        #expect(throws: ScheduleError.self) { try Schedule.oneCycle(.init(pctStart: 0.25)).validate(totalSteps: 4) }   // 0.25·4 = 1
        try Schedule.oneCycle(.init()).validate(totalSteps: 3)   // 0.3·3 < 1: no rising step, as in torch
        try Schedule.oneCycle(.init()).validate(totalSteps: 4)
        try Schedule.constant.validate(totalSteps: 1)
        let warm = Schedule.warmup(steps: 4, startFactor: 0.2, then: .stepDecay(every: 2, factor: 0.5))
        let lrs = (0..<10).map { warm.learningRate(atStep: $0, totalSteps: 10, base: 1) }
        #expect(lrs.map { ($0 * 1e12).rounded() / 1e12 } == [0.2, 0.4, 0.6, 0.8, 1, 1, 0.5, 0.5, 0.25, 0.25])
        #expect(warm.momentum(atStep: 0, totalSteps: 10) == nil)
        // One-cycle's last step reaches the final rate; later steps stay there.
        let one = Schedule.oneCycle(.init())
        let last = one.learningRate(atStep: 99, totalSteps: 100, base: 1)
        #expect(abs(last - 1 / 25 / 1e4) < 1e-18)
        #expect(one.learningRate(atStep: 150, totalSteps: 100, base: 1) == last)
        #expect(one.momentum(atStep: 99, totalSteps: 100) == 0.95)
        #expect(Schedule.cosine(minimumFactor: 0.1).learningRate(atStep: 100, totalSteps: 50, base: 2) == 0.2)
    }

    // MARK: Exponential moving average

    @Test("EMA: a ← a + (1 − d)(w − a), with warm-up, swap and back, state")
    func exponentialMovingAverage() throws {
        let p = Parameter(name: "weight", value: Tensor(shape: [2], scalars: [0, 4]))
        let running = Buffer(name: "running_mean", value: Tensor(shape: [1], scalars: [1]))
        let count = Buffer(name: "num_batches_tracked", value: Tensor(shape: [], scalars: [0]), storage: .integer)
        let ema = ExponentialMovingAverage(parameters: [p], buffers: [running, count], decay: 0.75)
        p.value = Tensor(shape: [2], scalars: [8, 4])
        running.value = Tensor(shape: [1], scalars: [5])
        count.value = Tensor(shape: [], scalars: [1])
        ema.update()
        // 0 + 0.25·(8 − 0) = 2;  1 + 0.25·(5 − 1) = 2;  the count is copied.
        #expect(ema.parameterAverages == [Tensor(shape: [2], scalars: [2, 4])])
        #expect(ema.bufferAverages == [Tensor(shape: [1], scalars: [2]), Tensor(shape: [], scalars: [1])])

        ema.swapAverages()
        #expect(ema.isSwapped && p.value.scalars == [2, 4] && running.value.scalars == [2])
        #expect(ema.parameterAverages == [Tensor(shape: [2], scalars: [2, 4])])
        ema.swapAverages()
        #expect(!ema.isSwapped && p.value.scalars == [8, 4] && running.value.scalars == [5])

        // Warm-up: d = min(0.75, (1 + n)/(10 + n)) = 0.1, 2/11, 3/12 = 0.25, …, then 0.75.
        let warm = ExponentialMovingAverage(parameters: [p], decay: 0.75, warmUp: true)
        var expected: [Double] = []
        for n in 0..<30 {
            expected.append(min(0.75, Double(1 + n) / Double(10 + n)))
            #expect(warm.currentDecay == expected[n])
            warm.update()
        }
        #expect(expected[0] == 0.1 && expected.last == 0.75)

        // State: restore into a fresh EMA and continue identically.
        let copy = ExponentialMovingAverage(parameters: [p], buffers: [running, count], decay: 0.75)
        try copy.restoreState(parameterAverages: ema.parameterAverages, bufferAverages: ema.bufferAverages, updateCount: ema.updateCount)
        p.value = Tensor(shape: [2], scalars: [-1, 3])
        ema.update(); copy.update()
        #expect(copy.parameterAverages == ema.parameterAverages && copy.bufferAverages == ema.bufferAverages)
        #expect(copy.updateCount == 2)
        #expect(throws: OptimizerStateError.self) {
            try copy.restoreState(parameterAverages: [Tensor(shape: [3])], bufferAverages: ema.bufferAverages, updateCount: 1)
        }
        #expect(throws: OptimizerStateError.self) {
            try copy.restoreState(parameterAverages: ema.parameterAverages, bufferAverages: [], updateCount: 1)
        }
    }

    // MARK: Lookahead

    @Test("Lookahead: every k steps s ← s + (1 − d·(t/T)^p)(w − s), w ← s; after the last step w ← s; integer buffers alone")
    func lookahead() throws {
        let p = Parameter(name: "weight", value: Tensor(shape: [2], scalars: [1, 2]))
        let running = Buffer(name: "running_mean", value: Tensor(shape: [1], scalars: [1]))
        let count = Buffer(name: "num_batches_tracked", value: Tensor(shape: [], scalars: [0]), storage: .integer)
        let lookahead = Lookahead(parameters: [p], buffers: [running, count], every: 2, decay: 0.5, power: 1)
        #expect(lookahead.decay(afterStep: 2, of: 4) == 0.25)

        // Step 1 (the optimizer moved the weights): not a multiple of 2, nothing happens.
        p.value = Tensor(shape: [2], scalars: [3, 6])
        lookahead.afterStep(1, of: 4)
        #expect(p.value.scalars == [3, 6] && lookahead.slowParameters == [Tensor(shape: [2], scalars: [1, 2])])
        // Step 2: d = 0.5·(2/4) = 0.25, s = [1, 2] + 0.75·([5, 10] − [1, 2]) = [4, 8], and the live
        // weights take it; the running mean 1 + 0.75·(3 − 1) = 2.5; the count stays the live 2.
        p.value = Tensor(shape: [2], scalars: [5, 10])
        running.value = Tensor(shape: [1], scalars: [3])
        count.value = Tensor(shape: [], scalars: [2])
        lookahead.afterStep(2, of: 4)
        #expect(p.value.scalars == [4, 8] && running.value.scalars == [2.5] && count.value.scalars == [2])
        #expect(lookahead.slowBuffers == [Tensor(shape: [1], scalars: [2.5])])
        // Steps 3, 4: d = 0.5, s = [4, 8] + 0.5·([8, 16] − [4, 8]) = [6, 12].
        p.value = Tensor(shape: [2], scalars: [0, 0])
        lookahead.afterStep(3, of: 4)
        #expect(p.value.scalars == [0, 0])
        p.value = Tensor(shape: [2], scalars: [8, 16])
        running.value = Tensor(shape: [1], scalars: [4.5])
        count.value = Tensor(shape: [], scalars: [4])
        lookahead.afterStep(4, of: 4)
        #expect(p.value.scalars == [6, 12] && running.value.scalars == [3.5] && count.value.scalars == [4])

        // A run whose length is not a multiple of `every`: the last step hands over the slow weights.
        let q = Parameter(name: "weight", value: Tensor(shape: [2], scalars: [1, 2]))
        let odd = Lookahead(parameters: [q], every: 2, decay: 0.5, power: 0)
        q.value = Tensor(shape: [2], scalars: [5, 10])
        odd.afterStep(2, of: 3)  // d = 0.5: s = [3, 6]
        #expect(q.value.scalars == [3, 6])
        q.value = Tensor(shape: [2], scalars: [9, 9])
        odd.afterStep(3, of: 3)
        #expect(q.value.scalars == [3, 6])

        // State: restore into a fresh Lookahead and continue identically.
        let r = Parameter(name: "weight", value: Tensor(shape: [2], scalars: [7, 7]))
        let copy = Lookahead(parameters: [r], every: 2, decay: 0.5, power: 0)
        try copy.restoreState(slowParameters: odd.slowParameters, slowBuffers: [])
        q.value = Tensor(shape: [2], scalars: [1, 1]); r.value = q.value
        odd.afterStep(4, of: 10); copy.afterStep(4, of: 10)
        #expect(q.value == r.value && q.value.scalars == [2, 3.5])
        #expect(throws: OptimizerStateError.self) { try copy.restoreState(slowParameters: [Tensor(shape: [3])], slowBuffers: []) }
    }
}
