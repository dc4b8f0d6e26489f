import Foundation
import PlexusCore
#if canImport(Glibc)
import Glibc
#endif

/// A TCP port on 127.0.0.1 that nothing listens on right now (bound to port 0, read back, closed).
public func freeLocalPort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var a = sockaddr_in()
    a.sin_family = sa_family_t(AF_INET)
    a.sin_addr.s_addr = inet_addr("127.0.0.1")
    a.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &a) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sp in
            bind(fd, sp, len) == 0 ? getsockname(fd, sp, &len) : -1
        }
    }
    return Int(UInt16(bigEndian: a.sin_port))
}

/// A tgtd of the test's own: its portal on 127.0.0.1 at a free port, its management channel on
/// a control port of its own (so tests running side by side do not clash), one target with LUN 1
/// on `backing`. Killed (SIGKILL: tgtd ignores SIGTERM while it has targets) when stopped or
/// dropped, even when the test fails.
public final class ISCSITargetDaemon {
    public let port: Int
    public let controlPort: Int
    public let iqn: String
    public let backing: String
    public private(set) var daemon: WatchedProcess?

    /// The LUN's URL.
    public var url: String { "iscsi://127.0.0.1:\(port)/\(iqn)/1" }

    public init(backing: String, port: Int? = nil) throws {
        self.port = port ?? freeLocalPort()
        controlPort = 1000 + self.port % 31000  // tgtd takes 0…32767
        iqn = "iqn.2026-12.org.plexus.test:lun\(self.port)"
        self.backing = backing
        try start()
    }

    deinit { kill() }

    /// Starts tgtd and creates the target, the LUN and the binding; waits until it answers.
    public func start() throws {
        let d = try WatchedProcess(["tgtd", "-f", "-C", "\(controlPort)", "--iscsi", "portal=127.0.0.1:\(port)"])
        daemon = d
        let ready = waitUntil(seconds: 10) {
            (try? runTool(["tgtadm", "-C", "\(controlPort)", "--lld", "iscsi", "--op", "show", "--mode", "system"],
                          seconds: 5).status) == 0
        }
        guard ready else { throw DaemonError("tgtd did not answer on control port \(controlPort): \(d.output)") }
        let steps: [[String]] = [
            ["--op", "new", "--mode", "target", "--tid", "1", "-T", iqn],
            ["--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "-b", backing],
            ["--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"],
        ]
        for s in steps {
            let r = try runTool(["tgtadm", "-C", "\(controlPort)", "--lld", "iscsi"] + s, seconds: 10)
            guard r.status == 0 else { throw DaemonError("tgtadm \(s.joined(separator: " ")): \(r.output)") }
        }
    }

    /// Sends `signal` (SIGSTOP, SIGCONT) to tgtd.
    public func signal(_ signal: Int32) { daemon?.process.signal(signal) }

    /// SIGKILL, and waits for it to end.
    public func kill() {
        guard let d = daemon else { return }
        d.process.signal(SIGCONT)  // a stopped tgtd ends at SIGKILL too; it is only for tidiness
        d.process.kill()
        _ = waitUntil(seconds: 10) { !d.process.isRunning }
        daemon = nil
    }

    public struct DaemonError: Error, CustomStringConvertible {
        public let description: String
        init(_ d: String) { description = d }
    }
}
