import _CZlib
import Foundation

/// Reads a file's content front to back, gunzipping it on the way when the file starts with the
/// gzip magic bytes 1f 8b (the name does not matter). A gzip file may hold several members one
/// after another (`cat a.gz b.gz`): their contents are read as one, as `gunzip` does. Bytes after
/// the last member that are not another member are an error.
///
/// Only regular files are read: a FIFO, a device or a folder is refused when opened, before a
/// read could block on it.
///
/// All errors are `DataError`s that name the file.
final class ContentReader {
    /// The file being read.
    let url: URL
    /// Whether the file is gzip-compressed.
    let isGzip: Bool

    private let handle: FileHandle
    /// The inflate state for a gzip file. zlib keeps a pointer back to it, so it must not move:
    /// it lives in its own allocation.
    private let stream: UnsafeMutablePointer<z_stream>?
    /// Compressed bytes waiting to be inflated; `stream.next_in` points into it.
    private let input: UnsafeMutablePointer<UInt8>
    private static let inputCapacity = 1 << 20
    private var inputEnded = false
    private var contentEnded = false
    /// Content bytes of the members before the current one.
    private var earlierMembersOutput = 0
    /// Whether the current member has only just begun (after an earlier member ended): bytes
    /// that do not inflate there are trailing garbage, not a corrupt member.
    private var atNewMember = false

    /// Opens `url` and looks at its first two bytes to decide whether it is gzip.
    init(url: URL) throws {
        self.url = url
        // Opened without blocking (a FIFO with no writer would block the open itself), checked
        // with fstat on the descriptor, then switched back to blocking reads.
        let descriptor = open(url.path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else { throw DataError(url, "cannot open: \(String(cString: strerror(errno)))") }
        var fileStatus = stat()
        guard fstat(descriptor, &fileStatus) == 0, fileStatus.st_mode & S_IFMT == S_IFREG else {
            close(descriptor)
            throw DataError(url, "not a regular file (a folder, a pipe or a device); give a data file")
        }
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) & ~O_NONBLOCK)
        handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
        input = .allocate(capacity: Self.inputCapacity)
        let magic = (try? handle.read(upToCount: 2)).flatMap { $0 } ?? Data()
        isGzip = magic == Data([0x1f, 0x8b])
        guard isGzip else {
            stream = nil
            try? handle.seek(toOffset: 0)
            return
        }
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        self.stream = stream
        input[0] = 0x1f
        input[1] = 0x8b
        stream.pointee.next_in = input
        stream.pointee.avail_in = 2
        // windowBits 16 + MAX_WBITS: expect a gzip header and trailer, not a raw zlib stream.
        let status = inflateInit2_(stream, 16 + MAX_WBITS, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        guard status == Z_OK else {
            throw DataError(url, "cannot start gzip decompression (zlib error \(status))")
        }
    }

    deinit {
        if let stream {
            inflateEnd(stream)
            stream.deallocate()
        }
        input.deallocate()
        try? handle.close()
    }

    /// Reads up to `count` bytes of content; fewer only when the content ends.
    ///
    /// Memory grows with the bytes actually found, not with `count`, so a file header that claims
    /// a huge size cannot make this allocate it.
    func read(_ count: Int) throws -> [UInt8] {
        let chunkSize = 1 << 26
        var result = try readChunk(min(count, chunkSize))
        while result.count < count, !contentEnded {
            let more = try readChunk(min(count - result.count, chunkSize))
            if more.isEmpty { break }
            result += more
        }
        return result
    }

    /// Reads and throws away up to `count` bytes of content; returns how many there were.
    @discardableResult
    func skip(_ count: Int) throws -> Int {
        var skipped = 0
        while skipped < count {
            let chunk = try readChunk(min(count - skipped, 1 << 20))
            if chunk.isEmpty { break }
            skipped += chunk.count
        }
        return skipped
    }

    /// Reads up to `count` bytes into one new array; fewer only when the content ends.
    private func readChunk(_ count: Int) throws -> [UInt8] {
        guard count > 0, !contentEnded else { return [] }
        guard let stream else {
            let data: Data?
            do { data = try handle.read(upToCount: count) } catch {
                throw DataError(url, "cannot read: \(Self.describe(error))")
            }
            guard let data, !data.isEmpty else { contentEnded = true; return [] }
            return [UInt8](data)
        }
        return try [UInt8](unsafeUninitializedCapacity: count) { buffer, produced in
            stream.pointee.next_out = buffer.baseAddress
            stream.pointee.avail_out = UInt32(count)
            defer { produced = count - Int(stream.pointee.avail_out) }
            while stream.pointee.avail_out > 0 {
                if stream.pointee.avail_in == 0, !inputEnded { try refillInput() }
                let status = inflate(stream, Z_NO_FLUSH)
                switch status {
                case Z_STREAM_END:
                    // The member ended (its CRC and length checked); another may follow.
                    if stream.pointee.avail_in == 0, !inputEnded { try refillInput() }
                    if stream.pointee.avail_in == 0 {
                        contentEnded = true
                        return
                    }
                    earlierMembersOutput += Int(stream.pointee.total_out)
                    inflateReset(stream)
                    atNewMember = true
                case Z_OK:
                    if stream.pointee.total_out > 0 { atNewMember = false }
                    continue
                case Z_BUF_ERROR where stream.pointee.avail_in == 0 && inputEnded:
                    let total = earlierMembersOutput + Int(stream.pointee.total_out)
                    throw DataError(url, "truncated gzip data: the stream ends early, after \(total) bytes of content")
                case Z_BUF_ERROR:
                    continue
                default:
                    if atNewMember {
                        throw DataError(url, "bytes after the end of the gzip data that are not another gzip member")
                    }
                    let message = stream.pointee.msg.map { String(cString: $0) } ?? "zlib error \(status)"
                    throw DataError(url, "corrupt gzip data: \(message)")
                }
            }
        }
    }

    /// Moves the next compressed bytes of the file into `input`.
    private func refillInput() throws {
        let data: Data?
        do { data = try handle.read(upToCount: Self.inputCapacity) } catch {
            throw DataError(url, "cannot read: \(Self.describe(error))")
        }
        guard let data, !data.isEmpty else { inputEnded = true; return }
        data.copyBytes(to: input, count: data.count)
        stream!.pointee.next_in = input
        stream!.pointee.avail_in = UInt32(data.count)
    }

    /// A short, one-line text for a Foundation error.
    static func describe(_ error: Error) -> String {
        let nsError = error as NSError
        if nsError.domain == NSCocoaErrorDomain, let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError,
           underlying.domain == NSPOSIXErrorDomain, let code = POSIXErrorCode(rawValue: Int32(underlying.code)) {
            return String(cString: strerror(code.rawValue))
        }
        return nsError.localizedDescription.replacingOccurrences(of: "\n", with: " ")
    }
}
