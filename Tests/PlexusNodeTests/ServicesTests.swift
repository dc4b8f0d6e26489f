import Foundation
import PlexusCluster
import PlexusCore
import PlexusLAN
import PlexusNamespaces
import PlexusNode
import PlexusRCLAN
import PlexusTestSupport
import Synchronization
import Testing

/// A third service for the test: it answers every message on the RVIs it opened with the same
/// bytes (an echo), and counts, in order, the answers it gets on the RVIs it sends on.
final class EchoService: RVIDelegate {
    var echoed: UInt64 = 0
    var answers: UInt64 = 0
    var outOfOrder: UInt64 = 0
    var strays: UInt64 = 0
    var mine: Set<RVI> = []
    var sender: RVI?
    var toSend = 0
    var sent = 0

    func open(_ path: RVIPath, layer: RCLAN) throws -> RVI {
        let rvi = try layer.open(path, service: self)
        mine.insert(rvi)
        return rvi
    }

    func received(_ message: RawSpan, on rvi: RVI, layer: RCLAN) {
        guard mine.contains(rvi) else { strays += 1; return }
        if rvi == sender {
            let n = message.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
            if n != answers { outOfOrder += 1 }
            answers += 1
        } else {
            echoed += 1
            _ = try? message.withUnsafeBytes { b throws(RVISendError) in try layer.send(Array(b), on: rvi) }
        }
    }

    func layerTurn(_ layer: RCLAN) {
        guard let sender else { return }
        while sent < toSend {
            var n = UInt64(sent)
            let bytes = withUnsafeBytes(of: &n) { Array($0) } + [UInt8](repeating: 0xEC, count: 56)
            guard (try? layer.send(bytes, on: sender)) != nil else { break }
            sent += 1
        }
    }
}

/// What the test reads of one node, from its own thread.
private struct Counts: Sendable {
    var frames = 0
    var entries = 0
    var echoed: UInt64 = 0
    var answers: UInt64 = 0
    var outOfOrder: UInt64 = 0
    var strays: UInt64 = 0
    var unbound: UInt64 = 0
}

