import Foundation
import PlexusCore
import PlexusLAN
import PlexusNode
import Testing

@testable import PlexusPlatform

/// A database file in a fresh temporary directory, removed afterwards.
final class TempDatabase {
    let directory: URL
    var path: String { directory.appendingPathComponent("platform.sqlite").path }
    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("plexus-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: directory) }
}

/// Expects `body` to be refused with `kind`, naming `field`.
func expectRefused(_ kind: PlatformError.Kind, field: String?, sourceLocation: SourceLocation = #_sourceLocation,
                   _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected a refusal (\(kind), field \(field ?? "-")), but it succeeded", sourceLocation: sourceLocation)
    } catch let e as PlatformError {
        #expect(e.kind == kind, "\(e)", sourceLocation: sourceLocation)
        #expect(e.field == field, "\(e)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected a PlatformError, got \(error)", sourceLocation: sourceLocation)
    }
}

@Suite("Platform state (SQLite)")
struct StoreTests {
    @Test("a PAN with a personality: pool, VLANs, NICs, IPs, storage and workload")
    func happyPath() throws {
        let t = try TempDatabase()
        let s = try PlatformStore(path: t.path, serial: 7)
        try s.addProcessors([3, 4, 5])
        _ = try s.createPAN("web")
        _ = try s.addVLAN(10, to: "web")
        _ = try s.addVLAN(11, to: "web")
        var p = try s.addProcessor(to: "web", name: "frontend")
        #expect(p.node == 3)  // the lowest free processor
        p = try s.attachNIC("frontend", vlan: 10)
        p = try s.attachNIC("frontend", vlan: 11, promiscuousAllowed: true)
        #expect(p.nics.map(\.mac.description) == ["02:00:07:00:00:00", "02:00:07:00:00:01"])
        #expect(p.nics.allSatisfy { $0.mac.isLocallyAdministered && !$0.mac.isGroup })
        p = try s.bindIP("frontend", vlan: 10, address: "10.10.0.3/24")
        p = try s.bindIP("frontend", vlan: 10, address: "10.10.0.30/24")  // an alias
        p = try s.mapStorage("frontend", target: 0, lun: 0, storage: "/srv/luns/frontend-root")
        p = try s.mapStorage("frontend", target: 0, lun: 1, storage: "/srv/luns/shared", access: .readOnly)
        p = try s.setWorkload("frontend", command: "python3 -m http.server 8080")
        #expect(p.ips.map(\.address) == ["10.10.0.3/24", "10.10.0.30/24"])
        #expect(p.storage.count == 2)
        #expect(try s.personality(node: 3) == p)
        #expect(try s.processors().map(\.state) == [.assigned, .free, .free])
        #expect(try s.pan("web") == PAN(name: "web", vlans: [10, 11], personalities: ["frontend"]))
        // The LAN layer's view: one binding per NIC, on the processor holding the personality.
        #expect(try s.nicBindings().map(\.node) == [3, 3])
        #expect(try s.events().count == 14)  // one per node added and one per command
    }

