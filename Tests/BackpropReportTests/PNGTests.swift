import Backprop
@testable import BackpropReport
import Foundation
import BackpropTestSupport
import Testing

@Suite("PNG files, read back by an independent decoder")
struct PNGTests {
    /// Writes `image` as PNG and decodes it with Python's standard library.
    func roundTrip(_ images: [PixelImage]) throws -> [DecodedPNG] {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let files = try images.enumerated().map { i, image in
            let url = folder.file("\(i).png")
            try image.pngData().write(to: url)
            return url
        }
        return try PythonChecks.decode(files)
    }

    /// Pixels chosen so that every row filter wins somewhere: flat rows (Up), horizontal ramps
    /// (Sub), noise (None), smooth 2-D gradients (Average, Paeth).
    func testPattern(width: Int, height: Int, channels: Int) -> PixelImage {
        var generator = SeededGenerator(seed: 7)
        var pixels = [UInt8](repeating: 0, count: width * height * channels)
        for y in 0..<height {
            for x in 0..<width {
                for c in 0..<channels {
                    let value: Int
                    switch y % 5 {
                    case 0: value = generator.nextInt(below: 256)             // noise
                    case 1: value = (x * 7 + c * 40) % 256                     // ramp
                    case 2: value = 200                                         // flat
                    case 3: value = (x * 3 + y * 5 + c * 11) % 256              // gradient
                    default: value = x < width / 2 ? 255 - x : (x * y) % 256    // mixed
                    }
                    pixels[(y * width + x) * channels + c] = UInt8(value)
                }
            }
        }
        return PixelImage(width: width, height: height, channels: channels, pixels: pixels)
    }

    @Test("gray and RGB images decode to exactly the pixels written, through every filter type")
    func exactPixels() throws {
        let gray = testPattern(width: 37, height: 40, channels: 1)
        let rgb = testPattern(width: 23, height: 45, channels: 3)
        let tiny = PixelImage(width: 1, height: 1, channels: 3, pixels: [1, 2, 3])
        let decoded = try roundTrip([gray, rgb, tiny])
        for (image, png) in zip([gray, rgb, tiny], decoded) {
            #expect(png.width == image.width && png.height == image.height && png.channels == image.channels)
            #expect(png.chunks == ["IHDR", "IDAT", "IEND"])
            #expect(png.pixels == image.pixels)
        }
        // The filter heuristic picks more than one filter on the test pattern (a decoder
        // that got Sub, Up, Average or Paeth wrong would have failed the pixel comparison).
        #expect(decoded[0].filters.count >= 3, "filters used: \(decoded[0].filters)")
        #expect(decoded[1].filters.count >= 3, "filters used: \(decoded[1].filters)")
    }

    @Test("the decoder rejects a corrupted chunk (its CRC check is real)")
    func corruptedFileIsRejected() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        var data = try testPattern(width: 8, height: 8, channels: 1).pngData()
        data[data.count - 20] ^= 0x01  // a byte inside IDAT
        let url = folder.file("bad.png")
        try data.write(to: url)
        #expect(throws: PythonChecks.Failure.self) { try PythonChecks.decode([url]) }
    }

    @Test("planar (CHW) bytes become interleaved pixels; enlarging repeats each pixel")
    func planarAndEnlarged() {
        // Two pixels, planes R = [10, 11], G = [20, 21], B = [30, 31].
        let image = PixelImage(planar: [10, 11, 20, 21, 30, 31], channels: 3, height: 1, width: 2)
        #expect(image.pixels == [10, 20, 30, 11, 21, 31])
        let big = image.enlarged(by: 3)
        #expect(big.width == 6 && big.height == 3)
        for y in 0..<3 {
            for x in 0..<6 { #expect(big[x, y] == (x < 3 ? [10, 20, 30] : [11, 21, 31])) }
        }
    }

    @Test("text is drawn from the pixel font: the glyph of 1 lands where expected")
    func text() {
        var image = PixelImage(width: 12, height: 9, fill: [0])
        image.drawText("1", x: 0, y: 0, color: [255])
        let glyph = PixelFont.glyph("1")
        for y in 0..<9 {
            for x in 0..<5 {
                #expect(image[x, y] == [glyph[y][glyph[y].index(glyph[y].startIndex, offsetBy: x)] == "#" ? 255 : 0])
            }
        }
        #expect(PixelFont.width(of: "ab", scale: 2) == 22)
        // Every glyph is 9 rows of 5 columns.
        for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;%-+=_()/'!?#&<>→" {
            let g = PixelFont.glyph(c)
            #expect(g.count == 9 && g.allSatisfy { $0.count == 5 }, "glyph \(c)")
        }
    }
}
