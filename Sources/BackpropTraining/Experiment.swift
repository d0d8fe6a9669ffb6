import Backprop
import BackpropData
import Foundation

/// Which optimizer a run uses.
public enum OptimizerKind: String, Codable, Sendable, CaseIterable {
    /// The course's momentum SGD, `m = μm + (1 − μ)g; w −= α(m + λw)`, decaying every parameter.
    case courseSGD = "course_sgd"
    /// `torch.optim.SGD`: `b = μb + g`, optionally Nesterov, weight decay on weights only.
    case sgd
    /// `torch.optim.AdamW` (β1 = `momentum`), decoupled weight decay on weights only.
    case adamw
    /// airbench94_muon's `Muon` for convolution filters (`muon_learning_rate`, `muon_momentum`)
    /// and `sgd` for every other parameter.
    case muon
}

/// Lookahead's settings (`Lookahead`): after every `every` steps the slow weights move towards
/// the live ones with decay `decay · (t/T)^power`, and the live ones are reset to them; after the
/// last step the network keeps the slow weights. The defaults are airbench94's.
///
/// In a spec's `"training"`: `"lookahead": {"every": 5, "decay": 0.774, "power": 3}` (missing
/// keys take the defaults), or `"lookahead": true` for the defaults.
public struct LookaheadOptions: Codable, Sendable, Equatable {
    /// Steps between synchronisations.
    public var every = 5
    /// The largest decay, reached at the last step (airbench: 0.95⁵).
    public var decay = 0.7737809375
    /// The exponent of the decay's ramp over the run.
    public var power = 3.0

    public init(every: Int = 5, decay: Double = 0.7737809375, power: Double = 3.0) {
        self.every = every
        self.decay = decay
        self.power = power
    }

    enum CodingKeys: String, CodingKey { case every, decay, power }

    /// Any key, to find the ones a spec misspelt.
    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: any Decoder) throws {
        if let unknown = try decoder.container(keyedBy: AnyKey.self).allKeys.first(where: { CodingKeys(stringValue: $0.stringValue) == nil }) {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "unknown key \"\(unknown.stringValue)\" (every, decay, power)"))
        }
        let c = try decoder.container(keyedBy: CodingKeys.self)
        every = try c.decodeIfPresent(Int.self, forKey: .every) ?? every
        decay = try c.decodeIfPresent(Double.self, forKey: .decay) ?? decay
        power = try c.decodeIfPresent(Double.self, forKey: .power) ?? power
    }

    func validate() throws(SpecError) {
        guard every >= 1, every <= 1 << 30 else { throw SpecError("lookahead every must be from 1 to 2^30 steps, got \(every)") }
        guard decay >= 0, decay <= 1 else { throw SpecError("lookahead decay must be in [0, 1], got \(decay)") }
        guard power >= 0, power <= 100 else { throw SpecError("lookahead power must be in [0, 100], got \(power)") }
    }
}

