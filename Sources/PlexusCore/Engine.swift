import CPlexus
#if canImport(Glibc)
import Glibc
#endif

/// One node's data path: an io_uring, a frame pool, and a port on each fabric.
///
/// An `Engine` lives on one dedicated OS thread (see ``EngineThread``), which is the ring's only
/// submitter (`IORING_SETUP_SINGLE_ISSUER`). All of its methods must be called on that thread:
/// from an ``EngineDriver``'s callbacks, or from a closure passed to ``EngineThread/run(_:)``.
/// Nothing here allocates or locks per frame.
///
/// Establishing VIs is not part of the data path: it is the control plane's, through
/// ``FabricControl`` (seed, "Virtual LAN Server": the switch manager creates and removes VIs).
public final class Engine {
    public let configuration: EngineConfiguration
    /// The send-frame pool.
    public let pool: FramePool
    /// Pool frames reassembly never takes: a segment that would need one of them to start a
    /// message is dropped (counted in `reassemblyDropped`) and the sender's retransmission brings
    /// it again. A driver sets it to what it keeps for its own control frames, so that a pool
    /// full of frames in flight and reassembled frames still has room for acknowledgements.
    public var reassemblyReserve = 0
    let ring: UnsafeMutablePointer<io_uring>
    let portA: Port
    let portB: Port
    var driver: (any EngineDriver)?
    let inbox: JobInbox
    public private(set) var info: EngineInfo
    let deferTaskrun: Bool

    // Operations in flight (each will produce at least one more completion).
    var inflight = 0
    var stopping = false
    var cancelIssued = false
    var wakeArmed = false
    let wakeBuffer: UnsafeMutablePointer<UInt64>

    // Zero-copy state.
    var zeroCopyActive: Bool
    var zeroCopyProbesLeft: Int
    let fixedBuffers: Bool

    let cqes: UnsafeMutablePointer<UnsafeMutablePointer<io_uring_cqe>?>
    static let cqeBatch: UInt32 = 256

    // Segmented sends: preallocated sendmsg records, enough for every frame in flight.
    let segmentCapacity: Int
    let segHeaders: UnsafeMutableRawPointer
    let segIov: UnsafeMutablePointer<iovec>
    let segMsg: UnsafeMutablePointer<msghdr>
    let segSlot: FixedTable<UInt32>
    var segFree: IndexStack

    // UDP GSO sends: one sendmsg record per group of same-size datagrams to one peer.
    static let gsoMaxSegments = 64
    let gsoCapacity: Int
    let gsoMsg: UnsafeMutablePointer<msghdr>
    let gsoIov: UnsafeMutablePointer<iovec>
    let gsoControl: UnsafeMutableRawPointer
    let gsoSlots: FixedTable<UInt32>
    let gsoCount: FixedTable<Int>
    let gsoFabric: FixedTable<UInt8>
    var gsoFree: IndexStack

    // Reassembly of segmented messages.
    struct Reassembly {
        var inUse = false
        var fabric: UInt8 = 0
        var vi: UInt32 = 0
        var messageID: UInt32 = 0
        var slot: UInt32 = 0
        var received = 0
        var length = 0
        var segments = 0
    }
    let reassembly: FixedTable<Reassembly>
    /// Offsets of the segments each context has received (duplicate detection). Plexus's own
    /// senders never need more than 35 segments (16896 bytes at the 576-byte minimum MTU).
    static let maxSegmentsPerMessage = 64
    let reassemblyOffsets: UnsafeMutablePointer<UInt32>
    var nextMessageID: UInt32 = 1

    // Timers.
    let timerSpecs: UnsafeMutablePointer<__kernel_timespec>
    let timerTokens: FixedTable<UInt32>
    var timerFree: IndexStack

    var regions: RegionTable
    var faultTimerArmed = false
    let faultTimerSpec: UnsafeMutablePointer<__kernel_timespec>
    /// Submissions made early because the submission queue filled inside one turn.
    public internal(set) var earlySubmits: UInt64 = 0
    /// Loop turns so far.
    public internal(set) var turns: UInt64 = 0
    /// Attached devices (TAP), by handle id.
    var devices: [DeviceRecord] = []
    /// A device may hold packets still to read (its budget ran out, or the pool was empty).
    var devicesPending = false
    /// Busy-poll: a device was written to since the last ``answerWrites()``.
    var devicesWritten = false
    /// Block I/O: a record per operation in flight (`blockIOQueueDepth`), their free list, the
    /// open backing files by slot, and the counters.
    let blockRecords: FixedTable<BlockIORecord>
    var blockFree: IndexStack
    var blockFiles: [BlockFileSlot] = []
    var blockCounters = BlockIOCounters()

