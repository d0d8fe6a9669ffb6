import Backprop
import BackpropTestSupport
import Foundation
import Testing

/// Backprop used as a versioned dependency, the way a user's package uses it:
/// `.package(url: …, from: "1.0.0")` on a tagged git repository. The manifest adds no compiler
/// flags when it is checked out under a client's `.build/checkouts/` (SwiftPM has refused
/// `unsafeFlags` in versioned dependencies; 6.3.1 accepts them for a `file://` URL, so what
/// shows the flags are left out here is the client's report of no FMA on x86-64).
@Suite("Backprop as a dependency")
struct DependencyTests {
    /// The fused multiply-adds follow the code generation: the tests' own build is the root
    /// package's, compiled for this CPU (`-target-cpu native`) when it has FMA and AVX2.
    @Test("kernels use fused multiply-adds exactly when the build targets a CPU that has them")
    func fusedMultiplyAddFollowsTheTarget() throws {
        #if arch(arm64)
        #expect(kernelsUseFusedMultiplyAdd)
        #elseif arch(x86_64) && os(Linux)
        let flags = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
            .split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ") ?? []
        let portable = ProcessInfo.processInfo.environment["BACKPROP_PORTABLE"].map { $0 != "0" } ?? false
        #expect(kernelsUseFusedMultiplyAdd == (!portable && flags.contains("fma") && flags.contains("avx2")))
        #expect(kernelVectorWidth == (!portable && flags.contains("avx512f") && flags.contains("fma") ? 16 : 8))
        #endif
    }

    /// Copies the working tree's package (manifest, sources, tests) into a new git repository
    /// tagged 1.0.0, builds `Examples/dependency-client` against it (debug, as a user's first
    /// `swift build` would) and runs it: its GEMM must match the reference. Without compiler
    /// flags from the client, an x86-64 build targets baseline x86-64: no FMA.
    @Test("a client package builds and runs with Backprop as `.package(url:, from:)`")
    func versionedDependency() throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        let fm = FileManager.default
        let root = TestPaths.packageRoot
        let repository = folder.file("backprop")
        try fm.createDirectory(at: repository, withIntermediateDirectories: true)
        for item in ["Package.swift", "Sources", "Tests"] {
            try fm.copyItem(at: root.appendingPathComponent(item), to: repository.appendingPathComponent(item))
        }
        func run(_ arguments: [String], in directory: URL) throws -> ProcessResult {
            let result = try runProcess(URL(fileURLWithPath: "/usr/bin/env"), arguments, in: directory)
            #expect(result.status == 0, "\(arguments.joined(separator: " ")): \(result.summary)")
            return result
        }
        let git = ["git", "-c", "user.name=Backprop tests", "-c", "user.email=tests@example.invalid", "-c", "commit.gpgsign=false"]
        _ = try run(git + ["init", "-q"], in: repository)
        _ = try run(git + ["add", "-A"], in: repository)
        _ = try run(git + ["commit", "-q", "-m", "Backprop for the dependency test"], in: repository)
        _ = try run(git + ["tag", "1.0.0"], in: repository)

        let client = folder.file("client")
        try fm.createDirectory(at: client.appendingPathComponent("Sources/Client"), withIntermediateDirectories: true)
        try fm.copyItem(at: root.appendingPathComponent("Examples/dependency-client/Sources/Client/main.swift"),
                        to: client.appendingPathComponent("Sources/Client/main.swift"))
        let manifest = """
            // swift-tools-version: 6.2
            import PackageDescription

            let package = Package(
                name: "Client",
                platforms: [.macOS(.v26)],
                dependencies: [.package(url: "\(repository.absoluteString)", from: "1.0.0")],
                targets: [.executableTarget(name: "Client", dependencies: [.product(name: "Backprop", package: "backprop")])]
            )

            """
        try Data(manifest.utf8).write(to: client.appendingPathComponent("Package.swift"))

        let build = try run(["swift", "build", "--product", "Client"], in: client)
        guard build.status == 0 else { return }
        #expect(!(build.stdout + build.stderr).contains("unsafeFlags"))
        let resolved = try String(contentsOf: client.appendingPathComponent("Package.resolved"), encoding: .utf8)
        #expect(resolved.contains("\"version\" : \"1.0.0\""), "\(resolved)")

        let output = try run([client.appendingPathComponent(".build/debug/Client").path], in: client)
        #expect(output.stdout.contains("max difference from the reference"), "\(output.stdout)")
        #if arch(x86_64)
        #expect(output.stdout.contains("fused multiply-add: no, vector width: 8"), "\(output.stdout)")
        #else
        #expect(output.stdout.contains("fused multiply-add: yes"), "\(output.stdout)")
        #endif
    }
}
