import CPlexus
#if canImport(Glibc)
import Glibc
#endif

// MARK: - The send queue
//
// A send writes the header in front of the payload, in the frame's own slot, and queues one
// SQE; the turn's single io_uring_submit hands every queued send to the kernel at once. The
// slot returns to the pool only when the kernel's completion (and, for a zero-copy send, its
// notification) has arrived.

extension Engine {
    /// Sends a frame's ``Frame/length`` payload bytes on `vi` to its peer VI.
    ///
    /// The frame is consumed: from here the kernel owns it, and its slot comes back to the pool
    /// when the send completes (``EngineDriver/sendCompleted(on:result:engine:)``). A frame whose
    /// datagram would exceed the port's path MTU is segmented here, never by IP.
    /// - Throws: ``SendError`` when the VI is not established or the engine is stopping; the
    ///   frame then goes back to the pool and nothing was sent.
    /// - Complexity: O(1) (O(segments) for frames above the path MTU). Never allocates.
    public func send(_ frame: consuming Frame, on vi: VI) throws(SendError) {
        try send(frame, on: vi, fields: ReliabilityFields(), returnOnCompletion: false)
    }

    /// Sends a frame with the reliability layer's header fields set, and optionally gets the
    /// frame back when the kernel is done with it.
    ///
    /// With `returnOnCompletion`, the slot does not go back to the pool. The frame is handed
    /// back, payload intact, to ``EngineDriver/sendCompleted(returning:on:result:engine:)``. A
    /// reliability layer keeps it there until the peer acknowledges it, and retransmits it by
    /// sending the same frame again: no copy, and ownership stays in the type system throughout.
    public func send(_ frame: consuming Frame, on vi: VI, fields: ReliabilityFields,
                     returnOnCompletion: Bool) throws(SendError) {
        try send(frame, on: vi, fields: fields, returnOnCompletion: returnOnCompletion, peerAddress: nil)
    }

    /// Sends a frame to one of the addresses of `vi`'s peer (``peerAddresses(_:)``, 0 the
    /// primary) rather than to the one its sends go to now: how the reliable layer probes a
    /// primary address it has moved away from, to learn when it answers again.
    public func send(_ frame: consuming Frame, on vi: VI, fields: ReliabilityFields, toPeerAddress index: Int) throws(SendError) {
        try send(frame, on: vi, fields: fields, returnOnCompletion: false, peerAddress: index)
    }

    func send(_ frame: consuming Frame, on vi: VI, fields: ReliabilityFields, returnOnCompletion: Bool,
              peerAddress index: Int?) throws(SendError) {
        if stopping { throw .stopping }
        let port = self.port(vi.fabric)
        guard let e = port.entry(vi.number), e.pointee.established else { throw .notEstablished }
        var destination: UnsafeMutableRawPointer? = nil
        if let index {
            if e.pointee.alternates, let set = port.peerSets[vi.number], index >= 0, index < set.count {
                destination = set.pointer(index)
            } else if index != 0 {
                throw .noSuchPeerAddress
            }
        }
        precondition(frame.pool === pool, "send: the frame comes from another engine's pool")
        if !fields.flags.isEmpty
            && (!fields.flags.contains(.sequenced) || fields.flags.isSuperset(of: [.coalesced, .control])
                || (fields.flags.contains(.rdma) && !fields.flags.isDisjoint(with: [.coalesced, .control])))
        {
            throw .invalidFlags
        }
        let length = frame.length
        let slot = frame.surrender()
        e.pointee.counters.framesOut &+= 1
        e.pointee.counters.bytesOut &+= UInt64(length)
        port.counters.framesOut &+= 1
        let header = FrameHeader(
            type: .data, flags: fields.flags.intersection(.reliability), destinationVI: e.pointee.remoteVI,
            sourceVI: vi.number, epoch: fields.epoch, payloadLength: UInt32(length), sequence: fields.sequence,
            acknowledgement: fields.acknowledgement, immediate: fields.credit,
            remoteOffset: UInt64(fields.peerEpoch) << 32)
        transmit(slot: slot, header: header, port: port, entry: e, vi: vi, to: destination)
        if returnOnCompletion {
            pool.meta[Int(slot)].returnToSender = true
            pool.meta[Int(slot)].payloadLength = UInt32(length)
        }
    }

