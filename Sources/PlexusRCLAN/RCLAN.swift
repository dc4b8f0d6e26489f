import PlexusCore
#if canImport(Glibc)
import Glibc
#endif

/// The RCLAN layer ("RCLAN layer" in the seed): reliable, exactly-once, in-order messages over
/// redundant VIs (RVIs), each a VI on fabric A and a VI on fabric B.
///
/// Install it as the engine's driver and give it a ``RVIDelegate``:
///
/// ```swift
/// let thread = try EngineThread.start(.loopback(node: 1)) { RCLAN(delegate: MyDelegate()) }
/// let rvi = try thread.runAndWait { engine in try RCLAN.on(engine)!.open(path) }
/// ```
///
/// Everything runs on the engine thread: the layer, like ``Engine``, is not `Sendable`; reach
/// it from elsewhere with ``EngineThread/run(_:)``. The protocol (sequence space, acks, credits,
/// heartbeats, epochs) is described in docs/reliability.md.
///
/// The data path keeps to the engine's rules: frames live in registered memory from the moment
/// a message is posted until it is acknowledged, a retransmission sends the same frame again,
/// and nothing is allocated or locked per frame.
public final class RCLAN: EngineDriver {
    public let configuration: RCLANConfiguration
    /// The first service: it owns RVIs opened without a service and devices attached without
    /// one. More services share the layer through ``host(_:)``.
    public let delegate: any RVIDelegate
    /// Every service the layer hosts, ``delegate`` first (RCLAN+Services.swift).
    public internal(set) var services: [any RVIDelegate]
    /// Device id → the service that attached it (nil: ``delegate``).
    @exclusivity(unchecked) var deviceOwners: [(device: DeviceHandle, service: any RVIDelegate)?] = []
    /// Block I/O token ranges → the service that claimed them (``claimBlockIOTokens(_:for:)``).
    @exclusivity(unchecked) var blockIOClaims: [(tokens: Range<UInt32>, service: any RVIDelegate)] = []
    /// Whether the engine has started (services hosted later are started at once).
    @exclusivity(unchecked) var started = false
    /// The engine the layer runs on (set when the engine starts).
    public internal(set) unowned(unsafe) var engine: Engine! = nil

    @exclusivity(unchecked) var connections: [Connection?] = []
    @exclusivity(unchecked) var freeIDs: [UInt32] = []
    @exclusivity(unchecked) var generations: [UInt32] = []
    @exclusivity(unchecked) var dirtyList: [UInt32] = []
    /// VI number → connection id + 1 (0: none), per fabric; `maxVIs` entries once the engine starts.
    @exclusivity(unchecked) var viMapA = FixedTable<UInt32>(repeating: 0, count: 0)
    @exclusivity(unchecked) var viMapB = FixedTable<UInt32>(repeating: 0, count: 0)
    var viMapCount: Int { viMapA.count }
    /// Pool slot → owning connection (id << 32 | generation, `.max`: none) and sequence, for
    /// frames in the kernel; one entry per pool frame once the engine starts.
    @exclusivity(unchecked) var slotOwner = FixedTable<UInt64>(repeating: .max, count: 0)
    @exclusivity(unchecked) var slotSeq = FixedTable<UInt64>(repeating: 0, count: 0)
    @exclusivity(unchecked) var now: UInt64 = 0
    @exclusivity(unchecked) var tickDue = false
    @exclusivity(unchecked) var lastTickAt: UInt64 = 0
    @exclusivity(unchecked) var tickAfterStall = false
    @exclusivity(unchecked) var busyPoll = false
    @exclusivity(unchecked) var nextTickAt: UInt64 = 0
    /// The tick armed last: its generation (a timer of an older one is ignored when it fires)
    /// and when it is due.
    @exclusivity(unchecked) var tickGeneration: UInt32 = 0
    @exclusivity(unchecked) var tickExpectedAt: UInt64 = 0
    /// Ticks, late ticks and ticks after socket overruns (``LivenessTotals``).
    @exclusivity(unchecked) var ticks: UInt64 = 0
    @exclusivity(unchecked) var ticksLate: UInt64 = 0
    @exclusivity(unchecked) var ticksOverrun: UInt64 = 0
    /// Receive overruns of both ports at the last tick.
    @exclusivity(unchecked) var overrunsAtLastTick: UInt64 = 0
    /// Timers of ticks superseded by a sooner one, still in the ring.
    @exclusivity(unchecked) var supersededTicks = 0
    /// The pairs of nodes the layer has RVIs to, by the peer's primary addresses, and in a list
    /// the tick walks.
    @exclusivity(unchecked) var pairs: [PeerPair.Key: PeerPair] = [:]
    @exclusivity(unchecked) var pairList: [PeerPair] = []
    let idleAfter: UInt64
    /// Windows idle RVIs gave back, for the next RVI that wakes.
    let windowPool: WindowPool
    let watchedNanos: UInt64
    let keepaliveNanos: UInt64?
    let tick: Duration
    let tickNanos: UInt64
    let holdDown: UInt64
    let reorderWindow: UInt64 = 250_000
    /// The timer tokens the layer uses for its tick: this base ORed with the tick's generation
    /// (0 ... 255). A driver hosting services keeps its own tokens out of this range.
    public static let tickTokenBase: UInt32 = 0xFFFF_FE00
    /// Frames on VIs that belong to no RVI of this layer (dropped, counted).
    public internal(set) var unboundFrames: UInt64 = 0
    /// Control frames not sent because the pool was empty (retried on the next tick).
    public internal(set) var controlFramesSkipped: UInt64 = 0

