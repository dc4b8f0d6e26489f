import Foundation
import PlexusCore
import PlexusLAN
import PlexusNamespaces
import PlexusNode
import PlexusRCLAN
import PlexusTestSupport
import Testing

/// Sends `frame` from node `n`'s NIC `nic` (on its engine thread).
func transmit(_ p: LANPlatform, from n: NodeNumber, _ frame: [UInt8], nic: MACAddress) throws {
    try p.nodes[n]!.runAndWait { e in
        let layer = RCLAN.on(e)!
        try frame.withUnsafeBytes { try layer.service(VirtualEthernet.self)!.transmit($0, from: nic, layer: layer) }
    }
}

@Suite("Processor failover: a spare inherits the whole personality", .serialized,
       .requiresIOUring)
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
        for n: NodeNumber in [53, 55, 56, 57] { try p.ethernet(n) { eth in eth.onFrame = { nic, f in inbox.record(nic, f) } } }
        let m53 = p.mac(node: 53, vlan: v10)!, m55 = p.mac(node: 55, vlan: v20)!
        let m54a = p.mac(node: 54, vlan: v10)!, m54b = p.mac(node: 54, vlan: v20)!

        let killed = nowNanos()
        p.kill(node: 54)
        #expect(waitUntil(seconds: 5) { p.failovers(0).count == 1 && p.failovers(1).count == 1 })
        for k in 0..<2 {
            let f = p.failovers(k)
            #expect(f.first?.failed == 54 && f.first?.spare == 56, "control node \(k): \(f.map { "\($0.failed)→\($0.spare)" })")
            #expect(Set(f.first?.personality.nics.map(\.mac) ?? []) == [m54a, m54b])
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
        // The spare answers from the inherited MAC: the first IPv4 frame it sends after its
        // workload started completes the timeline.
        #expect(waitUntil { p.failovers(0).first?.time(of: .workloadStarted) != nil })
        try transmit(p, from: 56, m53.bytes + m54a.bytes + [0x08, 0x00, 3], nic: m54a)
        #expect(waitUntil { inbox.frames.withLock { f in f.contains { $0.nic == m53 && $0.payload == [3] } } })
        #expect(waitUntil { p.failovers(0).first?.time(of: .firstPacketServed) != nil })
        let f = try #require(p.failovers(0).first)
        #expect(f.steps.map(\.step) == FailoverStep.allCases, "\(f.timeline)")
        #expect(zip(f.steps, f.steps.dropFirst()).allSatisfy { $0.at <= $1.at })
        // Default settings: detected within a second (nominally 20 ms of silence + 30 ms).
        #expect(detectedMs < 1000)
        print("failover (in-process): node 54 killed, detected after \(String(format: "%.1f", detectedMs)) ms; timeline \(f.timeline.joined(separator: ", "))")
    }

    @Test("a spare that dies right after it was chosen: it holds the personality now, so its silence is a failure too, and the personality moves on to the next spare")
    func spareDiesAfterChosen() throws {
        let v10 = VLANID(10)!
        var d = PlatformDefinition(controlNodes: [81, 82], processingNodes: [83, 84, 85, 86], vlans: [v10: [83, 84]])
        d.spares = [85, 86]
        let state = macStateFile()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let p = try LANPlatform(d, macState: state)
        defer { p.stop() }
        let m84 = p.mac(node: 84, vlan: v10)!, m83 = p.mac(node: 83, vlan: v10)!
        p.kill(node: 84)
        #expect(waitUntil(seconds: 5) { p.failovers(0).count == 1 && p.failovers(1).count == 1 })
        #expect(p.failovers(0).first?.spare == 85)
        p.kill(node: 85)  // before it answers for long: its take-over may be half done
        #expect(waitUntil(seconds: 5) { p.failovers(0).count == 2 && p.failovers(1).count == 2 })
        for k in 0..<2 {
            let f = p.failovers(k)
            #expect(f.map { "\($0.failed)→\($0.spare)" } == ["84→85", "85→86"])
            #expect(try p.server(k) { s in s.table.nics[m84]?.node == 86 && s.fenced == [84, 85] })
        }
        #expect(waitUntil { (try? p.ethernet(86) { $0.registration == .configured && $0.nics == [m84: v10] }) ?? false })
        let inbox = Inbox()
        try p.ethernet(86) { eth in eth.onFrame = { nic, f in inbox.record(nic, f) } }
        #expect(waitUntil { (try? p.ethernet(83) { e in e.direct[m84] != nil && e.direct[m84] == e.peerRVI[86] }) ?? false })
        try transmit(p, from: 83, ethernet(m84, m83, [7]), nic: m83)
        #expect(waitUntil { inbox.frames.withLock { f in f.contains { $0.nic == m84 && $0.payload == [7] } } })
        print("failover of a failed spare: " + p.failovers(0).map { "\($0.failed) → \($0.spare) (" + $0.timeline.joined(separator: ", ") + ")" }.joined(separator: "; "))
    }

    @Test("a spare whose link to one control node started a new epoch (it took back what was in flight there, as a node does when that control node stalls) registers again: both control nodes still find it when a node fails")
    func spareRestartsItsLinkToOneControlNode() throws {
        let v10 = VLANID(10)!
        var d = PlatformDefinition(controlNodes: [121, 122], processingNodes: [123, 124], vlans: [v10: [123]])
        d.spares = [124]
        let state = macStateFile()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let p = try LANPlatform(d, macState: state)
        defer { p.stop() }
        #expect(try p.server(1) { $0.standby } == [124])
        // What the node's driver does when one control node's RVI becomes unusable: what it had
        // not acknowledged is taken back, and the RVI starts a new epoch, which that control
        // node sees as the spare restarting.
        try p.nodes[124]!.runAndWait { e in
            let layer = RCLAN.on(e)!
            let rvi = layer.service(VirtualEthernet.self)!.servers[1]
            layer.reclaimUnacknowledged(on: rvi) { _ in }
        }
        let restarted = {
            (try? p.controls[1]!.runAndWait { e -> UInt64 in
                let layer = RCLAN.on(e)!
                guard let rvi = layer.service(VirtualLANServer.self)!.nodeRVI[124] else { return 0 }
                return layer.statistics(rvi)?.peerRestarts ?? 0
            }) ?? 0
        }
        #expect(waitUntil(seconds: 5) { restarted() >= 1 }, "control node 122 never saw the spare's new epoch")
        #expect(waitUntil(seconds: 5) { (try? p.server(1) { $0.standby }) == [124] }, "the spare is no longer in standby at control node 122")
        p.kill(node: 123)
        #expect(waitUntil(seconds: 5) { p.failovers(0).count == 1 && p.failovers(1).count == 1 },
                "\((try? p.server(1) { Array($0.log) }) ?? [])")
        #expect(p.failovers(0).first?.spare == 124 && p.failovers(1).first?.spare == 124)
        #expect(try p.server(1) { s in !s.log.contains { $0.contains("no spare") } })
        #expect(try p.ethernet(124) { $0.reregistrations } >= 1)
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

