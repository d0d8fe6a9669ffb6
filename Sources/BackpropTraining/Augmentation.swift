import Backprop
import BackpropData
import Foundation

/// Random changes made to each training image as its batch is built: a shift (random crop of a
/// padded image, or random translation) and a horizontal flip.
///
/// Dimension letters as in `LabeledImages`: C channels, H rows, W columns; images are CHW.
///
/// ## The rule
/// The batch source writes each training example as
///
/// ```
/// out[c, y, x] = v(c, y + dy, x′ + dx),   x′ = flip ? W − 1 − x : x
/// v(c, i, j)   = byte[c, i, j] · scale − mean[c]       inside the image (`Preprocessing`)
///              = 0                                      outside, fill .zero
///              = v(c, r(i, H), r(j, W))                 outside, fill .reflect
/// r(i, n)      = −i if i < 0;  2(n − 1) − i if i ≥ n;  i otherwise
/// ```
///
/// That is: preprocess, pad, shift (crop), then flip. Zero padding pads the *normalised* image
/// with 0 — the mean pixel — as PyTorch recipes that pad the normalised tensor do; reflect
/// padding mirrors about the edge pixel without repeating it (PyTorch's `"reflect"`: the row above
/// row 0 is row 1).
///
/// - **crop:P** is `RandomCrop(H×W, padding: P, padding_mode: …)`: pad every side by P, then cut an
///   H×W window whose top-left corner `(i, j)` is uniform in `[0, 2P]²`. The window's pixel `(y, x)`
///   is the input's `(y + i − P, x + j − P)`, so `dy = i − P`, `dx = j − P`.
/// - **translate:K** moves the image by `dy, dx` uniform in `[−K, K]` each — the same transform and
///   the same random draws as crop:K (airbench's "translate" is this crop of a reflect-padded image).
///   The two spellings differ only in their default fill: crop pads with zeros (PyTorch's
///   `RandomCrop` default), translate reflects (airbench's).
/// - **flip** flips each example with probability 1/2, drawn afresh every epoch.
/// - **altflip**, the alternating flip of the fast CIFAR-10 recipes (airbench): in epoch 0 each
///   example is flipped with probability 1/2 (about half the images), and in every later epoch
///   exactly the examples that were *not* flipped in the previous epoch are flipped:
///   `flip(example, epoch) = base(example) XOR (epoch is odd)`, with `base` one random bit per
///   example that does not depend on the epoch. So every image is seen both ways in every pair of
///   consecutive epochs.
///
/// ## Randomness
/// Every random choice is a hash of `(seed, epoch, example)` (see `draw(seed:epoch:example:)`),
/// not a draw from a generator shared between threads: an example's augmentation does not depend
/// on the batch it lands in, on which thread prepares it, or on when. `epoch` is the pass over the
/// training split the example's occurrence belongs to (`position / n` in the stream of examples),
/// `example` its index in the `LabeledImages` it is read from.
///
/// ## Spelling
/// The CLI string (`init(parsing:)`), comma-separated items, at most one flip and one shift:
///
/// ```
/// spec  := "none" | item ("," item)*
/// item  := "flip" | "altflip" | "crop:" P [":" fill] | "translate:" K [":" fill]
/// fill  := "zero" | "reflect"          P, K: whole numbers of pixels, 1 or more
/// ```
///
/// e.g. `flip`, `altflip,translate:2`, `crop:4:reflect,flip`. In a run's JSON it is
/// `{"flip": "alternating", "shift": {"translate": {"pixels": 2, "fill": "reflect"}}}`.
public struct Augmentation: Codable, Sendable, Equatable, CustomStringConvertible {
    /// Which horizontal flip, if any.
    public enum Flip: String, Codable, Sendable, CaseIterable {
        /// Never flip.
        case none
        /// Flip with probability 1/2, drawn per example and epoch.
        case random
        /// airbench's alternating flip: `base(example) XOR (epoch is odd)`.
        case alternating
    }

    /// What a shift brings in from outside the image.
    public enum Fill: String, Codable, Sendable, CaseIterable {
        /// 0 in the preprocessed image (the mean pixel).
        case zero
        /// The image mirrored about its edge pixels (PyTorch's `"reflect"`).
        case reflect
    }