/// The hyperparameters of one training run (the course's `opts`, and what modern recipes add).
///
/// JSON keys are snake_case; every key beyond the course's may be missing (older run folders and
/// partial spec files) and takes the default shown.
public struct TrainingOptions: Codable, Sendable, Equatable {
    /// Optimizer steps.
    public var iterations: Int
    /// Examples per step.
    public var batchSize: Int
    /// `α`: the base learning rate (a schedule's peak).
    public var learningRate: Float
    /// `μ` (AdamW's β1); 0 gives plain SGD with weight decay.
    public var momentum: Float
    /// `λ`.
    public var weightDecay: Float
    /// Images read from the training files; the validation images are held out of these.
    public var trainSize: Int
    /// Images held out (after the one shuffle, the last ones) to measure validation accuracy.
    public var validationSize: Int
    /// Seeds the initial weights, the shuffle, dropout and augmentation.
    public var seed: UInt64
    /// Validation accuracy is measured every this many iterations (and after the last).
    public var validationInterval: Int
    /// The factor of the exponential moving average that smooths loss and accuracy after the
    /// first 19 iterations (their plain mean before). The report does not state the course's
    /// default; 0.99 (a window of about 100 iterations) is Backprop's.
    public var movingAverage: Double
    /// Shuffle the training images again at every pass over them (the course shuffles once).
    public var reshuffleEachEpoch: Bool
    /// The optimizer (default: the course's SGD).
    public var optimizer: OptimizerKind = .courseSGD
    /// Nesterov momentum (`sgd` only).
    public var nesterov = false
    /// `sgd` only: weight decay as `w *= 1 − αλ` instead of `g += λw`.
    public var decoupledWeightDecay = false
    /// AdamW's β2.
    public var beta2 = 0.999
    /// AdamW's ε.
    public var epsilon = 1e-8
    /// The learning-rate (and momentum) schedule over the iterations.
    public var schedule: Schedule = .constant
    /// Label smoothing ε of the loss (PyTorch's `label_smoothing`).
    public var labelSmoothing = 0.0
    /// The decay of an exponential moving average of the weights used for validation and saved
    /// as the model; 0 turns it off.
    public var ema = 0.0
    /// Warm the average's decay up as `min(ema, (1 + n)/(10 + n))` after `n` updates, so that
    /// the initial weights do not linger in the average of a short run.
    public var emaWarmUp = false
    /// `muon` only: the convolution filters' learning rate at the base rate (a schedule scales
    /// it in proportion); `nil` takes airbench94_muon's 0.24.
    public var muonLearningRate: Double?
    /// `muon` only: the filters' Nesterov momentum; `nil` takes airbench94_muon's 0.6.
    public var muonMomentum: Double?
    /// Lookahead (slow weights that the live ones are reset to every few steps), or `nil`.
    public var lookahead: LookaheadOptions?
    /// Random changes to each training image.
    public var augmentation = Augmentation()
    /// The views of each test image whose logits the saved model averages (`TestTimeAugmentation`).
    public var testTimeAugmentation = TestTimeAugmentation()
    /// A checkpoint is written every this many iterations (and on an interrupt); 0: only on an
    /// interrupt.
    public var checkpointInterval = 1000
    /// Also keep the model with the best validation accuracy (`best.safetensors`).
    public var saveBest = false

    public init(iterations: Int, batchSize: Int, learningRate: Float, momentum: Float, weightDecay: Float,
                trainSize: Int, validationSize: Int, seed: UInt64 = 42, validationInterval: Int = 200,
                movingAverage: Double = 0.99, reshuffleEachEpoch: Bool = false) {
        self.iterations = iterations
        self.batchSize = batchSize
        self.learningRate = learningRate
        self.momentum = momentum
        self.weightDecay = weightDecay
        self.trainSize = trainSize
        self.validationSize = validationSize
        self.seed = seed
        self.validationInterval = validationInterval
        self.movingAverage = movingAverage
        self.reshuffleEachEpoch = reshuffleEachEpoch
    }

