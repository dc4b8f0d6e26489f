import Foundation
import PlexusCore
import PlexusLAN
import PlexusNamespaces
import PlexusNode
import PlexusRCLAN
import PlexusTestSupport
import Testing

/// An IPv4 packet (20-byte header, protocol 2) carrying `igmp`, in an Ethernet frame.
func igmpFrame(_ igmp: [UInt8]) -> [UInt8] {
    let eth: [UInt8] = [0x01, 0x00, 0x5E, 0, 0, 0x16] + [0x02, 0, 0, 0, 0, 1] + [0x08, 0x00]
    var ip = [UInt8](repeating: 0, count: 20)
    ip[0] = 0x45
    ip[9] = 2
    return eth + ip + igmp
}

/// An IPv6 packet with a hop-by-hop header (router alert) carrying an MLD message.
func mldFrame(_ icmp: [UInt8]) -> [UInt8] {
    let eth: [UInt8] = [0x33, 0x33, 0, 0, 0, 0x16] + [0x02, 0, 0, 0, 0, 1] + [0x86, 0xDD]
    var ip = [UInt8](repeating: 0, count: 40)
    ip[0] = 0x60
    ip[6] = 0  // hop-by-hop
    let hbh: [UInt8] = [58, 0, 5, 2, 0, 0, 1, 0]
    return eth + ip + hbh + icmp
}