    @Test("bad requests are refused, name the field, and change nothing")
    func refusals() throws {
        let t = try TempDatabase()
        let s = try PlatformStore(path: t.path)
        try s.addProcessors([1, 2])
        _ = try s.createPAN("a")
        _ = try s.createPAN("b")
        _ = try s.addVLAN(10, to: "a")
        _ = try s.addVLAN(20, to: "b")
        _ = try s.addProcessor(to: "a", name: "x")
        _ = try s.attachNIC("x", vlan: 10)
        let before = try s.events().count

        expectRefused(.invalid, field: "name") { _ = try s.createPAN("Bad Name") }
        expectRefused(.invalid, field: "name") { _ = try s.createPAN("") }
        expectRefused(.conflict, field: "name") { _ = try s.createPAN("a") }
        expectRefused(.invalid, field: "vlan") { _ = try s.addVLAN(4095, to: "a") }
        expectRefused(.conflict, field: "vlan") { _ = try s.addVLAN(20, to: "a") }  // PAN b's
        expectRefused(.notFound, field: "pan") { _ = try s.addVLAN(30, to: "nope") }
        expectRefused(.invalid, field: "nodes") { try s.addProcessors([0]) }
        expectRefused(.invalid, field: "nodes") { try s.addProcessors([9, 9]) }
        // Node 8 is new but 1 is not: neither is added.
        expectRefused(.conflict, field: "nodes") { try s.addProcessors([8, 1]) }
        #expect(try s.processors().map(\.node) == [1, 2])
        expectRefused(.notFound, field: "personality") { _ = try s.attachNIC("nope", vlan: 10) }
        expectRefused(.invalid, field: "vlan") { _ = try s.attachNIC("x", vlan: 20) }  // another PAN's VLAN: isolation
        expectRefused(.conflict, field: "vlan") { _ = try s.attachNIC("x", vlan: 10) }
        expectRefused(.invalid, field: "address") { _ = try s.bindIP("x", vlan: 10, address: "10.0.0.300/24") }
        expectRefused(.invalid, field: "address") { _ = try s.bindIP("x", vlan: 10, address: "10.0.0.1") }
        expectRefused(.invalid, field: "address") { _ = try s.bindIP("x", vlan: 10, address: "10.0.0.0/24") }
        expectRefused(.invalid, field: "address") { _ = try s.bindIP("x", vlan: 10, address: "10.0.0.255/24") }
        expectRefused(.invalid, field: "vlan") { _ = try s.bindIP("x", vlan: 20, address: "10.0.0.5/24") }
        expectRefused(.invalid, field: "target") { _ = try s.mapStorage("x", target: 256, lun: 0, storage: "/d") }
        expectRefused(.invalid, field: "lun") { _ = try s.mapStorage("x", target: 0, lun: -1, storage: "/d") }
        expectRefused(.invalid, field: "storage") { _ = try s.mapStorage("x", target: 0, lun: 0, storage: "") }
        expectRefused(.invalid, field: "command") { _ = try s.setWorkload("x", command: "  ") }
        expectRefused(.conflict, field: "node") { _ = try s.addProcessor(to: "b", node: 1) }  // assigned
        expectRefused(.notFound, field: "node") { _ = try s.addProcessor(to: "b", node: 42) }
        expectRefused(.conflict, field: "node") { try s.removeProcessor(1) }
        expectRefused(.conflict, field: "node") { _ = try s.returnProcessor(2) }  // free, not fenced
        expectRefused(.conflict, field: "vlan") { _ = try s.removeVLAN(10, from: "a") }  // x's NIC is on it
        expectRefused(.notFound, field: "vlan") { _ = try s.removeVLAN(20, from: "a") }
        expectRefused(.invalid, field: "to") { _ = try s.migrate("x", to: 1, fence: false, reason: "test") }
        _ = try s.addProcessor(to: "b", name: "y")  // takes node 2: the pool is now empty
        expectRefused(.conflict, field: "node") { _ = try s.addProcessor(to: "a") }
        expectRefused(.conflict, field: "to") { _ = try s.migrate("x", fence: true, reason: "test") }
        #expect(try s.events().count == before + 1, "only the one accepted command left an event")
        #expect(try s.personality("x").node == 1)
    }

    @Test("storage: shared read-only by many, read-write by one")
    func storageAccess() throws {
        let t = try TempDatabase()
        let s = try PlatformStore(path: t.path)
        try s.addProcessors([1, 2])
        _ = try s.createPAN("a")
        _ = try s.addProcessor(to: "a", name: "p")
        _ = try s.addProcessor(to: "a", name: "q")
        _ = try s.mapStorage("p", target: 0, lun: 0, storage: "/luns/shared", access: .readOnly)
        _ = try s.mapStorage("q", target: 1, lun: 0, storage: "/luns/shared", access: .readOnly)
        _ = try s.mapStorage("p", target: 0, lun: 1, storage: "/luns/p-root")
        expectRefused(.conflict, field: "storage") { _ = try s.mapStorage("q", target: 0, lun: 0, storage: "/luns/p-root", access: .readOnly) }
        expectRefused(.conflict, field: "storage") { _ = try s.mapStorage("q", target: 0, lun: 0, storage: "/luns/shared") }
        expectRefused(.conflict, field: "lun") { _ = try s.mapStorage("p", target: 0, lun: 0, storage: "/luns/other") }
    }

    @Test("a restarted control node has every PAN, binding and the MAC counter; no MAC is handed out twice")
    func persistence() throws {
        let t = try TempDatabase()
        var handedOut: Set<String> = []
        do {
            let s = try PlatformStore(path: t.path, serial: 2)
            try s.addProcessors([5, 6])
            _ = try s.createPAN("db")
            _ = try s.addVLAN(42, to: "db")
            _ = try s.addProcessor(to: "db", name: "primary", node: 6)
            for p in try s.attachNIC("primary", vlan: 42).nics { handedOut.insert(p.mac.description) }
            _ = try s.bindIP("primary", vlan: 42, address: "192.168.42.6/24")
            _ = try s.mapStorage("primary", target: 2, lun: 3, storage: "/dev/vdb")
            _ = try s.detachNIC("primary", vlan: 42)  // the MAC is retired, not reused
            for p in try s.attachNIC("primary", vlan: 42).nics { handedOut.insert(p.mac.description) }
            _ = try s.bindIP("primary", vlan: 42, address: "192.168.42.6/24")
        }
        let s = try PlatformStore(path: t.path, serial: 9)  // the database keeps its own serial
        #expect(try s.appliedMigrations() == PlatformStore.migrations)
        #expect(try s.pans().map(\.name) == ["db"])
        let p = try s.personality(node: 6)
        #expect(p.name == "primary" && p.ips.map(\.address) == ["192.168.42.6/24"] && p.storage.map(\.path) == ["/dev/vdb"])
        #expect(try s.macsHandedOut() == 2)
        _ = try s.addProcessor(to: "db", name: "replica")
        let mac = try s.attachNIC("replica", vlan: 42).nics[0].mac.description
        #expect(!handedOut.contains(mac))
        #expect(mac == "02:00:02:00:00:02")
    }

