import Foundation
import PlexusCore
@_exported import PlexusNamespaces  // NamespaceFabric, BackgroundProcess

/// The tests' name for the namespace fabric (``NamespaceFabric`` in PlexusLAN).
public typealias FabricHarness = NamespaceFabric

/// The `plexus` executable built next to this test bundle (`swift build --build-tests` builds it).
public let plexusExecutable: String? = {
    let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for candidate in [dir, dir.deletingLastPathComponent()] {
        let p = candidate.appendingPathComponent("plexus").path
        if FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    return nil
}()

/// A program started with its output (stdout and stderr) going to a file that the test reads
/// while it runs.
public final class WatchedProcess {
    public let process: BackgroundProcess
    public let outputPath: String
    let handle: FileHandle

    public init(_ args: [String]) throws {
        outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-out-\(UUID().uuidString)").path
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        handle = FileHandle(forWritingAtPath: outputPath)!
        process = try BackgroundProcess(args, output: handle)
    }

    /// Everything it printed so far.
    public var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

    /// Waits (up to `seconds`) until its output contains `text`.
    public func waitFor(_ text: String, seconds: Double = 20) -> Bool {
        waitUntil(seconds: seconds) { output.contains(text) }
    }

    deinit {
        // SIGTERM first: a `plexus` under test then removes what it created (its namespaces,
        // links, children) itself; SIGKILL only if it has not ended within two seconds.
        if process.isRunning && process.terminate(seconds: 2) == nil { process.kill() }
        process.kill()
        try? handle.close()
        try? FileManager.default.removeItem(atPath: outputPath)
    }
}
