import Foundation
import BackpropTestSupport
import Testing
@testable import BackpropData

/// The 7x5 fixtures of `Scripts/make_image_fixtures.py` and their expected pixels (HWC).
private let fixtures = TestPaths.packageRoot.appendingPathComponent("Tests/BackpropDataTests/Fixtures/images", isDirectory: true)

private func expectedPixels(_ name: String) throws -> [Int] {
    let object = try JSONSerialization.jsonObject(with: Data(contentsOf: fixtures.appendingPathComponent("expected.json"))) as? [String: Any]
    let images = try #require(object?["images"] as? [String: Any])
    return try #require((images[name] as? [String: Any])?["pixels"] as? [Int])
}

/// Copies fixture `name` to `folder/relativePath`.
private func place(_ name: String, at relativePath: String, in folder: TemporaryFolder) throws {
    let target = folder.file(relativePath)
    try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
    try FileManager.default.copyItem(at: fixtures.appendingPathComponent(name), to: target)
}

@Suite("Image folder data sets")
struct ImageFolderTests {
    /// cat/: six gray PNGs; dog/: three RGB PNGs (fewer than 5: none in the test set); plus files
    /// and folders that are not images.
    private func catsAndDogs() throws -> TemporaryFolder {
        let folder = try TemporaryFolder()
        for i in 0..<6 { try place("gray8.png", at: "cat/\(i).png", in: folder) }
        for i in 0..<3 { try place("rgb8.png", at: "dog/\(i).PNG", in: folder) }
        try folder.write(Array("not an image".utf8), to: "cat/notes.txt")
        try folder.write([1, 2, 3], to: "dog/.DS_Store")
        try FileManager.default.createDirectory(at: folder.file(".hidden-class"), withIntermediateDirectories: true)
        return folder
    }

    @Test("classes in sorted order, every fifth file of a class for testing, training round-robin over classes")
    func split() throws {
        let folder = try catsAndDogs()
        defer { folder.remove() }
        let dataset = try Dataset.load(.imageFolder, from: folder.url, imageShape: [1, 5, 7])
        #expect(dataset.kind == .imageFolder && dataset.classNames == ["cat", "dog"])
        // Training: cat 0-3 and 5 (4 is the test image), dog 0-2, alternating while both last.
        #expect(dataset.train.labels == [0, 1, 0, 1, 0, 1, 0, 0])
        #expect(dataset.test.labels == [0])
        #expect(dataset.train.channels == 1 && dataset.train.height == 5 && dataset.train.width == 7)
        // Pixels: the gray fixture as written; the RGB one by luma, (299 R + 587 G + 114 B + 500) / 1000.
        let gray = try expectedPixels("gray8.png")
        let rgb = try expectedPixels("rgb8.png")
        let luma: [Int] = stride(from: 0, to: rgb.count, by: 3).map { (i: Int) -> Int in
            let weighted: Int = 299 * rgb[i] + 587 * rgb[i + 1] + 114 * rgb[i + 2]
            return (weighted + 500) / 1000
        }
        #expect(dataset.train.pixels(ofImage: 0).map(Int.init) == gray)
        #expect(dataset.train.pixels(ofImage: 1).map(Int.init) == luma)
        #expect(dataset.test.pixels(ofImage: 0).map(Int.init) == gray)

        // RGB, resized: every image 3 x 10 x 14, planar.
        let color = try Dataset.load(.imageFolder, from: folder.url, imageShape: [3, 10, 14])
        #expect(color.train.bytesPerImage == 3 * 10 * 14 && color.train.count == 8)
        // A training limit keeps the first images of the round-robin order; 0 reads none.
        #expect(try Dataset.load(.imageFolder, from: folder.url, trainingLimit: 3, imageShape: [1, 5, 7]).train.labels == [0, 1, 0])
        #expect(try Dataset.load(.imageFolder, from: folder.url, trainingLimit: 0, imageShape: [1, 5, 7]).train.count == 0)
    }

    @Test("train/ and test/ folders are the split when both exist, with the same classes")
    func explicitSplit() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        for i in 0..<2 { try place("gray8.png", at: "train/a/\(i).png", in: folder) }
        try place("rgb8.png", at: "train/b/0.jpg.png", in: folder)
        try place("baseline.jpg", at: "test/a/x.jpg", in: folder)
        try place("gray.jpg", at: "test/b/y.jpeg", in: folder)
        let dataset = try Dataset.load(.imageFolder, from: folder.url, imageShape: [1, 5, 7])
        #expect(dataset.classNames == ["a", "b"] && dataset.train.labels == [0, 1, 0] && dataset.test.labels == [0, 1])
        try FileManager.default.createDirectory(at: folder.file("test/c"), withIntermediateDirectories: true)
        try place("gray8.png", at: "test/c/z.png", in: folder)
        let message = dataErrorMessage { _ = try Dataset.load(.imageFolder, from: folder.url, imageShape: [1, 5, 7]) }
        #expect(message.contains("train/ has the classes [\"a\", \"b\"] but test/ has [\"a\", \"b\", \"c\"]"), "\(message)")
    }

    @Test("an empty class, a corrupt image, no classes, a bad shape: one-line errors naming the place")
    func errors() throws {
        let folder = try catsAndDogs()
        defer { folder.remove() }
        try FileManager.default.createDirectory(at: folder.file("emu"), withIntermediateDirectories: true)
        try folder.write(Array("x".utf8), to: "emu/readme.txt")
        var message = dataErrorMessage { _ = try Dataset.load(.imageFolder, from: folder.url, imageShape: [1, 5, 7]) }
        #expect(message.contains("emu: class 'emu' holds no .png, .jpg or .jpeg files"), "\(message)")

        try FileManager.default.removeItem(at: folder.file("emu"))
        try place("truncated.png", at: "dog/broken.png", in: folder)
        message = dataErrorMessage { _ = try Dataset.load(.imageFolder, from: folder.url, imageShape: [1, 5, 7]) }
        #expect(message.contains("dog/broken.png: truncated PNG"), "\(message)")

        let empty = try TemporaryFolder()
        defer { empty.remove() }
        message = dataErrorMessage { _ = try Dataset.load(.imageFolder, from: empty.url, imageShape: [1, 5, 7]) }
        #expect(message.contains("holds no class folders"), "\(message)")
        message = dataErrorMessage { _ = try Dataset.load(.imageFolder, from: empty.file("missing"), imageShape: [1, 5, 7]) }
        #expect(message.contains("no such folder"), "\(message)")
        message = dataErrorMessage { _ = try Dataset.load(.imageFolder, from: folder.url, imageShape: [2, 5, 7]) }
        #expect(message.contains("1 or 3 channels"), "\(message)")
        message = dataErrorMessage { _ = try Dataset.load(.imageFolder, from: folder.url, imageShape: [1, 100_000, 7]) }
        #expect(message.contains("at most 4096x4096"), "\(message)")
    }
}
