import CPlexus
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Watching a descriptor
//
// A socket that a library drives itself (libiscsi's connection to a SAN) is serviced from the
// engine thread without blocking: its owner asks for readiness with a one-shot POLL_ADD on the
// ring, and the completion is handed to the driver (``EngineDriver/fdReady(token:events:engine:)``)
// with the owner's token, as block I/O completions are. The engine keeps no state per watch:
// the token is the SQE's user data, so watching allocates nothing and needs no table. Several
// watches may be armed with one token (e.g. one for POLLIN and, later, one for POLLIN|POLLOUT);
// each completes once. ``unwatch(token:)`` cancels every watch armed with a token.

extension Engine {
    /// Arms a one-shot poll for `events` (`POLLIN`, `POLLOUT`, or both) on `fd`; its completion
    /// goes to ``EngineDriver/fdReady(token:events:engine:)`` with `token`. The descriptor stays
    /// the caller's: call ``unwatch(token:)`` before closing it.
    /// - Throws: ``PlexusError`` when the engine is stopping or `fd` is negative.
    /// - Complexity: O(1); no allocation.
    public func watch(fd: Int32, events: Int16, token: UInt32) throws(PlexusError) {
        guard !stopping else { throw PlexusError(.engineStopped, "the engine is stopping") }
        guard fd >= 0 else { throw PlexusError(.configuration, "watch: bad fd \(fd)") }
        let sqe = nextSQE()
        io_uring_prep_poll_add(sqe, fd, UInt32(UInt16(bitPattern: events)))
        io_uring_sqe_set_data64(sqe, Self.data(.fdWatch, UInt64(token)))
        inflight += 1
    }

    /// Cancels every watch armed with `token`: each completes with `-ECANCELED` (or with the
    /// readiness it had already seen).
    public func unwatch(token: UInt32) {
        guard !stopping else { return }  // the stop cancels everything in flight
        let sqe = nextSQE()
        io_uring_prep_cancel64(sqe, Self.data(.fdWatch, UInt64(token)), Int32(plx_IORING_ASYNC_CANCEL_ALL))
        io_uring_sqe_set_data64(sqe, Self.data(.cancel, 0))
        inflight += 1
    }
}
