import Foundation
import PlexusCore
import PlexusTestSupport
import Testing

@Suite("Real fabrics: nodes in network namespaces, two bridges, links failed with ip link",
       .serialized,
       .requiresIOUring, .requiresRoot, .requiresTool("ip"))
struct NamespaceTests {
    @Test("frames cross both bridges; pulling node 1's fabric-A cable stops A only; plugging it back restores it")
    func cablePulledAndRestored() throws {
        let h = try FabricHarness(nodes: 2)
        defer { h.teardown() }
        let seen = Observed()
        let one = try EngineThread.start(h.configuration(node: 1))
        let two = try EngineThread.start(h.configuration(node: 2)) { RecordingDriver(seen) }
        defer {
            one.stopAndWait()
            two.stopAndWait()
        }
        for f in Fabric.allCases {
            try one.control.establishAndWait(VI(f, 1), peer: h.address(2, f), remoteVI: 1)
            try two.control.establishAndWait(VI(f, 1), peer: h.address(1, f), remoteVI: 1)
            try two.runAndWait { $0.postReceives(1_000_000, on: VI(f, 1)) }
        }
        func count(_ f: Fabric) -> Int { seen.read { $0.received.filter { $0.vi.fabric == f }.count } }
        func burst(_ f: Fabric, _ n: Int, size: Int) throws {
            for i in 0..<n { try send(one, VI(f, 1), pattern(i, size: size)) }
        }
        /// After a link comes back: one probe at a time, each given 100 ms to arrive, until one does.
        func probeUntilDelivered(_ f: Fabric) throws -> Bool {
            let before = count(f)
            for _ in 0..<100 {
                try burst(f, 1, size: 100)
                if waitUntil(seconds: 0.1, { count(f) > before }) { return true }
            }
            return false
        }

        // Both fabrics carry traffic, including frames segmented to the veth MTU.
        try burst(.a, 50, size: 1000)
        try burst(.b, 50, size: 1000)
        try burst(.a, 5, size: 16896)
        #expect(waitUntil(seconds: 10) { count(.a) == 55 && count(.b) == 50 })

        // Pull node 1's cable to fabric A: A goes quiet, B carries on.
        try h.setCable(node: 1, fabric: .a, up: false)
        try burst(.a, 30, size: 1000)
        try burst(.b, 30, size: 1000)
        #expect(waitUntil(seconds: 10) { count(.b) == 80 })
        // Every send on A has completed at node 1 (the frames are gone from its pool)...
        #expect(waitUntil(seconds: 10) { (try? one.runAndWait { $0.pool.outstanding }) == 0 })
        // ...and none of them reached node 2.
        #expect(count(.a) == 55)

        // Plug it back: A carries traffic again.
        try h.setCable(node: 1, fabric: .a, up: true)
        #expect(try probeUntilDelivered(.a))
        #expect(waitUntil(seconds: 10) { (try? one.runAndWait { $0.pool.outstanding }) == 0 })
        let aBack = count(.a)

        // Fail the whole of fabric B (its bridge): B goes quiet, A carries on; then restore it.
        try h.setFabric(.b, up: false)
        try burst(.b, 20, size: 1000)
        try burst(.a, 20, size: 1000)
        // (At least: a probe still in flight when aBack was read may land late; that is fine.)
        #expect(waitUntil(seconds: 10) { count(.a) >= aBack + 20 })
        #expect(waitUntil(seconds: 10) { (try? one.runAndWait { $0.pool.outstanding }) == 0 })
        #expect(count(.b) == 80)
        try h.setFabric(.b, up: true)
        #expect(try probeUntilDelivered(.b))
        print("namespaces: fabric A lost 30 frames while node 1's cable was out, fabric B lost 20 while its bridge was down; the other fabric delivered every frame both times")
    }
}
