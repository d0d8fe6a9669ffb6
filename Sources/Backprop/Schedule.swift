import Foundation

/// A learning-rate (and, for one-cycle, momentum) schedule: a plain function of the step.
///
/// ## Step indexing
/// `step` is the number of optimizer steps already taken: `0` for the first update, `totalSteps
/// − 1` for the last. So `learningRate(atStep: t, …)` is the rate the `(t+1)`-th
/// `optimizer.step` uses, which is what PyTorch's `scheduler.get_last_lr()` returns after `t`
/// calls of `scheduler.step()` (torch steps the scheduler *after* each optimizer step). With
/// the training loop's 1-based iteration `i` (`StepContext.step`), use `atStep: i − 1`. Steps
/// at or past `totalSteps` keep the last step's value (PyTorch would extrapolate or raise).
///
/// All rates are relative to a base rate (`--learning-rate`): it is torch's `initial_lr` for
/// `StepLR`, `CosineAnnealingLR` and `LinearLR`, and `max_lr` for `OneCycleLR`.
///
/// | case | value at step `t` (`b` = base, `T` = total steps) | PyTorch |
/// |---|---|---|
/// | `constant` | `b` | no scheduler |
/// | `stepDecay(every: k, factor: γ)` | `b·γ^⌊t/k⌋` | `StepLR(step_size=k, gamma=γ)` |
/// | `cosine(minimumFactor: f)` | `η + (b − η)·(1 + cos(π·t/T))/2`, `η = f·b` | `CosineAnnealingLR(T_max=T, eta_min=f·b)` |
/// | `oneCycle(c)` | see `OneCycle` | `OneCycleLR(max_lr=b, total_steps=T, …)` |
/// | `warmup(steps: W, startFactor: s, then: inner)` | `b·(s + (1 − s)·t/W)` for `t < W`, then `inner` at `t − W` of `T − W` | `SequentialLR([LinearLR(start_factor=s, total_iters=W), inner], milestones=[W])` |
///
/// ## String form (a CLI flag, and how it is saved in JSON)
/// ```
/// constant
/// step:EVERY:FACTOR                  e.g. step:1000:0.1
/// cosine[:MIN_FACTOR]                e.g. cosine, cosine:0.01        (MIN_FACTOR default 0)
/// onecycle[:KEY=VALUE,…]             e.g. onecycle, onecycle:pct_start=0.25,anneal_strategy=linear
///     keys (torch's OneCycleLR arguments, defaults as torch): pct_start=0.3, anneal_strategy=cos|linear,
///     div_factor=25, final_div_factor=1e4, cycle_momentum=true|false, base_momentum=0.85, max_momentum=0.95
/// warmup:STEPS[:START_FACTOR]+SCHEDULE  e.g. warmup:500+cosine        (START_FACTOR default 0.01)
/// ```
/// `warmup` wraps any schedule but `onecycle` (which has its own warm-up) or another `warmup`.
public enum Schedule: Sendable, Equatable, CustomStringConvertible {
    /// The base rate throughout.
    case constant
    /// The rate times `factor` every `every` steps (torch `StepLR`).
    case stepDecay(every: Int, factor: Double)
    /// Half a cosine from the base rate down to `minimumFactor` times it over the total steps
    /// (torch `CosineAnnealingLR`), then the minimum.
    case cosine(minimumFactor: Double)
    /// PyTorch's `OneCycleLR` (two phases), optionally cycling the momentum.
    case oneCycle(OneCycle)
    /// A linear ramp from `startFactor` times the base rate over `steps` steps (torch
    /// `LinearLR`), then `then` started afresh with the remaining steps (torch `SequentialLR`).
    indirect case warmup(steps: Int, startFactor: Double, then: Schedule)

    /// The settings of PyTorch's `OneCycleLR` with `three_phase=False`, named and defaulted as
    /// torch names them.
    ///
    /// With base (maximum) rate `b`, initial rate `b₀ = b / divFactor` and final rate
    /// `b₁ = b₀ / finalDivFactor`, and `e = pctStart·T − 1` (torch's phase boundary, a real
    /// number):
    /// - phase 1, `t ≤ e`: `p = t / e`, rate from `b₀` to `b`, momentum from `maxMomentum` to
    ///   `baseMomentum`;
    /// - phase 2: `p = (t − e) / (T − 1 − e)`, rate from `b` to `b₁`, momentum from
    ///   `baseMomentum` to `maxMomentum`;
    ///
    /// each interpolated by `anneal(start, end, p)`: `end + (start − end)/2·(cos(π·p) + 1)`
    /// for `.cos`, `start + (end − start)·p` for `.linear`.
    ///
    /// When `pctStart·T < 1` (`e < 0`), phase 1 holds no step and the first step is already a
    /// little way down phase 2, as in torch; `pctStart·T = 1` (`e = 0`) is refused, since torch
    /// divides by zero there.
    public struct OneCycle: Sendable, Equatable {
        /// torch `anneal_strategy`.
        public enum AnnealStrategy: String, Sendable, Equatable { case cos, linear }

