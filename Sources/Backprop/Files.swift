import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A file that cannot be read or written: its path and why, as one line (`PATH: reason`).
public struct FileError: Error, CustomStringConvertible, Sendable {
    /// The file's path.
    public var path: String
    /// Why, in a few lower-case words: "no such file or directory", "not a regular file".
    public var reason: String

    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }

    /// `errno`'s text for `path`.
    public init(path: String, errno code: Int32) {
        let text = String(cString: strerror(code))
        self.init(path: path, reason: text.prefix(1).lowercased() + text.dropFirst())
    }

    public var description: String { "\(path): \(reason)" }
}

/// Opens a regular file for reading; anything else (a folder, a FIFO, a device) is refused
/// before a read could block on it.
///
/// The file is opened without blocking (`O_NONBLOCK`: opening a FIFO with no writer would wait
/// forever), checked with `fstat` on the open descriptor (so the check and the read see the same
/// file), then switched back to blocking reads.
/// - Returns: the handle (closed when released) and the file's size in bytes.
public func openRegularFile(_ url: URL) throws(FileError) -> (handle: FileHandle, size: Int) {
    let descriptor = open(url.path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
    guard descriptor >= 0 else { throw FileError(path: url.path, errno: errno) }
    var status = stat()
    guard fstat(descriptor, &status) == 0 else {
        let code = errno
        close(descriptor)
        throw FileError(path: url.path, errno: code)
    }
    guard status.st_mode & S_IFMT == S_IFREG else {
        close(descriptor)
        let kind = status.st_mode & S_IFMT == S_IFDIR ? "a folder" : "not a regular file"
        throw FileError(path: url.path, reason: kind == "a folder" ? "is a folder, not a file" : "not a regular file (a pipe, a device or a socket); give a file")
    }
    _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) & ~O_NONBLOCK)
    return (FileHandle(fileDescriptor: descriptor, closeOnDealloc: true), Int(status.st_size))
}

/// Reads exactly `count` bytes at `offset` of `handle`'s file.
/// - Throws: `FileError` when the file ends first or cannot be read.
public func readBytes(_ handle: FileHandle, at offset: Int, count: Int, path: String) throws(FileError) -> Data {
    do {
        try handle.seek(toOffset: UInt64(offset))
        var data = Data()
        while data.count < count {
            guard let chunk = try handle.read(upToCount: min(count - data.count, 1 << 26)), !chunk.isEmpty else {
                throw FileError(path: path, reason: "the file ends early (it changed while being read?)")
            }
            data.append(chunk)
        }
        return data
    } catch let error as FileError {
        throw error
    } catch {
        throw FileError(path: path, reason: "cannot be read (\((error as NSError).localizedDescription))")
    }
}

/// Reads a whole regular file of at most `limit` bytes.
/// - Throws: `FileError` for a missing file, a non-regular one (a FIFO), or one over the limit.
public func readRegularFile(_ url: URL, limit: Int) throws(FileError) -> Data {
    let (handle, size) = try openRegularFile(url)
    defer { try? handle.close() }
    guard size <= limit else {
        throw FileError(path: url.path, reason: "too large (\(size) bytes; at most \(limit) are read)")
    }
    return try readBytes(handle, at: 0, count: size, path: url.path)
}

/// Writes `data` to `url` atomically: to a temporary file in the same folder, flushed to the
/// disk, then renamed over the destination, and the folder flushed too. A crash, a kill or a
/// full disk leaves either the old file or the new one at `url`, never a part of one; on a
/// failure the temporary file is removed.
///
/// The temporary file is `.NAME.PID.tmp`; one left by a process that was killed (SIGKILL) is
/// harmless and is replaced by the next write of NAME from any process with the same id, or
/// removed by `removeStaleTemporaryFiles(in:)`.
/// - Throws: `FileError` naming `url`.
public func writeAtomically(_ data: Data, to url: URL) throws(FileError) {
    let folder = url.deletingLastPathComponent()
    let temporary = folder.appendingPathComponent(".\(url.lastPathComponent).\(getpid()).tmp")
    let descriptor = open(temporary.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard descriptor >= 0 else { throw FileError(path: url.path, errno: errno) }
    var failure: Int32 = 0
    data.withUnsafeBytes { (buffer: UnsafeRawBufferPointer) in
        var written = 0
        while written < buffer.count {
            let result = write(descriptor, buffer.baseAddress! + written, buffer.count - written)
            if result < 0 {
                if errno == EINTR { continue }
                failure = errno
                return
            }
            written += result
        }
    }
    if failure == 0, fsync(descriptor) != 0 { failure = errno }
    if close(descriptor) != 0, failure == 0 { failure = errno }
    if failure == 0, rename(temporary.path, url.path) != 0 { failure = errno }
    guard failure == 0 else {
        unlink(temporary.path)
        throw FileError(path: url.path, errno: failure)
    }
    syncFolder(folder)
}

/// Flushes a folder's entries (a rename, a new file) to the disk; best effort.
public func syncFolder(_ folder: URL) {
    let descriptor = open(folder.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard descriptor >= 0 else { return }
    _ = fsync(descriptor)
    close(descriptor)
}

/// Removes the `.NAME.PID.tmp` files that `writeAtomically` left in `folder` when its process
/// was killed mid-write (no running process has that id, or it is this one's and no write of
/// ours is under way). Returns the names removed.
@discardableResult
public func removeStaleTemporaryFiles(in folder: URL) -> [String] {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder.path) else { return [] }
    var removed: [String] = []
    for name in names {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 4, parts[0].isEmpty, parts.last == "tmp", let pid = Int32(parts[parts.count - 2]) else { continue }
        // kill(pid, 0) fails with ESRCH when no such process exists.
        let alive = pid != getpid() && (kill(pid, 0) == 0 || errno == EPERM)
        if alive { continue }
        if unlink(folder.appendingPathComponent(name).path) == 0 { removed.append(name) }
    }
    return removed
}
