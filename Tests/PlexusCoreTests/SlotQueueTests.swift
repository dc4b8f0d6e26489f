import Foundation
@testable import PlexusCore
import Synchronization
import Testing

@Suite("Slot queues, doorbells and shared slots (handing memory between two threads)")
struct SlotQueueTests {
    @Test("first in, first out; full at capacity; empty says so; peek leaves the entry")
    func fifo() {
        let q = SlotQueue(capacity: 4)
        #expect(q.isEmpty && q.pop() == nil && q.peek() == nil)
        for v: UInt32 in [7, 3, 9, 1] { #expect(q.push(v)) }
        #expect(!q.push(5), "a fifth entry does not fit")
        #expect(q.count == 4 && q.peek() == 7 && q.count == 4)
        #expect(q.pop() == 7 && q.pop() == 3)
        #expect(q.push(5) && q.push(6))
        var rest: [UInt32] = []
        while let v = q.pop() { rest.append(v) }
        #expect(rest == [9, 1, 5, 6] && q.isEmpty)
    }

    @Test("two threads: a million seeded values cross in order, the consumer sleeping on the doorbell when it is ahead")
    func twoThreads() throws {
        let q = SlotQueue(capacity: 64)
        let bell = try Doorbell()
        let count = 1_000_000
        let seed: UInt64 = 1777
        let received = Atomic<Int>(0), wrong = Atomic<Int>(0)
        let consumer = Thread {
            var g = SplitMix64(seed: seed)
            var n = 0
            while n < count {
                bell.sleep(until: { !q.isEmpty })
                while let v = q.pop() {
                    if v != UInt32(truncatingIfNeeded: g.next()) { wrong.add(1, ordering: .relaxed) }
                    n += 1
                }
            }
            received.store(n, ordering: .releasing)
        }
        consumer.start()
        var g = SplitMix64(seed: seed)
        var full = 0
        for _ in 0..<count {
            let v = UInt32(truncatingIfNeeded: g.next())
            while !q.push(v) { full += 1; sched_yield() }
            bell.ringIfSleeping()
        }
        #expect(waitUntil(seconds: 60) { received.load(ordering: .acquiring) == count })
        print("Slot queue: \(received.load(ordering: .acquiring)) of \(count) values crossed (seed \(seed)), "
              + "\(wrong.load(ordering: .relaxed)) out of order or wrong, producer found the queue full \(full) times")
        #expect(wrong.load(ordering: .relaxed) == 0)
    }

    @Test("a shut doorbell ends a sleep at once, and a reopened one blocks again until rung")
    func shutAndReopen() throws {
        let bell = try Doorbell()
        let woke = Atomic<Int>(0)
        let sleeper = Thread {
            bell.sleep(until: { false })
            woke.add(1, ordering: .releasing)
        }
        sleeper.start()
        bell.shut()
        #expect(waitUntil(seconds: 10) { woke.load(ordering: .acquiring) == 1 })
        bell.reopen()
        #expect(!bell.isShut)
        let flag = Atomic<Bool>(false)
        let second = Thread {
            bell.sleep(until: { flag.load(ordering: .acquiring) })
            woke.add(1, ordering: .releasing)
        }
        second.start()
        flag.store(true, ordering: .releasing)
        bell.ringIfSleeping()
        bell.ring()
        #expect(waitUntil(seconds: 10) { woke.load(ordering: .acquiring) == 2 })
    }

    @Test("shared slots are page-aligned, apart and writable; a bad size is refused naming it")
    func sharedSlots() throws {
        let s = try SharedSlots(count: 3, slotSize: 8192, hugePages: .never)
        #expect(s.size == 3 * 8192 && s.offset(of: 2) == 16384)
        for i in 0..<3 { s.withSlot(i) { $0.initializeMemory(as: UInt8.self, repeating: UInt8(i + 1)) } }
        for i in 0..<3 {
            s.withSlot(i) { raw in
                #expect(Int(bitPattern: raw.baseAddress!) % 4096 == 0 && raw.count == 8192)
                #expect(raw.allSatisfy { $0 == UInt8(i + 1) })
            }
        }
        #expect(throws: PlexusError.self) { try SharedSlots(count: 2, slotSize: 1000) }
    }
}
