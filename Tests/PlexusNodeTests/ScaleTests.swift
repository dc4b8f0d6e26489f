import Foundation
import PlexusCore
import PlexusLAN
import PlexusNamespaces
import PlexusNode
import PlexusTestSupport
import Testing

/// The embedded platform at 64 processing nodes, each in its own network namespace with its NICs
/// as TAP devices: the failover drill's platform (``FailoverDrill/definition(www:processingNodes:)``:
/// control nodes 1 and 2, the client on node 3, the web service on node 4, node 5 the spare, node
/// 6 on VLAN 20) with nodes 7…66 idle members of VLAN 10 (odd) and VLAN 20 (even). Node numbers
/// are namespace slots (``NamespaceFabric``), so they start at 1 as in the other namespace tests.
///
/// It takes minutes on a 2-CPU machine (66 namespaces, 66 engine threads, a TAP device per NIC),
/// so it runs in `make stress` (``PlexusTestSupport/Stress``), not in `make test`.
@Suite("The embedded platform at 64 processing nodes (namespaces, TAP devices)", .serialized, .requiresStress,
       .requiresIOUring, .requiresRoot, .requiresTool("ip"), .requiresTUN, .requiresTool("ping"), .requiresTool("python3"))
struct ScaleTests {
    static let processingNodes = 64
    static let v10 = VLANID(10)!, v20 = VLANID(20)!

