import Foundation
import PlexusCore
import PlexusLAN
import PlexusRCLAN
import PlexusTestSupport
import Testing

/// Sends `frame` from node `n`'s NIC `nic` (on its engine thread).
func transmit(_ p: LANPlatform, from n: Int, _ frame: [UInt8], nic: MACAddress) throws {
    try p.nodes[n]!.runAndWait { e in
        let layer = RCLAN.on(e)!
        try frame.withUnsafeBytes { try (layer.delegate as! VirtualEthernet).transmit($0, from: nic, layer: layer) }
    }
}

@Suite("Processor failover: a spare inherits the whole personality", .serialized,
       .enabled(if: ioUringAvailable, "needs io_uring"))
struct FailoverTests {
    @Test("a killed node on two VLANs: both control nodes move its personality to the first spare (same MACs), peers reach it there, the timeline is complete")
    func twoVLANPersonality() throws {
        let v10 = VLANID(10)!, v20 = VLANID(20)!
        var d = PlatformDefinition(controlNodes: [51, 52], processingNodes: [53, 54, 55, 56, 57],
                                   vlans: [v10: [53, 54], v20: [54, 55]])
        d.spares = [56, 57]
        d.mtu = 9000
        let state = macStateFile()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let p = try LANPlatform(d, macState: state)
        defer { p.stop() }
        #expect(try p.ethernet(56) { $0.registration } == .standby)
        #expect(try p.server(0) { $0.standby } == [56, 57])
        let inbox = Inbox()
        for n in [53, 55, 56, 57] { try p.ethernet(n) { eth in eth.onFrame = { nic, f in inbox.record(nic, f) } } }
        let m53 = p.mac(node: 53, vlan: v10)!, m55 = p.mac(node: 55, vlan: v20)!
        let m54a = p.mac(node: 54, vlan: v10)!, m54b = p.mac(node: 54, vlan: v20)!

        let killed = nowNanos()
        p.kill(node: 54)
        #expect(waitUntil(seconds: 5) { p.failovers(0).count == 1 && p.failovers(1).count == 1 })
        for k in 0..<2 {
            let f = p.failovers(k)
            #expect(f.first?.failed == 54 && f.first?.spare == 56, "control node \(k): \(f.map { "\($0.failed)→\($0.spare)" })")
            #expect(Set(f.first?.nics.map(\.mac) ?? []) == [m54a, m54b])
            #expect(try p.server(k) { $0.fenced } == [54])
            #expect(try p.server(k) { s in s.table.nics[m54a]?.node == 56 && s.table.nics[m54b]?.node == 56 })
        }
        let detectedMs = Double((p.failovers(0).first?.time(of: .detected) ?? .max) &- killed) / 1e6
        // The spare carries both NICs, with the failed node's MACs, once; nobody else changed.
        #expect(waitUntil { (try? p.ethernet(56) { $0.registration == .configured && Set($0.nics.keys) == [m54a, m54b] }) ?? false })
        #expect(try p.ethernet(56) { $0.conflictingConfigurations } == 0)
        #expect(try p.ethernet(57) { $0.registration } == .standby)
        // Peers reach the MACs at the spare, straight (their software and ARP caches are untouched).
        #expect(waitUntil { (try? p.ethernet(53) { e in e.peerRVI[56] != nil && e.direct[m54a] == e.peerRVI[56] && e.peerRVI[54] == nil }) ?? false })
        #expect(waitUntil { (try? p.ethernet(55) { e in e.peerRVI[56] != nil && e.direct[m54b] == e.peerRVI[56] }) ?? false })
        try transmit(p, from: 53, ethernet(m54a, m53, [1]), nic: m53)
        try transmit(p, from: 55, ethernet(m54b, m55, [2]), nic: m55)
        #expect(waitUntil { inbox.frames.withLock { f in f.contains { $0.nic == m54a && $0.payload == [1] } && f.contains { $0.nic == m54b && $0.payload == [2] } } })
        #expect(try p.ethernet(53) { $0.sentDirect } >= 1)
        // The spare answers from the inherited MAC: the first frame it sends completes the timeline.
        try transmit(p, from: 56, ethernet(m53, m54a, [3]), nic: m54a)
        #expect(waitUntil { inbox.frames.withLock { f in f.contains { $0.nic == m53 && $0.payload == [3] } } })
        #expect(waitUntil { p.failovers(0).first?.time(of: .firstPacketServed) != nil })
        let f = p.failovers(0)[0]
        #expect(f.steps.map(\.step) == FailoverStep.allCases, "\(f.timeline)")
        #expect(zip(f.steps, f.steps.dropFirst()).allSatisfy { $0.at <= $1.at })
        // Default settings: detected within a second (nominally 20 ms of silence + 30 ms).
        #expect(detectedMs < 1000)
        print("failover (in-process): node 54 killed, detected after \(String(format: "%.1f", detectedMs)) ms; timeline \(f.timeline.joined(separator: ", "))")
    }

    @Test("with no spare in the pool the personality waits where it is, and the control node says so once")
    func noSpare() throws {
        let v10 = VLANID(10)!
        let d = PlatformDefinition(controlNodes: [61], processingNodes: [62, 63], vlans: [v10: [62, 63]])
        let state = macStateFile()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let p = try LANPlatform(d, macState: state)
        defer { p.stop() }
        p.kill(node: 63)
        #expect(waitUntil(seconds: 5) { (try? p.server(0) { $0.log.contains { $0.contains("node 63 failed") && $0.contains("no spare") } }) ?? false })
        #expect(p.failovers(0).isEmpty)
        #expect(try p.server(0) { s in s.log.filter { $0.contains("no spare") }.count } == 1)
        #expect(try p.server(0) { s in s.table.nics.values.filter { $0.node == 63 }.count } == 1)
    }
}
