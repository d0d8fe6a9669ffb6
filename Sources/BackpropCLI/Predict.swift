import ArgumentParser
import Backprop
import BackpropData
import BackpropTraining
import Foundation

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Classify PNG and JPEG images with a run's model: the top classes and their probabilities.",
        discussion: """
            Each image is converted to the model's channels, inverted when it is a dark figure on a light \
            background and the model was trained on light figures on dark (MNIST, Fashion-MNIST; --invert), \
            resized to the model's input (or, with --center-digit, framed as MNIST framed its digits), and \
            normalized with the model's saved preprocessing. A folder argument classifies every .png, .jpg \
            and .jpeg file in it (not in subfolders), in name order.
            """)

    @Argument(help: ArgumentHelp("The run folder (or a model .safetensors file).", valueName: "run")) var runFolder: String
    @Argument(help: ArgumentHelp("PNG or JPEG files, or folders of them.", valueName: "image")) var images: [String] = []
    @Option(parsing: .unconditional, help: ArgumentHelp("Show the K most probable classes (default 3).", valueName: "k")) var top: Int = 3
    @Option(help: ArgumentHelp("Invert the images: auto (a light border means a light background, for MNIST-like models), yes or no.", valueName: "auto|yes|no"))
    var invert: String = "auto"
    @Flag(help: "Frame the digit as MNIST did: its ink's bounding box scaled to 20x20, centred by mass in 28x28.") var centerDigit = false
    @Flag(help: "Print machine-readable JSON instead of text.") var json = false
    @Option(help: ArgumentHelp("Also write every image's prediction and class probabilities to this CSV file.", valueName: "file"))
    var csv: String?
    @Flag(help: "Show the preprocessing applied to each image.") var verbose = false
    @OptionGroup var threading: ThreadOptions

    func run() throws {
        try threading.apply()
        guard let inversion = ImagePreparation.Inversion(rawValue: invert) else {
            throw UserError.usage("--invert must be auto, yes or no, not '\(invert)'")
        }
        guard !images.isEmpty else { throw UserError.usage("name at least one image file or folder after the run folder") }
        if let csv { _ = try nonEmpty(csv, "--csv") }
        let folder = URL(fileURLWithPath: try nonEmpty(runFolder, "the run folder"))
        let model = try userFacing { try ModelArchive.load(from: folder) }
        guard top >= 1 && top <= model.classNames.count else {
            throw UserError.usage("--top must be from 1 to \(model.classNames.count) (the model's classes), got \(top)")
        }
        let files = try imageFiles()
        let preparation = ImagePreparation(inversion: inversion, framesDigit: centerDigit)

        // Decode and prepare every image before classifying any: one bad file stops the command
        // before anything is printed or written.
        var prepared: [ImagePreparation.Prepared] = []
        var decodedSizes: [(width: Int, height: Int)] = []
        for file in files {
            let image = try userFacing { try ImageDecoder.decode(fileAt: file) }
            do { prepared.append(try preparation.prepare(image, for: model)) } catch {
                throw UserError("\(file.path): \(error.description)")
            }
            decodedSizes.append((image.width, image.height))
        }
        let shape = model.spec.input
        let batch = LabeledImages(count: files.count, channels: shape[0], height: shape[1], width: shape[2],
                                  pixels: prepared.flatMap(\.pixels), labels: [UInt8](repeating: 0, count: files.count))
        let probabilities = model.classProbabilities(batch)

        let results = files.indices.map { i in
            let ranked = probabilities[i].indices.sorted { probabilities[i][$0] > probabilities[i][$1] || (probabilities[i][$0] == probabilities[i][$1] && $0 < $1) }
            return PredictionRecord.Image(
                file: files[i].relativePath, width: decodedSizes[i].width, height: decodedSizes[i].height,
                inverted: prepared[i].inverted, preprocessing: prepared[i].steps,
                top: ranked.prefix(top).map { .init(index: $0, className: model.classNames[$0], probability: probabilities[i][$0]) })
        }
        if let csv {
            try userFacing("write the CSV file \(csv)") { try writeCSV(results, probabilities: probabilities, classNames: model.classNames, to: URL(fileURLWithPath: csv)) }
        }
        if json {
            let record = PredictionRecord(model: runFolder, dataset: model.dataset.rawValue, invert: invert,
                                          centerDigit: centerDigit, images: results)
            print(String(decoding: try prettyJSON(record), as: UTF8.self))
            return
        }
        for result in results {
            if verbose {
                print("\(result.file):")
                for step in result.preprocessing { print("  \(step)") }
                print("  " + result.top.map { String(format: "%@ %.2f%%", $0.className, $0.probability * 100) }.joined(separator: ", "))
            } else {
                print("\(result.file): " + result.top.map { String(format: "%@ %.2f%%", $0.className, $0.probability * 100) }.joined(separator: ", "))
            }
        }
    }

    /// The files the arguments name: each file as given, each folder's .png/.jpg/.jpeg files in
    /// name order.
    private func imageFiles() throws -> [URL] {
        var files: [URL] = []
        for argument in images {
            let path = try nonEmpty(argument, "an image argument")
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
                throw UserError("\(path): no such file or folder")
            }
            guard isFolder.boolValue else {
                files.append(URL(fileURLWithPath: path))
                continue
            }
            let names = try userFacing("list the folder \(path)") { try FileManager.default.contentsOfDirectory(atPath: path) }
            let found = names.sorted().map { URL(fileURLWithPath: path).appendingPathComponent($0) }
                .filter { ImageDecoder.hasImageExtension($0) && !$0.lastPathComponent.hasPrefix(".") }
            guard !found.isEmpty else { throw UserError("\(path): the folder holds no .png, .jpg or .jpeg files") }
            files += found
        }
        return files
    }

    /// One row per image: file, predicted class and index, its probability, then every class's
    /// probability (columns named by class). Written atomically.
    private func writeCSV(_ results: [PredictionRecord.Image], probabilities: [[Double]], classNames: [String], to url: URL) throws {
        func field(_ text: String) -> String {
            text.contains { ",\"\n\r".contains($0) } ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
        }
        var text = (["file", "predicted_class", "predicted_index", "probability"] + classNames.map { "p_" + $0 }).map(field).joined(separator: ",") + "\n"
        for (result, row) in zip(results, probabilities) {
            let best = result.top[0]
            text += ([field(result.file), field(best.className), String(best.index), String(format: "%.6f", best.probability)]
                     + row.map { String(format: "%.6f", $0) }).joined(separator: ",") + "\n"
        }
        try writeAtomically(Data(text.utf8), to: url)
    }
}

/// `predict --json`: what was classified and how, with the top classes of each image.
struct PredictionRecord: Encodable {
    var format = "backprop-predictions"
    var version = 1
    var model: String
    var dataset: String
    var invert: String
    var centerDigit: Bool
    var images: [Image]

    struct Image: Encodable {
        var file: String
        var width: Int
        var height: Int
        var inverted: Bool
        var preprocessing: [String]
        var top: [Class]

        struct Class: Encodable {
            var index: Int
            var className: String
            var probability: Double

            enum CodingKeys: String, CodingKey { case index, className = "class", probability }
        }
    }

    enum CodingKeys: String, CodingKey {
        case format, version, model, dataset, invert, centerDigit = "center_digit", images
    }
}
