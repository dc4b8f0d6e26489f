import PlexusCore

// RDMA WRITE over an RVI: a write travels in the RVI's sequence like a message (acknowledged,
// retransmitted from the same registered frame, on either leg, through a dead fabric) and lands
// in the peer's region when its turn comes, so that a message sent after it is delivered after
// the bytes are in place. A refusal travels back the same way.

/// Which end refused an RDMA WRITE.
public enum RDMARefuser: Sendable, Hashable {
    /// This end refused a write its peer sent (nothing landed here).
    case here
    /// The peer refused a write this end sent (nothing landed there).
    case peer
}

extension RCLAN {
    /// The most bytes one RDMA WRITE over an RVI carries: a frame's payload less the trailer.
    public static let maxRDMAWrite = FrameLayout.maxPayload - RDMATrailer.size

    // MARK: - Regions

    /// Registers a region of `bytes` in the engine's registered memory that the peers of
    /// `writers` may RDMA WRITE into, over either leg. The right belongs to the RVIs as they
    /// are open now: closed and opened again, an RVI must be granted again.
    public func registerRegion(bytes: Int, writers: [RVI], permissions: RegionPermissions = .remoteWrite)
        throws(PlexusError) -> RegionKey
    {
        try engine.registerRegion(bytes: bytes, writers: writerVIs(writers), permissions: permissions)
    }

    /// Registers `shared` as a region the peers of `writers` may RDMA WRITE into, as
    /// ``registerRegion(bytes:writers:permissions:)`` does, for memory another thread shares
    /// slot by slot (``PlexusCore/SharedSlots``).
    public func registerRegion(shared: SharedSlots, writers: [RVI], permissions: RegionPermissions = .remoteWrite)
        throws(PlexusError) -> RegionKey
    {
        try engine.registerRegion(shared: shared, writers: writerVIs(writers), permissions: permissions)
    }

    /// Both VIs of each of `writers` (open RVIs).
    func writerVIs(_ writers: [RVI]) throws(PlexusError) -> [VI] {
        var vis: [VI] = []
        for rvi in writers {
            guard let c = live(rvi) else { throw PlexusError(.noSuchVI, "registerRegion: \(rvi) is not open") }
            vis.append(c.viA)
            vis.append(c.viB)
        }
        return vis
    }

    /// Removes a region: writes that arrive for it afterwards are refused with ``RDMAError/badKey``.
    public func deregisterRegion(_ key: RegionKey) throws(PlexusError) {
        try engine.deregisterRegion(key)
    }

    // MARK: - Sending

    /// Posts an RDMA WRITE of a whole frame, without copying: its payload (at most
    /// ``maxRDMAWrite`` bytes) lands at `offset` in the peer's region `region`, and the frame
    /// itself is what travels and what is retransmitted. It takes a place in the RVI's sequence
    /// and a message number, as ``send(_:on:)-(Frame?,_)`` does; ``RVIDelegate/acknowledged(on:through:layer:)``
    /// says the peer has taken it in order. If the peer refuses it (bad key, wrong peer, no
    /// permission, out of bounds), nothing lands and
    /// ``RVIDelegate/rdmaWriteRefused(on:region:offset:length:error:by:layer:)`` follows, in the
    /// peer's sequence. On success `frame` is left nil; on an error it still holds the frame.
    /// - Parameter immediate: delivered with the landing to the peer's service
    ///   (``RVIDelegate/rdmaWriteLanded(on:region:offset:length:immediate:layer:)``).
    @discardableResult
    public func rdmaWrite(_ frame: inout Frame?, on rvi: RVI, region: RegionKey, offset: UInt64,
                          immediate: UInt32? = nil) throws(RVISendError) -> UInt64 {
        guard let c = live(rvi) else { throw .noSuchRVI }
        guard !engine.isStopping else { throw .stopping }
        guard var f = frame.take() else { throw .noBuffers }
        let n = f.length
        guard n <= Self.maxRDMAWrite else {
            frame = consume f
            throw .tooLarge
        }
        guard offset <= UInt64.max - UInt64(n) else {
            frame = consume f
            throw .offsetOverflow
        }
        closeOpen(c)
        guard c.hasRoom() else {
            frame = consume f
            throw refuseFull(c)
        }
        let trailer = RDMATrailer(kind: .write, region: region, offset: offset, immediate: immediate, length: UInt32(n))
        f.length = n + RDMATrailer.size
        f.withUnsafeMutablePayload { trailer.store(into: $0, at: n) }
        enqueue(c, f, first: c.nextMessage, messages: 1, coalesced: false, rdma: true)
        c.stats.rdmaWritesOut &+= 1
        c.stats.rdmaBytesOut &+= UInt64(n)
        return numberMessage(c, bytes: n)
    }

