import Backprop
import Foundation
import BackpropData

/// Test-time augmentation: a model's prediction for an image is the weighted mean of its logits
/// over several views of the image — shifted and mirrored copies, made with `Augmentation`'s rule
/// (preprocess, pad with the fill, shift, flip).
///
/// It is part of the model (saved in its description), so `evaluate`, the report and the final
/// test accuracy of `train` all use it; validation during training does not (it stays one
/// forward pass). The views, for `translate:K` and `flip` as airbench's `infer_mirror_translate`:
///
/// ```
/// logits = ½ · f(x) + ¼ · f(shift(x, −K, −K)) + ¼ · f(shift(x, +K, +K))      translate:K
/// logits = ⅓ · f(x) + ⅙ · Σ f(shift(x, ±K, 0)), f(shift(x, 0, ±K))           shift:K
/// logits = 1/9 · Σ f(shift(x, dy, dx)),  dy, dx ∈ {−K, 0, K}                  grid:K
/// f(x)   = ½ · net(x) + ½ · net(mirror(x))   with flip;   net(x) without
/// ```
///
/// ## Spelling
/// ```
/// spec  := "none" | item ("," item)*
/// item  := "flip" | ("translate" | "shift" | "grid") ":" K [":" fill]
/// fill  := "zero" | "reflect"          K: whole pixels, 1 or more (default fill: reflect for
///                                      translate, zero for shift and grid)
/// ```
/// `translate` is airbench's diagonal pair; `shift` the four one-axis moves; `grid` all eight
/// neighbouring positions with the image itself. At most one of the three.
public struct TestTimeAugmentation: Codable, Sendable, Equatable, CustomStringConvertible {
    /// Which shifted copies are averaged.
    public enum Shifts: Sendable, Equatable {
        /// airbench's pair: `(−K, −K)` and `(+K, +K)`.
        case diagonal(pixels: Int, fill: Augmentation.Fill)
        /// `(±K, 0)` and `(0, ±K)`.
        case axes(pixels: Int, fill: Augmentation.Fill)
        /// Every `(dy, dx)` in `{−K, 0, K}²` but `(0, 0)`.
        case grid(pixels: Int, fill: Augmentation.Fill)

        var pixels: Int {
            switch self { case .diagonal(let k, _), .axes(let k, _), .grid(let k, _): k }
        }
        var fill: Augmentation.Fill {
            switch self { case .diagonal(_, let f), .axes(_, let f), .grid(_, let f): f }
        }
    }

    /// Also average each view with its mirror image.
    public var flip: Bool
    /// The shifted copies, or nil for the image alone.
    public var shifts: Shifts?

    /// With the defaults, none: one forward pass per image.
    public init(flip: Bool = false, shifts: Shifts? = nil) {
        self.flip = flip
        self.shifts = shifts
    }

    /// Whether predictions are the plain network's.
    public var isIdentity: Bool { !flip && shifts == nil }

    /// The views and their weights (summing to 1), the unchanged image first.
    public var views: [(draw: Augmentation.Draw, weight: Float)] {
        var shifted: [(draw: Augmentation.Draw, weight: Float)] = [(Augmentation.Draw(), 1)]
        switch shifts {
        case nil: break
        case .diagonal(let k, _)?:
            shifted = [(Augmentation.Draw(), 0.5), (Augmentation.Draw(rowShift: -k, columnShift: -k), 0.25),
                       (Augmentation.Draw(rowShift: k, columnShift: k), 0.25)]
        case .axes(let k, _)?:
            shifted = [(Augmentation.Draw(), 1.0 / 3)]
                + [(-k, 0), (k, 0), (0, -k), (0, k)].map { (Augmentation.Draw(rowShift: $0.0, columnShift: $0.1), 1.0 / 6) }
        case .grid(let k, _)?:
            shifted = [(Augmentation.Draw(), 1.0 / 9)]
            for dy in [-k, 0, k] {
                for dx in [-k, 0, k] where dy != 0 || dx != 0 {
                    shifted.append((Augmentation.Draw(rowShift: dy, columnShift: dx), 1.0 / 9))
                }
            }
        }
        guard flip else { return shifted }
        return shifted.flatMap { view in
            [(view.draw, view.weight / 2),
             (Augmentation.Draw(flip: true, rowShift: view.draw.rowShift, columnShift: view.draw.columnShift), view.weight / 2)]
        }
    }

    /// The fill of the shifted views (zero when there are none).
    var fill: Augmentation.Fill { shifts?.fill ?? .zero }

    // MARK: Spelling