@Suite("Failover with real clients across network namespaces (root)", .serialized,
       .requiresIOUring, .requiresRoot, .requiresTool("ip"), .requiresTUN, .requiresTool("ping"), .requiresTool("python3"))
struct NamespaceFailoverTests {
    static let v10 = VLANID(10)!, v20 = VLANID(20)!

    /// The drill's platform (``FailoverDrill/definition(www:)``): node 3 the client, node 4
    /// the web service (on VLANs 10 and 20), node 6 on VLAN 20, node 5 the spare.
    static func withPlatform(_ body: (NamespaceFabric, LANPlatform, String) throws -> Void) throws {
        let fabric = try NamespaceFabric(nodes: 6, linkMTU: 9000)
        defer { fabric.teardown() }
        let www = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-www-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: www, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: www) }
        try Data("served by the personality of node 4\n".utf8).write(to: URL(fileURLWithPath: www + "/index.html"))
        let d = try FailoverDrill.definition(www: www)
        let state = macStateFile()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let console = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-console-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: console, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: console) }
        let p = try LANPlatform(d, macState: state, fabric: fabric, consoleDirectory: console)
        defer { p.stop() }
        try body(fabric, p, console)
    }

    @Test("kill -9 of the web service's processor: the spare answers with the same MAC and IP; the client's ARP cache stays valid; no reply is lost for good")
    func realClient() throws {
        try Self.withPlatform { fabric, p, console in
            let m4 = p.mac(node: 4, vlan: Self.v10)!
            let r = try FailoverDrill.run(p, fabric: fabric, client: 3, service: 4, url: "http://10.10.0.4:8080/", seconds: 20)
            print("failover (namespaces, curl-like client): " + r.timeline.joined(separator: ", ")
                  + "; \(r.failedRequests) requests failed, \(r.repliesBefore) good before, \(r.repliesAfter) after")
            #expect(r.record.spare == 5)
            #expect(r.repliesAfter >= 1)
            #expect(r.detectMilliseconds < 1000)
            // The client's ARP entry for the service is the same MAC, and was never replaced.
            let neigh = fabric.execute(in: 3, ["ip", "neigh", "show", "10.10.0.4"]).output
            #expect(neigh.contains(m4.description), "node 3's ARP cache: \(neigh)")
            // The spare's NIC carries the MAC and both addresses; its workload runs, node 4's does not.
            let addr = fabric.execute(in: 5, ["ip", "addr", "show", LANPlatform.interface(vlan: Self.v10)]).output
            #expect(addr.contains(m4.description) && addr.contains("10.10.0.4/24"), "\(addr)")
            #expect(fabric.execute(in: 5, ["ip", "addr", "show", LANPlatform.interface(vlan: Self.v20)]).output.contains("10.20.0.4/24"))
            #expect(p.personalities.workload(of: 5)?.isRunning == true)
            #expect(p.personalities.workload(of: 4) == nil)
            // Node 6 (VLAN 20 only) reaches the moved VLAN-20 address at the spare.
            #expect(waitUntil(seconds: 5) { fabric.execute(in: 6, ["ping", "-c", "1", "-W", "1", "10.20.0.4"]).status == 0 })
            // The console log of the spare shows its addresses and workload; node 4's shows the kill.
            let log5 = (try? String(contentsOfFile: console + "/node5.log", encoding: .utf8)) ?? ""
            #expect(log5.contains("address 10.10.0.4/24") && log5.contains("starting workload"), "\(log5)")
            #expect(((try? String(contentsOfFile: console + "/node4.log", encoding: .utf8)) ?? "").contains("node 4 killed"))
        }
    }

    @Test("fencing: a node cut off from both fabrics loses its personality; when its cables come back it cannot reach its old VLANs until returned to the pool")
    func fencing() throws {
        try Self.withPlatform { fabric, p, _ in
            #expect(waitUntil(seconds: 10) { fabric.execute(in: 4, ["ping", "-c", "1", "-W", "1", "10.10.0.3"]).status == 0 })
            for f in Fabric.allCases { try fabric.setCable(node: 4, fabric: f, up: false) }
            #expect(waitUntil(seconds: 5) { p.failovers(0).count == 1 && p.failovers(1).count == 1 })
            #expect(waitUntil(seconds: 5) { p.personalities.isUp(5) })
            for f in Fabric.allCases { try fabric.setCable(node: 4, fabric: f, up: true) }
            // Node 4 is alive again and is told it is fenced; it drops its NICs.
            #expect(waitUntil(seconds: 10) { (try? p.ethernet(4) { $0.registration }) == .fenced })
            // Its old address now lives on the spare, which answers node 3; node 4 itself reaches nobody.
            #expect(waitUntil(seconds: 10) { fabric.execute(in: 3, ["ping", "-c", "1", "-W", "1", "10.10.0.4"]).status == 0 })
            let fromFenced = fabric.execute(in: 4, ["ping", "-c", "3", "-i", "0.2", "-W", "1", "10.10.0.3"])
            #expect(fromFenced.status != 0, "\(fromFenced.output)")
            let frames = try p.ethernet(4) { ($0.nics.count, $0.direct.count) }
            #expect(frames == (0, 0))
            // The servers still name it fenced until an administrator returns it.
            #expect(try p.server(0) { $0.fenced } == [4])
            p.returnToPool(4)
            #expect(try p.server(0) { $0.fenced }.isEmpty && p.server(0) { $0.plan?.spares } == [4])
        }
    }
}

