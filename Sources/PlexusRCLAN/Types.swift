import PlexusCore

/// A redundant virtual interface: one logical, reliable connection made of a VI on fabric A
/// and a VI on fabric B ("RCLAN layer" and "Giganet Driver", redundant pairs, in the seed).
///
/// The value is a handle: it names an RVI open on one ``RCLAN`` layer.
public struct RVI: Hashable, Sendable, CustomStringConvertible {
    public let id: UInt32
    public init(id: UInt32) { self.id = id }
    public var description: String { "RVI \(id)" }
}

/// How an RVI spreads its frames over its two legs.
public enum LoadBalancing: Sendable, Hashable, CustomStringConvertible {
    /// Alternate legs frame by frame.
    case alternate
    /// Send each frame on the leg with the fewest bytes sent and not yet acknowledged.
    case fewestBytes
    /// Everything on `primary` while it is up; the other leg only when it is not.
    case activeStandby(primary: Fabric)

    public var description: String {
        switch self {
        case .alternate: "alternate"
        case .fewestBytes: "fewest-bytes"
        case .activeStandby(let p): "active-standby:\(p == .a ? "a" : "b")"
        }
    }

    /// Parses `alternate`, `fewest-bytes`, `active-standby` (primary A) or `active-standby:b`.
    public init(parsing text: String) throws(PlexusError) {
        switch text.lowercased() {
        case "alternate": self = .alternate
        case "fewest-bytes": self = .fewestBytes
        case "active-standby", "active-standby:a": self = .activeStandby(primary: .a)
        case "active-standby:b": self = .activeStandby(primary: .b)
        default:
            throw PlexusError(.configuration,
                              "unknown load-balancing policy '\(text)': use alternate, fewest-bytes, active-standby[:a|:b]")
        }
    }
}

/// The two VIs of an RVI and the peer VIs they are joined to. The control plane (the switch
/// manager on the control nodes) hands these out; tests and benchmarks write them by hand.
public struct RVIPath: Sendable, Hashable {
    /// Local VI numbers on fabric A and fabric B.
    public var localA: UInt32
    public var localB: UInt32
    /// The peer's port address on each fabric: its primary adapter there.
    public var peerA: FabricAddress
    public var peerB: FabricAddress
    /// The peer's VI numbers on each fabric.
    public var remoteA: UInt32
    public var remoteB: UInt32
    /// The peer's alternate addresses on each fabric, in the order they are tried (seed 003: a
    /// primary address and alternates per node). A leg whose current address stops answering
    /// within the dead-leg time moves to the next, and goes back to the primary as soon as the
    /// primary answers its probes again. At most three per fabric.
    public var alternatesA: [FabricAddress] = []
    public var alternatesB: [FabricAddress] = []
    /// The MTU of the peer's adapters on each fabric, when smaller than the engine's path MTU:
    /// no datagram of the leg is larger (seed 003: the message size follows each adapter's MTU).
    public var mtuA: Int? = nil
    public var mtuB: Int? = nil

    public init(localA: UInt32, localB: UInt32, peerA: FabricAddress, peerB: FabricAddress,
                remoteA: UInt32, remoteB: UInt32, alternatesA: [FabricAddress] = [], alternatesB: [FabricAddress] = [],
                mtuA: Int? = nil, mtuB: Int? = nil) {
        self.localA = localA
        self.localB = localB
        self.peerA = peerA
        self.peerB = peerB
        self.remoteA = remoteA
        self.remoteB = remoteB
        self.alternatesA = alternatesA
        self.alternatesB = alternatesB
        self.mtuA = mtuA
        self.mtuB = mtuB
    }

    /// The peer's addresses on `fabric`, primary first.
    public func peers(on fabric: Fabric) -> [FabricAddress] {
        fabric == .a ? [peerA] + alternatesA : [peerB] + alternatesB
    }
}