    /// - Throws: a ``PlexusError`` when `configuration` fails ``RCLANConfiguration/validate()``.
    public init(configuration: RCLANConfiguration = RCLANConfiguration(), delegate: any RVIDelegate) throws(PlexusError) {
        try configuration.validate()
        self.configuration = configuration
        self.delegate = delegate
        services = [delegate]
        tick = configuration.heartbeatInterval
        tickNanos = Self.nanos(configuration.heartbeatInterval)
        holdDown = Self.nanos(configuration.holdDown)
        idleAfter = Self.nanos(configuration.idleAfter)
        windowPool = WindowPool(sendWindow: configuration.sendWindow, receiveWindow: configuration.receiveWindow)
        watchedNanos = Self.nanos(configuration.watchedProbeInterval)
        keepaliveNanos = configuration.keepaliveInterval.map { Self.nanos($0) }
        dirtyList.reserveCapacity(1024)
    }

    /// Builds a layer with a configuration already known to be valid (e.g. the default).
    public convenience init(delegate: any RVIDelegate) {
        // The default configuration always validates.
        try! self.init(configuration: RCLANConfiguration(), delegate: delegate)
    }

    static func nanos(_ d: Duration) -> UInt64 {
        let c = d.components
        return UInt64(max(0, c.seconds)) * 1_000_000_000 + UInt64(max(0, c.attoseconds) / 1_000_000_000)
    }

    /// The layer installed as `engine`'s driver, if it is one.
    public static func on(_ engine: Engine) -> RCLAN? { engine.installedDriver as? RCLAN }

    // MARK: - Opening and closing

    /// Opens an RVI: establishes its two VIs and starts probing both legs. The peer opens the
    /// mirror image (its local VIs are this side's remote ones).
    /// - Throws: ``PlexusError`` when a VI number is out of range or in use, or the engine stops.
    ///
    /// - Parameter service: the service that owns the RVI and gets its messages and events; one
    ///   of ``services`` (the layer's ``delegate`` when nil).
    /// - Parameter liveness: how the peer is watched while the pair of nodes is idle
    ///   (``RVILiveness``); the pair is probed at the pace of its most demanding RVI.
    public func open(_ path: RVIPath, policy: LoadBalancing = .alternate,
                     service: (any RVIDelegate)? = nil, liveness: RVILiveness = .watched) throws(PlexusError) -> RVI {
        let owner = service ?? delegate
        guard services.contains(where: { $0 === owner }) else {
            throw PlexusError(.configuration, "open: \(type(of: owner)) is not a service of this layer (host it first)")
        }
        guard let engine, !engine.isStopping else { throw PlexusError(.engineStopped, "the engine is stopping") }
        let a = VI(.a, path.localA)
        let b = VI(.b, path.localB)
        guard Int(path.localA) < viMapCount, Int(path.localB) < viMapCount else {
            throw PlexusError(.noSuchVI, "RVI VIs must be below \(viMapCount)")
        }
        try engine.establish(a, peers: path.peers(on: .a), remoteVI: path.remoteA, mtu: path.mtuA)
        do {
            try engine.establish(b, peers: path.peers(on: .b), remoteVI: path.remoteB, mtu: path.mtuB)
        } catch {
            try? engine.teardown(a)
            throw error
        }
        let receives = configuration.receiveWindow * 2 + 256
        _ = engine.postReceives(receives, on: a)
        _ = engine.postReceives(receives, on: b)
        let id: UInt32
        if let free = freeIDs.popLast() {
            id = free
        } else {
            id = UInt32(connections.count)
            connections.append(nil)
            generations.append(0)
        }
        generations[Int(id)] &+= 1
        // Credit: the receive window, but no more frames than either socket can queue (one leg
        // may carry them all), counting the segments the peer's MTU on each fabric cuts a frame
        // into, so that a sender within its credit never overruns this end.
        let credit = min(configuration.receiveWindow, engine.receiveQueueFrames(.a, peerMTU: path.mtuA),
                         engine.receiveQueueFrames(.b, peerMTU: path.mtuB))
        let p = pair(for: path)
        let c = Connection(id: id, generation: generations[Int(id)] << 16, path: path, policy: policy,
                           configuration: configuration, credit: credit, now: monotonicNanos(), service: owner,
                           pair: p, liveness: liveness, windows: windowPool)
        c.legs[0].receiveOverrunsAtOpen = engine.receiveOverruns(.a)
        c.legs[1].receiveOverrunsAtOpen = engine.receiveOverruns(.b)
        for (l, alternates) in [path.alternatesA, path.alternatesB].enumerated() {
            c.legs[l].addressCount = 1 + alternates.count
            c.legs[l].answeredAt = c.legs[l].changedAt
            c.legs[l].addressChangedAt = c.legs[l].changedAt
        }
        connections[Int(id)] = c
        join(c, p)
        viMapA[Int(path.localA)] = id + 1
        viMapB[Int(path.localB)] = id + 1
        if dirtyList.capacity < connections.count { dirtyList.reserveCapacity(connections.count * 2) }
        return c.rvi
    }

