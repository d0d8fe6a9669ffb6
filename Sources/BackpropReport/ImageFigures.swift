import Backprop
import BackpropData
import BackpropTraining

/// Colors used in the PNG figures.
enum FigureColor {
    static let background: [UInt8] = [255, 255, 255]
    static let gap: [UInt8] = [214, 218, 224]
    static let text: [UInt8] = [20, 20, 20]
    static let muted: [UInt8] = [96, 96, 96]
    static let wrong: [UInt8] = [200, 30, 30]
}

// MARK: - First-layer kernels

/// The kernels of a convolution layer as an image grid.
///
/// Each kernel (`weight[o]`, shape `[Cin, k, k]`) is scaled to its own range — its smallest
/// weight black, its largest white, `round(255 · (w − min) / (max − min))` — over all its input
/// channels together, so an RGB kernel keeps the balance of its colours. One input channel gives
/// a gray tile, three an RGB tile (channel 0 red, 1 green, 2 blue, as CIFAR-10's planes); any
/// other count gives one gray tile per input channel, side by side. Tiles are enlarged by
/// nearest neighbour (a 5x5 kernel becomes 110x110 pixels) and numbered by output channel.
public struct KernelGrid: Sendable {
    /// `[Cout, Cin, k, k]`.
    public var weight: Tensor<Float>
    /// Tiles per row.
    public var columns: Int
    /// The enlargement of each kernel pixel.
    public var factor: Int

    /// Layout constants, in pixels.
    static let gap = 8
    static let labelHeight = 22
    /// Font pixels per pixel of `PixelFont` for the numbers.
    static let labelScale = 2

    /// - Parameter weight: a convolution weight `[Cout, Cin, k, k]`.
    public init(weight: Tensor<Float>) {
        precondition(weight.shape.count == 4, "KernelGrid: weight must be [Cout, Cin, kh, kw]")
        self.weight = weight
        let outputs = weight.shape[0]
        columns = outputs <= 8 ? outputs : (outputs <= 32 ? 8 : 16)
        factor = max(1, (110 + weight.shape[2] - 1) / weight.shape[2])  // about 110 pixels a tile
    }

    /// The weight of the first `Conv2D` layer of `network`, or nil when it has none.
    public static func firstConvolutionWeight(of network: Network<Float>) -> Tensor<Float>? {
        for row in network.rows {
            if let convolution = row.layer as? Conv2D<Float> { return convolution.weight.value }
        }
        return nil
    }

    /// The tiles of kernel `o`, before enlargement: one RGB tile, or one gray tile per input channel.
    public func tiles(ofKernel o: Int) -> [PixelImage] {
        let cin = weight.shape[1], kh = weight.shape[2], kw = weight.shape[3]
        let size = cin * kh * kw
        let values = Array(weight.scalars[(o * size)..<((o + 1) * size)])
        let lo = values.min()!, hi = values.max()!
        func byte(_ w: Float) -> UInt8 {
            hi > lo ? UInt8((255 * (w - lo) / (hi - lo)).rounded()) : 128
        }
        let plane = kh * kw
        if cin == 3 {
            return [PixelImage(planar: values.map(byte), channels: 3, height: kh, width: kw)]
        }
        return (0..<cin).map { c in
            PixelImage(width: kw, height: kh, channels: 1, pixels: values[(c * plane)..<((c + 1) * plane)].map(byte))
        }
    }

    /// The grid as an RGB image.
    public func image() -> PixelImage {
        let outputs = weight.shape[0], cin = weight.shape[1]
        let tilesPerKernel = cin == 3 ? 1 : cin
        let tileWidth = weight.shape[3] * factor, tileHeight = weight.shape[2] * factor
        let cellWidth = tilesPerKernel * tileWidth + (tilesPerKernel - 1) * 2
        let rows = (outputs + columns - 1) / columns
        let gap = Self.gap
        var out = PixelImage(width: columns * (cellWidth + gap) + gap,
                             height: rows * (tileHeight + Self.labelHeight + gap) + gap, fill: FigureColor.background)
        for o in 0..<outputs {
            let x = gap + (o % columns) * (cellWidth + gap)
            let y = gap + (o / columns) * (tileHeight + Self.labelHeight + gap)
            out.fill(x: x - 1, y: y - 1, width: cellWidth + 2, height: tileHeight + 2, color: FigureColor.gap)
            for (i, tile) in tiles(ofKernel: o).enumerated() {
                out.draw(tile.enlarged(by: factor), x: x + i * (tileWidth + 2), y: y)
            }
            let label = String(o)
            out.drawText(label, x: x + (cellWidth - PixelFont.width(of: label, scale: Self.labelScale)) / 2, y: y + tileHeight + 5,
                         color: FigureColor.muted, scale: Self.labelScale)
        }
        return out
    }