@Suite("Multicast membership and promiscuous mode", .requiresIOUring)
struct MembershipTests {
    @Test("IGMPv2 and v3, MLDv1 and v2 reports are read; group MACs follow RFC 1112 and RFC 2464; cut-short packets yield nothing")
    func parsing() {
        func parse(_ f: [UInt8]) -> [MembershipReport] { MembershipReport.parse(f.span.bytes) }
        let v2join = parse(igmpFrame([0x16, 0, 0, 0, 239, 129, 2, 3]))
        #expect(v2join == [MembershipReport(group: [239, 129, 2, 3], joined: true)])
        #expect(v2join[0].mac == MACAddress("01:00:5e:01:02:03")!)  // the high bit of the second octet is dropped
        #expect(parse(igmpFrame([0x17, 0, 0, 0, 239, 1, 2, 3])) == [MembershipReport(group: [239, 1, 2, 3], joined: false)])
        // IGMPv3: two records, CHANGE_TO_EXCLUDE {} (join) and CHANGE_TO_INCLUDE {} (leave), and
        // an ALLOW with one source (join), and a BLOCK (no change).
        let v3: [UInt8] = [0x22, 0, 0, 0, 0, 0, 0, 4]
            + [4, 0, 0, 0, 239, 0, 0, 1]
            + [3, 0, 0, 0, 239, 0, 0, 2]
            + [5, 0, 0, 1, 239, 0, 0, 3, 10, 0, 0, 9]
            + [6, 0, 0, 1, 239, 0, 0, 4, 10, 0, 0, 9]
        #expect(parse(igmpFrame(v3)) == [
            MembershipReport(group: [239, 0, 0, 1], joined: true),
            MembershipReport(group: [239, 0, 0, 2], joined: false),
            MembershipReport(group: [239, 0, 0, 3], joined: true),
        ])
        let group6: [UInt8] = [0xFF, 0x02] + [UInt8](repeating: 0, count: 9) + [1, 0xFF, 0x12, 0x34, 0x56]
        let mldv2: [UInt8] = [143, 0, 0, 0, 0, 0, 0, 1] + [4, 0, 0, 0] + group6
        let r6 = parse(mldFrame(mldv2))
        #expect(r6 == [MembershipReport(group: group6, joined: true)])
        #expect(r6.first?.mac == MACAddress("33:33:ff:12:34:56")!)
        #expect(parse(mldFrame([132, 0, 0, 0, 0, 0, 0, 0] + group6)) == [MembershipReport(group: group6, joined: false)])
        // Cut short anywhere: nothing, and no crash.
        let whole = igmpFrame(v3)
        for n in 0..<whole.count { _ = parse(Array(whole[..<n])) }
        #expect(parse(Array(whole[..<40])).count <= 1)
        #expect(parse(Array(igmpFrame([0x16, 0, 0, 0, 239, 1, 2, 3])[..<40])).isEmpty)
        // Not IGMP (UDP): nothing.
        var udp = igmpFrame([0x16, 0, 0, 0, 239, 1, 2, 3])
        udp[14 + 9] = 17
        #expect(parse(udp).isEmpty)
    }

    @Test("joins and leaves reach both control nodes with use counts; a group frame reaches joined NICs only; promiscuous listening only where allowed, the refusal logged")
    func inProcess() throws {
        let v10 = VLANID(10)!
        var d = PlatformDefinition(controlNodes: [51, 52], processingNodes: [53, 54, 55, 56], vlans: [v10: [53, 54, 55, 56]])
        d.promiscuousAllowed = [v10: [56]]
        let state = macStateFile()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let p = try LANPlatform(d, macState: state)
        defer { p.stop() }
        let inbox = Inbox()
        for n: NodeNumber in [53, 54, 55, 56] { try p.ethernet(n) { eth in eth.onFrame = { nic, f in inbox.record(nic, f) } } }
        let group = MACAddress("01:00:5e:01:02:03")!
        let mac = { (n: NodeNumber) in p.mac(node: n, vlan: v10)! }
        func node(_ n: NodeNumber, _ body: @escaping @Sendable (VirtualEthernet, RCLAN) throws -> Void) throws {
            try p.nodes[n]!.runAndWait { e in
                let layer = RCLAN.on(e)!
                try body(layer.service(VirtualEthernet.self)!, layer)
            }
        }
        func members(_ k: Int) throws -> [MACAddress: Int] { try p.server(k) { $0.table.groups[v10]?[group] ?? [:] } }
        let m54 = mac(54), m55 = mac(55)
        try node(54) { eth, layer in try eth.join(group, nic: m54, layer: layer) }
        try node(55) { eth, layer in
            try eth.join(group, nic: m55, layer: layer)
            try eth.join(group, nic: m55, layer: layer)  // said twice: one membership
        }
        #expect(waitUntil { (try? (0..<2).map(members)) == [[m54: 1, m55: 1], [m54: 1, m55: 1]] })
        // A frame to the group reaches 54 and 55, not 56.
        let m53 = mac(53)
        try node(53) { eth, layer in
            try ethernet(group, m53, [7]).withUnsafeBytes { try eth.transmit($0, from: m53, layer: layer) }
        }
        #expect(waitUntil { inbox.count == 2 })
        #expect(Set(inbox.frames.withLock { $0.map(\.nic) }) == [m54, m55])
        // 54 leaves: the group stays for 55 on both servers; 55 leaves: it is gone.
        try node(54) { eth, layer in try eth.leave(group, nic: m54, layer: layer) }
        #expect(waitUntil { (try? (0..<2).map(members)) == [[m55: 1], [m55: 1]] })
        try node(55) { eth, layer in try eth.leave(group, nic: m55, layer: layer) }
        #expect(waitUntil { (try? (0..<2).map { k in try p.server(k) { $0.table.groups[v10]?[group] == nil } }) == [true, true] })

        // Promiscuous: 56 may, 54 may not (refused, logged at both servers, told to the node).
        let m56 = mac(56)
        try node(56) { eth, layer in try eth.setPromiscuous(true, nic: m56, layer: layer) }
        try node(54) { eth, layer in try eth.setPromiscuous(true, nic: m54, layer: layer) }
        #expect(waitUntil {
            (try? (0..<2).map { k in try p.server(k) { $0.table.promiscuous[v10] ?? [] } }) == [[m56], [m56]]
        })
        #expect(waitUntil { (try? p.ethernet(54) { $0.events.contains { $0.contains("refused") } }) == true })
        for k in 0..<2 {
            #expect(try p.server(k) { $0.log.contains { $0.contains("node 54: promiscuous mode for \(m54) on VLAN 10 refused") } })
        }
        // Both servers told the other nodes: 53's driver lists 56 as a listener.
        #expect(waitUntil { (try? p.ethernet(53) { $0.listeners[v10] ?? [] }) == [m56] })
        // A unicast from 53 to 55, sent direct, is cloned to 56 (marked as a copy), not to 54.
        let before = inbox.frames.withLock { $0.count }
        try node(53) { eth, layer in
            try ethernet(m55, m53, [8]).withUnsafeBytes { try eth.transmit($0, from: m53, layer: layer) }
        }
        #expect(waitUntil { inbox.count == before + 2 })
        let got = inbox.frames.withLock { Array($0[before...]) }
        #expect(Set(got.map(\.nic)) == [m55, m56] && got.allSatisfy { $0.dst == m55 && $0.payload == [8] })
        #expect(try p.ethernet(53) { $0.promiscuousCopiesSent } == 1)
        // 56 stops listening: no more copies.
        try node(56) { eth, layer in try eth.setPromiscuous(false, nic: m56, layer: layer) }
        #expect(waitUntil { (try? p.ethernet(53) { $0.listeners[v10] ?? [] }) == [] })
        try node(53) { eth, layer in
            try ethernet(m55, m53, [9]).withUnsafeBytes { try eth.transmit($0, from: m53, layer: layer) }
        }
        #expect(waitUntil { inbox.count == before + 3 })
        #expect(try p.ethernet(53) { $0.promiscuousCopiesSent } == 1)
        print("membership: 2 NICs joined a group on both control nodes (use counts 1 each, a repeated join ignored), "
              + "the group frame reached them only, leaves dropped the group; promiscuous allowed for node 56, refused and logged for node 54")
    }
}

