/// Registered memory in equal slots, shared between the engine (as a region peers may RDMA
/// WRITE into, registered through the RCLAN layer's `registerRegion(shared:writers:permissions:)`) and another thread that
/// fills and drains the slots: an NBD connection reads a write's payload from its socket
/// straight into a slot, and the engine RDMA-WRITEs it from there; a read's data lands in a
/// slot and the connection sends it from there. No copy between the two.
///
/// Each slot has one owner at a time, the engine or the other thread, handed over through a
/// ``SlotQueue`` (whose push and pop order the bytes); only the owner touches it, and only
/// inside ``withSlot(_:_:)``. The memory lives as long as this object, which the engine's
/// region also holds, so it outlives every closure that touches it.
public final class SharedSlots: @unchecked Sendable {
    let memory: RegisteredMemory
    /// Bytes in one slot (a multiple of 4096).
    public let slotSize: Int
    /// Slots in the memory.
    public let count: Int

    /// `count` slots of `slotSize` bytes (a positive multiple of 4096), page-aligned.
    public init(count: Int, slotSize: Int, hugePages: HugePagePolicy = .ifAvailable) throws(PlexusError) {
        guard count > 0, slotSize > 0, slotSize % 4096 == 0 else {
            throw PlexusError(.configuration, "shared slots need a positive count and a slot size that is a multiple of 4096")
        }
        self.slotSize = slotSize
        self.count = count
        memory = try RegisteredMemory(size: count * slotSize, hugePages: hugePages)
    }

    /// The byte offset of slot `i` in the region.
    public func offset(of i: Int) -> UInt64 { UInt64(i * slotSize) }

    /// Bytes in the memory.
    public var size: Int { count * slotSize }

    /// Runs `body` on slot `i`'s bytes, for the thread that owns the slot now.
    public func withSlot<R, E: Error>(_ i: Int, _ body: (UnsafeMutableRawBufferPointer) throws(E) -> R) throws(E) -> R {
        precondition(i >= 0 && i < count, "slot \(i) of \(count)")
        return try body(UnsafeMutableRawBufferPointer(start: memory.base + i * slotSize, count: slotSize))
    }
}
