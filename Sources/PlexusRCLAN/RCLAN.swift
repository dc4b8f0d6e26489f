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
    /// Whether the engine has started (services hosted later are started at once).
    @exclusivity(unchecked) var started = false
    /// The engine the layer runs on (set when the engine starts).
    public private(set) unowned(unsafe) var engine: Engine! = nil

    @exclusivity(unchecked) var connections: [Connection?] = []
    @exclusivity(unchecked) var freeIDs: [UInt32] = []
    @exclusivity(unchecked) var generations: [UInt32] = []
    @exclusivity(unchecked) var dirtyList: [UInt32] = []
    /// VI number → connection id + 1 (0: none), per fabric.
    @exclusivity(unchecked) var viMapA: UnsafeMutablePointer<UInt32>? = nil
    @exclusivity(unchecked) var viMapB: UnsafeMutablePointer<UInt32>? = nil
    @exclusivity(unchecked) var viMapCount = 0
    /// Pool slot → owning connection (id << 32 | generation) and sequence, for frames in the kernel.
    @exclusivity(unchecked) var slotOwner: UnsafeMutablePointer<UInt64>? = nil
    @exclusivity(unchecked) var slotSeq: UnsafeMutablePointer<UInt64>? = nil
    @exclusivity(unchecked) var now: UInt64 = 0
    @exclusivity(unchecked) var tickDue = false
    @exclusivity(unchecked) var lastTickAt: UInt64 = 0
    @exclusivity(unchecked) var tickAfterStall = false
    @exclusivity(unchecked) var busyPoll = false
    @exclusivity(unchecked) var nextTickAt: UInt64 = 0
    let deadAfter: UInt64
    let tick: Duration
    let tickNanos: UInt64
    let holdDown: UInt64
    let reorderWindow: UInt64 = 250_000
    /// The timer token the layer uses for its tick.
    public static let tickToken: UInt32 = 0xFFFF_FF01
    /// Frames on VIs that belong to no RVI of this layer (dropped, counted).
    public private(set) var unboundFrames: UInt64 = 0
    /// Control frames not sent because the pool was empty (retried on the next tick).
    public private(set) var controlFramesSkipped: UInt64 = 0

    /// - Throws: a ``PlexusError`` when `configuration` fails ``RCLANConfiguration/validate()``.
    public init(configuration: RCLANConfiguration = RCLANConfiguration(), delegate: any RVIDelegate) throws(PlexusError) {
        try configuration.validate()
        self.configuration = configuration
        self.delegate = delegate
        services = [delegate]
        tick = configuration.heartbeatInterval
        tickNanos = Self.nanos(configuration.heartbeatInterval)
        deadAfter = tickNanos * UInt64(configuration.missedHeartbeats)
        holdDown = Self.nanos(configuration.holdDown)
        dirtyList.reserveCapacity(1024)
    }

    /// Builds a layer with a configuration already known to be valid (e.g. the default).
    public convenience init(delegate: any RVIDelegate) {
        // The default configuration always validates.
        try! self.init(configuration: RCLANConfiguration(), delegate: delegate)
    }

    deinit {
        viMapA?.deallocate()
        viMapB?.deallocate()
        slotOwner?.deallocate()
        slotSeq?.deallocate()
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
    public func open(_ path: RVIPath, policy: LoadBalancing = .alternate,
                     service: (any RVIDelegate)? = nil) throws(PlexusError) -> RVI {
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
        try engine.establish(a, peer: path.peerA, remoteVI: path.remoteA)
        do {
            try engine.establish(b, peer: path.peerB, remoteVI: path.remoteB)
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
        // may carry them all), so that a sender within its credit never overruns this end.
        let credit = min(configuration.receiveWindow, engine.receiveQueueFrames(.a), engine.receiveQueueFrames(.b))
        let c = Connection(id: id, generation: generations[Int(id)] << 16, path: path, policy: policy,
                           configuration: configuration, credit: credit, now: monotonicNanos(), service: owner)
        c.legs[0].receiveOverrunsAtOpen = engine.receiveOverruns(.a)
        c.legs[1].receiveOverrunsAtOpen = engine.receiveOverruns(.b)
        connections[Int(id)] = c
        viMapA![Int(path.localA)] = id + 1
        viMapB![Int(path.localB)] = id + 1
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
        viMapA![Int(c.path.localA)] = 0
        viMapB![Int(c.path.localB)] = 0
        try? engine.teardown(c.viA)
        try? engine.teardown(c.viB)
        connections[Int(c.id)] = nil
        freeIDs.append(c.id)
    }

    /// The open RVIs.
    public var openRVIs: [RVI] { connections.compactMap { $0?.rvi } }

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
                guard var f = engine.takeFrame() else { throw .noBuffers }
                c.openBase = f.withUnsafeMutablePayload { $0.baseAddress! }
                c.open = consume f
                c.openActive = true
                c.openUsed = 0
                c.openMessages = 0
                c.openFirstMessage = c.nextMessage
                markDirty(c)
            }
            let p = c.openBase! + c.openUsed
            p.storeBytes(of: UInt16(n).bigEndian, as: UInt16.self)
            message.withUnsafeBytes { src in
                if n > 0 { (p + 2).copyMemory(from: src.baseAddress!, byteCount: n) }
            }
            c.openUsed += 2 + n
            c.openMessages += 1
        } else {
            closeOpen(c)
            guard c.hasRoom() else { throw refuseFull(c) }
            guard var f = engine.takeFrame() else { throw .noBuffers }
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

    func refuseFull(_ c: Connection) -> RVISendError {
        c.wantsWritable = true
        c.stats.windowFullRefusals &+= 1
        return .windowFull
    }

    func closeOpen(_ c: Connection) {
        guard c.openActive, var f = c.open.take() else { return }
        c.openActive = false
        c.openBase = nil
        f.length = c.openUsed
        enqueue(c, f, first: c.openFirstMessage, messages: c.openMessages, coalesced: true)
    }

    func enqueue(_ c: Connection, _ frame: consuming Frame, first: UInt64, messages: UInt32, coalesced: Bool) {
        let seq = c.nextSeq
        c.nextSeq += 1
        let i = Int(truncatingIfNeeded: seq) & c.sendMask
        c.records[i] = SendRecord(sequence: seq, firstMessage: first, messages: messages, bytes: UInt32(frame.length),
                                  state: .queued, coalesced: coalesced)
        c.frames[i] = consume frame
        markDirty(c)
    }

    @inline(__always)
    func markDirty(_ c: Connection) {
        if !c.dirty {
            c.dirty = true
            dirtyList.append(c.id)
        }
    }

    // MARK: - The engine's calls

    public func engineDidStart(_ engine: Engine) {
        self.engine = engine
        viMapCount = engine.configuration.maxVIs
        viMapA = .allocate(capacity: viMapCount)
        viMapA!.initialize(repeating: 0, count: viMapCount)
        viMapB = .allocate(capacity: viMapCount)
        viMapB!.initialize(repeating: 0, count: viMapCount)
        slotOwner = .allocate(capacity: engine.pool.capacity)
        slotOwner!.initialize(repeating: .max, count: engine.pool.capacity)
        slotSeq = .allocate(capacity: engine.pool.capacity)
        slotSeq!.initialize(repeating: 0, count: engine.pool.capacity)
        now = monotonicNanos()
        busyPoll = engine.configuration.pollMode == .busyPoll
        nextTickAt = now + tickNanos
        // A sleeping engine needs a ring timer to wake it; a busy-polling one reads the clock
        // every turn instead (a ring timer there costs an io_uring_enter per tick).
        if !busyPoll { _ = engine.schedule(after: tick, token: Self.tickToken) }
        started = true
        for s in services { s.layerDidStart(self) }
    }

    public func engineTurn(_ engine: Engine) {
        if busyPoll {
            let t = monotonicNanos()
            if t >= nextTickAt {
                nextTickAt = t + tickNanos
                tickDue = true
            }
        }
        if tickDue {
            // Evaluated here rather than in the timer's completion, so that every frame the
            // kernel delivered in the same batch (on either leg) has been counted first.
            tickDue = false
            onTick()
        }
        for s in services { s.layerTurn(self) }
        flush()
    }

    public func engineWillFlush(_ engine: Engine) {
        if !dirtyList.isEmpty { flush() }
    }

    public func timerFired(token: UInt32, engine: Engine) {
        guard token == Self.tickToken else { return }
        tickDue = true
        _ = engine.schedule(after: tick, token: Self.tickToken)
    }

    public func deviceRead(_ frame: consuming Frame, from device: DeviceHandle, engine: Engine) {
        let i = Int(device.id)
        let owner = i < deviceOwners.count ? deviceOwners[i]?.service ?? delegate : delegate
        owner.deviceRead(frame, from: device, layer: self)
    }

    public func engineWillStop(_ engine: Engine) {
        for case let c? in connections {
            failPending(c, reason: .stopped)
            c.closing = true
            c.releaseFrames()
        }
        for s in services { s.layerWillStop(self) }
        connections.removeAll()
    }

    public func sendCompleted(returning frame: consuming Frame, on vi: VI, result: SendCompletion, engine: Engine) {
        let ps = Int(frame.poolSlot)
        let owner = slotOwner![ps]
        let seq = slotSeq![ps]
        slotOwner![ps] = .max
        let id = Int(owner >> 32)
        guard id < connections.count, let c = connections[id], !c.closing,
              UInt32(truncatingIfNeeded: owner) == c.generation
        else { return }  // the RVI was closed or started over: the frame is not needed
        let i = Int(truncatingIfNeeded: seq) & c.sendMask
        guard c.records[i].sequence == seq, c.records[i].state == .inKernel, c.records[i].poolSlot == UInt32(ps)
        else { return }
        if case .failed = result {
            let l = Int(c.records[i].leg)
            c.legs[l].stats.sendErrors &+= 1
            // Resend at once on the other leg if it is up; otherwise the timeout will.
            if !c.records[i].acked && !c.records[i].lost && c.legs[1 - l].state == .up {
                markLost(c, i, countAgainstLeg: false)
            }
        }
        if c.records[i].acked {
            c.records[i].state = seq < c.sendBase ? .empty : .done
            return
        }
        c.records[i].state = .held
        c.frames[i] = consume frame
        if c.records[i].lost { markDirty(c) }
    }

    public func received(_ frame: consuming InboundFrame, engine: Engine) {
        let vi = frame.vi
        let map = vi.fabric == .a ? viMapA! : viMapB!
        let slot = Int(vi.number) < viMapCount ? map[Int(vi.number)] : 0
        guard slot != 0, let c = connections[Int(slot - 1)], !c.closing else {
            unboundFrames &+= 1
            return
        }
        _ = engine.postReceives(1, on: vi)
        let f = frame.fields
        let l = vi.fabric == .a ? 0 : 1
        guard f.flags.contains(.sequenced) else {
            c.stats.malformedDropped &+= 1
            return
        }
        now = monotonicNanos()
        // Epochs. A frame from an older incarnation of the peer is dropped; one from a newer
        // incarnation means the peer started over, and so does this end. A frame addressed to
        // an older incarnation of this end teaches the peer's epoch, but its sequence space is
        // not this one's: dropped.
        if c.peerEpoch == 0 {
            c.peerEpoch = f.epoch
        } else if f.epoch != c.peerEpoch {
            if isNewer(c.peerEpoch, than: f.epoch) {
                c.stats.staleDropped &+= 1
                return
            }
            peerRestarted(c, epoch: f.epoch)
            if c.closing { return }
        }
        heard(c, l, bytes: frame.count)
        if f.peerEpoch != 0 && f.peerEpoch != c.epoch {
            c.stats.staleDropped &+= 1
            return
        }
        processAck(c, ack: f.acknowledgement, credit: f.credit)
        if f.flags.contains(.control) {
            frame.withUnsafeBytes { processControl(c, leg: l, payload: $0) }
            return
        }
        c.stats.framesIn &+= 1
        c.ackOwed = true
        c.lastDataLeg = l
        markDirty(c)
        let s = f.sequence
        if s < c.cumAck {
            c.stats.duplicatesDropped &+= 1
            return
        }
        let window = UInt64(c.receiveMask + 1)
        if s - c.cumAck >= window {
            c.stats.beyondWindowDropped &+= 1
            return
        }
        if s == c.cumAck {
            deliver(c, frame)
            c.cumAck += 1
            while c.heldCount > 0 && !c.closing {
                let i = Int(truncatingIfNeeded: c.cumAck) & c.receiveMask
                guard c.heldSeq[i] == c.cumAck, let h = c.held[i].take() else { break }
                c.heldSeq[i] = 0
                c.heldCount -= 1
                deliver(c, h)
                c.cumAck += 1
            }
        } else {
            let i = Int(truncatingIfNeeded: s) & c.receiveMask
            if c.heldSeq[i] == s {
                c.stats.duplicatesDropped &+= 1
                return
            }
            c.heldSeq[i] = s
            c.held[i] = consume frame
            c.heldCount += 1
            if s > c.highestHeld { c.highestHeld = s }
        }
    }

    /// Hands a frame's message(s) to the delegate, in place.
    func deliver(_ c: Connection, _ frame: borrowing InboundFrame) {
        let coalesced = frame.fields.flags.contains(.coalesced)
        frame.withUnsafeBytes { buf in
            let wellFormed = Self.forEachMessage(in: buf, coalesced: coalesced) { m in
                c.stats.messagesIn &+= 1
                c.stats.messageBytesIn &+= UInt64(m.count)
                c.service.received(m.bytes, on: c.rvi, layer: self)
                return !c.closing
            }
            if !wellFormed { c.stats.malformedDropped &+= 1 }
        }
    }

    /// Calls `body` with each message a frame's payload holds: the whole payload, or, when
    /// coalesced, each length-prefixed (u16, big-endian) message in turn until `body` returns
    /// false. Returns false if a coalesced payload ends in a malformed message (those before it
    /// were handed over).
    @inline(__always)
    static func forEachMessage(in buf: UnsafeRawBufferPointer, coalesced: Bool,
                               _ body: (UnsafeRawBufferPointer) -> Bool) -> Bool {
        guard coalesced else {
            _ = body(buf)
            return true
        }
        var off = 0
        while off < buf.count {
            guard off + 2 <= buf.count else { return false }
            let n = Int(UInt16(bigEndian: buf.loadUnaligned(fromByteOffset: off, as: UInt16.self)))
            guard off + 2 + n <= buf.count else { return false }
            if !body(UnsafeRawBufferPointer(rebasing: buf[(off + 2)..<(off + 2 + n)])) { return true }
            off += 2 + n
        }
        return true
    }

    // MARK: - Legs

    func heard(_ c: Connection, _ l: Int, bytes: Int) {
        c.legs[l].lastHeard = now
        c.legs[l].heard = true
        c.legs[l].stats.framesIn &+= 1
        c.legs[l].stats.bytesIn &+= UInt64(bytes)
        if c.legs[l].state == .down {
            let other = c.legs[1 - l].state
            if other == .up || other == .demoted {
                c.setLeg(l, .recovering, now: now)  // hold-down before balancing resumes
            } else {
                // The only path there is: no balancing to damp, so use it at once.
                c.setLeg(l, .up, now: now)
                c.service.event(.legUp(l == 0 ? .a : .b), on: c.rvi, layer: self)
            }
        }
    }

    /// Chooses the leg for a frame: among legs that are up, by the RVI's policy; if none is up,
    /// a demoted leg, then a recovering one, then a down one (a frame there doubles as a probe).
    @inline(__always)
    func pickLeg(_ c: Connection, avoiding: Int?) -> Int {
        let upA = c.legs[0].state == .up
        let upB = c.legs[1].state == .up
        if upA && upB {
            if let avoid = avoiding { return 1 - avoid }
            switch c.policy {
            case .alternate:
                c.alternate ^= 1
                return c.alternate
            case .fewestBytes:
                return c.legs[0].bytesOutstanding <= c.legs[1].bytesOutstanding ? 0 : 1
            case .activeStandby(let primary):
                return primary == .a ? 0 : 1
            }
        }
        if upA { return 0 }
        if upB { return 1 }
        let demotedA = c.legs[0].state == .demoted
        if demotedA != (c.legs[1].state == .demoted) { return demotedA ? 0 : 1 }
        let recoveringA = c.legs[0].state == .recovering
        if !demotedA && recoveringA != (c.legs[1].state == .recovering) { return recoveringA ? 0 : 1 }
        c.alternate ^= 1
        return c.alternate
    }

    // MARK: - Transmission

    /// Sends the frame of sequence `seq` (queued, or held for retransmission).
    func transmit(_ c: Connection, _ i: Int, retransmission: Bool) {
        guard let frame = c.frames[i].take() else { return }
        let l = pickLeg(c, avoiding: retransmission ? Int(c.records[i].leg) : nil)
        let vi = c.vi(l)
        let seq = c.records[i].sequence
        let bytes = frame.length
        let ps = Int(frame.poolSlot)
        slotOwner![ps] = UInt64(c.id) << 32 | UInt64(c.generation)
        slotSeq![ps] = seq
        var flags: FrameFlags = .sequenced
        if c.records[i].coalesced { flags.insert(.coalesced) }
        let fields = ReliabilityFields(
            sequence: seq, acknowledgement: c.cumAck, epoch: c.epoch, credit: UInt32(c.credit),
            peerEpoch: c.peerEpoch, flags: flags)
        do {
            try engine.send(frame, on: vi, fields: fields, returnOnCompletion: true)
        } catch {
            // Only when the VI was torn down under the RVI or the engine is stopping; the frame
            // is gone, so the connection cannot keep its order: start over.
            slotOwner![ps] = .max
            c.records[i].state = .empty
            giveUp(c)
            return
        }
        if retransmission {
            c.stats.retransmissions &+= 1
            c.legs[l].stats.retransmissions &+= 1
            c.lostPending -= 1
            let old = Int(c.records[i].leg)
            c.legs[old].bytesOutstanding -= Int(c.records[i].bytes)
        } else {
            c.legs[l].windowSent += 1
        }
        c.legs[l].bytesOutstanding += bytes
        c.records[i].state = .inKernel
        c.records[i].poolSlot = UInt32(ps)
        c.records[i].sentAt = now
        c.records[i].transmissions &+= 1
        c.records[i].leg = UInt8(l)
        c.records[i].lost = false
        c.legs[l].lastSent = now
        c.legs[l].stats.framesOut &+= 1
        c.legs[l].stats.bytesOut &+= UInt64(bytes)
        c.stats.framesOut &+= 1
        if c.heldCount == 0 { c.ackOwed = false }
    }

    /// Everything an RVI owes the wire at the end of a turn: the open frame, retransmissions, new
    /// frames within credit, acknowledgements and heartbeat echoes.
    func flush() {
        let n = dirtyList.count
        guard n > 0 else { return }
        now = monotonicNanos()
        for k in 0..<n {
            let id = Int(dirtyList[k])
            guard id < connections.count, let c = connections[id] else { continue }
            c.dirty = false
            if c.closing || engine.isStopping { continue }
            flush(c)
        }
        if dirtyList.count == n {
            dirtyList.removeAll(keepingCapacity: true)
        } else {
            dirtyList.removeFirst(n)  // marked again while flushing: kept for the next flush
        }
    }

    func flush(_ c: Connection) {
        closeOpen(c)
        if c.lostPending > 0 {
            var s = c.sendBase
            while s < c.nextToTransmit && c.lostPending > 0 {
                let i = Int(truncatingIfNeeded: s) & c.sendMask
                if c.records[i].lost && !c.records[i].acked && c.records[i].state == .held {
                    transmit(c, i, retransmission: true)
                    if c.closing { return }
                }
                s += 1
            }
        }
        while c.nextToTransmit < c.nextSeq {
            if c.nextToTransmit >= c.peerRightEdge {
                if !c.creditStalled {
                    c.creditStalled = true
                    c.stats.creditStalls &+= 1
                }
                break
            }
            c.creditStalled = false
            let i = Int(truncatingIfNeeded: c.nextToTransmit) & c.sendMask
            c.nextToTransmit += 1
            transmit(c, i, retransmission: false)
            if c.closing { return }
        }
        for l in 0..<2 where c.legs[l].echoOwed != 0 {
            sendControl(c, leg: l, echo: c.legs[l].echoOwed)
            c.legs[l].echoOwed = 0
        }
        if c.ackOwed {
            // At most one acknowledgement per turn, on every leg that is up: small frames, and
            // both legs keep hearing the peer however long the turns of a busy receiver get.
            if c.legs[0].state == .up && c.legs[1].state == .up {
                sendControl(c, leg: 0)
                sendControl(c, leg: 1)
            } else {
                sendControl(c, leg: c.legs[c.lastDataLeg].state == .up ? c.lastDataLeg : pickLeg(c, avoiding: nil))
            }
        }
    }

    // MARK: - Control frames
    //
    // Written here, parsed by RVIControlPayload (its layout table is the reference). Payload: u8 kinds (1 probe, 2 echo) · u8 SACK block count · u8 legs the sender hears (bit 0
    // A, bit 1 B: a leg it declared down is clear) · u8 reserved · u32 duplicate data frames it
    // has received (wrapping) · u64 probe stamp · u64 echoed stamp · u32 receive overruns of its
    // socket on fabric A, u32 on fabric B (wrapping) · blocks of (u64 first, u64 end) sequence
    // ranges held above the cumulative ack. The header carries the ack, the credit and both epochs.

    static let controlHeader = RVIControlPayload.headerSize
    static let maxSackBlocks = RVIControlPayload.maxSackBlocks

    func sendControl(_ c: Connection, leg l: Int, probe: UInt64 = 0, echo: UInt64 = 0) {
        guard var f = engine.takeFrame() else {
            controlFramesSkipped &+= 1
            return
        }
        let length = f.withUnsafeMutablePayload { buf -> Int in
            let p = buf.baseAddress!
            var kinds: UInt8 = 0
            if probe != 0 { kinds |= 1 }
            if echo != 0 { kinds |= 2 }
            p.storeBytes(of: kinds, as: UInt8.self)
            p.storeBytes(of: UInt8(0), toByteOffset: 3, as: UInt8.self)
            p.storeBytes(of: UInt32(truncatingIfNeeded: c.stats.duplicatesDropped).bigEndian, toByteOffset: 4, as: UInt32.self)
            let hears: UInt8 = (c.legs[0].state == .down ? 0 : 1) | (c.legs[1].state == .down ? 0 : 2)
            p.storeBytes(of: hears, toByteOffset: 2, as: UInt8.self)
            p.storeBytes(of: probe.bigEndian, toByteOffset: 8, as: UInt64.self)
            p.storeBytes(of: echo.bigEndian, toByteOffset: 16, as: UInt64.self)
            p.storeBytes(of: UInt32(truncatingIfNeeded: engine.receiveOverruns(.a)).bigEndian, toByteOffset: 24, as: UInt32.self)
            p.storeBytes(of: UInt32(truncatingIfNeeded: engine.receiveOverruns(.b)).bigEndian, toByteOffset: 28, as: UInt32.self)
            var blocks = 0
            if c.heldCount > 0 {
                var s = c.cumAck + 1
                var start: UInt64 = 0
                while s <= c.highestHeld + 1 && blocks < Self.maxSackBlocks {
                    let present = s <= c.highestHeld && c.heldSeq[Int(truncatingIfNeeded: s) & c.receiveMask] == s
                    if present && start == 0 { start = s }
                    if !present && start != 0 {
                        let o = Self.controlHeader + blocks * 16
                        p.storeBytes(of: start.bigEndian, toByteOffset: o, as: UInt64.self)
                        p.storeBytes(of: s.bigEndian, toByteOffset: o + 8, as: UInt64.self)
                        blocks += 1
                        start = 0
                    }
                    s += 1
                }
            }
            p.storeBytes(of: UInt8(blocks), toByteOffset: 1, as: UInt8.self)
            return Self.controlHeader + blocks * 16
        }
        f.length = length
        let fields = ReliabilityFields(
            sequence: c.nextToTransmit, acknowledgement: c.cumAck, epoch: c.epoch, credit: UInt32(c.credit),
            peerEpoch: c.peerEpoch, flags: [.sequenced, .control])
        do {
            try engine.send(f, on: c.vi(l), fields: fields, returnOnCompletion: false)
        } catch {
            return
        }
        c.legs[l].lastSent = now
        if probe != 0 { c.legs[l].stats.heartbeatsOut &+= 1 }
        c.stats.acksOut &+= 1
        c.ackOwed = false
    }

    func processControl(_ c: Connection, leg l: Int, payload p: UnsafeRawBufferPointer) {
        guard let control = RVIControlPayload(parsing: p) else {
            c.stats.malformedDropped &+= 1
            return
        }
        let blocks = control.sackBlocks
        // The peer's view of the legs: a leg it no longer hears is down here too, even though
        // this end still hears the peer on it (a failure in one direction only). Not while the
        // other leg is itself only recovering: the peer's word lags by a round trip, and taking
        // the last working leg down on it would make the two ends flip the leg each frame.
        for k in 0..<2 {
            let heard = control.hears(leg: k)
            c.legs[k].peerHears = heard
            let otherUsable = c.legs[1 - k].state == .up || c.legs[1 - k].state == .demoted
            if !heard && (c.legs[k].state == .up || c.legs[k].state == .demoted) && otherUsable {
                legWentDown(c, k)
                if c.closing { return }
            }
        }
        // Duplicates the peer received are retransmissions that were not needed: losses this end
        // charged to a leg that only delayed the frame. Take them back, from the leg charged most.
        let duplicates = control.duplicates
        var refund = Int(duplicates &- c.peerDuplicatesSeen)
        c.peerDuplicatesSeen = duplicates
        if refund > 0 && refund < 1 << 20 {
            for _ in 0..<2 where refund > 0 {
                let k = c.legs[0].windowLost >= c.legs[1].windowLost ? 0 : 1
                let take = min(refund, c.legs[k].windowLost)
                c.legs[k].windowLost -= take
                c.legs[k].stats.lost &-= UInt64(take)
                c.legs[k].stats.spuriousRetransmissions &+= UInt64(take)
                refund -= take
            }
        }
        // The peer's receive overruns, taken into account once this frame's SACK blocks have
        // judged what they judge.
        let overrunsA = control.overrunsA
        let overrunsB = control.overrunsB
        defer { peerOverruns(c, a: overrunsA, b: overrunsB) }
        if control.isProbe {
            c.legs[l].echoOwed = control.probeStamp
            markDirty(c)
        }
        if control.isEcho {
            let stamp = control.echoStamp
            if stamp <= now && now - stamp < 10_000_000_000 { c.legs[l].sampleRTT(Double(now - stamp)) }
        }
        // How far this report speaks for. A report with the maximum count of blocks may have
        // been cut short: frames above its last block may be held at the peer, unreported (with
        // one leg losing a third of its frames, the peer holds far more gaps than 16 blocks can
        // describe). Those are not evidence of loss, for RACK or for the timeout.
        let reach: UInt64 = blocks == Self.maxSackBlocks
            ? control.sackBlock(blocks - 1, in: p).end
            : .max
        if reach > c.reportedThrough { c.ackProgressAt = now }
        c.reportedThrough = reach
        guard blocks > 0 else { return }
        var advanced = false
        for b in 0..<blocks {
            let block = control.sackBlock(b, in: p)
            let first = max(block.first, c.sendBase)
            let end = min(block.end, c.nextToTransmit)
            var s = first
            while s < end {
                let i = Int(truncatingIfNeeded: s) & c.sendMask
                if c.records[i].sequence == s && !c.records[i].acked {
                    acknowledge(c, i)
                    advanced = true
                    if c.records[i].state == .held {
                        _ = c.frames[i].take()
                        c.records[i].state = .done
                    }
                }
                s += 1
            }
        }
        if advanced {
            c.ackProgressAt = now
            detectLosses(c)
        }
    }

    /// The peer's socket on a leg dropped datagrams for want of room (receive overruns): the
    /// frames this end lost there were congestion at the receiver, not loss on the fabric. They
    /// are taken back from the leg's current loss window, then from the window before (whose
    /// verdict is judged again), and what is left excuses the next losses judged on the leg.
    func peerOverruns(_ c: Connection, a: UInt32, b: UInt32) {
        guard c.peerOverrunsKnown else {
            c.legs[0].peerOverrunsReported = a
            c.legs[1].peerOverrunsReported = b
            c.peerOverrunsKnown = true
            return
        }
        for k in 0..<2 {
            let reported = k == 0 ? a : b
            let new = Int(reported &- c.legs[k].peerOverrunsReported)
            // A step back is an older report overtaken by a newer one (control frames go on both
            // legs); it and an absurd jump tell nothing. (A peer that restarts starts a new epoch,
            // which makes its next report the base again.)
            guard new > 0 && new < 1 << 20 else { continue }
            c.legs[k].peerOverrunsReported = reported
            c.legs[k].stats.peerReceiveOverruns &+= UInt64(new)
            let taken = takeBack(c, leg: k, new)
            c.legs[k].stats.overruns &+= UInt64(taken)
            c.legs[k].overrunCredit = min(c.legs[k].overrunCredit + new - taken, c.credit)
            c.legs[k].overrunCreditCarried = false
        }
    }

    /// Takes up to `n` judged losses back from leg `k` (overruns at the peer, which names the leg):
    /// from its current loss window, then from the window before, whose verdict is judged again
    /// (the word often comes after that window closed). A leg that verdict demoted is up again
    /// if the verdict no longer stands. Returns how many were taken back.
    func takeBack(_ c: Connection, leg k: Int, _ n: Int) -> Int {
        let current = min(n, c.legs[k].windowLost)
        c.legs[k].windowLost -= current
        let previous = min(n - current, c.legs[k].lastWindowLost)
        if previous > 0 {
            c.legs[k].lastWindowLost -= previous
            let pct = Double(c.legs[k].lastWindowLost) * 100 / Double(max(1, c.legs[k].lastWindowSent))
            c.legs[k].stats.lossPercent = pct
            c.legs[k].lastWindowOver = pct > configuration.demotionLossPercent
            if !c.legs[k].lastWindowOver && c.legs[k].demotedByLastWindow && c.legs[k].state == .demoted {
                c.legs[k].demotedByLastWindow = false
                c.legs[k].demotedUntil = 0
                c.setLeg(k, .up, now: now)
                c.service.event(.legUp(k == 0 ? .a : .b), on: c.rvi, layer: self)
            }
        }
        c.legs[k].stats.lost &-= UInt64(current + previous)
        return current + previous
    }

    // MARK: - Acknowledgements, losses, timers

    /// Marks a record acknowledged: RTT sample (first transmissions only, per Karn), the bytes
    /// leave its leg's outstanding count, and the RACK clock moves on.
    @inline(__always)
    func acknowledge(_ c: Connection, _ i: Int) {
        c.records[i].acked = true
        let l = Int(c.records[i].leg)
        if c.records[i].transmissions == 1 && now >= c.records[i].sentAt {
            c.legs[l].sampleRTT(Double(now - c.records[i].sentAt))
        }
        c.legs[l].bytesOutstanding -= Int(c.records[i].bytes)
        c.legs[l].progressAt = now
        if c.records[i].sentAt > c.rackSentAt { c.rackSentAt = c.records[i].sentAt }
        if c.records[i].sentAt > c.legs[l].rackSentAt { c.legs[l].rackSentAt = c.records[i].sentAt }
        if c.records[i].lost {
            c.records[i].lost = false
            c.lostPending -= 1
        }
    }

    func processAck(_ c: Connection, ack: UInt64, credit: UInt32) {
        guard ack >= 1, ack <= c.nextToTransmit else {
            c.stats.malformedDropped &+= 1
            return
        }
        let edge = ack &+ UInt64(credit)
        if edge > c.peerRightEdge {
            c.peerRightEdge = edge
            if c.nextToTransmit < c.nextSeq { markDirty(c) }
        }
        guard ack > c.sendBase else { return }
        c.ackProgressAt = now
        var s = c.sendBase
        while s < ack {
            let i = Int(truncatingIfNeeded: s) & c.sendMask
            if !c.records[i].acked { acknowledge(c, i) }
            c.ackedMessage = c.records[i].firstMessage + UInt64(c.records[i].messages) - 1
            switch c.records[i].state {
            case .held:
                _ = c.frames[i].take()
                c.records[i].state = .empty
            case .done:
                c.records[i].state = .empty
            default:
                break  // in the kernel: emptied when it comes back
            }
            s += 1
        }
        c.sendBase = ack
        detectLosses(c)
        c.service.acknowledged(on: c.rvi, through: c.ackedMessage, layer: self)
        if c.wantsWritable && !c.closing && c.hasRoom() {
            c.wantsWritable = false
            c.service.writable(c.rvi, layer: self)
        }
    }

    /// RACK, per leg and across legs. One leg is one UDP path, which keeps order: a frame sent on
    /// a leg more than `sameLegWindow` (50 µs) before a frame on the same leg that has been
    /// acknowledged is lost. Across legs the two paths skew, so a frame is also lost when a frame
    /// on either leg sent a cross-leg window before it has been acknowledged; that window is at
    /// least 250 µs and half the slower leg's smoothed RTT, so that queueing on a busy receiver
    /// is not taken for loss. Only frames the peer's acknowledgements speak for are judged (below
    /// `reportedThrough`): a frame above a SACK report cut short may be held there, unreported.
    func detectLosses(_ c: Connection) {
        let slower = max(c.legs[0].hasRTT ? c.legs[0].srtt : 0, c.legs[1].hasRTT ? c.legs[1].srtt : 0)
        let window = max(reorderWindow, UInt64(slower / 2))
        let cross = c.rackSentAt > window ? c.rackSentAt - window : 0
        let sameA = c.legs[0].rackSentAt > Self.sameLegWindow ? c.legs[0].rackSentAt - Self.sameLegWindow : 0
        let sameB = c.legs[1].rackSentAt > Self.sameLegWindow ? c.legs[1].rackSentAt - Self.sameLegWindow : 0
        guard cross > 0 || sameA > 0 || sameB > 0 else { return }
        var s = c.sendBase
        let end = min(c.nextToTransmit, c.reportedThrough)
        while s < end {
            let i = Int(truncatingIfNeeded: s) & c.sendMask
            let r = c.records[i]
            if !r.acked && !r.lost && (r.state == .held || r.state == .inKernel)
                && (r.sentAt < cross || r.sentAt < (r.leg == 0 ? sameA : sameB))
            {
                markLost(c, i, countAgainstLeg: true)
            }
            s += 1
        }
    }

    static let sameLegWindow: UInt64 = 50_000

    func markLost(_ c: Connection, _ i: Int, countAgainstLeg: Bool) {
        c.records[i].lost = true
        c.lostPending += 1
        markDirty(c)
        guard countAgainstLeg else { return }
        let l = Int(c.records[i].leg)
        if c.legs[l].overrunCredit > 0 {
            // The peer already said its socket on this leg dropped frames for want of room.
            c.legs[l].overrunCredit -= 1
            c.legs[l].stats.overruns &+= 1
            return
        }
        c.legs[l].stats.lost &+= 1
        c.legs[l].windowLost += 1
    }

    func rto(_ c: Connection, leg l: Int) -> UInt64 {
        let floor = Double(Self.nanos(configuration.minimumRTO))
        let ceiling = Double(Self.nanos(configuration.maximumRTO))
        let leg = c.legs[l]
        let v = leg.hasRTT ? leg.srtt + max(4 * leg.rttvar, 100_000) : floor * 2
        return UInt64(min(max(v, floor), ceiling))
    }

    func onTick() {
        now = monotonicNanos()
        // When this engine itself was stalled (a long turn, a descheduled thread), the peer's
        // frames waited in the sockets unread: what looks like silence is ours. Restart the
        // silence of every leg from the end of the stall instead of judging the legs by it.
        let stalled = lastTickAt != 0 && now - lastTickAt > 3 * tickNanos
        lastTickAt = now
        tickAfterStall = stalled
        for case let c? in connections where !c.closing {
            if stalled {
                for l in 0..<2 where c.legs[l].heard && c.legs[l].lastHeard < now - tickNanos {
                    c.legs[l].lastHeard = now - tickNanos
                }
            }
            tick(c)
        }
    }

    func tick(_ c: Connection) {
        let events = c.service
        let grace = max(deadAfter, 250_000_000)
        for l in 0..<2 {
            let silence = now &- c.legs[l].lastHeard
            switch c.legs[l].state {
            case .up, .demoted:
                if legSilent(c, l, silence: silence, grace: grace) {
                    legWentDown(c, l)
                    if c.closing { return }
                } else if c.legs[l].state == .demoted && now >= c.legs[l].demotedUntil {
                    c.legs[l].demotedByLastWindow = false
                    c.legs[l].windowSent = 0
                    c.legs[l].windowLost = 0
                    c.setLeg(l, .up, now: now)
                    events.event(.legUp(l == 0 ? .a : .b), on: c.rvi, layer: self)
                }
            case .recovering:
                if legSilent(c, l, silence: silence, grace: grace) {
                    c.setLeg(l, .down, now: now)  // fell silent again: the hold-down starts over
                } else if now - c.legs[l].changedAt >= holdDown && c.legs[l].peerHears {
                    c.legs[l].windowSent = 0
                    c.legs[l].windowLost = 0
                    let period = Self.nanos(configuration.demotionPeriod)
                    let stillDemoted = now < c.legs[l].demotedUntil
                    if (stillDemoted || c.legs[l].flapping(now: now, period: period))
                        && c.legs[1 - l].state == .up {
                        // Down three times within a demotion period (a leg losing so much that its
                        // silences take it down before a loss window can fill, or one that comes
                        // and goes): back, but demoted, like a leg that lost too much. A demoted
                        // leg that went down and came back serves out its demotion.
                        c.setLeg(l, .demoted, now: now)
                        if !stillDemoted {
                            c.legs[l].demotedUntil = now + period
                            events.event(.legDemoted(l == 0 ? .a : .b, lossPercent: c.legs[l].stats.lossPercent),
                                         on: c.rvi, layer: self)
                        }
                    } else {
                        c.setLeg(l, .up, now: now)
                        events.event(.legUp(l == 0 ? .a : .b), on: c.rvi, layer: self)
                    }
                }
            case .down:
                break
            }
            // Loss rate over the last window of frames; demote a leg that loses too much while
            // the other one is up.
            if c.legs[l].windowSent >= 256 {
                let pct = Double(c.legs[l].windowLost) * 100 / Double(c.legs[l].windowSent)
                c.legs[l].stats.lossPercent = pct
                c.legs[l].lastWindowSent = c.legs[l].windowSent
                c.legs[l].lastWindowLost = c.legs[l].windowLost
                c.legs[l].windowSent = 0
                c.legs[l].windowLost = 0
                // Overrun credit lives through one whole window after the one it came in.
                if c.legs[l].overrunCreditCarried { c.legs[l].overrunCredit = 0 }
                c.legs[l].overrunCreditCarried = true
                // Two windows in a row over the threshold: a burst (spurious losses after a stall,
                // refunded later by the peer's duplicate count) is not a bad leg.
                let over = pct > configuration.demotionLossPercent
                let sustained = over && c.legs[l].lastWindowOver
                c.legs[l].lastWindowOver = over
                c.legs[l].demotedByLastWindow = false
                if sustained && c.legs[l].state == .up && c.legs[1 - l].state == .up {
                    c.legs[l].demotedByLastWindow = true
                    c.setLeg(l, .demoted, now: now)
                    c.legs[l].demotedUntil = now + Self.nanos(configuration.demotionPeriod)
                    events.event(.legDemoted(l == 0 ? .a : .b, lossPercent: pct), on: c.rvi, layer: self)
                }
            }
            if now &- c.legs[l].lastSent >= tickNanos {
                sendControl(c, leg: l, probe: now)
            }
        }
        if c.closing { return }
        // Retransmission timeouts, with exponential back-off per frame. Not right after a stall of
        // this engine: the acknowledgements may be waiting in the sockets, unread.
        // A frame times out one RTO after it was sent and after its leg last delivered (a frame
        // on that leg newly acknowledged), whichever is later: while a slow peer works through a
        // burst, the frames at its end wait longer than a round trip, yet the leg is evidently
        // delivering (the timer restarts on progress, as TCP's does, RFC 6298 5.3), and a frame it
        // lost meanwhile is RACK's to find. A frame beyond the reach of a SACK report cut short
        // may be held at the peer already: it is not timed out while a gap below that reach is
        // still open (filling the gaps moves the reach on, and RACK judges what it then shows),
        // and then one RTO after the acknowledgements' last progress on either leg.
        var s = tickAfterStall ? c.nextToTransmit : c.sendBase
        var gapBelowReach = false
        while s < c.nextToTransmit {
            let i = Int(truncatingIfNeeded: s) & c.sendMask
            let r = c.records[i]
            let beyond = s >= c.reportedThrough
            if beyond && gapBelowReach { break }
            if !r.acked && !beyond && r.state != .empty { gapBelowReach = true }
            if !r.acked && !r.lost && (r.state == .held || r.state == .inKernel) {
                let backoff = UInt64(1) << UInt64(min(Int(r.transmissions) - 1, 6))
                let since = max(r.sentAt, c.legs[Int(r.leg)].progressAt, beyond ? c.ackProgressAt : 0)
                if now &- since > rto(c, leg: Int(r.leg)) &* backoff {
                    markLost(c, i, countAgainstLeg: true)
                }
            }
            s += 1
        }
        // Usability of the RVI as a whole.
        let anyUp = c.legs[0].state == .up || c.legs[0].state == .demoted
            || c.legs[1].state == .up || c.legs[1].state == .demoted
        if !anyUp {
            if c.unusableSince == 0 {
                c.unusableSince = now
                events.event(.unusable, on: c.rvi, layer: self)
            } else if now - c.unusableSince > Self.nanos(configuration.failAfter) {
                giveUp(c)
            }
        } else if c.unusableSince != 0 {
            c.unusableSince = 0
            events.event(.usable, on: c.rvi, layer: self)
        }
        if c.lostPending > 0 || c.ackOwed { markDirty(c) }
    }

    /// Whether leg `l` has been silent long enough to be declared down. A leg is down after
    /// `missedHeartbeats` intervals of silence while the other leg went on hearing the peer for
    /// that long after (the fault is this leg's). When both legs are silent the peer itself is slow or gone, and both
    /// are declared down only after four times as long: a busy peer is not a failed fabric.
    @inline(__always)
    func legSilent(_ c: Connection, _ l: Int, silence: UInt64, grace: UInt64) -> Bool {
        if !c.legs[l].heard { return silence > grace }
        guard silence > deadAfter else { return false }
        let other = c.legs[1 - l]
        let otherHears = other.heard && other.lastHeard > c.legs[l].lastHeard + deadAfter
            && other.state != .down
        return otherHears || silence > 4 * deadAfter
    }

    /// A leg that was up or demoted is down: noted for flap damping, its frames go again on the
    /// other leg, and the application hears of it.
    func legWentDown(_ c: Connection, _ l: Int) {
        c.setLeg(l, .down, now: now)
        c.legs[l].noteDown(at: now)
        legFailed(c, l)
        c.service.event(.legDown(l == 0 ? .a : .b), on: c.rvi, layer: self)
        // Demotion ranks a leg below the other; with the other gone, the demoted leg is the RVI's
        // only one and is up again (CI saw leg B demoted for flapping under load at the moment
        // leg A was killed for good, and stay demoted while it carried everything).
        let other = 1 - l
        if c.legs[other].state == .demoted {
            c.legs[other].windowSent = 0
            c.legs[other].windowLost = 0
            c.legs[other].demotedUntil = 0
            c.setLeg(other, .up, now: now)
            c.service.event(.legUp(other == 0 ? .a : .b), on: c.rvi, layer: self)
        }
    }

    /// A leg went down: every frame last sent on it and not acknowledged goes again on the other.
    func legFailed(_ c: Connection, _ l: Int) {
        var s = c.sendBase
        while s < c.nextToTransmit {
            let i = Int(truncatingIfNeeded: s) & c.sendMask
            let r = c.records[i]
            if Int(r.leg) == l && !r.acked && !r.lost && (r.state == .held || r.state == .inKernel) {
                markLost(c, i, countAgainstLeg: false)
            }
            s += 1
        }
    }

    // MARK: - Epochs

    /// Fails every message not yet acknowledged.
    func failPending(_ c: Connection, reason: RVIFailure) {
        closeOpen(c)
        let first = c.ackedMessage + 1
        guard first < c.nextMessage else { return }
        c.stats.messagesFailed &+= c.nextMessage - first
        c.ackedMessage = c.nextMessage - 1
        c.service.sendFailed(on: c.rvi, messages: first..<c.nextMessage, reason: reason, layer: self)
    }

    func peerRestarted(_ c: Connection, epoch: UInt32) {
        failPending(c, reason: .peerRestarted)
        c.restartSequences()
        c.peerEpoch = epoch
        c.stats.peerRestarts &+= 1
        c.service.event(.peerRestarted(epoch: epoch), on: c.rvi, layer: self)
    }

    /// Takes back every message not yet acknowledged on `rvi`, oldest first, so that the caller
    /// can send them another way (the virtual Ethernet driver sends a dead control node's
    /// broadcasts through the other one): `body` sees each message's bytes. The RVI then starts a
    /// new epoch, as after ``RCLANConfiguration/failAfter``, without reporting the messages taken
    /// back as failed. A peer that was only unreachable, not dead, may have received some of them
    /// already: the caller's other way may deliver those twice.
    /// - Returns: how many messages were handed to `body`, and how many could not be read because
    ///   their frame was in the kernel at that moment (those are reported with
    ///   ``RVIDelegate/sendFailed(on:messages:reason:layer:)``).
    @discardableResult
    public func reclaimUnacknowledged(on rvi: RVI, _ body: (RawSpan) -> Void) -> (reclaimed: Int, unreadable: Int) {
        guard let c = live(rvi) else { return (0, 0) }
        closeOpen(c)
        var reclaimed = 0, unreadable = 0
        var s = c.sendBase
        while s < c.nextSeq {
            let i = Int(truncatingIfNeeded: s) & c.sendMask
            let r = c.records[i]
            s += 1
            guard !r.acked else { continue }
            guard let f = c.frames[i].take() else {
                unreadable += Int(r.messages)
                continue
            }
            f.withUnsafePayload { buf in
                _ = Self.forEachMessage(in: buf, coalesced: r.coalesced) { m in
                    body(m.bytes)
                    reclaimed += 1
                    return true
                }
            }
        }
        c.stats.messagesReclaimed &+= UInt64(reclaimed)
        if unreadable == 0 { c.ackedMessage = c.nextMessage - 1 }  // nothing left to report failed
        giveUp(c)
        return (reclaimed, unreadable)
    }

    /// Both legs down past `failAfter` (or a frame the engine would not take): fail what is
    /// pending and start a new epoch, which tells the peer to start over too.
    func giveUp(_ c: Connection) {
        failPending(c, reason: .unreachable)
        c.restartSequences()
        c.epoch = nextEpoch()
        c.unusableSince = 0
        c.stats.resets &+= 1
        c.service.event(.reset(epoch: c.epoch), on: c.rvi, layer: self)
    }
}
