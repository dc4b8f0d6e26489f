import Synchronization

/// A bounded queue of slot numbers from one producer thread to one consumer thread, without
/// locks: how two threads hand each other slots of memory they share (an NBD connection and the
/// engine, a slot of a ``SharedSlots``). What the producer wrote into a slot before
/// ``push(_:)`` is visible to the consumer after the ``pop()`` that returns it.
///
/// Exactly one thread pushes and exactly one pops; that is the caller's contract, as with a
/// ring's two ends. Allocated once; neither end allocates or locks.
package final class SlotQueue: @unchecked Sendable {
    private let storage: UnsafeMutablePointer<UInt32>
    /// Slots the queue holds at most (a power of two).
    package let capacity: Int
    private let mask: Int
    /// The next position to pop (written by the consumer).
    private let head = Atomic<Int>(0)
    /// The next position to push (written by the producer).
    private let tail = Atomic<Int>(0)

    /// An empty queue of `capacity` entries, a power of two.
    package init(capacity: Int) {
        precondition(capacity > 0 && capacity & (capacity - 1) == 0, "a queue's capacity is a power of two")
        self.capacity = capacity
        mask = capacity - 1
        storage = .allocate(capacity: capacity)
        storage.initialize(repeating: 0, count: capacity)
    }

    deinit { storage.deallocate() }

    /// Appends `value`; false when the queue is full. Producer only.
    @discardableResult
    package func push(_ value: UInt32) -> Bool {
        let t = tail.load(ordering: .relaxed)
        guard t - head.load(ordering: .acquiring) < capacity else { return false }
        storage[t & mask] = value
        // Sequentially consistent: a consumer that announced it sleeps (``Doorbell``) either sees
        // this entry or is seen sleeping by the producer's check that follows.
        tail.store(t + 1, ordering: .sequentiallyConsistent)
        return true
    }

    /// The oldest entry, removed; nil when the queue is empty. Consumer only.
    package func pop() -> UInt32? {
        let h = head.load(ordering: .relaxed)
        guard h != tail.load(ordering: .sequentiallyConsistent) else { return nil }
        let v = storage[h & mask]
        head.store(h + 1, ordering: .releasing)
        return v
    }

    /// The oldest entry, left in place; nil when the queue is empty. Consumer only.
    package func peek() -> UInt32? {
        let h = head.load(ordering: .relaxed)
        guard h != tail.load(ordering: .sequentiallyConsistent) else { return nil }
        return storage[h & mask]
    }

    /// Entries in the queue (exact from either end for its own side's changes).
    package var count: Int { tail.load(ordering: .sequentiallyConsistent) - head.load(ordering: .acquiring) }

    /// Whether the queue holds nothing.
    package var isEmpty: Bool { count == 0 }
}
