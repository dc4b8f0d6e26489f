import Foundation
import PlexusCluster
import PlexusCore
import PlexusLAN
import PlexusNode
import PlexusRCLAN
import PlexusTestSupport
import Testing

@Suite("The address table as every node's address book", .serialized, .requiresIOUring)
struct AddressBookTests {
    @Test("every node learns every node's entry from the distributed table, and a direct RVI goes to the addresses of the peer's entry, alternates and MTU included")
    func directPathsFromTheTable() throws {
        // Node 62 has an alternate adapter on fabric A and adapters of MTU 9000: neither is in
        // the control nodes' plan, only in the entry node 62 makes of itself.
        let alternate = FabricAddress(127, 0, 3, 62, port: 7000)
        var controls: [ControlNode] = []
        let bed = try BookBed(processing: [61, 62], controls: [71, 72],
                              secondAdapters: NodeAdapters(alternatesA: [alternate], mtu: 9000), macBase: 0x60)
        let processing = bed.processing, controlConfigs = bed.controlConfigs, controlAddresses = bed.controlAddresses
        let nodes = bed.nodes, nics = bed.nics
        defer {
            for p in processing { p.stop() }
            for c in controls { c.stop() }
        }
        let plan = LANPlan(controls: controlAddresses, nodes: nodes, nics: nics)
        for (k, n) in ([71, 72] as [NodeNumber]).enumerated() {
            controls.append(try ControlNode.start(node: n, index: k, plan: plan, engine: controlConfigs[k]))
        }
        for p in processing { try p.register(controls: controlAddresses) }

        // Every node's table converges to the same four entries.
        func digests() throws -> [UInt64] { try bed.digests(controls, entries: 4) }
        let converged = waitUntil(seconds: 20) { (try? digests()).map { Set($0).count == 1 } ?? false }
        #expect(converged, "the tables did not converge: \((try? digests()) ?? [])")
        let entry = try processing[0].service(TableDistributor.self) { d, _ in d.table.entries[62] }
        #expect(entry?.adapters.map(\.address) == [nodes[1].fabricA, alternate, nodes[1].fabricB])

        // Node 61's direct RVI to node 62 is opened at node 62's entry: primary and alternate on
        // A, its MTU bounding the datagrams.
        let configured = try waitUntil(seconds: 20) {
            try processing.allSatisfy { p in try p.ethernet { eth, _ in eth.registration == .configured } }
        }
        #expect(configured)
        // (Opened from the book, or from the configuration's address and moved to the book's
        // addresses as soon as the book had the entry.)
        let direct = VINumbering.direct(toward: 62)
        func seen() throws -> (fromBook: Int, addresses: [FabricAddress]?) {
            try processing[0].ethernet { eth, layer in
                (eth.peersFromAddressBook + Int(layer.service(TableDistributor.self)!.rvisRedirected),
                 layer.engine.peerAddresses(VI(.a, direct))?.all)
            }
        }
        let followed = waitUntil(seconds: 20) { (try? seen().addresses) == [nodes[1].fabricA, alternate] }
        let s = try seen()
        #expect(followed, "node 61's direct RVI to node 62 goes to \(s.addresses ?? [])")
        #expect(s.fromBook >= 1)
        print("Address book: 4 nodes (2 control, 2 processing), one table everywhere (digest \(try digests()[0])); "
              + "node 61's direct RVI to node 62 on fabric A: \(s.addresses ?? [])")
    }

