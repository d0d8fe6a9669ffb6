import Foundation
import BackpropTestSupport
import Testing
@testable import BackpropData

/// The fixtures of `Scripts/make_image_fixtures.py` and the pixels it recorded for them.
private enum ImageFixtures {
    static let folder = TestPaths.packageRoot.appendingPathComponent("Tests/BackpropDataTests/Fixtures/images", isDirectory: true)

    struct Expected: Decodable {
        var width: Int
        var height: Int
        var channels: Int
        var pixels: [Int]
    }

    struct File: Decodable {
        var images: [String: Expected]
    }

    static let expected: [String: Expected] = {
        guard let data = try? Data(contentsOf: folder.appendingPathComponent("expected.json")),
              let file = try? JSONDecoder().decode(File.self, from: data) else { return [:] }
        return file.images
    }()

    static func url(_ name: String) -> URL { folder.appendingPathComponent(name) }
}

@Suite("PNG and JPEG decoding")
struct ImageDecoderTests {
    /// PNGs encoded by the script from its own pixel arrays (no image library), so the expected
    /// values do not come from any PNG decoder.
    @Test("PNGs decode to the pixels they were written from",
          arguments: ["gray8.png", "gray16.png", "gray1.png", "rgb8.png", "rgb8-interlaced.png", "rgb16.png",
                      "rgba8.png", "gray-alpha8.png", "palette-trns.png"])
    func png(name: String) throws {
        let expected = try #require(ImageFixtures.expected[name], "no expected pixels for \(name)")
        let image = try ImageDecoder.decode(fileAt: ImageFixtures.url(name))
        #expect(image.width == expected.width && image.height == expected.height && image.channels == expected.channels)
        #expect(image.pixels.map(Int.init) == expected.pixels)
        #expect(image.source.hasPrefix("PNG, "))
    }

    /// JPEG is lossy: the expected pixels are Pillow's decoding (its own libjpeg-turbo build),
    /// and an inverse DCT may differ in the last bit between builds.
    @Test("JPEGs decode to Pillow's pixels within 2", arguments: ["baseline.jpg", "progressive.jpg", "gray.jpg"])
    func jpeg(name: String) throws {
        let expected = try #require(ImageFixtures.expected[name], "no expected pixels for \(name)")
        let image = try ImageDecoder.decode(fileAt: ImageFixtures.url(name))
        #expect(image.width == expected.width && image.height == expected.height && image.channels == expected.channels)
        let worst = zip(image.pixels, expected.pixels).map { abs(Int($0) - $1) }.max() ?? .max
        #expect(image.pixels.count == expected.pixels.count && worst <= 2, "largest difference \(worst)")
        #expect(image.source == (name == "progressive.jpg" ? "JPEG, progressive YCbCr" : name == "gray.jpg" ? "JPEG, baseline grayscale" : "JPEG, baseline YCbCr"))
    }

    @Test("hostile files give one-line errors naming the file", arguments: [
        ("truncated.png", "truncated PNG"), ("truncated.jpg", "corrupt or truncated JPEG"), ("bad-crc.png", "corrupt PNG"),
        ("huge.png", "claims 100000x100000 pixels, more than the limit"), ("huge.jpg", "claims 60000x60000 pixels"),
        ("not-an-image.png", "not a PNG or JPEG file"), ("empty.jpg", "the file is empty"), ("corrupt.jpg", "JPEG"),
    ])
    func hostile(name: String, words: String) {
        let url = ImageFixtures.url(name)
        #expect(FileManager.default.fileExists(atPath: url.path))
        do {
            let image = try ImageDecoder.decode(fileAt: url)
            Issue.record("\(name) decoded to \(image.width)x\(image.height)")
        } catch {
            #expect(error.path == url.path)
            #expect(error.description.contains(words), "\(error.description)")
            #expect(!error.description.contains("\n"))
        }
    }

    @Test("every prefix of a PNG and of a JPEG is refused, and corrupted bytes never trap")
    func everyPrefix() throws {
        for name in ["rgb8-interlaced.png", "palette-trns.png", "progressive.jpg", "baseline.jpg"] {
            let bytes = try Data(contentsOf: ImageFixtures.url(name))
            for length in 0 ..< bytes.count {
                #expect(throws: DataError.self, "\(name) cut to \(length) bytes") { try ImageDecoder.decode(bytes.prefix(length)) }
            }
            // Flipped bytes may decode (in a pixel value or an ancillary chunk) or fail; they must
            // only never crash.
            for position in stride(from: 0, to: bytes.count, by: 3) {
                var damaged = bytes
                damaged[position] ^= 0x5A
                _ = try? ImageDecoder.decode(damaged)
            }
        }
    }

