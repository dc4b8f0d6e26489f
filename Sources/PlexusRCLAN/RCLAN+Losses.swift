import PlexusCore
#if canImport(Glibc)
import Glibc
#endif

// Acknowledgements, losses and timers: RACK, timeouts, loss windows, leg state.

extension RCLAN {
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
                _ = c.frames.take(at: i)
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

    /// What a tick left of an RVI to judge.
    enum TickVerdict {
        /// Nothing: legs up, nothing queued, in flight, held or owed.
        case settled
        /// A leg not up, the RVI unusable, or frames held or owed: judged at the pair's pace.
        case judging
        /// Frames sent and not acknowledged: its pair ticks at heartbeat pace (timeouts).
        case inFlight
    }

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

    /// Judges one RVI at a tick of its pair: its legs against the pair's silence (`dead`: the
    /// dead-leg time at the pair's probe interval), its loss window, its timeouts, its
    /// usability. Says what is left to judge at the next tick; an RVI with nothing left that
    /// carried no data for `idleAfter` gives back its windows.
    @discardableResult
    func tick(_ c: Connection, dead: UInt64) -> TickVerdict {
        let events = c.service
        let grace = max(dead, 250_000_000)
        for l in 0..<2 {
            let silence = now &- c.pair.heardForJudging(l)
            switch c.legs[l].state {
            case .up, .demoted:
                if legSilent(c, l, silence: silence, grace: grace, dead: dead) {
                    legWentDown(c, l)
                    if c.closing { return .settled }
                } else if c.legs[l].state == .demoted && now >= c.legs[l].demotedUntil {
                    c.legs[l].demotedByLastWindow = false
                    c.legs[l].windowSent = 0
                    c.legs[l].windowLost = 0
                    c.setLeg(l, .up, now: now)
                    events.event(.legUp(l == 0 ? .a : .b), on: c.rvi, layer: self)
                }
            case .recovering:
                if legSilent(c, l, silence: silence, grace: grace, dead: dead) {
                    c.setLeg(l, .down, now: now)  // fell silent again: the hold-down starts over
                } else if now - c.legs[l].changedAt >= holdDown && (c.legs[l].peerHears || c.pair.leg(l).peerHears) {
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
                // The pair hears the peer on this leg again (on this RVI or another).
                if c.pair.leg(l).heard && now &- c.pair.leg(l).lastHeard <= dead {
                    legHeardAgain(c, l)
                }
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
            if c.legs[l].addressCount > 1 {
                watchAddresses(c, leg: l, dead: dead)
                if c.closing { return .settled }
            }
        }
        if c.closing { return .settled }
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
        if c.nextSeq != c.sendBase || c.openActive { return .inFlight }
        let settled = c.isQuiescent && c.unusableSince == 0 && c.legs[0].state == .up && c.legs[1].state == .up
            && c.legs[0].address == 0 && c.legs[1].address == 0
        guard settled else { return .judging }
        if c.windowAllocated && now &- c.pair.lastData >= idleAfter { c.releaseWindow() }
        return .settled
    }

    /// Whether leg `l` has been silent long enough to be declared down. A leg is down after
    /// `missedHeartbeats` intervals of silence while the other leg went on hearing the peer for
    /// that long after (the fault is this leg's). When both legs are silent the peer itself is slow or gone, and both
    /// are declared down only after four times as long: a busy peer is not a failed fabric.
    @inline(__always)
    func legSilent(_ c: Connection, _ l: Int, silence: UInt64, grace: UInt64, dead: UInt64) -> Bool {
        let p = c.pair
        if !p.leg(l).heard { return silence > grace }
        guard silence > dead else { return false }
        let other = p.leg(1 - l)
        let otherHears = other.heard && other.lastHeard > p.leg(l).lastHeard &+ dead
            && c.legs[1 - l].state != .down
        return otherHears || silence > 4 &* dead
    }

    /// A leg that was up or demoted is down: noted for flap damping, its frames go again on the
    /// other leg, and the application hears of it.
    func legWentDown(_ c: Connection, _ l: Int) {
        c.setLeg(l, .down, now: now)
        unsettle(c)
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
}
