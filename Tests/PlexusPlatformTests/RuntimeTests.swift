import Foundation
import PlexusCore
import PlexusLAN
import PlexusNode
import Testing

@testable import PlexusPlatform

@Suite("The store driving a platform, and a failover written back")
struct RuntimeTests {
    @Test("the LAN definition comes from the store (NICs with their MACs, addresses, workload, free pool as spares); a failover record moves the personality, fences the node and logs the timeline")
    func definitionAndFailover() throws {
        let t = try TempDatabase()
        let s = try PlatformStore(path: t.path)
        try s.addProcessors([3, 4, 5, 6])
        _ = try s.createPAN("shop")
        _ = try s.addVLAN(10, to: "shop")
        _ = try s.addVLAN(11, to: "shop")
        _ = try s.addProcessor(to: "shop", name: "web", node: 4)
        _ = try s.attachNIC("web", vlan: 10)
        _ = try s.attachNIC("web", vlan: 11)
        _ = try s.bindIP("web", vlan: 10, address: "10.10.0.4/24")
        _ = try s.mapStorage("web", target: 0, lun: 0, storage: "iqn.2026-11.plexus:web")
        _ = try s.mapStorage("web", target: 1, lun: 3, storage: "iqn.2026-11.plexus:catalog", access: .readOnly)
        _ = try s.setWorkload("web", command: "exec sleep 100")
        _ = try s.addProcessor(to: "shop", name: "client", node: 3)
        _ = try s.attachNIC("client", vlan: 10)
        let (d, macs) = try s.lanDefinition(controlNodes: [1, 2])
        try d.validate()
        #expect(d.vlans[VLANID(10)!]?.sorted() == [3, 4] && d.vlans[VLANID(11)!] == [4])
        #expect(d.spares == [5, 6])
        #expect(d.addresses[4] == [AddressBinding(vlan: VLANID(10)!, cidr: "10.10.0.4/24")])
        #expect(d.workloads[4] == "exec sleep 100")
        let web = try s.personality("web")
        #expect(Set(macs.filter { $0.node == 4 }.map(\.mac.description)) == Set(web.nics.map(\.mac.description)))

        // The control nodes moved node 4's personality to node 5.
        #expect(web.processorPersonality == ProcessorPersonality(nics: macs.filter { $0.node == 4 }, addresses: d.addresses[4] ?? [],
                                                                 workload: d.workloads[4]))
        var f = FailoverRecord(failed: 4, spare: 5, personality: web.processorPersonality!.held(by: 5), silentSince: 1_000_000, steps: [])
        for (i, step) in FailoverStep.allCases.enumerated() { f.steps.append((step, 1_000_000 + UInt64(i + 1) * 10_000_000)) }
        let m = try s.recordFailover(f)
        #expect(m.from == 4 && m.to == 5 && m.fenced)
        let moved = try s.personality("web")
        #expect(moved.node == 5 && moved.nics == web.nics && moved.ips == web.ips && moved.storage == web.storage && moved.workload == web.workload)
        #expect(try s.processors().first { $0.node == 4 }?.state == .fenced)
        let events = try s.events()
        #expect(events.filter { $0.kind == "failover-step" }.count == FailoverStep.allCases.count)
        #expect(events.contains { $0.kind == "failover" && $0.detail.contains("node 4 → spare node 5") && $0.detail.contains("first packet served") })
        // The next definition has node 5 carrying it and node 4 out of the pool.
        let (after, _) = try s.lanDefinition(controlNodes: [1, 2])
        #expect(after.vlans[VLANID(11)!] == [5] && after.spares == [6])
        // A record for a node that holds no personality is refused and changes nothing.
        f.failed = 6
        #expect(throws: PlatformError.self) { try s.recordFailover(f) }
        #expect(try s.personality("web").node == 5)
    }
}
