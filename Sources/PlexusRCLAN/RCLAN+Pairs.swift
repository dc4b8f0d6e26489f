import PlexusCore

// Liveness per node pair (PeerPair.swift), the layer's adaptive tick, and idle RVIs.
//
// Each tick visits the pairs, not the RVIs: a pair probes each leg at its interval (a heartbeat
// while it carries traffic, slower while idle), and its RVIs are ticked only when something is
// to be judged. The engine's timer is armed for the shortest interval among the pairs, so a
// layer whose pairs are all idle wakes every `watchedProbeInterval` (or `keepaliveInterval`),
// not every heartbeat; the first data frame of an idle pair arms it for the next heartbeat.

extension RCLAN {
    // MARK: - Pairs

    /// The pair of nodes `path` leads to (made when its first RVI opens).
    func pair(for path: RVIPath) -> PeerPair {
        let key = PeerPair.Key(a: path.peerA, b: path.peerB)
        if let p = pairs[key] { return p }
        let p = PeerPair(key: key, now: monotonicNanos())
        pairs[key] = p
        pairList.append(p)
        return p
    }

    func join(_ c: Connection, _ p: PeerPair) {
        c.pair = p
        p.members.append(c.id)
        if c.liveness == .watched { p.watchedMembers += 1 }
        if p.probeVia == .max { p.probeVia = c.id }
        wakeTick()
    }

    func leave(_ c: Connection) {
        let p = c.pair
        p.members.removeAll { $0 == c.id }
        if c.liveness == .watched { p.watchedMembers -= 1 }
        if p.probeVia == c.id { p.probeVia = p.members.first ?? .max }
        if p.members.isEmpty {
            pairs[p.key] = nil
            pairList.removeAll { $0 === p }
        }
    }

    /// The pairs of nodes the layer has RVIs to.
    public var pairCount: Int { pairList.count }

    /// Liveness of the pair `rvi` belongs to: its probe interval now, how many RVIs share it,
    /// and the probes it sent on each leg.
    public func pairStatistics(of rvi: RVI) -> PairStatistics? {
        guard let c = live(rvi) else { return nil }
        let p = c.pair
        return PairStatistics(rvis: p.members.count, watched: p.watchedMembers > 0,
                              active: p.isActive(now: monotonicNanos(), window: 2 * tickNanos),
                              probeIntervalMilliseconds: p.probeInterval == .max ? nil : Double(p.probeInterval) / 1e6,
                              probes: (p.legs.0.probes, p.legs.1.probes))
    }

    /// How long the peer `rvi` leads to has been silent on both legs, in nanoseconds: since this
    /// end last read a frame of it, on any RVI. (A stalled engine reads what waited in its
    /// sockets before its next tick, so its own stall does not count against the peer.) Nil
    /// when `rvi` is not open.
    public func silenceNanos(of rvi: RVI) -> UInt64? {
        guard let c = live(rvi) else { return nil }
        let p = c.pair
        let heard = max(p.legs.0.lastHeard, p.legs.1.lastHeard)
        let t = monotonicNanos()
        return t > heard ? t - heard : 0
    }

    /// The silence after which an idle watched pair's RVIs are unusable: 4 × `missedHeartbeats`
    /// × `watchedProbeInterval` (100 ms with the defaults). A pair carrying traffic is judged
    /// sooner (with a heartbeat interval); a failure detector that must not mistake a busy peer
    /// for a dead one waits for this much silence whatever the traffic (``silenceNanos(of:)``).
    public var idleDetectionNanos: UInt64 { 4 * UInt64(configuration.missedHeartbeats) * watchedNanos }

    /// Totals over the layer: pairs, RVIs holding their windows, and probes sent.
    public var livenessTotals: LivenessTotals {
        var t = LivenessTotals(pairs: pairList.count)
        let now = monotonicNanos()
        for p in pairList {
            if p.isActive(now: now, window: 2 * tickNanos) { t.activePairs += 1 }
            t.probes &+= p.legs.0.probes &+ p.legs.1.probes
        }
        for case let c? in connections where !c.closing {
            t.rvis += 1
            if c.windowAllocated { t.rvisWithWindows += 1 }
        }
        t.spareWindows = windowPool.spares.count
        t.ticks = ticks
        t.ticksLate = ticksLate
        t.ticksOverrun = ticksOverrun
        t.windowsAllocated = windowPool.allocated
        t.windowsReused = windowPool.reused
        return t
    }

