import PlexusCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What an ``NBDServer`` has done, counted while it runs.
public final class NBDStatistics: Sendable {
    let connectionCount = Atomic<UInt64>(0)
    let requestCount = Atomic<UInt64>(0)
    let readCount = Atomic<UInt64>(0)
    let writeCount = Atomic<UInt64>(0)
    let flushCount = Atomic<UInt64>(0)
    let trimCount = Atomic<UInt64>(0)
    let bytesReadCount = Atomic<UInt64>(0)
    let bytesWrittenCount = Atomic<UInt64>(0)
    let errorReplyCount = Atomic<UInt64>(0)
    let malformedCount = Atomic<UInt64>(0)

    /// The counters at one moment.
    public struct Snapshot: Sendable, Hashable {
        /// Connections accepted.
        public var connections: UInt64
        /// Transmission requests received (every type).
        public var requests: UInt64
        public var reads: UInt64
        public var writes: UInt64
        public var flushes: UInt64
        public var trims: UInt64
        public var bytesRead: UInt64
        public var bytesWritten: UInt64
        /// Requests answered with an error (refused, or failed by the device).
        public var errorReplies: UInt64
        /// Connections dropped for breaking the protocol: unknown client flags, a bad option or
        /// request magic, an option too large to read.
        public var malformed: UInt64
    }

    public var snapshot: Snapshot {
        Snapshot(connections: connectionCount.load(ordering: .relaxed), requests: requestCount.load(ordering: .relaxed),
                 reads: readCount.load(ordering: .relaxed), writes: writeCount.load(ordering: .relaxed),
                 flushes: flushCount.load(ordering: .relaxed), trims: trimCount.load(ordering: .relaxed),
                 bytesRead: bytesReadCount.load(ordering: .relaxed), bytesWritten: bytesWrittenCount.load(ordering: .relaxed),
                 errorReplies: errorReplyCount.load(ordering: .relaxed), malformed: malformedCount.load(ordering: .relaxed))
    }

    enum Counter { case connections, requests, reads, writes, flushes, trims, bytesRead, bytesWritten, errorReplies, malformed }

    func add(_ counter: Counter, _ n: UInt64 = 1) {
        switch counter {
        case .connections: connectionCount.wrappingAdd(n, ordering: .relaxed)
        case .requests: requestCount.wrappingAdd(n, ordering: .relaxed)
        case .reads: readCount.wrappingAdd(n, ordering: .relaxed)
        case .writes: writeCount.wrappingAdd(n, ordering: .relaxed)
        case .flushes: flushCount.wrappingAdd(n, ordering: .relaxed)
        case .trims: trimCount.wrappingAdd(n, ordering: .relaxed)
        case .bytesRead: bytesReadCount.wrappingAdd(n, ordering: .relaxed)
        case .bytesWritten: bytesWrittenCount.wrappingAdd(n, ordering: .relaxed)
        case .errorReplies: errorReplyCount.wrappingAdd(n, ordering: .relaxed)
        case .malformed: malformedCount.wrappingAdd(n, ordering: .relaxed)
        }
    }
}

/// An NBD server on a Unix socket (the newstyle fixed handshake, simple replies): the way a
/// processor's LUNs reach Linux tools without a kernel module (`nbdinfo`, `nbdcopy`,
/// `nbdfuse` then `losetup` and a file system, `fio --ioengine=nbd`).
///
/// One thread accepts; each connection is served on a thread of its own, one request at a time,
/// with the device its export opens for it and one preallocated buffer of ``maxPayload`` bytes:
/// a request allocates nothing. Larger requests are refused with EINVAL (NBD_INFO_BLOCK_SIZE
/// says so during the handshake). ``stop()`` closes the socket and every connection, waits for
/// their threads and removes the socket file; a started server runs until it is stopped.
public final class NBDServer: Sendable {
    public let socketPath: String
    public let exports: [NBDExport]
    /// The largest read or write one request may ask for.
    public let maxPayload: Int
    /// The largest option the handshake reads (an option beyond it ends the connection).
    public static let maxOptionLength = 65536
    public let statistics = NBDStatistics()

