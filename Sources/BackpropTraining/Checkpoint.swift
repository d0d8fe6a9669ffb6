import Backprop
import Foundation

/// Everything needed to continue a run exactly where it stopped, as one safetensors file
/// (`checkpoint.safetensors` in the run folder, written atomically).
///
/// ```
/// model.<path>                   every parameter and buffer (e.g. model.3.weight, model.1.running_mean)
/// optimizer.<i>.<name>           the optimizer's per-parameter state (i: index in the parameter list)
/// ema.parameter.<i>, ema.buffer.<i>   the moving average of the weights, when the run keeps one
/// lookahead.parameter.<i>, lookahead.buffer.<i>   Lookahead's slow weights, when the run uses it
///                                      (buffer indices count the floating-point buffers only)
/// __metadata__ "backprop.checkpoint": {"format", "version", "progress", "optimizer_scalars",
///                                      "ema_updates", "options"}
/// ```
/// The batch order, augmentation and dropout masks are functions of the seed and the iteration,
/// so they need no state here; `progress` holds the iteration, the smoothed metrics, the
/// training time and the best validation accuracy.
public struct Checkpoint {
    /// The file name inside a run folder.
    public static let fileName = "checkpoint.safetensors"

    /// A checkpoint that cannot be used (one line).
    public struct LoadError: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    public var progress: TrainingProgress
    public var options: TrainingOptions
    var tensors: [String: Tensor<Float>]
    var optimizerScalars: [String: Double]
    var averageUpdates: Int?

    /// Captures `trainer`'s state (after an iteration, outside `run`'s validation).
    public init(of trainer: Trainer) {
        progress = trainer.progress
        options = trainer.options
        var tensors: [String: Tensor<Float>] = [:]
        for (name, p) in trainer.network.namedParameters { tensors["model.\(name)"] = p.value }
        for (name, b) in trainer.network.namedBuffers { tensors["model.\(name)"] = b.value }
        let state = trainer.optimizer.state
        for entry in state.tensors { tensors["optimizer.\(entry.parameterIndex).\(entry.name)"] = entry.tensor }
        optimizerScalars = state.scalars
        if let average = trainer.average {
            for (i, t) in average.parameterAverages.enumerated() { tensors["ema.parameter.\(i)"] = t }
            for (i, t) in average.bufferAverages.enumerated() { tensors["ema.buffer.\(i)"] = t }
            averageUpdates = average.updateCount
        }
        if let lookahead = trainer.lookahead {
            for (i, t) in lookahead.slowParameters.enumerated() { tensors["lookahead.parameter.\(i)"] = t }
            for (i, t) in lookahead.slowBuffers.enumerated() { tensors["lookahead.buffer.\(i)"] = t }
        }
        self.tensors = tensors
    }

    /// Writes the checkpoint into `folder` atomically.
    public func save(to folder: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let meta: [String: Any] = [
            "format": "backprop-checkpoint", "version": 1,
            "progress": try JSONSerialization.jsonObject(with: encoder.encode(progress)),
            "options": try JSONSerialization.jsonObject(with: encoder.encode(options)),
            "optimizer_scalars": optimizerScalars,
            "ema_updates": averageUpdates.map { $0 as Any } ?? NSNull(),
        ]
        let text = String(decoding: try JSONSerialization.data(withJSONObject: meta, options: [.sortedKeys]), as: UTF8.self)
        let ordered = tensors.keys.sorted().map { ($0, tensors[$0]!) }
        let integers = Set(tensors.keys.filter { $0.hasSuffix("num_batches_tracked") })
        let data = try Safetensors.encode(ordered, integers: integers, metadata: ["backprop.checkpoint": text])
        try writeAtomically(data, to: folder.appendingPathComponent(Self.fileName))
    }

    /// Reads the checkpoint of a run folder.
    public static func load(from folder: URL) throws(LoadError) -> Checkpoint {
        let file = folder.appendingPathComponent(fileName)
        func fail(_ message: String) -> LoadError { LoadError(description: "\(file.path): \(message)") }
        guard FileManager.default.fileExists(atPath: file.path) else { throw fail("no checkpoint here (the run wrote none)") }
        let decoded: (tensors: [String: Tensor<Float>], metadata: [String: String])
        do {
            let weights = try Safetensors.File(url: file)
            var tensors: [String: Tensor<Float>] = [:]
            for entry in weights.header.entries { tensors[entry.name] = try weights.tensor(entry) }
            decoded = (tensors, weights.header.metadata)
        } catch let error as FileError {
            throw LoadError(description: error.description)
        } catch {
            throw fail(String(describing: error))
        }
        guard let text = decoded.metadata["backprop.checkpoint"],
              let meta = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
              meta["format"] as? String == "backprop-checkpoint", meta["version"] as? Int == 1,
              let progressObject = meta["progress"], let optionsObject = meta["options"],
              let scalars = meta["optimizer_scalars"] as? [String: Double] else {
            throw fail("not a Backprop checkpoint (no backprop.checkpoint metadata of version 1)")
        }
        let progress: TrainingProgress, options: TrainingOptions
        do {
            progress = try JSONDecoder().decode(TrainingProgress.self, from: JSONSerialization.data(withJSONObject: progressObject))
            options = try JSONDecoder().decode(TrainingOptions.self, from: JSONSerialization.data(withJSONObject: optionsObject))
        } catch {
            throw fail("the checkpoint's progress or options cannot be read")
        }
        return Checkpoint(progress: progress, options: options, tensors: decoded.tensors, optimizerScalars: scalars,
                          averageUpdates: meta["ema_updates"] as? Int)
    }

