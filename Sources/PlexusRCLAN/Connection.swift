import PlexusCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Clocks and epochs

/// Monotonic nanoseconds (vDSO; about 20 ns): PlexusCore's clock.
@inline(__always)
func monotonicNanos() -> UInt64 { nowNanos() }

private let lastEpoch = Atomic<UInt32>(0)

/// A new connection epoch: wall-clock milliseconds (so a restarted process, or a rebooted host,
/// picks a newer one than its previous self), strictly newer than any this process gave out.
/// Epochs compare with serial-number arithmetic (RFC 1982), so the 49-day wrap is harmless.
func nextEpoch() -> UInt32 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    let ms = UInt32(truncatingIfNeeded: UInt64(ts.tv_sec) &* 1000 &+ UInt64(ts.tv_nsec) / 1_000_000)
    while true {
        let last = lastEpoch.load(ordering: .relaxed)
        var e = ms
        if !isNewer(e, than: last) { e = last &+ 1 }
        if e == 0 { e = 1 }
        if lastEpoch.compareExchange(expected: last, desired: e, ordering: .relaxed).exchanged { return e }
    }
}

@inline(__always)
func isNewer(_ a: UInt32, than b: UInt32) -> Bool { Int32(bitPattern: a &- b) > 0 }

// MARK: - Per-frame and per-leg records

/// Where a sent frame is in its life.
enum RecordState: UInt8 {
    /// The slot is free.
    case empty
    /// Has a sequence number, waits for credit; the frame is in the ring.
    case queued
    /// The kernel has the frame (sent, not yet handed back).
    case inKernel
    /// Sent and handed back: the frame is in the ring until acknowledged.
    case held
    /// Selectively acknowledged and released; waits for the cumulative ack to pass it.
    case done
}

/// One frame of the send window. Plain data, kept in preallocated memory.
struct SendRecord {
    var sequence: UInt64 = 0
    var firstMessage: UInt64 = 0
    var messages: UInt32 = 0
    var bytes: UInt32 = 0
    var poolSlot: UInt32 = .max
    var sentAt: UInt64 = 0
    var transmissions: UInt16 = 0
    var leg: UInt8 = 0
    var state: RecordState = .empty
    var coalesced = false
    /// An RDMA WRITE or a refusal of one (the payload ends with an ``RDMATrailer``).
    var rdma = false
    /// Acknowledged (cumulatively or selectively): not needed any more.
    var acked = false
    /// Judged lost: to be sent again.
    var lost = false
}

struct LegRecord {
    var state: LegState = .up
    var changedAt: UInt64
    var lastHeard: UInt64
    var heard = false
    var srtt: Double = 0
    var rttvar: Double = 0
    var hasRTT = false
    var bytesOutstanding = 0
    var windowSent = 0
    var windowLost = 0
    /// Whether the last measured window lost more than the demotion threshold, and its counts
    /// (a late overrun report can still take losses back from it).
    var lastWindowOver = false
    var lastWindowSent = 0
    var lastWindowLost = 0
    /// Overruns the peer reported on this leg that no judged loss has absorbed yet: the next
    /// losses judged on the leg are these (the report often comes before the timeout that
    /// judges them). Dropped after one whole loss window, so an old report excuses nothing new.
    var overrunCredit = 0
    /// Whether the leg is demoted by the verdict of its last loss window (which losses taken
    /// back later can overturn).
    var demotedByLastWindow = false
    var overrunCreditCarried = false
    /// The peer's cumulative overrun count on this fabric, as last reported (wrapping).
    var peerOverrunsReported: UInt32 = 0
    /// This end's port overruns on this fabric when the RVI was opened.
    var receiveOverrunsAtOpen: UInt64 = 0
    var demotedUntil: UInt64 = 0
    /// When this leg last went down from up or demoted, the three latest (a fixed ring, so the
    /// data path does not allocate). Three downs within one `demotionPeriod` is flapping.
    var downs: (UInt64, UInt64, UInt64) = (0, 0, 0)
    var downsNext = 0

    /// Records a fall from up or demoted to down.
    mutating func noteDown(at now: UInt64) {
        switch downsNext {
        case 0: downs.0 = now
        case 1: downs.1 = now
        default: downs.2 = now
        }
        downsNext = (downsNext + 1) % 3
    }