    struct State {
        var listener: Int32 = -1
        var acceptThread: pthread_t?
        var connections: Set<Int32> = []
        var stopping = false
    }
    let state = Mutex(State())

    /// A server of `exports` at `socketPath` (not started), for requests of at most
    /// `maxPayload` bytes (32 MiB, nbdkit's limit, unless given).
    public init(socketPath: String, exports: [NBDExport], maxPayload: Int = 32 << 20) {
        precondition(maxPayload >= 4096, "requests of at least 4 KiB")
        self.socketPath = socketPath
        self.exports = exports
        self.maxPayload = maxPayload
    }

    deinit { stop() }

    /// Binds the socket and starts accepting. A stale socket file is replaced; a live one (a
    /// server answers on it) is an error, as are a file that is not a socket and a path too long
    /// for a Unix socket.
    public func start() throws(PlexusError) {
        let fd: Int32
        do throws(SocketIO.Failure) {
            fd = try SocketIO.listen(at: socketPath)
        } catch {
            if case .errno(let e) = error { throw PlexusError(.system, "listening on \(socketPath)", errno: e) }
            throw PlexusError(.system, "listening on \(socketPath)")
        }
        state.withLock { $0.listener = fd }
        do throws(SocketIO.Failure) {
            let tid = try startThread { [self] in acceptLoop(fd) }
            state.withLock { $0.acceptThread = tid }
        } catch {
            close(fd)
            unlink(socketPath)
            throw PlexusError(.system, "starting the NBD accept thread")
        }
    }

    /// Stops accepting, ends every connection (a request in progress completes first) and waits
    /// for their threads; removes the socket file. Idempotent.
    public func stop() {
        let (listener, thread) = state.withLock { s -> (Int32, pthread_t?) in
            let r = (s.listener, s.acceptThread)
            s.stopping = true
            s.listener = -1
            s.acceptThread = nil
            // Under the lock: a connection closes its descriptor only after leaving this set.
            for c in s.connections { shutdown(c, Int32(SHUT_RDWR)) }
            return r
        }
        if listener >= 0 {
            shutdown(listener, Int32(SHUT_RDWR))
            if let thread { pthread_join(thread, nil) }
            close(listener)
            unlink(socketPath)
        }
        // Connection threads leave the set as they end.
        var waited = 0
        while state.withLock({ !$0.connections.isEmpty }) && waited < 30_000 {
            usleep(1000)
            waited += 1
        }
    }

    /// Whether a server (this one or any other, nbdkit say) accepts connections on the Unix
    /// socket at `path`.
    public static func answers(at path: String) -> Bool { SocketIO.answers(path) }

    /// The connections being served.
    public var activeConnections: Int { state.withLock { $0.connections.count } }

    func acceptLoop(_ listener: Int32) {
        while true {
            let c = accept(listener, nil, nil)
            if c < 0 {
                if errno == EINTR { continue }
                if state.withLock({ $0.stopping }) { return }
                // Out of descriptors or a transient failure: try again shortly.
                usleep(10_000)
                continue
            }
            _ = fcntl(c, F_SETFD, FD_CLOEXEC)
            let admitted = state.withLock { s -> Bool in
                guard !s.stopping else { return false }
                s.connections.insert(c)
                return true
            }
            guard admitted else {
                close(c)
                return
            }
            statistics.add(.connections)
            do throws(SocketIO.Failure) {
                let tid = try startThread { [self] in
                    NBDConnection(fd: c, server: self).run()
                    state.withLock { s in
                        s.connections.remove(c)
                        close(c)
                    }
                }
                pthread_detach(tid)
            } catch {
                state.withLock { s in
                    s.connections.remove(c)
                    close(c)
                }
            }
        }
    }
}
