import Backprop
import BackpropData
import BackpropReport
import BackpropTraining
import Foundation
import BackpropTestSupport
import Testing

/// A model of the `mnist` preset trained for 800 iterations by `backprop train`, made once for
/// every test here (in a temporary folder left for the system to clean). Measured: about 97 %
/// test accuracy.
private let trainedRun: Result<URL, any Error> = Result {
    let folder = try TemporaryFolder()
    let run = folder.url.appendingPathComponent("run")
    let result = try backprop(["train", "mnist", "--iterations", "800", "--no-test", "--data-dir", TestData.root.path, "--out", run.path])
    guard result.exited && result.status == 0 else { throw TestFailure(description: "training failed: \(result.summary)") }
    return run
}

private struct TestFailure: Error, CustomStringConvertible { var description: String }

private let imageFixtures = TestPaths.packageRoot.appendingPathComponent("Tests/BackpropDataTests/Fixtures/images", isDirectory: true)
private let digitFixtures = TestPaths.packageRoot.appendingPathComponent("Tests/BackpropTrainingTests/Fixtures", isDirectory: true)

/// The JSON `predict --json` printed, as plain objects.
private func predictions(_ result: ProcessResult) throws -> (record: [String: Any], images: [[String: Any]]) {
    let record = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout.prefix(300))")
    let images = try #require(record["images"] as? [[String: Any]])
    return (record, images)
}

private func topClass(_ image: [String: Any]) -> (index: Int, name: String, probability: Double)? {
    guard let top = (image["top"] as? [[String: Any]])?.first, let index = top["index"] as? Int,
          let name = top["class"] as? String, let probability = top["probability"] as? Double else { return nil }
    return (index, name, probability)
}