    @Test("the pixel limit is checked before decoding")
    func pixelLimit() throws {
        #expect(throws: DataError.self) { try ImageDecoder.decode(fileAt: ImageFixtures.url("rgb8.png"), maximumPixels: 34) }
        #expect(try ImageDecoder.decode(fileAt: ImageFixtures.url("rgb8.png"), maximumPixels: 35).width == 7)
        #expect(throws: DataError.self) { try ImageDecoder.decode(fileAt: ImageFixtures.url("baseline.jpg"), maximumPixels: 383) }
    }

    @Test("a folder or a missing file is a one-line error")
    func notAFile() {
        #expect(throws: DataError.self) { try ImageDecoder.decode(fileAt: ImageFixtures.folder) }
        #expect(throws: DataError.self) { try ImageDecoder.decode(fileAt: ImageFixtures.url("no-such-file.png")) }
    }
}

@Suite("Image operations")
struct ImageOperationsTests {
    @Test("RGB to gray is ITU-R 601-2 luma, rounded; gray to RGB copies")
    func channels() {
        // 0.299·200 + 0.587·100 + 0.114·50 = 59.8 + 58.7 + 5.7 = 124.2 → 124; 0.299·255 = 76.245 → 76.
        let rgb = DecodedImage(width: 2, height: 1, channels: 3, pixels: [200, 100, 50, 255, 0, 0])
        #expect(rgb.converted(toChannels: 1).pixels == [124, 76])
        let gray = DecodedImage(width: 2, height: 1, channels: 1, pixels: [7, 9])
        #expect(gray.converted(toChannels: 3).pixels == [7, 7, 7, 9, 9, 9])
        #expect(gray.inverted().pixels == [248, 246])
    }

    @Test("halving averages pixel pairs; the same size is the identity")
    func halving() {
        // Reducing by 2: each output centre sits between two inputs, the triangle of radius 2
        // gives them weights 3/4 : 3/4 and their outer neighbours 1/4 : 1/4 (normalised: 3/8, 3/8, 1/8, 1/8).
        let row = DecodedImage(width: 4, height: 1, channels: 1, pixels: [0, 80, 160, 240])
        let half = row.resized(width: 2, height: 1)
        // Left: (0·3 + 80·3 + 160·1)/ (3+3+1) at the border (no input left of 0): 400/7 = 57.1 → 57.
        // Right: (80·1 + 160·3 + 240·3)/7 = 1280/7 = 182.9 → 183.
        #expect(half.pixels == [57, 183])
        #expect(row.resized(width: 4, height: 1) == row)
    }

    @Test("enlarging a constant image keeps it constant; CHW reorders planes")
    func constantAndPlanar() {
        let image = DecodedImage(width: 3, height: 2, channels: 3, pixels: (0..<6).flatMap { _ in [10, 20, 30] as [UInt8] })
        let big = image.resized(width: 17, height: 11)
        #expect(big.width == 17 && big.height == 11 && big.pixels.count == 17 * 11 * 3)
        #expect(big.planarPixels == [UInt8](repeating: 10, count: 187) + [UInt8](repeating: 20, count: 187) + [UInt8](repeating: 30, count: 187))
    }

    @Test("the border mean reads the outer ring only")
    func border() {
        // 3x3: ring of 200, centre 0 → mean 200.
        var pixels = [UInt8](repeating: 200, count: 9)
        pixels[4] = 0
        #expect(DecodedImage(width: 3, height: 3, channels: 1, pixels: pixels).borderMean == 200)
    }

    @Test("digit framing: the ink's box scaled to the box size, centred by mass")
    func digitFraming() throws {
        // A 10-wide, 40-tall bar of ink at the top left of a 100x100 image becomes a 5x20 bar
        // centred in 28x28: columns 12..<17 (centre 14.5 → shift rounds 14 − 2.5 = 11.5 to 12), rows 4..<24.
        var pixels = [UInt8](repeating: 0, count: 100 * 100)
        for y in 5..<45 { for x in 3..<13 { pixels[y * 100 + x] = 255 } }
        let framed = try #require(DecodedImage(width: 100, height: 100, channels: 1, pixels: pixels).framedAsDigit(box: 20, side: 28))
        let inked = framed.pixels.indices.filter { framed.pixels[$0] > 128 }
        #expect(Set(inked.map { $0 % 28 }) == Set(12..<17))
        #expect(Set(inked.map { $0 / 28 }) == Set(4..<24))
        #expect(DecodedImage(width: 2, height: 2, channels: 1, pixels: [0, 0, 0, 0]).framedAsDigit(box: 20, side: 28) == nil)
    }
}
