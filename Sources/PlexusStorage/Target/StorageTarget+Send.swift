import PlexusCore
import PlexusRCLAN

// What a storage target posts: BUFs and RDMA WRITEs on the data RVI, STATs on the command
// RVI. Each step that finds the RVI's window full stops where it is and resumes on the next
// turn; nothing is dropped.

extension StorageTarget {
    /// Moves every slot of `session` as far as its RVIs allow, then starts queued CMDs in the
    /// slots that came free.
    func post(_ session: TargetSession, layer: RCLAN) {
        for i in session.slots.indices {
            switch session.slots[i].phase {
            case .sendingBuffers: postBuffers(session, slot: i, layer: layer)
            case .sendingData: postData(session, slot: i, layer: layer)
            case .sendingStatus: postStatus(session, slot: i, layer: layer)
            default: break
            }
        }
        while session.waitingCount > 0, let slot = session.freeSlot(), let c = session.dequeue() {
            start(c, session: session, slot: slot, layer: layer)
            switch session.slots[slot].phase {
            case .sendingBuffers: postBuffers(session, slot: slot, layer: layer)
            case .sendingData: postData(session, slot: slot, layer: layer)
            case .sendingStatus: postStatus(session, slot: slot, layer: layer)
            default: break
            }
        }
    }

    /// A write's BUFs: one per CMD segment, naming consecutive parts of the slot.
    func postBuffers(_ session: TargetSession, slot: Int, layer: RCLAN) {
        let c = session.slots[slot].command
        var at = UInt64(session.staging.offset(ofSlot: slot))
        for k in 0..<session.slots[slot].cursor { at += UInt64(c.segments[k].length) }
        while session.slots[slot].cursor < c.segments.count {
            let k = session.slots[slot].cursor
            let seg = c.segments[k]
            let b = StorageBuffer(sequence: c.sequence, target: c.target, lun: c.lun, index: UInt32(k),
                                  region: Segment(key: session.staging.key, offset: at, length: seg.length))
            guard sendDirect(.buffer(b), on: session.data, layer: layer) else { return }
            at += UInt64(seg.length)
            session.slots[slot].cursor += 1
        }
        session.slots[slot].phase = .awaitingTransfers
        session.slots[slot].transferDeadline = nowNanos() + transferTimeoutNanos
        let all: UInt32 = c.segments.count == 32 ? .max : (UInt32(1) << UInt32(c.segments.count)) - 1
        if session.slots[slot].transferred == all { submit(session, slot: slot, layer: layer) }
    }

    /// Data-in: RDMA WRITEs of at most ``PlexusRCLAN/RCLAN/maxRDMAWrite`` bytes from the slot
    /// into the CMD's segments, in order.
    func postData(_ session: TargetSession, slot: Int, layer: RCLAN) {
        let c = session.slots[slot].command
        let total = session.slots[slot].dataLength
        let base = session.staging.offset(ofSlot: slot)
        while session.slots[slot].cursor < total {
            let done = session.slots[slot].cursor
            // The segment the next byte goes to.
            var start = 0, k = 0
            while k < c.segments.count && start + Int(c.segments[k].length) <= done {
                start += Int(c.segments[k].length)
                k += 1
            }
            guard k < c.segments.count else { break }
            let seg = c.segments[k]
            let within = done - start
            let n = min(RCLAN.maxRDMAWrite, Int(seg.length) - within, total - done)
            guard let src = session.staging.bytes(at: base + done, length: n) else { break }
            let m: UInt64
            do throws(RVISendError) {
                m = try layer.rdmaWrite(UnsafeRawBufferPointer(src).bytes, on: session.data, region: seg.key,
                                        offset: seg.offset + UInt64(within))
            } catch {
                return  // window full or no frame: resume next turn
            }
            counters.rdmaWrites += 1
            session.slots[slot].lastDataMessage = m
            session.slots[slot].cursor = done + n
        }
        if session.slots[slot].lastDataMessage <= session.dataAcknowledged {
            session.slots[slot].phase = .sendingStatus
            postStatus(session, slot: slot, layer: layer)
        } else {
            session.slots[slot].phase = .awaitingAcknowledgement
        }
    }

    /// The STAT, on the command RVI; the slot is free once it is posted.
    func postStatus(_ session: TargetSession, slot: Int, layer: RCLAN) {
        let s = session.slots[slot]
        let r = s.result
        var st = StorageStatus(sequence: s.command.sequence, target: s.command.target, lun: s.command.lun,
                               isControl: s.command.control != nil, scsiStatus: r.status.rawValue,
                               controlResult: s.controlResult)
        let moved = s.command.direction == .dataIn ? s.dataLength : (r.status == .good ? Int(s.command.transferLength) : 0)
        st.residual = UInt32(clamping: max(0, Int(s.command.transferLength) - moved))
        if r.status == .checkCondition, let sense = r.sense { st.sense = sense.fixedBytes }
        guard sendDirect(.status(st), on: session.command, layer: layer) else { return }
        counters.statuses += 1
        endRecording(session, slot: slot, failed: r.status != .good)
        session.slots[slot].phase = .free
    }

    /// Encodes `message` into the scratch buffer and posts it on `rvi`; false when the RVI
    /// cannot take it now (its window is full, no frame, or it is gone).
    func sendDirect(_ message: StorageMessage, on rvi: RVI, layer: RCLAN) -> Bool {
        let n: Int
        do throws(StorageMessageError) {
            n = try message.encode(into: scratch)
        } catch {
            return false
        }
        do throws(RVISendError) {
            try layer.send(UnsafeRawBufferPointer(rebasing: scratch[..<n]).bytes, on: rvi)
        } catch {
            return false
        }
        return true
    }
}
