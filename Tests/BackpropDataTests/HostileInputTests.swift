import Foundation
import BackpropTestSupport
import Testing
@testable import BackpropData

/// An IDX file: big-endian magic and dimensions, then the body.
private func idx(magic: Int, dimensions: [Int], body: [UInt8]) -> [UInt8] {
    ([magic] + dimensions).flatMap { value in (0 ..< 4).map { UInt8(truncatingIfNeeded: value >> (24 - 8 * $0)) } } + body
}

/// A small MNIST folder: `count` test images with pixel `i` of the file body equal to `i % 251`
/// and labels `i % 10`, and no training files (a training limit of 0 reads none).
private func writeTestFiles(count: Int, in folder: TemporaryFolder) throws -> (images: [UInt8], labels: [UInt8]) {
    let pixels = (0 ..< count * 784).map { UInt8($0 % 251) }
    let labels = (0 ..< count).map { UInt8($0 % 10) }
    _ = try folder.write(idx(magic: 0x803, dimensions: [count, 28, 28], body: pixels), to: "t10k-images-idx3-ubyte")
    _ = try folder.write(idx(magic: 0x801, dimensions: [count], body: labels), to: "t10k-labels-idx1-ubyte")
    return (pixels, labels)
}

@Suite("Hostile and unusual data files")
struct HostileInputTests {
    @Test("a gzip file of several members reads as their contents joined, as gunzip reads it")
    func multiMemberGzip() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let expected = try writeTestFiles(count: 20, in: folder)
        let images = folder.file("t10k-images-idx3-ubyte").path
        // Three members: the header and two halves of the body, each compressed on its own.
        try shell("cd '\(folder.url.path)' && head -c 16 '\(images)' | gzip -c > m.gz && tail -c +17 '\(images)' | head -c 7000 | gzip -c >> m.gz"
                  + " && tail -c +7017 '\(images)' | gzip -c >> m.gz && rm '\(images)' && mv m.gz '\(images).gz'")
        let data = try Dataset.load(.mnist, from: folder.url, trainingLimit: 0)
        #expect(data.test.count == 20)
        #expect(data.test.pixels == expected.images)  // the bytes written above, not the reader's output
        #expect(data.test.labels == expected.labels)
    }

    @Test("bytes after the last gzip member are an error, not ignored")
    func trailingGarbage() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        _ = try writeTestFiles(count: 5, in: folder)
        let images = folder.file("t10k-images-idx3-ubyte").path
        try shell("gzip '\(images)' && printf 'junk' >> '\(images).gz'")
        let message = dataErrorMessage { _ = try Dataset.load(.mnist, from: folder.url, trainingLimit: 0) }
        #expect(message.contains("t10k-images-idx3-ubyte.gz: bytes after the end of the gzip data that are not another gzip member"), "\(message)")
    }

    @Test("a FIFO named like a data file is refused at once, not read (which would block forever)")
    func fifo() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        _ = try writeTestFiles(count: 5, in: folder)
        try FileManager.default.removeItem(at: folder.file("t10k-labels-idx1-ubyte"))
        try shell("mkfifo '\(folder.file("t10k-labels-idx1-ubyte").path)'")
        let message = dataErrorMessage { _ = try Dataset.load(.mnist, from: folder.url, trainingLimit: 0) }
        #expect(message.contains("t10k-labels-idx1-ubyte: not a regular file"), "\(message)")
    }

    @Test("an empty test set is an error; a header's count over 2^20 items is refused before reading")
    func counts() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        _ = try writeTestFiles(count: 0, in: folder)
        var message = dataErrorMessage { _ = try Dataset.load(.mnist, from: folder.url, trainingLimit: 0) }
        #expect(message.contains("t10k-images-idx3-ubyte: holds no images"), "\(message)")

        _ = try folder.write(idx(magic: 0x803, dimensions: [(1 << 20) + 1, 28, 28], body: []), to: "t10k-images-idx3-ubyte")
        message = dataErrorMessage { _ = try Dataset.load(.mnist, from: folder.url, trainingLimit: 0) }
        #expect(message.contains("holds 1048577 items by its header; at most 1048576 are read"), "\(message)")
    }

    @Test("tar: GNU long names and pax path records give the member's whole path",
          .enabled(if: hasPython, "needs python3 (its tarfile writes the archives)"))
    func tarLongNames() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let long = String(repeating: "d", count: 120) + "/" + String(repeating: "é", count: 90) + "/file.bin"
        for format in ["GNU_FORMAT", "PAX_FORMAT"] {
            let archive = folder.file("\(format).tar").path
            try shell("""
                python3 -c 'import io, tarfile, sys
                with tarfile.open(sys.argv[1], "w", format=tarfile.\(format)) as t:
                    for name, data in [(sys.argv[2], b"long"), ("short.bin", b"s")]:
                        info = tarfile.TarInfo(name); info.size = len(data); t.addfile(info, io.BytesIO(data))' '\(archive)' '\(long)'
                """)
            var seen: [(String, [UInt8])] = []
            try forEachTarMember(in: ContentReader(url: URL(fileURLWithPath: archive))) { member in
                seen.append((member.name, try member.read(100)))
            }
            #expect(seen.map(\.0) == [long, "short.bin"], "\(format): \(seen.map(\.0))")
            #expect(seen.map(\.1) == [Array("long".utf8), Array("s".utf8)], "\(format)")
        }
    }

    @Test("tar: a member path with .. is an error; a batch outside cifar-10-batches-bin/ is not taken")
    func tarPaths() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let batch = [UInt8](repeating: 0, count: CIFAR10Reader.batchFileSize)
        let archive = try folder.write(tarArchive([("../x/test_batch.bin", batch)]), to: "cifar-10-binary.tar.gz")
        var message = dataErrorMessage { _ = try Dataset.load(.cifar10, from: archive, trainingLimit: 0) }
        #expect(message.contains("unsafe tar member path ../x/test_batch.bin"), "\(message)")

        try Data(tarArchive([("other/test_batch.bin", batch)])).write(to: archive)
        message = dataErrorMessage { _ = try Dataset.load(.cifar10, from: archive, trainingLimit: 0) }
        #expect(message.contains("the archive has no cifar-10-batches-bin/test_batch.bin"), "\(message)")

        try Data(tarArchive([("./cifar-10-batches-bin/test_batch.bin", batch)])).write(to: archive)
        #expect(try Dataset.load(.cifar10, from: archive, trainingLimit: 0).test.count == 10000)
    }
}
