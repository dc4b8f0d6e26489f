import PlexusCore

/// Liveness of one peer node, shared by every RVI this layer has open to it: the pair of nodes
/// ("this node and that one"), known by the peer's primary address on each fabric.
///
/// Every frame heard from the peer on a leg, whichever RVI it arrived on, is the pair's
/// evidence that the leg works, and the pair alone sends probes: one per leg and interval,
/// through one of its RVIs (``probeVia``), however many RVIs join the two nodes. The interval
/// follows traffic: a pair with frames in flight, or that sent or received data within two
/// heartbeat intervals, is active and probes a leg only when it sent nothing else on it for a
/// heartbeat interval (acknowledgements prove liveness while it carries traffic);
/// an idle pair probes every ``RCLANConfiguration/watchedProbeInterval`` when it holds a
/// ``RVILiveness/watched`` RVI, else every ``RCLANConfiguration/keepaliveInterval`` (or
/// never). An RVI's legs are judged against its pair's silence, at its pair's interval.
///
/// The layer ticks an idle pair's RVIs only when something is to be judged (a leg the pair has
/// not heard for the dead-leg time, an RVI with a leg not up or anything in flight): an idle
/// RVI costs no work per tick. Touched only on the engine thread.
final class PeerPair {
    struct Key: Hashable {
        let a: FabricAddress
        let b: FabricAddress
    }

    struct Leg {
        /// When the peer was last heard on this leg (any RVI, any frame), and whether ever.
        var lastHeard: UInt64
        var heard = false
        /// When this end last sent anything to the peer on this leg (any RVI, any frame).
        var lastSent: UInt64 = 0
        /// Whether the peer, in its last control frame on any RVI, said it hears this leg.
        var peerHears = true
        /// Probes the pair sent on this leg.
        var probes: UInt64 = 0
    }

    let key: Key
    /// The ids of the open RVIs to the peer.
    @exclusivity(unchecked) var members: [UInt32] = []
    /// How many of them are ``RVILiveness/watched``.
    @exclusivity(unchecked) var watchedMembers = 0
    @exclusivity(unchecked) var legs: (Leg, Leg)
    /// When an RVI of the pair last sent or received a data frame.
    @exclusivity(unchecked) var lastData: UInt64 = 0
    /// The probe interval the pair was last ticked at (nanoseconds), and since when its silence
    /// is judged at it: a pair that speeds up judges silence from then on, not from before.
    @exclusivity(unchecked) var interval: UInt64 = 0
    /// The interval the pair probes its legs at: a heartbeat only while data goes or comes.
    @exclusivity(unchecked) var probeInterval: UInt64 = 0
    @exclusivity(unchecked) var judgedFrom: UInt64
    /// Silence before this is this end's own (its engine late, its sockets overrun): not
    /// counted against the peer.
    @exclusivity(unchecked) var excusedUntil: UInt64 = 0
    /// RVIs of the pair that the last tick left with something to judge (a leg not up, frames in
    /// flight or held, an acknowledgement owed): ticked again while any is.
    @exclusivity(unchecked) var unsettled = 0
    /// Whether the pair was active at the last tick (the tick that finds it idle visits its RVIs
    /// once more).
    @exclusivity(unchecked) var wasActive = false
    /// RVIs of the pair with frames in flight at the last tick: the pair stays active.
    @exclusivity(unchecked) var inFlight = 0
    /// Whether an RVI of the pair may hold its windows (visited once the pair has been idle for
    /// ``RCLANConfiguration/idleAfter``, to give them back).
    @exclusivity(unchecked) var windowsHeld = false
    /// The RVI the pair's probes go on: the one the peer was last heard on (so the peer surely
    /// has it open); before the peer is heard, each RVI of the pair in turn.
    @exclusivity(unchecked) var probeVia: UInt32 = .max
    @exclusivity(unchecked) var probeTurn = 0

    init(key: Key, now: UInt64) {
        self.key = key
        legs = (Leg(lastHeard: now), Leg(lastHeard: now))
        judgedFrom = now
    }

    @inline(__always)
    func leg(_ l: Int) -> Leg { l == 0 ? legs.0 : legs.1 }

    @inline(__always)
    func withLeg<R>(_ l: Int, _ body: (inout Leg) -> R) -> R {
        l == 0 ? body(&legs.0) : body(&legs.1)
    }

    /// When the peer counts as last heard on leg `l` for judging silence: its last frame, or
    /// when the pair started being judged at its current interval, whichever is later.
    @inline(__always)
    func heardForJudging(_ l: Int) -> UInt64 { max(leg(l).lastHeard, judgedFrom) }

    /// Whether the pair carries traffic: data sent or received within `window` nanoseconds of
    /// `now` (two heartbeat intervals), or frames in flight at the last tick.
    @inline(__always)
    func isActive(now: UInt64, window: UInt64) -> Bool {
        inFlight > 0 || (lastData != 0 && now &- lastData < window)
    }
}