    @Test("64 processing nodes: all register, a ping crosses between chosen nodes of each VLAN, a broadcast reaches every member of its VLAN, and a failover completes with the spare serving")
    func sixtyFourNodes() throws {
        let started = nowNanos()
        let fabric = try NamespaceFabric(nodes: Self.processingNodes + 2, linkMTU: 9000)
        defer { fabric.teardown() }
        let temp = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-scale-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: temp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: temp) }
        try Data("served at scale\n".utf8).write(to: URL(fileURLWithPath: temp + "/index.html"))
        let d = try FailoverDrill.definition(www: temp, processingNodes: Self.processingNodes)
        let fabricMs = Double(nowNanos() - started) / 1e6
        let p = try LANPlatform(d, macState: temp + "/macs", fabric: fabric, seconds: 60)
        defer { p.stop() }
        let upMs = Double(nowNanos() - started) / 1e6

        // Every processing node registered with both control nodes: the members configured, the
        // spare in standby.
        let members10 = try #require(d.vlans[Self.v10]).sorted(), members20 = try #require(d.vlans[Self.v20]).sorted()
        #expect(members10.count == 32 && members20.count == 32 && d.processingNodes.count == Self.processingNodes)
        let configured = try d.processingNodes.filter { n in try p.ethernet(n) { $0.registration == .configured } }
        #expect(configured.count == Self.processingNodes - 1, "not configured: \(Set(d.processingNodes).subtracting(configured).sorted())")
        #expect(try p.ethernet(5) { $0.registration } == .standby)
        let members = Set(d.processingNodes).subtracting([5])
        for k in 0..<2 {
            let registered = try p.server(k) { $0.registered }
            #expect(registered == members, "control node \(k + 1) lacks \(members.subtracting(registered).sorted())")
            #expect(try p.server(k) { $0.standby } == [5])
        }
        print("scale: \(Self.processingNodes + 2) namespaces in \(String(format: "%.1f", fabricMs / 1000)) s, platform up "
              + "\(String(format: "%.1f", upMs / 1000)) s after the start: \(configured.count) nodes configured, node 5 in standby, "
              + "\(members.count) members registered at each control node, \(String(format: "%.0f", Self.residentMiB())) MiB resident")

        // Every member of each VLAN gets an address there (the drill's nodes have theirs), and
        // answers broadcast echoes.
        for (vlan, members, net) in [(Self.v10, members10, "10.10.0"), (Self.v20, members20, "10.20.0")] {
            for n in members where d.addresses[n]?.contains(where: { $0.vlan == vlan }) != true {
                try p.addAddress("\(net).\(n)/24", node: n, vlan: vlan)
            }
        }
        for n in d.processingNodes { _ = fabric.execute(in: Int(n), ["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_broadcasts=0"]) }

        // Unicast: a ping between chosen pairs of each VLAN (the drill's nodes, the first and
        // last idle members), each answered.
        let pairs: [(from: NodeNumber, to: NodeNumber, net: String)] = [
            (3, 4, "10.10.0"), (7, 65, "10.10.0"), (65, 3, "10.10.0"),
            (6, 4, "10.20.0"), (8, 66, "10.20.0"), (66, 6, "10.20.0"),
        ]
        var answered: [String] = []
        for (from, to, net) in pairs {
            var ping = (status: Int32(-1), output: "")
            let ok = waitUntil(seconds: 10) {
                ping = fabric.execute(in: Int(from), ["ping", "-c", "1", "-W", "1", "\(net).\(to)"])
                return ping.status == 0
            }
            #expect(ok, "ping from node \(from) to \(net).\(to): \(ping.output)")
            if ok { answered.append("\(from) → \(net).\(to)") }
        }
        print("scale: pings answered \(answered.count) of \(pairs.count): " + answered.joined(separator: ", "))

        // Broadcast: an echo request to each VLAN's broadcast address is answered by every other
        // member of the VLAN (so each got it), and by nobody else.
        for (members, net, from) in [(members10, "10.10.0", NodeNumber(3)), (members20, "10.20.0", NodeNumber(6))] {
            let expected = Set(members.filter { $0 != from }.map { "\(net).\($0)" })
            var answered: Set<String> = []
            var last = ""
            let all = waitUntil(seconds: 20) {
                last = fabric.execute(in: Int(from), ["ping", "-b", "-c", "2", "-i", "1", "-W", "1", "\(net).255"]).output
                answered.formUnion(Self.repliers(last))
                return answered.isSuperset(of: expected)
            }
            #expect(all, "broadcast on \(net).0/24 from node \(from): no echo from \(expected.subtracting(answered).sorted()); last ping: \(last.suffix(400))")
            #expect(answered.isSubset(of: expected.union(["\(net).\(from)"])),
                    "answers from outside the VLAN: \(answered.subtracting(expected).sorted())")
            print("scale: a broadcast from node \(from) to \(net).255 answered by \(answered.intersection(expected).count) of the "
                  + "\(expected.count) other members of the VLAN")
        }

        // Failover: the web service's processor is killed; the spare answers the client.
        let r = try FailoverDrill.run(p, fabric: fabric, client: 3, service: 4, url: "http://10.10.0.4:8080/", seconds: 20)
        print("scale: failover at \(Self.processingNodes) processing nodes: " + r.timeline.joined(separator: ", ")
              + "; \(r.failedRequests) requests failed, \(r.repliesBefore) good before, \(r.repliesAfter) after")
        #expect(r.record.spare == 5)
        #expect(r.repliesAfter >= 1)
        #expect(p.failovers(1).last?.spare == 5, "both control nodes chose the same spare")
        #expect(p.personalities.workload(of: 5)?.isRunning == true)
        #expect(try p.ethernet(5) { $0.registration } == .configured)
        // Peers on VLAN 20 reach the moved address at the spare.
        #expect(waitUntil(seconds: 10) { fabric.execute(in: 66, ["ping", "-c", "1", "-W", "1", "10.20.0.4"]).status == 0 })
    }

    /// The process's resident memory now (VmRSS), MiB.
    static func residentMiB() -> Double {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kib = Double(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
        return kib / 1024
    }

    /// The addresses that answered in `ping`'s output (`64 bytes from 10.10.0.7: …`).
    static func repliers(_ output: String) -> Set<String> {
        Set(output.split(separator: "\n").compactMap { line -> String? in
            guard let from = line.range(of: " from ") else { return nil }
            let rest = line[from.upperBound...]
            guard let end = rest.firstIndex(of: ":") else { return nil }
            return String(rest[..<end])
        })
    }
}
