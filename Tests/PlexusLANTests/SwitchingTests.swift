import Foundation
import PlexusCore
import PlexusLAN
import PlexusRCLAN
import PlexusTestSupport
import Synchronization
import Testing

@Suite("Virtual LAN switching over RVIs (in-process NIC backend)", .serialized, .requiresIOUring)
struct SwitchingTests {
    @Test("broadcast via the server to the VLAN only; unicast direct; relay of last resort; forged frames refused")
    func switching() throws {
        let v10 = VLANID(10)!, v20 = VLANID(20)!
        let m1 = MACAddress("02:00:01:00:00:01")!, m2a = MACAddress("02:00:01:00:00:02")!
        let m2b = MACAddress("02:00:01:00:00:03")!, m3 = MACAddress("02:00:01:00:00:04")!
        let inboxes = [Inbox(), Inbox(), Inbox()]
        let control = try EngineThread.start(.loopback(node: 30)) { RCLAN(delegate: VirtualLANServer()) }
        var nodes: [EngineThread] = []
        for n in 1...3 {
            let inbox = inboxes[n - 1]
            nodes.append(try EngineThread.start(.loopback(node: UInt8(30 + n))) {
                let eth = VirtualEthernet(node: NodeNumber(UInt32(n)))
                eth.onFrame = { nic, f in inbox.record(nic, f) }
                return RCLAN(delegate: eth)
            })
        }
        defer {
            control.stopAndWait()
            for t in nodes { t.stopAndWait() }
        }
        func addr(_ t: EngineThread, _ f: Fabric) -> FabricAddress { FabricAddress(t.info.ports[Int(f.rawValue)].address)! }
        func path(_ local: UInt32, to peer: EngineThread, remote: UInt32) -> RVIPath {
            RVIPath(localA: local, localB: local, peerA: addr(peer, .a), peerB: addr(peer, .b), remoteA: remote, remoteB: remote)
        }
        // The control plane: a management RVI per node (VI n at the control node, VI 1 at the
        // node) and one direct RVI between nodes 1 and 2 (VI 10), which share VLAN 10.
        for n in 1...3 {
            let toNode = path(UInt32(n), to: nodes[n - 1], remote: 1)
            try control.runAndWait { e in
                let layer = RCLAN.on(e)!
                layer.service(VirtualLANServer.self)!.attachNode(NodeNumber(UInt32(n)), rvi: try layer.open(toNode))
            }
            let toControl = path(1, to: control, remote: UInt32(n))
            try nodes[n - 1].runAndWait { e in
                let layer = RCLAN.on(e)!
                layer.service(VirtualEthernet.self)!.addServer(try layer.open(toControl))
            }
        }
        try control.runAndWait { e in
            let server = RCLAN.on(e)!.service(VirtualLANServer.self)!
            try server.table.attach(VirtualNICBinding(node: 1, mac: m1, vlan: v10))
            try server.table.attach(VirtualNICBinding(node: 2, mac: m2a, vlan: v10))
            try server.table.attach(VirtualNICBinding(node: 2, mac: m2b, vlan: v20))
            try server.table.attach(VirtualNICBinding(node: 3, mac: m3, vlan: v20))
        }
        let direct12 = path(10, to: nodes[1], remote: 10), direct21 = path(10, to: nodes[0], remote: 10)
        try nodes[0].runAndWait { e in
            let layer = RCLAN.on(e)!, eth = layer.service(VirtualEthernet.self)!
            eth.addNIC(m1, vlan: v10)
            eth.addDirectPath(to: m2a, rvi: try layer.open(direct12))
        }
        try nodes[1].runAndWait { e in
            let layer = RCLAN.on(e)!, eth = layer.service(VirtualEthernet.self)!
            eth.addNIC(m2a, vlan: v10)
            eth.addNIC(m2b, vlan: v20)
            eth.addDirectPath(to: m1, rvi: try layer.open(direct21))
        }
        try nodes[2].runAndWait { e in RCLAN.on(e)!.service(VirtualEthernet.self)!.addNIC(m3, vlan: v20) }

        func send(_ n: Int, _ frame: [UInt8], from nic: MACAddress) throws {
            try nodes[n - 1].runAndWait { e in
                let layer = RCLAN.on(e)!
                try frame.withUnsafeBytes { try layer.service(VirtualEthernet.self)!.transmit($0, from: nic, layer: layer) }
            }
        }

        // 1. A broadcast from node 1 on VLAN 10 reaches node 2's VLAN-10 NIC, and nobody else.
        try send(1, ethernet(.broadcast, m1, Array("who has".utf8)), from: m1)
        #expect(waitUntil { inboxes[1].count == 1 })
        // 2. Unicast node 1 → node 2 goes over the direct RVI.
        try send(1, ethernet(m2a, m1, Array("direct".utf8)), from: m1)
        #expect(waitUntil { inboxes[1].count == 2 })
        // 3. Node 3 → node 2's VLAN-20 NIC: no direct RVI, so through the server.
        try send(3, ethernet(m2b, m3, Array("relayed".utf8)), from: m3)
        #expect(waitUntil { inboxes[1].count == 3 })
        let got = inboxes[1].frames.withLock { $0 }
        #expect(got.map(\.nic) == [m2a, m2a, m2b])
        #expect(got.map { String(decoding: $0.payload, as: UTF8.self) } == ["who has", "direct", "relayed"])
        let (direct, viaServer) = try nodes[0].runAndWait { e in
            let eth = RCLAN.on(e)!.service(VirtualEthernet.self)!
            return (eth.sentDirect, eth.sentToServers)
        }
        #expect(direct == 1 && viaServer == 1)

        // 4. Relay of last resort: the direct RVI is gone, the frame still arrives, via the server.
        try nodes[0].runAndWait { e in RCLAN.on(e)!.close(RVI(id: 1)) }
        try send(1, ethernet(m2a, m1, Array("fallback".utf8)), from: m1)
        #expect(waitUntil { inboxes[1].count == 4 })
        let fallbacks = try nodes[0].runAndWait { e in RCLAN.on(e)!.service(VirtualEthernet.self)!.relayedFallbacks }
        #expect(fallbacks == 1)

        // 5. Isolation: node 3 (VLAN 20 only) forges frames into VLAN 10: the server refuses them.
        func forge(vlan: VLANID, src: MACAddress, dst: MACAddress) throws {
            let frame = ethernet(dst, src, Array("forged".utf8))
            try nodes[2].runAndWait { e in
                let layer = RCLAN.on(e)!
                let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 256, alignment: 8)
                defer { out.deallocate() }
                let n = frame.withUnsafeBytes { LANMessage.encode(vlan: vlan, relayed: false, frame: $0, into: out) }
                _ = try layer.send(UnsafeRawBufferPointer(rebasing: out[0..<n]).bytes,
                                   on: layer.service(VirtualEthernet.self)!.servers[0])
            }
        }
        try forge(vlan: v10, src: m3, dst: .broadcast)   // not a member of VLAN 10
        try forge(vlan: v10, src: m1, dst: m2a)          // node 1's MAC, sent by node 3
        try forge(vlan: v20, src: m1, dst: m2b)          // a VLAN-10 MAC claimed on VLAN 20
        let refusals = { try control.runAndWait { e in RCLAN.on(e)!.service(VirtualLANServer.self)!.table.refusals } }
        #expect(waitUntil { ((try? refusals()) ?? [:]).values.reduce(0, +) == 3 })
        let r = try refusals()
        print("virtual LAN switching: refusals \(r.map { "\($0.key.rawValue) \($0.value)" }.sorted())")
        #expect(r[.notMember] == 1 && r[.forgedSource] == 2)
        #expect(inboxes[0].count == 0 && inboxes[2].count == 0)
        #expect(inboxes[1].count == 4)
    }
}