    /// A random shift of the image by `dy, dx` uniform in `[−pixels, pixels]`.
    public enum Shift: Codable, Sendable, Equatable {
        /// PyTorch's `RandomCrop(H×W, padding: padding)` with `padding_mode` `fill`.
        case crop(padding: Int, fill: Fill)
        /// A translation by up to `pixels` in each direction (the same transform as crop).
        case translate(pixels: Int, fill: Fill)

        /// The largest shift in each direction, in pixels.
        public var pixels: Int {
            switch self {
            case .crop(let padding, _): padding
            case .translate(let pixels, _): pixels
            }
        }

        /// What the shift brings in from outside the image.
        public var fill: Fill {
            switch self {
            case .crop(_, let fill), .translate(_, let fill): fill
            }
        }
    }

    /// The flip rule.
    public var flip: Flip
    /// The shift, or nil for none.
    public var shift: Shift?

    /// Creates an augmentation; with the defaults, none (images are only preprocessed).
    public init(flip: Flip = .none, shift: Shift? = nil) {
        self.flip = flip
        self.shift = shift
    }

    /// Whether this changes no image.
    public var isIdentity: Bool { flip == .none && shift == nil }

    // MARK: Spelling

    /// Parses the CLI spelling (see the type's documentation), e.g. `altflip,translate:2`.
    ///
    /// - Throws: `SpecError` with a one-line message naming the bad item.
    public init(parsing text: String) throws(SpecError) {
        func fail(_ reason: String) -> SpecError { SpecError("bad augmentation \"\(text)\": \(reason)") }
        let grammar = "expected none, or flip, altflip, crop:P[:zero|reflect], translate:K[:zero|reflect] separated by commas"
        self.init()
        let items = text.split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        if items == ["none"] { return }
        for item in items {
            let parts = item.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            switch parts[0] {
            case "":
                throw fail("empty item; \(grammar)")
            case "none":
                throw fail("none cannot be combined with other items")
            case "flip", "altflip":
                guard parts.count == 1 else { throw fail("\(parts[0]) takes no value, got \"\(item)\"") }
                guard flip == .none else { throw fail("give one of flip and altflip, once") }
                flip = parts[0] == "flip" ? .random : .alternating
            case "crop", "translate":
                guard parts.count == 2 || parts.count == 3 else {
                    throw fail("\(parts[0]) needs pixels and an optional fill, as \(parts[0]):4 or \(parts[0]):4:reflect, got \"\(item)\"")
                }
                guard let pixels = Int(parts[1]), pixels >= 1 else {
                    throw fail("\(parts[0]) needs a whole number of pixels, 1 or more, got \"\(parts[1])\"")
                }
                let fill: Fill
                if parts.count == 3 {
                    guard let named = Fill(rawValue: parts[2]) else {
                        throw fail("the fill must be zero or reflect, got \"\(parts[2])\"")
                    }
                    fill = named
                } else {
                    fill = parts[0] == "crop" ? .zero : .reflect
                }
                guard shift == nil else { throw fail("give one of crop and translate, once (they are the same shift)") }
                shift = parts[0] == "crop" ? .crop(padding: pixels, fill: fill) : .translate(pixels: pixels, fill: fill)
            default:
                throw fail("unknown item \"\(item)\"; \(grammar)")
            }
        }
    }

    /// The canonical CLI spelling, fill always written: `none`, `altflip,translate:2:reflect`, ….
    /// `Augmentation(parsing: a.description) == a`.
    public var description: String {
        var items: [String] = []
        switch flip {
        case .none: break
        case .random: items.append("flip")
        case .alternating: items.append("altflip")
        }
        switch shift {
        case nil: break
        case .crop(let padding, let fill)?: items.append("crop:\(padding):\(fill.rawValue)")
        case .translate(let pixels, let fill)?: items.append("translate:\(pixels):\(fill.rawValue)")
        }
        return items.isEmpty ? "none" : items.joined(separator: ",")
    }

