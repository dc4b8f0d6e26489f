/// Frames gathered for one scatter-gather RDMA WRITE (up to 16), in order.
public struct GatherList: ~Copyable {
    public static let capacity = 16
    @usableFromInline unowned(unsafe) let pool: FramePool
    @usableFromInline var slots = InlineArray<16, UInt32>(repeating: 0)
    @usableFromInline var lengths = InlineArray<16, Int>(repeating: 0)
    @usableFromInline var head = 0
    @usableFromInline var tail = 0

    init(pool: FramePool) { self.pool = pool }

    /// Frames in the list.
    public var count: Int { tail - head }

    /// Payload bytes of all the frames in the list.
    public var totalLength: Int {
        var n = 0
        for i in head..<tail { n += lengths[i] }
        return n
    }

    /// Adds a frame at the end. Returns false (and releases nothing: the frame is dropped back
    /// to the pool) when the list is full.
    @discardableResult
    public mutating func append(_ frame: consuming Frame) -> Bool {
        precondition(frame.pool === pool, "GatherList.append: the frame comes from another engine's pool")
        guard tail < Self.capacity else { return false }
        lengths[tail] = frame.length
        slots[tail] = frame.surrender()
        tail += 1
        return true
    }

    mutating func removeFirst() -> Frame {
        precondition(head < tail)
        var f = Frame(pool: pool, slot: slots[head])
        f.length = lengths[head]
        head += 1
        return f
    }

    deinit {
        for i in head..<tail { pool.release(slots[i]) }
    }
}

@available(*, unavailable)
extension GatherList: Sendable {}

extension Engine {
    /// An empty gather list for ``rdmaWrite(_:on:region:offset:immediate:)-(GatherList,_,_,_,_)``.
    public func makeGatherList() -> GatherList { GatherList(pool: pool) }
}
