import Foundation
import PlexusCore
import PlexusTestSupport
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Records the watches that fired: (token, events).
private final class WatchDriver: EngineDriver, @unchecked Sendable {
    let seen = Mutex<[(UInt32, Int32)]>([])
    func fdReady(token: UInt32, events: Int32, engine: Engine) { seen.withLock { $0.append((token, events)) } }
}

@Suite("Watching a descriptor on the engine's ring", .requiresIOUring)
struct WatchTests {
    @Test("a watch fires once with its token and the events, only when the descriptor is ready; unwatch cancels")
    func watchFiresAndCancels() throws {
        let driver = WatchDriver()
        let thread = try EngineThread.start(.loopback(node: 41)) { driver }
        defer { _ = thread.stopAndWait() }
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let r = fds[0], w = fds[1]
        try thread.runAndWait { e in
            try e.watch(fd: r, events: Int16(POLLIN), token: 7)
            try e.watch(fd: w, events: Int16(POLLOUT), token: 9)  // a pipe's write end is ready at once
        }
        #expect(waitUntil(seconds: 5) { driver.seen.withLock { $0.contains { $0.0 == 9 } } })
        // Nothing written yet: the POLLIN watch has not fired.
        #expect(driver.seen.withLock { !$0.contains { $0.0 == 7 } })
        var byte: UInt8 = 1
        #expect(write(w, &byte, 1) == 1)
        #expect(waitUntil(seconds: 5) { driver.seen.withLock { $0.contains { $0.0 == 7 } } })
        let fired = driver.seen.withLock { $0 }
        #expect(fired.first { $0.0 == 7 }.map { $0.1 & Int32(POLLIN) != 0 } == true)
        #expect(fired.first { $0.0 == 9 }.map { $0.1 & Int32(POLLOUT) != 0 } == true)
        // One-shot: token 7 fired once. A watch on the drained pipe, then unwatch: -ECANCELED.
        try thread.runAndWait { e in
            var drain: UInt8 = 0
            _ = read(r, &drain, 1)
            try e.watch(fd: r, events: Int16(POLLIN), token: 11)
            e.unwatch(token: 11)
        }
        #expect(waitUntil(seconds: 5) { driver.seen.withLock { $0.contains { $0.0 == 11 } } })
        let last = driver.seen.withLock { $0.first { $0.0 == 11 } }
        #expect(last?.1 == -ECANCELED)
        #expect(driver.seen.withLock { $0.filter { $0.0 == 7 }.count } == 1)
        // A bad descriptor is refused, not queued.
        #expect(throws: PlexusError.self) { try thread.runAndWait { e in try e.watch(fd: -1, events: 1, token: 1) } }
        print("Watch: \(driver.seen.withLock { $0.count }) completions: \(driver.seen.withLock { $0.map { "token \($0.0): \($0.1)" } })")
    }
}
