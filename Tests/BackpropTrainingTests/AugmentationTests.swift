import Backprop
import BackpropData
import BackpropTraining
import Foundation
import Testing

/// One 1 x 3 x 4 image (C x H x W), bytes
///
/// ```
///  1  2  3  4
///  5  6  7  8
///  9 10 11 12
/// ```
///
/// preprocessed with `scale = 1, mean = 0.5`, so `v = byte − 0.5` and a zero fill (0) is told
/// apart from a byte 0 (−0.5).
private let tiny = LabeledImages(count: 1, channels: 1, height: 3, width: 4, pixels: Array(1...12), labels: [0])
private let half = Preprocessing(scale: 1, mean: [0.5])

/// `bytes − 0.5`, with `nil` for a zero-filled pixel (0).
private func expected(_ bytes: [Int?]) -> [Float] { bytes.map { $0.map { Float($0) - 0.5 } ?? 0 } }

@Suite("Augmentation")
struct AugmentationTests {
    // MARK: The kernel, by hand

    @Test("crop:1:reflect, window at top 0, left 2: PyTorch's reflect padding, by hand")
    func cropReflect() {
        // Padded by 1 with "reflect" (the row above row 0 is row 1; the column after column 3 is
        // column 2):
        //    6  5  6  7  8  7
        //    2  1  2  3  4  3
        //    6  5  6  7  8  7
        //   10  9 10 11 12 11
        //    6  5  6  7  8  7
        // The 3x4 window at top i = 0, left j = 2 (dy = i − 1 = −1, dx = j − 1 = +1):
        let augmentation = Augmentation(shift: .crop(padding: 1, fill: .reflect))
        let out = augmentation.apply(.init(rowShift: -1, columnShift: 1), to: tiny, index: 0, preprocessing: half)
        #expect(out == expected([6, 7, 8, 7,
                                 2, 3, 4, 3,
                                 6, 7, 8, 7]))
    }

    @Test("crop:1 with zero padding: the normalised image is padded with 0 (the mean pixel)")
    func cropZero() {
        // Same window as above over the image padded with zeros:
        //   0  0  0  0  0  0
        //   0  1  2  3  4  0
        //   0  5  6  7  8  0   …  window rows 0–2, columns 2–5.
        let augmentation = Augmentation(shift: .crop(padding: 1, fill: .zero))
        let out = augmentation.apply(.init(rowShift: -1, columnShift: 1), to: tiny, index: 0, preprocessing: half)
        #expect(out == expected([nil, nil, nil, nil,
                                 2, 3, 4, nil,
                                 6, 7, 8, nil]))
    }

    @Test("flip mirrors every row")
    func flip() {
        let out = Augmentation(flip: .random).apply(.init(flip: true), to: tiny, index: 0, preprocessing: half)
        #expect(out == expected([4, 3, 2, 1,
                                 8, 7, 6, 5,
                                 12, 11, 10, 9]))
    }

    @Test("translate then flip: out(y, x) = v(r(y + dy), r(W − 1 − x + dx))")
    func translateThenFlip() {
        // dy = +1, dx = −2, reflect. Shifted first: row y reads row r(y + 1) = 1, 2, 1, columns
        // r(x − 2) = 2, 1, 0, 1: [7 6 5 6], [11 10 9 10], [7 6 5 6]. Then flipped left–right.
        let augmentation = Augmentation(flip: .alternating, shift: .translate(pixels: 2, fill: .reflect))
        let out = augmentation.apply(.init(flip: true, rowShift: 1, columnShift: -2), to: tiny, index: 0, preprocessing: half)
        #expect(out == expected([6, 5, 6, 7,
                                 10, 9, 10, 11,
                                 6, 5, 6, 7]))
    }

    @Test("per-channel means and scale, zero fill, shift down the rows")
    func channels() {
        // 3 x 2 x 2, channel c holds bytes 10c+1 … 10c+4; x = byte · 0.5 − mean[c], means 1, 2, 3.
        let images = LabeledImages(count: 1, channels: 3, height: 2, width: 2,
                                   pixels: [1, 2, 3, 4, 11, 12, 13, 14, 21, 22, 23, 24], labels: [0])
        let p = Preprocessing(scale: 0.5, mean: [1, 2, 3])
        // dy = +1: output row 0 reads row 1, output row 1 reads row 2 (outside: 0).
        let out = Augmentation(shift: .translate(pixels: 1, fill: .zero))
            .apply(.init(rowShift: 1), to: images, index: 0, preprocessing: p)
        #expect(out == [0.5, 1, 0, 0,   4.5, 5, 0, 0,   8.5, 9, 0, 0])
    }

    @Test("every shift and flip of a 2 x 5 x 7 image matches the rule, written out plainly",
          arguments: Augmentation.Fill.allCases)
    func kernelMatchesRule(fill: Augmentation.Fill) {
        let (c, h, w) = (2, 5, 7)
        let images = LabeledImages(count: 1, channels: c, height: h, width: w,
                                   pixels: (0..<(c * h * w)).map { UInt8(($0 * 53 + 11) % 256) }, labels: [0])
        let p = Preprocessing(scale: 0.25, mean: [3, 7])
        let augmentation = Augmentation(shift: .translate(pixels: 4, fill: fill))
        // The rule of `Augmentation`'s documentation, one pixel at a time.
        func v(_ channel: Int, _ i: Int, _ j: Int) -> Float {
            func r(_ i: Int, _ n: Int) -> Int { i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i) }
            let inside = (0..<h).contains(i) && (0..<w).contains(j)
            if !inside && fill == .zero { return 0 }
            let (y, x) = inside ? (i, j) : (r(i, h), r(j, w))
            return Float(images.pixels[(channel * h + y) * w + x]) * p.scale - p.mean[channel]
        }
        for flip in [false, true] {
            for dy in -4...4 {
                for dx in -4...4 {
                    let draw = Augmentation.Draw(flip: flip, rowShift: dy, columnShift: dx)
                    let expected = (0..<c).flatMap { channel in
                        (0..<h).flatMap { y in (0..<w).map { x in v(channel, y + dy, (flip ? w - 1 - x : x) + dx) } }
                    }
                    #expect(augmentation.apply(draw, to: images, index: 0, preprocessing: p) == expected, "\(draw)")
                }
            }
        }
    }

    @Test("no change gives exactly Preprocessing.apply's values")
    func identityIsPreprocessing() {
        let images = LabeledImages(count: 2, channels: 3, height: 5, width: 4,
                                   pixels: (0..<120).map { UInt8(($0 * 37) % 256) }, labels: [0, 1])
        let p = Preprocessing(scale: 1 / 255, mean: [0.3, 0.1, 0.7])
        let reference = p.apply(to: images, indices: [1]).scalars
        let out = Augmentation(flip: .alternating, shift: .crop(padding: 2, fill: .reflect))
            .apply(.init(), to: images, index: 1, preprocessing: p)
        #expect(out.map(\.bitPattern) == reference.map(\.bitPattern))
    }

    // MARK: The random choices

    @Test("draws are a pure function of (seed, epoch, example), shifts uniform over [−P, P]")
    func draws() {
        let augmentation = Augmentation(flip: .random, shift: .crop(padding: 2, fill: .zero))
        var rows = [Int: Int](), columns = [Int: Int](), flips = 0
        for example in 0..<5000 {
            let draw = augmentation.draw(seed: 42, epoch: 3, example: example)
            #expect(draw == augmentation.draw(seed: 42, epoch: 3, example: example))
            rows[draw.rowShift, default: 0] += 1
            columns[draw.columnShift, default: 0] += 1
            flips += draw.flip ? 1 : 0
        }
        #expect(Set(rows.keys) == Set(-2...2) && Set(columns.keys) == Set(-2...2))
        #expect(rows.values.allSatisfy { (800...1200).contains($0) }, "\(rows)")
        #expect(columns.values.allSatisfy { (800...1200).contains($0) }, "\(columns)")
        #expect((2300...2700).contains(flips), "\(flips) flips in 5000")
        // Another seed, epoch or example draws differently (for some of 100 examples).
        let draws = (0..<100).map { augmentation.draw(seed: 42, epoch: 3, example: $0) }
        #expect(draws != (0..<100).map { augmentation.draw(seed: 43, epoch: 3, example: $0) })
        #expect(draws != (0..<100).map { augmentation.draw(seed: 42, epoch: 4, example: $0) })
        #expect(draws != (1..<101).map { augmentation.draw(seed: 42, epoch: 3, example: $0) })
    }

    @Test("crop:K and translate:K are the same transform with the same draws")
    func cropIsTranslate() {
        let crop = Augmentation(flip: .random, shift: .crop(padding: 3, fill: .reflect))
        let translate = Augmentation(flip: .random, shift: .translate(pixels: 3, fill: .reflect))
        for example in 0..<50 {
            #expect(crop.draw(seed: 7, epoch: 1, example: example) == translate.draw(seed: 7, epoch: 1, example: example))
        }
    }

    @Test("altflip over 3 epochs: about half flipped in epoch 0, then exactly the others, then the first half again")
    func alternatingFlip() {
        let augmentation = Augmentation(flip: .alternating)
        let n = 2000
        let epochs = (0..<3).map { epoch in (0..<n).map { augmentation.draw(seed: 42, epoch: epoch, example: $0).flip } }
        let flipped = epochs[0].filter { $0 }.count
        #expect((900...1100).contains(flipped), "\(flipped) of \(n) flipped in epoch 0")
        #expect(epochs[1] == epochs[0].map { !$0 }, "epoch 1 flips exactly the images epoch 0 did not")
        #expect(epochs[2] == epochs[0], "epoch 2 flips exactly the images epoch 1 did not")
        // Plain flip draws afresh: some images keep their flip from one epoch to the next.
        let random = Augmentation(flip: .random)
        let kept = (0..<n).filter {
            random.draw(seed: 42, epoch: 0, example: $0).flip == random.draw(seed: 42, epoch: 1, example: $0).flip
        }.count
        #expect((900...1100).contains(kept), "\(kept) of \(n) images kept their flip")
    }

    // MARK: Spelling

    @Test("parsing the CLI spelling", arguments: [
        ("none", Augmentation()),
        ("flip", Augmentation(flip: .random)),
        ("altflip", Augmentation(flip: .alternating)),
        ("crop:4", Augmentation(shift: .crop(padding: 4, fill: .zero))),
        ("crop:4:reflect", Augmentation(shift: .crop(padding: 4, fill: .reflect))),
        ("translate:2", Augmentation(shift: .translate(pixels: 2, fill: .reflect))),
        ("translate:2:zero", Augmentation(shift: .translate(pixels: 2, fill: .zero))),
        ("altflip,translate:2", Augmentation(flip: .alternating, shift: .translate(pixels: 2, fill: .reflect))),
        (" Crop:4:REFLECT , flip ", Augmentation(flip: .random, shift: .crop(padding: 4, fill: .reflect))),
    ])
    func parse(text: String, expected: Augmentation) throws {
        let parsed = try Augmentation(parsing: text)
        #expect(parsed == expected)
        #expect(try Augmentation(parsing: parsed.description) == parsed, "\(parsed.description)")
    }

    @Test("spelling errors are one line naming the problem", arguments: [
        ("", "empty item"),
        ("flip,", "empty item"),
        ("flip,altflip", "one of flip and altflip"),
        ("flip,flip", "one of flip and altflip"),
        ("flip:1", "takes no value"),
        ("crop", "needs pixels"),
        ("crop:0", "1 or more"),
        ("crop:-2", "1 or more"),
        ("crop:x", "1 or more"),
        ("crop:4:mirror", "zero or reflect"),
        ("crop:4:zero:1", "needs pixels"),
        ("crop:4,translate:2", "one of crop and translate"),
        ("none,flip", "cannot be combined"),
        ("rotate:5", "unknown item \"rotate:5\""),
    ])
    func parseErrors(text: String, reason: String) {
        do {
            let parsed = try Augmentation(parsing: text)
            Issue.record("\"\(text)\" parsed as \(parsed)")
        } catch {
            #expect(error.description.hasPrefix("bad augmentation \"\(text)\": "), "\(error)")
            #expect(error.description.contains(reason), "\(error)")
            #expect(!error.description.contains("\n"))
        }
    }

    @Test("a shift must be smaller than the image")
    func validate() throws {
        try Augmentation(shift: .crop(padding: 2, fill: .reflect)).validate(height: 3, width: 4)
        #expect(throws: SpecError.self) { try Augmentation(shift: .crop(padding: 3, fill: .zero)).validate(height: 3, width: 4) }
    }

    @Test("the JSON of a run")
    func json() throws {
        let augmentation = Augmentation(flip: .alternating, shift: .translate(pixels: 2, fill: .reflect))
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let text = String(decoding: try encoder.encode(augmentation), as: UTF8.self)
        #expect(text == #"{"flip":"alternating","shift":{"translate":{"fill":"reflect","pixels":2}}}"#)
        #expect(try JSONDecoder().decode(Augmentation.self, from: Data(text.utf8)) == augmentation)
        #expect(try JSONDecoder().decode(Augmentation.self, from: Data("{}".utf8)) == Augmentation())
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(Augmentation.self, from: Data(#"{"shift":{"crop":{"padding":0,"fill":"zero"}}}"#.utf8))
        }
    }
}
