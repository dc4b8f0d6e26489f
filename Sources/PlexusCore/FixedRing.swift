/// A ring of `capacity` slots (a power of two), each empty or holding one element, which may be
/// non-copyable (a ``Frame``, an ``InboundFrame``): a window of sequence numbers, the element of
/// sequence `s` in slot `s & mask`. Allocated once, never grown. ``put(_:at:)`` moves an element
/// in (the slot must be empty) and ``take(at:)`` moves it out, so an element has one owner at a
/// time: the ring, or the code that took it. When the ring goes it drops the elements it still
/// holds (a frame goes back to its pool).
///
/// Non-copyable, and, like ``FixedTable``, written through a borrow: a ring in a `let` of a
/// class moves elements in and out without an exclusivity check. No pointer into it is handed out.
package struct FixedRing<Element: ~Copyable>: ~Copyable {
    @usableFromInline let slots: UnsafeMutablePointer<Element?>
    /// How many slots the ring has.
    package let capacity: Int

    /// An empty ring of `capacity` slots, a power of two, or 0: a ring that holds nothing and
    /// allocates nothing (a placeholder; every slot is out of it).
    /// - Complexity: O(`capacity`).
    @inlinable
    package init(capacity: Int) {
        precondition(capacity == 0 || (capacity > 0 && capacity & (capacity - 1) == 0),
                     "a ring's capacity is a power of two, or 0")
        self.capacity = capacity
        if capacity == 0 {
            slots = UnsafeMutablePointer(bitPattern: MemoryLayout<Element?>.alignment)!
        } else {
            slots = .allocate(capacity: capacity)
            for i in 0..<capacity { (slots + i).initialize(to: nil) }
        }
    }

    deinit {
        guard capacity > 0 else { return }
        slots.deinitialize(count: capacity)
        slots.deallocate()
    }

    /// `capacity - 1`: the slot of a sequence number is `sequence & mask`.
    @inlinable
    package var mask: Int { capacity - 1 }

    /// The slot of sequence number `sequence`.
    @inlinable
    package func slot(of sequence: UInt64) -> Int { Int(truncatingIfNeeded: sequence) & mask }

    /// Whether slot `slot` holds an element.
    /// - Complexity: O(1).
    @inlinable
    package func isOccupied(_ slot: Int) -> Bool {
        precondition(slot >= 0 && slot < capacity, "slot out of the ring")
        return slots[slot] != nil
    }

    /// Moves `element` into slot `slot`, which must be empty.
    /// - Complexity: O(1).
    @inlinable
    package func put(_ element: consuming Element, at slot: Int) {
        precondition(slot >= 0 && slot < capacity, "slot out of the ring")
        precondition(slots[slot] == nil, "a slot of the ring filled twice")
        slots[slot] = consume element
    }

    /// Moves the element out of slot `slot`, leaving it empty; nil if it was empty.
    /// - Complexity: O(1).
    @inlinable
    package func take(at slot: Int) -> Element? {
        precondition(slot >= 0 && slot < capacity, "slot out of the ring")
        return slots[slot].take()
    }

    /// Drops every element the ring holds.
    /// - Complexity: O(`capacity`).
    @inlinable
    package func removeAll() {
        for i in 0..<capacity { _ = slots[i].take() }
    }
}

@available(*, unavailable)
extension FixedRing: Sendable where Element: ~Copyable {}
