import Backprop
import BackpropData

/// How raw pixel bytes become network inputs: `x = byte · scale − mean[c]`.
///
/// MNIST and Fashion-MNIST use `scale = 1/255` and one mean over all pixels; an image folder
/// `scale = 1/255` and one mean per channel; CIFAR-10 keeps the raw 0–255 values
/// (`scale = 1`, as the course's loader does) and subtracts a mean per channel. The means are
/// computed on the training split only and saved with the model, so validation, test and
/// later predictions are preprocessed identically.
public struct Preprocessing: Codable, Sendable, Equatable {
    /// The factor applied to each byte.
    public var scale: Float
    /// Subtracted after scaling: one value, or one per channel.
    public var mean: [Float]

    public init(scale: Float, mean: [Float]) {
        self.scale = scale
        self.mean = mean
    }

    /// Computes the mean over `indices` of `images` (all of them when nil).
    public static func fit(_ dataset: DatasetKind, to images: LabeledImages, indices: [Int]) -> Preprocessing {
        let scale: Float = dataset == .cifar10 ? 1 : 1 / 255
        let perChannel = dataset == .cifar10 || (dataset == .imageFolder && images.channels > 1)
        let planes = perChannel ? images.channels : 1
        let planeSize = images.bytesPerImage / planes
        var sums = [Double](repeating: 0, count: planes)
        images.pixels.withUnsafeBufferPointer { pixels in
            for index in indices {
                let image = pixels.baseAddress! + index * images.bytesPerImage
                for plane in 0..<planes {
                    var sum = 0
                    for i in 0..<planeSize { sum += Int(image[plane * planeSize + i]) }
                    sums[plane] += Double(sum)
                }
            }
        }
        let count = Double(max(indices.count, 1) * planeSize)
        return Preprocessing(scale: scale, mean: sums.map { Float($0 / count * Double(scale)) })
    }

    /// The network input for the images at `indices`, in that order: `[indices.count, C, H, W]`.
    public func apply(to images: LabeledImages, indices: [Int]) -> Tensor<Float> {
        var tensor = Tensor<Float>(shape: [indices.count, images.channels, images.height, images.width])
        let planeSize = images.height * images.width
        let planes = images.channels
        images.pixels.withUnsafeBufferPointer { pixels in
            tensor.scalars.withUnsafeMutableBufferPointer { out in
                for (row, index) in indices.enumerated() {
                    let image = pixels.baseAddress! + index * images.bytesPerImage
                    let destination = out.baseAddress! + row * images.bytesPerImage
                    for plane in 0..<planes {
                        let m = mean.count == planes ? mean[plane] : mean[0]
                        for i in 0..<planeSize {
                            destination[plane * planeSize + i] = Float(image[plane * planeSize + i]) * scale - m
                        }
                    }
                }
            }
        }
        return tensor
    }

    /// The whole image set, preprocessed, in file order.
    public func apply(to images: LabeledImages) -> Tensor<Float> {
        apply(to: images, indices: Array(0..<images.count))
    }
}

/// The training split (as bytes, batched on demand by `BatchSource`) and the validation set (as
/// network inputs).
public struct PreparedData: Sendable {
    /// The training images' bytes (the whole file; `trainIndices` selects the split).
    public var trainImages: LabeledImages
    /// The training split: indexes into `trainImages`, in the one shuffled order the training
    /// loop walks through.
    public var trainIndices: [Int]
    public var trainLabels: [Int]
    public var validation: Tensor<Float>
    public var validationLabels: [Int]
    public var preprocessing: Preprocessing
    public var classNames: [String]

    /// Splits and preprocesses the course's way: the first `trainSize` training images are
    /// shuffled once (by `seed`); the last `validationSize` of that order are held out; the
    /// mean is computed on the rest — unless `preprocessing` is given (training from a model's
    /// weights keeps the preprocessing they were trained with).
    public init(dataset: Dataset, options: TrainingOptions, preprocessing given: Preprocessing? = nil) {
        var generator = SeededGenerator(seed: options.seed ^ 0x5348_5546_464C_4521)  // "SHUFFLE!": a stream apart from the weights'
        let order = generator.permutation(min(options.trainSize, dataset.train.count))
        trainIndices = Array(order.dropLast(options.validationSize))
        let validationIndices = Array(order.suffix(options.validationSize))
        trainImages = dataset.train
        preprocessing = given ?? Preprocessing.fit(dataset.kind, to: dataset.train, indices: trainIndices)
        trainLabels = trainIndices.map { Int(dataset.train.labels[$0]) }
        validation = preprocessing.apply(to: dataset.train, indices: validationIndices)
        validationLabels = validationIndices.map { Int(dataset.train.labels[$0]) }
        classNames = dataset.classNames
    }

    /// The training split preprocessed, in its order: `[n, C, H, W]` (made on each call; training
    /// itself preprocesses batch by batch).
    public var train: Tensor<Float> { preprocessing.apply(to: trainImages, indices: trainIndices) }
}
