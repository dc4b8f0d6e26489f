import Foundation
import Hummingbird
import HummingbirdTesting
import PlexusAPI
import PlexusCore
import PlexusNode
import PlexusStorage
import PlexusTestSupport
import Testing

@testable import PlexusPlatform

/// A store with PAN `shop` and personality `web` on node 3, and a directory of images.
final class PoolRig {
    let db: TempDatabase
    let store: PlatformStore
    let images: String
    init() throws {
        db = try TempDatabase()
        store = try PlatformStore(path: db.path)
        images = db.directory.appendingPathComponent("images").path
        try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: true)
        _ = try store.addProcessors([3, 4])
        _ = try store.createPAN("shop")
        _ = try store.addProcessor(to: "shop", name: "web", node: 3)
    }

    func image(_ name: String, bytes: Int) -> String {
        let path = images + "/" + name
        #expect(FileManager.default.createFile(atPath: path, contents: Data(count: bytes)))
        return path
    }

    /// A control node's rediscovery over this store, as `plexus control --store` runs it.
    func rediscovery(_ c: StorageDiscoveryConfiguration, node: NodeNumber = 1) -> StorageRediscovery {
        let store = self.store
        let r = StorageRediscovery(configuration: c, node: node, claimInterval: .milliseconds(20), claim: {
            try store.hasClaimableDiscoveryRequest() ? try store.claimDiscoveryRequest(by: "node \(node)") : nil
        }, apply: { result, request in
            try store.applyDiscovery(result, controlNode: "node \(node)", request: request).notes
        })
        r.start()
        return r
    }

    /// Asks for a rediscovery as `POST /v1/storage/discover` does, and waits until a control node did it.
    func rediscover(seconds: Double = 30) throws -> StorageDiscoveryRequest {
        let id = try store.requestDiscovery().id
        let done = try waitUntil(seconds: seconds) { try store.discoveryRequest(id).doneMs != nil }
        #expect(done, "discovery request \(id) not done within \(seconds) s")
        return try store.discoveryRequest(id)
    }

    func state(_ path: String) throws -> StoragePoolListing.State? {
        try store.storagePoolListing().items.first { StoragePool.key($0.path) == StoragePool.key(path) }?.state
    }

    func events(_ kind: String) throws -> [PlatformEvent] { try store.events().filter { $0.kind == kind } }
}

