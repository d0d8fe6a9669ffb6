import _CImage
import Foundation

/// An image as 8-bit pixels, rows top to bottom, interleaved: H x W x C bytes (HWC order),
/// C = 1 (gray, 0 = black) or 3 (R, G, B).
///
/// Made by `ImageDecoder` from PNG and JPEG files, and by the operations in `ImageOperations.swift`
/// (channel conversion, resizing, inversion) on the way to a network input.
public struct DecodedImage: Sendable, Equatable {
    /// W, the number of columns.
    public var width: Int
    /// H, the number of rows.
    public var height: Int
    /// C: 1 (gray) or 3 (RGB).
    public var channels: Int
    /// H x W x C bytes, row-major, channels interleaved (HWC).
    public var pixels: [UInt8]
    /// What the file held, for people: e.g. "PNG, 16-bit RGB + alpha, interlaced" (empty when
    /// the image was not decoded from a file).
    public var source: String

    /// Creates an image from HWC bytes.
    /// - Precondition: `channels` is 1 or 3, the sizes are positive and `pixels` has H x W x C bytes.
    public init(width: Int, height: Int, channels: Int, pixels: [UInt8], source: String = "") {
        precondition(width > 0 && height > 0 && (channels == 1 || channels == 3), "DecodedImage: bad dimensions")
        precondition(pixels.count == width * height * channels,
                     "DecodedImage: \(pixels.count) bytes for \(width)x\(height)x\(channels)")
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
        self.source = source
    }
}

/// Decodes PNG and JPEG files with the system's libpng and libjpeg(-turbo).
///
/// The format is told by the file's first bytes, not its name. Supported:
/// - PNG: grayscale (1, 2, 4, 8, 16 bits), RGB, palette, with or without alpha or a tRNS
///   transparency, interlaced or not. 16-bit samples become `round(v · 255 / 65535)`; alpha is
///   composited over white (`v' = round((v·a + 255·(255 − a)) / 255)`); gamma chunks are ignored.
/// - JPEG: baseline and progressive, grayscale, YCbCr (converted to RGB by libjpeg) or RGB.
///   CMYK is refused. A truncated or corrupt JPEG is an error, although libjpeg itself would
///   decode on and fill the missing part with gray.
///
/// Every failure is a one-line `DataError` naming the file; sizes are checked before anything
/// is allocated for them (`maximumPixels`, `maximumFileBytes`).
public enum ImageDecoder {
    /// The largest image decoded by default: 100 megapixels (300 MB as RGB).
    public static let defaultMaximumPixels = 100_000_000
    /// The largest file read: 256 MiB.
    public static let maximumFileBytes = 256 << 20

    /// The file extensions taken as images when a folder is listed: png, jpg, jpeg (any case).
    public static let fileExtensions: Set<String> = ["png", "jpg", "jpeg"]

    /// Whether `url`'s name ends in one of `fileExtensions`.
    public static func hasImageExtension(_ url: URL) -> Bool {
        fileExtensions.contains(url.pathExtension.lowercased())
    }

    /// Reads and decodes the PNG or JPEG file at `url`.
    /// - Throws: `DataError` (one line, naming the file) when the file cannot be read, is not a PNG
    ///   or JPEG, is damaged, or holds more than `maximumPixels` pixels.
    public static func decode(fileAt url: URL, maximumPixels: Int = defaultMaximumPixels) throws(DataError) -> DecodedImage {
        let size: Int
        do {
            let attributes = try FileManager.default.attributesOfItem(atPath: url.path)
            guard (attributes[.type] as? FileAttributeType) != .typeDirectory else {
                throw DataError(url, "is a folder, not an image file")
            }
            size = (attributes[.size] as? NSNumber)?.intValue ?? 0
        } catch let error as DataError {
            throw error
        } catch {
            throw DataError(url, "cannot read: \(ContentReader.describe(error))")
        }
        guard size <= maximumFileBytes else {
            throw DataError(url, "the file has \(size) bytes, more than the \(maximumFileBytes) an image may have here")
        }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw DataError(url, "cannot read: \(ContentReader.describe(error))")
        }
        do { return try decode(data, maximumPixels: maximumPixels) } catch {
            throw DataError(url, error.reason)
        }
    }

    /// Decodes a PNG or JPEG file held in memory.
    /// - Throws: `DataError` without a path.
    public static func decode(_ data: Data, maximumPixels: Int = defaultMaximumPixels) throws(DataError) -> DecodedImage {
        let bytes = [UInt8](data)
        let isPNG = bytes.starts(with: [0x89, 0x50, 0x4E, 0x47])
        let isJPEG = bytes.starts(with: [0xFF, 0xD8, 0xFF])
        guard isPNG || isJPEG else {
            throw DataError(path: nil, reason: bytes.isEmpty ? "the file is empty" : "not a PNG or JPEG file")
        }
        var image = bp_image()
        let status = bytes.withUnsafeBufferPointer { buffer in
            isPNG ? bp_decode_png(buffer.baseAddress, buffer.count, Int64(maximumPixels), &image)
                  : bp_decode_jpeg(buffer.baseAddress, buffer.count, Int64(maximumPixels), &image)
        }
        defer { bp_image_free(&image) }
        func text<T>(_ tuple: T) -> String {
            withUnsafeBytes(of: tuple) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
        }
        guard status == 0, let pixels = image.pixels else {
            let message = text(image.message)
            throw DataError(path: nil, reason: message.isEmpty ? "cannot decode the image" : message)
        }
        let count = Int(image.width) * Int(image.height) * Int(image.channels)
        return DecodedImage(width: Int(image.width), height: Int(image.height), channels: Int(image.channels),
                            pixels: Array(UnsafeBufferPointer(start: pixels, count: count)), source: text(image.source))
    }
}
