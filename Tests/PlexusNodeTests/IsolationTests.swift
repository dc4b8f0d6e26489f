import Foundation
import PlexusCore
import PlexusLAN
import PlexusNode
import PlexusRCLAN
import PlexusTestSupport
import Testing

/// The drop counters a receiver keeps for frames that no path allows.
private struct Drops: Sendable, Equatable {
    var unknownVI: UInt64 = 0
    var wrongPeer: UInt64 = 0
    var total: UInt64 { unknownVI + wrongPeer }
}

private func drops(_ t: EngineThread) throws -> Drops {
    try t.runAndWait { e in
        var d = Drops()
        for f in [Fabric.a, .b] {
            d.unknownVI += e.counters(f).unknownVI
            d.wrongPeer += e.counters(f).wrongPeer
        }
        return d
    }
}

/// Frames (data, acknowledgements and probes) the two VIs of `p` have sent.
private func viFrames(_ e: Engine, _ p: RVIPath) -> UInt64 {
    (e.counters(VI(.a, p.localA))?.framesOut ?? 0) + (e.counters(VI(.b, p.localB))?.framesOut ?? 0)
}

@Suite("Isolation does not rest on node code behaving", .serialized, .requiresIOUring)
struct IsolationTests {
    /// Node 74 (VLAN 20) turns rogue: its own engine, at its real fabric addresses, opens RVIs
    /// that no control node made, guessing the platform's VI numbering: to node 72 (VLAN 10) on
    /// a VI that node 72 never established, on the VI node 72 uses for its direct path to node
    /// 73, and to the control node on node 72's management VI. It sends LAN frames and control
    /// messages on each. Only the control plane creates paths, so every frame is dropped at its
    /// receiver and counted there, and nothing reaches node 72's or node 73's driver.
    @Test("a rogue processing node's own RVIs toward a node outside its VLANs and toward another node's management VI: nothing arrives, every frame is counted as dropped")
    func rogueNode() throws {
        let v10 = VLANID(10)!, v20 = VLANID(20)!
        let d = PlatformDefinition(controlNodes: [71], processingNodes: [72, 73, 74], vlans: [v10: [72, 73], v20: [74]])
        let state = macStateFile()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let p = try LANPlatform(d, macState: state)
        defer { p.stop() }
        let inbox = Inbox()
        for n: NodeNumber in [72, 73] { try p.ethernet(n) { eth in eth.onFrame = { nic, f in inbox.record(nic, f) } } }
        let m72 = p.mac(node: 72, vlan: v10)!, m74 = p.mac(node: 74, vlan: v20)!
        let victim = p.plan.nodes.first { $0.node == 72 }!, control = p.plan.controls[0]

        // The paths the rogue makes up.
        func path(_ local: UInt32, to peer: NodeAddress, remote: UInt32) -> RVIPath {
            RVIPath(localA: local, localB: local, peerA: peer.fabricA, peerB: peer.fabricB, remoteA: remote, remoteB: remote)
        }
        let forged = [
            // A direct path to node 72, which shares no VLAN with 74: 72 never established it.
            path(VINumbering.direct(toward: 72), to: victim, remote: VINumbering.direct(toward: 74)),
            // Node 72's own direct path to node 73, from the wrong address.
            path(VINumbering.direct(toward: 72) + 1000, to: victim, remote: VINumbering.direct(toward: 73)),
            // Node 72's management VI at the control node, from the wrong address.
            path(VINumbering.managementAtControl(node: 72) + 2000, to: control, remote: VINumbering.managementAtControl(node: 72)),
        ]
        // What the rogue sends: unicast and broadcast LAN frames into VLAN 10 from a forged
        // source, and control messages that claim to be node 72.
        var lanFrame = [UInt8](repeating: 0, count: LANMessage.headerSize + 64)
        var broadcast = lanFrame
        let unicastBody = ethernet(m72, m74, Array("rogue unicast".utf8))
        let broadcastBody = ethernet(.broadcast, m72, Array("rogue broadcast".utf8))
        lanFrame.withUnsafeMutableBytes { out in
            unicastBody.withUnsafeBytes { _ = LANMessage.encode(vlan: v10, relayed: false, frame: $0, into: out) }
        }
        broadcast.withUnsafeMutableBytes { out in
            broadcastBody.withUnsafeBytes { _ = LANMessage.encode(vlan: v10, relayed: false, frame: $0, into: out) }
        }
        let messages = [Array(lanFrame.prefix(LANMessage.headerSize + unicastBody.count)),
                        Array(broadcast.prefix(LANMessage.headerSize + broadcastBody.count)),
                        ControlMessage.register(node: 72).encoded(),
                        ControlMessage.join(node: 72, nic: m72, group: MACAddress("01:00:5e:00:00:01")!).encoded()]

        let victimThread = p.nodes[72]!, controlThread = p.controls[0]!, rogue = p.nodes[74]!
        let before = (victim: try drops(victimThread), control: try drops(controlThread),
                      delivered: try p.ethernet(72) { $0.delivered } + p.ethernet(73) { $0.delivered },
                      switched: try p.server(0) { $0.switched })
        let rvis = try rogue.runAndWait { e -> [RVI] in
            let layer = RCLAN.on(e)!
            return try forged.map { try layer.open($0) }
        }
        // Each RVI sends 50 rounds of the four messages (RCLAN retransmits them, and probes its
        // legs, since nothing ever answers: every one of those frames is dropped too).
        for _ in 0..<50 {
            try rogue.runAndWait { e in
                let layer = RCLAN.on(e)!
                for r in rvis { for m in messages { _ = try? layer.send(m, on: r) } }
            }
        }
        #expect(waitUntil(seconds: 2) {
            let sent = (try? rogue.runAndWait { e in forged.reduce(0) { $0 + viFrames(e, $1) } }) ?? 0
            return sent > 600
        })
        // The rogue closes its RVIs; then what it sent can be counted against what was dropped.
        let sent = try rogue.runAndWait { e -> UInt64 in
            // Counted and closed in one job on the engine thread: nothing is sent in between.
            let n = forged.reduce(0) { $0 + viFrames(e, $1) }
            for r in rvis { RCLAN.on(e)!.close(r) }
            return n
        }
        let settled = waitUntil(seconds: 5) {
            let v = (try? drops(victimThread)) ?? before.victim, c = (try? drops(controlThread)) ?? before.control
            return (v.total - before.victim.total) + (c.total - before.control.total) >= sent
        }
        let after = (victim: try drops(victimThread), control: try drops(controlThread))
        let dropped = (after.victim.total - before.victim.total) + (after.control.total - before.control.total)
        print("rogue node 74: \(sent) frames on 3 forged RVIs; dropped at node 72: \(after.victim.unknownVI - before.victim.unknownVI) unknown VI, "
              + "\(after.victim.wrongPeer - before.victim.wrongPeer) wrong peer; at the control node: "
              + "\(after.control.wrongPeer - before.control.wrongPeer) wrong peer, \(after.control.unknownVI - before.control.unknownVI) unknown VI")
        #expect(settled)
        #expect(dropped == sent, "every frame the rogue sent is counted as dropped at its receiver")
        #expect(after.victim.unknownVI > before.victim.unknownVI && after.victim.wrongPeer > before.victim.wrongPeer)
        #expect(after.control.wrongPeer > before.control.wrongPeer)
        #expect(inbox.count == 0, "nothing reached node 72's or node 73's NICs")
        let deliveredAfter = try p.ethernet(72) { $0.delivered } + p.ethernet(73) { $0.delivered }
        #expect(deliveredAfter == before.delivered)
        #expect(try p.server(0) { $0.switched } == before.switched, "the control node switched nothing for the rogue")
        // The platform still works for the nodes that behave.
        let m73 = p.mac(node: 73, vlan: v10)!
        try p.nodes[72]!.runAndWait { e in
            let layer = RCLAN.on(e)!
            try ethernet(m73, m72, [9]).withUnsafeBytes { try layer.service(VirtualEthernet.self)!.transmit($0, from: m72, layer: layer) }
        }
        #expect(waitUntil { inbox.count == 1 })
    }
}
