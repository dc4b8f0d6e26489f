import Foundation
import PlexusCore
import PlexusLAN
import PlexusNamespaces
import PlexusNode
import PlexusRCLAN
import PlexusTestSupport
import Testing

/// A fresh MAC counter file for one platform.
func macStateFile() -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("plexus-macs-\(UUID().uuidString)").path
}

@Suite("The platform in one process: registration, two control nodes, the in-process backend", .serialized,
       .requiresIOUring)
struct PlatformTests {
    @Test("nodes register with both control nodes and get their NICs; a node on no VLAN is refused; a dead control node's traffic goes through the other")
    func registrationAndControlFailover() throws {
        let v10 = VLANID(10)!, v20 = VLANID(20)!
        var d = PlatformDefinition(controlNodes: [41, 42], processingNodes: [43, 44, 45, 46, 47],
                                   vlans: [v10: [43, 44, 45], v20: [45, 46]])
        d.mtu = 9000
        let state = macStateFile()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let p = try LANPlatform(d, macState: state)
        defer { p.stop() }
        // Node 45 sits on both VLANs with one NIC each; node 47 is on none and is refused.
        let nics45 = try p.ethernet(45) { $0.nics.count }
        #expect(nics45 == 2)
        #expect(waitUntil { (try? p.ethernet(47) { $0.registration }) == .refused("node 47 is a member of no VLAN") })
        let refusedAtServers = try (0..<2).map { k in try p.server(k) { $0.refusedRegistrations } }
        #expect(refusedAtServers.allSatisfy { $0 >= 1 })
        // Both control nodes computed the same configuration for every node.
        for n: NodeNumber in [43, 44, 45, 46] {
            #expect(try p.ethernet(n) { $0.conflictingConfigurations } == 0)
        }
        // Every MAC is locally administered and from the first control node's serial.
        #expect(p.plan.nics.count == 5 && p.plan.nics.allSatisfy { $0.mac.isLocallyAdministered && $0.mac.rawValue >> 24 & 0xFFFF == 1 })

        let inbox = Inbox()
        for n: NodeNumber in [43, 44, 45, 46] {
            try p.ethernet(n) { eth in eth.onFrame = { nic, f in inbox.record(nic, f) } }
        }
        let m43 = p.mac(node: 43, vlan: v10)!, m44 = p.mac(node: 44, vlan: v10)!
        func send(from n: NodeNumber, _ frame: [UInt8], nic: MACAddress) throws {
            try p.nodes[n]!.runAndWait { e in
                let layer = RCLAN.on(e)!
                try frame.withUnsafeBytes { try layer.service(VirtualEthernet.self)!.transmit($0, from: nic, layer: layer) }
            }
        }
        // Unicast goes direct; a broadcast reaches 44 and 45's VLAN-10 NIC only.
        try send(from: 43, ethernet(m44, m43, [1]), nic: m43)
        try send(from: 43, ethernet(.broadcast, m43, [2]), nic: m43)
        #expect(waitUntil { inbox.count == 3 })
        let direct = try p.ethernet(43) { $0.sentDirect }
        #expect(direct == 1)

        // Control node 0 dies: broadcasts from every node still arrive, through control node 1.
        p.stopControl(0)
        let before = inbox.count
        var sent = 0
        for round in 0..<20 {
            for (n, v) in [(43, v10), (44, v10), (46, v20)] as [(NodeNumber, VLANID)] {
                let m = p.mac(node: n, vlan: v)!
                try send(from: n, ethernet(.broadcast, m, [UInt8(round)]), nic: m)
                sent += n == 46 ? 1 : 2  // VLAN 20 has one other member, VLAN 10 two
            }
        }
        let expected = before + sent
        #expect(waitUntil(seconds: 10) { inbox.count >= expected }, "delivered \(inbox.count - before) of \(sent)")
        #expect(inbox.count == expected)
        // It returns: the nodes use it again.
        let usedBefore = try [43, 44, 46].map { n in try p.ethernet(n) { $0.sentToServer[0] } }.reduce(0, +)
        try p.startControl(0)
        #expect(waitUntil(seconds: 10) {
            for (n, v) in [(43, v10), (44, v10), (46, v20)] as [(NodeNumber, VLANID)] {
                let m = p.mac(node: n, vlan: v)!
                try? send(from: n, ethernet(.broadcast, m, [9]), nic: m)
            }
            let used = (try? [43, 44, 46].map { n in try p.ethernet(n) { $0.sentToServer[0] } }.reduce(0, +)) ?? 0
            return used > usedBefore
        })
        print("platform: 5 processing nodes registered with 2 control nodes (node 47 refused); \(sent) broadcast copies "
              + "delivered with control node 0 stopped, none lost; control node 0 back in use after restart")
    }
}

