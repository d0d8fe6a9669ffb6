import Backprop
import BackpropData
import Foundation

/// How an image file becomes a model's input: the model's own preprocessing, preceded by what an
/// arbitrary picture needs to look like the training images.
///
/// In order:
/// 1. convert to the model's channels (RGB → gray by luma, gray → RGB by copying);
/// 2. invert (`255 − v`) when asked, or — `.automatic` — when the model was trained on light
///    figures on a dark background (MNIST, Fashion-MNIST) and the image's border (its outermost
///    ring of pixels) is light, with a mean above 127.5: a dark digit drawn on white paper becomes
///    a light digit on black, as MNIST's are. CIFAR-10 models are never inverted automatically;
/// 3. with `framesDigit`, frame the ink as MNIST framed its digits (`DecodedImage.framedAsDigit`:
///    the ink's bounding box scaled into a box 20/28 of the input's side, centred by mass);
///    otherwise resize to the input's height and width (bilinear, antialiased; the aspect ratio
///    is not kept);
/// 4. the model's saved preprocessing, `x = byte · scale − mean[c]` (`Preprocessing.apply`, the
///    code `evaluate` uses), so an image already in the training format is classified exactly
///    as `evaluate` classifies it.
public struct ImagePreparation: Sendable, Equatable {
    /// Whether to invert the image.
    public enum Inversion: String, Sendable, CaseIterable {
        /// Invert a light-background image for a model trained on dark backgrounds.
        case automatic = "auto"
        /// Always invert.
        case always = "yes"
        /// Never invert.
        case never = "no"
    }

    /// Whether to invert.
    public var inversion: Inversion
    /// Frame the ink as MNIST's digits (single-channel, square inputs only).
    public var framesDigit: Bool

    /// The border mean above which `.automatic` inverts.
    public static let lightBorderThreshold = 127.5

    public init(inversion: Inversion = .automatic, framesDigit: Bool = false) {
        self.inversion = inversion
        self.framesDigit = framesDigit
    }

    /// An image ready for the model, and what was done to it.
    public struct Prepared: Sendable {
        /// C x H x W bytes (CHW) in the model's input shape, before the model's preprocessing.
        public var pixels: [UInt8]
        /// Whether the image was inverted.
        public var inverted: Bool
        /// One line per step, for people (`predict --verbose`).
        public var steps: [String]
    }

    /// A one-line reason why an image cannot be prepared for a model.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// Brings `image` into `model`'s input format (see the type's documentation).
    /// - Throws: `Failure` when digit framing is asked of a model it does not fit, or the image
    ///   has no ink to frame.
    public func prepare(_ image: DecodedImage, for model: ModelArchive) throws(Failure) -> Prepared {
        let shape = model.spec.input
        guard shape.count == 3 else { throw Failure(description: "the model's input \(shape) is not channels x height x width") }
        let (channels, height, width) = (shape[0], shape[1], shape[2])
        guard channels == 1 || channels == 3 else {
            throw Failure(description: "the model takes \(channels)-channel images; only gray and RGB images can be fed to it")
        }
        var steps = ["decoded: \(image.source.isEmpty ? "image" : image.source), \(image.width)x\(image.height)"]
        var current = image
        if current.channels != channels {
            current = current.converted(toChannels: channels)
            steps.append(channels == 1 ? "channels: RGB to gray, L = (299 R + 587 G + 114 B) / 1000"
                                       : "channels: gray to RGB, the gray value in R, G and B")
        }
        let inverted: Bool
        switch inversion {
        case .always:
            inverted = true
            steps.append("inverted: 255 - v (--invert yes)")
        case .never:
            inverted = false
        case .automatic:
            let border = current.borderMean
            let light = model.dataset.hasDarkBackground && border > Self.lightBorderThreshold
            inverted = light
            if light {
                steps.append(String(format: "inverted: 255 - v (auto: the border's mean brightness %.1f > %.1f is a light background; %@ images are light on dark)",
                                    border, Self.lightBorderThreshold, model.dataset.displayName))
            } else if model.dataset.hasDarkBackground {
                steps.append(String(format: "not inverted (auto: the border's mean brightness %.1f <= %.1f is already dark)", border, Self.lightBorderThreshold))
            }
        }
        if inverted { current = current.inverted() }
        if framesDigit {
            guard channels == 1, height == width else {
                throw Failure(description: "--center-digit needs a model of gray, square images (MNIST-like); this one takes \(channels)x\(height)x\(width)")
            }
            let box = max(1, Int((Double(height) * 20 / 28).rounded()))
            guard let framed = current.framedAsDigit(box: box, side: height) else {
                throw Failure(description: "no ink to frame: every pixel is black after inversion")
            }
            current = framed
            steps.append("framed as an MNIST digit: the ink's bounding box scaled to fit \(box)x\(box), centred by mass in \(width)x\(height)")
        } else if current.width != width || current.height != height {
            steps.append("resized: \(current.width)x\(current.height) to \(width)x\(height) (bilinear, antialiased"
                         + (current.width * height == current.height * width ? ")" : "; the aspect ratio is not kept)"))
            current = current.resized(width: width, height: height)
        }
        let pre = model.preprocessing
        let means = pre.mean.map { String(format: "%g", $0) }.joined(separator: ", ")
        steps.append("normalized: x = byte * \(String(format: "%g", pre.scale)) - mean" + (pre.mean.count == 1 ? " (\(means))" : " per channel (\(means))"))
        return Prepared(pixels: current.planarPixels, inverted: inverted, steps: steps)
    }
}

extension ModelArchive {
    /// The softmax probabilities of every class for each image of `images`, preprocessed with the
    /// model's preprocessing: `images.count` rows of `classNames.count` values.
    ///
    /// `p_k = exp(z_k − max z) / Σ_j exp(z_j − max z)` of the logits `z`, in `Double`.
    public func classProbabilities(_ images: LabeledImages, batchSize: Int = Predictions.defaultBatchSize) -> [[Double]] {
        let inputs = preprocessing.apply(to: images)
        let n = images.count, batchSize = Predictions.batchSize(batchSize, for: network)
        let exampleSize = images.bytesPerImage
        var result: [[Double]] = []
        result.reserveCapacity(n)
        var start = 0
        while start < n {
            let end = min(start + batchSize, n)
            let batch = Tensor<Float>(shape: [end - start] + inputs.shape.dropFirst(),
                                      scalars: Array(inputs.scalars[start * exampleSize ..< end * exampleSize]))
            let logits = network.forward(batch)
            let k = logits.count / (end - start)
            for row in 0..<(end - start) {
                let z = logits.scalars[row * k ..< (row + 1) * k].map(Double.init)
                let top = z.max() ?? 0
                let e = z.map { exp($0 - top) }
                let sum = e.reduce(0, +)
                result.append(e.map { $0 / sum })
            }
            start = end
        }
        return result
    }
}