        /// The fraction of the steps spent raising the rate (torch `pct_start`).
        public var pctStart: Double
        /// How each phase interpolates (torch `anneal_strategy`).
        public var annealStrategy: AnnealStrategy
        /// Initial rate = base / `divFactor` (torch `div_factor`).
        public var divFactor: Double
        /// Final rate = initial rate / `finalDivFactor` (torch `final_div_factor`).
        public var finalDivFactor: Double
        /// Whether the schedule sets the momentum (SGD's `μ`, Adam's `β1`) too.
        public var cycleMomentum: Bool
        /// The momentum at the peak rate.
        public var baseMomentum: Double
        /// The momentum at the start and the end.
        public var maxMomentum: Double

        /// Creates settings; the defaults are torch's.
        public init(pctStart: Double = 0.3, annealStrategy: AnnealStrategy = .cos, divFactor: Double = 25,
                    finalDivFactor: Double = 1e4, cycleMomentum: Bool = true,
                    baseMomentum: Double = 0.85, maxMomentum: Double = 0.95) {
            self.pctStart = pctStart
            self.annealStrategy = annealStrategy
            self.divFactor = divFactor
            self.finalDivFactor = finalDivFactor
            self.cycleMomentum = cycleMomentum
            self.baseMomentum = baseMomentum
            self.maxMomentum = maxMomentum
        }

        /// The phase and the fraction `p` of it that step `t` is at (torch's `get_lr`).
        fileprivate func position(atStep t: Int, totalSteps: Int) -> (rising: Bool, fraction: Double) {
            let t = Double(min(t, totalSteps - 1))
            let end1 = pctStart * Double(totalSteps) - 1, end2 = Double(totalSteps - 1)
            return t <= end1 ? (true, t / end1) : (false, (t - end1) / (end2 - end1))
        }

        fileprivate func anneal(_ start: Double, _ end: Double, _ p: Double) -> Double {
            switch annealStrategy {
            case .cos: end + (start - end) / 2 * (cos(Double.pi * p) + 1)
            case .linear: (end - start) * p + start
            }
        }
    }

    // MARK: Values

    /// The learning rate of the optimizer step with index `step` (0-based; see the type's
    /// documentation).
    /// - Parameters:
    ///   - step: the number of optimizer steps already taken, `≥ 0`.
    ///   - totalSteps: the run's number of optimizer steps (`validate(totalSteps:)` passed).
    ///   - base: the base rate (one-cycle's maximum).
    public func learningRate(atStep step: Int, totalSteps: Int, base: Double) -> Double {
        precondition(step >= 0, "negative step \(step)")
        switch self {
        case .constant:
            return base
        case let .stepDecay(every, factor):
            return base * pow(factor, Double(step / every))
        case let .cosine(minimumFactor):
            let minimum = minimumFactor * base
            guard step < totalSteps else { return minimum }
            return minimum + (base - minimum) * (1 + cos(Double(step) * Double.pi / Double(totalSteps))) / 2
        case let .oneCycle(c):
            let initial = base / c.divFactor, final = initial / c.finalDivFactor
            let (rising, p) = c.position(atStep: step, totalSteps: totalSteps)
            return rising ? c.anneal(initial, base, p) : c.anneal(base, final, p)
        case let .warmup(steps, startFactor, inner):
            guard step >= steps else {
                return base * (startFactor + (1 - startFactor) * Double(step) / Double(steps))
            }
            return inner.learningRate(atStep: step - steps, totalSteps: totalSteps - steps, base: base)
        }
    }

    /// The momentum (SGD's `μ`, Adam's `β1`) of the optimizer step with index `step`, or `nil`
    /// where the schedule leaves the optimizer's momentum alone (all but a one-cycle schedule
    /// with `cycleMomentum`).
    public func momentum(atStep step: Int, totalSteps: Int) -> Double? {
        switch self {
        case .constant, .stepDecay, .cosine:
            return nil
        case let .oneCycle(c):
            guard c.cycleMomentum else { return nil }
            let (rising, p) = c.position(atStep: step, totalSteps: totalSteps)
            return rising ? c.anneal(c.maxMomentum, c.baseMomentum, p) : c.anneal(c.baseMomentum, c.maxMomentum, p)
        case let .warmup(steps, _, inner):
            return step < steps ? nil : inner.momentum(atStep: step - steps, totalSteps: totalSteps - steps)
        }
    }

