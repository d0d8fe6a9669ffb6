import _CZlib
import Foundation

/// An 8-bit image to be written as PNG: grayscale (1 channel) or RGB (3 channels).
///
/// `pixels` holds H x W x C bytes, row after row, within a row pixel after pixel, within a pixel
/// its channels (R, G, B) — the interleaved order PNG stores. (Images of the data sets are
/// planar, CHW; `PixelImage.init(planar:…)` converts.)
public struct PixelImage: Sendable, Equatable {
    /// W, pixels per row.
    public var width: Int
    /// H, rows.
    public var height: Int
    /// C: 1 (gray) or 3 (RGB).
    public var channels: Int
    /// H x W x C bytes, row-major, channels interleaved.
    public var pixels: [UInt8]

    /// A `width` x `height` image filled with `fill` (one value per channel).
    public init(width: Int, height: Int, fill: [UInt8]) {
        precondition(width > 0 && height > 0, "PixelImage: empty image \(width)x\(height)")
        precondition(fill.count == 1 || fill.count == 3, "PixelImage: 1 or 3 channels, got \(fill.count)")
        self.width = width
        self.height = height
        channels = fill.count
        pixels = [UInt8](repeating: 0, count: width * height * fill.count)
        for i in 0..<(width * height) {
            for c in 0..<channels { pixels[i * channels + c] = fill[c] }
        }
    }

    /// An image from interleaved bytes (H x W x C).
    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        precondition(channels == 1 || channels == 3, "PixelImage: 1 or 3 channels, got \(channels)")
        precondition(pixels.count == width * height * channels, "PixelImage: \(pixels.count) bytes for \(width)x\(height)x\(channels)")
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// An image from planar bytes (C x H x W, as `LabeledImages` stores them).
    public init(planar bytes: some Collection<UInt8>, channels: Int, height: Int, width: Int) {
        let planar = Array(bytes)
        precondition(planar.count == channels * height * width)
        var interleaved = [UInt8](repeating: 0, count: planar.count)
        let plane = height * width
        for i in 0..<plane {
            for c in 0..<channels { interleaved[i * channels + c] = planar[c * plane + i] }
        }
        self.init(width: width, height: height, channels: channels, pixels: interleaved)
    }

    /// The channel values of the pixel in column `x`, row `y`.
    public subscript(x: Int, y: Int) -> [UInt8] {
        let start = (y * width + x) * channels
        return Array(pixels[start..<(start + channels)])
    }

    /// This image enlarged `factor` times by repeating pixels (nearest neighbour), so that a
    /// 5x5 kernel or a 28x28 digit stays sharp.
    public func enlarged(by factor: Int) -> PixelImage {
        precondition(factor >= 1)
        guard factor > 1 else { return self }
        var out = PixelImage(width: width * factor, height: height * factor, fill: [UInt8](repeating: 0, count: channels))
        for y in 0..<out.height {
            for x in 0..<out.width {
                let source = ((y / factor) * width + x / factor) * channels
                let destination = (y * out.width + x) * channels
                for c in 0..<channels { out.pixels[destination + c] = pixels[source + c] }
            }
        }
        return out
    }

    /// The same image with 3 channels (gray values repeated).
    public var rgb: PixelImage {
        guard channels == 1 else { return self }
        return PixelImage(width: width, height: height, channels: 3, pixels: pixels.flatMap { [$0, $0, $0] })
    }

    /// Copies `image` (converted to this image's channel count) with its top-left corner at
    /// column `x`, row `y`; parts outside are clipped.
    public mutating func draw(_ image: PixelImage, x: Int, y: Int) {
        let source = channels == 3 ? image.rgb : image
        precondition(source.channels == channels, "PixelImage: cannot draw an RGB image into a gray one")
        for row in 0..<source.height where y + row >= 0 && y + row < height {
            for column in 0..<source.width where x + column >= 0 && x + column < width {
                let s = (row * source.width + column) * channels
                let d = ((y + row) * width + x + column) * channels
                for c in 0..<channels { pixels[d + c] = source.pixels[s + c] }
            }
        }
    }

    /// Fills the rectangle at column `x`, row `y` of size `w` x `h` with `color` (clipped).
    public mutating func fill(x: Int, y: Int, width w: Int, height h: Int, color: [UInt8]) {
        precondition(color.count == channels)
        for row in max(y, 0)..<min(y + h, height) {
            for column in max(x, 0)..<min(x + w, width) {
                for c in 0..<channels { pixels[(row * width + column) * channels + c] = color[c] }
            }
        }
    }
}

// MARK: - PNG encoding

