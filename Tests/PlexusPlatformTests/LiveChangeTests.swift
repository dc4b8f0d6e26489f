import Foundation
import PlexusCore
import PlexusNode
import PlexusNamespaces
import PlexusLAN
import PlexusRCLAN
import PlexusTestSupport
import Testing

@testable import PlexusPlatform

/// Waits (up to `seconds`) for `condition`, running the follower's rounds meanwhile.
func settle(_ follower: PlatformFollower, seconds: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    try waitUntil(seconds: seconds) {
        follower.poll()
        return try condition()
    }
}

@Suite("Administrative changes reach a running platform, and its failovers reach the store (root)", .serialized,
       .requiresIOUring, .requiresRoot, .requiresTool("ip"), .requiresTUN, .requiresTool("ping"), .requiresTool("curl"),
       .requiresTool("python3"))
struct LiveChangeTests {
    @Test("on a running platform: an alias bound, a workload set, a processor added from the pool, a personality migrated by hand, a failover written back to the store, a node returned, a personality removed, a crashed workload moved and its still-running node returned and reused — checked with ping and curl across namespaces")
    func storeDrivesRunningPlatform() throws {
        let fabric = try NamespaceFabric(nodes: 6, linkMTU: 9000)
        defer { fabric.teardown() }
        let t = try TempDatabase()
        let www = t.directory.path
        try Data("served by the personality web\n".utf8).write(to: URL(fileURLWithPath: www + "/index.html"))
        let store = try PlatformStore(path: t.path)
        try store.addProcessors([3, 4, 5, 6])
        _ = try store.createPAN("shop")
        _ = try store.addVLAN(10, to: "shop")
        _ = try store.addProcessor(to: "shop", name: "web", node: 4)
        _ = try store.attachNIC("web", vlan: 10)
        _ = try store.bindIP("web", vlan: 10, address: "10.10.0.4/24")
        _ = try store.addProcessor(to: "shop", name: "client", node: 3)
        _ = try store.attachNIC("client", vlan: 10)
        _ = try store.bindIP("client", vlan: 10, address: "10.10.0.3/24")
        let base = PlatformDefinition(controlNodes: [1, 2], processingNodes: [], vlans: [:])
        let (d, macs) = try store.definition(over: base)
        let p = try LANPlatform(d, macState: t.directory.path + "/mac-counter", fabric: fabric, knownMACs: macs,
                                consoleDirectory: t.directory.path)
        defer { p.stop() }
        let follower = PlatformFollower(store: store, base: base, platform: p, revision: d.revision)
        func ping(_ ip: String) -> Bool { fabric.execute(in: 3, ["ping", "-c", "1", "-W", "1", ip]).status == 0 }
        func fetch() -> String { fabric.execute(in: 3, ["curl", "-s", "-m", "2", "http://10.10.0.4:8080/"]).output }
        #expect(ping("10.10.0.4"))
        #expect(!ping("10.10.0.40"))

        // An alias bound to web's NIC: node 4's kernel answers for it.
        _ = try store.bindIP("web", vlan: 10, address: "10.10.0.40/24")
        #expect(settle(follower) { ping("10.10.0.40") }, "\(follower.log)")
        // A workload set: it starts in node 4's namespace.
        _ = try store.setWorkload("web", command: try FailoverDrill.webService(address: "0.0.0.0", directory: www))
        #expect(settle(follower) { fetch().contains("served by the personality web") }, "\(follower.log)")
        // A processor added to the PAN from the free pool, with a NIC and an address.
        _ = try store.addProcessor(to: "shop", name: "db", node: 5)
        _ = try store.attachNIC("db", vlan: 10)
        _ = try store.bindIP("db", vlan: 10, address: "10.10.0.5/24")
        #expect(settle(follower) { ping("10.10.0.5") }, "\(follower.log)")

        // web migrated by hand to node 6: same MAC, addresses and workload there; node 4 back
        // in the pool, waiting as a spare.
        let mac = try store.personality("web").nics[0].mac
        _ = try store.migrate("web", to: 6, fence: false, reason: "by hand")
        #expect(settle(follower) { (try? p.ethernet(4) { $0.registration == .standby && $0.nics.isEmpty }) ?? false }, "\(follower.log)")
        #expect(settle(follower) { p.personalities.workload(of: 6)?.isRunning == true && fetch().contains("personality web") }, "\(follower.log)")
        #expect(p.personalities.workload(of: 4) == nil)
        #expect(fabric.execute(in: 6, ["ip", "addr", "show", "pvl10"]).output.contains(mac.description))
        #expect(fabric.execute(in: 3, ["ip", "neigh", "show", "10.10.0.4"]).output.contains(mac.description))

        // Node 6 dies: the control nodes move web to node 4 (free again), and the follower
        // writes the failover into the store: web on node 4, node 6 fenced, the timeline logged.
        p.kill(node: 6)
        #expect(settle(follower) { (try? store.personality("web").node) == 4 }, "\(follower.log)")
        #expect(try store.processors().first { $0.node == 6 }?.state == .fenced)
        #expect(settle(follower) { fetch().contains("personality web") })
        #expect(settle(follower) { (try? store.events().contains { $0.kind == "failover" && $0.detail.contains("node 6 → spare node 4") }) ?? false },
                "\(follower.log)")
        // The store's next revisions are adopted (the failover is known: nothing is deferred).
        #expect(settle(follower) { follower.revision == (try? store.revision()) })

        // Node 6 returned to the pool by the administrator: the control nodes unfence it.
        _ = try store.returnProcessor(6)
        #expect(settle(follower) { (try? p.server(0) { !$0.fenced.contains(6) }) ?? false }, "\(follower.log)")
        // db removed: node 5 releases its NIC and waits as a spare.
        try store.removePersonality("db")
        #expect(settle(follower) { (try? p.ethernet(5) { $0.registration == .standby }) ?? false }, "\(follower.log)")
        #expect(!ping("10.10.0.5"))

        // web's workload crashes on node 4: the node is alive, its personality moves to node 5
        // and node 4 is fenced. Returned to the pool, node 4 (still running) waits as a spare
        // again and takes the next personality it is given.
        #expect(p.personalities.crashWorkload(of: 4))
        #expect(settle(follower) { (try? store.personality("web").node) == 5 }, "\(follower.log)")
        #expect(try store.processors().first { $0.node == 4 }?.state == .fenced)
        #expect(settle(follower) { fetch().contains("personality web") })
        _ = try store.returnProcessor(4)
        #expect(settle(follower) { (try? p.ethernet(4) { $0.registration == .standby }) ?? false }, "\(follower.log)")
        _ = try store.addProcessor(to: "shop", name: "cache", node: 4)
        _ = try store.attachNIC("cache", vlan: 10)
        _ = try store.bindIP("cache", vlan: 10, address: "10.10.0.44/24")
        #expect(settle(follower) { ping("10.10.0.44") }, "\(follower.log)")
        #expect(try p.ethernet(3) { $0.conflictingConfigurations } == 0)
        print("live changes: " + follower.log.joined(separator: " | "))
    }
}
