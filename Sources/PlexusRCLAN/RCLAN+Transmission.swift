import PlexusCore
#if canImport(Glibc)
import Glibc
#endif

// Legs and transmission: which leg a frame takes, sending and retransmitting.

extension RCLAN {
    // MARK: - Legs

    func heard(_ c: Connection, _ l: Int, bytes: Int) {
        c.legs[l].lastHeard = now
        c.legs[l].heard = true
        c.pair.withLeg(l) {
            $0.lastHeard = now
            $0.heard = true
        }
        c.legs[l].stats.framesIn &+= 1
        c.legs[l].stats.bytesIn &+= UInt64(bytes)
        if c.legs[l].state == .down { legHeardAgain(c, l) }
    }

    /// A leg that was down hears the peer again: it recovers (a hold-down before it carries
    /// traffic) while the other leg works, or is up at once when it is the only path.
    func legHeardAgain(_ c: Connection, _ l: Int) {
        unsettle(c)
        let other = c.legs[1 - l].state
        if other == .up || other == .demoted {
            c.setLeg(l, .recovering, now: now)  // hold-down before balancing resumes
        } else {
            // The only path there is: no balancing to damp, so use it at once.
            c.setLeg(l, .up, now: now)
            c.service.event(.legUp(l == 0 ? .a : .b), on: c.rvi, layer: self)
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
        guard let frame = c.frames.take(at: i) else { return }
        let l = pickLeg(c, avoiding: retransmission ? Int(c.records[i].leg) : nil)
        let vi = c.vi(l)
        let seq = c.records[i].sequence
        let bytes = frame.length
        let ps = Int(frame.poolSlot)
        slotOwner[ps] = UInt64(c.id) << 32 | UInt64(c.generation)
        slotSeq[ps] = seq
        var flags: FrameFlags = .sequenced
        if c.records[i].coalesced { flags.insert(.coalesced) }
        if c.records[i].rdma { flags.insert(.rdma) }
        let fields = ReliabilityFields(
            sequence: seq, acknowledgement: c.cumAck, epoch: c.epoch, credit: UInt32(c.credit),
            peerEpoch: c.peerEpoch, flags: flags)
        do {
            try engine.send(frame, on: vi, fields: fields, returnOnCompletion: true)
        } catch {
            // Only when the VI was torn down under the RVI or the engine is stopping; the frame
            // is gone, so the connection cannot keep its order: start over.
            slotOwner[ps] = .max
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
        c.pair.withLeg(l) { $0.lastSent = now }
        noteData(c)
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
        if !c.pendingRefusals.isEmpty { queueRefusals(c) }
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
}