@Suite("Services sharing one node's engine and RCLAN", .serialized, .requiresIOUring)
struct ServicesTests {
    @Test("the virtual LAN, the address-table distributor and a third service run side by side on the same nodes, each getting only its own RVIs' messages")
    func threeServices() throws {
        let v10 = VLANID(10)!
        let m1 = MACAddress("02:00:01:00:00:11")!, m2 = MACAddress("02:00:01:00:00:12")!
        let inboxes = [Inbox(), Inbox()]
        let control = try EngineThread.start(.loopback(node: 40)) { () -> any EngineDriver in
            let layer = RCLAN(delegate: VirtualLANServer())
            layer.host(TableDistributor(node: 40))
            layer.host(EchoService())
            return layer
        }
        var nodes: [EngineThread] = []
        defer {
            control.stopAndWait()
            for t in nodes { t.stopAndWait() }
        }
        for n in 1...2 {
            let counter = n - 1
            nodes.append(try EngineThread.start(.loopback(node: UInt8(40 + n))) { () -> any EngineDriver in
                let eth = VirtualEthernet(node: NodeNumber(UInt32(n)))
                let inbox = inboxes[counter]
                eth.onFrame = { nic, f in inbox.record(nic, f) }
                // The LAN is not the layer's first service here: routing must not depend on order.
                let layer = RCLAN(delegate: TableDistributor(node: NodeNumber(UInt32(n))))
                layer.host(EchoService())
                layer.host(eth)
                return layer
            })
        }
        func addr(_ t: EngineThread, _ f: Fabric) -> FabricAddress { FabricAddress(t.info.ports[Int(f.rawValue)].address)! }
        func path(_ local: UInt32, to peer: EngineThread, remote: UInt32) -> RVIPath {
            RVIPath(localA: local, localB: local, peerA: addr(peer, .a), peerB: addr(peer, .b), remoteA: remote, remoteB: remote)
        }
        func entry(_ n: NodeNumber, _ t: EngineThread) -> NodeEntry {
            NodeEntry(node: n, version: 1, adapters: [
                AdapterEntry(fabric: .a, address: addr(t, .a), adapterType: "loopback", mtu: 65536, subnetMask: 0xFFFF_FF00),
                AdapterEntry(fabric: .b, address: addr(t, .b), adapterType: "loopback", mtu: 65536, subnetMask: 0xFFFF_FF00),
            ])
        }
        // Each service opens its own RVIs: the LAN's management RVIs (VI n at the control node,
        // VI 1 at the node), the distributor's (VI 100+n / 100), and the echo's (VI 200+n / 200).
        let controlEntry = entry(40, control)
        for n in 1...2 {
            let node = nodes[n - 1], nodeEntry = entry(NodeNumber(UInt32(n)), node)
            let lan = path(UInt32(n), to: node, remote: 1), table = path(100 + UInt32(n), to: node, remote: 100)
            let echo = path(200 + UInt32(n), to: node, remote: 200)
            try control.runAndWait { e in
                let layer = RCLAN.on(e)!
                let server = layer.service(VirtualLANServer.self)!
                server.attachNode(NodeNumber(UInt32(n)), rvi: try layer.open(lan, service: server))
                let d = layer.service(TableDistributor.self)!
                d.addNeighbour(try layer.open(table, service: d))
                try d.setLocalEntry(controlEntry)
                _ = try layer.service(EchoService.self)!.open(echo, layer: layer)
            }
            let lanBack = path(1, to: control, remote: UInt32(n)), tableBack = path(100, to: control, remote: 100 + UInt32(n))
            let echoBack = path(200, to: control, remote: 200 + UInt32(n))
            try node.runAndWait { e in
                let layer = RCLAN.on(e)!
                let eth = layer.service(VirtualEthernet.self)!
                eth.addServer(try layer.open(lanBack, service: eth))
                let d = layer.service(TableDistributor.self)!
                d.addNeighbour(try layer.open(tableBack, service: d))
                try d.setLocalEntry(nodeEntry)
                let echo = layer.service(EchoService.self)!
                echo.sender = try echo.open(echoBack, layer: layer)
                echo.toSend = 5000
            }
        }
        try control.runAndWait { e in
            let server = RCLAN.on(e)!.service(VirtualLANServer.self)!
            try server.table.attach(VirtualNICBinding(node: 1, mac: m1, vlan: v10))
            try server.table.attach(VirtualNICBinding(node: 2, mac: m2, vlan: v10))
        }
        try nodes[0].runAndWait { e in RCLAN.on(e)!.service(VirtualEthernet.self)!.addNIC(m1, vlan: v10) }
        try nodes[1].runAndWait { e in RCLAN.on(e)!.service(VirtualEthernet.self)!.addNIC(m2, vlan: v10) }

        // The LAN: 100 broadcasts from node 1 reach node 2 through the server, while the echo
        // streams run and the tables spread.
        for _ in 0..<100 {
            let frame = MACAddress.broadcast.bytes + m1.bytes + [0x88, 0xB5] + Array("hello".utf8)
            try nodes[0].runAndWait { e in
                let layer = RCLAN.on(e)!
                try frame.withUnsafeBytes { try layer.service(VirtualEthernet.self)!.transmit($0, from: m1, layer: layer) }
            }
        }
        func counts(_ t: EngineThread, lanFrames: Int) throws -> Counts {
            try t.runAndWait { e in
                let layer = RCLAN.on(e)!
                let echo = layer.service(EchoService.self)!
                return Counts(frames: lanFrames, entries: layer.service(TableDistributor.self)!.table.entries.count,
                              echoed: echo.echoed, answers: echo.answers, outOfOrder: echo.outOfOrder, strays: echo.strays,
                              unbound: layer.unboundFrames)
            }
        }
        let done = try waitUntil(seconds: 15) {
            let n1 = try counts(nodes[0], lanFrames: 0), n2 = try counts(nodes[1], lanFrames: 0)
            let c = try counts(control, lanFrames: 0)
            return inboxes[1].count == 100 && n1.answers == 5000 && n2.answers == 5000
                && c.echoed == 10_000 && n1.entries == 3 && n2.entries == 3 && c.entries == 3
        }
        let n1 = try counts(nodes[0], lanFrames: inboxes[0].count)
        let n2 = try counts(nodes[1], lanFrames: inboxes[1].count)
        let c = try counts(control, lanFrames: 0)
        #expect(done, "node 1 \(n1), node 2 \(n2), control \(c)")
        #expect(n2.frames == 100, "every broadcast reached node 2 over the LAN service")
        #expect(n1.frames == 0, "a broadcast does not come back to its sender")
        #expect(n1.answers == 5000 && n2.answers == 5000 && c.echoed == 10_000)
        #expect(n1.outOfOrder == 0 && n2.outOfOrder == 0)
        #expect(n1.strays == 0 && n2.strays == 0 && c.strays == 0, "no service saw another's messages")
        #expect(n1.entries == 3 && n2.entries == 3 && c.entries == 3, "every table holds the three nodes")
        #expect(n1.unbound == 0 && n2.unbound == 0 && c.unbound == 0)
        // The tables are the same on every node.
        let tables = try ([control] + nodes).map { t in try t.runAndWait { e in RCLAN.on(e)!.service(TableDistributor.self)!.table } }
        #expect(tables.allSatisfy { $0 == tables[0] })
    }

    @Test("an RVI opened for a service the layer does not host is refused, and a removed service's RVIs close")
    func hostingRules() throws {
        let a = try EngineThread.start(.loopback(node: 45)) { RCLAN(delegate: EchoService()) }
        let b = try EngineThread.start(.loopback(node: 46)) { RCLAN(delegate: EchoService()) }
        defer { a.stopAndWait(); b.stopAndWait() }
        let peer = FabricAddress(b.info.ports[0].address)!, peerB = FabricAddress(b.info.ports[1].address)!
        let p = RVIPath(localA: 7, localB: 7, peerA: peer, peerB: peerB, remoteA: 7, remoteB: 7)
        let (refused, openBefore, openAfter) = try a.runAndWait { e -> (Bool, Int, Int) in
            let layer = RCLAN.on(e)!
            var refused = false
            do { _ = try layer.open(p, service: TableDistributor(node: 45)) } catch { refused = (error as? PlexusError)?.code == .configuration }
            let extra = EchoService()
            layer.host(extra)
            _ = try extra.open(p, layer: layer)
            let before = layer.openRVIs.count
            layer.remove(extra)
            return (refused, before, layer.openRVIs.count)
        }
        #expect(refused)
        #expect(openBefore == 1 && openAfter == 0)
    }
}
