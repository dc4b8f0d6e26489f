import CPlexus
#if canImport(Glibc)
import Glibc
#endif

// MARK: - The receive queue
//
// Each port keeps one multishot recvmsg armed on its provided-buffer ring. A completion names
// the buffer the kernel filled; the frame is decoded and demultiplexed in place, and either
// handed to the driver as an InboundFrame (the buffer returns to the ring when it is dropped)
// or refused, counted, and its buffer returned at once.

extension Engine {
    @inline(__always)
    func onReceive(_ port: Port, res: Int32, flags: UInt32) {
        if flags & plx_IORING_CQE_F_MORE == 0 {
            inflight -= 1
            port.receiveArmed = false
        }
        if res < 0 {
            if res == -ENOBUFS {
                // Every buffer is lent out; the datagram waits in the socket. Re-armed when a
                // buffer comes back (rearmStalledReceives), not now: that would spin.
                port.counters.bufferRingEmpty &+= 1
                return
            }
        } else if flags & plx_IORING_CQE_F_BUFFER != 0 {
            process(port, bufferID: UInt16(truncatingIfNeeded: flags >> plx_IORING_CQE_BUFFER_SHIFT), length: Int(res))
        }
        if !port.receiveArmed && !stopping { armReceive(port) }
    }

    @inline(__always)
    func process(_ port: Port, bufferID bid: UInt16, length: Int) {
        let ring = port.ring
        let buf = ring.buffer(bid)
        guard let out = io_uring_recvmsg_validate(buf, Int32(length), port.msg) else {
            port.counters.datagramsIn &+= 1
            port.counters.truncatedDatagrams &+= 1
            ring.returnBuffer(bid)
            return
        }
        if out.pointee.flags & UInt32(MSG_TRUNC) != 0 || out.pointee.namelen > UInt32(MemoryLayout<sockaddr_in>.size) {
            port.counters.datagramsIn &+= 1
            port.counters.truncatedDatagrams &+= 1
            ring.returnBuffer(bid)
            return
        }
        if out.pointee.controllen > 0 {
            // Control bytes follow the name: the socket's drop count, once it has dropped.
            port.noteControl(UnsafeRawPointer(out) + MemoryLayout<io_uring_recvmsg_out>.size + Int(port.msg.pointee.msg_namelen),
                             length: Int(out.pointee.controllen))
        }
        let size = Int(io_uring_recvmsg_payload_length(out, Int32(length), port.msg))
        let data = UnsafeRawPointer(io_uring_recvmsg_payload(out, port.msg)!)
        let from = UnsafeRawPointer(io_uring_recvmsg_name(out)!).assumingMemoryBound(to: sockaddr_in.self)
        deliver(port, bufferID: bid, data: data, size: size, from: from)
    }