    /// Sets `optimizer`'s learning rate (and momentum, where the schedule sets it) for the step
    /// with index `step`; call it before each `optimizer.step`.
    public func apply(to optimizer: some Optimizer, atStep step: Int, totalSteps: Int, baseLearningRate: Double) {
        optimizer.learningRate = learningRate(atStep: step, totalSteps: totalSteps, base: baseLearningRate)
        if let momentum = momentum(atStep: step, totalSteps: totalSteps) { optimizer.momentum = momentum }
    }

    /// Checks that the schedule fits a run of `totalSteps` steps.
    /// - Throws: `ScheduleError` (one line) when a warm-up leaves no steps, or a one-cycle
    ///   phase boundary falls on step 0 (`pct_start × steps = 1`, where torch divides by zero).
    public func validate(totalSteps: Int) throws(ScheduleError) {
        guard totalSteps >= 1 else { throw ScheduleError("schedule '\(self)' needs at least 1 step, got \(totalSteps)") }
        switch self {
        case .constant, .stepDecay, .cosine:
            return
        case let .oneCycle(c):
            guard c.pctStart * Double(totalSteps) != 1 else {
                throw ScheduleError("schedule '\(self)': pct_start × steps must not be exactly 1 (the rising phase would end at step 0, where torch divides by zero), got \(c.pctStart) × \(totalSteps)")
            }
        case let .warmup(steps, _, inner):
            guard steps < totalSteps else {
                throw ScheduleError("schedule '\(self)': the warm-up's \(steps) steps leave none of the run's \(totalSteps)")
            }
            try inner.validate(totalSteps: totalSteps - steps)
        }
    }

    // MARK: String form

    /// The string form (see the type's documentation); `Schedule(parsing: s.description) == s`.
    public var description: String {
        switch self {
        case .constant:
            return "constant"
        case let .stepDecay(every, factor):
            return "step:\(every):\(format(factor))"
        case let .cosine(minimumFactor):
            return minimumFactor == 0 ? "cosine" : "cosine:\(format(minimumFactor))"
        case let .oneCycle(c):
            let d = OneCycle()
            var options: [String] = []
            if c.pctStart != d.pctStart { options.append("pct_start=\(format(c.pctStart))") }
            if c.annealStrategy != d.annealStrategy { options.append("anneal_strategy=\(c.annealStrategy.rawValue)") }
            if c.divFactor != d.divFactor { options.append("div_factor=\(format(c.divFactor))") }
            if c.finalDivFactor != d.finalDivFactor { options.append("final_div_factor=\(format(c.finalDivFactor))") }
            if c.cycleMomentum != d.cycleMomentum { options.append("cycle_momentum=\(c.cycleMomentum)") }
            if c.baseMomentum != d.baseMomentum { options.append("base_momentum=\(format(c.baseMomentum))") }
            if c.maxMomentum != d.maxMomentum { options.append("max_momentum=\(format(c.maxMomentum))") }
            return options.isEmpty ? "onecycle" : "onecycle:" + options.joined(separator: ",")
        case let .warmup(steps, startFactor, inner):
            let start = startFactor == Self.defaultWarmupStartFactor ? "" : ":\(format(startFactor))"
            return "warmup:\(steps)\(start)+\(inner)"
        }
    }

    /// The warm-up's start factor when the string form gives none.
    public static let defaultWarmupStartFactor = 0.01

    /// Parses the string form (see the type's documentation).
    /// - Throws: `ScheduleError`, one line naming the part that is wrong.
    public init(parsing text: String) throws(ScheduleError) {
        if let plus = text.firstIndex(of: "+") {
            let head = text[..<plus], rest = String(text[text.index(after: plus)...])
            let fields = head.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard fields[0] == "warmup" else {
                throw ScheduleError("schedule '\(text)': only 'warmup:STEPS[:START_FACTOR]' may come before '+'")
            }
            guard fields.count == 2 || fields.count == 3 else {
                throw ScheduleError("schedule '\(text)': expected warmup:STEPS[:START_FACTOR]+SCHEDULE")
            }
            let steps = try Self.count(fields[1], "the warm-up's steps", in: text)
            let start = fields.count == 3 ? try Self.number(fields[2], "the warm-up's start factor", in: text, .fraction)
                                          : Self.defaultWarmupStartFactor
            let inner = try Schedule(parsing: rest)
            switch inner {
            case .oneCycle: throw ScheduleError("schedule '\(text)': warmup cannot wrap onecycle (it has its own warm-up phase)")
            case .warmup: throw ScheduleError("schedule '\(text)': warmup cannot wrap another warmup")
            default: self = .warmup(steps: steps, startFactor: start, then: inner)
            }
            return
        }
        let kind = text.prefix { $0 != ":" }
        let arguments = kind.count < text.count ? String(text[text.index(after: kind.endIndex)...]) : nil
        switch kind {
        case "constant":
            guard arguments == nil else { throw ScheduleError("schedule '\(text)': constant takes no arguments") }
            self = .constant
        case "step":
            let fields = arguments?.split(separator: ":", omittingEmptySubsequences: false).map(String.init) ?? []
            guard fields.count == 2 else { throw ScheduleError("schedule '\(text)': expected step:EVERY:FACTOR, e.g. step:1000:0.1") }
            let every = try Self.count(fields[0], "the step interval", in: text)
            let factor = try Self.number(fields[1], "the decay factor", in: text, .positive)
            self = .stepDecay(every: every, factor: factor)
        case "cosine":
            let minimum = try arguments.map { a throws(ScheduleError) in try Self.number(a, "the minimum factor", in: text, .fraction) }
            self = .cosine(minimumFactor: minimum ?? 0)
        case "onecycle":
            self = .oneCycle(try Self.oneCycle(arguments, in: text))
        default:
            throw ScheduleError("unknown schedule '\(text)' (expected constant, step:EVERY:FACTOR, cosine[:MIN_FACTOR], onecycle[:KEY=VALUE,…] or warmup:STEPS[:START_FACTOR]+SCHEDULE)")
        }
    }