    /// Closes an RVI: messages not yet acknowledged complete with ``RVIFailure/closed``, frames
    /// are released, and both VIs are torn down.
    public func close(_ rvi: RVI) {
        guard let c = live(rvi) else { return }
        failPending(c, reason: .closed)
        c.closing = true
        c.releaseFrames()
        viMapA[Int(c.path.localA)] = 0
        viMapB[Int(c.path.localB)] = 0
        try? engine.teardown(c.viA)
        try? engine.teardown(c.viB)
        leave(c)
        connections[Int(c.id)] = nil
        freeIDs.append(c.id)
    }

    /// The open RVIs.
    public var openRVIs: [RVI] { connections.compactMap { $0?.rvi } }

    /// The path an RVI was opened with (or last given with ``setPeers(of:from:)``).
    public func path(of rvi: RVI) -> RVIPath? { live(rvi)?.path }

    /// Counters and leg states of one RVI.
    public func statistics(_ rvi: RVI) -> RVIStatistics? {
        guard let c = live(rvi) else { return nil }
        var s = c.snapshot()
        for (l, f) in [(0, Fabric.a), (1, Fabric.b)] {
            s.legs[l].receiveOverruns = engine.receiveOverruns(f) &- c.legs[l].receiveOverrunsAtOpen
        }
        return s
    }

    /// Changes an RVI's load-balancing policy.
    public func setPolicy(_ policy: LoadBalancing, on rvi: RVI) { live(rvi)?.policy = policy }

    /// Whether a send on `rvi` would be accepted now (window room and a free frame).
    public func canSend(on rvi: RVI) -> Bool {
        guard let c = live(rvi) else { return false }
        return c.openActive || c.hasRoom()
    }

    /// Messages posted on `rvi` and not yet acknowledged.
    public func unacknowledgedMessages(on rvi: RVI) -> UInt64 {
        guard let c = live(rvi) else { return 0 }
        return c.nextMessage - 1 - c.ackedMessage
    }

    @inline(__always)
    func live(_ rvi: RVI) -> Connection? {
        guard Int(rvi.id) < connections.count, let c = connections[Int(rvi.id)], !c.closing else { return nil }
        return c
    }

    // MARK: - Sending