    /// Where kernel `o`'s first tile starts in `image()` (for tests).
    public func origin(ofKernel o: Int) -> (x: Int, y: Int) {
        let cin = weight.shape[1]
        let tilesPerKernel = cin == 3 ? 1 : cin
        let tileWidth = weight.shape[3] * factor, tileHeight = weight.shape[2] * factor
        let cellWidth = tilesPerKernel * tileWidth + (tilesPerKernel - 1) * 2
        return (Self.gap + (o % columns) * (cellWidth + Self.gap), Self.gap + (o / columns) * (tileHeight + Self.labelHeight + Self.gap))
    }
}

// MARK: - Misclassified images

/// A test image the network got wrong.
public struct Misclassification: Sendable, Equatable {
    /// The image's position in the test set.
    public var index: Int
    public var trueClass: Int
    public var predictedClass: Int
    /// The softmax probability of the predicted class.
    public var confidence: Float
}

extension Predictions {
    /// The misclassified examples, in the order of `labels`.
    public func misclassifications(labels: [Int]) -> [Misclassification] {
        precondition(labels.count == classes.count)
        return labels.indices.compactMap { i in
            labels[i] == classes[i] ? nil
                : Misclassification(index: i, trueClass: labels[i], predictedClass: classes[i], confidence: confidences[i])
        }
    }
}

/// A grid of misclassified images, each enlarged, with its true label, predicted label and
/// the network's confidence drawn beneath it:
/// ```
/// ┌────────┐
/// │ image  │   enlarged `factor` times (nearest neighbour)
/// └────────┘
/// cat            true class (black)
/// → dog          predicted class (red)
/// 87.3%          softmax probability of the prediction
/// ```
public struct MisclassifiedGrid: Sendable {
    public var images: LabeledImages
    public var items: [Misclassification]
    public var classNames: [String]
    public var factor: Int
    public var columns: Int
    /// Font pixels per pixel of `PixelFont`.
    public var textScale = 2

    static let gap = 10
    static let padding = 4
    static let lineHeight = 20

    /// - Parameters:
    ///   - images: the test images the indexes of `items` refer to.
    ///   - maxWidth: the grid's width at most, in pixels (columns are chosen to fit).
    public init(images: LabeledImages, items: [Misclassification], classNames: [String], maxWidth: Int = 1100) {
        self.images = images
        self.items = items
        self.classNames = classNames
        factor = max(1, 100 / max(images.width, images.height))
        columns = 1
        columns = max(1, min(items.count, (maxWidth - Self.gap) / (cellWidth + Self.gap)))
    }

    /// The label lines of an item.
    func lines(_ item: Misclassification) -> [(text: String, color: [UInt8])] {
        [(Self.short(classNames[item.trueClass]), FigureColor.text),
         ("→ " + Self.short(classNames[item.predictedClass]), FigureColor.wrong),
         (String(format: "%.1f%%", item.confidence * 100), FigureColor.muted)]
    }

    /// A class name cut to 12 characters.
    static func short(_ name: String) -> String { name.count <= 12 ? name : String(name.prefix(11)) + "." }

    var cellWidth: Int {
        let longest = classNames.map { PixelFont.width(of: "→ " + Self.short($0), scale: textScale) }.max() ?? 0
        return max(images.width * factor, longest) + 2 * Self.padding
    }

    var cellHeight: Int { images.height * factor + 2 * Self.padding + 3 * Self.lineHeight }

    /// Where item `i`'s image starts in `image()` (for tests).
    public func origin(ofItem i: Int) -> (x: Int, y: Int) {
        (Self.gap + (i % columns) * (cellWidth + Self.gap) + Self.padding, Self.gap + (i / columns) * (cellHeight + Self.gap) + Self.padding)
    }

    /// The grid as an RGB image.
    public func image() -> PixelImage {
        let rows = max(1, (items.count + columns - 1) / columns)
        var out = PixelImage(width: columns * (cellWidth + Self.gap) + Self.gap,
                             height: rows * (cellHeight + Self.gap) + Self.gap, fill: FigureColor.background)
        for (i, item) in items.enumerated() {
            let (x, y) = origin(ofItem: i)
            let picture = PixelImage(planar: images.pixels(ofImage: item.index), channels: images.channels,
                                     height: images.height, width: images.width).enlarged(by: factor)
            out.fill(x: x - 1, y: y - 1, width: picture.width + 2, height: picture.height + 2, color: FigureColor.gap)
            out.draw(picture, x: x, y: y)
            for (line, (text, color)) in lines(item).enumerated() {
                out.drawText(text, x: x, y: y + picture.height + 6 + line * Self.lineHeight, color: color, scale: textScale)
            }
        }
        return out
    }
}
