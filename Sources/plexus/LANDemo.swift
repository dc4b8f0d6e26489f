import Foundation
import PlexusCore
import PlexusNode
import PlexusNamespaces
import PlexusLAN
import PlexusRCLAN
import Synchronization

/// Step 5 of `plexus demo`: two control nodes and five processing nodes on two VLANs. As root,
/// every node in its own network namespace with TAP NICs and real `ping` between them; otherwise
/// in this process with the in-process NIC backend. Returns whether everything checked out.
func lanShowcase() throws -> Bool {
    let v10 = VLANID(10)!, v20 = VLANID(20)!
    let definition = PlatformDefinition(controlNodes: [1, 2], processingNodes: [3, 4, 5, 6, 7],
                                        vlans: [v10: [3, 4, 5], v20: [5, 6, 7]])
    let state = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-demo-macs-\(getpid())").path
    defer { try? FileManager.default.removeItem(atPath: state) }
    let real = getuid() == 0 && NamespaceFabric.unavailableReason == nil
        && FileManager.default.fileExists(atPath: "/dev/net/tun") && NamespaceFabric.execute(["which", "ping"]).status == 0
    print("\n5. virtual LANs: control nodes 1 and 2, processing nodes 3-7; VLAN 10 = {3, 4, 5}, VLAN 20 = {5, 6, 7}")
    print(real ? "   each node in its own network namespace, each NIC a TAP device (the kernel's own IP stack)"
               : "   in this process with the in-process NIC backend (run as root for namespaces, TAP devices and ping)")
    let fabric = real ? try NamespaceFabric(nodes: 7, linkMTU: 65535) : nil
    defer { fabric?.teardown() }
    let p = try LANPlatform(definition, macState: state, fabric: fabric)
    defer { p.stop() }
    for nic in p.plan.nics.sorted(by: { ($0.node, $0.vlan) < ($1.node, $1.vlan) }) {
        print("   node \(nic.node) registered with both control nodes: NIC \(nic.mac) on \(nic.vlan)")
    }
    var ok = true
    func check(_ what: String, _ passed: Bool) {
        print("   \(passed ? "ok " : "FAILED") \(what)")
        ok = ok && passed
    }
    if let fabric {
        for n: NodeNumber in [3, 4, 5] { try p.addAddress("10.10.0.\(n)/24", node: n, vlan: v10) }
        for n: NodeNumber in [5, 6, 7] { try p.addAddress("10.20.0.\(n)/24", node: n, vlan: v20) }
        // Node 7 also claims an address in VLAN 10's subnet: only the VLAN keeps it out.
        try p.addAddress("10.10.0.7/24", node: 7, vlan: v20)
        func ping(_ from: Int, _ to: String, _ extra: [String] = []) -> Bool {
            fabric.execute(in: from, ["ping", "-c", "3", "-i", "0.2", "-W", "1"] + extra + [to]).status == 0
        }
        check("node 3 pings node 4 (10.10.0.4) across VLAN 10", waitUntil(seconds: 10) { ping(3, "10.10.0.4") })
        check("node 5, on both VLANs, pings node 6 on VLAN 20", ping(5, "10.20.0.6"))
        check("node 7 (VLAN 20) cannot reach node 3 (VLAN 10), though it has an address in that subnet", !ping(7, "10.10.0.3"))
        let bound = try p.server(0) { s in (s.table.ipBindings[v10] ?? [:]).keys.map(\.description).sorted() }
        print("   the ARP servers bound on VLAN 10: \(bound.joined(separator: ", "))")
        p.stopControl(0)
        print("   control node 1 stopped")
        check("broadcast ARP and ping still work through control node 2 (node 4 to a new address of node 5)",
              (try? p.addAddress("10.10.0.55/24", node: 5, vlan: v10)) != nil && ping(4, "10.10.0.55"))
        let direct = try p.ethernet(3) { $0.sentDirect }, viaServers = try p.ethernet(3) { $0.sentToServers }
        print("   node 3 sent \(direct) frames straight to other nodes and \(viaServers) through the virtual LAN servers")
    } else {
        let inbox = Mutex<[NodeNumber: Int]>([:])
        for n in definition.processingNodes {
            try p.ethernet(n) { eth in eth.onFrame = { _, _ in inbox.withLock { $0[n, default: 0] += 1 } } }
        }
        func send(from n: NodeNumber, vlan: VLANID, to destination: MACAddress) throws {
            let source = p.mac(node: n, vlan: vlan)!
            let frame = destination.bytes + source.bytes + [0x88, 0xB5] + Array("hello from node \(n)".utf8)
            try p.nodes[n]!.runAndWait { e in
                let layer = RCLAN.on(e)!
                try frame.withUnsafeBytes { try layer.service(VirtualEthernet.self)!.transmit($0, from: source, layer: layer) }
            }
        }
        try send(from: 3, vlan: v10, to: .broadcast)
        check("a broadcast from node 3 reaches nodes 4 and 5 only",
              waitUntil(seconds: 5) { inbox.withLock { $0 == [4: 1, 5: 1] } })
        try send(from: 3, vlan: v10, to: p.mac(node: 4, vlan: v10)!)
        check("unicast from node 3 goes straight to node 4", waitUntil(seconds: 5) { inbox.withLock { $0[4] == 2 } })
        p.stopControl(0)
        print("   control node 1 stopped")
        try send(from: 6, vlan: v20, to: .broadcast)
        check("a broadcast on VLAN 20 still reaches nodes 5 and 7, through control node 2",
              waitUntil(seconds: 5) { inbox.withLock { $0[5] == 2 && $0[7] == 1 } })
    }
    return ok
}
