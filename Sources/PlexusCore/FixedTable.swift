/// A table of `count` plain values (`BitwiseCopyable`: integers, flags, small records), indexed
/// `0 ..< count`: allocated once, never grown, freed when it goes. The engine's and the RCLAN
/// layer's per-slot, per-VI and per-frame bookkeeping lives in these, so that the data path
/// reads and writes it with a bounds check and no allocation.
///
/// Non-copyable: one owner frees the storage, and no copy can outlive it. Like a pointer's
/// pointee, an element is written through a borrow of the table (the subscript's setter is
/// `nonmutating`), so a table held in a `let` of a class is written without an exclusivity check.
/// No pointer into the table is handed out: a table whose addresses the kernel must read is not
/// one of these.
package struct FixedTable<Element: BitwiseCopyable>: ~Copyable {
    @usableFromInline let base: UnsafeMutablePointer<Element>
    /// How many elements the table holds.
    package let count: Int

    /// A table of `count` elements, each `value`. An empty table allocates nothing (a
    /// placeholder costs no memory).
    /// - Complexity: O(`count`).
    @inlinable
    package init(repeating value: Element, count: Int) {
        precondition(count >= 0, "a table of negative size")
        self.count = count
        if count == 0 {
            base = UnsafeMutablePointer(bitPattern: MemoryLayout<Element>.alignment)!
        } else {
            base = .allocate(capacity: count)
            base.initialize(repeating: value, count: count)
        }
    }

    deinit { if count > 0 { base.deallocate() } }

    /// The element at `index` (`0 ..< count`).
    /// - Complexity: O(1).
    @inlinable
    package subscript(_ index: Int) -> Element {
        unsafeAddress {
            precondition(index >= 0 && index < count, "index out of the table")
            return UnsafePointer(base + index)
        }
        nonmutating unsafeMutableAddress {
            precondition(index >= 0 && index < count, "index out of the table")
            return base + index
        }
    }

    /// Sets every element to `value`.
    /// - Complexity: O(`count`).
    @inlinable
    package func fill(with value: Element) {
        base.update(repeating: value, count: count)
    }
}

@available(*, unavailable)
extension FixedTable: Sendable {}