    /// Parses the spelling above, e.g. `flip,translate:1`.
    ///
    /// - Throws: `SpecError` with a one-line message naming the bad item.
    public init(parsing text: String) throws(SpecError) {
        self.init()
        func fail(_ reason: String) -> SpecError { SpecError("bad test-time augmentation \"\(text)\": \(reason)") }
        let grammar = "expected none, or flip, translate:K[:zero|reflect], shift:K[:zero|reflect], grid:K[:zero|reflect] separated by commas"
        let items = text.split(separator: ",", omittingEmptySubsequences: false)
        if items == ["none"] { return }
        for item in items {
            let parts = item.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            switch parts[0] {
            case "flip":
                guard parts.count == 1 else { throw fail("flip takes no value, got \"\(item)\"") }
                guard !flip else { throw fail("flip is given twice") }
                flip = true
            case "translate", "shift", "grid":
                guard parts.count == 2 || parts.count == 3 else {
                    throw fail("\(parts[0]) needs pixels and an optional fill, as \(parts[0]):1 or \(parts[0]):1:reflect, got \"\(item)\"")
                }
                guard let pixels = Int(parts[1]), pixels >= 1, pixels <= 1 << 10 else {
                    throw fail("\(parts[0]) needs a whole number of pixels from 1 to 1024, got \"\(parts[1])\"")
                }
                var fill: Augmentation.Fill = parts[0] == "translate" ? .reflect : .zero
                if parts.count == 3 {
                    guard let chosen = Augmentation.Fill(rawValue: parts[2]) else {
                        throw fail("the fill must be zero or reflect, got \"\(parts[2])\"")
                    }
                    fill = chosen
                }
                guard shifts == nil else { throw fail("give one of translate, shift and grid, once") }
                switch parts[0] {
                case "translate": shifts = .diagonal(pixels: pixels, fill: fill)
                case "shift": shifts = .axes(pixels: pixels, fill: fill)
                default: shifts = .grid(pixels: pixels, fill: fill)
                }
            case "":
                throw fail("empty item; \(grammar)")
            case "none":
                throw fail("none cannot be combined with other items")
            default:
                throw fail("unknown item \"\(item)\"; \(grammar)")
            }
        }
    }

    /// The canonical spelling, fill always written: `none`, `flip,translate:1:reflect`, ….
    /// `TestTimeAugmentation(parsing: t.description) == t`.
    public var description: String {
        var items: [String] = []
        if flip { items.append("flip") }
        switch shifts {
        case nil: break
        case .diagonal(let k, let fill)?: items.append("translate:\(k):\(fill.rawValue)")
        case .axes(let k, let fill)?: items.append("shift:\(k):\(fill.rawValue)")
        case .grid(let k, let fill)?: items.append("grid:\(k):\(fill.rawValue)")
        }
        return items.isEmpty ? "none" : items.joined(separator: ",")
    }

    /// Reads the spelling from a JSON string.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        do { try self.init(parsing: text) } catch {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: error.description)
        }
    }

    /// Writes the canonical spelling as a JSON string.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    /// Checks the shift against the image size (smaller than its height and width, as training's).
    public func validate(height: Int, width: Int) throws(SpecError) {
        if let shifts, shifts.pixels >= min(height, width) {
            throw SpecError("test-time augmentation \(description): a shift of \(shifts.pixels) px must be smaller than the \(height)x\(width) images")
        }
    }
}

extension Predictions {
    init(classes: [Int], confidences: [Float]) {
        self.classes = classes
        self.confidences = confidences
    }

    /// Classifies `images` (preprocessed by `preprocessing`) from the weighted mean of the
    /// network's logits over `augmentation`'s views, in batches; with no augmentation, exactly
    /// `init(network:inputs:)` on the preprocessed images.
    public init(network: Network<Float>, images: LabeledImages, preprocessing: Preprocessing,
                augmentation: TestTimeAugmentation, batchSize: Int = defaultBatchSize) {
        guard !augmentation.isIdentity else {
            self.init(network: network, inputs: preprocessing.apply(to: images), batchSize: batchSize)
            return
        }
        let batchSize = Self.batchSize(batchSize, for: network)
        let views = augmentation.views
        let renderer = ExampleRenderer(channels: images.channels, height: images.height, width: images.width,
                                       scale: preprocessing.scale,
                                       means: ExampleRenderer.channelMeans(preprocessing, channels: images.channels),
                                       fill: augmentation.fill)
        let n = images.count, exampleSize = images.bytesPerImage
        self.init(classes: [], confidences: [])
        classes.reserveCapacity(n)
        confidences.reserveCapacity(n)
        var batch = Tensor<Float>(shape: [0])
        var sum: [Float] = []
        var start = 0
        while start < n {
            let end = min(start + batchSize, n), rows = end - start
            batch.resize(to: [rows, images.channels, images.height, images.width])
            var k = 0
            for (view, weight) in views {
                images.pixels.withUnsafeBufferPointer { pixels in
                    batch.scalars.withUnsafeMutableBufferPointer { out in
                        for row in 0..<rows {
                            renderer.render(pixels.baseAddress! + (start + row) * exampleSize,
                                            into: out.baseAddress! + row * exampleSize, draw: view)
                        }
                    }
                }
                let logits = network.forward(batch)
                if k == 0 {
                    k = logits.count / rows
                    sum = [Float](repeating: 0, count: logits.count)
                }
                for i in 0..<sum.count { sum[i] += weight * logits.scalars[i] }
            }
            sum.withUnsafeBufferPointer { scores in
                for row in 0..<rows { append(scores: scores.baseAddress! + row * k, count: k) }
            }
            start = end
        }
    }
}