    private init(progress: TrainingProgress, options: TrainingOptions, tensors: [String: Tensor<Float>],
                 optimizerScalars: [String: Double], averageUpdates: Int?) {
        self.progress = progress
        self.options = options
        self.tensors = tensors
        self.optimizerScalars = optimizerScalars
        self.averageUpdates = averageUpdates
    }

    /// Puts the saved state into `trainer` (built from the same experiment): weights, buffers,
    /// optimizer, moving average, Lookahead's slow weights and progress.
    /// - Throws: `LoadError` when a tensor is missing or has another shape, or the state does not
    ///   fit the trainer's optimizer or moving average. The weights are replaced last, once
    ///   everything else fitted; the optimizer or average may hold the checkpoint's state after a
    ///   failure, so discard the trainer then.
    public func restore(into trainer: Trainer) throws(LoadError) {
        func fail(_ message: String) -> LoadError { LoadError(description: "checkpoint: \(message)") }
        guard progress.iteration >= 0, progress.iteration <= trainer.options.iterations else {
            throw fail("it stopped at iteration \(progress.iteration), outside this run's \(trainer.options.iterations)")
        }
        func take(_ name: String, shape: [Int]) throws(LoadError) -> Tensor<Float> {
            guard let t = tensors[name] else { throw fail("tensor \(name) is missing") }
            guard t.shape == shape else { throw fail("tensor \(name) has shape \(t.shape), the network needs \(shape)") }
            return t
        }
        let network = trainer.network
        var parameterValues: [Tensor<Float>] = [], bufferValues: [Tensor<Float>] = []
        for (name, p) in network.namedParameters { parameterValues.append(try take("model.\(name)", shape: p.value.shape)) }
        for (name, b) in network.namedBuffers { bufferValues.append(try take("model.\(name)", shape: b.value.shape)) }
        var entries: [OptimizerState<Float>.Entry] = []
        for (name, tensor) in tensors.sorted(by: { $0.key < $1.key }) where name.hasPrefix("optimizer.") {
            let parts = name.split(separator: ".", maxSplits: 2).map(String.init)
            guard parts.count == 3, let index = Int(parts[1]) else { throw fail("tensor \(name) is not named optimizer.<index>.<state>") }
            entries.append(.init(parameterIndex: index, name: parts[2], tensor: tensor))
        }
        do {
            try trainer.optimizer.restoreState(OptimizerState(tensors: entries, scalars: optimizerScalars), parameters: network.parameters)
        } catch {
            throw fail("the optimizer's state does not fit: \(error.description)")
        }
        if let average = trainer.average {
            guard let updates = averageUpdates else { throw fail("the run keeps a moving average but the checkpoint has none") }
            var parameterAverages: [Tensor<Float>] = [], bufferAverages: [Tensor<Float>] = []
            for (i, p) in network.parameters.enumerated() { parameterAverages.append(try take("ema.parameter.\(i)", shape: p.value.shape)) }
            for (i, (_, b)) in network.namedBuffers.enumerated() { bufferAverages.append(try take("ema.buffer.\(i)", shape: b.value.shape)) }
            do { try average.restoreState(parameterAverages: parameterAverages, bufferAverages: bufferAverages, updateCount: updates) } catch {
                throw fail(error.description)
            }
        }
        if let lookahead = trainer.lookahead {
            var slowParameters: [Tensor<Float>] = [], slowBuffers: [Tensor<Float>] = []
            for (i, p) in network.parameters.enumerated() { slowParameters.append(try take("lookahead.parameter.\(i)", shape: p.value.shape)) }
            for (i, b) in lookahead.buffers.enumerated() { slowBuffers.append(try take("lookahead.buffer.\(i)", shape: b.value.shape)) }
            do { try lookahead.restoreState(slowParameters: slowParameters, slowBuffers: slowBuffers) } catch {
                throw fail("Lookahead: \(error.description)")
            }
        }
        for (p, value) in zip(network.parameters, parameterValues) { p.value = value }
        for ((_, b), value) in zip(network.namedBuffers, bufferValues) { b.value = value }
        trainer.resume(at: progress)
    }
}
