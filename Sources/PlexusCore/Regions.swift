#if canImport(Glibc)
import Glibc
#endif

/// What a peer may do to a registered region. There is no read: the seed's fabric has no
/// RDMA READ ("Virtual Storage": BUF and TRAN messages exist because of that).
public struct RegionPermissions: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// Peers named at registration may RDMA WRITE into the region.
    public static let remoteWrite = RegionPermissions(rawValue: 1)
}

/// A region of registered memory that named peer VIs may write into by key and offset.
final class Region {
    let key: RegionKey
    let memory: RegisteredMemory
    let size: Int
    /// A VI allowed to write, as it was established when the region was registered.
    struct Writer {
        var vi: VI
        var generation: UInt32
    }
    let writers: [Writer]
    let permissions: RegionPermissions
    /// Block I/O operations in flight into or out of the region: it cannot be deregistered
    /// while any is.
    var blockIOInFlight = 0

    /// Keeps shared memory alive while the region names it.
    let shared: SharedSlots?

    init(key: RegionKey, size: Int, writers: [Writer], permissions: RegionPermissions,
         hugePages: HugePagePolicy, shared: SharedSlots? = nil) throws(PlexusError) {
        self.key = key
        if let shared {
            memory = shared.memory
        } else {
            memory = try RegisteredMemory(size: size, hugePages: hugePages)
        }
        self.size = size
        self.writers = writers
        self.permissions = permissions
        self.shared = shared
    }

    /// Whether `vi`, in its current establishment, may write. A VI torn down and established
    /// again (perhaps to another peer) does not inherit the right.
    @inline(__always)
    func admits(_ vi: VI, generation: UInt32) -> Bool {
        for w in writers where w.vi == vi && w.generation == generation { return true }
        return false
    }
}

@available(*, unavailable)
extension Region: Sendable {}

/// The regions an engine holds, looked up by key in O(1): the low 12 bits of a key index the
/// table and the high 20 bits are random, so a guessed or stale key is refused.
struct RegionTable {
    private var slots: [Region?]

    init(capacity: Int) { slots = Array(repeating: nil, count: capacity) }

    @inline(__always)
    func lookup(_ key: UInt32) -> Region? {
        let i = Int(key & 0xFFF)
        guard i < slots.count, let r = slots[i], r.key.rawValue == key else { return nil }
        return r
    }

    mutating func insert(size: Int, writers: [Region.Writer], permissions: RegionPermissions,
                         hugePages: HugePagePolicy, shared: SharedSlots? = nil) throws(PlexusError) -> RegionKey {
        guard let i = slots.firstIndex(where: { $0 == nil }) else {
            throw PlexusError(.resourceExhausted, "all \(slots.count) region slots are in use")
        }
        var high: UInt32 = 0
        while high == 0 { high = UInt32.random(in: 1..<(1 << 20)) }
        let key = RegionKey(rawValue: high << 12 | UInt32(i))
        slots[i] = try Region(key: key, size: size, writers: writers, permissions: permissions, hugePages: hugePages,
                              shared: shared)
        return key
    }

    mutating func remove(_ key: RegionKey) -> Bool {
        guard lookup(key.rawValue) != nil else { return false }
        slots[Int(key.rawValue & 0xFFF)] = nil
        return true
    }
}