/// Timers, windows and thresholds of the RCLAN layer. The defaults detect a dead leg in about
/// 5 ms; every value can be changed per layer.
public struct RCLANConfiguration: Sendable, Hashable {
    /// How often a leg of a node pair carrying traffic is probed when it sent nothing else for
    /// that long, and the layer's timer tick while any pair carries traffic.
    public var heartbeatInterval: Duration = .milliseconds(1)
    /// A leg that has heard nothing for this many heartbeat intervals is declared down.
    public var missedHeartbeats: Int = 5
    /// A leg that answers again must stay answering this long before it carries traffic again
    /// (damps flapping).
    public var holdDown: Duration = .milliseconds(50)
    /// Frames sent and not yet acknowledged, per RVI (a power of two). Each holds a pool frame.
    public var sendWindow: Int = 256
    /// Frames the receiver accepts beyond the next in-order one, per RVI (a power of two): its
    /// posted receive buffers, advertised to the sender as credit. The credit is smaller when
    /// the port's socket cannot queue that many frames of the largest size
    /// (``Engine/receiveQueueFrames(_:)``), so that a sender within its credit never overruns it.
    public var receiveWindow: Int = 256
    /// The floor and ceiling of the retransmission timeout.
    public var minimumRTO: Duration = .milliseconds(2)
    public var maximumRTO: Duration = .milliseconds(200)
    /// A leg whose measured loss rate exceeds this (percent of frames sent) is demoted: it stops
    /// carrying data while the other leg is up. Up to 5 % is simply covered by retransmission.
    public var demotionLossPercent: Double = 20
    /// How long a demoted leg stays out before it is tried again.
    public var demotionPeriod: Duration = .seconds(1)
    /// When both legs have been down this long, messages still unacknowledged complete with
    /// ``RVIFailure/unreachable`` and the connection starts a new epoch.
    public var failAfter: Duration = .seconds(2)
    /// Messages up to this many bytes are coalesced with others posted in the same loop turn.
    public var coalesceLimit: Int = 2048
    /// An RVI with nothing in flight, held or owed, whose pair of nodes has carried no data for
    /// this long, gives back its send and receive windows (allocated again at its next frame).
    /// (A pair's probes slow down sooner: as soon as nothing is in flight and no data went or
    /// came for two heartbeat intervals, to ``watchedProbeInterval`` or ``keepaliveInterval``.)
    public var idleAfter: Duration = .milliseconds(200)
    /// How often each leg of an idle pair that holds a ``RVILiveness/watched`` RVI is probed. A
    /// leg is down after ``missedHeartbeats`` of these in silence, and the pair's RVIs are
    /// unusable after four times as long when both legs are silent: with the defaults, 100 ms,
    /// the failure detection a control node's failover is built on.
    public var watchedProbeInterval: Duration = .milliseconds(5)
    /// How often each leg of an idle pair whose RVIs are all ``RVILiveness/onDemand`` is probed;
    /// nil (the default): never, such a pair is judged only while it carries traffic, so an
    /// idle pair of processing nodes costs nothing at either end.
    public var keepaliveInterval: Duration? = nil

    public init() {}

    /// Checks the values; the layer refuses a configuration that fails.
    public func validate() throws(PlexusError) {
        func bad(_ m: String) -> PlexusError { PlexusError(.configuration, "RCLAN configuration: " + m) }
        if heartbeatInterval < .microseconds(100) { throw bad("heartbeatInterval must be at least 100 µs") }
        if missedHeartbeats < 2 { throw bad("missedHeartbeats must be at least 2") }
        for (n, w) in [("sendWindow", sendWindow), ("receiveWindow", receiveWindow)] {
            if w < 4 || w > 1 << 16 || w & (w - 1) != 0 { throw bad("\(n) must be a power of two in 4...65536") }
        }
        if minimumRTO <= .zero || maximumRTO < minimumRTO { throw bad("need 0 < minimumRTO <= maximumRTO") }
        if !(demotionLossPercent > 0 && demotionLossPercent <= 100) { throw bad("demotionLossPercent must be in (0, 100]") }
        if watchedProbeInterval < heartbeatInterval { throw bad("watchedProbeInterval must be at least heartbeatInterval") }
        if let k = keepaliveInterval, k < watchedProbeInterval {
            throw bad("keepaliveInterval must be at least watchedProbeInterval")
        }
        if idleAfter < heartbeatInterval { throw bad("idleAfter must be at least heartbeatInterval") }
        if coalesceLimit < 0 || coalesceLimit > FrameLayout.maxPayload - 2 {
            throw bad("coalesceLimit must be in 0...\(FrameLayout.maxPayload - 2)")
        }
    }
}

/// How the layer watches an RVI's peer while the pair of nodes carries no traffic. Liveness is
/// kept per pair of nodes and leg, shared by every RVI between them (docs/reliability.md, "Idle
/// RVIs and liveness per node pair"): a pair carrying traffic needs no probes beyond one per
/// heartbeat interval on a leg that sent nothing else; an idle pair is probed at the slowest
/// rate its RVIs allow.
public enum RVILiveness: Sendable, Hashable {
    /// The peer's failure must be detected while idle: the pair is probed every
    /// ``RCLANConfiguration/watchedProbeInterval`` (management RVIs, whose unusability is a
    /// control node's processor-failure detection).
    case watched
    /// Judged while it carries traffic; idle, the pair is probed only every
    /// ``RCLANConfiguration/keepaliveInterval`` (by default never): the direct RVIs between
    /// processing nodes, and a processing node's RVIs to the control nodes (which watch it).
    case onDemand
}

