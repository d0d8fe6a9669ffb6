import Foundation

/// Where data sets live on this machine.
public enum DataDirectory {
    /// The environment variable that names the data folder when no folder is given explicitly.
    public static let environmentVariable = "BACKPROP_DATA"

    /// The data folder to use, chosen in this order:
    /// 1. `explicit` (a `--data-dir` flag), when given and not empty; a leading `~` is expanded;
    /// 2. the environment variable `BACKPROP_DATA`, when set and not empty;
    /// 3. a per-user cache folder: `~/Library/Caches/backprop` on macOS, else
    ///    `$XDG_CACHE_HOME/backprop` (when that is an absolute path) or `~/.cache/backprop`.
    ///
    /// The folder is not created or checked here.
    /// - Parameters:
    ///   - explicit: the folder the user named, if any.
    ///   - environment: the environment to read `BACKPROP_DATA`, `XDG_CACHE_HOME` and `HOME` from.
    public static func resolve(
        explicit: String?, environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> URL {
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        func folder(_ path: String) -> URL {
            var path = path
            if path == "~" || path.hasPrefix("~/") { path = home + path.dropFirst() }
            return URL(fileURLWithPath: path, isDirectory: true).standardizedFileURL
        }
        if let explicit, !explicit.isEmpty { return folder(explicit) }
        if let variable = environment[environmentVariable], !variable.isEmpty { return folder(variable) }
        #if os(macOS)
        return folder(home + "/Library/Caches/backprop")
        #else
        if let cache = environment["XDG_CACHE_HOME"], cache.hasPrefix("/") { return folder(cache + "/backprop") }
        return folder(home + "/.cache/backprop")
        #endif
    }
}
