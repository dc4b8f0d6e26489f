import PlexusStorage
import Testing

@Suite("The storage pool's rediscovery rule")
struct StoragePoolCompareTests {
    static let a = StorageItem(path: "iscsi://san:3260/iqn.2026-12.org.example:a/1", bytes: 1 << 20, blockSize: 512, source: "san:3260")
    static let b = StorageItem(path: "iscsi://san:3260/iqn.2026-12.org.example:a/2", bytes: 2 << 20, blockSize: 512, source: "san:3260")
    static let f = StorageItem(path: "/var/lib/plexus/images/web.img", bytes: 4 << 20, blockSize: 512, source: "/var/lib/plexus/images")

    @Test("the first discovery: everything found joins")
    func firstDiscovery() {
        let c = StoragePool.compare(prior: StoragePool(), discovered: [Self.f, Self.a], assigned: [])
        #expect(c.joined == [Self.f, Self.a])  // by path
        #expect(c.left.isEmpty && c.vanishedAssigned.isEmpty && c.returned.isEmpty && c.resized.isEmpty)
        #expect(c.pool == StoragePool(items: [Self.a, Self.f]))
    }

    @Test("the same view again changes nothing")
    func unchanged() {
        let prior = StoragePool(items: [Self.a, Self.b])
        let c = StoragePool.compare(prior: prior, discovered: [Self.b, Self.a], assigned: [StoragePool.key(Self.a.path)])
        #expect(c.isEmpty)
        #expect(c.pool == prior)
    }

    @Test("new storage joins; unassigned storage that vanished leaves")
    func joinAndLeave() {
        let c = StoragePool.compare(prior: StoragePool(items: [Self.a]), discovered: [Self.b], assigned: [])
        #expect(c.joined == [Self.b] && c.left == [Self.a] && c.vanishedAssigned.isEmpty)
        #expect(c.pool.entries.keys.sorted() == [Self.b.path])
    }

    @Test("assigned storage that vanished is an error once, stays in the pool absent, and is reported again when it returns")
    func vanishedAssigned() {
        let assigned: Set<String> = [Self.a.path]
        let gone = StoragePool.compare(prior: StoragePool(items: [Self.a, Self.b]), discovered: [Self.b], assigned: assigned)
        #expect(gone.vanishedAssigned == [Self.a] && gone.left.isEmpty && gone.joined.isEmpty)
        #expect(gone.pool.entries[Self.a.path]?.present == false)
        // Still gone: not reported again.
        let still = StoragePool.compare(prior: gone.pool, discovered: [Self.b], assigned: assigned)
        #expect(still.isEmpty && still.pool == gone.pool)
        // Back: returned, present again.
        let back = StoragePool.compare(prior: still.pool, discovered: [Self.a, Self.b], assigned: assigned)
        #expect(back.returned == [Self.a] && back.joined.isEmpty && back.vanishedAssigned.isEmpty)
        #expect(back.pool == StoragePool(items: [Self.a, Self.b]))
    }

    @Test("vanished storage unmapped meanwhile leaves the pool; found again unassigned, it joins")
    func vanishedThenUnmapped() {
        let gone = StoragePool.compare(prior: StoragePool(items: [Self.a]), discovered: [], assigned: [Self.a.path])
        let unmapped = StoragePool.compare(prior: gone.pool, discovered: [], assigned: [])
        #expect(unmapped.left == [Self.a] && unmapped.pool.entries.isEmpty)
        let backUnassigned = StoragePool.compare(prior: gone.pool, discovered: [Self.a], assigned: [])
        #expect(backUnassigned.joined == [Self.a] && backUnassigned.returned.isEmpty)
    }

    @Test("a size change is reported; a mapping's URL without a port is the discovered URL")
    func resizedAndKeys() {
        var bigger = Self.a
        bigger.bytes *= 2
        let c = StoragePool.compare(prior: StoragePool(items: [Self.a]), discovered: [bigger], assigned: [])
        #expect(c.resized == [bigger] && c.joined.isEmpty)
        #expect(StoragePool.key("iscsi://san/iqn.2026-12.org.example:a/1") == Self.a.path)
        #expect(StoragePool.key("/a/file") == "/a/file")
        // An assigned mapping written without the port protects the discovered LUN.
        let gone = StoragePool.compare(prior: StoragePool(items: [Self.a]), discovered: [],
                                       assigned: [StoragePool.key("iscsi://san/iqn.2026-12.org.example:a/1")])
        #expect(gone.vanishedAssigned == [Self.a])
    }

    @Test("each change is worded as an event; only a vanished assigned item is an error")
    func notes() {
        let c = StoragePool.compare(prior: StoragePool(items: [Self.a, Self.b]), discovered: [Self.f], assigned: [Self.a.path])
        let notes = c.notes(by: "control node 1") { $0 == Self.a.path ? "personality web (node 3) in PAN shop as target 0 LUN 1" : "?" }
        #expect(notes.map(\.kind) == ["storage-joined", "storage-left", "storage-vanished-assigned"])
        #expect(notes.filter(\.isError).count == 1)
        #expect(notes[2].detail.contains("PAN shop") && notes[2].detail.contains("node 3") && notes[2].detail.contains("LUN 1"))
    }

    @Test("a discovery configuration's bad values are refused naming the field", arguments: [
        (StorageDiscoveryConfiguration(portals: ["san:0"]), "portals[0]"),
        (StorageDiscoveryConfiguration(portals: ["ok", "a b"]), "portals[1]"),
        (StorageDiscoveryConfiguration(directories: ["relative/dir"]), "directories[0]"),
        (StorageDiscoveryConfiguration(everySeconds: -1), "everySeconds"),
        (StorageDiscoveryConfiguration(everySeconds: 100_000), "everySeconds"),
    ])
    func refusals(_ c: StorageDiscoveryConfiguration, _ field: String) {
        #expect { try c.validate() } throws: { "\($0)".hasPrefix(field + ":") }
        #expect(throws: Never.self) { try StorageDiscoveryConfiguration(portals: ["127.0.0.1:3260", "san", "[::1]:3261"], directories: ["/tmp"]).validate() }
    }
}