/// The state of one leg of an RVI (see the state diagram in docs/reliability.md).
public enum LegState: String, Sendable, Hashable, Codable {
    /// Carrying traffic.
    case up
    /// Silent for longer than the heartbeat limit: carries only probes.
    case down
    /// Answering again, inside its hold-down: carries only probes until it ends.
    case recovering
    /// Losing more than the demotion threshold: carries data only if the other leg is not up.
    case demoted
}

/// Why messages completed with an error at their sender.
public enum RVIFailure: String, Sendable, Hashable, Codable {
    /// Both legs were down for longer than ``RCLANConfiguration/failAfter``.
    case unreachable
    /// The peer restarted (a new epoch): what it had not acknowledged is gone with its old self.
    case peerRestarted
    /// The RVI was closed.
    case closed
    /// The engine stopped.
    case stopped
}

/// What the layer tells its delegate about an RVI.
public enum RVIEvent: Sendable, Hashable, CustomStringConvertible {
    case legDown(Fabric)
    case legUp(Fabric)
    /// The leg lost more than the demotion threshold (its measured loss, percent).
    case legDemoted(Fabric, lossPercent: Double)
    /// Neither leg is up: messages wait (they are not lost) until one returns or `failAfter`.
    case unusable
    /// A leg is up again after ``unusable``.
    case usable
    /// The peer's end started a new epoch (it restarted, or it gave up on the connection): the
    /// connection starts over, and unacknowledged messages were failed.
    case peerRestarted(epoch: UInt32)
    /// This end gave up (both legs down past `failAfter`) and started a new epoch.
    case reset(epoch: UInt32)
    /// The leg on this fabric sends to another of the peer's addresses now (0 its primary,
    /// 1 … its alternates): the one it used stopped answering, or the primary answered again.
    case peerAddressChanged(Fabric, address: Int)

    public var description: String {
        switch self {
        case .legDown(let f): "leg \(f) down"
        case .legUp(let f): "leg \(f) up"
        case .legDemoted(let f, let p): "leg \(f) demoted (loss \(p) %)"
        case .unusable: "unusable: no leg up"
        case .usable: "usable again"
        case .peerRestarted(let e): "peer restarted (epoch \(e))"
        case .reset(let e): "reset (new epoch \(e))"
        case .peerAddressChanged(let f, let a): a == 0 ? "leg \(f) back on the peer's primary address"
            : "leg \(f) on the peer's alternate address \(a)"
        }
    }
}

/// Why ``RCLAN/send(_:on:)`` refused a message. Nothing was queued.
public enum RVISendError: Error, Sendable, Hashable {
    /// No such RVI is open on this layer.
    case noSuchRVI
    /// The send window is full (the peer has not acknowledged enough yet, or it is out of
    /// credit): back-pressure. ``RVIDelegate/writable(_:layer:)`` says when to try again.
    case windowFull
    /// The engine's frame pool is empty; try again on a later turn.
    case noBuffers
    /// The message is larger than one frame (16896 bytes).
    case tooLarge
    /// The engine is stopping.
    case stopping
    /// An RDMA WRITE whose offset plus length does not fit in 64 bits.
    case offsetOverflow
}