    /// Emulated RDMA WRITE: the frame's payload lands at `offset` in the peer's region `key`,
    /// with no receive consumed at the target unless `immediate` is given, in which case the
    /// last datagram completes a receive there carrying the 32-bit value.
    ///
    /// The target checks key, peer, permission and bounds before a byte lands; a refused write
    /// lands nothing and comes back as ``EngineDriver/rdmaWriteRefused(on:error:region:offset:engine:)``.
    public func rdmaWrite(_ frame: consuming Frame, on vi: VI, region key: RegionKey, offset: UInt64,
                          immediate: UInt32? = nil) throws(SendError) {
        if stopping { throw .stopping }
        let port = self.port(vi.fabric)
        guard let e = port.entry(vi.number), e.pointee.established else { throw .notEstablished }
        precondition(frame.pool === pool, "rdmaWrite: the frame comes from another engine's pool")
        let length = frame.length
        guard offset <= UInt64.max - UInt64(length) else { throw .offsetOverflow }
        let slot = frame.surrender()
        e.pointee.counters.framesOut &+= 1
        e.pointee.counters.bytesOut &+= UInt64(length)
        port.counters.framesOut &+= 1
        let header = FrameHeader(
            type: .rdmaWrite, flags: immediate == nil ? [] : .immediate, destinationVI: e.pointee.remoteVI,
            sourceVI: vi.number, payloadLength: UInt32(length), key: key.rawValue, immediate: immediate ?? 0,
            remoteOffset: offset)
        transmit(slot: slot, header: header, port: port, entry: e, vi: vi)
    }

    /// Scatter-gather RDMA WRITE: the frames of `list`, in order, land back to back from
    /// `offset` in the peer's region; `immediate`, if given, rides on the very last datagram.
    public func rdmaWrite(_ list: consuming GatherList, on vi: VI, region key: RegionKey, offset: UInt64,
                          immediate: UInt32? = nil) throws(SendError) {
        if stopping { throw .stopping }
        guard isEstablished(vi) else { throw .notEstablished }
        guard list.count > 0 else { throw .emptyGather }
        guard offset <= UInt64.max - UInt64(list.totalLength) else { throw .offsetOverflow }
        var at = offset
        let n = list.count
        for i in 0..<n {
            let frame = list.removeFirst()
            let length = UInt64(frame.length)
            try rdmaWrite(frame, on: vi, region: key, offset: at, immediate: i == n - 1 ? immediate : nil)
            at += length
        }
    }

    /// Hands one frame whose header fields are filled in to the fault layer, if the port has
    /// one, or straight to the send queue.
    @inline(__always)
    func transmit(slot: UInt32, header: FrameHeader, port: Port, entry e: UnsafeMutablePointer<VIEntry>, vi: VI,
                  to destination: UnsafeMutableRawPointer? = nil) {
        pool.meta[Int(slot)] = FramePool.SlotMeta(vi: vi.number, fabric: vi.fabric.rawValue)
        let to = destination ?? UnsafeMutableRawPointer(e)
        if let faults = port.faults {
            injectFaults(faults, slot: slot, header: header, port: port, entry: e, to: to)
            return
        }
        transmitNow(slot: slot, header: header, port: port, entry: e, to: to)
    }

