import Foundation
import BackpropTestSupport
import Testing
@testable import BackpropData

@Suite("LabeledImages, DataDirectory, DataError")
struct BasicsTests {
    /// Three 1x2x2 images with pixels 0...11 and labels 7, 8, 9.
    let images = LabeledImages(count: 3, channels: 1, height: 2, width: 2, pixels: Array(0 ..< 12), labels: [7, 8, 9])

    @Test("prefix, subrange and per-image pixels")
    func slicing() {
        #expect(images.bytesPerImage == 4)
        #expect(images.pixels(ofImage: 1) == [4, 5, 6, 7])
        let middle = images.subrange(1 ..< 3)
        #expect(middle.count == 2 && middle.pixels == Array(4 ..< 12) && middle.labels == [8, 9])
        #expect(images.prefix(1) == LabeledImages(count: 1, channels: 1, height: 2, width: 2, pixels: [0, 1, 2, 3], labels: [7]))
        #expect(images.prefix(10) == images)
        #expect(images.prefix(0).count == 0 && images.prefix(0).pixels.isEmpty)
    }

    @Test("data folder order: explicit, then BACKPROP_DATA, then the user's cache")
    func dataDirectory() {
        let environment = ["HOME": "/home/ada", "BACKPROP_DATA": "/srv/data", "XDG_CACHE_HOME": "/var/cache/ada"]
        #expect(DataDirectory.resolve(explicit: "/mnt/x", environment: environment).path == "/mnt/x")
        #expect(DataDirectory.resolve(explicit: "~/d", environment: environment).path == "/home/ada/d")
        #expect(DataDirectory.resolve(explicit: nil, environment: environment).path == "/srv/data")
        #expect(DataDirectory.resolve(explicit: "", environment: environment).path == "/srv/data")
        var noVariable = environment
        noVariable["BACKPROP_DATA"] = ""
        #if os(macOS)
        #expect(DataDirectory.resolve(explicit: nil, environment: noVariable).path == "/home/ada/Library/Caches/backprop")
        #else
        #expect(DataDirectory.resolve(explicit: nil, environment: noVariable).path == "/var/cache/ada/backprop")
        noVariable["XDG_CACHE_HOME"] = "relative/ignored"
        #expect(DataDirectory.resolve(explicit: nil, environment: noVariable).path == "/home/ada/.cache/backprop")
        #endif
        let relative = DataDirectory.resolve(explicit: "some/data", environment: environment)
        #expect(relative.path == FileManager.default.currentDirectoryPath + "/some/data")
    }

    @Test("a DataError reads path: reason")
    func dataErrorDescription() {
        #expect(DataError(path: "/d/x.gz", reason: "truncated").description == "/d/x.gz: truncated")
        #expect(DataError(path: nil, reason: "bad limit").description == "bad limit")
    }

    @Test("DatasetKind names")
    func kinds() {
        #expect(DatasetKind.allCases.map(\.rawValue) == ["mnist", "cifar10", "fashion-mnist", "image-folder"])
        #expect(DatasetKind.downloadable == [.mnist, .cifar10, .fashionMNIST])
        #expect(DatasetKind(rawValue: "cifar10") == .cifar10)
        #expect(DatasetKind.cifar10.displayName == "CIFAR-10")
    }

    @Test("a file that does not exist cannot be opened, with a one-line message")
    func unreadableFile() {
        let message = dataErrorMessage { _ = try ContentReader(url: URL(fileURLWithPath: "/nonexistent/x.gz")) }
        #expect(message.hasPrefix("/nonexistent/x.gz: cannot open"), "\(message)")
    }
}
