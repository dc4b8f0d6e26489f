import Foundation
import PlexusCore
import PlexusNamespaces
import PlexusRCLAN
import PlexusTestSupport
import Testing

@Suite("A node's alternate adapter, in network namespaces", .serialized,
       .requiresIOUring, .requiresRoot, .requiresTool("ip"))
struct AlternateAdapterTests {
    @Test("the primary address removed with `ip addr del` mid-stream: the peer moves to the alternate, and back when it returns; nothing lost")
    func primaryRemoved() throws {
        let count: UInt64 = 40_000
        let seed: UInt64 = 1414
        let fabric = try NamespaceFabric(nodes: 2)
        defer { fabric.teardown() }
        try fabric.addAlternateAdapter(node: 1, fabric: .a)
        // Node 1 listens on every address of its namespace on fabric A (port 7001), so that it
        // is reached at either adapter; node 2 knows both, the primary first.
        var c1 = fabric.configuration(node: 1)
        c1.fabricA = FabricAddress(0, 0, 0, 0, port: 7001)
        // The namespace harness's 256-frame pools: two ends streaming at full windows both ways,
        // with frames held out of order and reassembled in pool frames (RCLAN keeps frames back
        // from sending and holding so that the next frame in order is always received).
        let c2 = fabric.configuration(node: 2)
        let primary = fabric.address(1, .a, port: 7001)
        let alternate = FabricAddress("\(fabric.alternateIP(1, .a)):7001")!
        // Messages up to 4 KiB, and an RVI that never gives up: on a loaded 2-core machine a debug
        // build can leave both legs silent past the default `failAfter` (2 s), and the point here
        // is where the leg sends, not how long the layer waits.
        let s1 = MessageShape(seed: seed, maximumSize: 4096), s2 = MessageShape(seed: seed &+ 1, maximumSize: 4096)
        let d1 = MessageStream(outgoing: s1, incoming: s2), d2 = MessageStream(outgoing: s2, incoming: s1)
        var layer = RCLANConfiguration()
        layer.failAfter = .seconds(60)
        let settings = layer
        let one = try EngineThread.start(c1) { try! RCLAN(configuration: settings, delegate: d1) }
        let two = try EngineThread.start(c2) { try! RCLAN(configuration: settings, delegate: d2) }
        defer {
            _ = one.stopAndWait()
            _ = two.stopAndWait()
        }
        let toTwo = RVIPath(localA: 1, localB: 1, peerA: fabric.address(2, .a), peerB: fabric.address(2, .b),
                            remoteA: 1, remoteB: 1)
        let toOne = RVIPath(localA: 1, localB: 1, peerA: primary, peerB: fabric.address(1, .b),
                            remoteA: 1, remoteB: 1, alternatesA: [alternate])
        try one.runAndWait { e in d1.rvi = try RCLAN.on(e)!.open(toTwo) }
        try two.runAndWait { e in d2.rvi = try RCLAN.on(e)!.open(toOne) }
        func current() -> FabricAddress? { try? two.runAndWait { e in e.peerAddresses(VI(.a, 1))?.current } }
        func legA() -> RVIStatistics.Leg? { try? two.runAndWait { e in RCLAN.on(e)!.statistics(RVI(id: 0))!.legs[0] } }

        try one.runAndWait { _ in d1.target = count }
        try two.runAndWait { _ in d2.target = count }
        let started = waitUntil(seconds: 30) { d1.read().delivered > count / 4 && current() == primary }
        #expect(started)

        // The primary adapter loses its address, mid-stream.
        let ns = fabric.namespace(1)
        try NamespaceFabric.run(["ip", "-n", ns, "addr", "del", "\(fabric.ip(1, .a))/24", "dev", fabric.adapter(1, .a)])
        #expect(waitUntil(seconds: 10) { current() == alternate }, "node 2's leg A did not move to the alternate")
        let before = try one.runAndWait { $0.counters(.a).framesIn }
        #expect(waitUntil(seconds: 10) {
            guard let s = legA(), let inA = try? one.runAndWait({ $0.counters(.a).framesIn }) else { return false }
            return (s.state == .up || s.state == .demoted) && inA > before + 100 && current() == alternate
        }, "leg A is not usable on the alternate address")

        // The address comes back: the leg returns to the primary.
        try NamespaceFabric.run(["ip", "-n", ns, "addr", "add", "\(fabric.ip(1, .a))/24", "dev", fabric.adapter(1, .a)])
        #expect(waitUntil(seconds: 10) { current() == primary }, "node 2's leg A did not go back to the primary")

        let done = waitUntil(seconds: 90) {
            d1.read().delivered == count && d2.read().delivered == count && d2.read().ackedThrough == count
        }
        let r1 = d1.read(), r2 = d2.read()
        let changes = r2.events.compactMap { e -> String? in
            if case .peerAddressChanged = e.event { "\(Int(e.ms)) ms \(e.event)" } else { nil }
        }
        print("Alternate adapter in namespaces: seed \(seed), 2 × \(count) messages checked; delivered \(r1.delivered) "
              + "and \(r2.delivered), lost none; node 2's leg A: \(changes)")
        #expect(done)
        expectClean(r1, count, "node 1 receiving")
        expectClean(r2, count, "node 2 receiving")
    }
}