    /// Whether the leg fell down three times within `period` nanoseconds before `now`.
    func flapping(now: UInt64, period: UInt64) -> Bool {
        let oldest = min(downs.0, downs.1, downs.2)
        return oldest != 0 && now &- oldest <= period
    }
    /// A probe's timestamp to echo back on this leg (0: none owed).
    var echoOwed: UInt64 = 0
    /// How many addresses the peer has on this leg's fabric, and which one the leg sends to
    /// (0: the primary).
    var addressCount = 1
    var address = 0
    /// When the peer last answered at the current address: an echo of a probe, or a frame sent
    /// on this leg newly acknowledged (``progressAt``). And when the leg last changed address.
    var answeredAt: UInt64 = 0
    var addressChangedAt: UInt64 = 0
    /// While on an alternate: the stamp of the last probe sent to the primary (its echo says
    /// the primary answers again), and when it went.
    var primaryProbeStamp: UInt64 = 0
    var primaryProbedAt: UInt64 = 0
    /// Whether the peer, in its last control frame, said it hears this leg.
    var peerHears = true
    /// The latest send time of a frame on this leg that has been acknowledged (RACK).
    var rackSentAt: UInt64 = 0
    /// When a frame sent on this leg was last newly acknowledged: the leg's own evidence that
    /// it delivers and that the peer works through what it carried. Its frames time out one
    /// RTO after this, or after they were sent, whichever is later.
    var progressAt: UInt64 = 0
    var stats: RVIStatistics.Leg

    init(fabric: Fabric, now: UInt64) {
        changedAt = now
        lastHeard = now
        stats = RVIStatistics.Leg(fabric: fabric.description, state: .up, stateSinceMilliseconds: 0)
        // Room for the whole history now: a change of state never allocates on the data path.
        stats.history.reserveCapacity(16)
    }

    mutating func sampleRTT(_ ns: Double) {
        if hasRTT {
            rttvar = 0.75 * rttvar + 0.25 * abs(srtt - ns)
            srtt = 0.875 * srtt + 0.125 * ns
        } else {
            srtt = ns
            rttvar = ns / 2
            hasRTT = true
        }
    }
}

// MARK: - The connection

/// The state of one RVI: a send window of frames kept in registered memory until acknowledged,
/// a receive window of frames held out of order, and two legs. Owned by its ``RCLAN`` layer and
/// touched only on the engine thread.
final class Connection {
    let id: UInt32
    @exclusivity(unchecked) var generation: UInt32
    let viA: VI
    let viB: VI
    var path: RVIPath
    @exclusivity(unchecked) var policy: LoadBalancing
    let openedAt: UInt64
    @exclusivity(unchecked) var epoch: UInt32
    @exclusivity(unchecked) var peerEpoch: UInt32 = 0
    @exclusivity(unchecked) var closing = false
    @exclusivity(unchecked) var dirty = false
    /// The service that opened the RVI: it gets the RVI's messages and events.
    let service: any RVIDelegate
    /// The pair of nodes the RVI joins (its peer's liveness, shared with the pair's other RVIs).
    @exclusivity(unchecked) var pair: PeerPair
    let liveness: RVILiveness

