import PlexusCluster
import PlexusCore
import Testing

func entry(_ n: UInt32, version: UInt64 = 1, aUp: Bool = true) -> NodeEntry {
    NodeEntry(node: NodeNumber(n), version: version, adapters: [
        AdapterEntry(fabric: .a, address: .loopback(node: UInt8(n % 250), fabric: .a, port: 7000),
                     status: aUp ? .reachable : .unreachable, adapterType: "loopback", mtu: 65536,
                     subnetMask: 0xFF00_0000, classOfService: 1),
        AdapterEntry(fabric: .b, address: .loopback(node: UInt8(n % 250), fabric: .b, port: 7000),
                     adapterType: "veth", mtu: 1500, subnetMask: 0xFFFF_FF00, classOfService: 2,
                     gateway: 0xC612_0201),
    ])
}

@Suite("Cluster destination address table (seed 003)")
struct AddressTableTests {
    /// Push-pull exchange of encoded tables between random pairs until every node holds the same
    /// table; returns the rounds it took.
    func gossip(_ tables: inout [AddressTable], rng: inout SplitMix64, maxRounds: Int = 64) throws -> Int {
        for round in 1...maxRounds {
            for i in tables.indices {
                var j = Int(rng.next() % UInt64(tables.count))
                if j == i { j = (j + 1) % tables.count }
                // What travels is the encoded table, decoded (and checked) on arrival.
                let toJ = try AddressTable(decoding: tables[i].encoded())
                let toI = try AddressTable(decoding: tables[j].encoded())
                tables[j].merge(toJ)
                tables[i].merge(toI)
            }
            if Set(tables.map(\.digest)).count == 1 { return round }
        }
        return maxRounds + 1
    }

    @Test("64 nodes that start knowing only themselves converge to one identical table; a change spreads")
    func convergence() throws {
        var rng = SplitMix64(seed: 2026)
        var tables = (1...64).map { AddressTable(entries: [entry(UInt32($0))]) }
        let rounds = try gossip(&tables, rng: &rng)
        #expect(rounds <= 12, "push-pull gossip converges in O(log n) rounds")
        #expect(tables.allSatisfy { $0 == tables[0] && $0.entries.count == 64 })
        print("address table: 64 nodes converged in \(rounds) rounds (seed 2026)")

        // Node 17's fabric-A adapter goes unreachable: it bumps its own entry; everyone learns it.
        tables[16].update(entry(17, version: 2, aUp: false))
        let again = try gossip(&tables, rng: &rng)
        #expect(again <= 12)
        #expect(tables.allSatisfy { $0.destinations(of: 17).map(\.fabric) == [.b] })
        // An older copy arriving late changes nothing.
        let changed = tables[3].update(entry(17, version: 1))
        #expect(!changed)
    }

    @Test("the table round-trips through its encoding; malformed encodings are refused with a reason")
    func encoding() throws {
        let t = AddressTable(entries: (1...5).map { entry($0) })
        let bytes = t.encoded()
        #expect(try AddressTable(decoding: bytes) == t)
        // Every truncation is refused.
        for n in 0..<bytes.count {
            #expect(throws: AddressTableDecodeError.self) { try AddressTable(decoding: Array(bytes[0..<n])) }
        }
        var bad = bytes
        bad[0] = 0
        #expect(throws: AddressTableDecodeError.badMagic) { try AddressTable(decoding: bad) }
        bad = bytes
        bad[4] = 2
        #expect(throws: AddressTableDecodeError.unsupportedVersion) { try AddressTable(decoding: bad) }
        #expect(throws: AddressTableDecodeError.trailingBytes) { try AddressTable(decoding: bytes + [0]) }
        // Seeded mutations: never a crash; whatever is accepted re-encodes to a table that decodes.
        var rng = SplitMix64(seed: 7)
        var accepted = 0
        for _ in 0..<20_000 {
            var m = bytes
            for _ in 0..<(1 + Int(rng.next() % 4)) { m[Int(rng.next() % UInt64(m.count))] = UInt8(truncatingIfNeeded: rng.next()) }
            if let d = try? AddressTable(decoding: m) {
                accepted += 1
                #expect((try? AddressTable(decoding: d.encoded())) == d)
            }
        }
        print("address table: 20000 mutated encodings decoded or refused without a crash (\(accepted) accepted)")
    }

