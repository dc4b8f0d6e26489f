import PlexusCore
#if canImport(Glibc)
import Glibc
#endif

// Control frames: acknowledgements with SACK blocks, probes and echoes, written and read.

extension RCLAN {
    // MARK: - Control frames
    //
    // Written here, parsed by RVIControlPayload (its layout table is the reference). Payload: u8 kinds (1 probe, 2 echo) · u8 SACK block count · u8 legs the sender hears (bit 0
    // A, bit 1 B: a leg it declared down is clear) · u8 reserved · u32 duplicate data frames it
    // has received (wrapping) · u64 probe stamp · u64 echoed stamp · u32 receive overruns of its
    // socket on fabric A, u32 on fabric B (wrapping) · blocks of (u64 first, u64 end) sequence
    // ranges held above the cumulative ack. The header carries the ack, the credit and both epochs.

    static let controlHeader = RVIControlPayload.headerSize
    static let maxSackBlocks = RVIControlPayload.maxSackBlocks

    /// - Parameter peerAddress: which of the peer's addresses on the leg's fabric the frame goes
    ///   to (nil: the one the leg sends to now).
    func sendControl(_ c: Connection, leg l: Int, probe: UInt64 = 0, echo: UInt64 = 0, peerAddress: Int? = nil) {
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
            if let peerAddress {
                try engine.send(f, on: c.vi(l), fields: fields, toPeerAddress: peerAddress)
            } else {
                try engine.send(f, on: c.vi(l), fields: fields, returnOnCompletion: false)
            }
        } catch {
            return
        }
        c.pair.withLeg(l) { $0.lastSent = now }
        if probe != 0 { c.legs[l].stats.heartbeatsOut &+= 1 }
        c.stats.acksOut &+= 1
        c.ackOwed = false
    }

    func processControl(_ c: Connection, leg l: Int, payload: UnsafeRawBufferPointer) {
        let p = payload.bytes
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
            c.pair.withLeg(k) { $0.peerHears = heard }
            // The peer hears this end's frames on that leg: the address it sends to answers.
            if heard && c.legs[k].addressCount > 1 { c.legs[k].answeredAt = now }
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
            if c.legs[l].addressCount > 1 { echoArrived(c, leg: l, stamp: stamp) }
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
                        _ = c.frames.take(at: i)
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
}
