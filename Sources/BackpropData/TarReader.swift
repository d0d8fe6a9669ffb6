import Foundation

/// One regular file inside a tar archive, handed to the visitor of `forEachTarMember`.
final class TarMember {
    /// The member's path inside the archive, e.g. `cifar-10-batches-bin/data_batch_1.bin`.
    let name: String
    /// The member's size in bytes.
    let size: Int
    /// The member's last path component, e.g. `data_batch_1.bin`.
    var fileName: String { name.split(separator: "/").last.map(String.init) ?? name }

    /// The member's file name when its path is `folder/NAME` or `NAME` (a leading `./` aside),
    /// else nil: `other/test_batch.bin` is not the `test_batch.bin` of `folder`.
    func fileName(within folder: String) -> String? {
        let parts = name.split(separator: "/", omittingEmptySubsequences: true).drop { $0 == "." }
        if parts.count == 1 { return String(parts[parts.startIndex]) }
        if parts.count == 2, parts.first! == folder { return String(parts.last!) }
        return nil
    }

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
/// each member's data padded to a multiple of 512, two zero blocks at the end. A long path comes
/// from a GNU long-name member (`L`) or a pax `path` record (`x`) before the member's header.
/// Directories, links and other extension headers are skipped; a member the visitor does not read
/// to the end is skipped. A member whose path is absolute or climbs out (`..`) makes the archive
/// an error. The padding after the end is read (up to 1 MiB), so a gzipped archive's checksum is
/// checked.
func forEachTarMember(in reader: ContentReader, _ visit: (TarMember) throws -> Void) throws {
    let blockSize = 512
    /// The next member's path from a GNU long-name or a pax header.
    var longName: String?
    while true {
        let header = try reader.read(blockSize)
        if header.isEmpty || header.allSatisfy({ $0 == 0 }) {  // end of archive
            try reader.skip(1 << 20)  // the padding after it, up to the gzip trailer
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
        // Extension headers: their data describe the next member.
        if typeFlag == UInt8(ascii: "L") || typeFlag == UInt8(ascii: "x") {
            guard size <= 1 << 16 else {
                throw DataError(reader.url, "not a tar archive, or a corrupt one (a \(size)-byte extended header)")
            }
            let data = try TarMember(name: name, size: size, reader: reader).read(size)
            try reader.skip((blockSize - size % blockSize) % blockSize)
            if typeFlag == UInt8(ascii: "L") {
                longName = String(decoding: data.prefix { $0 != 0 }, as: UTF8.self)
            } else if let path = try paxRecords(data, url: reader.url)["path"] {
                longName = path
            }
            continue
        }
        if let long = longName { name = long }
        longName = nil
        let components = name.split(separator: "/", omittingEmptySubsequences: false)
        if name.hasPrefix("/") || components.contains("..") {
            throw DataError(reader.url, "unsafe tar member path \(name) (absolute, or with \"..\"); not a data archive")
        }
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

/// A pax extended header's records: `LENGTH KEY=VALUE\n`, LENGTH counting the whole record.
private func paxRecords(_ data: [UInt8], url: URL) throws -> [String: String] {
    var records: [String: String] = [:]
    var start = 0
    while start < data.count {
        guard let space = data[start...].firstIndex(of: UInt8(ascii: " ")), space - start <= 20,
              let length = Int(String(decoding: data[start ..< space], as: UTF8.self)), length > space - start + 1,
              length <= data.count - start, data[start + length - 1] == 0x0A,
              let equals = data[(space + 1) ..< (start + length)].firstIndex(of: UInt8(ascii: "="))
        else {
            throw DataError(url, "not a tar archive, or a corrupt one (a malformed pax record)")
        }
        let key = String(decoding: data[(space + 1) ..< equals], as: UTF8.self)
        records[key] = String(decoding: data[(equals + 1) ..< (start + length - 1)], as: UTF8.self)
        start += length
    }
    return records
}
