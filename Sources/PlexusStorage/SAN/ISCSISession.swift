import CPlexusISCSI
import PlexusCore
#if canImport(Glibc)
import Glibc
#endif

/// How one command on an iSCSI LUN ended.
public enum ISCSIOutcome: Sendable, Hashable {
    /// GOOD: `residual` bytes of the transfer were not moved.
    case good(residual: Int)
    /// CHECK CONDITION with the SAN's sense.
    case checkCondition(key: UInt8, asc: UInt8, ascq: UInt8)
    /// Another SCSI status (BUSY, RESERVATION CONFLICT, TASK SET FULL …).
    case status(UInt8)
    /// The connection failed, or the command timed out or was cancelled.
    case connectionLost
}

/// One logged-in session to a LUN on an iSCSI SAN, driven by libiscsi from the engine thread.
///
/// Set-up logs in synchronously (``init(url:slots:initiator:)``, which may block for the
/// login's round trips) and reads the LUN's geometry with READ CAPACITY(16). Then every command
/// is asynchronous: ``start(slot:operation:lba:length:memory:)`` queues a READ(16), WRITE(16)
/// or SYNCHRONIZE CACHE(16) whose data goes straight to or from the caller's memory (libiscsi's
/// iovec tasks: no copy), and the socket is serviced when the engine's ring says it is ready
/// (``Engine/watch(fd:events:token:)``, one-shot polls re-armed from ``iscsi_which_events``):
/// ``ready(token:events:engine:)`` runs libiscsi's state machine, and ``drain(_:)`` hands out
/// the commands that finished. Nothing here blocks after set-up.
///
/// Each command slot has a preallocated record (its task, data vector and outcome, in C), so
/// the session itself allocates nothing per command; libiscsi mallocs a task and a PDU per
/// command inside its own calls.
///
/// When the connection fails (the SAN went away) every command in flight ends with
/// ``ISCSIOutcome/connectionLost``, the session is down (``isUp`` false, ``lastError`` says
/// why), and ``reconnect(engine:)`` starts a new login without blocking. Thread-confined: one
/// engine thread.
public final class ISCSISession: BlockDevice {
    public let url: ISCSIURL
    public let geometry: BlockGeometry
    /// Command slots (one per command in flight).
    public let queueDepth: Int
    public private(set) var inFlight = 0
    public var readiness: BlockDeviceReadiness { isUp ? .ready : .notReady }
    /// Logged in and taking commands.
    public private(set) var isUp = true
    /// A reconnection's login is under way.
    public private(set) var isConnecting = false
    /// Why the session last went down (nil while it never has).
    public private(set) var lastError: String?
    /// Times the session went down (connection lost, a command timed out, a failed reconnection).
    public private(set) var failures: UInt64 = 0
    /// Times a reconnection logged in again.
    public private(set) var reconnections: UInt64 = 0
    /// The first of the two watch tokens of this iSCSI session (POLLIN; the second is POLLIN|POLLOUT).
    public var watchToken: UInt32 = 0

    let initiator: String
    var context: OpaquePointer
    let slots: UnsafeMutablePointer<plx_iscsi_slot>
    let doneList: UnsafeMutablePointer<plx_iscsi_done_list>
    let doneEntries: UnsafeMutablePointer<UInt32>
    let connectStatus: UnsafeMutablePointer<Int32>
    var armedIn = false
    var armedOut = false