@Suite("Process failover onto virtual nodes (namespaces, real HTTP client)", .serialized,
       .requiresIOUring, .requiresRoot, .requiresTool("ip"), .requiresTUN, .requiresTool("curl"), .requiresTool("python3"))
struct ProcessFailoverTests {
    @Test("a crashed workload resumes on a virtual node of the failover server, then, when that server dies, on the backup server's; its state travels through its storage; the console keeps it all")
    func failoverServerThenBackup() throws {
        let v10 = VLANID(10)!
        let fabric = try NamespaceFabric(nodes: 6, linkMTU: 9000)
        defer { fabric.teardown() }
        let temp = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-pfo-\(UUID().uuidString)").path
        let storage = temp + "/storage", console = temp + "/console"
        try FileManager.default.createDirectory(atPath: storage, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: temp) }
        // The workload keeps its state in its storage: each run appends a line to `runs`, says
        // so on its console, and serves the file.
        var d = PlatformDefinition(controlNodes: [1, 2], processingNodes: [3, 4, 5, 6], vlans: [v10: [3, 4]])
        d.addresses = [3: [AddressBinding(vlan: v10, cidr: "10.10.0.3/24")], 4: [AddressBinding(vlan: v10, cidr: "10.10.0.4/24")]]
        d.workloads = [4: "echo run >> \(storage)/runs; echo \"serving run $(wc -l < \(storage)/runs)\"; "
                          + (try FailoverDrill.webService(address: "10.10.0.4", directory: storage, file: "runs"))]
        d.failoverServers = [FailoverServer(name: "failover", virtualNodes: [5]), FailoverServer(name: "backup", virtualNodes: [6])]
        let p = try LANPlatform(d, macState: temp + "/macs", fabric: fabric, consoleDirectory: console)
        defer { p.stop() }
        let m4 = p.mac(node: 4, vlan: v10)!
        func fetch() -> String {
            fabric.execute(in: 3, ["curl", "-s", "--max-time", "1", "http://10.10.0.4:8080/"]).output
        }
        #expect(waitUntil(seconds: 10) { fetch() == "run\n" }, "first run: \(fetch())")