@Suite("backprop predict")
struct PredictTests {
    /// MNIST test images written out as PNG files (gray, and RGB with R = G = B, which luma maps
    /// back to the same gray) get the classes `evaluate`'s code gives the same images.
    @Test("predict agrees with evaluate on MNIST test images written as PNG files")
    func agreesWithEvaluate() throws {
        let run = try trainedRun.get()
        let dataset = try TestData.mnistDataset.get()
        let count = 300
        let images = dataset.test.prefix(count)
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let pngFolder = folder.url.appendingPathComponent("png")
        for i in 0..<count {
            var image = PixelImage(planar: images.pixels(ofImage: i), channels: 1, height: 28, width: 28)
            if i >= 200 { image = image.rgb }
            try folder.write([UInt8](image.pngData()), to: "png/" + String(format: "test-%05d.png", i))
        }
        let model = try ModelArchive.load(from: run)
        let expected = model.evaluate(on: images).predictions

        let csv = folder.file("predictions.csv")
        let result = try backprop(["predict", run.path, pngFolder.path, "--json", "--top", "2", "--csv", csv.path])
        #expect(result.exited && result.status == 0, "\(result.summary)")
        let (record, predicted) = try predictions(result)
        #expect(record["format"] as? String == "backprop-predictions" && record["version"] as? Int == 1)
        #expect(record["dataset"] as? String == "mnist")
        try #require(predicted.count == count)
        var disagreements: [Int] = []
        for i in 0..<count {
            let top = try #require(topClass(predicted[i]))
            #expect((predicted[i]["file"] as? String)?.hasSuffix(String(format: "test-%05d.png", i)) == true)
            if top.index != expected.classes[i] { disagreements.append(i) }
            #expect(abs(top.probability - Double(expected.confidences[i])) < 1e-4, "image \(i)")
            #expect((predicted[i]["top"] as? [Any])?.count == 2)
            #expect(predicted[i]["inverted"] as? Bool == false)
        }
        #expect(disagreements.isEmpty, "predict and evaluate disagree on images \(disagreements)")
        // The model is not perfect on these images, so agreement is not just both being right.
        let wrong = (0..<count).filter { expected.classes[$0] != Int(images.labels[$0]) }
        #expect(!wrong.isEmpty && wrong.count < 30, "misclassified: \(wrong)")

        // The CSV: a header, then one row per image with its predicted index and 10 probabilities.
        let rows = try String(contentsOf: csv, encoding: .utf8).split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false) }
        #expect(rows.first?.prefix(4) == ["file", "predicted_class", "predicted_index", "probability"])
        #expect(rows.count == count + 1 && rows.dropFirst().allSatisfy { $0.count == 14 })
        #expect(rows.dropFirst().map { Int($0[2]) ?? -1 } == expected.classes)
    }

    @Test("a hand-drawn-style 7 (dark ink on light paper) is read as a 7, with the preprocessing shown")
    func handDrawnDigit() throws {
        let run = try trainedRun.get()
        let png = digitFixtures.appendingPathComponent("hand-drawn-7.png").path
        let jpeg = digitFixtures.appendingPathComponent("hand-drawn-7.jpg").path
        let verbose = try backprop(["predict", run.path, png, jpeg, "--verbose"])
        #expect(verbose.exited && verbose.status == 0, "\(verbose.summary)")
        #expect(verbose.stdout.contains("decoded: PNG, 8-bit grayscale, 160x200"), "\(verbose.stdout)")
        #expect(verbose.stdout.contains("decoded: JPEG, baseline YCbCr, 160x200"), "\(verbose.stdout)")
        #expect(verbose.stdout.contains("channels: RGB to gray"), "\(verbose.stdout)")
        #expect(verbose.stdout.contains("inverted: 255 - v (auto: the border's mean brightness"), "\(verbose.stdout)")
        #expect(verbose.stdout.contains("resized: 160x200 to 28x28 (bilinear, antialiased; the aspect ratio is not kept)"), "\(verbose.stdout)")
        #expect(verbose.stdout.contains("normalized: x = byte * 0.00392157 - mean"), "\(verbose.stdout)")

        for arguments in [[png, jpeg], [png, jpeg, "--center-digit"]] {
            let result = try backprop(["predict", run.path] + arguments + ["--json"])
            #expect(result.exited && result.status == 0, "\(result.summary)")
            let (_, images) = try predictions(result)
            #expect(images.count == 2)
            for image in images {
                #expect(topClass(image)?.name == "7", "\(arguments): \(image)")
                #expect(image["inverted"] as? Bool == true)
            }
        }
        // Not inverted, the digit is dark on light: the model no longer sees a 7 with confidence.
        let plain = try backprop(["predict", run.path, png, "--invert", "no", "--json"])
        let (_, images) = try predictions(plain)
        #expect(images.first.flatMap(topClass).map { $0.name != "7" || $0.probability < 0.5 } == true, "\(images)")
    }

    @Test("hostile or missing images and bad flags: one Error line, a non-zero exit, nothing written",
          arguments: ["truncated.png", "truncated.jpg", "bad-crc.png", "huge.png", "huge.jpg", "not-an-image.png", "empty.jpg", "corrupt.jpg"])
    func hostileImage(name: String) throws {
        let run = try trainedRun.get()
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let good = digitFixtures.appendingPathComponent("hand-drawn-7.png").path
        let bad = imageFixtures.appendingPathComponent(name).path
        let csv = folder.file("out.csv")
        let result = try backprop(["predict", run.path, good, bad, "--csv", csv.path])
        #expect(result.exited && result.status == 1, "\(result.summary)")
        #expect(result.stderrLines.count == 1 && result.stderrLines.first?.hasPrefix("Error: \(bad): ") == true, "\(result.stderr)")
        #expect(result.stdout.isEmpty && !FileManager.default.fileExists(atPath: csv.path))
    }

    @Test("usage mistakes and empty folders are refused")
    func usage() throws {
        let run = try trainedRun.get()
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let png = digitFixtures.appendingPathComponent("hand-drawn-7.png").path
        for (arguments, words, status) in [
            ([png, "--top", "0"], "--top must be from 1 to 10", Int32(2)),
            ([png, "--top", "11"], "--top must be from 1 to 10", 2),
            ([png, "--invert", "maybe"], "--invert must be auto, yes or no", 2),
            ([], "name at least one image", 2),
            ([folder.url.path], "holds no .png, .jpg or .jpeg files", 1),
            ([folder.file("missing.png").path], "no such file or folder", 1),
        ] {
            let result = try backprop(["predict", run.path] + arguments)
            #expect(result.exited && result.status == status, "\(arguments): \(result.summary)")
            #expect(result.stderrLines.first?.hasPrefix("Error: ") == true && result.stderr.contains(words), "\(arguments): \(result.stderr)")
        }
        let noModel = try backprop(["predict", folder.url.path, png])
        #expect(noModel.exited && noModel.status == 1 && noModel.stderr.contains("no model file here"), "\(noModel.summary)")
    }
}

