import PlexusCore
#if canImport(Glibc)
import Glibc
#endif

// The engine's calls: start, each turn, timers, devices, completions and received frames.

extension RCLAN {
    // MARK: - The engine's calls

    public func engineDidStart(_ engine: Engine) {
        self.engine = engine
        viMapA = FixedTable(repeating: 0, count: engine.configuration.maxVIs)
        viMapB = FixedTable(repeating: 0, count: engine.configuration.maxVIs)
        slotOwner = FixedTable(repeating: .max, count: engine.pool.capacity)
        slotSeq = FixedTable(repeating: 0, count: engine.pool.capacity)
        engine.reassemblyReserve = max(engine.reassemblyReserve, controlReserve)
        now = monotonicNanos()
        busyPoll = engine.configuration.pollMode == .busyPoll
        // A sleeping engine needs a ring timer to wake it; a busy-polling one reads the clock
        // every turn instead (a ring timer there costs an io_uring_enter per tick).
        armTick(after: tickNanos)
        started = true
        for s in services { s.layerDidStart(self) }
    }

    public func engineTurn(_ engine: Engine) {
        if busyPoll {
            let t = monotonicNanos()
            if t >= nextTickAt {
                nextTickAt = .max  // the tick arms the next one
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
        // A tick superseded by one armed sooner fires for nothing.
        guard token & 0xFFFF_FF00 == Self.tickTokenBase else { return }
        guard token & 0xFF == tickGeneration & 0xFF else {
            if supersededTicks > 0 { supersededTicks -= 1 }
            return
        }
        tickDue = true
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
        pairs.removeAll()
        pairList.removeAll()
    }

    public func sendCompleted(returning frame: consuming Frame, on vi: VI, result: SendCompletion, engine: Engine) {
        let ps = Int(frame.poolSlot)
        let owner = slotOwner[ps]
        let seq = slotSeq[ps]
        slotOwner[ps] = .max
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
        c.frames.put(frame, at: i)
        if c.records[i].lost { markDirty(c) }
    }

    public func received(_ frame: consuming InboundFrame, engine: Engine) {
        let vi = frame.vi
        let n = Int(vi.number)
        let slot = n < viMapCount ? (vi.fabric == .a ? viMapA[n] : viMapB[n]) : 0
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
        c.pair.probeVia = c.id
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
        c.ensureWindow()
        noteData(c)
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
                guard c.heldSeq[i] == c.cumAck, let h = c.held.take(at: i) else { break }
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
            if frame.occupiesPoolFrame && engine.pool.available <= holdFloor {
                c.stats.outOfOrderShed &+= 1
                return
            }
            c.heldSeq[i] = s
            c.held.put(frame, at: i)
            c.heldCount += 1
            if s > c.highestHeld { c.highestHeld = s }
        }
    }

    /// Hands a frame's message(s) to the delegate, in place.
    func deliver(_ c: Connection, _ frame: borrowing InboundFrame) {
        if frame.fields.flags.contains(.rdma) {
            deliverRDMA(c, frame)
            return
        }
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
}
