@testable import PlexusCore
import Synchronization
import Testing

@Suite("Fixed ring (windows of non-copyable elements)")
struct FixedRingTests {
    /// Counts the `Tracked` values dropped.
    final class Tracker: Sendable {
        let dropped = Atomic<Int>(0)
        var count: Int { dropped.load(ordering: .relaxed) }
    }

    struct Tracked: ~Copyable {
        let value: Int
        let tracker: Tracker
        deinit { tracker.dropped.add(1, ordering: .relaxed) }
    }

    @Test("sequence numbers wrap onto slots by the mask")
    func slots() {
        let r = FixedRing<Tracked>(capacity: 8)
        let (capacity, mask) = (r.capacity, r.mask)
        let slots = [r.slot(of: 1), r.slot(of: 8), r.slot(of: 13), r.slot(of: .max)]
        #expect(capacity == 8 && mask == 7)
        #expect(slots == [1, 0, 5, 7])
    }

    @Test("put moves an element in, take moves it out and leaves the slot empty")
    func putAndTake() {
        let t = Tracker()
        let r = FixedRing<Tracked>(capacity: 4)
        let emptyFirst = !r.isOccupied(2)
        r.put(Tracked(value: 5, tracker: t), at: 2)
        let occupied = r.isOccupied(2)
        #expect(emptyFirst && occupied && t.count == 0)
        guard let e = r.take(at: 2) else {
            Issue.record("the element put in is not there")
            return
        }
        let emptied = !r.isOccupied(2)
        #expect(emptied && t.count == 0, "taken out, not dropped")
        let value = e.value
        #expect(value == 5)
        _ = consume e
        #expect(t.count == 1)
        var none = true
        if r.take(at: 2) != nil { none = false }
        #expect(none)
        r.put(Tracked(value: 6, tracker: t), at: 2)
        var again: Int?
        if let x = r.take(at: 2) { again = x.value }
        #expect(again == 6 && t.count == 2)
    }

    @Test("removeAll drops every element held; the ring drops the rest when it goes")
    func drops() {
        let t = Tracker()
        do {
            let r = FixedRing<Tracked>(capacity: 4)
            for i in 0..<4 { r.put(Tracked(value: i, tracker: t), at: i) }
            r.removeAll()
            let allEmpty = (0..<4).allSatisfy { !r.isOccupied($0) }
            #expect(t.count == 4 && allEmpty)
            r.put(Tracked(value: 9, tracker: t), at: 1)
            r.put(Tracked(value: 9, tracker: t), at: 3)
        }
        #expect(t.count == 6)
    }

    @Test("a frame put in the ring is the ring's: back to the pool when the ring goes")
    func frames() throws {
        let pool = try FramePool(slots: 2, hugePages: .never)
        do {
            let r = FixedRing<Frame>(capacity: 2)
            var f = pool.take()!
            f.setPayload([1, 2, 3])
            r.put(f, at: 0)
            r.put(pool.take()!, at: 1)
            #expect(pool.available == 0)
            var length: Int?
            if let back = r.take(at: 0) {
                length = back.length
                #expect(pool.available == 0)
            }
            #expect(length == 3 && pool.available == 1)
        }
        #expect(pool.available == 2 && pool.outstanding == 0)
    }

    @Test("a full slot filled again, a slot out of the ring, or a capacity not a power of two traps")
    func preconditions() async {
        await #expect(processExitsWith: .failure) {
            let r = FixedRing<Int>(capacity: 4)
            r.put(1, at: 0)
            r.put(2, at: 0)
        }
        await #expect(processExitsWith: .failure) {
            let r = FixedRing<Int>(capacity: 4)
            _ = r.take(at: 4)
        }
        await #expect(processExitsWith: .failure) {
            _ = FixedRing<Int>(capacity: 6)
        }
    }
}