@Suite("Image folder end to end")
struct ImageFolderCLITests {
    /// MNIST test images of 0, 1 and 7 written as PNG files into `root/<digit name>/`, a spec with
    /// `"dataset": "image-folder"`: train, evaluate and predict all read the folder.
    @Test("train, evaluate and predict on an image folder of PNG files")
    func trainOnImageFolder() throws {
        let dataset = try TestData.mnistDataset.get()
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let names = [0: "zero", 1: "one", 7: "seven"]
        var written: [Int: Int] = [:]
        for i in 0..<dataset.test.count {
            let label = Int(dataset.test.labels[i])
            guard let name = names[label], written[label, default: 0] < 150 else { continue }
            let image = PixelImage(planar: dataset.test.pixels(ofImage: i), channels: 1, height: 28, width: 28)
            try folder.write([UInt8](image.pngData()), to: "digits/\(name)/\(String(format: "%05d", i)).png")
            written[label, default: 0] += 1
        }
        let spec = folder.file("spec.json")
        try Data("""
            {"dataset": "image-folder", "input": [1, 28, 28],
             "layers": [{"type": "flatten"}, {"type": "dense", "out_features": 3}],
             "training": {"iterations": 150, "learning_rate": 0.05}}
            """.utf8).write(to: spec)
        let run = folder.file("run")
        let training = try backprop(["train", "--spec", spec.path, "--data-dir", folder.file("digits").path, "--out", run.path])
        #expect(training.exited && training.status == 0, "\(training.summary)")
        // 450 images, every fifth of a class for testing: 360 training, 90 test.
        let record = try JSONDecoder().decode(RunRecord.self, from: Data(contentsOf: run.appendingPathComponent("training.json")))
        #expect(record.dataset == "image-folder" && record.trainImages == 360 && record.options.trainSize == 360)
        let accuracy = try #require(record.testAccuracy)
        #expect(accuracy > 0.9, "test accuracy \(accuracy)")
        let model = try ModelArchive.load(from: run)
        #expect(model.dataset == .imageFolder && model.classNames == ["one", "seven", "zero"])

        let evaluation = try backprop(["evaluate", run.path, "--data-dir", folder.file("digits").path])
        #expect(evaluation.exited && evaluation.status == 0, "\(evaluation.summary)")
        #expect(evaluation.stdout.contains(String(format: "test accuracy %.2f%% (", accuracy * 100)) && evaluation.stdout.contains("of 90)"),
                "\(evaluation.stdout.prefix(200))")

        let prediction = try backprop(["predict", run.path, folder.file("digits/seven").path, "--json", "--top", "1"])
        let (_, images) = try predictions(prediction)
        #expect(images.count == 150)
        let sevens = images.filter { topClass($0)?.name == "seven" }.count
        #expect(sevens > 130, "\(sevens) of 150 sevens")

        // A class folder without images is refused before anything is trained.
        try FileManager.default.createDirectory(at: folder.file("digits/eight"), withIntermediateDirectories: true)
        let refused = try backprop(["train", "--spec", spec.path, "--data-dir", folder.file("digits").path, "--out", folder.file("run2").path])
        #expect(refused.exited && refused.status == 1 && refused.stderrLines.count == 1
                && refused.stderr.contains("class 'eight' holds no .png, .jpg or .jpeg files"), "\(refused.summary)")
    }
}

@Suite("Image preparation")
struct ImagePreparationTests {
    private func model(_ dataset: DatasetKind) throws -> ModelArchive {
        let experiment = try #require(Experiment.preset(named: dataset == .cifar10 ? "cifar10" : "mnist"))
        var generator = SeededGenerator(seed: 1)
        let network = try experiment.network.makeNetwork(Float.self, using: &generator)
        return ModelArchive(network: network, spec: experiment.network, dataset: dataset,
                            preprocessing: Preprocessing(scale: 1 / 255, mean: [0.1]), classNames: (0...9).map(String.init))
    }

    @Test("auto inverts a light-bordered image for MNIST-like models only")
    func automaticInversion() throws {
        // A 4x4 gray image: light border (200), dark centre (10).
        var pixels = [UInt8](repeating: 200, count: 16)
        for i in [5, 6, 9, 10] { pixels[i] = 10 }
        let light = DecodedImage(width: 4, height: 4, channels: 1, pixels: pixels)
        let mnist = try model(.mnist)
        let prepared = try ImagePreparation().prepare(light, for: mnist)
        #expect(prepared.inverted)
        // Inverted (55 border, 245 centre), then enlarged 4x4 → 28x28: the corner stays 55, the centre 245.
        #expect(prepared.pixels.count == 784 && prepared.pixels[0] == 55 && prepared.pixels[14 * 28 + 14] == 245)
        #expect(try !ImagePreparation().prepare(light.inverted(), for: mnist).inverted)
        #expect(try !ImagePreparation(inversion: .never).prepare(light, for: mnist).inverted)
        #expect(try ImagePreparation(inversion: .always).prepare(light.inverted(), for: mnist).inverted)
        #expect(try ImagePreparation().prepare(light, for: model(.fashionMNIST)).inverted)
        // CIFAR-10 models: never automatically; the gray image becomes RGB, planar.
        let cifar = try ImagePreparation().prepare(light, for: model(.cifar10))
        #expect(!cifar.inverted && cifar.pixels.count == 3 * 32 * 32 && cifar.pixels[0] == 200 && cifar.pixels[1024] == 200)
    }

    @Test("--center-digit refuses a model it does not fit and an image without ink")
    func framingLimits() throws {
        let blank = DecodedImage(width: 5, height: 5, channels: 1, pixels: [UInt8](repeating: 255, count: 25))
        #expect(throws: ImagePreparation.Failure.self) { try ImagePreparation(framesDigit: true).prepare(blank, for: model(.mnist)) }
        #expect(throws: ImagePreparation.Failure.self) { try ImagePreparation(framesDigit: true).prepare(blank, for: model(.cifar10)) }
    }
}