    enum CodingKeys: String, CodingKey {
        case iterations, seed
        case batchSize = "batch_size", learningRate = "learning_rate", momentum, weightDecay = "weight_decay"
        case trainSize = "train_size", validationSize = "validation_size", validationInterval = "validation_interval"
        case movingAverage = "moving_average", reshuffleEachEpoch = "reshuffle_each_epoch"
        case optimizer, nesterov, decoupledWeightDecay = "decoupled_weight_decay", beta2, epsilon, schedule
        case labelSmoothing = "label_smoothing", ema, emaWarmUp = "ema_warmup", augmentation, checkpointInterval = "checkpoint_interval"
        case lookahead, muonLearningRate = "muon_learning_rate", muonMomentum = "muon_momentum"
        case testTimeAugmentation = "test_time_augmentation"
        case saveBest = "save_best"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(iterations: try c.decode(Int.self, forKey: .iterations), batchSize: try c.decode(Int.self, forKey: .batchSize),
                  learningRate: try c.decode(Float.self, forKey: .learningRate), momentum: try c.decode(Float.self, forKey: .momentum),
                  weightDecay: try c.decode(Float.self, forKey: .weightDecay), trainSize: try c.decode(Int.self, forKey: .trainSize),
                  validationSize: try c.decode(Int.self, forKey: .validationSize), seed: try c.decode(UInt64.self, forKey: .seed),
                  validationInterval: try c.decode(Int.self, forKey: .validationInterval),
                  movingAverage: try c.decode(Double.self, forKey: .movingAverage),
                  reshuffleEachEpoch: try c.decode(Bool.self, forKey: .reshuffleEachEpoch))
        optimizer = try c.decodeIfPresent(OptimizerKind.self, forKey: .optimizer) ?? optimizer
        nesterov = try c.decodeIfPresent(Bool.self, forKey: .nesterov) ?? nesterov
        decoupledWeightDecay = try c.decodeIfPresent(Bool.self, forKey: .decoupledWeightDecay) ?? decoupledWeightDecay
        beta2 = try c.decodeIfPresent(Double.self, forKey: .beta2) ?? beta2
        epsilon = try c.decodeIfPresent(Double.self, forKey: .epsilon) ?? epsilon
        schedule = try c.decodeIfPresent(Schedule.self, forKey: .schedule) ?? schedule
        labelSmoothing = try c.decodeIfPresent(Double.self, forKey: .labelSmoothing) ?? labelSmoothing
        ema = try c.decodeIfPresent(Double.self, forKey: .ema) ?? ema
        emaWarmUp = try c.decodeIfPresent(Bool.self, forKey: .emaWarmUp) ?? emaWarmUp
        muonLearningRate = try c.decodeIfPresent(Double.self, forKey: .muonLearningRate)
        muonMomentum = try c.decodeIfPresent(Double.self, forKey: .muonMomentum)
        if let on = try? c.decode(Bool.self, forKey: .lookahead) {
            lookahead = on ? LookaheadOptions() : nil
        } else {
            lookahead = try c.decodeIfPresent(LookaheadOptions.self, forKey: .lookahead)
        }
        if let text = try? c.decode(String.self, forKey: .augmentation) {
            do { augmentation = try Augmentation(parsing: text) } catch {
                throw DecodingError.dataCorruptedError(forKey: .augmentation, in: c, debugDescription: error.description)
            }
        } else {
            augmentation = try c.decodeIfPresent(Augmentation.self, forKey: .augmentation) ?? augmentation
        }
        checkpointInterval = try c.decodeIfPresent(Int.self, forKey: .checkpointInterval) ?? checkpointInterval
        testTimeAugmentation = try c.decodeIfPresent(TestTimeAugmentation.self, forKey: .testTimeAugmentation) ?? testTimeAugmentation
        saveBest = try c.decodeIfPresent(Bool.self, forKey: .saveBest) ?? saveBest
    }