    /// Posts one message: its bytes are copied into registered memory (small messages share a
    /// frame with others posted in the same turn) and it leaves at the end of the loop turn.
    /// - Returns: the message's number on this RVI (1, 2, 3 …), as acknowledgements and failures
    ///   name it.
    /// - Throws: ``RVISendError``; on any error nothing was queued.
    @discardableResult
    public func send(_ message: RawSpan, on rvi: RVI) throws(RVISendError) -> UInt64 {
        guard let c = live(rvi) else { throw .noSuchRVI }
        guard !engine.isStopping else { throw .stopping }
        let n = message.byteCount
        guard n <= FrameLayout.maxPayload else { throw .tooLarge }
        if n <= configuration.coalesceLimit {
            if c.openActive && c.openUsed + 2 + n > FrameLayout.maxPayload { closeOpen(c) }
            if !c.openActive {
                guard c.hasRoom() else { throw refuseFull(c) }
                guard engine.pool.available > messageFloor, let f = engine.takeFrame() else { throw .noBuffers }
                c.open = consume f
                c.openActive = true
                c.openUsed = 0
                c.openMessages = 0
                c.openFirstMessage = c.nextMessage
                markDirty(c)
            }
            // Written in place, at the frame's own offset: no pointer is kept across calls.
            let at = c.openUsed
            c.open!.withUnsafeMutablePayload { dst in
                dst.storeBytes(of: UInt16(n).bigEndian, toByteOffset: at, as: UInt16.self)
                message.withUnsafeBytes { src in
                    if n > 0 { (dst.baseAddress! + at + 2).copyMemory(from: src.baseAddress!, byteCount: n) }
                }
            }
            c.openUsed += 2 + n
            c.openMessages += 1
        } else {
            closeOpen(c)
            guard c.hasRoom() else { throw refuseFull(c) }
            guard engine.pool.available > messageFloor, var f = engine.takeFrame() else { throw .noBuffers }
            f.withUnsafeMutablePayload { dst in
                message.withUnsafeBytes { src in dst.baseAddress!.copyMemory(from: src.baseAddress!, byteCount: n) }
            }
            f.length = n
            enqueue(c, f, first: c.nextMessage, messages: 1, coalesced: false)
        }
        return numberMessage(c, bytes: n)
    }

    /// Gives the message just queued its number.
    @inline(__always)
    func numberMessage(_ c: Connection, bytes: Int) -> UInt64 {
        let m = c.nextMessage
        c.nextMessage += 1
        c.stats.messagesOut &+= 1
        c.stats.messageBytesOut &+= UInt64(bytes)
        return m
    }

    /// Posts one message from a byte array (a convenience over ``send(_:on:)``).
    @discardableResult
    public func send(_ bytes: [UInt8], on rvi: RVI) throws(RVISendError) -> UInt64 {
        try send(bytes.span.bytes, on: rvi)
    }

    /// Posts a whole frame as one message, without copying: the frame itself is what travels and
    /// what is retransmitted. On success `frame` is left nil; on an error it still holds the
    /// frame, and nothing was queued.
    @discardableResult
    public func send(_ frame: inout Frame?, on rvi: RVI) throws(RVISendError) -> UInt64 {
        guard let c = live(rvi) else { throw .noSuchRVI }
        guard !engine.isStopping else { throw .stopping }
        closeOpen(c)
        guard c.hasRoom() else { throw refuseFull(c) }
        guard let f = frame.take() else { throw .noBuffers }
        let n = f.length
        enqueue(c, f, first: c.nextMessage, messages: 1, coalesced: false)
        return numberMessage(c, bytes: n)
    }

    /// Pool frames that neither a message nor reassembly takes: kept for acknowledgements and
    /// probes, so that two ends whose send windows could hold every frame of their pools still
    /// acknowledge each other.
    var controlReserve: Int { min(16, engine.pool.capacity / 8) }

    /// Pool frames a message never takes, above the control reserve: kept for messages arriving
    /// in segments (each reassembled in a pool frame) and for those held out of order, so that
    /// the next frame in order can always be received, whatever this end has in flight.
    var receiveReserve: Int { min(64, engine.pool.capacity / 8) }

    /// A message is accepted only while the pool has more frames than this.
    var messageFloor: Int { controlReserve + receiveReserve }

    /// A frame that arrived out of order in a pool frame is held only while the pool has more
    /// frames than this; below it, it is let go unacknowledged (the sender sends it again), so
    /// frames held out of order never take the room the next frame in order needs.
    var holdFloor: Int { controlReserve + receiveReserve / 2 }

    func refuseFull(_ c: Connection) -> RVISendError {
        c.wantsWritable = true
        c.stats.windowFullRefusals &+= 1
        return .windowFull
    }

    func closeOpen(_ c: Connection) {
        guard c.openActive, var f = c.open.take() else { return }
        c.openActive = false
        f.length = c.openUsed
        enqueue(c, f, first: c.openFirstMessage, messages: c.openMessages, coalesced: true)
    }

    func enqueue(_ c: Connection, _ frame: consuming Frame, first: UInt64, messages: UInt32, coalesced: Bool,
                 rdma: Bool = false) {
        let seq = c.nextSeq
        c.nextSeq += 1
        c.ensureWindow()
        let i = Int(truncatingIfNeeded: seq) & c.sendMask
        c.records[i] = SendRecord(sequence: seq, firstMessage: first, messages: messages, bytes: UInt32(frame.length),
                                  state: .queued, coalesced: coalesced, rdma: rdma)
        c.frames.put(frame, at: i)
        markDirty(c)
    }

    @inline(__always)
    func markDirty(_ c: Connection) {
        if !c.dirty {
            c.dirty = true
            dirtyList.append(c.id)
        }
    }

}