    /// Queues the datagram(s) of one frame for `destination`: the socket address of the entry's
    /// peer (the entry itself, whose first field it is) or of one of its alternates. Every
    /// operation that will read the slot adds one to its `pendingOps`; the slot returns to the
    /// pool when the last one completes.
    @inline(__always)
    func transmitNow(slot: UInt32, header: FrameHeader, port: Port, entry e: UnsafeMutablePointer<VIEntry>,
                     to destination: UnsafeMutableRawPointer) {
        let p = pool.slotPointer(slot)
        let total = Int(header.payloadLength)
        let addr = UnsafeRawPointer(destination).assumingMemoryBound(to: sockaddr.self)
        let maxDatagram = Int(e.pointee.maxDatagram)
        if FrameLayout.headerSize + total <= maxDatagram {
            header.encode(into: p)
            let bytes = FrameLayout.headerSize + total
            pool.meta[Int(slot)].wireBytes = UInt32(bytes)
            if configuration.pollMode == .busyPoll && !port.directBlocked {
                // Busy-poll: queue for this turn's sendmmsg (see flushDirectSends). A full batch
                // overflows to the ring rather than flushing here: completions never run inside
                // a driver's own call to send.
                if port.pendingSends < Port.sendBatch {
                    let i = port.pendingSends
                    port.sendIov[i] = iovec(iov_base: p, iov_len: bytes)
                    port.sendMsgs[i].msg_hdr.msg_name = destination
                    port.sendSlots[i] = slot
                    port.pendingSends += 1
                    pool.meta[Int(slot)].pendingOps += 1
                    port.counters.datagramsOut &+= 1
                    port.counters.wireBytesOut &+= UInt64(bytes)
                    return
                }
            }
            if !zeroCopyActive && port.gsoAvailable && configuration.pollMode == .blocking {
                // Queued for this turn's GSO grouping (flushBatched), before the submission.
                let i = port.batchCount
                port.batchSlot[i] = slot
                port.batchBytes[i] = bytes
                port.batchPeer[i] = destination
                port.batchCount += 1
                pool.meta[Int(slot)].pendingOps += 1
                port.counters.datagramsOut &+= 1
                port.counters.wireBytesOut &+= UInt64(bytes)
                return
            }
            keepOrder(port)
            let sqe = nextSQE()
            if zeroCopyActive {
                if fixedBuffers {
                    io_uring_prep_send_zc_fixed(sqe, port.fd, p, bytes, 0, plx_IORING_SEND_ZC_REPORT_USAGE, 0)
                } else {
                    io_uring_prep_send_zc(sqe, port.fd, p, bytes, 0, plx_IORING_SEND_ZC_REPORT_USAGE)
                }
                io_uring_sqe_set_data64(sqe, Self.data(.sendZC, UInt64(slot)))
                port.counters.zeroCopySends &+= 1
            } else {
                io_uring_prep_send(sqe, port.fd, p, bytes, 0)
                io_uring_sqe_set_data64(sqe, Self.data(.send, UInt64(slot)))
            }
            io_uring_prep_send_set_addr(sqe, addr, UInt16(MemoryLayout<sockaddr_in>.size))
            pool.meta[Int(slot)].pendingOps += 1
            inflight += 1
            port.counters.datagramsOut &+= 1
            port.counters.wireBytesOut &+= UInt64(bytes)
            return
        }
        // Segmentation: one sendmsg per segment, each [own header | slice of the payload].
        keepOrder(port)
        let chunk = maxDatagram - FrameLayout.headerSize
        let messageID = nextMessageID
        nextMessageID &+= 1
        var off = 0
        var count: UInt16 = 0
        while off < total {
            let len = min(chunk, total - off)
            // Sized so that this cannot run out.
            guard let i = segFree.pop() else { preconditionFailure("segment records exhausted") }
            var h = header
            h.payloadLength = UInt32(len)
            if header.type == .data {
                h.flags.insert(.segment)
                h.key = messageID
                h.messageLength = UInt32(total)
                h.segmentOffset = UInt32(off)
            } else {
                h.remoteOffset = header.remoteOffset + UInt64(off)
                h.messageLength = UInt32(len)
                if off + len < total { h.flags.remove(.immediate) }
            }
            let hp = segHeaders + i * FrameLayout.headerSize
            h.encode(into: hp)
            segIov[2 * i] = iovec(iov_base: hp, iov_len: FrameLayout.headerSize)
            segIov[2 * i + 1] = iovec(iov_base: p + FrameLayout.headerSize + off, iov_len: len)
            segMsg[i].msg_name = destination
            segMsg[i].msg_namelen = socklen_t(MemoryLayout<sockaddr_in>.size)
            segMsg[i].msg_iov = segIov + 2 * i
            segMsg[i].msg_iovlen = 2
            segSlot[i] = slot
            let sqe = nextSQE()
            io_uring_prep_sendmsg(sqe, port.fd, segMsg + i, 0)
            io_uring_sqe_set_data64(sqe, Self.data(.segment, UInt64(i)))
            inflight += 1
            port.counters.datagramsOut &+= 1
            port.counters.segmentsOut &+= 1
            port.counters.wireBytesOut &+= UInt64(FrameLayout.headerSize + len)
            off += len
            count += 1
        }
        pool.meta[Int(slot)].pendingOps += count
    }

    /// About to put a frame on the ring directly: frames this turn queued for a batch go first,
    /// and (busy-poll) the turn's later frames follow this one onto the ring, so a VI's frames
    /// leave in the order they were sent.
    @inline(__always)
    func keepOrder(_ port: Port) {
        if port.batchCount > 0 { flushBatched(port) }
        if configuration.pollMode == .busyPoll { port.directBlocked = true }
    }

    /// Sends a header-only frame that is not the driver's (an RDMA NAK). Best effort: with no
    /// free frame it is not sent, and the refusal is still counted at this end.
    func sendControl(_ header: FrameHeader, port: Port, entry e: UnsafeMutablePointer<VIEntry>) {
        guard !stopping, let frame = pool.take() else { return }
        keepOrder(port)
        let slot = frame.surrender()
        let p = pool.slotPointer(slot)
        header.encode(into: p)
        pool.meta[Int(slot)] = FramePool.SlotMeta(vi: header.sourceVI, fabric: port.fabric.rawValue)
        let sqe = nextSQE()
        io_uring_prep_send(sqe, port.fd, p, FrameLayout.headerSize, 0)
        io_uring_prep_send_set_addr(sqe, UnsafeRawPointer(e).assumingMemoryBound(to: sockaddr.self),
                                    UInt16(MemoryLayout<sockaddr_in>.size))
        io_uring_sqe_set_data64(sqe, Self.data(.internalSend, UInt64(slot)))
        inflight += 1
        port.counters.datagramsOut &+= 1
        port.counters.wireBytesOut &+= UInt64(FrameLayout.headerSize)
    }
}