@Suite("Virtual LANs with TAP devices: real Linux traffic between network namespaces", .serialized,
       .requiresIOUring, .requiresRoot, .requiresTool("ip"), .requiresTUN,
       .requiresTool("ping"), .requiresTool("curl"), .requiresTool("iperf3"), .requiresTool("python3"))
struct TAPTests {
    /// Control nodes 1 and 2; processing nodes 3, 4, 5 on VLAN 10 and 5, 6 on VLAN 20.
    static let v10 = VLANID(10)!, v20 = VLANID(20)!

    /// Runs `body` with six namespaced nodes and the platform on them; tears everything down after.
    static func withPlatform(_ body: (NamespaceFabric, LANPlatform) throws -> Void) throws {
        let fabric = try NamespaceFabric(nodes: 6, linkMTU: 65535)
        defer { fabric.teardown() }
        let state = macStateFile()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let p = try Self.platform(fabric, state: state)
        defer { p.stop() }
        try body(fabric, p)
    }

    static func platform(_ fabric: NamespaceFabric, state: String) throws -> LANPlatform {
        let d = PlatformDefinition(controlNodes: [1, 2], processingNodes: [3, 4, 5, 6],
                                   vlans: [v10: [3, 4, 5], v20: [5, 6]])
        let p = try LANPlatform(d, macState: state, fabric: fabric)
        for n: NodeNumber in [3, 4, 5] { try p.addAddress("10.10.0.\(n)/24", node: n, vlan: v10) }
        for n: NodeNumber in [5, 6] { try p.addAddress("10.20.0.\(n)/24", node: n, vlan: v20) }
        for n in 3...6 { _ = fabric.execute(in: n, ["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_broadcasts=0"]) }
        return p
    }