    /// Data went or came on `c`: its pair is active, and the next tick is at most a heartbeat
    /// away (timeouts and probes run at heartbeat pace while a pair carries traffic).
    @inline(__always)
    func noteData(_ c: Connection) {
        let p = c.pair
        let wasIdle = p.interval != tickNanos
        p.lastData = now
        if wasIdle { wakeTick() }
    }

    /// Something of `c` must be judged at the next tick (a leg fell down or is recovering).
    func unsettle(_ c: Connection) {
        c.pair.unsettled += 1
    }

    // MARK: - The tick

    /// Arms the next tick `delay` nanoseconds from now, superseding any tick armed before.
    func armTick(after delay: UInt64) {
        let at = monotonicNanos() &+ delay
        tickGeneration &+= 1
        tickExpectedAt = at
        if busyPoll {
            nextTickAt = at
        } else {
            _ = engine.schedule(after: .nanoseconds(Int64(delay)), token: Self.tickTokenBase | (tickGeneration & 0xFF))
        }
    }

    /// Brings the next tick forward to one heartbeat from now if it is further off.
    /// The timer armed for the later tick stays in the ring until it fires (and is then
    /// ignored): at most ``maxSupersededTicks`` of those at a time, so the engine's timer slots
    /// never run out (past that, the tick stays where it was, at most one idle interval off).
    func wakeTick() {
        guard started, let engine, !engine.isStopping else { return }
        guard tickExpectedAt > monotonicNanos() &+ tickNanos else { return }
        if !busyPoll {
            guard supersededTicks < Self.maxSupersededTicks else { return }
            supersededTicks += 1
        }
        armTick(after: tickNanos)
    }

    static let maxSupersededTicks = 32

    func onTick() {
        now = monotonicNanos()
        // When this engine itself was late (a long turn, a descheduled thread), the peer's
        // frames waited in the sockets unread: that much of what looks like silence is ours, and
        // is not counted against the peer (each pair's silence is judged from that much later).
        // Only the lateness is discounted, not the whole silence: an engine that is often a
        // little late still finds a dead peer, later by the sum of its delays.
        let late = lastTickAt != 0 && now > tickExpectedAt ? now - tickExpectedAt : 0
        let stalled = late > 2 * tickNanos
        // Likewise when this end's sockets dropped datagrams for want of room since the last
        // tick (many peers at once: a control node at start-up): the peer's probes and echoes
        // may be among them, so the time since the last tick is not counted against any peer.
        let overruns = engine.receiveOverruns(.a) &+ engine.receiveOverruns(.b)
        let overran = overruns != overrunsAtLastTick
        overrunsAtLastTick = overruns
        let discount = overran && lastTickAt != 0 ? max(late, now &- lastTickAt) : (stalled ? late : 0)
        if overran { ticksOverrun &+= 1 }
        if stalled { ticksLate &+= 1 }
        ticks &+= 1
        lastTickAt = now
        tickAfterStall = stalled
        var next = keepaliveNanos ?? 1_000_000_000
        for p in pairList {
            // Probed at heartbeat pace while data goes or comes; judged at that pace also while
            // frames are in flight (their acknowledgements are the evidence then, and a slow
            // peer is not sent probes it must answer on top of what it owes).
            let recent = p.lastData != 0 && now &- p.lastData < 2 * tickNanos
            let active = p.isActive(now: now, window: 2 * tickNanos)
            let idle = p.watchedMembers > 0 ? watchedNanos : keepaliveNanos ?? .max
            let interval = active ? tickNanos : idle
            if interval < p.interval { p.judgedFrom = now }  // judged at a faster pace from now on
            p.interval = interval
            p.probeInterval = recent ? tickNanos : idle
            if discount > 0 {
                let heard = max(p.legs.0.lastHeard, p.legs.1.lastHeard, p.excusedUntil)
                p.excusedUntil = min(now &- tickNanos, heard &+ discount)
                p.judgedFrom = max(p.judgedFrom, p.excusedUntil)
            }
            let dead = interval == .max ? UInt64.max : interval &* UInt64(configuration.missedHeartbeats)
            var judge = active || p.wasActive || p.unsettled > 0
                || (p.windowsHeld && now &- p.lastData >= idleAfter)
            if !judge {
                for l in 0..<2 where now &- p.heardForJudging(l) > dead { judge = true }
            }
            p.wasActive = active
            if judge {
                p.unsettled = 0
                p.inFlight = 0
                p.windowsHeld = false
                for id in p.members {
                    guard let c = connections[Int(id)], !c.closing else { continue }
                    switch tick(c, dead: dead) {
                    case .settled: break
                    case .judging: p.unsettled += 1
                    case .inFlight:
                        p.unsettled += 1
                        p.inFlight += 1
                    }
                    if c.windowAllocated { p.windowsHeld = true }
                }
            }
            if p.probeInterval != .max {
                for l in 0..<2 where now &- p.leg(l).lastSent >= p.probeInterval { probe(p, leg: l) }
            }
            next = min(next, interval)
        }
        armTick(after: max(next, tickNanos))
    }

