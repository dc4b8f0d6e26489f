import CPlexus
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Wakes a thread that sleeps until a ``SlotQueue`` it consumes has something: an eventfd rung
/// only when the consumer says it sleeps, so a busy consumer costs its producer no system call.
///
/// The consumer calls ``sleep(until:)`` with a check of its queue; the producer calls
/// ``ringIfSleeping()`` after each push. The consumer announces that it sleeps, checks again,
/// and only then blocks, while the producer pushes and then looks for the announcement (both
/// sequentially consistent): one of them always sees the other, so no wake-up is lost.
package final class Doorbell: Sendable {
    private let fd: Int32
    private let sleeping = Atomic<Bool>(false)
    private let closed = Atomic<Bool>(false)

    package init() throws(PlexusError) {
        fd = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        if fd < 0 { throw .system("eventfd") }
    }

    deinit { close(fd) }

    /// Returns when `ready()` is true or the bell was ``shut()``; blocks in between.
    package func sleep(until ready: () -> Bool) {
        while !ready() && !closed.load(ordering: .acquiring) {
            sleeping.store(true, ordering: .sequentiallyConsistent)
            if ready() || closed.load(ordering: .sequentiallyConsistent) {
                sleeping.store(false, ordering: .relaxed)
                return
            }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, -1)
            var count: UInt64 = 0
            _ = read(fd, &count, 8)
            sleeping.store(false, ordering: .relaxed)
        }
    }

    /// Wakes the consumer if it sleeps (or is about to). Producer side, after a push.
    package func ringIfSleeping() {
        if sleeping.load(ordering: .sequentiallyConsistent) { ring() }
    }

    /// Wakes the consumer whether or not it sleeps.
    package func ring() {
        var one: UInt64 = 1
        _ = write(fd, &one, 8)
    }

    /// Ends every present and future ``sleep(until:)`` at once.
    package func shut() {
        closed.store(true, ordering: .sequentiallyConsistent)
        ring()
    }

    /// Undoes ``shut()``: sleeps block again (the bell's next user starts afresh).
    package func reopen() {
        closed.store(false, ordering: .sequentiallyConsistent)
        var count: UInt64 = 0
        // Drain a ring left over from shut() (the descriptor does not block).
        _ = read(fd, &count, 8)
    }

    /// Whether ``shut()`` was called.
    package var isShut: Bool { closed.load(ordering: .acquiring) }
}