    /// Checks the options against each other and the data available.
    public func validate(availableTrainingImages: Int? = nil, imageHeight: Int? = nil, imageWidth: Int? = nil) throws(SpecError) {
        func fail(_ s: String) -> SpecError { SpecError(s) }
        guard iterations > 0, iterations <= 1 << 40 else { throw fail("iterations must be from 1 to 2^40, got \(iterations)") }
        guard batchSize > 0, batchSize <= 1 << 16 else { throw fail("batch size must be from 1 to 65536, got \(batchSize)") }
        guard learningRate > 0, learningRate.isFinite else { throw fail("learning rate must be a positive number, got \(learningRate)") }
        guard momentum >= 0, momentum < 1 else { throw fail("momentum must be in [0, 1), got \(momentum)") }
        guard weightDecay >= 0, weightDecay.isFinite else { throw fail("weight decay must be >= 0, got \(weightDecay)") }
        guard validationSize >= 0 else { throw fail("validation size must be >= 0, got \(validationSize)") }
        guard trainSize > validationSize else {
            throw fail("train size (\(trainSize)) must exceed the validation size (\(validationSize)): the validation images are held out of it")
        }
        if let available = availableTrainingImages, trainSize > available {
            throw fail("train size \(trainSize) exceeds the \(available) training images available")
        }
        guard validationInterval > 0 else { throw fail("validation interval must be positive") }
        guard movingAverage >= 0, movingAverage < 1 else { throw fail("moving average must be in [0, 1)") }
        guard beta2 >= 0, beta2 < 1 else { throw fail("beta2 must be in [0, 1), got \(beta2)") }
        guard epsilon > 0, epsilon.isFinite else { throw fail("epsilon must be a positive number, got \(epsilon)") }
        guard labelSmoothing >= 0, labelSmoothing <= 1 else { throw fail("label smoothing must be in [0, 1], got \(labelSmoothing)") }
        guard ema >= 0, ema < 1 else { throw fail("ema must be in [0, 1) (0 turns it off), got \(ema)") }
        if emaWarmUp && ema == 0 { throw fail("ema_warmup needs an ema decay above 0") }
        try lookahead?.validate()
        guard checkpointInterval >= 0 else { throw fail("checkpoint interval must be >= 0 (0: only on an interrupt)") }
        let sgdLike = optimizer == .sgd || optimizer == .muon
        if nesterov && (!sgdLike || momentum == 0) { throw fail("nesterov needs the sgd or muon optimizer with momentum > 0") }
        if decoupledWeightDecay && !sgdLike {
            throw fail("decoupled weight decay is an option of the sgd and muon optimizers (adamw always decouples)")
        }
        if let rate = muonLearningRate, !(rate > 0 && rate.isFinite) { throw fail("muon learning rate must be a positive number, got \(rate)") }
        if let mu = muonMomentum, !(mu >= 0 && mu < 1) { throw fail("muon momentum must be in [0, 1), got \(mu)") }
        do { try schedule.validate(totalSteps: iterations) } catch { throw fail(error.description) }
        if let imageHeight, let imageWidth {
            try augmentation.validate(height: imageHeight, width: imageWidth)
            try testTimeAugmentation.validate(height: imageHeight, width: imageWidth)
        }
    }

    /// airbench94_muon's filter learning rate and momentum.
    public static let defaultMuonLearningRate = 0.24, defaultMuonMomentum = 0.6

    /// The optimizer these options describe, in `Float`.
    public func makeOptimizer() -> any Optimizer<Float> {
        switch optimizer {
        case .courseSGD:
            return SGD<Float>(learningRate: learningRate, momentum: momentum, weightDecay: weightDecay)
        case .sgd:
            return PyTorchSGD<Float>(learningRate: Double(learningRate), momentum: Double(momentum), nesterov: nesterov,
                                     weightDecay: Double(weightDecay), decoupledWeightDecay: decoupledWeightDecay)
        case .adamw:
            return AdamW<Float>(learningRate: Double(learningRate), beta1: Double(momentum), beta2: beta2, epsilon: epsilon,
                                weightDecay: Double(weightDecay))
        case .muon:
            return Muon<Float>(learningRate: Double(learningRate), momentum: Double(momentum), nesterov: nesterov,
                               weightDecay: Double(weightDecay), decoupledWeightDecay: decoupledWeightDecay,
                               filterLearningRate: muonLearningRate ?? Self.defaultMuonLearningRate,
                               filterMomentum: muonMomentum ?? Self.defaultMuonMomentum)
        }
    }
}

/// Everything one training run needs besides data: the dataset, the network and the options.
///
/// A preset is an experiment; so is a spec file: the JSON of `NetworkSpec` with two optional
/// keys, `"dataset": "mnist" | "cifar10" | "fashion-mnist"` and `"training": {…}` (keys as `TrainingOptions`'
/// snake_case names; missing keys take the dataset's seed defaults).
public struct Experiment: Sendable {
    /// The name shown in summaries (`mnist`, or the spec file's name).
    public var name: String
    public var dataset: DatasetKind
    public var network: NetworkSpec
    public var options: TrainingOptions

    public init(name: String, dataset: DatasetKind, network: NetworkSpec, options: TrainingOptions) {
        self.name = name
        self.dataset = dataset
        self.network = network
        self.options = options
    }
}