    // Sending.
    let sendMask: Int
    /// The send window's frames and records, by sequence number & `sendMask`; with the receive
    /// window's below, allocated when the RVI first carries a frame and given back when it is
    /// idle (``ensureWindow()``, ``releaseWindow()``). Until then they hold no element.
    @exclusivity(unchecked) var frames: FixedRing<Frame>
    @exclusivity(unchecked) var records: FixedTable<SendRecord>
    @exclusivity(unchecked) var windowAllocated = false
    /// Where the windows come from and go back to (the layer's).
    unowned let windows: WindowPool
    @exclusivity(unchecked) var nextSeq: UInt64 = 1
    @exclusivity(unchecked) var sendBase: UInt64 = 1
    @exclusivity(unchecked) var nextToTransmit: UInt64 = 1
    @exclusivity(unchecked) var peerRightEdge: UInt64
    @exclusivity(unchecked) var nextMessage: UInt64 = 1
    @exclusivity(unchecked) var ackedMessage: UInt64 = 0
    @exclusivity(unchecked) var lostPending = 0
    @exclusivity(unchecked) var rackSentAt: UInt64 = 0
    /// How far the peer's latest SACK report speaks for: `.max` when it listed every frame it
    /// holds, else (its blocks were cut short at the maximum count) the end of its last block.
    /// Frames at or above it may be held at the peer, unreported: no evidence of loss.
    @exclusivity(unchecked) var reportedThrough: UInt64 = .max
    /// When the peer's acknowledgements last made progress (the cumulative ack or a SACK
    /// report's reach moved on): frames beyond `reportedThrough` time out from then, not from
    /// when they were sent.
    @exclusivity(unchecked) var ackProgressAt: UInt64 = 0
    @exclusivity(unchecked) var wantsWritable = false
    @exclusivity(unchecked) var creditStalled = false
    @exclusivity(unchecked) var alternate = 0
    // The open (coalescing) frame.
    @exclusivity(unchecked) var open: Frame? = nil
    @exclusivity(unchecked) var openActive = false
    @exclusivity(unchecked) var openUsed = 0
    @exclusivity(unchecked) var openMessages: UInt32 = 0
    @exclusivity(unchecked) var openFirstMessage: UInt64 = 0

    // Receiving.
    let receiveMask: Int
    /// Frames held out of order and their sequence numbers (0: none), by sequence & `receiveMask`.
    @exclusivity(unchecked) var held: FixedRing<InboundFrame>
    @exclusivity(unchecked) var heldSeq: FixedTable<UInt64>
    @exclusivity(unchecked) var heldCount = 0
    @exclusivity(unchecked) var highestHeld: UInt64 = 0
    @exclusivity(unchecked) var cumAck: UInt64 = 1
    @exclusivity(unchecked) var ackOwed = false
    @exclusivity(unchecked) var lastDataLeg = 0

    // Legs: index 0 is fabric A, 1 is fabric B.
    @exclusivity(unchecked) var legs: [LegRecord]
    @exclusivity(unchecked) var unusableSince: UInt64 = 0
    /// The peer's count of duplicate data frames, as of its last control frame.
    @exclusivity(unchecked) var peerDuplicatesSeen: UInt32 = 0
    /// Whether a control frame of the peer has given its overrun counts (the first one is the
    /// base: overruns before then were not this RVI's).
    @exclusivity(unchecked) var peerOverrunsKnown = false
    /// The credit this end grants: its receive window, or less when its sockets cannot queue
    /// that many frames of the largest size.
    let credit: Int
    @exclusivity(unchecked) var stats: RVIStatistics
    /// Refusals of the peer's RDMA WRITEs waiting for room in the send window (at most
    /// ``maxPendingRefusals``; kept in reserved capacity, so queueing one does not allocate).
    @exclusivity(unchecked) var pendingRefusals: [RDMATrailer] = []
    static let maxPendingRefusals = 16

    init(id: UInt32, generation: UInt32, path: RVIPath, policy: LoadBalancing, configuration: RCLANConfiguration,
         credit: Int, now: UInt64, service: any RVIDelegate, pair: PeerPair, liveness: RVILiveness,
         windows: WindowPool) {
        self.id = id
        self.service = service
        self.pair = pair
        self.liveness = liveness
        self.generation = generation
        self.path = path
        viA = VI(.a, path.localA)
        viB = VI(.b, path.localB)
        self.policy = policy
        openedAt = now
        epoch = nextEpoch()
        sendMask = configuration.sendWindow - 1
        receiveMask = configuration.receiveWindow - 1
        self.credit = credit
        // Before the peer's first acknowledgement: it grants what this end would.
        peerRightEdge = 1 + UInt64(credit)
        self.windows = windows
        frames = FixedRing(capacity: 0)
        records = FixedTable(repeating: SendRecord(), count: 0)
        held = FixedRing(capacity: 0)
        heldSeq = FixedTable(repeating: 0, count: 0)
        legs = [LegRecord(fabric: .a, now: now), LegRecord(fabric: .b, now: now)]
        stats = RVIStatistics(rvi: id, policy: policy.description, epoch: epoch, peerEpoch: 0)
        pendingRefusals.reserveCapacity(Self.maxPendingRefusals)
    }

    var rvi: RVI { RVI(id: id) }