    /// Busy-poll receive: reads up to 32 datagrams straight from the socket (non-blocking
    /// recvmmsg) into receive buffers, then handles them exactly as ring completions. The 32
    /// slots stay armed with buffers between turns; only the ones a datagram used are refilled,
    /// so an idle turn costs one syscall and nothing else.
    @inline(__always)
    func poll(_ port: Port) {
        let ring = port.ring
        let offset = 64  // same place in the buffer as a ring completion's payload (after out, name, control)
        while port.pollArmed < Port.pollBatch && ring.freeCount > 0 {
            let i = port.pollArmed
            let id = ring.takeFree()
            port.pollIDs[i] = id
            port.pollIov[i] = iovec(iov_base: ring.buffer(id) + offset, iov_len: ReceiveRing.stride - offset)
            port.pollMsgs[i].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_in>.size)
            port.pollMsgs[i].msg_hdr.msg_controllen = Int(plx_RECEIVE_CONTROL_SPACE)
            port.pollArmed += 1
        }
        let n = port.pollArmed
        guard n > 0 else { return }
        // While traffic is sparse one recvmsg is cheaper than recvmmsg (about 0.3 µs a call
        // here); once a backlog shows up, recvmmsg takes up to 32 datagrams per syscall.
        let got: Int
        if port.pollBacklog {
            got = Int(max(0, plx_recvmmsg(port.fd, port.pollMsgs, UInt32(n), Int32(MSG_DONTWAIT))))
        } else {
            let r = recvmsg(port.fd, &port.pollMsgs[0].msg_hdr, Int32(MSG_DONTWAIT))
            if r >= 0 { port.pollMsgs[0].msg_len = UInt32(r) }
            got = r >= 0 ? 1 : 0
        }
        port.pollBacklog = got > 1 || (got == 1 && !port.pollBacklog)
        guard got > 0 else { return }
        for i in 0..<got {
            let id = port.pollIDs[i]
            let control = port.pollMsgs[i].msg_hdr.msg_controllen
            if control > 0 {
                port.noteControl(port.pollMsgs[i].msg_hdr.msg_control, length: control)
                port.pollMsgs[i].msg_hdr.msg_controllen = Int(plx_RECEIVE_CONTROL_SPACE)
            }
            if port.pollMsgs[i].msg_hdr.msg_flags & Int32(MSG_TRUNC) != 0 {
                port.counters.datagramsIn &+= 1
                port.counters.truncatedDatagrams &+= 1
                ring.returnBuffer(id)
                continue
            }
            deliver(port, bufferID: id, data: UnsafeRawPointer(ring.buffer(id) + offset),
                    size: Int(port.pollMsgs[i].msg_len), from: port.pollNames + i)
        }
        // Slide the still-armed slots to the front; the used ones are refilled next turn.
        for i in got..<n {
            port.pollIDs[i - got] = port.pollIDs[i]
            port.pollIov[i - got] = port.pollIov[i]
        }
        port.pollArmed = n - got
        for i in 0..<port.pollArmed {
            port.pollMsgs[i].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_in>.size)
            port.pollMsgs[i].msg_hdr.msg_controllen = Int(plx_RECEIVE_CONTROL_SPACE)
        }
    }

    /// Returns the buffers armed for busy-poll receive (shutdown).
    func disarmPoll(_ port: Port) {
        for i in 0..<port.pollArmed { port.ring.returnBuffer(port.pollIDs[i]) }
        port.pollArmed = 0
    }

    /// Decodes, demultiplexes and delivers (or refuses and counts) one datagram held in receive
    /// buffer `bid`.
    @inline(__always)
    func deliver(_ port: Port, bufferID bid: UInt16, data: UnsafeRawPointer, size: Int,
                 from: UnsafePointer<sockaddr_in>) {
        let ring = port.ring
        port.counters.datagramsIn &+= 1
        if let f = port.faults, f.cuts(from) {
            // The leg is down, or this peer is partitioned away: as if it never arrived.
            port.counters.faultDropped &+= 1
            ring.returnBuffer(bid)
            return
        }
        port.counters.wireBytesIn &+= UInt64(size)
        let header: FrameHeader
        switch FrameHeader.decode(from: data, length: size) {
        case .failure(let error):
            port.counters.countMalformed(error)
            ring.returnBuffer(bid)
            return
        case .success(let h):
            header = h
        }
        // Demultiplex: the VI number indexes the port's table (O(1)).
        guard let e = port.entry(header.destinationVI), e.pointee.established else {
            port.counters.unknownVI &+= 1
            ring.returnBuffer(bid)
            return
        }
        // Only the peer the control plane established may use this VI, from one of the
        // addresses it was established with.
        guard header.sourceVI == e.pointee.remoteVI,
              (from.pointee.sin_addr.s_addr == e.pointee.peer.sin_addr.s_addr
                  && from.pointee.sin_port == e.pointee.peer.sin_port)
                  || (e.pointee.alternates && port.peerSets[header.destinationVI]?.index(of: from) != nil)
        else {
            port.counters.wrongPeer &+= 1
            ring.returnBuffer(bid)
            return
        }
        let vi = VI(port.fabric, header.destinationVI)
        let payload = data + FrameLayout.headerSize
        switch header.type {
        case .data:
            if header.flags.contains(.segment) {
                reassemble(port, entry: e, vi: vi, header: header, payload: payload)
                ring.returnBuffer(bid)
                return
            }
            guard e.pointee.posted > 0 else {
                e.pointee.counters.receiveQueueEmptyDrops &+= 1
                port.counters.receiveQueueEmpty &+= 1
                ring.returnBuffer(bid)
                return
            }
            e.pointee.posted -= 1
            e.pointee.counters.framesIn &+= 1
            e.pointee.counters.bytesIn &+= UInt64(header.payloadLength)
            port.counters.framesIn &+= 1
            let frame = InboundFrame(
                owner: ring, token: UInt32(bid), start: payload, count: Int(header.payloadLength), vi: vi,
                fields: ReliabilityFields(header: header))
            if let driver { driver.received(frame, engine: self) }
        case .rdmaWrite:
            land(port, entry: e, vi: vi, header: header, payload: payload)
            ring.returnBuffer(bid)
        case .rdmaNak:
            e.pointee.counters.rdmaProtectionErrors &+= 1
            ring.returnBuffer(bid)
            driver?.rdmaWriteRefused(
                on: vi, error: RDMAError(rawValue: header.immediate) ?? .badKey,
                region: RegionKey(rawValue: header.key), offset: header.remoteOffset, engine: self)
        }
    }

    /// Copies one segment into the message's reassembly slot; delivers when the message is whole.
    func reassemble(_ port: Port, entry e: UnsafeMutablePointer<VIEntry>, vi: VI, header h: FrameHeader,
                    payload: UnsafeRawPointer) {
        port.counters.segmentsIn &+= 1
        let n = configuration.reassemblyContexts
        var found = -1
        var free = -1
        for i in 0..<n {
            let r = reassembly[i]
            if r.inUse {
                if r.fabric == port.fabric.rawValue && r.vi == vi.number { found = i; break }
            } else if free < 0 {
                free = i
            }
        }
        if found >= 0 && reassembly[found].messageID == h.key && reassembly[found].length != Int(h.messageLength) {
            // Segments of one message that disagree on its length: the message cannot be trusted.
            pool.release(reassembly[found].slot)
            reassembly[found].inUse = false
            port.counters.reassemblyDropped &+= 1
            port.counters.malformedBadSegment &+= 1
            return
        }
        if found >= 0 && reassembly[found].messageID != h.key {
            // A newer message began before this one completed: the old one is lost (counted).
            pool.release(reassembly[found].slot)
            reassembly[found].inUse = false
            port.counters.reassemblyDropped &+= 1
            free = found
            found = -1
        }
        if found < 0 {
            guard free >= 0, pool.available > reassemblyReserve, let frame = pool.take() else {
                port.counters.reassemblyDropped &+= 1
                return
            }
            reassembly[free] = Reassembly(
                inUse: true, fabric: port.fabric.rawValue, vi: vi.number, messageID: h.key,
                slot: frame.surrender(), received: 0, length: Int(h.messageLength))
            found = free
        }
        // A segment seen before (a duplicate on the wire) is ignored: counting it twice would
        // deliver a message with holes.
        let offsets = reassemblyOffsets + found * Self.maxSegmentsPerMessage
        let seen = reassembly[found].segments
        for k in 0..<seen where offsets[k] == h.segmentOffset {
            port.counters.duplicateSegments &+= 1
            return
        }
        guard seen < Self.maxSegmentsPerMessage else {
            pool.release(reassembly[found].slot)
            reassembly[found].inUse = false
            port.counters.reassemblyDropped &+= 1
            return
        }
        offsets[seen] = h.segmentOffset
        reassembly[found].segments = seen + 1
        let slot = reassembly[found].slot
        let base = pool.slotPointer(slot) + FrameLayout.headerSize
        (base + Int(h.segmentOffset)).copyMemory(from: payload, byteCount: Int(h.payloadLength))
        reassembly[found].received += Int(h.payloadLength)
        guard reassembly[found].received >= reassembly[found].length else { return }
        reassembly[found].inUse = false
        let length = reassembly[found].length
        guard e.pointee.posted > 0 else {
            e.pointee.counters.receiveQueueEmptyDrops &+= 1
            port.counters.receiveQueueEmpty &+= 1
            pool.release(slot)
            return
        }
        e.pointee.posted -= 1
        e.pointee.counters.framesIn &+= 1
        e.pointee.counters.bytesIn &+= UInt64(length)
        port.counters.framesIn &+= 1
        let frame = InboundFrame(
            owner: port.ring, token: slot | InboundFrame.poolBit, start: base, count: length, vi: vi,
            fields: ReliabilityFields(header: h))
        if let driver { driver.received(frame, engine: self) }
    }

    /// Abandons every partial message (shutdown), so that their pool slots come back.
    func dropAllReassembly() {
        for i in 0..<configuration.reassemblyContexts where reassembly[i].inUse {
            pool.release(reassembly[i].slot)
            reassembly[i].inUse = false
            port(Fabric(rawValue: reassembly[i].fabric)!).counters.reassemblyDropped &+= 1
        }
    }

    /// Abandons partial messages of a VI (teardown).
    func dropReassembly(_ vi: VI) {
        for i in 0..<configuration.reassemblyContexts
        where reassembly[i].inUse && reassembly[i].fabric == vi.fabric.rawValue && reassembly[i].vi == vi.number {
            pool.release(reassembly[i].slot)
            reassembly[i].inUse = false
            port(vi.fabric).counters.reassemblyDropped &+= 1
        }
    }

    /// The region an RDMA WRITE of `length` bytes at `offset` through `vi` may land in, after
    /// checking key, peer, permission and bounds, in that order.
    @inline(__always)
    func writableRegion(_ key: UInt32, offset: UInt64, length: Int, through vi: VI,
                        generation: UInt32) -> Result<Region, RDMAError> {
        guard let r = regions.lookup(key) else { return .failure(.badKey) }
        if !r.admits(vi, generation: generation) { return .failure(.wrongPeer) }
        if !r.permissions.contains(.remoteWrite) { return .failure(.noPermission) }
        if offset > UInt64(r.size) || UInt64(r.size) - offset < UInt64(length) { return .failure(.outOfBounds) }
        return .success(r)
    }

    /// Lands an RDMA WRITE datagram after checking key, peer, permission and bounds, in that
    /// order; a refused write lands nothing and is answered with a NAK.
    func land(_ port: Port, entry e: UnsafeMutablePointer<VIEntry>, vi: VI, header h: FrameHeader,
              payload: UnsafeRawPointer) {
        let error: RDMAError
        switch writableRegion(h.key, offset: h.remoteOffset, length: Int(h.payloadLength), through: vi,
                              generation: e.pointee.generation) {
        case .success(let r):
            (r.memory.base + Int(h.remoteOffset)).copyMemory(from: payload, byteCount: Int(h.payloadLength))
            e.pointee.counters.rdmaWritesLanded &+= 1
            e.pointee.counters.rdmaBytesLanded &+= UInt64(h.payloadLength)
            e.pointee.counters.bytesIn &+= UInt64(h.payloadLength)
            if h.flags.contains(.immediate) {
                guard e.pointee.posted > 0 else {
                    e.pointee.counters.receiveQueueEmptyDrops &+= 1
                    port.counters.receiveQueueEmpty &+= 1
                    return
                }
                e.pointee.posted -= 1
                e.pointee.counters.immediates &+= 1
                driver?.rdmaImmediate(h.immediate, on: vi, region: r.key, offset: h.remoteOffset,
                                      length: Int(h.payloadLength), engine: self)
            }
            return
        case .failure(let refused):
            error = refused
        }
        e.pointee.counters.rdmaRejected &+= 1
        port.counters.rdmaRejected &+= 1
        let nak = FrameHeader(
            type: .rdmaNak, destinationVI: e.pointee.remoteVI, sourceVI: vi.number, payloadLength: 0, key: h.key,
            immediate: error.rawValue, remoteOffset: h.remoteOffset)
        sendControl(nak, port: port, entry: e)
    }
}

