/// Images as bytes with one class label per image.
///
/// Dimension letters, used in every doc comment of this module: N images, C channels, H rows, W columns.
/// `pixels` holds N x C x H x W bytes in row-major NCHW order: image after image, within an image
/// channel plane after channel plane, within a plane row after row. MNIST has C = 1 (0 = white, 255 = ink);
/// CIFAR-10 has C = 3 (the R plane, then G, then B), exactly as its binary records store them.
public struct LabeledImages: Sendable, Equatable {
    /// N, the number of images.
    public var count: Int
    /// C, the number of channels of each image.
    public var channels: Int
    /// H, the number of rows of each image.
    public var height: Int
    /// W, the number of columns of each image.
    public var width: Int
    /// The pixel bytes, N x C x H x W, row-major (NCHW).
    public var pixels: [UInt8]
    /// The class of each image, N values in `0..<classCount`.
    public var labels: [UInt8]

    /// Creates a set of images from NCHW pixel bytes and one label per image.
    ///
    /// - Parameters:
    ///   - count: N.
    ///   - channels: C.
    ///   - height: H.
    ///   - width: W.
    ///   - pixels: N x C x H x W bytes, row-major (NCHW).
    ///   - labels: N class labels.
    /// - Precondition: the sizes of `pixels` and `labels` agree with the dimensions.
    public init(count: Int, channels: Int, height: Int, width: Int, pixels: [UInt8], labels: [UInt8]) {
        precondition(count >= 0 && channels > 0 && height > 0 && width > 0, "LabeledImages: bad dimensions")
        precondition(pixels.count == count * channels * height * width,
                     "LabeledImages: \(pixels.count) pixel bytes for \(count)x\(channels)x\(height)x\(width)")
        precondition(labels.count == count, "LabeledImages: \(labels.count) labels for \(count) images")
        self.count = count
        self.channels = channels
        self.height = height
        self.width = width
        self.pixels = pixels
        self.labels = labels
    }

    /// C x H x W, the number of bytes of one image.
    public var bytesPerImage: Int { channels * height * width }

    /// The C x H x W pixel bytes (CHW order) of the image at `index`.
    ///
    /// - Precondition: `0 <= index < count`.
    public func pixels(ofImage index: Int) -> ArraySlice<UInt8> {
        precondition(index >= 0 && index < count, "LabeledImages: image index \(index) out of 0..<\(count)")
        return pixels[index * bytesPerImage ..< (index + 1) * bytesPerImage]
    }

    /// The images at positions `range`, in order.
    ///
    /// - Precondition: `range` lies within `0..<count`.
    public func subrange(_ range: Range<Int>) -> LabeledImages {
        precondition(range.lowerBound >= 0 && range.upperBound <= count,
                     "LabeledImages: range \(range) out of 0..<\(count)")
        return LabeledImages(
            count: range.count, channels: channels, height: height, width: width,
            pixels: Array(pixels[range.lowerBound * bytesPerImage ..< range.upperBound * bytesPerImage]),
            labels: Array(labels[range]))
    }

    /// The first `maxCount` images, or all of them when there are fewer (like `Collection.prefix`).
    ///
    /// - Precondition: `maxCount >= 0`.
    public func prefix(_ maxCount: Int) -> LabeledImages {
        precondition(maxCount >= 0, "LabeledImages: prefix of a negative count \(maxCount)")
        return maxCount >= count ? self : subrange(0 ..< maxCount)
    }
}
