import Foundation
import Synchronization

/// How every `plexus` command stops on SIGINT, SIGTERM or SIGHUP.
///
/// ``install()``, first thing in `main`, blocks the three signals in the main thread (every
/// thread started later inherits that) and starts one thread that waits for them with
/// `sigwait`: no signal handler runs, so nothing has to be async-signal-safe, and no engine
/// thread is interrupted. On a signal that thread runs the registered cleanups, newest first,
/// then removes everything ``Leftovers`` lists (children's process groups, links, namespaces),
/// and ends the process with 128 + the signal (130 for SIGINT, 143 for SIGTERM).
///
/// A command that stops cleanly on a signal by itself (`plexus control`, `plexus node`: they
/// print their counters) calls ``stopGracefully()`` and polls ``waitForStop(milliseconds:)``:
/// the signal then only asks it to stop. If it has not ended within ``gracePeriod`` (or a
/// second signal comes), the process ends as above all the same.
public enum ShutdownSignals {
    public static let signals: [Int32] = [SIGINT, SIGTERM, SIGHUP]
    /// How long a graceful command may take to end after a signal.
    public static let gracePeriod = 0.8

    struct State {
        var installed = false
        var cleanups: [(id: Int, body: @Sendable () -> Void)] = []
        var nextID = 0
        var graceful = false
        var requested: Int32?
    }
    static let state = Mutex(State())
    static let stopRequested = DispatchSemaphore(value: 0)

    static var signalSet: sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        return set
    }

    /// Blocks the stop signals and starts the thread that waits for them. Call it before any
    /// other thread starts; calling it again does nothing.
    public static func install() {
        let first = state.withLock { s -> Bool in
            defer { s.installed = true }
            return !s.installed
        }
        guard first else { return }
        var set = signalSet
        pthread_sigmask(SIG_BLOCK, &set, nil)
        let t = Thread { waitForSignals() }
        t.name = "plexus-signals"
        t.stackSize = 256 * 1024
        t.start()
    }

    /// Registers `body` to run when a signal stops the process (before the leftovers are
    /// removed). Returns a number for ``remove(_:)``.
    @discardableResult
    public static func onStop(_ body: @escaping @Sendable () -> Void) -> Int {
        state.withLock { s in
            s.nextID += 1
            s.cleanups.append((s.nextID, body))
            return s.nextID
        }
    }

    public static func remove(_ id: Int) {
        state.withLock { s in s.cleanups.removeAll { $0.id == id } }
    }

    /// From now on a signal asks the command to stop (``waitForStop(milliseconds:)`` returns
    /// it) instead of ending the process at once.
    public static func stopGracefully() {
        install()
        state.withLock { $0.graceful = true }
    }

    /// Waits up to `milliseconds` for a stop signal; returns it, or nil.
    public static func waitForStop(milliseconds: Int) -> Int32? {
        if let s = state.withLock({ $0.requested }) { return s }
        if stopRequested.wait(timeout: .now() + .milliseconds(milliseconds)) == .success { stopRequested.signal() }
        return state.withLock { $0.requested }
    }

    /// The signal that asked the command to stop, if one did.
    public static var requested: Int32? { state.withLock { $0.requested } }

    private static func waitForSignals() {
        var set = signalSet
        var signal: Int32 = 0
        while sigwait(&set, &signal) != 0 {}
        let graceful = state.withLock { s -> Bool in
            s.requested = signal
            return s.graceful
        }
        if graceful {
            stopRequested.signal()
            // A second signal, or the grace period over: stop now.
            var timeout = timespec(tv_sec: Int(gracePeriod), tv_nsec: Int((gracePeriod - Double(Int(gracePeriod))) * 1e9))
            _ = sigtimedwait(&set, nil, &timeout)
        }
        stop(signal)
    }

    /// Runs the cleanups, removes the leftovers and ends the process with 128 + `signal`.
    public static func stop(_ signal: Int32) -> Never {
        let cleanups = state.withLock { s in
            defer { s.cleanups = [] }
            return s.cleanups
        }
        for c in cleanups.reversed() { c.body() }
        Leftovers.shared.removeAll()
        fflush(nil)
        _exit(128 + signal)
    }
}