    /// Logs in to `url` and reads its geometry. Setup: blocks for the login's round trips.
    /// - Throws: ``ISCSIError`` naming the URL: malformed, a portal that does not answer or
    ///   refuses the login, no such target or LUN, a geometry that cannot be read.
    public init(url text: String, slots: Int, initiator: String = "iqn.2026-12.org.plexus:storage-target")
        throws(ISCSIError)
    {
        let url = try ISCSIURL(text)
        guard slots > 0, slots <= 4096 else { throw .resources(text, reason: "slots must be 1…4096") }
        if let why = PortalProbe.failure(url) { throw .cannotLogIn(url.description, reason: why) }
        let context = try Self.makeContext(url, initiator: initiator)
        iscsi_set_timeout(context, 10)
        if iscsi_full_connect_sync(context, url.portal, Int32(url.lun)) != 0 {
            let why = Self.error(context)
            iscsi_destroy_context(context)
            throw .cannotLogIn(url.description, reason: why)
        }
        var blocks: UInt64 = 0
        var blockSize: UInt32 = 0
        if plx_iscsi_read_capacity16(context, Int32(url.lun), &blocks, &blockSize) != 0 {
            let why = Self.error(context)
            iscsi_destroy_context(context)
            throw .badGeometry(url.description, reason: "READ CAPACITY(16) failed: \(why)")
        }
        guard blockSize >= 512, blockSize <= 65536, blockSize & (blockSize - 1) == 0, blocks > 0 else {
            iscsi_destroy_context(context)
            throw .badGeometry(url.description, reason: "\(blocks) blocks of \(blockSize) bytes")
        }
        iscsi_set_timeout(context, 0)  // commands are timed by the storage target
        self.url = url
        self.initiator = initiator
        self.context = context
        geometry = BlockGeometry(blockSize: Int(blockSize), blockCount: blocks)
        queueDepth = slots
        doneList = .allocate(capacity: 1)
        let entries = UnsafeMutablePointer<UInt32>.allocate(capacity: slots)
        doneList.initialize(to: plx_iscsi_done_list(entries: entries, count: 0, capacity: UInt32(slots)))
        doneEntries = entries
        self.slots = .allocate(capacity: slots)
        for i in 0..<slots {
            (self.slots + i).initialize(to: plx_iscsi_slot(
                task: nil, iov: scsi_iovec(iov_base: nil, iov_len: 0), status: plx_ISCSI_PENDING, sense_key: 0, asc: 0,
                ascq: 0, residual: 0, index: UInt32(i), done: doneList))
        }
        connectStatus = .allocate(capacity: 1)
        connectStatus.initialize(to: 0)
    }

    deinit {
        iscsi_destroy_context(context)  // cancels what is in flight (callbacks into the slots)
        doneEntries.deallocate()
        doneList.deallocate()
        slots.deallocate()
        connectStatus.deallocate()
    }

    static func makeContext(_ url: ISCSIURL, initiator: String) throws(ISCSIError) -> OpaquePointer {
        guard let c = iscsi_create_context(initiator) else {
            throw .resources(url.description, reason: "iscsi_create_context failed")
        }
        iscsi_set_targetname(c, url.target)
        iscsi_set_session_type(c, ISCSI_SESSION_NORMAL)
        iscsi_set_header_digest(c, ISCSI_HEADER_DIGEST_NONE_CRC32C)
        // A lost connection fails the commands in flight at once: the storage target answers
        // them with CHECK CONDITION and reconnects itself (libiscsi's own reconnection holds
        // them until it succeeds, which may be never).
        iscsi_set_noautoreconnect(c, 1)
        return c
    }

    static func error(_ c: OpaquePointer) -> String {
        guard let e = iscsi_get_error(c) else { return "unknown error" }
        let s = String(cString: e).split(whereSeparator: \.isNewline).joined(separator: " ")
        return s.isEmpty ? "unknown error" : s
    }

    /// libiscsi, without its own reconnection, reports a connection the portal closed as "Can
    /// not reconnect right now": say what happened instead.
    static func lostReason(_ libiscsi: String, events: Int32) -> String {
        guard libiscsi.contains("reconnect") else { return "connection lost: \(libiscsi)" }
        let how = events & Int32(POLLHUP) != 0 ? "hung up" : events & Int32(POLLERR) != 0 ? "failed" : "was closed"
        return "connection lost: the connection to the portal \(how)"
    }

