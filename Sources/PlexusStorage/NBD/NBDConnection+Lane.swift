#if canImport(Glibc)
import Glibc
#endif

/// Transmission to a disk of a processor's storage map: the connection's thread reads
/// requests and hands each, in slots of its ``DiskLane``, to the engine, without waiting for
/// the answer; a second thread writes the replies as the engine completes them, in the order
/// they complete. Up to the lane's depth slots are in flight; a request larger than a slot
/// takes several (each its own SCSI command) and is answered when the last completes. A
/// write's payload is read from the socket straight into its slots, and a read's reply is sent
/// straight from them.
extension NBDConnection {
    func transmission(export: NBDExport, lane: DiskLane) {
        let writer: pthread_t
        do throws(SocketIO.Failure) {
            writer = try startThread { [self] in replies(lane: lane) }
        } catch {
            lane.release()
            return
        }
        let header = UnsafeMutableRawBufferPointer.allocate(byteCount: NBDProtocol.requestSize, alignment: 8)
        requests(export: export, lane: lane, header: header)
        // Every slot back (or the engine gone), then the writer may end.
        lane.drain()
        lane.completedBell.shut()
        pthread_join(writer, nil)
        header.deallocate()
        // A lane whose engine stopped keeps slots that never came back: it is not reused.
        if !lane.dead.load(ordering: .acquiring) {
            lane.completedBell.reopen()
            lane.release()
        }
    }

    /// Reads requests until NBD_CMD_DISC, a malformed request, the end of the connection, or
    /// the engine stopping.
    func requests(export: NBDExport, lane: DiskLane, header: UnsafeMutableRawBufferPointer) {
        let slotSize = lane.shared.slotSize
        do throws(SocketIO.Failure) {
            while true {
                try SocketIO.read(fd, header.baseAddress!, NBDProtocol.requestSize)
                guard let request = NBDRequest(parsing: UnsafeRawBufferPointer(header).bytes) else {
                    statistics.add(.malformed)
                    return
                }
                statistics.add(.requests)
                var r = DiskRequest(handle: request.handle, offset: request.offset, length: request.length)
                switch request.plan(on: export, maxPayload: server.maxPayload) {
                case .disconnect:
                    return
                case .refuse(let error):
                    guard let s = lane.takeFreeSlot() else { return }
                    if request.hasPayload {
                        try lane.shared.withSlot(lane.sharedSlot(s)) { raw throws(SocketIO.Failure) in
                            try SocketIO.discard(fd, Int(request.length), scratch: raw.baseAddress!, scratchSize: raw.count)
                        }
                    }
                    r.error = error
                    submit(r, slot: s, lane: lane)
                case .flush:
                    statistics.add(.flushes)
                    guard let s = lane.takeFreeSlot() else { return }
                    r.kind = .flush
                    submit(r, slot: s, lane: lane)
                case .trim:
                    statistics.add(.trims)
                    guard try trim(request, lane: lane) else { return }
                case .read, .write:
                    let writing = request.type == NBDProtocol.cmdWrite
                    statistics.add(writing ? .writes : .reads)
                    r.kind = writing ? .write : .read
                    if case .write(let fua) = request.plan(on: export, maxPayload: server.maxPayload) { r.fua = fua }
                    let length = Int(request.length)
                    let parts = max(1, (length + slotSize - 1) / slotSize)
                    r.parts = UInt16(parts)
                    // Each part is submitted once its slot is filled; the next part's slot is
                    // taken first, so the link is in place before the engine sees the part.
                    guard var s = lane.takeFreeSlot() else { return }
                    r.first = UInt16(s)
                    for k in 0..<parts {
                        let next = k + 1 < parts ? lane.takeFreeSlot() : nil
                        if k + 1 < parts && next == nil { return }
                        var part = r
                        part.offset = request.offset + UInt64(k * slotSize)
                        part.length = UInt32(min(slotSize, length - k * slotSize))
                        part.next = next.map { Int16($0) } ?? -1
                        if writing {
                            try lane.shared.withSlot(lane.sharedSlot(s)) { raw throws(SocketIO.Failure) in
                                try SocketIO.read(fd, raw.baseAddress!, Int(part.length))
                            }
                        }
                        submit(part, slot: s, lane: lane)
                        if let next { s = next }
                    }
                }
            }
        } catch {
            // The client went away, or the writer shut the socket after a failed send.
        }
    }