    /// Checks the shift against the image size: it must be smaller than the image's height and
    /// width (PyTorch's rule for reflect padding, applied to zero padding too: a larger shift can
    /// leave an image blank).
    ///
    /// - Throws: `SpecError` naming the shift and the image size.
    public func validate(height: Int, width: Int) throws(SpecError) {
        if let shift, shift.pixels >= min(height, width) {
            throw SpecError("augmentation \(description): a shift of \(shift.pixels) px must be smaller than the \(height)x\(width) images")
        }
    }

    // MARK: Codable

    enum CodingKeys: String, CodingKey { case flip, shift }

    /// Reads `{"flip": …, "shift": …}`; both keys may be missing (no flip, no shift).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        flip = try container.decodeIfPresent(Flip.self, forKey: .flip) ?? .none
        shift = try container.decodeIfPresent(Shift.self, forKey: .shift)
        if let shift, shift.pixels < 1 {
            throw DecodingError.dataCorruptedError(forKey: .shift, in: container,
                                                   debugDescription: "a shift needs 1 pixel or more, got \(shift.pixels)")
        }
    }

    // MARK: Random choices

    /// The random choices for one example in one epoch.
    public struct Draw: Sendable, Equatable {
        /// Whether the image is flipped left–right (after the shift).
        public var flip: Bool
        /// `dy`: output row `y` reads input row `y + rowShift`.
        public var rowShift: Int
        /// `dx`: output column `x` reads input column `x′ + columnShift`.
        public var columnShift: Int

        /// A draw; with the defaults, one that changes nothing.
        public init(flip: Bool = false, rowShift: Int = 0, columnShift: Int = 0) {
            self.flip = flip
            self.rowShift = rowShift
            self.columnShift = columnShift
        }

        /// Whether this draw leaves an image as it is.
        public var isIdentity: Bool { !flip && rowShift == 0 && columnShift == 0 }
    }

    /// The flip and shift of `example` in `epoch` for a run seeded with `seed`: a pure function of
    /// its arguments.
    ///
    /// Each choice takes its own 64 hashed bits `h = hash(seed, stream, epoch, example)` (SplitMix64's
    /// mixer, chained). A flip is the top bit of `h`; the alternating flip's base bit hashes epoch 0
    /// in a stream of its own, then `XOR (epoch is odd)`. A shift is `⌊h · (2P + 1) / 2⁶⁴⌋ − P`
    /// (bias below 2⁻⁵⁸ for any P that fits an image).
    ///
    /// - Parameters:
    ///   - seed: the run's seed (`TrainingOptions.seed`).
    ///   - epoch: the pass over the training split, from 0.
    ///   - example: the image's index in the `LabeledImages` it is read from.
    public func draw(seed: UInt64, epoch: Int, example: Int) -> Draw {
        var result = Draw()
        switch flip {
        case .none: break
        case .random:
            result.flip = Self.bits(seed, .flip, epoch, example) >> 63 == 1
        case .alternating:
            result.flip = (Self.bits(seed, .alternatingFlipBase, 0, example) >> 63 == 1) != (epoch & 1 == 1)
        }
        if let shift {
            let p = shift.pixels, choices = UInt64(2 * p + 1)
            result.rowShift = Int(Self.bits(seed, .rowShift, epoch, example).multipliedFullWidth(by: choices).high) - p
            result.columnShift = Int(Self.bits(seed, .columnShift, epoch, example).multipliedFullWidth(by: choices).high) - p
        }
        return result
    }

    /// The independent random streams of `draw`.
    private enum Stream: UInt64 {
        case flip = 1, alternatingFlipBase, rowShift, columnShift
    }

    /// `hash(seed, stream, epoch, example)`: SplitMix64 steps over the four values.
    private static func bits(_ seed: UInt64, _ stream: Stream, _ epoch: Int, _ example: Int) -> UInt64 {
        var h = mix(seed ^ 0x4155_474D_454E_5421)  // "AUGMENT!": apart from the run's other streams
        h = mix(h ^ stream.rawValue)
        h = mix(h ^ UInt64(bitPattern: Int64(epoch)))
        return mix(h ^ UInt64(bitPattern: Int64(example)))
    }

    /// One SplitMix64 step: add the golden-ratio increment, then the bijective finaliser.
    private static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    // MARK: One image

    /// The network input of image `index` of `images`, preprocessed and then shifted and flipped
    /// by `draw` with this augmentation's fill (the rule above): C x H x W floats, CHW.
    ///
    /// The batch source writes exactly these values into its batches; this allocating form is for
    /// tests and figures.
    public func apply(_ draw: Draw, to images: LabeledImages, index: Int, preprocessing: Preprocessing) -> [Float] {
        let means = ExampleRenderer.channelMeans(preprocessing, channels: images.channels)
        var out = [Float](repeating: 0, count: images.bytesPerImage)
        let renderer = ExampleRenderer(channels: images.channels, height: images.height, width: images.width,
                                       scale: preprocessing.scale, means: means, fill: shift?.fill ?? .zero)
        images.pixels(ofImage: index).withUnsafeBufferPointer { source in
            out.withUnsafeMutableBufferPointer { destination in
                renderer.render(source.baseAddress!, into: destination.baseAddress!, draw: draw)
            }
        }
        return out
    }
}

