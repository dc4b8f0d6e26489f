import Foundation
import PlexusCore
import Testing

@Suite("Engine: VIs on two fabrics in one process", .enabled(if: ioUringAvailable, "io_uring is disabled on this kernel"))
struct EngineTests {
    @Test("frames cross both fabrics, in order, with their bytes intact", arguments: [Fabric.a, .b])
    func sendReceive(fabric: Fabric) throws {
        let pair = try Pair()
        try pair.connect(fabric, 7)
        let sizes = [0, 1, 64, 1500, 9000, FrameLayout.maxPayload]
        for (i, size) in sizes.enumerated() { try send(pair.one, VI(fabric, 7), pattern(i, size: size)) }
        #expect(waitUntil { pair.seen2.read { $0.received.count } == sizes.count })
        let got = pair.seen2.read { $0.received }
        for (i, size) in sizes.enumerated() {
            #expect(got[i].vi == VI(fabric, 7))
            #expect(got[i].bytes == pattern(i, size: size))
        }
        #expect(waitUntil { pair.seen1.read { $0.sent } == sizes.count })
        let c = try pair.two.runAndWait { $0.counters(VI(fabric, 7))! }
        #expect(c.framesIn == UInt64(sizes.count))
        #expect(c.bytesIn == UInt64(sizes.reduce(0, +)))
        let (r1, r2) = pair.stop()
        #expect(r1.leakedFrames == 0 && r2.leakedFrames == 0)
        #expect(r1.leakedReceiveBuffers == 0 && r2.leakedReceiveBuffers == 0)
    }
}