@Suite("Multicast and promiscuous mode from the Linux kernel (TAP)", .serialized,
       .requiresIOUring, .requiresRoot, .requiresTool("ip"), .requiresTUN, .requiresTool("ping"), .requiresTool("python3"))
struct KernelMembershipTests {
    @Test("a socket joining 239.1.2.3 makes the kernel's IGMP join the group at both servers; the group's datagrams arrive; closing it leaves; `ip link set promisc` asks for promiscuous mode, granted or refused")
    func kernelMembership() throws {
        let v10 = VLANID(10)!
        let fabric = try NamespaceFabric(nodes: 5, linkMTU: 65535)
        defer { fabric.teardown() }
        var d = PlatformDefinition(controlNodes: [1, 2], processingNodes: [3, 4, 5], vlans: [v10: [3, 4, 5]])
        d.promiscuousAllowed = [v10: [5]]
        let state = macStateFile()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let p = try LANPlatform(d, macState: state, fabric: fabric)
        defer { p.stop() }
        for n: NodeNumber in [3, 4, 5] { try p.addAddress("10.10.0.\(n)/24", node: n, vlan: v10) }
        let group = MACAddress("01:00:5e:01:02:03")!, m3 = p.mac(node: 3, vlan: v10)!
        func groupAtServers() -> [Set<MACAddress>] {
            (0..<2).map { k in (try? p.server(k) { Set(($0.table.groups[v10]?[group] ?? [:]).keys) }) ?? [] }
        }
        let receiver = try WatchedProcess(["ip", "netns", "exec", fabric.namespace(3), "python3", "-c", """
            import socket, struct
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(('', 5007))
            s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, struct.pack('4s4s', socket.inet_aton('239.1.2.3'), socket.inet_aton('10.10.0.3')))
            s.settimeout(20)
            print('joined', flush=True)
            d, a = s.recvfrom(100)
            print('got', d.decode(), 'from', a[0], flush=True)
            """])
        #expect(receiver.waitFor("joined"))
        #expect(waitUntil(seconds: 10) { groupAtServers() == [[m3], [m3]] }, "both servers: \(groupAtServers())")
        let sender = """
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton('10.10.0.4'))
            s.sendto(b'hello-group', ('239.1.2.3', 5007))
            """
        #expect(waitUntil(seconds: 10) {
            _ = fabric.execute(in: 4, ["python3", "-c", sender])
            return receiver.output.contains("got hello-group from 10.10.0.4")
        }, "receiver: \(receiver.output)")
        // The receiver exited and its socket closed: the kernel's IGMP leave drops the group.
        #expect(waitUntil(seconds: 10) { groupAtServers() == [[], []] }, "both servers: \(groupAtServers())")

        // Promiscuous mode from the kernel's flag: node 5 may, node 4 may not.
        let m5 = p.mac(node: 5, vlan: v10)!, m4 = p.mac(node: 4, vlan: v10)!
        try NamespaceFabric.run(["ip", "-n", fabric.namespace(5), "link", "set", "pvl10", "promisc", "on"])
        try NamespaceFabric.run(["ip", "-n", fabric.namespace(4), "link", "set", "pvl10", "promisc", "on"])
        #expect(waitUntil(seconds: 10) {
            (0..<2).allSatisfy { k in (try? p.server(k) { $0.table.promiscuous[v10] ?? [] }) == [m5] }
        })
        #expect(waitUntil(seconds: 10) {
            (0..<2).allSatisfy { k in
                (try? p.server(k) { $0.log.contains { $0.contains("promiscuous mode for \(m4) on VLAN 10 refused") } }) == true
            }
        })
        #expect(waitUntil(seconds: 10) { (try? p.ethernet(3) { $0.listeners[v10] ?? [] }) == [m5] })
        // Node 3 pings node 4: node 5 gets a copy of each unicast frame.
        let copiesBefore = try p.ethernet(3) { $0.promiscuousCopiesSent }
        let ping = fabric.execute(in: 3, ["ping", "-c", "3", "-i", "0.2", "-W", "1", "10.10.0.4"])
        #expect(ping.status == 0, "\(ping.output)")
        let copies = try p.ethernet(3) { $0.promiscuousCopiesSent } - copiesBefore
        #expect(copies >= 3)
        print("kernel membership: IGMP join and leave seen at both servers, the group datagram delivered; "
              + "promiscuous mode granted to node 5 and refused to node 4; \(copies) promiscuous copies of node 3's pings")
    }
}
