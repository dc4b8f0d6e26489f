import Foundation
import PlexusCore
import PlexusLAN
import PlexusNamespaces
import PlexusNode
import PlexusRCLAN
import PlexusTestSupport
import Testing

@Suite("A node on another subnet, reached through its entry's gateway", .serialized,
       .requiresIOUring, .requiresRoot, .requiresTool("ip"))
struct GatewayTests {
    @Test("node 3's fabric A sits behind a router: the nodes set host routes through the gateways of the address table, and the virtual LAN crosses on both legs")
    func throughTheRouter() throws {
        let fabric = try NamespaceFabric(nodes: 3)
        defer { fabric.teardown() }
        let router = try fabric.putBehindRouter(node: 3, fabric: .a)
        func ip(_ s: String) -> UInt32 { FabricAddress("\(s):0")!.ip }
        func config(_ n: Int) -> EngineConfiguration {
            var c = fabric.configuration(node: n)
            if n == 3 { c.fabricA = FabricAddress("\(fabric.routedIP(3, .a)):7000")! }
            return c
        }
        func adapters(_ n: Int) -> NodeAdapters {
            NodeAdapters(gatewayA: ip(n == 3 ? router.routed : router.main), installRoutes: true)
        }
        func address(_ n: Int) -> NodeAddress {
            let c = config(n)
            return NodeAddress(node: NodeNumber(UInt32(n)), fabricA: c.fabricA, fabricB: c.fabricB)
        }
        // Before anything runs, node 2 has no way to node 3 on fabric A.
        #expect(fabric.execute(in: 2, ["ip", "route", "get", fabric.routedIP(3, .a)]).status != 0)

        let inbox = Inbox()
        var processing: [ProcessingNode] = []
        var control: ControlNode?
        defer {
            for p in processing { p.stop() }
            control?.stop()
        }
        for n in [2, 3] {
            processing.append(try ProcessingNode.start(node: NodeNumber(UInt32(n)), engine: config(n), tap: false, configure: { eth in
                eth.onFrame = n == 3 ? { nic, f in inbox.record(nic, f) } : { _, _ in }
            }, adapters: adapters(n)))
        }
        let v = VLANID(10)!
        let nics = [2, 3].map { n in VirtualNICBinding(node: NodeNumber(UInt32(n)), mac: MACAddress("02:00:01:00:00:3\(n)")!, vlan: v) }
        let plan = LANPlan(controls: [address(1)], nodes: [address(2), address(3)], nics: nics)
        control = try ControlNode.start(node: 1, index: 0, plan: plan, engine: config(1), adapters: adapters(1))
        for p in processing { try p.register(controls: [address(1)]) }
        let configured = try waitUntil(seconds: 20) {
            try processing.allSatisfy { p in try p.ethernet { eth, _ in eth.registration == .configured } }
        }
        #expect(configured)

        // The routes come from the table: node 2 and the control node reach 198.18.11.3 through
        // the router's near side, node 3 reaches the others through its far side.
        let routed = ip(fabric.routedIP(3, .a))
        #expect(waitUntil(seconds: 20) {
            processing[0].routes?.installed[routed] == ip(router.main)
                && control?.routes?.installed[routed] == ip(router.main)
                && processing[1].routes?.installed[ip(fabric.ip(2, .a))] == ip(router.routed)
        }, "routes: node 2 \(processing[0].routes?.installed ?? [:]) \(processing[0].routes?.failures ?? []), node 3 \(processing[1].routes?.installed ?? [:])")
        let shown = fabric.execute(in: 2, ["ip", "route", "get", fabric.routedIP(3, .a)]).output
        #expect(shown.contains("via \(router.main)"), "\(shown)")

        // Unicast from node 2 to node 3 takes their direct RVI (an idle pair of processing nodes
        // sends nothing, so these frames are what it carries): both legs carry them, and node 2
        // hears node 3's acknowledgements on fabric A, through the router.
        let directA = VI(.a, VINumbering.direct(toward: 3))
        let m2 = nics[0].mac, m3 = nics[1].mac
        for i in 0..<20 {
            let frame = ethernet(m3, m2, Array("direct, through the router \(i)".utf8))
            try processing[0].ethernet { eth, layer in try frame.withUnsafeBytes { try eth.transmit($0, from: m2, layer: layer) } }
        }
        #expect(waitUntil(seconds: 10) { inbox.count == 20 }, "node 3 got \(inbox.count) of 20 unicast frames")
        let heardA = waitUntil(seconds: 20) {
            ((try? processing[0].ethernet { _, layer in layer.engine.counters(directA)?.framesIn ?? 0 }) ?? 0) > 0
        }
        #expect(heardA, "node 2 hears nothing from node 3 on fabric A")
        for i in 0..<20 {
            let frame = ethernet(.broadcast, m2, Array("through the router \(i)".utf8))
            try processing[0].ethernet { eth, layer in try frame.withUnsafeBytes { try eth.transmit($0, from: m2, layer: layer) } }
        }
        #expect(waitUntil(seconds: 10) { inbox.count == 40 }, "node 3 got \(inbox.count - 20) of 20 broadcast frames")
        print("Gateway: node 3 on 198.18.11.0/24 behind a router; routes set from the table: node 2 \(processing[0].routes?.installed.count ?? 0), "
              + "node 3 \(processing[1].routes?.installed.count ?? 0), control node \(control?.routes?.installed.count ?? 0); "
              + "20 of 20 unicast and 20 of 20 broadcast frames crossed; `ip route get` at node 2: \(shown.split(separator: "\n").first ?? "")")
    }
}