/// The upper layer of an ``RCLAN`` layer: it receives messages and events. All calls come on
/// the engine thread, never overlapping. Every method has an empty default.
public protocol RVIDelegate: AnyObject {
    /// The engine started; the layer is ready for ``RCLAN/open(_:policy:)``.
    func layerDidStart(_ layer: RCLAN)
    /// Once per loop turn: post messages here (they leave at the end of the turn, coalesced).
    func layerTurn(_ layer: RCLAN)
    /// A message, exactly once and in order. `message` is valid only during the call.
    func received(_ message: RawSpan, on rvi: RVI, layer: RCLAN)
    /// The peer has every message up to and including message number `through`.
    func acknowledged(on rvi: RVI, through: UInt64, layer: RCLAN)
    /// The send window of `rvi` has room again after a ``RVISendError/windowFull``.
    func writable(_ rvi: RVI, layer: RCLAN)
    /// Messages `messages` (numbers as ``RCLAN/send(_:on:)`` returned them) will not be
    /// delivered by this connection.
    func sendFailed(on rvi: RVI, messages: Range<UInt64>, reason: RVIFailure, layer: RCLAN)
    /// Something happened to the RVI or one of its legs.
    func event(_ event: RVIEvent, on rvi: RVI, layer: RCLAN)
    /// The engine is stopping; messages still pending have been failed with ``RVIFailure/stopped``.
    func layerWillStop(_ layer: RCLAN)
    /// A device attached to the engine (a TAP) produced a packet (see ``Engine/attachDevice(fd:)``).
    func deviceRead(_ frame: consuming Frame, from device: DeviceHandle, layer: RCLAN)
    /// The peer's RDMA WRITE landed in this end's region `region`: `length` bytes at `offset`,
    /// in order with the messages around it (``RCLAN/rdmaWrite(_:on:region:offset:immediate:)-(Frame?,_,_,_,_)``).
    func rdmaWriteLanded(on rvi: RVI, region: RegionKey, offset: UInt64, length: Int, immediate: UInt32?,
                         layer: RCLAN)
    /// An RDMA WRITE was refused and nothing of it landed: by this end (``RDMARefuser/here``,
    /// a write the peer sent; the peer is told) or by the peer (``RDMARefuser/peer``, a write
    /// this end sent, in the peer's sequence: before any message the peer sent after it).
    func rdmaWriteRefused(on rvi: RVI, region: RegionKey, offset: UInt64, length: Int, error: RDMAError,
                          by refuser: RDMARefuser, layer: RCLAN)
    /// A block I/O operation the service submitted on the engine's ring
    /// (``PlexusCore/Engine/read(_:at:length:into:regionOffset:token:)`` …) with a token in a
    /// range it claimed (``RCLAN/claimBlockIOTokens(_:for:)``) has completed: `result` is the
    /// bytes moved, or a negative errno. On the engine thread.
    func blockIOCompleted(token: UInt32, result: Int32, layer: RCLAN)
    /// A descriptor the service watches with ``PlexusCore/Engine/watch(fd:events:token:)``,
    /// with a token in a range it claimed (``RCLAN/claimBlockIOTokens(_:for:)``), is ready:
    /// `events` are the poll events, or -errno. On the engine thread.
    func fdReady(token: UInt32, events: Int32, layer: RCLAN)
}

extension RVIDelegate {
    public func layerDidStart(_ layer: RCLAN) {}
    public func layerTurn(_ layer: RCLAN) {}
    public func received(_ message: RawSpan, on rvi: RVI, layer: RCLAN) {}
    public func acknowledged(on rvi: RVI, through: UInt64, layer: RCLAN) {}
    public func writable(_ rvi: RVI, layer: RCLAN) {}
    public func sendFailed(on rvi: RVI, messages: Range<UInt64>, reason: RVIFailure, layer: RCLAN) {}
    public func event(_ event: RVIEvent, on rvi: RVI, layer: RCLAN) {}
    public func layerWillStop(_ layer: RCLAN) {}
    public func deviceRead(_ frame: consuming Frame, from device: DeviceHandle, layer: RCLAN) {}
    public func rdmaWriteLanded(on rvi: RVI, region: RegionKey, offset: UInt64, length: Int, immediate: UInt32?,
                                layer: RCLAN) {}
    public func rdmaWriteRefused(on rvi: RVI, region: RegionKey, offset: UInt64, length: Int, error: RDMAError,
                                 by refuser: RDMARefuser, layer: RCLAN) {}
    public func blockIOCompleted(token: UInt32, result: Int32, layer: RCLAN) {}
    public func fdReady(token: UInt32, events: Int32, layer: RCLAN) {}
}

/// Counters of one RVI and its legs, like the best transports report them.
public struct RVIStatistics: Sendable, Hashable, Codable {
    public struct Transition: Sendable, Hashable, Codable {
        public var state: LegState
        /// Milliseconds since the RVI was opened.
        public var atMilliseconds: Double
    }

