import Foundation

/// One regular file inside a tar archive, handed to the visitor of `forEachTarMember`.
final class TarMember {
    /// The member's path inside the archive, e.g. `cifar-10-batches-bin/data_batch_1.bin`.
    let name: String
    /// The member's size in bytes.
    let size: Int
    /// The member's last path component, e.g. `data_batch_1.bin`.
    var fileName: String { name.split(separator: "/").last.map(String.init) ?? name }

    private let reader: ContentReader
    private(set) var remaining: Int

    fileprivate init(name: String, size: Int, reader: ContentReader) {
        self.name = name
        self.size = size
        self.reader = reader
        self.remaining = size
    }

    /// Reads up to `count` more bytes of the member; an empty array at its end.
    func read(_ count: Int) throws -> [UInt8] {
        let wanted = min(count, remaining)
        let bytes = try reader.read(wanted)
        remaining -= bytes.count
        guard bytes.count == wanted else {
            throw DataError(reader.url, "truncated tar archive: member \(name) ends early")
        }
        return bytes
    }
}

/// Calls `visit` for each regular file in the tar archive that `reader` reads, in archive order.
///
/// Reads the POSIX ustar format and the GNU and pax variants that `tar` writes: headers of 512 bytes,
/// each member's data padded to a multiple of 512, two zero blocks at the end. Directories, links
/// and pax/GNU extension headers are skipped; a member the visitor does not read to the end is skipped.
/// The content is read to its very end, so a gzipped archive's checksum is always checked.
func forEachTarMember(in reader: ContentReader, _ visit: (TarMember) throws -> Void) throws {
    let blockSize = 512
    while true {
        let header = try reader.read(blockSize)
        if header.isEmpty || header.allSatisfy({ $0 == 0 }) {  // end of archive
            try reader.skip(Int.max)  // the padding after it, up to the gzip trailer
            return
        }
        guard header.count == blockSize else {
            throw DataError(reader.url, "truncated tar archive: a header block has \(header.count) of 512 bytes")
        }
        guard let size = tarNumber(header[124 ..< 136]), let storedSum = tarNumber(header[148 ..< 156]) else {
            throw DataError(reader.url, "not a tar archive (unreadable header)")
        }
        // The checksum is the sum of the header bytes with its own 8-byte field counted as spaces.
        let sum = header.enumerated().reduce(0) { $0 + (148 ..< 156 ~= $1.offset ? 0x20 : Int($1.element)) }
        guard sum == storedSum else {
            throw DataError(reader.url, "not a tar archive, or a corrupt one (header checksum mismatch)")
        }
        var name = tarString(header[0 ..< 100])
        let isPOSIX = header[257 ..< 263].elementsEqual(Array("ustar\0".utf8))
        let prefix = isPOSIX ? tarString(header[345 ..< 500]) : ""
        if !prefix.isEmpty { name = prefix + "/" + name }

        let typeFlag = header[156]
        let isRegularFile = typeFlag == UInt8(ascii: "0") || typeFlag == 0
        let member = TarMember(name: name, size: size, reader: reader)
        if isRegularFile { try visit(member) }
        let padding = (blockSize - size % blockSize) % blockSize
        let toSkip = member.remaining + padding
        guard try reader.skip(toSkip) == toSkip else {
            throw DataError(reader.url, "truncated tar archive: member \(name) ends early")
        }
    }
}

/// A NUL-terminated text field of a tar header.
private func tarString(_ field: ArraySlice<UInt8>) -> String {
    String(decoding: field.prefix { $0 != 0 }, as: UTF8.self)
}

/// A numeric tar header field: octal digits (space- or NUL-terminated), or GNU base-256 when the
/// first byte has its high bit set (used for sizes of 8 GiB and more).
private func tarNumber(_ field: ArraySlice<UInt8>) -> Int? {
    if let first = field.first, first & 0x80 != 0 {
        let bytes = [first & 0x7f] + field.dropFirst()
        guard bytes.dropLast(7).allSatisfy({ $0 == 0 }) else { return nil }  // more than 2^56 bytes
        return bytes.suffix(7).reduce(0) { $0 << 8 | Int($1) }
    }
    let digits = field.drop { $0 == UInt8(ascii: " ") }.prefix { $0 != 0 && $0 != UInt8(ascii: " ") }
    guard !digits.isEmpty, digits.count <= 21 else { return nil }
    return Int(String(decoding: digits, as: UTF8.self), radix: 8)
}
