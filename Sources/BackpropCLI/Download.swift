import ArgumentParser
import BackpropData
import Foundation

/// Set by SIGINT/SIGTERM during a download; the downloader polls it.
nonisolated(unsafe) private var downloadInterrupted: sig_atomic_t = 0

struct Download: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fetch MNIST, Fashion-MNIST or CIFAR-10 (binary version) into the data folder, verifying SHA-256.")

    @Argument(help: "\(DatasetKind.downloadable.map(\.rawValue).joined(separator: ", ")).") var dataset: String
    @OptionGroup var data: DataOptions
    @Option(help: ArgumentHelp("A base URL to fetch the official file names from instead of the official hosts.", valueName: "url"))
    var mirror: String?

    func run() throws {
        let names = DatasetKind.downloadable.map(\.rawValue).joined(separator: ", ")
        guard let kind = DatasetKind(rawValue: dataset), DatasetKind.downloadable.contains(kind) else {
            throw UserError.usage("unknown data set '\(dataset)' (\(names))")
        }
        var mirrorURL: URL?
        if let mirror {
            guard let url = URL(string: mirror.hasSuffix("/") ? mirror : mirror + "/"), url.scheme != nil else {
                throw UserError.usage("--mirror '\(mirror)' is not a URL")
            }
            mirrorURL = url
        }
        let interactive = isatty(STDOUT_FILENO) != 0
        // Ctrl-C or SIGTERM stops the download and removes its partial file.
        downloadInterrupted = 0
        signal(SIGINT) { _ in downloadInterrupted = 1 }
        signal(SIGTERM) { _ in downloadInterrupted = 1 }
        defer {
            signal(SIGINT, SIG_DFL)
            signal(SIGTERM, SIG_DFL)
        }
        let downloader = Downloader(dataDirectory: data.directory, mirror: mirrorURL, isCancelled: { downloadInterrupted != 0 })
        let folder = try userFacing {
            try downloader.download(kind) { event in
                switch event {
                case .alreadyPresent(let file): print("\(file): already present and verified")
                case .verified(let file): print((interactive ? "\r\u{1B}[2K" : "") + "\(file): verified")
                case let .receiving(file, received, expected):
                    guard interactive else { return }
                    let total = expected.map { String(format: " of %.1f MB", Double($0) / 1e6) } ?? ""
                    print(String(format: "\r\u{1B}[2K%@: %.1f MB", file, Double(received) / 1e6) + total, terminator: "")
                    fflush(nil)
                }
            }
        }
        print("\(kind.displayName) is in \(folder.path)")
    }
}
