import PlexusCore
@testable import PlexusLAN
import Testing

/// Parses `bytes` as the public API does, from a span.
private func parse(_ bytes: [UInt8]) -> ControlMessage? { ControlMessage(parsing: bytes.span.bytes) }

@Suite("Control messages of the management RVIs")
struct ControlMessageTests {
    static let mac = MACAddress("02:00:01:00:00:05")!
    static let group = MACAddress("01:00:5e:00:00:fb")!
    static let peer = NodeConfiguration.Peer(
        address: NodeAddress(node: 4, fabricA: FabricAddress("127.0.1.4:7000")!, fabricB: FabricAddress("127.0.2.4:7000")!),
        localVI: 4100, remoteVI: 4099, macs: [mac])

    static let every: [ControlMessage] = [
        .register(node: 3),
        .configuration(NodeConfiguration(node: 3, mtu: 9000, nics: [VirtualNICBinding(node: 3, mac: mac, vlan: VLANID(10)!)],
                                         peers: [peer], addresses: [AddressBinding(vlan: VLANID(10)!, cidr: "10.10.0.3/24")],
                                         workload: "python3 -m http.server", revision: 1 << 40 | 7)),
        .refused(node: 3, reason: "node 3 is on no VLAN"),
        .join(node: 3, nic: mac, group: group),
        .leave(node: 3, nic: mac, group: group),
        .promiscuous(node: 3, nic: mac, on: true),
        .listener(node: 3, vlan: VLANID(20)!, mac: mac, on: false),
        .standby(node: 5),
        .moved(spare: 5, failed: 4, peer: peer),
        .fenced(node: 4),
        .milestone(node: 5, step: .workloadStarted),
        .processFailed(node: 5, status: 137),
        .console(node: 5, incarnation: 1 << 33 | 9, sequence: 12, text: Array("hello\n".utf8)),
    ]

    @Test("every message survives its encoding")
    func roundTrip() {
        for m in Self.every {
            let parsed = parse(m.encoded())
            #expect(parsed == m, "\(m)")
        }
    }

    @Test("a long reason is cut at a character boundary, and the cut message parses to what was sent")
    func longReason() {
        let reason = String(repeating: "é", count: 200)  // 400 bytes of UTF-8
        let bytes = ControlMessage.refused(node: 3, reason: reason).encoded()
        guard case .refused(_, let got)? = parse(bytes) else {
            Issue.record("the cut message did not parse")
            return
        }
        #expect(got == String(repeating: "é", count: 127), "255 bytes hold 127 two-byte characters")
        let again = ControlMessage.refused(node: 3, reason: got).encoded()
        #expect(again == bytes)
    }

    @Test("malformed messages are refused: a reason that is not UTF-8, a cut-short message, trailing bytes")
    func malformed() {
        var bad = ControlMessage.refused(node: 3, reason: "ok").encoded()
        bad[bad.count - 1] = 0xFF
        #expect(parse(bad) == nil)
        for m in Self.every {
            let bytes = m.encoded()
            for cut in [1, 2, 5] where cut < bytes.count {
                #expect(parse(Array(bytes.dropLast(cut))) == nil, "\(m) cut by \(cut)")
            }
            #expect(parse(bytes + [0]) == nil, "\(m) with a trailing byte")
        }
    }
}