extension Experiment {
    /// The names of the built-in presets: the seed report's experiments, then the recipes.
    public static let presetNames = seedPresetNames + recipePresetNames

    /// The seed report's experiments (COURSE-FRAMEWORK.md's table).
    public static let seedPresetNames = ["mnist", "cifar10", "cifar10-improved"]

    /// A built-in preset (`presetNames`), or nil for another name.
    public static func preset(named name: String) -> Experiment? {
        if let spec = recipeSpecs[name] {
            // The recipes are spec files compiled in; `RecipeTests` parses every one.
            return try? Experiment(specData: Data(spec.utf8), source: name)
        }
        return seedPreset(named: name)
    }

    /// The seed report's experiments, or nil for another name.
    static func seedPreset(named name: String) -> Experiment? {
        let conv = { (c: Int, k: Int, p: Int, scale: Double) in
            LayerSpec.conv2d(outputChannels: c, kernelSize: k, stride: 1, padding: p, initScale: scale)
        }
        switch name {
        case "mnist":
            return Experiment(
                name: name, dataset: .mnist,
                network: NetworkSpec(input: [1, 28, 28], layers: [
                    conv(16, 5, 2, 1), .relu, .maxPool2d(size: 2, stride: 2),
                    conv(16, 5, 2, 1), .relu, .maxPool2d(size: 2, stride: 2),
                    .flatten, .dense(outputFeatures: 10, initScale: 1),
                ]),
                options: defaultOptions(for: .mnist))
        case "cifar10":
            return Experiment(
                name: name, dataset: .cifar10,
                network: NetworkSpec(input: [3, 32, 32], layers: [
                    conv(16, 5, 2, 0.1), .relu, .maxPool2d(size: 2, stride: 2),
                    conv(16, 5, 2, 0.1), .relu,
                    .flatten, .dense(outputFeatures: 10, initScale: 1),
                ]),
                options: defaultOptions(for: .cifar10))
        case "cifar10-improved":
            var options = defaultOptions(for: .cifar10)
            options.trainSize = 40_000
            options.iterations = 7_000
            options.momentum = 0.9
            options.weightDecay = 0.0005
            return Experiment(
                name: name, dataset: .cifar10,
                network: NetworkSpec(input: [3, 32, 32], layers: [
                    conv(16, 5, 2, 0.1), .relu, .maxPool2d(size: 2, stride: 2),
                    conv(16, 5, 2, 0.1), .relu,
                    conv(16, 3, 1, 0.1),
                    .flatten, .dense(outputFeatures: 10, initScale: 1),
                ]),
                options: options)
        default:
            return nil
        }
    }

    /// The seed's options for a dataset (used by presets and to fill a spec's missing keys).
    public static func defaultOptions(for dataset: DatasetKind) -> TrainingOptions {
        switch dataset {
        case .mnist, .fashionMNIST:
            TrainingOptions(iterations: 3000, batchSize: 16, learningRate: 0.1, momentum: 0.9, weightDecay: 0.005,
                            trainSize: 60_000, validationSize: 2000)
        case .cifar10:
            TrainingOptions(iterations: 5000, batchSize: 16, learningRate: 1e-3, momentum: 0.95, weightDecay: 0.001,
                            trainSize: 20_000, validationSize: 2000)
        case .imageFolder:
            // All the folder's training images (`train` lowers a train size above them to their
            // number for an image folder), none held out: the test split measures accuracy.
            TrainingOptions(iterations: 1000, batchSize: 16, learningRate: 0.01, momentum: 0.9, weightDecay: 0.0005,
                            trainSize: 1 << 30, validationSize: 0)
        }
    }

    /// Reads a spec file (see the type's documentation).
    /// - Parameter dataset: used when the file names none.
    public init(specFile url: URL, dataset fallback: DatasetKind? = nil) throws(SpecError) {
        let data: Data
        do { data = try readRegularFile(url, limit: 1 << 24) } catch {
            throw SpecError("\(error.path): cannot read the spec file (\(error.reason))")
        }
        try self.init(specData: data, source: url.path, dataset: fallback)
    }