    public struct Leg: Sendable, Hashable, Codable {
        public var fabric: String
        public var state: LegState
        /// Milliseconds since the RVI was opened, at the last change of state.
        public var stateSinceMilliseconds: Double
        public var framesOut: UInt64 = 0
        public var bytesOut: UInt64 = 0
        public var framesIn: UInt64 = 0
        public var bytesIn: UInt64 = 0
        public var retransmissions: UInt64 = 0
        /// Frames judged lost after being sent on this leg (by acknowledgement or timeout), less
        /// those the peer then reported as duplicates (they were late, not lost) and those its
        /// socket dropped for want of room (``overruns``).
        public var lost: UInt64 = 0
        /// Frames judged lost on this leg that were receive overruns at the peer (its socket on
        /// this fabric dropped them because its receive queue was full, as the peer reported):
        /// congestion at the receiver, not loss on the fabric. Resent like any lost frame, but
        /// not counted in ``lost`` or the loss rate, so they never demote the leg.
        public var overruns: UInt64 = 0
        /// Datagrams the peer's socket on this fabric reported dropped for want of room since
        /// this end first heard it (all its traffic on that port, this RVI's and any other's).
        public var peerReceiveOverruns: UInt64 = 0
        /// Datagrams this end's socket on this fabric dropped for want of room since the RVI was
        /// opened (the port's ``PortCounters/receiveOverruns``: every VI on the port).
        public var receiveOverruns: UInt64 = 0
        /// Retransmissions the peer reported as duplicates: charged to a leg, then taken back.
        public var spuriousRetransmissions: UInt64 = 0
        /// Loss over the last measured window of frames, percent.
        public var lossPercent: Double = 0
        /// Smoothed round-trip time, microseconds (nil until measured).
        public var rttMicroseconds: Double?
        public var heartbeatsOut: UInt64 = 0
        public var sendErrors: UInt64 = 0
        /// Which of the peer's addresses on this fabric the leg sends to: 0 its primary, 1 … its
        /// alternates (``RVIPath/alternatesA``).
        public var peerAddress: Int = 0
        /// Times the leg moved to another of the peer's addresses (to an alternate because the
        /// current one stopped answering, or back to the primary because it answered again).
        public var addressChanges: UInt64 = 0
        /// The last state changes (at most 16).
        public var history: [Transition] = []
    }

    public var rvi: UInt32
    public var policy: String
    public var epoch: UInt32
    public var peerEpoch: UInt32
    public var messagesOut: UInt64 = 0
    public var messageBytesOut: UInt64 = 0
    public var messagesIn: UInt64 = 0
    public var messageBytesIn: UInt64 = 0
    public var framesOut: UInt64 = 0
    public var framesIn: UInt64 = 0
    public var retransmissions: UInt64 = 0
    public var duplicatesDropped: UInt64 = 0
    /// Frames from an old epoch of either end.
    public var staleDropped: UInt64 = 0
    /// Frames beyond the advertised window (a misbehaving sender).
    public var beyondWindowDropped: UInt64 = 0
    /// RDMA WRITEs this end posted, and their bytes.
    public var rdmaWritesOut: UInt64 = 0
    public var rdmaBytesOut: UInt64 = 0
    /// The peer's RDMA WRITEs that landed here, and their bytes.
    public var rdmaWritesLanded: UInt64 = 0
    public var rdmaBytesLanded: UInt64 = 0
    /// The peer's RDMA WRITEs this end refused (bad key, wrong peer, no permission, out of
    /// bounds): nothing of them landed, and the peer was told.
    public var rdmaWritesRefused: UInt64 = 0
    /// Refusals of this end's RDMA WRITEs that the peer sent back.
    public var rdmaRefusalsReceived: UInt64 = 0
    /// Refusals this end could not queue (more than 16 waiting for room in the send window):
    /// the peer is not told of those writes (counted here and in ``rdmaWritesRefused``).
    public var rdmaRefusalsUnsent: UInt64 = 0
    /// Frames that arrived out of order, reassembled in pool frames, and were let go
    /// unacknowledged because the pool was short of frames (the sender sends them again).
    public var outOfOrderShed: UInt64 = 0
    /// Malformed coalesced records or control frames.
    public var malformedDropped: UInt64 = 0
    /// Times the sender had frames to send and no credit from the receiver.
    public var creditStalls: UInt64 = 0
    /// Frames this end lets its peer send beyond its acknowledgement: the receive window, or
    /// what its sockets can queue if that is less.
    public var credit: Int = 0
    /// Sends refused with ``RVISendError/windowFull``.
    public var windowFullRefusals: UInt64 = 0
    public var acksOut: UInt64 = 0
    public var messagesFailed: UInt64 = 0
    /// Messages taken back with ``RCLAN/reclaimUnacknowledged(on:_:)`` to be sent another way.
    public var messagesReclaimed: UInt64 = 0
    public var peerRestarts: UInt64 = 0
    public var resets: UInt64 = 0
    /// Frames sent and not yet acknowledged, and frames held out of order at the receiver.
    public var unacknowledgedFrames: Int = 0
    public var heldOutOfOrder: Int = 0
    /// Whether the RVI holds its send and receive windows now (an idle RVI gives them back),
    /// and how many times it has allocated them.
    public var windowAllocated = false
    public var windowAllocations: UInt64 = 0
    public var legs: [Leg] = []
}
