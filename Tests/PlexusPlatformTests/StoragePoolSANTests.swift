import Foundation
import PlexusCore
import PlexusNode
import PlexusStorage
import PlexusTestSupport
import Testing

@testable import PlexusPlatform

/// tgtd's management command on `san`'s control port.
func tgtadm(_ san: ISCSITargetDaemon, _ args: [String]) throws {
    let r = try runTool(["tgtadm", "-C", "\(san.controlPort)", "--lld", "iscsi"] + args, seconds: 10)
    guard r.status == 0 else { throw TGTAdmFailure(description: "tgtadm \(args.joined(separator: " ")): \(r.output)") }
}

struct TGTAdmFailure: Error, CustomStringConvertible { var description: String }

@Suite("The storage pool against a real tgtd", .serialized, .requiresRoot, .requiresTool("tgtd"), .requiresTool("tgtadm"))
struct StoragePoolSANTests {
    @Test("two control nodes over one store: a LUN added to tgtd joins the pool on rediscovery, with READ CAPACITY's size, one event; an assigned LUN removed from tgtd is one error event naming PAN, personality, processor and (target, LUN)")
    func lunAddedAndRemoved() throws {
        let rig = try PoolRig()
        let backing1 = rig.db.directory.appendingPathComponent("lun1").path
        let backing2 = rig.db.directory.appendingPathComponent("lun2").path
        #expect(FileManager.default.createFile(atPath: backing1, contents: Data(count: 1 << 20)))
        #expect(FileManager.default.createFile(atPath: backing2, contents: Data(count: 3 << 20)))
        let san = try ISCSITargetDaemon(backing: backing1)
        defer { san.kill() }
        let portal = "127.0.0.1:\(san.port)"
        let lun1 = san.url, lun2 = "iscsi://\(portal)/\(san.iqn)/2"
        // Two control nodes over one store, as two `plexus control --store` processes.
        let r = rig.rediscovery(StorageDiscoveryConfiguration(portals: [portal], everySeconds: 0))
        let r2 = rig.rediscovery(StorageDiscoveryConfiguration(portals: [portal], everySeconds: 0), node: 2)
        defer { r.stop(); r2.stop() }
        #expect(waitUntil(seconds: 30) { r.runs >= 1 && r2.runs >= 1 })
        let first = try rig.store.storagePoolListing()
        // LUN 0 is tgtd's controller: no capacity, not storage.
        #expect(first.items.map(\.path) == [lun1], "\(first)")
        #expect(first.items.first?.bytes == 1 << 20 && first.items.first?.blockSize == 512 && first.items.first?.source == portal)
        _ = try rig.store.mapStorage("web", target: 0, lun: 1, storage: lun1)

        try tgtadm(san, ["--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "2", "-b", backing2])
        let joined = try rig.rediscover()
        print("rediscovery after LUN 2 was added: \(joined.summary ?? "?")")
        #expect(try rig.state(lun2) == .free && rig.state(lun1) == .assigned)
        #expect(try rig.store.storagePoolListing().items.first { $0.path == lun2 }?.bytes == 3 << 20)
        // Each change written once, though both control nodes discovered at start.
        #expect(try rig.events("storage-joined").map(\.subject) == ["storage \(lun1)", "storage \(lun2)"])

        try tgtadm(san, ["--op", "delete", "--mode", "logicalunit", "--tid", "1", "--lun", "1"])
        let removed = try rig.rediscover()
        print("rediscovery after assigned LUN 1 was removed: \(removed.summary ?? "?")")
        #expect(try rig.state(lun1) == .vanishedAssigned && rig.state(lun2) == .free)
        let errors = try rig.events("storage-vanished-assigned")
        print("event: \(errors.map { "\($0.subject): \($0.detail)" })")
        #expect(errors.count == 1 && errors.first?.subject == "storage \(lun1)")
        let detail = errors.first?.detail ?? ""
        #expect(detail.contains("PAN shop") && detail.contains("personality web") && detail.contains("node 3")
                && detail.contains("target 0 LUN 1"), "\(detail)")
        // The control node that carried out the request logged the error.
        #expect(waitUntil(seconds: 5) {
            (r.lines(since: 0).lines + r2.lines(since: 0).lines).contains { $0.contains(lun1) && $0.contains("ERROR") }
        })
    }

    @Test("tgtd stopped: its assigned LUN vanishes (an error event, the portal named as not reachable); tgtd started again: the rediscovery after shows it again")
    func tgtdStoppedAndBack() throws {
        let rig = try PoolRig()
        let backing = rig.db.directory.appendingPathComponent("lun1").path
        #expect(FileManager.default.createFile(atPath: backing, contents: Data(count: 1 << 20)))
        let san = try ISCSITargetDaemon(backing: backing)
        defer { san.kill() }
        let portal = "127.0.0.1:\(san.port)"
        let r = rig.rediscovery(StorageDiscoveryConfiguration(portals: [portal], everySeconds: 0))
        defer { r.stop() }
        #expect(waitUntil(seconds: 30) { r.runs >= 1 })
        #expect(try rig.state(san.url) == .free)
        _ = try rig.store.mapStorage("web", target: 0, lun: 0, storage: san.url)

        san.kill()
        let gone = try rig.rediscover()
        print("rediscovery with tgtd stopped: \(gone.summary ?? "?")")
        #expect(try rig.state(san.url) == .vanishedAssigned)
        #expect(try rig.events("storage-vanished-assigned").count == 1)
        #expect(try rig.store.storagePoolListing().lastDiscovery?.failures.contains { $0.contains(portal) } == true)

        try san.start()
        let back = try rig.rediscover()
        print("rediscovery with tgtd back: \(back.summary ?? "?")")
        #expect(try rig.state(san.url) == .assigned)
        #expect(try rig.events("storage-returned").map(\.subject) == ["storage \(san.url)"])
        #expect(try rig.store.storagePoolListing().lastDiscovery?.failures.isEmpty == true)
    }
}