    @Test("migration: the spare inherits MACs, VLANs, IPs, storage and workload; the failed node is fenced until returned")
    func migration() throws {
        let t = try TempDatabase()
        let s = try PlatformStore(path: t.path)
        try s.addProcessors([3, 4, 5])
        _ = try s.createPAN("svc")
        _ = try s.addVLAN(10, to: "svc")
        _ = try s.addVLAN(20, to: "svc")
        _ = try s.addProcessor(to: "svc", name: "web", node: 3)
        _ = try s.attachNIC("web", vlan: 10)
        _ = try s.attachNIC("web", vlan: 20)  // two VLANs (claims 3 and 6)
        _ = try s.bindIP("web", vlan: 10, address: "10.10.0.3/24")
        _ = try s.bindIP("web", vlan: 20, address: "10.20.0.3/24")
        _ = try s.mapStorage("web", target: 0, lun: 0, storage: "/luns/web-root")
        _ = try s.mapStorage("web", target: 0, lun: 1, storage: "/luns/web-data")  // two storage maps
        let before = try s.setWorkload("web", command: "sleep 1000")

        let m = try s.migrate("web", fence: true, reason: "heartbeats stopped on both fabrics")
        #expect(m.from == 3 && m.to == 4 && m.fenced)
        var moved = before
        moved.node = 4
        moved.generation = 1
        #expect(m.personality == moved, "everything but the processor is the same")
        #expect(try s.personality(node: 4) == moved)
        let fenced = try s.processors().first { $0.node == 3 }!
        #expect(fenced.state == .fenced && fenced.personality == nil && fenced.fencedReason == "heartbeats stopped on both fabrics")
        expectRefused(.notFound, field: "node") { _ = try s.personality(node: 3) }
        // A fenced node is not a spare.
        let again = try s.migrate("web", fence: false, reason: "by hand")
        #expect(again.to == 5)
        #expect(try s.processors().map(\.state) == [.fenced, .free, .assigned])
        #expect(try s.returnProcessor(3).state == .free)
        #expect(try s.events().map(\.kind).suffix(3) == ["personality-migrated", "personality-migrated", "processor-returned"])
    }

    @Test("deleting a PAN frees its processors and VLANs; its MACs stay retired")
    func deletePAN() throws {
        let t = try TempDatabase()
        let s = try PlatformStore(path: t.path)
        try s.addProcessors([1, 2])
        _ = try s.createPAN("tmp")
        _ = try s.addVLAN(7, to: "tmp")
        _ = try s.addProcessor(to: "tmp")
        _ = try s.attachNIC("tmp-1", vlan: 7)
        try s.deletePAN("tmp")
        #expect(try s.pans().isEmpty)
        #expect(try s.personalities().isEmpty)
        #expect(try s.processors().allSatisfy { $0.state == .free })
        _ = try s.createPAN("next")
        _ = try s.addVLAN(7, to: "next")  // the VLAN number is free again
        _ = try s.addProcessor(to: "next")
        #expect(try s.attachNIC("next-1", vlan: 7).nics[0].mac.description == "02:00:01:00:00:01")
    }

    @Test("concurrent administrative commands: all applied once, no MAC twice, nothing lost")
    func concurrentCommands() async throws {
        let t = try TempDatabase()
        let path = t.path
        let s = try PlatformStore(path: path)
        try s.addProcessors((1...64).map { NodeNumber(UInt32($0)) })
        // 8 writers, half through a second store on the same file (two control nodes on one host).
        let other = try PlatformStore(path: path)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<8 {
                let store = w % 2 == 0 ? s : other
                group.addTask {
                    let pan = "pan-\(w)"
                    _ = try store.createPAN(pan)
                    _ = try store.addVLAN(100 + w, to: pan)
                    for k in 0..<4 {
                        let p = try store.addProcessor(to: pan, name: "\(pan)-p\(k)")
                        _ = try store.attachNIC(p.name, vlan: 100 + w)
                        _ = try store.bindIP(p.name, vlan: 100 + w, address: "10.\(w).0.\(k + 1)/24")
                    }
                }
            }
            try await group.waitForAll()
        }
        let all = try s.personalities()
        #expect(all.count == 32)
        #expect(Set(all.compactMap(\.node)).count == 32, "no processor given twice")
        #expect(Set(all.flatMap(\.nics).map(\.mac)).count == 32, "no MAC handed out twice")
        #expect(try s.macsHandedOut() == 32)
        #expect(try s.processors().filter { $0.state == .free }.count == 32)
        print("concurrent commands: 8 writers, 104 commands, 32 personalities, 32 distinct MACs and processors")
    }
}
