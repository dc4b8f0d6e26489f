import PlexusCore

/// Runs `args` (looked up in PATH) to its end, at most `seconds`: its exit status (-1 when it
/// was killed for taking too long) and everything it printed.
public func runTool(_ args: [String], seconds: Double = 60) throws -> (status: Int32, output: String) {
    let p = try WatchedProcess(args)
    guard waitUntil(seconds: seconds, { !p.process.isRunning }) else {
        p.process.kill()
        return (-1, p.output + "\n(killed after \(seconds) s)")
    }
    return (p.process.wait(), p.output)
}