        // The workload process crashes; the processor (node 4) stays up.
        #expect(p.personalities.crashWorkload(of: 4))
        #expect(waitUntil(seconds: 10) { p.failovers(0).count == 1 && p.failovers(1).count == 1 })
        let first = try #require(p.failovers(0).first)
        #expect(first.failed == 4 && first.spare == 5)
        #expect(first.cause == .processFailed(status: 128 + SIGKILL), "\(first.cause)")
        #expect(p.failovers(1).first?.spare == 5, "both control nodes chose the same virtual node")
        #expect(waitUntil(seconds: 10) { fetch() == "run\nrun\n" }, "resumed on the failover server: \(fetch())")
        print("process failover to virtual node 5: " + (p.failovers(0).first?.timeline ?? []).joined(separator: ", "))
        // Node 4 is fenced: its NIC is gone from its namespace, and it is refused until returned.
        #expect(waitUntil(seconds: 5) { (try? p.ethernet(4) { $0.registration }) == .fenced })
        #expect(waitUntil(seconds: 5) { fabric.execute(in: 4, ["ip", "link", "show", LANPlatform.interface(vlan: v10)]).status != 0 })
        #expect(try p.server(0) { $0.fenced } == [4])

        // The failover server dies with its virtual node: the backup server's takes over.
        p.kill(server: "failover")
        try #require(waitUntil(seconds: 10) { p.failovers(0).count == 2 })
        let second = p.failovers(0)[1]
        #expect(second.failed == 5 && second.spare == 6 && second.cause == .silent)
        #expect(waitUntil(seconds: 10) { fetch() == "run\nrun\nrun\n" }, "resumed on the backup server: \(fetch())")
        print("failover server died, virtual node 5 to the backup server's 6: " + second.timeline.joined(separator: ", "))
        // Same MAC all along: the client's ARP entry names it.
        let neigh = fabric.execute(in: 3, ["ip", "neigh", "show", "10.10.0.4"]).output
        #expect(neigh.contains(m4.description), "\(neigh)")
        // The consoles at the control nodes: node 4's says its workload ended and it was fenced;
        // the virtual nodes' carry their workload's own output.
        let archive = try #require(p.archive)
        func log(_ n: NodeNumber) -> String { String(decoding: archive.read(node: n).text, as: UTF8.self) }
        #expect(waitUntil(seconds: 5) { log(4).contains("serving run 1") && log(4).contains("workload ended by itself") && log(4).contains("fenced") },
                "\(log(4))")
        #expect(waitUntil(seconds: 5) { log(5).contains("serving run 2") && log(6).contains("serving run 3") }, "\(log(5))\n\(log(6))")
        #expect(log(5).contains("node 5 (gone): node 5 killed"), "\(log(5))")
    }
}
