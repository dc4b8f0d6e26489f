import Foundation
import PlexusCore
import PlexusNode
import PlexusTestSupport
import PlexusNamespaces
import PlexusLAN
import PlexusPlatform

/// Step 6 of `plexus demo` (root): the platform defined through the platform store, as an
/// administrator would with `plexus pan` and `plexus personality`: two PANs, a web service on
/// one processor of PAN `shop`, a client on another, a builder in PAN `lab`, and two spares in
/// the free pool. The web service's processor is killed; the control nodes move its whole
/// personality to a spare; the client's requests succeed again. Prints the personality before
/// and after and the timeline.
func failoverShowcase() throws -> Bool {
    print("\n6. processor failover: a spare inherits the whole personality")
    if let why = NamespaceFabric.unavailableReason ?? (FileManager.default.fileExists(atPath: "/dev/net/tun") ? nil : "no /dev/net/tun") {
        print("   skipped: \(why) (run as root to see a web service's processor fail over)")
        return true
    }
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-demo-platform-\(getpid())").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try Data("hello from the shop's web service\n".utf8).write(to: URL(fileURLWithPath: dir + "/index.html"))

    // The administrator's definition, in the store (what `plexus pan` / `plexus personality` do).
    let store = try PlatformStore(path: dir + "/platform.sqlite")
    _ = try store.addProcessors([3, 4, 5, 6, 7])
    _ = try store.createPAN("shop")
    _ = try store.addVLAN(10, to: "shop")
    _ = try store.createPAN("lab")
    _ = try store.addVLAN(20, to: "lab")
    _ = try store.addProcessor(to: "shop", name: "web", node: 4)
    _ = try store.attachNIC("web", vlan: 10)
    _ = try store.bindIP("web", vlan: 10, address: "10.10.0.4/24")
    _ = try store.mapStorage("web", target: 0, lun: 0, storage: "iqn.2026-11.plexus:shop-web-root")
    _ = try store.mapStorage("web", target: 0, lun: 1, storage: "iqn.2026-11.plexus:shop-catalog", access: .readOnly)
    _ = try store.setWorkload("web", command: try FailoverDrill.webService(address: "10.10.0.4", directory: dir))
    _ = try store.addProcessor(to: "shop", name: "client", node: 3)
    _ = try store.attachNIC("client", vlan: 10)
    _ = try store.bindIP("client", vlan: 10, address: "10.10.0.3/24")
    _ = try store.addProcessor(to: "lab", name: "builder", node: 6)
    _ = try store.attachNIC("builder", vlan: 20)
    _ = try store.bindIP("builder", vlan: 20, address: "10.20.0.6/24")
    func show(_ p: Personality) -> String {
        "node \(p.node.map(String.init) ?? "-"), MAC \(p.nics.map(\.mac.description).joined(separator: ", ")), IP \(p.ips.map(\.address).joined(separator: ", ")), "
            + "storage " + p.storage.map { "(\($0.target), \($0.lun)) → \($0.path) \($0.access.rawValue)" }.joined(separator: ", ")
    }
    let before = try store.personality("web")
    print("   PANs shop (VLAN 10: web on node 4, client on node 3) and lab (VLAN 20: builder on node 6); free pool: nodes 5 and 7")
    print("   web: " + show(before))

    let (definition, macs) = try store.lanDefinition(controlNodes: [1, 2])
    let fabric = try NamespaceFabric(nodes: 7, linkMTU: 9000)
    defer { fabric.teardown() }
    let p = try LANPlatform(definition, macState: dir + "/macs", fabric: fabric, knownMACs: macs, consoleDirectory: dir)
    defer { p.stop() }
    print("   control nodes 1 and 2 up; every node in its own namespace; the web service runs on node 4")
    let r = try FailoverDrill.run(p, fabric: fabric, client: 3, service: 4, url: "http://10.10.0.4:8080/")
    try store.recordFailover(r.record)
    let after = try store.personality("web")
    print("   node 4 killed (kill -9: its engine and its service); the client on node 3 kept requesting:")
    for line in r.timeline { print("     " + line) }
    print("   web: " + show(after))
    let fenced = try store.processors().first { $0.node == 4 }
    print("   node 4 is \(fenced?.state.rawValue ?? "?") until an administrator returns it (`plexus pool return 4`)")
    // The spare's console as the control nodes keep it (`plexus console 5`): its own log, the
    // control nodes' notes on the take-over, its workload's output.
    if let archive = p.archive {
        let text = String(decoding: archive.read(node: r.record.spare).text, as: UTF8.self)
        print("   node \(r.record.spare)'s console at the control nodes (\(archive.path(of: r.record.spare))):")
        for line in text.split(separator: "\n").suffix(6) { print("     " + line.prefix(150)) }
    }
    var ok = true
    func check(_ what: String, _ passed: Bool) {
        print("   \(passed ? "ok " : "FAILED") \(what)")
        ok = ok && passed
    }
    check("the spare (node \(r.record.spare)) has the same MAC, IP and storage mapping", after.node == r.record.spare
          && after.nics == before.nics && after.ips == before.ips && after.storage == before.storage)
    check(String(format: "the client's requests succeed again, %.0f ms after the kill (%d failed meanwhile)", r.totalMilliseconds, r.failedRequests),
          r.repliesAfter >= 1)
    check("node 4 is fenced", fenced?.state == .fenced)
    return ok
}