    /// Sends a TRIM as UNMAPs of at most ``VirtualDiskExporter/maxTrimBytes`` each, one slot
    /// per part holding its parameter list (one descriptor); a TRIM needing more parts than the
    /// lane has slots is refused with EINVAL. False when the connection must end.
    func trim(_ request: NBDRequest, lane: DiskLane) throws(SocketIO.Failure) -> Bool {
        let blockSize = UInt64(max(1, lane.blockSize))
        let chunk = VirtualDiskExporter.maxTrimBytes
        let length = Int(request.length)
        let parts = max(1, (length + chunk - 1) / chunk)
        var r = DiskRequest(handle: request.handle, offset: request.offset, length: request.length)
        guard parts <= lane.depth else {
            guard let s = lane.takeFreeSlot() else { return false }
            r.error = NBDProtocol.errInvalid
            submit(r, slot: s, lane: lane)
            return true
        }
        r.kind = .trim
        r.parts = UInt16(parts)
        guard var s = lane.takeFreeSlot() else { return false }
        r.first = UInt16(s)
        for k in 0..<parts {
            let next = k + 1 < parts ? lane.takeFreeSlot() : nil
            if k + 1 < parts && next == nil { return false }
            var part = r
            part.offset = request.offset + UInt64(k * chunk)
            part.length = UInt32(min(chunk, length - k * chunk))
            part.next = next.map { Int16($0) } ?? -1
            let lba = part.offset / blockSize, blocks = UInt32(UInt64(part.length) / blockSize)
            lane.shared.withSlot(lane.sharedSlot(s)) { raw in
                var list = raw.mutableBytes
                _ = UnmapParameterList.encode(CollectionOfOne((lba: lba, blocks: blocks)), into: &list)
            }
            submit(part, slot: s, lane: lane)
            if let next { s = next }
        }
        return true
    }

    /// Hands slot `s` with request (part) `r` to the engine.
    func submit(_ r: DiskRequest, slot s: Int, lane: DiskLane) {
        lane.requests[s] = r
        if r.parts == 1 { lane.requests[s].first = UInt16(s) }
        lane.submit(s)
    }

    /// The writer thread: a reply per completed request (when its last part completes), then
    /// its slots go back to the reader. After a failed send it only recycles slots (the
    /// reader's next read fails too).
    func replies(lane: DiskLane) {
        let header = UnsafeMutableRawBufferPointer.allocate(byteCount: NBDProtocol.replySize, alignment: 8)
        defer { header.deallocate() }
        while true {
            lane.completedBell.sleep(until: { !lane.completed.isEmpty })
            guard let s32 = lane.completed.pop() else {
                if lane.completedBell.isShut { return }
                continue
            }
            let part = lane.requests[Int(s32)]
            let first = Int(part.first)
            lane.partsDone[first] += 1
            if part.error != 0 && lane.partsError[first] == 0 { lane.partsError[first] = part.error }
            guard lane.partsDone[first] == part.parts else { continue }
            let error = lane.partsError[first]
            lane.partsDone[first] = 0
            lane.partsError[first] = 0
            let r = lane.requests[first]
            if !lane.sendFailed.load(ordering: .relaxed) {
                reply(r, error: error, first: first, lane: lane, header: header)
            }
            var s = first
            while true {
                let next = Int(lane.requests[s].next)
                lane.free.push(UInt32(s))
                guard next >= 0 else { break }
                s = next
            }
            lane.freeBell.ringIfSleeping()
        }
    }

    /// Sends the reply of request `r` (first slot `first`): the header, and a read's data from
    /// each of its slots in turn.
    func reply(_ r: DiskRequest, error: UInt32, first: Int, lane: DiskLane, header: UnsafeMutableRawBufferPointer) {
        if error != 0 { statistics.add(.errorReplies) }
        writeReplyHeader(r.handle, error: error, header)
        do throws(SocketIO.Failure) {
            let head = UnsafeRawBufferPointer(header)
            guard r.kind == .read && error == 0 else {
                try SocketIO.write(fd, head)
                if r.kind == .write && error == 0 { statistics.add(.bytesWritten, UInt64(r.length)) }
                return
            }
            var s = first
            var withHeader = true
            while s >= 0 {
                let part = lane.requests[s]
                try lane.shared.withSlot(lane.sharedSlot(s)) { raw throws(SocketIO.Failure) in
                    let data = UnsafeRawBufferPointer(rebasing: raw[0..<Int(part.length)])
                    if withHeader { try SocketIO.write(fd, head, data) } else { try SocketIO.write(fd, data) }
                }
                withHeader = false
                s = Int(part.next)
            }
            statistics.add(.bytesRead, UInt64(r.length))
        } catch {
            lane.sendFailed.store(true, ordering: .relaxed)
            shutdown(fd, Int32(SHUT_RDWR))
        }
    }
}
