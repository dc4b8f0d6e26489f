import PlexusCore

/// One region of registered memory a storage message names: the key a peer writes into it by
/// (``PlexusCore/RegionKey``), a byte offset in the region and a length.
///
/// In a CMD, the processor's memory the data comes from or goes to; in a BUF, the control
/// node's buffer the processor RDMA-WRITEs one segment into (seed 004, "Control node-side
/// Storage Logic").
public struct Segment: Sendable, Hashable, CustomStringConvertible {
    public var key: RegionKey
    public var offset: UInt64
    public var length: UInt32

    public init(key: RegionKey, offset: UInt64, length: UInt32) {
        self.key = key
        self.offset = offset
        self.length = length
    }

    public var description: String { "\(key)+\(offset):\(length)" }
}

/// A scatter-gather list of at most ``capacity`` segments, held inline (no allocation): the
/// regions of a CMD's data, in transfer order.
public struct SegmentList: Sendable, Hashable, RandomAccessCollection, CustomStringConvertible {
    /// The most segments one CMD carries.
    public static let capacity = 32

    @usableFromInline var storage = InlineArray<32, Segment>(
        repeating: Segment(key: RegionKey(rawValue: 0), offset: 0, length: 0))
    @usableFromInline var used = 0

    /// An empty list.
    public init() {}

    /// `segments`, or nil when there are more than ``capacity``.
    public init?(_ segments: some Sequence<Segment>) {
        // Built in a local and assigned last: Swift 6.3.1 at -O loses the appends when this
        // failable initializer calls the mutating `append` on `self` (the list came out empty).
        var list = SegmentList()
        for s in segments {
            guard list.append(s) else { return nil }
        }
        self = list
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { used }

    public subscript(i: Int) -> Segment {
        precondition(i >= 0 && i < used, "segment index out of range")
        return storage[i]
    }

    /// Appends `segment`; false (and nothing changes) when the list is full.
    @discardableResult
    public mutating func append(_ segment: Segment) -> Bool {
        guard used < Self.capacity else { return false }
        storage[used] = segment
        used += 1
        return true
    }

    /// The sum of the segments' lengths (64 bits: 32 segments of 4 GiB do not overflow it).
    public var totalLength: UInt64 {
        var t: UInt64 = 0
        for i in 0..<used { t += UInt64(storage[i].length) }
        return t
    }

    public static func == (a: Self, b: Self) -> Bool {
        guard a.used == b.used else { return false }
        for i in 0..<a.used where a.storage[i] != b.storage[i] { return false }
        return true
    }

    public func hash(into h: inout Hasher) {
        h.combine(used)
        for i in 0..<used { h.combine(storage[i]) }
    }

    public var description: String { "[" + map(\.description).joined(separator: ", ") + "]" }
}