    // MARK: Commands (engine thread; no allocation here, libiscsi allocates its task)

    /// Starts `operation` in `slot` (free: not in flight) on `length` bytes at `lba`, data in
    /// `memory`. False when the session is down or libiscsi refused the task (``lastError``).
    public func start(slot: Int, operation: BlockOperation, lba: UInt64, length: Int,
                      memory: UnsafeMutableRawPointer?) -> Bool {
        guard isUp, slot >= 0, slot < queueDepth, slots[slot].task == nil else { return false }
        let s = slots + slot
        let lun = Int32(url.lun), bs = Int32(geometry.blockSize)
        let rc: Int32
        switch operation {
        case .read: rc = plx_iscsi_read16(context, lun, lba, UInt32(length), bs, s, memory)
        case .write(let fua): rc = plx_iscsi_write16(context, lun, lba, UInt32(length), bs, fua ? 1 : 0, s, memory)
        case .flush: rc = plx_iscsi_sync16(context, lun, s)
        case .unmap: return false
        }
        guard rc == 0 else {
            lastError = "starting a command: \(Self.error(context))"
            return false
        }
        inFlight += 1
        return true
    }

    /// Sends what the commands just started queued (a non-blocking write) and arms the watch
    /// for what libiscsi waits for.
    public func pump(engine: Engine) {
        if isUp && iscsi_which_events(context) & Int32(plx_POLLOUT) != 0 {
            let rc = iscsi_service(context, Int32(plx_POLLOUT))
            if rc < 0 || connectionFailed() { goDown(Self.error(context)) }
        }
        arm(engine: engine)
    }

    /// A watch fired (`token` is one of the two of this iSCSI session): runs libiscsi on `events`, then
    /// re-arms. A cancelled watch (negative `events`) is ignored.
    public func ready(token: UInt32, events: Int32, engine: Engine) {
        guard events >= 0 else { return }
        if token == watchToken { armedIn = false } else { armedOut = false }
        // A lost connection shows as an error from iscsi_service, or (with commands in flight)
        // as their callbacks failing them while iscsi_service returns 0.
        let rc = iscsi_service(context, events)
        if isConnecting && rc < 0 {
            goDown("reconnecting: \(Self.error(context))")
        } else if isUp && (rc < 0 || connectionFailed()) {
            goDown(Self.lostReason(Self.error(context), events: events))
        }
        if isConnecting && connectStatus.pointee != plx_ISCSI_PENDING {
            isConnecting = false
            if connectStatus.pointee == 0 {
                isUp = true
                reconnections += 1
            } else {
                goDown("reconnecting: \(Self.error(context))")
            }
        }
        arm(engine: engine)
    }

    func arm(engine: Engine) {
        guard isUp || isConnecting else { return }
        let fd = iscsi_get_fd(context)
        guard fd >= 0 else { return }
        let want = iscsi_which_events(context)
        do {
            if want & Int32(plx_POLLOUT) != 0 && !armedOut {
                try engine.watch(fd: fd, events: Int16(plx_POLLIN | plx_POLLOUT), token: watchToken + 1)
                armedOut = true
            } else if want & Int32(plx_POLLIN) != 0 && !armedIn && !armedOut {
                try engine.watch(fd: fd, events: Int16(plx_POLLIN), token: watchToken)
                armedIn = true
            }
        } catch {
            goDown("the engine refused to watch the socket: \(error)")
        }
    }

    /// Hands each command that finished since the last drain to `body` (its slot and outcome).
    public func drain(_ body: (Int, ISCSIOutcome) -> Void) {
        while doneList.pointee.count > 0 {
            let n = Int(doneList.pointee.count)
            let entries = doneEntries
            for k in 0..<n {
                let i = Int(entries[k])
                inFlight -= 1
                body(i, Self.outcome(slots[i]))
            }
            // Completions recorded while `body` ran (a cancellation) follow the n handled.
            let left = Int(doneList.pointee.count) - n
            if left > 0 { (entries).update(from: entries + n, count: left) }
            doneList.pointee.count = UInt32(left)
        }
    }

