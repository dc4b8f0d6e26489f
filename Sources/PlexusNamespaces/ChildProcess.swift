import CPlexus
import Foundation
import PlexusCore
import Synchronization

/// A program started by Plexus that cannot outlive it.
///
/// It is started (`plx_spawn`: a vfork-style clone, then exec) by a thread of its own, which then waits for it
/// and reaps it. The child leads a process group of its own, starts with no signal blocked and
/// every signal at its default action (whatever this process blocks), and has SIGKILL as its
/// parent-death signal. Linux sends that signal when the *thread* that started the child ends,
/// which is why that thread lives exactly as long as the child: the child dies with this
/// process, however this process ends, even by SIGKILL. Its process group is listed in
/// ``Leftovers`` while it runs, so that what it started in turn (a shell's children) is killed
/// by a clean stop on a signal, or by `plexus cleanup` after a SIGKILL.
public final class ChildProcess: Sendable {
    public let pid: Int32
    private let shared: Shared

    final class Shared: Sendable {
        /// The exit status (or 128 + the signal that ended it) once reaped; nil while it runs.
        /// Signals are sent under this lock, so never to a reaped (and perhaps reused) pid.
        let status = Mutex<Int32?>(nil)
        let ended = DispatchSemaphore(value: 0)
        let spawned = DispatchSemaphore(value: 0)
        let spawnResult = Mutex<Int32>(0)
    }

    /// Starts `path` with `arguments` (`arguments[0]` is the program's name), its standard
    /// input, output and error on the given descriptors (nil: /dev/null). `onExit` is called, on
    /// the child's own thread, with the process id and its status once it has ended.
    public convenience init(path: String, arguments: [String], input: Int32? = nil, output: Int32? = nil, error: Int32? = nil,
                            onExit: (@Sendable (Int32, Int32) -> Void)? = nil) throws {
        try self.init(path: path, arguments: arguments, input: input, output: output, error: error, listed: true, onExit: onExit)
    }

    /// `listed`: whether ``Leftovers`` lists it (the removal's own `ip` and `kill` are not).
    init(path: String, arguments: [String], input: Int32?, output: Int32?, error: Int32?, listed: Bool,
         onExit: (@Sendable (Int32, Int32) -> Void)?) throws {
        let shared = Shared()
        let fds = (input ?? -1, output ?? -1, error ?? -1)
        // The thread that removes the leftovers (on a signal, at exit) starts `ip` and `kill`
        // while new children are held back: its own are let through, and not listed.
        let tracked = listed && !Leftovers.shared.isRemovingThread
        let thread = Thread {
            if tracked { Leftovers.shared.beginCreating() }
            let pid = Self.spawn(path, arguments, fds)
            var start: UInt64 = 0
            if pid > 0 {
                start = processStartTime(pid) ?? 0
                if tracked { Leftovers.shared.add(.processGroup(pid, start: start)) }
            }
            if tracked { Leftovers.shared.endCreating() }
            shared.spawnResult.withLock { $0 = pid }
            shared.spawned.signal()
            guard pid > 0 else { return }
            var info = siginfo_t()
            // Wait without reaping, then reap under the lock that signals are sent under.
            while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR {}
            let status = shared.status.withLock { s -> Int32 in
                var raw: Int32 = 0
                while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
                let v = raw & 0x7f == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
                s = v
                return v
            }
            if tracked { Leftovers.shared.forget([.processGroup(pid, start: start)]) }
            shared.ended.signal()
            onExit?(pid, status)
        }
        thread.name = "plexus-child"
        thread.stackSize = 128 * 1024
        thread.start()
        shared.spawned.wait()
        let r = shared.spawnResult.withLock { $0 }
        guard r > 0 else {
            throw PlexusError(.system, "cannot start \(path) \(arguments.dropFirst().joined(separator: " ")): \(String(cString: strerror(-r)))")
        }
        pid = r
        self.shared = shared
    }

    /// Starts `args` looked up in `PATH` (through `/usr/bin/env`).
    public convenience init(_ args: [String], input: Int32? = nil, output: Int32? = nil, error: Int32? = nil,
                            listed: Bool = true, onExit: (@Sendable (Int32, Int32) -> Void)? = nil) throws {
        try self.init(path: "/usr/bin/env", arguments: ["env"] + args, input: input, output: output, error: error, listed: listed,
                      onExit: onExit)
    }

    private static func spawn(_ path: String, _ arguments: [String], _ fds: (Int32, Int32, Int32)) -> Int32 {
        var cArgs: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        cArgs.append(nil)
        defer { for a in cArgs { free(a) } }
        return plx_spawn(path, cArgs, fds.0, fds.1, fds.2)
    }

    public var isRunning: Bool { shared.status.withLock { $0 == nil } }

    /// The exit status (or 128 + the signal that ended it), nil while it runs.
    public var status: Int32? { shared.status.withLock { $0 } }

    /// Sends `signal` to its process group (what it started goes too) while it runs.
    public func signal(_ signal: Int32) {
        shared.status.withLock { s in
            guard s == nil else { return }
            if Glibc.kill(-pid, signal) != 0 { _ = Glibc.kill(pid, signal) }
        }
    }

    /// Waits for it to end; its exit status (or 128 + the signal that ended it).
    @discardableResult
    public func wait() -> Int32 {
        if let s = status { return s }
        shared.ended.wait()
        shared.ended.signal()  // for any other waiter
        return status ?? -1
    }

    /// Waits up to `seconds` for it to end; whether it did.
    public func wait(seconds: Double) -> Bool {
        if status != nil { return true }
        guard shared.ended.wait(timeout: .now() + seconds) == .success else { return false }
        shared.ended.signal()
        return true
    }
}

/// When process `pid` started (field 22 of /proc/PID/stat, in clock ticks since boot): with the
/// pid, it tells a process from a later one that reuses its pid. Nil when there is no such process.
public func processStartTime(_ pid: Int32) -> UInt64? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return nil }
    // After "pid (comm)": state is field 3, so starttime (22) is the 20th field after ")".
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 19 else { return nil }
    return UInt64(fields[19])
}