    /// Sends the pair's probe on leg `l`, on the RVI the peer was last heard on (before it is
    /// heard at all, on each RVI of the pair in turn).
    func probe(_ p: PeerPair, leg l: Int) {
        var via = p.probeVia
        if !p.leg(l).heard && !p.members.isEmpty {
            p.probeTurn = (p.probeTurn + 1) % p.members.count
            via = p.members[p.probeTurn]
        }
        guard Int(via) < connections.count, let c = connections[Int(via)], !c.closing else { return }
        sendControl(c, leg: l, probe: now)
        p.withLeg(l) { $0.probes &+= 1 }
    }
}

/// Liveness of the pair of nodes an RVI belongs to (``RCLAN/pairStatistics(of:)``).
public struct PairStatistics: Sendable, Hashable {
    /// RVIs open between the two nodes.
    public var rvis: Int
    /// Whether one of them is ``RVILiveness/watched``.
    public var watched: Bool
    /// Whether the pair carries traffic: frames in flight, or data within two heartbeat
    /// intervals (it is probed at heartbeat pace then).
    public var active: Bool
    /// How often each leg is probed now (nil: never, an idle pair of on-demand RVIs without
    /// keepalive).
    public var probeIntervalMilliseconds: Double?
    /// Probes the pair sent on fabric A and on fabric B.
    public var probes: (a: UInt64, b: UInt64)

    public static func == (l: Self, r: Self) -> Bool {
        l.rvis == r.rvis && l.watched == r.watched && l.active == r.active
            && l.probeIntervalMilliseconds == r.probeIntervalMilliseconds && l.probes == r.probes
    }

    public func hash(into h: inout Hasher) {
        h.combine(rvis)
        h.combine(watched)
        h.combine(active)
        h.combine(probes.a)
        h.combine(probes.b)
    }
}

/// Totals over a layer (``RCLAN/livenessTotals``).
public struct LivenessTotals: Sendable, Hashable {
    /// Pairs of nodes with an RVI open, and those carrying traffic now.
    public var pairs: Int
    public var activePairs = 0
    /// Open RVIs, and those holding their send and receive windows now.
    public var rvis = 0
    public var rvisWithWindows = 0
    /// Probes sent by every pair, on both legs.
    public var probes: UInt64 = 0
    /// Windows idle RVIs gave back, kept for the next RVI that wakes (at most 32); windows
    /// allocated anew so far, and taken from the spares.
    public var spareWindows = 0
    /// Ticks of the layer, those that came more than two heartbeat intervals late (the engine
    /// was slow: that lateness is not counted against any peer), and those after which a socket
    /// had dropped datagrams for want of room (the time since the tick before is not counted).
    public var ticks: UInt64 = 0
    public var ticksLate: UInt64 = 0
    public var ticksOverrun: UInt64 = 0
    public var windowsAllocated: UInt64 = 0
    public var windowsReused: UInt64 = 0

    public init(pairs: Int = 0, activePairs: Int = 0, rvis: Int = 0, rvisWithWindows: Int = 0, probes: UInt64 = 0) {
        self.pairs = pairs
        self.activePairs = activePairs
        self.rvis = rvis
        self.rvisWithWindows = rvisWithWindows
        self.probes = probes
    }
}