    /// Reads a spec's JSON text (see the type's documentation).
    /// - Parameters:
    ///   - source: the file's path (or a preset's name), for messages and the default name.
    ///   - dataset: used when the spec names none.
    public init(specData data: Data, source: String, dataset fallback: DatasetKind? = nil) throws(SpecError) {
        let url = URL(fileURLWithPath: source)
        guard let object = try NetworkSpec.parseJSON(data, source: source) as? [String: Any] else {
            throw SpecError("\(source): the spec must be a JSON object")
        }
        func prefixed(_ error: SpecError) -> SpecError { SpecError("\(url.lastPathComponent): \(error.description)") }
        do {
            try FileFormat.experiment.check(format: try Self.optional(String.self, "format", in: object),
                                            version: try Self.optional(Int.self, "version", in: object))
        } catch { throw prefixed(error) }
        let dataset: DatasetKind
        if let name = object["dataset"] {
            guard let name = name as? String, let kind = DatasetKind(rawValue: name) else {
                throw prefixed(SpecError("\"dataset\" must be one of \(DatasetKind.nameList)"))
            }
            dataset = kind
        } else if let fallback {
            dataset = fallback
        } else {
            throw prefixed(SpecError("no \"dataset\" key and no --dataset given"))
        }
        let network: NetworkSpec
        do { network = try NetworkSpec(jsonObject: object) } catch { throw prefixed(error) }
        var options = Experiment.defaultOptions(for: dataset)
        if let training = object["training"] {
            guard let training = training as? [String: Any] else { throw prefixed(SpecError("\"training\" must be an object")) }
            var merged = (try? JSONSerialization.jsonObject(with: JSONEncoder().encode(options))) as? [String: Any] ?? [:]
            for (key, value) in training {
                // Known keys, not the encoded defaults: an optional key (lookahead) is absent from those.
                guard TrainingOptions.CodingKeys(stringValue: key) != nil else {
                    throw prefixed(SpecError("training: unknown key \"\(key)\""))
                }
                merged[key] = value
            }
            do {
                options = try JSONDecoder().decode(TrainingOptions.self, from: JSONSerialization.data(withJSONObject: merged))
            } catch let DecodingError.dataCorrupted(context) {
                let key = context.codingPath.last.map { "\"\($0.stringValue)\": " } ?? ""
                throw prefixed(SpecError("training: \(key)\(context.debugDescription)"))
            } catch let DecodingError.typeMismatch(_, context) {
                throw prefixed(SpecError("training: \"\(context.codingPath.last?.stringValue ?? "?")\" has the wrong type"))
            } catch {
                throw prefixed(SpecError("training: a value has the wrong type"))
            }
        }
        let known: Set<String> = ["format", "version", "dataset", "input", "layers", "training", "name"]
        if let unknown = Set(object.keys).subtracting(known).sorted().first {
            throw prefixed(SpecError("unknown key \"\(unknown)\""))
        }
        self.init(name: (object["name"] as? String) ?? url.deletingPathExtension().lastPathComponent,
                  dataset: dataset, network: network, options: options)
    }

    /// A key that may be missing but, when present, must hold a `T`.
    private static func optional<T>(_ type: T.Type, _ key: String, in object: [String: Any]) throws(SpecError) -> T? {
        guard let value = object[key] else { return nil }
        guard let typed = value as? T else { throw SpecError("\"\(key)\" has the wrong type") }
        return typed
    }

    /// The spec file form of this experiment (round-trips through `init(specFile:)`), with
    /// `"format": "backprop-experiment"` and `"version": 1` (`FileFormat`).
    public var jsonObject: [String: Any] {
        var object = network.jsonObject.merging(FileFormat.experiment.jsonObject) { a, _ in a }
        object["name"] = name
        object["dataset"] = dataset.rawValue
        object["training"] = (try? JSONSerialization.jsonObject(with: JSONEncoder().encode(options))) ?? [:]
        return object
    }
}