    @Test("busy-polling nodes: 200 pings one after another all answered, and an iperf3 TCP stream crosses (TAP devices read right after the port that fed them)")
    func busyPollNodes() throws {
        let fabric = try NamespaceFabric(nodes: 4, linkMTU: 65535)
        defer { fabric.teardown() }
        let state = macStateFile()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let d = PlatformDefinition(controlNodes: [1, 2], processingNodes: [3, 4], vlans: [Self.v10: [3, 4]])
        // Two busy-polling nodes, two control nodes, ping, iperf3 and this process share two
        // CPUs: a node is off its CPU for tens of milliseconds at times, longer than the default
        // dead time (20 ms with both legs silent), and its peer would take it for dead and
        // reroute (losing what the peer's restart fails). Busy-poll wants a CPU per engine, or a
        // dead time above the host's scheduling gaps (docs/operations.md): 25 × 1 ms, 100 ms for
        // both legs silent.
        var layer = RCLANConfiguration()
        layer.missedHeartbeats = 25
        let p = try LANPlatform(d, macState: state, fabric: fabric, layerConfiguration: layer, nodePollMode: .busyPoll)
        defer { p.stop() }
        for n: NodeNumber in [3, 4] { try p.addAddress("10.10.0.\(n)/24", node: n, vlan: Self.v10) }
        // Each echo is answered before the next is sent: a device read right after its port.
        var ping = (status: Int32(-1), output: "")
        #expect(waitUntil(seconds: 10) {
            ping = fabric.execute(in: 3, ["ping", "-c", "1", "-W", "1", "10.10.0.4"])
            return ping.status == 0
        }, "ping: \(ping.output)")
        ping = fabric.execute(in: 3, ["ping", "-c", "200", "-i", "0.002", "-W", "1", "10.10.0.4"])
        let counts = try [NodeNumber(3), 4].map { n in
            try p.ethernet(n) { e in "node \(n): direct \(e.sentDirect) to servers \(e.sentToServer) delivered \(e.delivered) dropped \(e.dropped) refused \(e.refused) tap write failures \(e.tapWriteFailures) relayed fallbacks \(e.relayedFallbacks) rerouted \(e.rerouted) lost in failover \(e.lostInFailover)" }
        }
        #expect(ping.output.contains("200 received"), "\(ping.output.suffix(300)); \(counts.joined(separator: "; "))")
        // A TCP stream: devices with a backlog are read in batches.
        let server = try fabric.spawn(in: 4, ["iperf3", "-s", "-B", "10.10.0.4"])
        defer { server.kill() }
        var iperf = (status: Int32(-1), output: "")
        #expect(waitUntil(seconds: 15) {
            iperf = fabric.execute(in: 3, ["iperf3", "-c", "10.10.0.4", "-t", "1", "-J"])
            return iperf.status == 0 && (IPerf3Result(json: iperf.output)?.receivedBitsPerSecond ?? 0) > 0
        }, "iperf3: \(iperf.output.suffix(400))")
        let summary = ping.output.split(separator: "\n").suffix(2).joined(separator: "; ")
        print("Busy-poll nodes: \(summary); iperf3 \(Int((IPerf3Result(json: iperf.output)?.receivedBitsPerSecond ?? 0) / 1e6)) Mbit/s")
    }

    @Test("ping (unicast and broadcast), curl and iperf3 across the virtual LAN; nothing crosses into another VLAN")
    func realClients() throws {
        try Self.withPlatform { fabric, p in try realClients(fabric, p) }
    }

    func realClients(_ fabric: NamespaceFabric, _ p: LANPlatform) throws {

        // ping: unicast, then broadcast on VLAN 10 (answered by 4 and 5, never by 6).
        var ping = (status: Int32(-1), output: "")
        #expect(waitUntil(seconds: 10) {
            ping = fabric.execute(in: 3, ["ping", "-c", "3", "-i", "0.2", "-W", "1", "10.10.0.4"])
            return ping.status == 0
        }, "ping: \(ping.output)")
        #expect(ping.output.contains("3 received"))
        let broadcast = fabric.execute(in: 3, ["ping", "-b", "-c", "3", "-i", "0.3", "-W", "1", "10.10.0.255"])
        #expect(broadcast.output.contains("from 10.10.0.4") || broadcast.output.contains("from 10.10.0.5"), "\(broadcast.output)")
        #expect(!broadcast.output.contains("10.20."))
        // The ARP servers: both control nodes bound each node's addresses (an alias too) to its
        // NIC, and node 3 knows the RVI that reaches 10.10.0.4.
        #expect(fabric.execute(in: 4, ["ip", "addr", "add", "10.10.0.44/24", "dev", LANPlatform.interface(vlan: Self.v10)]).status == 0)
        #expect(fabric.execute(in: 3, ["ping", "-c", "1", "-W", "2", "10.10.0.44"]).status == 0)
        let m4 = p.mac(node: 4, vlan: Self.v10)!
        for k in 0..<2 {
            let bound = try p.server(k) { s in
                (s.table.ipBindings[Self.v10] ?? [:]).mapValues(\.mac)
            }
            for (ip, mac) in [(0x0A0A_0004, m4), (0x0A0A_002C, m4), (0x0A0A_0003, p.mac(node: 3, vlan: Self.v10)!)] {
                #expect(bound[IPv4Address(rawValue: UInt32(ip))] == mac, "control node \(k + 1): \(bound)")
            }
        }
        let reaches = try p.ethernet(3) { eth in eth.rvi(reaching: IPv4Address(rawValue: 0x0A0A_0004)) != nil }
        #expect(reaches)
        // Node 5 (on both VLANs) reaches node 6 on VLAN 20.
        #expect(fabric.execute(in: 5, ["ping", "-c", "2", "-i", "0.2", "-W", "1", "10.20.0.6"]).status == 0)

        // HTTP: a 2 MiB file from node 4 to node 3.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-www-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var big = [UInt8](repeating: 0, count: 2 << 20)
        var g = SplitMix64(seed: 4)
        for i in big.indices { big[i] = UInt8(truncatingIfNeeded: g.next()) }
        try Data(big).write(to: dir.appendingPathComponent("big.bin"))
        let web = try fabric.spawn(in: 4, ["python3", "-m", "http.server", "8080", "--bind", "10.10.0.4", "--directory", dir.path])
        defer { web.kill() }
        let out = dir.appendingPathComponent("fetched.bin")
        #expect(waitUntil(seconds: 10) {
            fabric.execute(in: 3, ["curl", "-s", "-f", "--max-time", "10", "-o", out.path, "http://10.10.0.4:8080/big.bin"]).status == 0
        })
        #expect((try? Data(contentsOf: out)) == Data(big))

        // iperf3 TCP for 2 s from node 3 to node 4.
        // The server stays up for retries (not `-1`): an attempt made before it listened, or one
        // that ended without a measurement, is tried again.
        let server = try fabric.spawn(in: 4, ["iperf3", "-s", "-B", "10.10.0.4"])
        defer { server.kill() }
        var iperf = (status: Int32(-1), output: "")
        #expect(waitUntil(seconds: 15) {
            iperf = fabric.execute(in: 3, ["iperf3", "-c", "10.10.0.4", "-t", "2", "-J"])
            return iperf.status == 0 && (IPerf3Result(json: iperf.output)?.receivedBitsPerSecond ?? 0) > 0
        }, "iperf3: \(iperf.output.suffix(400))")
        let gbps = IPerf3Result(json: iperf.output)?.receivedBitsPerSecond ?? 0
        #expect(gbps > 0, "iperf3 said: \(iperf.output.prefix(800)) … \(iperf.output.suffix(1500))")

        // Isolation: node 6 (VLAN 20) with an address in VLAN 10's subnet reaches nothing there.
        #expect(fabric.execute(in: 6, ["ip", "addr", "add", "10.10.0.6/24", "dev", LANPlatform.interface(vlan: Self.v20)]).status == 0)
        let across = fabric.execute(in: 6, ["ping", "-c", "2", "-i", "0.2", "-W", "1", "10.10.0.3"])
        #expect(across.status != 0)
        let counters = try [3, 4].map { n in try p.ethernet(n) { ($0.sentDirect, $0.sentToServers, $0.delivered) } }
        print("virtual LAN over TAP: ping unicast and broadcast, curl 2 MiB, iperf3 \(String(format: "%.2f", gbps / 1e9)) Gbit/s; "
              + "node 6 on VLAN 20 reached nothing on VLAN 10; node 3 sent \(counters[0].0) frames direct, "
              + "\(counters[0].1) via the servers")
    }

    @Test("an iperf3 TCP connection survives a control node dying and then fabric A failing")
    func failoverUnderIperf() throws {
        try Self.withPlatform { fabric, p in try failoverUnderIperf(fabric, p) }
    }

    func failoverUnderIperf(_ fabric: NamespaceFabric, _ p: LANPlatform) throws {
        #expect(waitUntil(seconds: 10) { fabric.execute(in: 3, ["ping", "-c", "1", "-W", "1", "10.10.0.4"]).status == 0 })
        let server = try fabric.spawn(in: 4, ["iperf3", "-s", "-1", "-B", "10.10.0.4"])
        defer { server.kill() }
        _ = waitUntil(seconds: 5) { fabric.execute(in: 4, ["ss", "-ltn"]).output.contains("10.10.0.4:5201") }
        let client = try BackgroundProcess(["ip", "netns", "exec", fabric.namespace(3), "iperf3", "-c", "10.10.0.4",
                                            "-t", "4", "-i", "0.1", "-J"], output: nil)
        defer { client.kill() }
        Thread.sleep(forTimeInterval: 1)  // the events happen at 1 s and 2 s into a 4 s run
        p.stopControl(0)
        Thread.sleep(forTimeInterval: 1)
        try fabric.setFabric(.a, up: false)
        let status = client.wait()
        #expect(status == 0, "iperf3 client exit status \(status)")
        // Broadcast (ARP, ping -b) still works with one control node and one fabric.
        let b = fabric.execute(in: 3, ["ping", "-b", "-c", "2", "-i", "0.3", "-W", "1", "10.10.0.255"])
        #expect(b.output.contains("from 10.10.0."), "\(b.output)")
        try fabric.setFabric(.a, up: true)
        print("iperf3 over the virtual LAN survived control node 1 dying and fabric A failing (exit \(status))")
    }
}