    @inline(__always) func vi(_ leg: Int) -> VI { leg == 0 ? viA : viB }

    /// Frames in use in the send window, counting the open frame.
    @inline(__always) var inUse: Int { Int(nextSeq &- sendBase) + (openActive ? 1 : 0) }

    /// Whether one more frame can take a sequence number (besides the open frame, if any). The
    /// first question on every path that queues a frame: it allocates the window if needed.
    @inline(__always) func hasRoom() -> Bool {
        ensureWindow()
        guard inUse < sendMask + 1 else { return false }
        let next = nextSeq &+ (openActive ? 1 : 0)
        return records[Int(truncatingIfNeeded: next) & sendMask].state == .empty
    }

    /// Allocates the send and receive windows if the RVI gave them back (or never had them).
    @inline(__always) func ensureWindow() {
        if !windowAllocated { allocateWindow() }
    }

    func allocateWindow() {
        windows.fill(self)
        windowAllocated = true
        pair.windowsHeld = true
        stats.windowAllocations &+= 1
    }

    /// Whether nothing is queued, in flight, held, open or owed: the windows hold nothing the
    /// RVI needs.
    var isQuiescent: Bool {
        sendBase == nextSeq && !openActive && heldCount == 0 && lostPending == 0 && pendingRefusals.isEmpty
            && !ackOwed
    }

    /// Gives the windows back (an idle, quiescent RVI): frames still in the kernel are disowned
    /// (the generation changes) and dropped when they come back.
    func releaseWindow() {
        guard windowAllocated else { return }
        releaseFrames()
        windows.takeBack(self)
        windowAllocated = false
    }

    /// Drops every frame the connection holds: the send ring, the open frame, frames held out
    /// of order. Frames in the kernel are disowned (the generation changes) and dropped when
    /// they come back.
    func releaseFrames() {
        _ = open.take()
        openActive = false
        frames.removeAll()
        records.fill(with: SendRecord())
        held.removeAll()
        pendingRefusals.removeAll(keepingCapacity: true)
        heldSeq.fill(with: 0)
        heldCount = 0
        highestHeld = 0
        generation &+= 1
    }

    /// Starts both directions over at sequence 1 (after a peer restart or a give-up). Message
    /// numbers keep counting, so ranges reported to the delegate never repeat.
    func restartSequences() {
        releaseFrames()
        nextSeq = 1
        sendBase = 1
        nextToTransmit = 1
        peerRightEdge = 1 + UInt64(credit)
        peerOverrunsKnown = false
        ackedMessage = nextMessage - 1
        lostPending = 0
        rackSentAt = 0
        reportedThrough = .max
        ackProgressAt = 0
        legs[0].rackSentAt = 0
        legs[1].rackSentAt = 0
        legs[0].progressAt = 0
        legs[1].progressAt = 0
        creditStalled = false
        cumAck = 1
        ackOwed = false
        for l in 0..<2 {
            legs[l].bytesOutstanding = 0
            legs[l].windowSent = 0
            legs[l].windowLost = 0
            legs[l].overrunCredit = 0
        }
    }

    func milliseconds(_ t: UInt64) -> Double { Double(t &- openedAt) / 1e6 }

    func setLeg(_ l: Int, _ state: LegState, now: UInt64) {
        guard legs[l].state != state else { return }
        legs[l].state = state
        legs[l].changedAt = now
        legs[l].stats.state = state
        legs[l].stats.stateSinceMilliseconds = milliseconds(now)
        if legs[l].stats.history.count == 16 { legs[l].stats.history.removeFirst() }
        legs[l].stats.history.append(.init(state: state, atMilliseconds: milliseconds(now)))
    }

    func snapshot() -> RVIStatistics {
        var s = stats
        s.epoch = epoch
        s.peerEpoch = peerEpoch
        s.policy = policy.description
        s.unacknowledgedFrames = Int(nextSeq &- sendBase)
        s.heldOutOfOrder = heldCount
        s.credit = credit
        s.windowAllocated = windowAllocated
        s.legs = legs.map { l in
            var st = l.stats
            st.rttMicroseconds = l.hasRTT ? l.srtt / 1000 : nil
            st.peerAddress = l.address
            return st
        }
        return s
    }
}