@Suite("The storage pool in the platform store")
struct StoragePoolStoreTests {
    @Test("image directories: files join the pool at start; a new one joins on request; an unassigned one removed leaves; an assigned one removed is an error naming PAN, personality, processor and (target, LUN)")
    func directories() throws {
        let rig = try PoolRig()
        let a = rig.image("a.img", bytes: 1 << 20), b = rig.image("b.img", bytes: 2 << 20)
        let r = rig.rediscovery(StorageDiscoveryConfiguration(directories: [rig.images], everySeconds: 0))
        defer { r.stop() }
        #expect(waitUntil(seconds: 10) { r.runs >= 1 })
        #expect(try rig.state(a) == .free && rig.state(b) == .free)
        let listed = try rig.store.storagePoolListing()
        #expect(listed.items.first { $0.path == b }?.bytes == 2 << 20 && listed.lastDiscovery?.controlNode == "node 1")
        _ = try rig.store.mapStorage("web", target: 0, lun: 2, storage: a)
        #expect(try rig.state(a) == .assigned)

        let c = rig.image("c.img", bytes: 4096)
        let joined = try rig.rediscover()
        #expect(joined.claimedBy == "node 1" && joined.summary?.contains("1 joined") == true, "\(joined)")
        #expect(try rig.state(c) == .free)
        #expect(try rig.events("storage-joined").contains { $0.subject == "storage \(c)" })

        try FileManager.default.removeItem(atPath: a)
        try FileManager.default.removeItem(atPath: b)
        _ = try rig.rediscover()
        #expect(try rig.state(b) == nil)
        #expect(try rig.events("storage-left").map(\.subject) == ["storage \(b)"])
        #expect(try rig.state(a) == .vanishedAssigned)
        let errors = try rig.events("storage-vanished-assigned")
        #expect(errors.count == 1)
        let detail = errors.first?.detail ?? ""
        #expect(detail.contains("ERROR") && detail.contains("PAN shop") && detail.contains("personality web")
                && detail.contains("node 3") && detail.contains("target 0 LUN 2"), "\(detail)")
        // The control node's log has the error too.
        // (logged once the transaction is done, just after the request is marked done)
        #expect(waitUntil(seconds: 5) { r.lines(since: 0).lines.contains { $0.contains("storage \(a)") && $0.contains("PAN shop") } })
        // Still gone: no second error.
        _ = try rig.rediscover()
        #expect(try rig.events("storage-vanished-assigned").count == 1)
    }

    @Test("two control nodes applying the same view write each change once, whichever comes first; a request is claimed once, and again only when its claim is stale")
    func twoControlNodes() throws {
        let rig = try PoolRig()
        let a = rig.image("a.img", bytes: 1 << 20)
        let config = StorageDiscoveryConfiguration(directories: [rig.images], everySeconds: 0)
        // Node 1's discovery started first (a second earlier) but is applied last.
        var first = StorageDiscovery.run(config)
        let second = StorageDiscovery.run(config)
        first.startedMs = second.startedMs - 1000
        try rig.store.applyDiscovery(second, controlNode: "node 2")
        let late = try rig.store.applyDiscovery(first, controlNode: "node 1")
        #expect(late.stale && late.notes.isEmpty)
        #expect(try rig.events("storage-joined").count == 1)
        _ = try rig.store.mapStorage("web", target: 0, lun: 0, storage: a)
        try FileManager.default.removeItem(atPath: a)
        let gone1 = StorageDiscovery.run(config), gone2 = StorageDiscovery.run(config)
        #expect(try rig.store.applyDiscovery(gone1, controlNode: "node 1").notes.count == 1)
        #expect(try rig.store.applyDiscovery(gone2, controlNode: "node 2").notes.isEmpty)
        #expect(try rig.events("storage-vanished-assigned").count == 1)
        // A request is taken by one control node only.
        let id = try rig.store.requestDiscovery().id
        #expect(try rig.store.hasClaimableDiscoveryRequest())
        #expect(try rig.store.claimDiscoveryRequest(by: "node 1") == id)
        #expect(try !rig.store.hasClaimableDiscoveryRequest())
        #expect(try rig.store.claimDiscoveryRequest(by: "node 2") == nil)
        // A claim never carried out (its control node stopped) may be taken over once stale
        // (here: any claim made before the next millisecond).
        #expect(try rig.store.hasClaimableDiscoveryRequest(staleAfterMs: -1))
        #expect(try rig.store.claimDiscoveryRequest(by: "node 2", staleAfterMs: -1) == id)
        #expect(try rig.store.discoveryRequest(id).claimedBy == "node 2")
    }

    @Test("the definition file's discovery field is read, and bad values are refused naming the field")
    func definitionField() throws {
        func parse(_ discovery: String) throws(PlexusError) -> PlatformDefinition {
            try PlatformDefinition.parse(Data("""
                {"controlNodes": [1, 2], "processingNodes": [3], "vlans": {"10": [3]}, "discovery": \(discovery)}
                """.utf8))
        }
        let d = try parse(#"{"portals": ["127.0.0.1:3260", "san"], "directories": ["/var/lib/plexus/images"], "everySeconds": 30}"#)
        #expect(d.discovery == StorageDiscoveryConfiguration(portals: ["127.0.0.1:3260", "san"],
                                                             directories: ["/var/lib/plexus/images"], everySeconds: 30))
        #expect(try parse(#"{"directories": ["/x"]}"#).discovery?.everySeconds == 60)
        #expect(try parse(#"{"everySeconds": 0}"#).discovery?.everySeconds == 0)
        for (bad, field) in [(#"[]"#, "discovery:"), (#"{"portal": []}"#, "discovery.portal:"),
                             (#"{"portals": "san"}"#, "discovery.portals:"), (#"{"portals": [3260]}"#, "discovery.portals[0]:"),
                             (#"{"portals": ["san:99999"]}"#, "discovery.portals[0]:"),
                             (#"{"directories": ["images"]}"#, "discovery.directories[0]:"),
                             (#"{"everySeconds": -5}"#, "discovery.everySeconds:"),
                             (#"{"everySeconds": "often"}"#, "discovery.everySeconds:")] {
            #expect { try parse(bad) } throws: { ($0 as? PlexusError)?.message.hasPrefix(field) == true }
        }
    }
}

@Suite("The storage pool's API routes")
struct StoragePoolAPITests {
    @Test("GET /v1/storage/pool, POST /v1/storage/discover and GET /v1/storage/discover/{id}; bad requests get clear 4xx")
    func routes() async throws {
        let t = try TempDatabase()
        let store = try PlatformStore(path: t.path)
        let app = Application(router: ManagementAPI.router(store: store, token: APITests.token))
        let api = APITests()
        try await app.test(.router) { c in
            let empty = try await api.call(c, .get, "/v1/storage/pool")
            #expect(empty.status == 200 && (empty.body["items"] as? [Any])?.isEmpty == true && empty.body["pendingRequests"] as? Int == 0)
            let posted = try await api.call(c, .post, "/v1/storage/discover")
            #expect(posted.status == 202 && posted.body["id"] as? Int == 1 && posted.body["doneMs"] == nil, "\(posted.raw)")
            #expect(try await api.call(c, .post, "/v1/storage/discover", "{}").status == 202)
            #expect(try await api.call(c, .get, "/v1/storage/pool").body["pendingRequests"] as? Int == 2)
            let shown = try await api.call(c, .get, "/v1/storage/discover/1")
            #expect(shown.status == 200 && shown.body["id"] as? Int == 1)

            let unknown = try await api.call(c, .post, "/v1/storage/discover", #"{"portal": "san"}"#)
            #expect(unknown.status == 400 && api.error(unknown).field == "portal", "\(unknown.raw)")
            let notObject = try await api.call(c, .post, "/v1/storage/discover", "[1]")
            #expect(notObject.status == 400 && api.error(notObject).field == "body")
            let word = try await api.call(c, .get, "/v1/storage/discover/latest")
            #expect(word.status == 400 && api.error(word).field == "id", "\(word.raw)")
            #expect(try await api.call(c, .get, "/v1/storage/discover/0").status == 400)
            let missing = try await api.call(c, .get, "/v1/storage/discover/99")
            #expect(missing.status == 404 && api.error(missing).kind == "not-found")
            #expect(try await api.call(c, .get, "/v1/storage/pool", token: nil).status == 401)
            #expect(try await api.call(c, .post, "/v1/storage/discover", token: "wrong").status == 401)
        }
        _ = t
    }
}

@Suite("A control node's rediscovery thread")
struct StorageRediscoveryTests {
    @Test("on a schedule: a file added to a directory joins at the next scheduled rediscovery, with no request")
    func schedule() throws {
        let rig = try PoolRig()
        let r = rig.rediscovery(StorageDiscoveryConfiguration(directories: [rig.images], everySeconds: 1))
        defer { r.stop() }
        #expect(waitUntil(seconds: 10) { r.runs >= 1 })
        let later = rig.image("later.img", bytes: 8192)
        #expect(try waitUntil(seconds: 10) { try rig.state(later) == .free })
        #expect(waitUntil(seconds: 5) { r.runs >= 2 })  // counted once applied
        #expect(try rig.store.storagePoolListing().pendingRequests == 0)
    }

    @Test("without the store: the pool is kept in memory, the definition's maps are what is assigned, and the log names the node and (target, LUN) of a vanished file")
    func inMemory() throws {
        let rig = try PoolRig()
        let a = rig.image("a.img", bytes: 4096), b = rig.image("b.img", bytes: 4096)
        let maps: [NodeNumber: [StorageMapping]] = [3: [StorageMapping(target: 0, lun: 1, path: a)]]
        let r = StorageRediscovery(configuration: StorageDiscoveryConfiguration(directories: [rig.images], everySeconds: 0), node: 2,
                                   apply: StorageRediscovery.inMemory(node: 2, maps: { maps }))
        r.start()
        defer { r.stop() }
        #expect(waitUntil(seconds: 10) { r.runs >= 1 })
        #expect(r.lines(since: 0).lines.filter { $0.contains("joined the pool") }.count == 2)
        try FileManager.default.removeItem(atPath: a)
        try FileManager.default.removeItem(atPath: b)
        r.rediscover()
        #expect(waitUntil(seconds: 10) { r.runs >= 2 })
        let lines = r.lines(since: 0).lines
        #expect(lines.contains { $0.contains("storage \(a): ERROR") && $0.contains("node 3 as target 0 LUN 1") }, "\(lines)")
        #expect(lines.contains { $0.contains("storage \(b): not found and not assigned") }, "\(lines)")
    }
}