    static func outcome(_ s: plx_iscsi_slot) -> ISCSIOutcome {
        switch s.status {
        case 0: .good(residual: Int(s.residual))
        case 2: .checkCondition(key: s.sense_key, asc: s.asc, ascq: s.ascq)
        case 0...0xff: .status(UInt8(s.status))
        default: .connectionLost
        }
    }

    /// The command in `slot` took too long: it is cancelled here (its outcome is
    /// ``ISCSIOutcome/connectionLost`` at the next ``drain(_:)``) and the session goes down —
    /// a SAN that does not answer one command is not trusted with the next.
    public func timeOut(slot: Int, after: Duration) {
        guard slot >= 0, slot < queueDepth, slots[slot].task != nil else { return }
        goDown("a command got no answer in \(after)")
    }

    /// Whether a command finished since the last drain failed for its connection.
    func connectionFailed() -> Bool {
        for k in 0..<Int(doneList.pointee.count) where slots[Int(doneEntries[k])].status == plx_ISCSI_CONNECTION {
            return true
        }
        return false
    }

    /// Marks the session down and ends every command in flight (cancelled locally: their
    /// memory is not touched again); `counted` adds to ``failures``.
    func goDown(_ reason: String, counted: Bool = true) {
        let wasUp = isUp || isConnecting
        isUp = false
        isConnecting = false
        lastError = reason
        if wasUp && counted { failures += 1 }
        for i in 0..<queueDepth where slots[i].task != nil { plx_iscsi_cancel(context, slots + i) }
    }

    /// Starts a new login (on a new libiscsi context) without blocking; its outcome arrives
    /// through the watch (``isUp`` again, or down with ``lastError``). Does nothing while up or
    /// connecting. The LUN's geometry is taken to be unchanged.
    public func reconnect(engine: Engine) {
        guard !isUp, !isConnecting, inFlight == 0 else { return }
        let fresh: OpaquePointer
        do { fresh = try Self.makeContext(url, initiator: initiator) } catch {
            lastError = "reconnecting: \(error)"
            return
        }
        if armedIn || armedOut {
            engine.unwatch(token: watchToken)
            engine.unwatch(token: watchToken + 1)
            armedIn = false
            armedOut = false
        }
        iscsi_destroy_context(context)
        context = fresh
        if plx_iscsi_connect_async(context, url.portal, Int32(url.lun), connectStatus) != 0 {
            lastError = "reconnecting: \(Self.error(context))"
            return
        }
        isConnecting = true
        arm(engine: engine)
    }

    /// A reconnection's login that has not finished is given up (the portal accepted the
    /// connection but does not answer); the next ``reconnect(engine:)`` starts afresh.
    public func abandonLogin(after: Duration) {
        guard isConnecting else { return }
        goDown("reconnecting: no answer to the login in \(after)")
    }

    /// Stops watching the socket (before the session is dropped).
    public func close(engine: Engine) {
        engine.unwatch(token: watchToken)
        engine.unwatch(token: watchToken + 1)
        armedIn = false
        armedOut = false
        goDown("closed", counted: false)
    }

    // MARK: BlockDevice (geometry and readiness only)

    var refused: (tag: UInt64, pending: Bool) = (0, false)

    /// The storage target starts commands with ``start(slot:operation:lba:length:memory:)``;
    /// a request submitted here completes at once with ``BlockIOError/unsupported``.
    public func submit(_ request: consuming BlockRequest) { refused = (request.tag, true) }

    @discardableResult
    public func reap(waiting: Bool, _ body: (consuming BlockCompletion) -> Void) -> Int {
        guard refused.pending else { return 0 }
        refused.pending = false
        body(BlockCompletion(tag: refused.tag, result: .failure(.unsupported), buffer: nil))
        return 1
    }
}
