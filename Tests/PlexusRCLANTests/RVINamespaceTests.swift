import Foundation
import PlexusCore
import PlexusRCLAN
import PlexusTestSupport
import Testing


@Suite("RVIs over real fabrics: namespaces, two bridges, a fabric failed with ip link",
       .serialized,
       .requiresIOUring, .requiresRoot, .requiresTool("ip"))
struct RVINamespaceTests {
    @Test("fabric A's bridge goes down in mid-stream: the RVI moves to B with nothing lost; A rejoins when it returns")
    func bridgeDown() throws {
        let h = try FabricHarness(nodes: 2)
        defer { h.teardown() }
        let seed: UInt64 = 77
        let shape1 = MessageShape(seed: seed), shape2 = MessageShape(seed: seed + 1)
        let s1 = MessageStream(outgoing: shape1, incoming: shape2)
        let s2 = MessageStream(outgoing: shape2, incoming: shape1)
        let one = try EngineThread.start(h.configuration(node: 1)) { RCLAN(delegate: s1) }
        let two = try EngineThread.start(h.configuration(node: 2)) { RCLAN(delegate: s2) }
        defer {
            one.stopAndWait()
            two.stopAndWait()
        }
        for (t, me, peer) in [(one, 1, 2), (two, 2, 1)] {
            let path = RVIPath(localA: 1, localB: 1, peerA: h.address(peer, .a), peerB: h.address(peer, .b),
                               remoteA: 1, remoteB: 1)
            _ = me
            try t.runAndWait { e in
                let layer = RCLAN.on(e)!
                (layer.delegate as! MessageStream).rvi = try layer.open(path)
            }
        }
        let count: UInt64 = 30_000
        try one.runAndWait { e in (RCLAN.on(e)!.delegate as! MessageStream).target = count }
        #expect(waitUntil(seconds: 30) { s2.read().delivered >= count / 3 })
        try h.setFabric(.a, up: false)
        #expect(waitUntil(seconds: 10) { s1.read().events.contains { $0.event == .legDown(.a) } })
        #expect(waitUntil(seconds: 60) { s2.read().delivered == count && s1.read().ackedThrough == count })
        try h.setFabric(.a, up: true)
        #expect(waitUntil(seconds: 10) { s1.read().events.contains { $0.event == .legUp(.a) } })
        // Up at both ends (each decides for itself; a bridge coming back may hiccup once more).
        func legAUp(_ t: EngineThread) -> Bool {
            (try? t.runAndWait { RCLAN.on($0)!.statistics(RVI(id: 0))!.legs[0].state == .up }) ?? false
        }
        #expect(waitUntil(seconds: 10) { legAUp(one) && legAUp(two) })
        // Traffic after the return uses both legs again.
        let before = try one.runAndWait { RCLAN.on($0)!.statistics(RVI(id: 0))!.legs[0].framesOut }
        try one.runAndWait { e in (RCLAN.on(e)!.delegate as! MessageStream).target = count + 5_000 }
        #expect(waitUntil(seconds: 30) { s2.read().delivered == count + 5_000 })
        let stats = try one.runAndWait { RCLAN.on($0)!.statistics(RVI(id: 0))! }
        let r2 = s2.read(), r1 = s1.read()
        print("RVI namespaces: \(r2.delivered) messages (1–16896 B, segmented at MTU 1500) checked across a real bridge "
              + "failure; lost \(count + 5_000 - r2.delivered), duplicated \(r2.duplicated), out of order \(r2.outOfOrder); "
              + "longest delivery gap \(r2.longestGapMs) ms; events \(r1.events.map { "\($0.event)" })")
        #expect(r2.duplicated == 0 && r2.outOfOrder == 0 && r2.corrupt == 0, "\(r2.firstError ?? "")")
        #expect(r1.failed.isEmpty)
        #expect(stats.legs[0].framesOut > before, "leg A: \(stats.legs[0].history)")
    }
}
