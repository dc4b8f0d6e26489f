import Foundation
import PlexusCore
import PlexusRCLAN
import Testing

@Suite("Redundant VIs", .serialized)
struct RVITests {
    @Test("messages of 1 to 16896 bytes arrive exactly once and in order, both ways, over both legs")
    func bothWays() throws {
        let pair = try RVIPair(seed: 11)
        try pair.send(20_000, from: pair.one)
        try pair.send(20_000, from: pair.two)
        let done = waitUntil(seconds: 60) {
            pair.streamTwo.read().delivered == 20_000 && pair.streamOne.read().delivered == 20_000
                && pair.streamOne.read().ackedThrough == 20_000 && pair.streamTwo.read().ackedThrough == 20_000
        }
        let r1 = pair.streamOne.read(), r2 = pair.streamTwo.read()
        let s1 = try pair.statistics(pair.one)
        _ = pair.stop()
        print("RVI both ways: seed 11, 2 × 20000 messages checked; delivered \(r2.delivered) and \(r1.delivered), "
              + "corrupt \(r1.corrupt + r2.corrupt), out of order \(r1.outOfOrder + r2.outOfOrder), duplicated "
              + "\(r1.duplicated + r2.duplicated); frames out \(s1.framesOut) for \(s1.messagesOut) messages")
        #expect(done)
        for r in [r1, r2] {
            #expect(r.delivered == 20_000)
            #expect(r.corrupt == 0 && r.outOfOrder == 0 && r.duplicated == 0, "\(r.firstError ?? "")")
            #expect(r.failed.isEmpty)
        }
        // Both legs carried data, and coalescing put several messages in a frame.
        #expect(s1.legs[0].framesOut > 100 && s1.legs[1].framesOut > 100)
        #expect(s1.framesOut < s1.messagesOut)
    }
}