    @Test("a node a later plan adds gets an address-table RVI from each control node, and its management RVI follows its entry")
    func nodeAddedByALaterPlan() throws {
        // Node 64 is not in the control nodes' first plan, and has an alternate adapter on fabric
        // A that only its own entry names.
        let alternate = FabricAddress(127, 0, 3, 64, port: 7000)
        var controls: [ControlNode] = []
        let bed = try BookBed(processing: [63, 64], controls: [73, 74], secondAdapters: NodeAdapters(alternatesA: [alternate]),
                              macBase: 0x70)
        let processing = bed.processing, controlConfigs = bed.controlConfigs, controlAddresses = bed.controlAddresses
        let nodes = bed.nodes, nics = bed.nics
        defer {
            for p in processing { p.stop() }
            for c in controls { c.stop() }
        }
        let first = LANPlan(controls: controlAddresses, nodes: [nodes[0]], nics: [nics[0]])
        for (k, n) in ([73, 74] as [NodeNumber]).enumerated() {
            controls.append(try ControlNode.start(node: n, index: k, plan: first, engine: controlConfigs[k]))
        }
        var second = LANPlan(controls: controlAddresses, nodes: nodes, nics: nics)
        second.revision = 1
        let plan = second
        for c in controls {
            let result = try c.server { s, layer in s.adopt(plan, layer: layer) }
            guard case .adopted = result else {
                Issue.record("the second plan was not adopted: \(result)")
                return
            }
        }
        for p in processing { try p.register(controls: controlAddresses) }

        // Every table converges to the four entries, through the control nodes' new RVIs too.
        func digests() throws -> [UInt64] { try bed.digests(controls, entries: 4) }
        let converged = waitUntil(seconds: 20) { (try? digests()).map { Set($0).count == 1 } ?? false }
        #expect(converged, "the tables did not converge: \((try? digests()) ?? [])")
        let neighbours = try controls.map { c in try c.service(TableDistributor.self) { d, _ in d.neighbours.count } }
        // Each control node: the two processing nodes and the other control node.
        #expect(neighbours == [3, 3])
        // Each control node's management RVI to node 64 goes to the addresses of node 64's entry.
        let management = VINumbering.managementAtControl(node: 64)
        let followed = waitUntil(seconds: 20) {
            controls.allSatisfy { c in
                (try? c.service(TableDistributor.self) { _, layer in layer.engine.peerAddresses(VI(.a, management))?.all })
                    == [nodes[1].fabricA, alternate]
            }
        }
        #expect(followed, "the control nodes' management RVIs to node 64 do not follow its entry")
        print("Address book: node 64, added by plan revision 1, has an address-table RVI from both control nodes "
              + "(neighbours \(neighbours)); their management RVIs to it go to its primary and alternate on fabric A")
    }
}

/// Two processing nodes on loopback (the second with `adapters`), two control nodes' engine
/// configurations on free ports, and the nodes' NICs on VLAN 10: what both tests start from.
private struct BookBed {
    let processing: [ProcessingNode]
    let controlConfigs: [EngineConfiguration]
    let controlAddresses: [NodeAddress]
    let nodes: [NodeAddress]
    let nics: [VirtualNICBinding]

    init(processing numbers: [NodeNumber], controls: [NodeNumber], secondAdapters: NodeAdapters, macBase: Int) throws {
        var started: [ProcessingNode] = []
        do {
            for (i, n) in numbers.enumerated() {
                started.append(try ProcessingNode.start(node: n, engine: .loopback(node: UInt8(n.rawValue)), tap: false,
                                                        configure: { $0.onFrame = { _, _ in } },
                                                        adapters: i == 1 ? secondAdapters : NodeAdapters()))
            }
            controlConfigs = try controls.map { try loopbackOnFreePorts(node: Int($0.rawValue)) }
        } catch {
            for p in started { p.stop() }
            throw error
        }
        processing = started
        controlAddresses = zip(controls, controlConfigs).map { NodeAddress(node: $0, fabricA: $1.fabricA, fabricB: $1.fabricB) }
        nodes = started.map { nodeAddress($0.thread, node: $0.node) }
        let v = VLANID(10)!
        nics = nodes.enumerated().map { i, n in
            VirtualNICBinding(node: n.node, mac: MACAddress("02:00:01:00:00:\(String(format: "%02x", macBase + i))")!, vlan: v)
        }
    }

    /// Every node's table digest, when it holds `entries` entries (else a marker that differs).
    func digests(_ controls: [ControlNode], entries: Int) throws -> [UInt64] {
        try processing.map { p in try p.service(TableDistributor.self) { d, _ in d.table.entries.count == entries ? d.table.digest : 0 } }
            + controls.map { c in try c.service(TableDistributor.self) { d, _ in d.table.entries.count == entries ? d.table.digest : 1 } }
    }
}