    // user_data tags (top byte).
    enum Tag: UInt64 {
        case receive = 1, send, sendZC, segment, timer, wake, cancel, internalSend, gso, faultTimer, devicePoll, blockIO,
             fdWatch
    }
    @inline(__always) static func data(_ tag: Tag, _ low: UInt64) -> UInt64 { tag.rawValue << 56 | low }

    init(configuration c: EngineConfiguration, inbox: JobInbox) throws(PlexusError) {
        try c.validate()
        if let cpu = c.cpu {
            let rc = plx_pin_current_thread(Int32(cpu))
            if rc != 0 { throw PlexusError(.system, "pinning engine thread to CPU \(cpu)", errno: rc) }
        }
        if let ns = c.networkNamespace {
            let path = ns.contains("/") ? ns : "/var/run/netns/" + ns
            let rc = plx_enter_netns(path)
            if rc != 0 { throw PlexusError(.system, "entering network namespace \(path)", errno: rc) }
        }
        let ring = UnsafeMutablePointer<io_uring>.allocate(capacity: 1)
        ring.initialize(to: io_uring())
        // Prefer a single-issuer ring whose completions run only when we ask (DEFER_TASKRUN);
        // fall back for older kernels.
        let attempts: [(UInt32, String)] = [
            (plx_IORING_SETUP_SINGLE_ISSUER | plx_IORING_SETUP_DEFER_TASKRUN | plx_IORING_SETUP_SUBMIT_ALL,
             "SINGLE_ISSUER|DEFER_TASKRUN|SUBMIT_ALL"),
            (plx_IORING_SETUP_SINGLE_ISSUER | plx_IORING_SETUP_COOP_TASKRUN, "SINGLE_ISSUER|COOP_TASKRUN"),
            (plx_IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN"),
            (0, "none"),
        ]
        var setup = ""
        var lastError: Int32 = 0
        for (flags, name) in attempts {
            var params = io_uring_params()
            params.flags = flags
            params.cq_entries = c.ringEntries * 4
            params.flags |= UInt32(IORING_SETUP_CQSIZE)
            let rc = io_uring_queue_init_params(c.ringEntries, ring, &params)
            if rc == 0 {
                setup = name
                break
            }
            lastError = -rc
        }
        guard !setup.isEmpty else {
            ring.deallocate()
            throw PlexusError(.ioUring, "io_uring_queue_init (is io_uring disabled by kernel.io_uring_disabled?)",
                              errno: lastError)
        }
        self.ring = ring
        self.deferTaskrun = setup.contains("DEFER")
        do {
            pool = try FramePool(slots: c.poolFrames, hugePages: c.hugePages)
            portA = try Port(fabric: .a, configuration: c, ring: ring, pool: pool)
            portB = try Port(fabric: .b, configuration: c, ring: ring, pool: pool)
        } catch {
            io_uring_queue_exit(ring)
            ring.deallocate()
            throw error
        }
        // Register the pool once as a fixed buffer (used by zero-copy sends). Without root this
        // may exceed RLIMIT_MEMLOCK; the engine then works without fixed buffers.
        var iov = iovec(iov_base: pool.memory.base, iov_len: pool.memory.size)
        fixedBuffers = io_uring_register_buffers(ring, &iov, 1) == 0
        configuration = c
        self.inbox = inbox
        switch c.zeroCopy {
        case .never: zeroCopyActive = false
        case .auto, .always: zeroCopyActive = true
        }
        zeroCopyProbesLeft = c.zeroCopy == .auto ? 32 : 0
        cqes = .allocate(capacity: Int(Self.cqeBatch))
        wakeBuffer = .allocate(capacity: 1)
        wakeBuffer.initialize(to: 0)

        // Segment records for frames cut to the smallest datagram any peer may take (a peer's
        // adapter can have a smaller MTU than the engine's path MTU).
        let chunk = min(c.maxDatagram, FrameLayout.smallestPeerMTU - FrameLayout.ipUDPOverhead) - FrameLayout.headerSize
        let perFrame = FrameLayout.maxPayload <= chunk ? 0 : (FrameLayout.maxPayload + chunk - 1) / chunk
        // Each frame has at most two sends in flight (a duplicate from the fault layer).
        segmentCapacity = max(1, 2 * perFrame * c.poolFrames + perFrame * 8)
        segHeaders = .allocate(byteCount: segmentCapacity * FrameLayout.headerSize, alignment: 64)
        segIov = .allocate(capacity: segmentCapacity * 2)
        segMsg = .allocate(capacity: segmentCapacity)
        segMsg.initialize(repeating: msghdr(), count: segmentCapacity)
        segSlot = FixedTable(repeating: 0, count: segmentCapacity)
        segFree = IndexStack(capacity: segmentCapacity)
        gsoCapacity = c.poolFrames / 2 + 1
        gsoMsg = .allocate(capacity: gsoCapacity)
        gsoMsg.initialize(repeating: msghdr(), count: gsoCapacity)
        gsoIov = .allocate(capacity: gsoCapacity * Self.gsoMaxSegments)
        gsoControl = .allocate(byteCount: gsoCapacity * 24, alignment: 8)
        gsoSlots = FixedTable(repeating: 0, count: gsoCapacity * Self.gsoMaxSegments)
        gsoCount = FixedTable(repeating: 0, count: gsoCapacity)
        gsoFabric = FixedTable(repeating: 0, count: gsoCapacity)
        gsoFree = IndexStack(capacity: gsoCapacity)
        reassembly = FixedTable(repeating: Reassembly(), count: c.reassemblyContexts)
        reassemblyOffsets = .allocate(capacity: c.reassemblyContexts * Self.maxSegmentsPerMessage)
        timerSpecs = .allocate(capacity: c.maxTimers)
        timerTokens = FixedTable(repeating: 0, count: c.maxTimers)
        timerFree = IndexStack(capacity: c.maxTimers)
        regions = RegionTable(capacity: c.maxRegions)
        blockRecords = FixedTable(repeating: BlockIORecord(), count: c.blockIOQueueDepth)
        blockFree = IndexStack(capacity: c.blockIOQueueDepth)
        faultTimerSpec = .allocate(capacity: 1)
        info = EngineInfo(
            name: c.name, ports: [portA.info, portB.info], ringSetup: setup, pollMode: c.pollMode.rawValue,
            memoryBacking: pool.memory.backing.rawValue, numaNode: pool.memory.numaNode.map(Int.init),
            fixedBuffers: fixedBuffers, udpSegmentationOffload: portA.gsoAvailable && portB.gsoAvailable,
            zeroCopy: c.zeroCopy.rawValue, poolFrames: c.poolFrames, maxVIs: c.maxVIs,
            rmemMax: readSysctl("/proc/sys/net/core/rmem_max"), wmemMax: readSysctl("/proc/sys/net/core/wmem_max"))
        if c.pollMode == .blocking {
            armReceive(portA)
            armReceive(portB)
        }
        armWake()
    }

    /// Tears down after the loop has drained every operation.
    func close() {
        portA.ring.unregister()
        portB.ring.unregister()
        if fixedBuffers { io_uring_unregister_buffers(ring) }
        io_uring_queue_exit(ring)
    }

    deinit {
        ring.deallocate()
        cqes.deallocate()
        wakeBuffer.deallocate()
        segHeaders.deallocate()
        segIov.deallocate()
        segMsg.deallocate()
        reassemblyOffsets.deallocate()
        gsoMsg.deallocate()
        gsoIov.deallocate()
        gsoControl.deallocate()
        timerSpecs.deallocate()
        faultTimerSpec.deallocate()
    }

    @inline(__always)
    func port(_ f: Fabric) -> Port { f == .a ? portA : portB }

    /// The address a fabric's port is bound to.
    public func address(of fabric: Fabric) -> FabricAddress { port(fabric).address }

    @inline(__always)
    func nextSQE() -> UnsafeMutablePointer<io_uring_sqe> {
        if let s = io_uring_get_sqe(ring) { return s }
        earlySubmits &+= 1
        _ = io_uring_submit(ring)
        while true {
            if let s = io_uring_get_sqe(ring) { return s }
            _ = io_uring_submit(ring)
        }
    }

    func armReceive(_ port: Port) {
        let sqe = nextSQE()
        io_uring_prep_recvmsg_multishot(sqe, port.fd, port.msg, 0)
        sqe.pointee.flags |= plx_IOSQE_BUFFER_SELECT
        sqe.pointee.buf_group = port.ring.groupID
        io_uring_sqe_set_data64(sqe, Self.data(.receive, UInt64(port.fabric.rawValue)))
        port.receiveArmed = true
        inflight += 1
    }

    func armWake() {
        let sqe = nextSQE()
        io_uring_prep_read(sqe, inbox.fd, wakeBuffer, 8, 0)
        io_uring_sqe_set_data64(sqe, Self.data(.wake, 0))
        wakeArmed = true
        inflight += 1
    }

    // MARK: - Control from inside the engine thread

    /// Asks the loop to stop after this turn: what is in flight is cancelled, and the loop ends
    /// once every completion has arrived and every buffer is back.
    public func stop() { stopping = true }

    /// Whether ``stop()`` has been called.
    public var isStopping: Bool { stopping }

    /// Arms a timer on the ring; ``EngineDriver/timerFired(token:engine:)`` is called when it
    /// fires. Returns false when every timer slot is in use.
    @discardableResult
    public func schedule(after delay: Duration, token: UInt32) -> Bool {
        guard !stopping, let i = timerFree.pop() else { return false }
        let (s, atto) = delay.components
        timerSpecs[i] = __kernel_timespec(tv_sec: max(0, s), tv_nsec: max(0, atto / 1_000_000_000))
        timerTokens[i] = token
        let sqe = nextSQE()
        io_uring_prep_timeout(sqe, timerSpecs + i, 0, 0)
        io_uring_sqe_set_data64(sqe, Self.data(.timer, UInt64(i)))
        inflight += 1
        return true
    }

    /// Takes a free frame from the pool, or nil when all are in use (back-pressure: wait for
    /// send completions). - Complexity: O(1), no allocation.
    @inlinable
    public func takeFrame() -> Frame? { pool.take() }

    /// Posts `count` receives on `vi`: that many frames may arrive before it drops them as
    /// receive-queue-empty. Returns false when the VI is not established.
    @discardableResult
    public func postReceives(_ count: Int, on vi: VI) -> Bool {
        guard count >= 0, let e = port(vi.fabric).entry(vi.number), e.pointee.established else { return false }
        e.pointee.posted &+= UInt64(count)
        return true
    }

    /// Receives posted and not yet consumed on `vi`.
    public func postedReceives(on vi: VI) -> Int {
        guard let e = port(vi.fabric).entry(vi.number), e.pointee.established else { return 0 }
        return Int(clamping: e.pointee.posted)
    }

    /// Whether `vi` is established.
    public func isEstablished(_ vi: VI) -> Bool {
        port(vi.fabric).entry(vi.number)?.pointee.established ?? false
    }

    /// Counters of a port.
    public func counters(_ fabric: Fabric) -> PortCounters { port(fabric).counters }

    /// Datagrams the kernel dropped at a port's socket because its receive queue was full
    /// (``PortCounters/receiveOverruns``), without copying the other counters.
    @inline(__always)
    public func receiveOverruns(_ fabric: Fabric) -> UInt64 { port(fabric).counters.receiveOverruns }

    /// How many frames of the largest size a port's socket can queue before the kernel drops
    /// what arrives (from the receive buffer it granted): a receiver that grants a sender no more
    /// credit than this is not overrun by that sender.
    public func receiveQueueFrames(_ fabric: Fabric) -> Int { port(fabric).receiveQueueFrames }

    /// The same, for frames from a peer whose adapter on `fabric` has MTU `peerMTU` (nil: as
    /// large as this port's): the peer sends datagrams no larger than either end's MTU allows.
    public func receiveQueueFrames(_ fabric: Fabric, peerMTU: Int?) -> Int {
        guard let peerMTU else { return port(fabric).receiveQueueFrames }
        return port(fabric).receiveQueueFrames(datagramsUpTo: peerMTU - FrameLayout.ipUDPOverhead)
    }

    /// Counters of a VI, or nil when it is not established.
    public func counters(_ vi: VI) -> VICounters? {
        guard let e = port(vi.fabric).entry(vi.number), e.pointee.established else { return nil }
        return e.pointee.counters
    }

    /// Frames held outside the pool and receive buffers lent out (for leak checks).
    public var outstanding: (frames: Int, receiveBuffers: Int) {
        (pool.outstanding, portA.ring.lent + portB.ring.lent)
    }

    /// The driver the engine calls (to reach it from a closure run on the engine thread).
    public var installedDriver: (any EngineDriver)? { driver }

    /// Whether sends currently go out zero-copy.
    public var zeroCopyInUse: Bool { zeroCopyActive }
}

@available(*, unavailable)
extension Engine: Sendable {}