    @Test("an RVI path from an entry: reachable adapters per fabric, primary first, alternates after, the smallest MTU")
    func pathFromEntry() throws {
        let alternate = AdapterEntry(fabric: .a, address: FabricAddress(10, 0, 1, 9, port: 7000), adapterType: "veth",
                                     mtu: 9000, subnetMask: 0xFFFF_FF00)
        var e = entry(1)
        e.adapters.insert(alternate, at: 1)
        let t = AddressTable(entries: [e, entry(2, aUp: false)])
        let p = try #require(t.path(to: 1, localVI: 4097, remoteVI: 4098))
        #expect(p.peerA == e.adapters[0].address && p.alternatesA == [alternate.address])
        #expect(p.peerB == e.adapters[2].address && p.alternatesB.isEmpty)
        #expect(p.localA == 4097 && p.localB == 4097 && p.remoteA == 4098 && p.remoteB == 4098)
        // The MTU of a fabric is its adapters' smallest, when below the path MTU.
        #expect(p.mtuA == 9000 && p.mtuB == 1500)
        // A node with no reachable adapter on a fabric, or none at all, has no path.
        #expect(t.path(to: 2, localVI: 1, remoteVI: 1) == nil)
        #expect(t.path(to: 99, localVI: 1, remoteVI: 1) == nil)
        // Message size per adapter follows its MTU, and the gateway travels with the entry.
        let b = t.destinations(of: 1)[2]
        #expect(b.maxMessageBytes == 1500 - 28 - 64)
        #expect(b.gateway == 0xC612_0201)
    }

    @Test("routes to a peer on another subnet: through the peer adapter's gateway when it is on this subnet, else this node's own; none on the same subnet")
    func routesThroughGateways() {
        func ip(_ s: String) -> UInt32 { FabricAddress("\(s):0")!.ip }
        func node(_ n: UInt32, a: String, gatewayA: String?, b: String = "198.18.2.9") -> NodeEntry {
            NodeEntry.own(node: NodeNumber(n), fabricA: [FabricAddress("\(a):7000")!], fabricB: [FabricAddress("\(b):7000")!], mtu: 1500,
                          gatewayA: gatewayA.map(ip))
        }
        let me = node(1, a: "198.18.1.1", gatewayA: "198.18.1.254")
        // Same subnet on both fabrics: no route.
        #expect(me.routes(to: node(2, a: "198.18.1.2", gatewayA: "198.18.1.254")).isEmpty)
        // Another subnet whose entry names a router on that subnet only: through this node's own.
        let far = me.routes(to: node(3, a: "198.18.11.3", gatewayA: "198.18.11.254"))
        #expect(far.map(\.destination) == [ip("198.18.11.3")] && far.map(\.gateway) == [ip("198.18.1.254")])
        // Another subnet whose entry names a router on this node's subnet: through that one.
        let near = me.routes(to: node(4, a: "198.18.12.4", gatewayA: "198.18.1.253"))
        #expect(near.map(\.gateway) == [ip("198.18.1.253")])
        // No gateway at all: no route (nothing to send through).
        #expect(node(5, a: "198.18.1.5", gatewayA: nil).routes(to: node(6, a: "198.18.11.6", gatewayA: nil)).isEmpty)
        // An unreachable adapter needs none.
        var down = node(7, a: "198.18.11.7", gatewayA: "198.18.11.254")
        down.adapters[0].status = .unreachable
        #expect(me.routes(to: down).isEmpty)
    }
}
