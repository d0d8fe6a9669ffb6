import Foundation

// What is done to a decoded image on its way to a network input: channel conversion, resizing,
// inversion, MNIST-style framing, and the HWC → CHW reordering. Each returns a new image.

extension DecodedImage {
    /// The image with `channels` channels: RGB → gray by ITU-R 601-2 luma,
    /// `L = (299 R + 587 G + 114 B) / 1000` rounded to nearest (as Pillow's `convert("L")`);
    /// gray → RGB by copying the gray value into all three.
    ///
    /// - Precondition: `channels` is 1 or 3.
    public func converted(toChannels target: Int) -> DecodedImage {
        precondition(target == 1 || target == 3, "DecodedImage: \(target) channels")
        if target == channels { return self }
        let count = width * height
        var out = [UInt8](repeating: 0, count: count * target)
        if target == 1 {
            for i in 0..<count {
                let r = Int(pixels[3 * i]), g = Int(pixels[3 * i + 1]), b = Int(pixels[3 * i + 2])
                out[i] = UInt8((299 * r + 587 * g + 114 * b + 500) / 1000)
            }
        } else {
            for i in 0..<count {
                out[3 * i] = pixels[i]
                out[3 * i + 1] = pixels[i]
                out[3 * i + 2] = pixels[i]
            }
        }
        return DecodedImage(width: width, height: height, channels: target, pixels: out, source: source)
    }

    /// The image with every byte `v` replaced by `255 − v` (a dark figure on light becomes a
    /// light figure on dark, as MNIST's digits are).
    public func inverted() -> DecodedImage {
        DecodedImage(width: width, height: height, channels: channels, pixels: pixels.map { 255 - $0 }, source: source)
    }

    /// The mean of all channels over the outermost ring of pixels (the first and last rows and
    /// columns), 0...255: how light the background is, for the automatic inversion rule.
    public var borderMean: Double {
        var sum = 0, count = 0
        for y in 0..<height {
            let xs = (y == 0 || y == height - 1) ? Array(0..<width) : (width > 1 ? [0, width - 1] : [0])
            for x in xs {
                for c in 0..<channels { sum += Int(pixels[(y * width + x) * channels + c]) }
                count += channels
            }
        }
        return Double(sum) / Double(max(count, 1))
    }

    /// The image resampled to `newWidth` x `newHeight` (the aspect ratio is not kept) with a
    /// separable triangle (bilinear) filter whose support widens with the reduction factor, so
    /// that shrinking averages every input pixel instead of skipping most of them — the same
    /// filter as Pillow's `Image.resize(…, BILINEAR)`. Each output byte is rounded to nearest.
    ///
    /// - Precondition: both sizes are positive.
    public func resized(width newWidth: Int, height newHeight: Int) -> DecodedImage {
        precondition(newWidth > 0 && newHeight > 0, "DecodedImage: resize to \(newWidth)x\(newHeight)")
        if newWidth == width && newHeight == height { return self }
        let horizontal = ResampleWeights(inputSize: width, outputSize: newWidth)
        let vertical = ResampleWeights(inputSize: height, outputSize: newHeight)
        // Rows first (H x newW x C, kept in Float), then columns.
        var rows = [Float](repeating: 0, count: height * newWidth * channels)
        for y in 0..<height {
            for x in 0..<newWidth {
                let (start, weights) = horizontal.taps[x]
                for c in 0..<channels {
                    var sum: Float = 0
                    for (k, w) in weights.enumerated() { sum += w * Float(pixels[(y * width + start + k) * channels + c]) }
                    rows[(y * newWidth + x) * channels + c] = sum
                }
            }
        }
        var out = [UInt8](repeating: 0, count: newHeight * newWidth * channels)
        for y in 0..<newHeight {
            let (start, weights) = vertical.taps[y]
            for x in 0..<newWidth {
                for c in 0..<channels {
                    var sum: Float = 0
                    for (k, w) in weights.enumerated() { sum += w * rows[((start + k) * newWidth + x) * channels + c] }
                    out[(y * newWidth + x) * channels + c] = UInt8(max(0, min(255, sum.rounded())))
                }
            }
        }
        return DecodedImage(width: newWidth, height: newHeight, channels: channels, pixels: out, source: source)
    }

