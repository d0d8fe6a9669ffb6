import Backprop
import BackpropData
import BackpropTraining
import Foundation
import Testing

/// Two 1 x 3 x 4 images (C x H x W) with bytes `1…12` and `12…1`, preprocessed with
/// `scale = 1, mean = 0.5`.
private let images = LabeledImages(count: 2, channels: 1, height: 3, width: 4,
                                   pixels: Array(1...12) + Array((1...12).reversed()), labels: [0, 1])
private let half = Preprocessing(scale: 1, mean: [0.5])

/// Image `index` shifted by `(dy, dx)` (output `(y, x)` reads input `(y + dy, x + dx)`, zero
/// outside) and then mirrored — written out by hand, not through the renderer.
private func view(_ index: Int, dy: Int, dx: Int, flip: Bool) -> [Float] {
    var out = [Float](repeating: 0, count: 12)
    for y in 0..<3 {
        for x in 0..<4 {
            let (sy, sx) = (y + dy, (flip ? 3 - x : x) + dx)
            guard (0..<3).contains(sy), (0..<4).contains(sx) else { continue }
            out[y * 4 + x] = Float(images.pixels[index * 12 + sy * 4 + sx]) - 0.5
        }
    }
    return out
}

@Suite("Test-time augmentation")
struct TestTimeAugmentationTests {
    @Test("spelling: canonical round trip, defaults, and one-line errors")
    func spelling() throws {
        for text in ["none", "flip", "translate:1", "flip,translate:2:zero", "shift:1", "shift:2:reflect,flip", "grid:1", "flip,grid:2:reflect"] {
            let t = try TestTimeAugmentation(parsing: text)
            #expect(try TestTimeAugmentation(parsing: t.description) == t)
        }
        #expect(try TestTimeAugmentation(parsing: "translate:1").description == "translate:1:reflect")
        #expect(try TestTimeAugmentation(parsing: "shift:1").description == "shift:1:zero")
        #expect(try TestTimeAugmentation(parsing: "none").isIdentity)
        for bad in ["", "flip,flip", "translate", "translate:0", "shift:1,translate:1", "grid:1,shift:1", "translate:1:wrap", "rotate", "none,flip"] {
            #expect(throws: SpecError.self, "\(bad)") { try TestTimeAugmentation(parsing: bad) }
        }
        #expect(throws: SpecError.self) { try TestTimeAugmentation(parsing: "shift:3").validate(height: 3, width: 4) }
    }

    @Test("views: airbench's weights (½ plain, ¼ per diagonal move, halved by the mirror), summing to 1")
    func views() throws {
        let t = try TestTimeAugmentation(parsing: "flip,translate:1")
        let views = t.views
        #expect(views.count == 6)
        #expect(abs(views.map(\.weight).reduce(0, +) - 1) < 1e-6)
        #expect(views[0].draw == Augmentation.Draw() && views[0].weight == 0.25)
        #expect(views[1].draw == Augmentation.Draw(flip: true) && views[1].weight == 0.25)
        #expect(views.contains { $0.draw == Augmentation.Draw(rowShift: 1, columnShift: 1) && $0.weight == 0.125 })
        let axes = try TestTimeAugmentation(parsing: "shift:2").views
        #expect(axes.count == 5 && abs(axes.map(\.weight).reduce(0, +) - 1) < 1e-6)
        #expect(Set(axes.dropFirst().map { [$0.draw.rowShift, $0.draw.columnShift] }) == [[-2, 0], [2, 0], [0, -2], [0, 2]])
        let grid = try TestTimeAugmentation(parsing: "grid:1").views
        #expect(grid.count == 9 && Set(grid.map { [$0.draw.rowShift, $0.draw.columnShift] }).count == 9)
        #expect(grid.allSatisfy { abs($0.weight - 1.0 / 9) < 1e-7 })
    }

    /// A linear network's logits are linear in its input, so the weighted mean of the views'
    /// logits is the logits of the weighted mean of the views — computed here from views written
    /// by hand.
    @Test("predictions average the views' logits (checked through a linear network)")
    func averagedLogits() throws {
        var generator = SeededGenerator(seed: 7)
        let spec = NetworkSpec(input: [1, 3, 4], layers: [.flatten, .dense(outputFeatures: 5, initScale: 1)])
        let network = try spec.makeNetwork(Float.self, using: &generator)
        for text in ["flip", "shift:1:zero", "flip,translate:1:zero", "grid:1"] {
            let t = try TestTimeAugmentation(parsing: text)
            let predictions = Predictions(network: network, images: images, preprocessing: half, augmentation: t, batchSize: 1)
            for index in 0..<2 {
                var mean = [Float](repeating: 0, count: 12)
                for (draw, weight) in t.views {
                    let v = view(index, dy: draw.rowShift, dx: draw.columnShift, flip: draw.flip)
                    for i in 0..<12 { mean[i] += weight * v[i] }
                }
                let logits = network.forward(Tensor(shape: [1, 1, 3, 4], scalars: mean)).scalars
                let best = logits.indices.max { logits[$0] < logits[$1] }!
                #expect(predictions.classes[index] == best, "\(text), image \(index)")
                let softmax = logits.map { exp(Double($0 - logits[best])) }
                #expect(abs(Double(predictions.confidences[index]) - 1 / softmax.reduce(0, +)) < 1e-4, "\(text), image \(index)")
            }
        }
        // No augmentation: exactly the plain predictions.
        let plain = Predictions(network: network, inputs: half.apply(to: images))
        let none = Predictions(network: network, images: images, preprocessing: half, augmentation: TestTimeAugmentation())
        #expect(plain.classes == none.classes && plain.confidences == none.confidences)
    }

    @Test("a spec's test_time_augmentation reaches the saved model, and the model file keeps it")
    func savedWithTheModel() throws {
        let text = """
            {"dataset": "mnist", "input": [1, 28, 28], "layers": [{"type": "flatten"}, {"type": "dense", "out_features": 10}],
             "training": {"test_time_augmentation": "shift:1"}}
            """
        let experiment = try Experiment(specData: Data(text.utf8), source: "tta.json")
        #expect(experiment.options.testTimeAugmentation == TestTimeAugmentation(shifts: .axes(pixels: 1, fill: .zero)))
        var generator = SeededGenerator(seed: 1)
        let network = try experiment.network.makeNetwork(Float.self, using: &generator)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tta-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let archive = ModelArchive(network: network, spec: experiment.network, dataset: .mnist,
                                   preprocessing: Preprocessing(scale: 1 / 255, mean: [0.1]),
                                   classNames: (0..<10).map(String.init), testTimeAugmentation: experiment.options.testTimeAugmentation)
        try archive.save(to: folder)
        let loaded = try ModelArchive.load(from: folder)
        #expect(loaded.testTimeAugmentation == experiment.options.testTimeAugmentation)
        // A bad spelling in a model file is a load error, not a trap.
        #expect(throws: SpecError.self) {
            try Experiment(specData: Data(text.replacingOccurrences(of: "shift:1", with: "shift:x").utf8), source: "tta.json")
        }
    }
}
