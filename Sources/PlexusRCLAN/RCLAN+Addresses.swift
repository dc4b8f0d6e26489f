import PlexusCore

// A peer's primary and alternate addresses on a fabric (seed 003, claims 21 and 28: the
// message goes to the primary address; when the reply does not come within the timeout, to the
// next address; the primary is used again once it answers).
//
// Each leg of an RVI whose peer has alternates (``RVIPath/alternatesA``) watches whether the
// peer answers at the address it sends to: an echo of one of its probes, a frame it sent newly
// acknowledged, or a control frame in which the peer says it hears the leg. A leg that failed
// (down, or recovering while the peer does not hear it) and has had no answer for the dead-leg
// time, while the peer is heard on the other leg, (``RCLANConfiguration/missedHeartbeats``
// heartbeat intervals) moves the leg to the next address, and the frames it sent and that are
// not acknowledged go again at once (charged to no leg). While on an alternate, every second
// probe of the leg goes to the primary instead; the echo of one of those moves the leg back.

extension RCLAN {
    /// Gives an open RVI its peer's addresses anew (``RVIPath/peerA``, the alternates and the
    /// MTUs of `path`; its VI numbers must be the RVI's): when the peer's entry in the address
    /// book changes. Each leg goes to the new primary; nothing queued or in flight is lost.
    public func setPeers(of rvi: RVI, from path: RVIPath) throws(PlexusError) {
        guard let c = live(rvi) else { throw PlexusError(.noSuchVI, "no open RVI \(rvi.id)") }
        guard path.localA == c.path.localA, path.localB == c.path.localB,
              path.remoteA == c.path.remoteA, path.remoteB == c.path.remoteB
        else { throw PlexusError(.configuration, "setPeers: the path names other VIs than RVI \(rvi.id)'s") }
        try engine.setPeers(c.viA, peers: path.peers(on: .a), mtu: path.mtuA)
        try engine.setPeers(c.viB, peers: path.peers(on: .b), mtu: path.mtuB)
        let key = PeerPair.Key(a: path.peerA, b: path.peerB)
        c.path = path
        if key != c.pair.key {
            // Another primary address: the RVI joins the pair of that address.
            leave(c)
            join(c, pair(for: path))
        }
        for (l, alternates) in [path.alternatesA, path.alternatesB].enumerated() {
            c.legs[l].addressCount = 1 + alternates.count
            c.legs[l].address = 0
            c.legs[l].answeredAt = now
            c.legs[l].addressChangedAt = now
            c.legs[l].primaryProbeStamp = 0
        }
    }

    /// Called each tick for a leg whose peer has more than one address.
    func watchAddresses(_ c: Connection, leg l: Int, dead deadAfter: UInt64) {
        let answered = max(c.legs[l].answeredAt, c.legs[l].progressAt, c.legs[l].addressChangedAt)
        let silence = now &- answered
        // Until the leg has heard the peer at all, the peer may simply not have opened its end.
        let patience = c.legs[l].heard ? deadAfter : max(deadAfter, 250_000_000)
        // The address is to blame when the peer is otherwise heard from (on the other leg), or
        // after four times as long; never right after a stall of this engine, whose own
        // slowness left the answers unread.
        let other = c.pair.leg(1 - l)
        let peerHeard = other.heard && now &- other.lastHeard <= deadAfter
        let usable = c.legs[l].state == .up || c.legs[l].state == .demoted
        // An address just chosen gets four dead-leg times to answer before the next is tried.
        let settled = now &- c.legs[l].addressChangedAt > 4 * deadAfter
        if !usable && settled && !tickAfterStall && silence > patience && (peerHeard || silence > 4 * patience) {
            // The next alternate; after the last, the first again. The primary is never tried
            // this way: it comes back when it answers a probe of its own.
            let next = c.legs[l].address + 1 < c.legs[l].addressCount ? c.legs[l].address + 1 : 1
            if next != c.legs[l].address {
                moveLeg(c, l, to: next)
                legFailed(c, l)
            }
            return
        }
        if c.legs[l].address != 0 && now &- c.legs[l].primaryProbedAt >= 2 * tickNanos {
            // Distinct from the stamp of a probe to the current address sent in the same tick.
            let stamp = now | 1
            c.legs[l].primaryProbeStamp = stamp
            c.legs[l].primaryProbedAt = now
            sendControl(c, leg: l, probe: stamp, peerAddress: 0)
        }
    }

    /// An echo arrived on leg `l` of a leg whose peer has more than one address.
    func echoArrived(_ c: Connection, leg l: Int, stamp: UInt64) {
        if c.legs[l].address != 0 && stamp == c.legs[l].primaryProbeStamp {
            moveLeg(c, l, to: 0)
        } else {
            c.legs[l].answeredAt = now
        }
    }

    func moveLeg(_ c: Connection, _ l: Int, to address: Int) {
        guard address != c.legs[l].address else { return }
        do {
            try engine.retarget(c.vi(l), to: address)
        } catch {
            return
        }
        c.legs[l].address = address
        c.legs[l].addressChangedAt = now
        c.legs[l].answeredAt = now
        c.legs[l].primaryProbeStamp = 0
        c.legs[l].primaryProbedAt = now
        c.legs[l].stats.addressChanges &+= 1
        c.service.event(.peerAddressChanged(l == 0 ? .a : .b, address: address), on: c.rvi, layer: self)
    }
}