extension Engine {
    /// Lands an RDMA WRITE that travelled in an RVI's sequence, when the reliability layer
    /// delivers it in order: the same checks as a raw RDMA WRITE (key, peer, permission, bounds,
    /// in that order, against `vi`'s current establishment), and nothing lands when one fails.
    /// Counted on `vi` like a raw one; no receive is consumed and no NAK is sent (the layer
    /// answers in its own sequence).
    /// - Returns: nil when the bytes landed, or why they were refused.
    package func landSequencedWrite(_ data: UnsafeRawBufferPointer, region key: RegionKey, offset: UInt64,
                                    through vi: VI) -> RDMAError? {
        let port = self.port(vi.fabric)
        guard let e = port.entry(vi.number), e.pointee.established else { return .wrongPeer }
        switch writableRegion(key.rawValue, offset: offset, length: data.count, through: vi,
                              generation: e.pointee.generation) {
        case .success(let r):
            if data.count > 0 { (r.memory.base + Int(offset)).copyMemory(from: data.baseAddress!, byteCount: data.count) }
            e.pointee.counters.rdmaWritesLanded &+= 1
            e.pointee.counters.rdmaBytesLanded &+= UInt64(data.count)
            return nil
        case .failure(let error):
            e.pointee.counters.rdmaRejected &+= 1
            port.counters.rdmaRejected &+= 1
            return error
        }
    }
}
