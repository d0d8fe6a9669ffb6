import ArgumentParser
import Foundation

// How `backprop` talks to the user when something goes wrong: the exit statuses, the one
// `Error:` line, and plain sentences for the file system's errors.

/// The exit statuses of `backprop` (the README's table).
enum ExitStatus {
    /// The command ran and failed: a file, the data, the network, or the training (it diverged).
    static let failure: Int32 = 1
    /// The command line is wrong: an unknown verb or option, a missing or malformed value, a value
    /// out of range, options that conflict. Nothing was written.
    static let usage: Int32 = 2
    /// Training stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it); the model and a
    /// checkpoint were saved.
    static let interrupted: Int32 = 130
}

/// A failure the user can fix, printed as one `Error:` line with a non-zero exit.
struct UserError: Error, CustomStringConvertible {
    var description: String
    /// Whether the command line itself is wrong (exit status 2) rather than what it names or
    /// the run (exit status 1).
    var isUsage = false

    init(_ description: String) { self.description = description }

    /// A mistake in the command line itself: a missing, conflicting or out-of-range option.
    static func usage(_ description: String) -> UserError {
        var error = UserError(description)
        error.isUsage = true
        return error
    }
}

/// Writes `text` and a newline to standard error, after flushing standard output: when both go
/// to one file (`> log 2>&1`) a message lands after the lines printed before it, not above them
/// (standard output is block-buffered there, standard error is not).
func printToStandardError(_ text: String) {
    fflush(nil)
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// Prints `error` as one `Error:` line (and, for a command line that could not be read, one
/// line pointing at the verb's help) and exits with its status (`ExitStatus`). Help and
/// `--version` requests print to standard output and exit 0.
/// - Parameter verb: the verb the command line names, for the pointer to its help.
func terminate(reporting error: Error, verb: String?, root: ParsableCommand.Type) -> Never {
    if let code = error as? ExitCode {  // the command printed its own message (an interrupt)
        fflush(nil)
        exit(code.rawValue)
    }
    let parserStatus = root.exitCode(for: error)
    if parserStatus == .success { root.exit(withError: error) }
    switch error {
    case let error as UserError:
        printToStandardError("Error: \(error.description)")
        exit(error.isUsage ? ExitStatus.usage : ExitStatus.failure)
    case _ where parserStatus == .validationFailure:
        // The argument parser's own message, without its usage block: one line, then the hint.
        let message = root.message(for: error).split(whereSeparator: \.isNewline).joined(separator: " ")
        printToStandardError("Error: \(message)")
        printToStandardError("See 'backprop \(verb.map { $0 + " " } ?? "")--help'.")
        exit(ExitStatus.usage)
    default:
        printToStandardError("Error: \(plainDescription(of: error))")
        exit(ExitStatus.failure)
    }
}

/// Turns the libraries' errors into one-line user errors; a file-system error becomes
/// `PATH: reason` (see `plainDescription(of:)`).
/// - Parameter action: what `body` does, for a file-system error: "create the run folder runs/x"
///   makes `cannot create the run folder runs/x (PATH: reason)`.
func userFacing<T>(_ action: String? = nil, _ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as UserError {
        throw error
    } catch {
        let problem = plainDescription(of: error)
        guard let action, isFileSystemError(error) else { throw UserError(problem) }
        throw UserError("cannot \(action) (\(problem))")
    }
}

private func isFileSystemError(_ error: Error) -> Bool {
    if error is CocoaError || error is POSIXError { return true }
    let domain = (error as NSError).domain
    return domain == NSCocoaErrorDomain || domain == NSPOSIXErrorDomain
}

/// One plain sentence for an error; for Foundation's file errors `PATH: reason`, e.g.
/// `/proc/forbidden: no such file or directory`. Never `Error Domain=…`.
func plainDescription(of error: Error) -> String {
    guard isFileSystemError(error) else {
        let text = String(describing: error)
        return text.hasPrefix("Error Domain=") ? (error as NSError).localizedDescription : text
    }
    let nsError = error as NSError
    let named = (nsError.userInfo[NSFilePathErrorKey] as? String ?? (nsError.userInfo[NSURLErrorKey] as? URL)?.path)
        .map(writtenFile)
    let reason: String
    if let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
        reason = posixReason(Int32(underlying.code))
    } else if nsError.domain == NSPOSIXErrorDomain {
        reason = posixReason(Int32(nsError.code))
    } else {
        reason = cocoaReason(CocoaError.Code(rawValue: nsError.code))
    }
    return named.map { "\($0): \(reason)" } ?? reason
}

