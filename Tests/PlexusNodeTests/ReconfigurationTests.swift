import Foundation
import PlexusCore
import PlexusLAN
import PlexusNamespaces
import PlexusNode
import PlexusRCLAN
import PlexusTestSupport
import Testing

@Suite("Changing a running platform: control nodes adopt a new plan revision", .serialized,
       .requiresIOUring)
struct ReconfigurationTests {
    @Test("NICs attached and detached, a personality given to a spare, one migrated by hand and its old node released, stale and unswitchable plans turned away, a plan older than a failover deferred")
    func adoptRevisions() throws {
        let v10 = VLANID(10)!, v20 = VLANID(20)!
        var d = PlatformDefinition(controlNodes: [71, 72], processingNodes: [73, 74, 75, 76], vlans: [v10: [73, 74]])
        d.spares = [75, 76]
        let state = macStateFile()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let p = try LANPlatform(d, macState: state)
        defer { p.stop() }
        let inbox = Inbox()
        for n: NodeNumber in [73, 74, 75, 76] { try p.ethernet(n) { eth in eth.onFrame = { nic, f in inbox.record(nic, f) } } }
        let m73 = p.mac(node: 73, vlan: v10)!, m74 = p.mac(node: 74, vlan: v10)!
        func adopted(_ r: [PlanAdoption]) -> Bool { r.count == 2 && r.allSatisfy { if case .adopted = $0 { true } else { false } } }

        // Revision 1: node 74 gets a NIC on VLAN 20 and spare 75 a personality there.
        var r1 = d
        r1.vlans = [v10: [73, 74], v20: [74, 75]]
        r1.spares = [76]
        r1.revision = 1
        #expect(adopted(try p.adopt(r1, macs: p.plan.nics)))
        let m74b = p.mac(node: 74, vlan: v20)!, m75 = p.mac(node: 75, vlan: v20)!
        #expect(waitUntil { (try? p.ethernet(75) { $0.registration == .configured && $0.nics == [m75: v20] }) ?? false })
        #expect(waitUntil { (try? p.ethernet(74) { $0.nics == [m74: v10, m74b: v20] && $0.peerRVI[75] != nil }) ?? false })
        #expect(try p.ethernet(74) { $0.conflictingConfigurations } == 0)
        try transmit(p, from: 75, ethernet(m74b, m75, [1]), nic: m75)
        #expect(waitUntil { inbox.frames.withLock { f in f.contains { $0.nic == m74b && $0.payload == [1] } } })
        for k in 0..<2 { #expect(try p.server(k) { $0.table.nics[m75]?.node == 75 && $0.plan?.revision == 1 }) }

        // Revision 2: node 73's personality migrated by hand to spare 76 (same MAC); node 73
        // goes back to the pool; node 74's NIC on VLAN 20 is detached.
        var r2 = r1
        r2.vlans = [v10: [74, 76], v20: [75]]
        r2.spares = [73]
        r2.revision = 2
        let moved = p.plan.nics.filter { $0.node != 73 && !($0.node == 74 && $0.vlan == v20) }
            + [VirtualNICBinding(node: 76, mac: m73, vlan: v10)]
        #expect(adopted(try p.adopt(r2, macs: moved)))
        #expect(waitUntil { (try? p.ethernet(76) { $0.registration == .configured && $0.nics == [m73: v10] }) ?? false })
        #expect(waitUntil { (try? p.ethernet(73) { $0.registration == .standby && $0.nics.isEmpty && $0.peerRVI.isEmpty }) ?? false })
        #expect(waitUntil { (try? p.ethernet(74) { e in e.nics == [m74: v10] && e.direct[m73] == e.peerRVI[76] && e.peerRVI[73] == nil && e.peerRVI[75] == nil }) ?? false })
        for k in 0..<2 {
            #expect(try p.server(k) { s in s.table.nics[m73]?.node == 76 && s.table.nics[m74b] == nil && s.standby.contains(73) })
        }
        // Node 74 reaches the moved MAC at node 76, and frames from node 74's detached NIC are refused.
        try transmit(p, from: 74, ethernet(m73, m74, [2]), nic: m74)
        #expect(waitUntil { inbox.frames.withLock { f in f.contains { $0.nic == m73 && $0.payload == [2] } } })
        #expect(throws: (any Error).self) { try transmit(p, from: 74, ethernet(m75, m74b, [3]), nic: m74b) }

        // An older revision changes nothing; a plan with one MAC on two NICs is refused.
        #expect(try p.adopt(r1, macs: moved).allSatisfy { $0 == .stale })
        var twice = r2
        twice.revision = 3
        let clash = moved.map { $0.node == 75 ? VirtualNICBinding(node: 75, mac: m74, vlan: v20) : $0 }
        #expect(try p.adopt(twice, macs: clash).allSatisfy { if case .refused = $0 { true } else { false } })

        // Node 76 fails and spare 73 takes its personality: a plan written before that
        // failover (it still puts the MAC on node 76) is deferred; the one after it is adopted.
        p.kill(node: 76)
        #expect(waitUntil(seconds: 5) { p.failovers(0).count == 1 && p.failovers(1).count == 1 })
        #expect(p.failovers(0).first?.spare == 73)
        var stale = r2
        stale.revision = 4
        #expect(try p.adopt(stale, macs: moved).allSatisfy { if case .deferred = $0 { true } else { false } })
        var after = r2
        after.vlans = [v10: [73, 74], v20: [75]]
        after.spares = []
        after.revision = 5
        let afterMACs = moved.map { $0.mac == m73 ? VirtualNICBinding(node: 73, mac: m73, vlan: v10) : $0 }
        #expect(adopted(try p.adopt(after, macs: afterMACs)))
        #expect(try p.ethernet(73) { $0.registration == .configured && $0.nics == [m73: v10] && $0.conflictingConfigurations == 0 })
        print("reconfiguration (in-process): revisions 1, 2, 5 adopted by both control nodes; stale, clashing and pre-failover plans turned away")
    }

    @Test("permission to listen promiscuously changes in place: granted, the NIC's earlier request is heard; withdrawn, it stops listening and its peers stop cloning to it")
    func promiscuousPermission() throws {
        let v10 = VLANID(10)!
        let d = PlatformDefinition(controlNodes: [91, 92], processingNodes: [93, 94], vlans: [v10: [93, 94]])
        let state = macStateFile()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let p = try LANPlatform(d, macState: state)
        defer { p.stop() }
        let m94 = p.mac(node: 94, vlan: v10)!
        func adopted(_ r: [PlanAdoption]) -> Bool { r.count == 2 && r.allSatisfy { if case .adopted = $0 { true } else { false } } }
        // Refused at first: not allowed.
        try p.nodes[94]!.runAndWait { e in
            let layer = RCLAN.on(e)!
            try layer.service(VirtualEthernet.self)!.setPromiscuous(true, nic: m94, layer: layer)
        }
        #expect(waitUntil { (try? p.server(0) { $0.log.contains { $0.contains("refused") && $0.contains("\(m94)") } }) ?? false })
        #expect(try p.server(0) { $0.table.promiscuous[v10]?.contains(m94) != true })
        // Revision 1 allows it: the node asks again and listens; node 93 clones to it.
        var r1 = d
        r1.promiscuousAllowed = [v10: [94]]
        r1.revision = 1
        #expect(adopted(try p.adopt(r1, macs: p.plan.nics)))
        for k in 0..<2 { #expect(waitUntil { (try? p.server(k) { $0.table.promiscuous[v10]?.contains(m94) == true }) ?? false }) }
        #expect(waitUntil { (try? p.ethernet(93) { $0.listeners[v10]?.contains(m94) == true }) ?? false })
        // Revision 2 withdraws it: the server stops it and node 93 stops cloning.
        var r2 = r1
        r2.promiscuousAllowed = [:]
        r2.revision = 2
        #expect(adopted(try p.adopt(r2, macs: p.plan.nics)))
        for k in 0..<2 {
            #expect(try p.server(k) { s in s.table.promiscuous[v10]?.contains(m94) != true && s.table.nics[m94]?.promiscuousAllowed == false })
        }
        #expect(waitUntil { (try? p.ethernet(93) { $0.listeners[v10]?.contains(m94) != true }) ?? false })
    }
}