    /// Posts an RDMA WRITE of `bytes` (at most ``maxRDMAWrite``), copied into a frame of the
    /// engine's pool; otherwise as ``rdmaWrite(_:on:region:offset:immediate:)-(Frame?,_,_,_,_)``.
    @discardableResult
    public func rdmaWrite(_ bytes: RawSpan, on rvi: RVI, region: RegionKey, offset: UInt64,
                          immediate: UInt32? = nil) throws(RVISendError) -> UInt64 {
        guard live(rvi) != nil else { throw .noSuchRVI }
        let n = bytes.byteCount
        guard n <= Self.maxRDMAWrite else { throw .tooLarge }
        guard engine.pool.available > messageFloor, var f = engine.takeFrame() else { throw .noBuffers }
        f.withUnsafeMutablePayload { dst in
            bytes.withUnsafeBytes { src in
                if n > 0 { dst.baseAddress!.copyMemory(from: src.baseAddress!, byteCount: n) }
            }
        }
        f.length = n
        var frame: Frame? = consume f
        return try rdmaWrite(&frame, on: rvi, region: region, offset: offset, immediate: immediate)
    }

    // MARK: - Receiving

    /// An `rdma` frame's turn has come: land the write (or refuse it and tell the peer), or
    /// hand a refusal of this end's write to the service.
    func deliverRDMA(_ c: Connection, _ frame: borrowing InboundFrame) {
        guard let t = RDMATrailer(parsing: frame.bytes) else {
            c.stats.malformedDropped &+= 1
            return
        }
        switch t.kind {
        case .write:
            let refused = frame.withUnsafeBytes { payload in
                engine.landSequencedWrite(UnsafeRawBufferPointer(rebasing: payload[..<Int(t.length)]),
                                          region: t.region, offset: t.offset, through: frame.vi)
            }
            if let error = refused {
                c.stats.rdmaWritesRefused &+= 1
                var refusal = t
                refusal.kind = .refusal
                refusal.error = error
                refusal.immediate = nil
                if c.pendingRefusals.count < Connection.maxPendingRefusals {
                    c.pendingRefusals.append(refusal)
                    markDirty(c)
                } else {
                    c.stats.rdmaRefusalsUnsent &+= 1
                }
                c.service.rdmaWriteRefused(on: c.rvi, region: t.region, offset: t.offset, length: Int(t.length),
                                           error: error, by: .here, layer: self)
            } else {
                c.stats.rdmaWritesLanded &+= 1
                c.stats.rdmaBytesLanded &+= UInt64(t.length)
                c.service.rdmaWriteLanded(on: c.rvi, region: t.region, offset: t.offset, length: Int(t.length),
                                          immediate: t.immediate, layer: self)
            }
        case .refusal:
            c.stats.rdmaRefusalsReceived &+= 1
            c.service.rdmaWriteRefused(on: c.rvi, region: t.region, offset: t.offset, length: Int(t.length),
                                       error: t.error ?? .badKey, by: .peer, layer: self)
        }
    }

    /// Puts waiting refusals into the send window, as far as it has room and the pool frames
    /// (a refusal is protocol traffic: it may use the frames kept back from messages).
    func queueRefusals(_ c: Connection) {
        var k = 0
        while k < c.pendingRefusals.count && c.hasRoom() && engine.pool.available > controlReserve,
              var f = engine.takeFrame() {
            let t = c.pendingRefusals[k]
            f.length = RDMATrailer.size
            f.withUnsafeMutablePayload { t.store(into: $0, at: 0) }
            enqueue(c, f, first: c.nextMessage, messages: 0, coalesced: false, rdma: true)
            k += 1
        }
        if k > 0 { c.pendingRefusals.removeFirst(k) }
    }
}
