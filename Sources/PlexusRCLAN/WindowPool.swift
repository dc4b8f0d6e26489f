import PlexusCore

/// Send and receive windows an idle RVI gave back (or empty placeholders, which allocate
/// nothing): moved in and out of a ``Connection`` by `swap`, never copied.
final class SpareWindow {
    @exclusivity(unchecked) var frames = FixedRing<Frame>(capacity: 0)
    @exclusivity(unchecked) var records = FixedTable<SendRecord>(repeating: SendRecord(), count: 0)
    @exclusivity(unchecked) var held = FixedRing<InboundFrame>(capacity: 0)
    @exclusivity(unchecked) var heldSeq = FixedTable<UInt64>(repeating: 0, count: 0)

    /// Exchanges its tables with `c`'s.
    func exchange(with c: Connection) {
        swap(&frames, &c.frames)
        swap(&records, &c.records)
        swap(&held, &c.held)
        swap(&heldSeq, &c.heldSeq)
    }
}

/// The windows of a layer's RVIs that went idle, kept for the next RVI that carries a frame: an
/// idle RVI holds no buffers, and waking one takes a spare window instead of allocating while
/// spares last. At most `capacity` are kept (each about 42 KiB with the default windows); past
/// that, a window given back is freed. Touched only on the engine thread.
final class WindowPool {
    let sendWindow: Int
    let receiveWindow: Int
    let capacity: Int
    /// Shells holding a spare window's tables, and shells holding placeholders (what an RVI gave
    /// in exchange for a spare): `capacity` shells, made with the pool, and room for all of them
    /// in both arrays, so neither taking a window nor giving one back allocates (beyond a new
    /// window when no spare is left).
    @exclusivity(unchecked) var spares: [SpareWindow] = []
    @exclusivity(unchecked) var shells: [SpareWindow] = []
    /// Windows allocated anew, and taken from the spares.
    @exclusivity(unchecked) var allocated: UInt64 = 0
    @exclusivity(unchecked) var reused: UInt64 = 0

    init(sendWindow: Int, receiveWindow: Int, capacity: Int = 32) {
        self.sendWindow = sendWindow
        self.receiveWindow = receiveWindow
        self.capacity = capacity
        spares.reserveCapacity(capacity)
        shells.reserveCapacity(capacity)
        for _ in 0..<capacity { shells.append(SpareWindow()) }
    }

    /// Gives `c` (holding placeholders) a window: a spare one, or a new one.
    func fill(_ c: Connection) {
        if let s = spares.popLast() {
            s.exchange(with: c)
            shells.append(s)
            reused &+= 1
            return
        }
        c.frames = FixedRing(capacity: sendWindow)
        c.records = FixedTable(repeating: SendRecord(), count: sendWindow)
        c.held = FixedRing(capacity: receiveWindow)
        c.heldSeq = FixedTable(repeating: 0, count: receiveWindow)
        allocated &+= 1
    }

    /// Takes `c`'s window back (emptied: no frame in it, every record and sequence cleared),
    /// leaving it placeholders.
    func takeBack(_ c: Connection) {
        guard let s = shells.popLast() else {
            // Every shell holds a spare already: this window is freed.
            c.frames = FixedRing(capacity: 0)
            c.records = FixedTable(repeating: SendRecord(), count: 0)
            c.held = FixedRing(capacity: 0)
            c.heldSeq = FixedTable(repeating: 0, count: 0)
            return
        }
        s.exchange(with: c)
        spares.append(s)
    }
}
