/// A fixed-capacity stack of free record indices (0 ..< capacity): the free list of a table of
/// preallocated records (the engine's segment and GSO send records, its timers). Allocated once,
/// never grows; `pop` and `push` are a load and a store. Non-copyable, so that two owners cannot
/// hand out the same index; it frees its storage when it goes.
struct IndexStack: ~Copyable {
    private let slots: UnsafeMutablePointer<UInt32>
    let capacity: Int
    /// Indices free now.
    private(set) var count: Int

    /// A stack holding every index of `capacity`, lowest on top.
    init(capacity: Int) {
        precondition(capacity >= 0 && capacity <= Int(UInt32.max))
        self.capacity = capacity
        slots = .allocate(capacity: max(capacity, 1))
        for i in 0..<capacity { slots[i] = UInt32(capacity - 1 - i) }
        count = capacity
    }

    deinit { slots.deallocate() }

    var isEmpty: Bool { count == 0 }

    /// Takes a free index, or nil when every index is in use.
    @inline(__always)
    mutating func pop() -> Int? {
        guard count > 0 else { return nil }
        count -= 1
        return Int(slots[count])
    }

    /// Gives back an index taken with ``pop()``.
    @inline(__always)
    mutating func push(_ index: Int) {
        precondition(count < capacity && index >= 0 && index < capacity, "an index given back twice, or not from this stack")
        slots[count] = UInt32(truncatingIfNeeded: index)
        count += 1
    }
}