    private static func oneCycle(_ arguments: String?, in text: String) throws(ScheduleError) -> OneCycle {
        var c = OneCycle()
        guard let arguments else { return c }
        var seen: Set<Substring> = []
        for option in arguments.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = option.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2 else { throw ScheduleError("schedule '\(text)': expected KEY=VALUE, got '\(option)'") }
            let (key, value) = (parts[0], String(parts[1]))
            guard seen.insert(key).inserted else { throw ScheduleError("schedule '\(text)': '\(key)' given twice") }
            switch key {
            case "pct_start": c.pctStart = try number(value, "pct_start", in: text, .openFraction)
            case "div_factor": c.divFactor = try number(value, "div_factor", in: text, .positive)
            case "final_div_factor": c.finalDivFactor = try number(value, "final_div_factor", in: text, .positive)
            case "base_momentum": c.baseMomentum = try number(value, "base_momentum", in: text, .momentum)
            case "max_momentum": c.maxMomentum = try number(value, "max_momentum", in: text, .momentum)
            case "anneal_strategy":
                guard let strategy = OneCycle.AnnealStrategy(rawValue: value) else {
                    throw ScheduleError("schedule '\(text)': anneal_strategy must be cos or linear, got '\(value)'")
                }
                c.annealStrategy = strategy
            case "cycle_momentum":
                guard let flag = Bool(value) else { throw ScheduleError("schedule '\(text)': cycle_momentum must be true or false, got '\(value)'") }
                c.cycleMomentum = flag
            default:
                throw ScheduleError("schedule '\(text)': unknown onecycle key '\(key)' (expected pct_start, anneal_strategy, div_factor, final_div_factor, cycle_momentum, base_momentum, max_momentum)")
            }
        }
        return c
    }

    private static func count(_ field: String, _ what: String, in text: String) throws(ScheduleError) -> Int {
        guard let value = Int(field), value >= 1 else {
            throw ScheduleError("schedule '\(text)': \(what) must be a whole number ≥ 1, got '\(field)'")
        }
        return value
    }

    private static func number(_ field: String, _ what: String, in text: String, _ requirement: Requirement) throws(ScheduleError) -> Double {
        guard let value = Double(field), value.isFinite else {
            throw ScheduleError("schedule '\(text)': \(what) must be a number, got '\(field)'")
        }
        guard requirement.admits(value) else {
            throw ScheduleError("schedule '\(text)': \(what) must be \(requirement.rawValue), got '\(field)'")
        }
        return value
    }

    /// What a number in a schedule string must be.
    private enum Requirement: String {
        case positive = "> 0", fraction = "in [0, 1]", openFraction = "in (0, 1)", momentum = "in [0, 1)"

        func admits(_ x: Double) -> Bool {
            switch self {
            case .positive: x > 0
            case .fraction: x >= 0 && x <= 1
            case .openFraction: x > 0 && x < 1
            case .momentum: x >= 0 && x < 1
            }
        }
    }
}

/// A number in the shortest form that parses back to it exactly (`10000`, not `10000.0`).
private func format(_ x: Double) -> String {
    if x == x.rounded(), abs(x) < 1e15 { return String(Int(x)) }
    return x.description
}

extension Schedule: Codable {
    /// Decodes the string form.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        do {
            self = try Schedule(parsing: text)
        } catch {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: error.description)
        }
    }

    /// Encodes the string form, e.g. `"warmup:500+cosine"`.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// A schedule string that cannot be parsed, or a schedule that does not fit the run.
public struct ScheduleError: Error, CustomStringConvertible, Sendable, Equatable {
    /// One line naming the schedule and what is wrong.
    public var description: String

    /// Creates an error with a one-line message.
    public init(_ description: String) { self.description = description }
}