// MARK: - The kernel

/// Writes one example: preprocess (`byte · scale − mean[c]`), shift, flip — the rule in
/// `Augmentation`'s documentation, in one pass over the output.
struct ExampleRenderer: Sendable {
    let channels: Int, height: Int, width: Int
    let scale: Float
    /// One mean per channel (`Preprocessing.mean` repeated when it holds one value).
    let means: [Float]
    let fill: Augmentation.Fill

    /// `Preprocessing.mean` as one value per channel, the way `Preprocessing.apply` reads it.
    static func channelMeans(_ preprocessing: Preprocessing, channels: Int) -> [Float] {
        precondition(preprocessing.mean.count == channels || preprocessing.mean.count == 1,
                     "Preprocessing: \(preprocessing.mean.count) means for \(channels) channels")
        return (0..<channels).map { preprocessing.mean.count == channels ? preprocessing.mean[$0] : preprocessing.mean[0] }
    }

    /// The reflected index of `i` in `0..<n` (PyTorch's `"reflect"`; valid for `−n < i < 2n − 1`).
    @inline(__always)
    static func reflect(_ i: Int, _ n: Int) -> Int {
        i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i)
    }

    /// Writes C x H x W floats (CHW) at `destination` from the C x H x W bytes at `source`.
    func render(_ source: UnsafePointer<UInt8>, into destination: UnsafeMutablePointer<Float>, draw: Augmentation.Draw) {
        let planeSize = height * width
        for c in 0..<channels {
            let m = means[c]
            let plane = source + c * planeSize, out = destination + c * planeSize
            if draw.isIdentity {
                // Exactly `Preprocessing.apply`'s expression, so un-augmented batches are bit-identical.
                for i in 0..<planeSize { out[i] = Float(plane[i]) * scale - m }
                continue
            }
            for y in 0..<height {
                var sy = y + draw.rowShift
                let row = out + y * width
                if sy < 0 || sy >= height {
                    if fill == .zero {
                        row.update(repeating: 0, count: width)
                        continue
                    }
                    sy = Self.reflect(sy, height)
                }
                let input = plane + sy * width
                // The shifted row: column x reads input column x + dx. The columns where that lies
                // inside the row take a plain loop the compiler vectorises; the few at the edges
                // are filled one by one.
                let dx = draw.columnShift
                let first = min(width, max(0, -dx)), end = max(first, min(width, width - dx))
                let source = input + dx
                for x in first ..< end { row[x] = Float(source[x]) * scale - m }
                func edge(_ x: Int) -> Float {
                    fill == .zero ? 0 : Float(input[Self.reflect(x + dx, width)]) * scale - m
                }
                for x in 0 ..< first { row[x] = edge(x) }
                for x in end ..< width { row[x] = edge(x) }
                if draw.flip {
                    // The flip comes after the shift: mirror the shifted row.
                    var mirrored = UnsafeMutableBufferPointer(start: row, count: width)
                    mirrored.reverse()
                }
            }
        }
    }
}
