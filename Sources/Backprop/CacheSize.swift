import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The data caches of the machine, as far as the system tells: kernels size their working sets
/// by them. Nothing computed depends on these values, only how fast it is.
enum CacheSize {
    /// One core's level-2 data (or unified) cache in bytes, nil when the system does not say.
    ///
    /// Linux: sysfs (`/sys/devices/system/cpu/cpu0/cache/index*/`, the entry of `level` 2 whose
    /// `type` is not `Instruction`), then glibc's `sysconf(_SC_LEVEL2_CACHE_SIZE)`, which some
    /// virtual machines answer with 0.
    static let level2: Int? = {
        #if os(Linux)
        for index in 0..<8 {
            let folder = "/sys/devices/system/cpu/cpu0/cache/index\(index)/"
            guard let level = read(folder + "level"), let type = read(folder + "type") else { continue }
            if level == "2", type != "Instruction", let text = read(folder + "size"), let bytes = parseSize(text) { return bytes }
        }
        let reported = sysconf(Int32(_SC_LEVEL2_CACHE_SIZE))
        if reported > 0 { return reported }
        #endif
        return nil
    }()

    /// A sysfs cache size, `512K`, `2048K` or `1M`, in bytes; nil when it is not one, or not in 4 KiB...1 GiB.
    static func parseSize(_ text: String) -> Int? {
        var digits = Substring(text), scale = 1
        switch digits.last {
        case "K": scale = 1 << 10; digits = digits.dropLast()
        case "M": scale = 1 << 20; digits = digits.dropLast()
        default: break
        }
        guard let value = Int(digits), value > 0, value <= (1 << 30) / scale else { return nil }
        let bytes = value * scale
        return bytes >= 4096 ? bytes : nil
    }

    /// A small sysfs file's text without its trailing newline, nil when unreadable.
    private static func read(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path), data.count < 64,
              let text = String(data: data, encoding: .utf8) else { return nil }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
