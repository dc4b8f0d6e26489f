#if canImport(Glibc)
import Glibc
#endif

/// The addresses a VI's peer can be reached at on one fabric: its primary adapter first, then
/// its alternates (seed 003: "a primary address and one or more alternate addresses" per node).
///
/// The socket addresses live in memory of their own that never moves, because the kernel reads
/// a send's destination from it when it takes the send, after the call that queued it. One set
/// belongs to one VI number of a port and is kept for that number once made (a later
/// establishment of the number reuses it), so no send queued for an earlier establishment can
/// point at freed memory.
final class PeerAddresses {
    /// The most addresses one VI's peer may have on a fabric.
    static let capacity = 4
    private let storage: UnsafeMutablePointer<sockaddr_in>
    private(set) var count = 0

    init() {
        storage = .allocate(capacity: Self.capacity)
        storage.initialize(repeating: sockaddr_in(), count: Self.capacity)
    }

    deinit { storage.deallocate() }

    /// Replaces the set (at most ``capacity`` addresses; the caller checks).
    func set(_ addresses: [FabricAddress]) {
        precondition(addresses.count <= Self.capacity)
        for (i, a) in addresses.enumerated() { storage[i] = a.sockaddr }
        count = addresses.count
    }

    /// The socket address of entry `index` (`0 ..< count`), valid as long as the set lives.
    func pointer(_ index: Int) -> UnsafeMutableRawPointer {
        precondition(index >= 0 && index < count)
        return UnsafeMutableRawPointer(storage + index)
    }

    func address(_ index: Int) -> FabricAddress {
        precondition(index >= 0 && index < count)
        return FabricAddress(storage[index])
    }

    /// The index of the entry `from` matches, if any.
    @inline(__always)
    func index(of from: UnsafePointer<sockaddr_in>) -> Int? {
        for i in 0..<count
        where storage[i].sin_addr.s_addr == from.pointee.sin_addr.s_addr && storage[i].sin_port == from.pointee.sin_port {
            return i
        }
        return nil
    }
}