/// A failure of zlib while compressing (out of memory; nothing a user's input causes).
public struct PNGError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

extension PixelImage {
    /// The image as a PNG file (8-bit gray or RGB, not interlaced).
    ///
    /// ```
    /// file  = signature  IHDR  IDAT  IEND
    /// chunk = length (4 bytes, big-endian)  type (4)  data (length)  CRC-32 of type + data (4)
    /// IDAT  = zlib stream of the filtered rows: each row is a filter-type byte + the row's bytes
    /// ```
    /// Each row takes the filter (None, Sub, Up, Average or Paeth) whose output has the smallest
    /// sum of absolute values (as signed bytes) — the heuristic the PNG specification suggests.
    /// Compression is zlib's `compress2` at level 9; the chunk checksums are zlib's `crc32`.
    public func pngData() throws(PNGError) -> Data {
        var header = [UInt8]()
        header.appendBigEndian(UInt32(width))
        header.appendBigEndian(UInt32(height))
        header += [8, channels == 3 ? 2 : 0, 0, 0, 0]  // bit depth 8; color type 2 (RGB) or 0 (gray); deflate; adaptive filters; no interlace

        let filtered = filteredRows()
        var compressedLength = compressBound(uLong(filtered.count))
        var compressed = [UInt8](repeating: 0, count: Int(compressedLength))
        let status = compressed.withUnsafeMutableBufferPointer { out in
            filtered.withUnsafeBufferPointer { source in
                compress2(out.baseAddress, &compressedLength, source.baseAddress, uLong(source.count), 9)
            }
        }
        guard status == Z_OK else { throw PNGError(description: "zlib compress2 failed with status \(status)") }
        compressed.removeSubrange(Int(compressedLength)...)

        var file: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        file.appendChunk("IHDR", header)
        file.appendChunk("IDAT", compressed)
        file.appendChunk("IEND", [])
        return Data(file)
    }

    /// The scanlines, each prefixed by its filter type, filtered as `pngData()` describes.
    private func filteredRows() -> [UInt8] {
        let stride = width * channels
        let bpp = channels  // bytes per complete pixel: the distance "Sub" and "Paeth" look back
        var out = [UInt8]()
        out.reserveCapacity((stride + 1) * height)
        var candidate = [UInt8](repeating: 0, count: stride)
        var best = [UInt8](repeating: 0, count: stride)
        pixels.withUnsafeBufferPointer { p in
            for y in 0..<height {
                let row = y * stride
                var bestType: UInt8 = 0
                var bestCost = Int.max
                for type: UInt8 in 0...4 {
                    var cost = 0
                    for i in 0..<stride {
                        let a = i >= bpp ? p[row + i - bpp] : 0            // left
                        let b = y > 0 ? p[row - stride + i] : 0            // up
                        let c = i >= bpp && y > 0 ? p[row - stride + i - bpp] : 0  // up-left
                        let predictor: UInt8
                        switch type {
                        case 0: predictor = 0
                        case 1: predictor = a
                        case 2: predictor = b
                        case 3: predictor = UInt8((Int(a) + Int(b)) / 2)
                        default: predictor = paeth(a, b, c)
                        }
                        let value = p[row + i] &- predictor
                        candidate[i] = value
                        cost += Int(Int8(bitPattern: value).magnitude)
                    }
                    if cost < bestCost {
                        bestCost = cost
                        bestType = type
                        swap(&best, &candidate)
                    }
                }
                out.append(bestType)
                out += best
            }
        }
        return out
    }
}

/// The Paeth predictor: of left, up and up-left, the one closest to `left + up − upLeft`.
private func paeth(_ a: UInt8, _ b: UInt8, _ c: UInt8) -> UInt8 {
    let p = Int(a) + Int(b) - Int(c)
    let pa = abs(p - Int(a)), pb = abs(p - Int(b)), pc = abs(p - Int(c))
    if pa <= pb && pa <= pc { return a }
    return pb <= pc ? b : c
}

extension Array where Element == UInt8 {
    mutating func appendBigEndian(_ value: UInt32) {
        append(contentsOf: [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)])
    }

    /// Appends a PNG chunk: length, type, data, CRC-32 over type and data.
    mutating func appendChunk(_ type: String, _ data: [UInt8]) {
        appendBigEndian(UInt32(data.count))
        let typeAndData = Array(type.utf8) + data
        append(contentsOf: typeAndData)
        let crc = typeAndData.withUnsafeBufferPointer { crc32(0, $0.baseAddress, uInt($0.count)) }
        appendBigEndian(UInt32(crc))
    }
}