    /// A gray image framed as MNIST's digits were: the bounding box of the ink (pixels of at least
    /// a quarter of the brightest value) is scaled, keeping its aspect ratio, so that its longer
    /// side is `box` pixels, then placed on a black `side` x `side` canvas with its centre of mass
    /// at the canvas's centre (parts pushed past the edge are cut off).
    ///
    /// MNIST's digits were normalised into a 20 x 20 box and centred by mass in 28 x 28
    /// (LeCun et al.); use `box: 20, side: 28` for them. The image must be light ink on black
    /// (invert first). Returns `nil` when there is no ink at all.
    /// - Precondition: the image is gray, `0 < box <= side`.
    public func framedAsDigit(box: Int, side: Int) -> DecodedImage? {
        precondition(channels == 1 && box > 0 && box <= side, "framedAsDigit: a gray image and 0 < box <= side")
        guard let brightest = pixels.max(), brightest > 0 else { return nil }
        let threshold = max(1, (Int(brightest) + 3) / 4)
        var minX = width, maxX = -1, minY = height, maxY = -1
        for y in 0..<height {
            for x in 0..<width where Int(pixels[y * width + x]) >= threshold {
                minX = min(minX, x); maxX = max(maxX, x); minY = min(minY, y); maxY = max(maxY, y)
            }
        }
        let cropWidth = maxX - minX + 1, cropHeight = maxY - minY + 1
        var crop = [UInt8](repeating: 0, count: cropWidth * cropHeight)
        for y in 0..<cropHeight {
            for x in 0..<cropWidth { crop[y * cropWidth + x] = pixels[(minY + y) * width + minX + x] }
        }
        let scale = Double(box) / Double(max(cropWidth, cropHeight))
        let fittedWidth = max(1, Int((Double(cropWidth) * scale).rounded()))
        let fittedHeight = max(1, Int((Double(cropHeight) * scale).rounded()))
        let fitted = DecodedImage(width: cropWidth, height: cropHeight, channels: 1, pixels: crop)
            .resized(width: fittedWidth, height: fittedHeight)
        // Centre of mass of the fitted digit, then the shift that moves it to the canvas centre.
        var mass = 0.0, sumX = 0.0, sumY = 0.0
        for y in 0..<fittedHeight {
            for x in 0..<fittedWidth {
                let v = Double(fitted.pixels[y * fittedWidth + x])
                mass += v; sumX += v * (Double(x) + 0.5); sumY += v * (Double(y) + 0.5)
            }
        }
        let center = Double(side) / 2
        let offsetX = mass > 0 ? Int((center - sumX / mass).rounded()) : (side - fittedWidth) / 2
        let offsetY = mass > 0 ? Int((center - sumY / mass).rounded()) : (side - fittedHeight) / 2
        var canvas = [UInt8](repeating: 0, count: side * side)
        for y in 0..<fittedHeight {
            let cy = y + offsetY
            guard cy >= 0 && cy < side else { continue }
            for x in 0..<fittedWidth {
                let cx = x + offsetX
                guard cx >= 0 && cx < side else { continue }
                canvas[cy * side + cx] = fitted.pixels[y * fittedWidth + x]
            }
        }
        return DecodedImage(width: side, height: side, channels: 1, pixels: canvas, source: source)
    }

    /// The pixels in planar CHW order (plane after plane), as `LabeledImages` and the networks
    /// hold them.
    public var planarPixels: [UInt8] {
        if channels == 1 { return pixels }
        var out = [UInt8](repeating: 0, count: pixels.count)
        let plane = width * height
        for i in 0..<plane {
            for c in 0..<channels { out[c * plane + i] = pixels[i * channels + c] }
        }
        return out
    }
}

/// The taps of a 1-D triangle-filter resampling from `inputSize` to `outputSize` samples:
/// for each output sample, the first input index and the normalised weights from there on.
///
/// Output sample `i` is centred at input coordinate `(i + 0.5) · s`, `s = inputSize / outputSize`;
/// the filter is `max(0, 1 − |t|)` with `t` measured in units of `max(s, 1)` input samples, so it
/// spans one input sample each side when enlarging and `s` samples each side when reducing.
struct ResampleWeights {
    var taps: [(start: Int, weights: [Float])]

    init(inputSize: Int, outputSize: Int) {
        let scale = Double(inputSize) / Double(outputSize)
        let filterScale = max(scale, 1)
        let support = filterScale  // the triangle's radius is 1 filter unit
        taps = (0..<outputSize).map { i in
            let center = (Double(i) + 0.5) * scale
            let first = max(0, Int((center - support + 0.5).rounded(.down)))
            let last = min(inputSize, Int((center + support + 0.5).rounded(.down)))
            var weights = (first..<last).map { j in max(0, 1 - abs((Double(j) + 0.5 - center) / filterScale)) }
            let total = weights.reduce(0, +)
            if total > 0 { weights = weights.map { $0 / total } }
            return (first, weights.map(Float.init))
        }
    }
}
