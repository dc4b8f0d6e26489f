@testable import PlexusCore
import PlexusTestSupport
import Testing

@Suite("Frame pool and registered memory")
struct FramePoolTests {
    @Test("frames come back when dropped; an empty pool says so instead of allocating")
    func takeAndRelease() throws {
        let pool = try FramePool(slots: 4, hugePages: .never)
        #expect(pool.available == 4)
        do {
            var frames: [Int] = []
            var a = pool.take()!
            a.setPayload([1, 2, 3])
            let b = pool.take()!
            let c = pool.take()!
            let d = pool.take()!
            #expect(pool.outstanding == 4)
            let none = pool.take()
            let wasNil = none == nil
            #expect(wasNil)
            #expect(pool.emptyTakes == 1)
            frames.append(a.length)
            _ = consume a
            #expect(pool.available == 1)
            _ = consume b
            _ = consume c
            _ = consume d
            #expect(frames == [3])
        }
        #expect(pool.outstanding == 0)
    }

    @Test("a frame's payload is 16896 bytes of page-aligned registered memory, written in place")
    func payloadInPlace() throws {
        let pool = try FramePool(slots: 2)
        #expect(Int(bitPattern: pool.memory.base) % 4096 == 0)
        #expect(pool.memory.size >= 2 * FramePool.slotStride)
        var f = pool.take()!
        #expect(f.capacity == 16896)
        f.withUnsafeMutablePayload { buf in
            #expect(buf.count == 16896)
            buf[0] = 0xAA
            buf[16895] = 0xBB
        }
        f.length = 16896
        f.withUnsafePayload { buf in
            #expect(buf.first == 0xAA && buf.last == 0xBB)
        }
        var span = f.mutablePayload
        span.storeBytes(of: 0x42, toByteOffset: 1, as: UInt8.self)
        f.withUnsafePayload { #expect($0[1] == 0x42) }
    }

    @Test("memory reports how it was placed")
    func backing() throws {
        let m = try RegisteredMemory(size: 4 << 20, hugePages: .ifAvailable)
        #expect([RegisteredMemory.Backing.hugetlb, .transparentHugePages, .pages].contains(m.backing))
        let plain = try RegisteredMemory(size: 10, hugePages: .never)
        #expect(plain.backing == .pages)
        #expect(plain.size == 4096)
        #expect(throws: PlexusError.self) { try RegisteredMemory(size: 0) }
        #expect(throws: PlexusError.self) { try FramePool(slots: 0) }
    }
}