/// The file a path names for the user: `writeAtomically` writes `.NAME.PID.tmp` beside NAME
/// first, and an error there is about NAME.
private func writtenFile(_ path: String) -> String {
    let url = URL(fileURLWithPath: path)
    let parts = url.lastPathComponent.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count >= 4, parts[0].isEmpty, parts.last == "tmp", Int(parts[parts.count - 2]) != nil else { return path }
    let name = parts[1..<(parts.count - 2)].joined(separator: ".")
    return url.deletingLastPathComponent().appendingPathComponent(name).path
}

/// `strerror`'s text, lower-cased: "no such file or directory".
private func posixReason(_ code: Int32) -> String {
    let text = String(cString: strerror(code))
    return text.prefix(1).lowercased() + text.dropFirst()
}

private func cocoaReason(_ code: CocoaError.Code) -> String {
    switch code {
    case .fileNoSuchFile, .fileReadNoSuchFile: "no such file or directory"
    case .fileReadNoPermission, .fileWriteNoPermission: "permission denied"
    case .fileWriteFileExists: "it already exists"
    case .fileWriteOutOfSpace: "no space left on the device"
    case .fileWriteVolumeReadOnly: "read-only file system"
    case .fileReadInvalidFileName, .fileWriteInvalidFileName: "not a valid file name"
    case .fileReadCorruptFile: "not in the expected format"
    case .fileReadInapplicableStringEncoding, .fileReadUnknownStringEncoding: "not UTF-8 text"
    case .fileReadTooLarge: "too large to read"
    case .fileLocking: "the file is locked"
    case .fileReadUnknown: "could not be read"
    case .fileWriteUnknown: "could not be written"
    default: "file-system error \(code.rawValue)"
    }
}

/// Reads a flag's value with `body`; what it throws is a usage error.
func flagValue<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch {
        throw UserError.usage(plainDescription(of: error))
    }
}

/// `value`, or a usage error: an empty name (`--out ""`) would silently mean the current folder.
/// - Parameter what: how the error names the value: "--out".
func nonEmpty(_ value: String, _ what: String) throws -> String {
    guard !value.trimmingCharacters(in: .whitespaces).isEmpty else {
        throw UserError.usage("\(what) is empty; give a path")
    }
    return value
}

/// The candidate closest to `word`, if it is close enough to be a typo: at most two edits
/// (an insertion, a deletion, a substitution or a swap of neighbours), and at most half the
/// letters of the longer of the two.
func closest(to word: String, among candidates: [String]) -> String? {
    let scored = candidates.map { (name: $0, distance: editDistance(word, $0)) }
    guard let best = scored.min(by: { $0.distance < $1.distance }) else { return nil }
    return best.distance <= min(2, max(word.count, best.name.count) / 2) ? best.name : nil
}

/// The optimal-string-alignment distance: Levenshtein's, with a swap of two neighbouring
/// letters counted as one edit ("trian" is one edit from "train").
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
    // d[i][j]: the distance between the first i letters of a and the first j of b.
    var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
    for i in 0...a.count { d[i][0] = i }
    for j in 0...b.count { d[0][j] = j }
    for i in 1...a.count {
        for j in 1...b.count {
            let cost = a[i - 1] == b[j - 1] ? 0 : 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
            }
        }
    }
    return d[a.count][b.count]
}
