import Dispatch
import Foundation
import PlexusCluster
import PlexusCore
import PlexusRCLAN
import PlexusTestSupport
import Synchronization
import Testing

private func nanosNow() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

/// An entry of the size a real one has at most per adapter: a 32-byte type and a gateway.
private func wideEntry(_ n: UInt32, version: UInt64 = 1) -> NodeEntry {
    NodeEntry(node: NodeNumber(n), version: version, adapters: [
        AdapterEntry(fabric: .a, address: FabricAddress(ip: 0x0A00_0000 | n, port: 7000), adapterType: "ethernet-adapter-of-fabric-a-000",
                     mtu: 9000, subnetMask: 0xFFFF_0000, classOfService: 1, gateway: 0x0A00_0001),
        AdapterEntry(fabric: .b, address: FabricAddress(ip: 0x0B00_0000 | n, port: 7000), adapterType: "ethernet-adapter-of-fabric-b-000",
                     mtu: 1500, subnetMask: 0xFFFF_0000, classOfService: 2, gateway: 0x0B00_0001),
    ])
}

/// Exchanges run without a fabric: messages are handed from one ``TableExchange`` to another,
/// in order per direction, as an RVI would deliver them.
private struct Wire {
    var nodes: [TableExchange]
    let links: [(Int, Int)]
    var messages = 0
    var bytes = 0
    var largest = 0

    func neighbours(_ i: Int) -> [Int] {
        links.compactMap { $0.0 == i ? $0.1 : $0.1 == i ? $0.0 : nil }
    }

    /// Node `i`'s changed entries, as it pushes them to its neighbours.
    mutating func pushes(_ i: Int) -> [(to: Int, from: Int, bytes: [UInt8])] {
        nodes[i].pushMessages(to: neighbours(i).map { UInt32($0) })
            .sorted { $0.key < $1.key }
            .flatMap { p in p.value.map { (Int(p.key), i, $0) } }
    }

    /// Every node pushes what changed and sends each neighbour its digest; answers (and pushes
    /// of what they change) are delivered until none is left, in order. Returns the rounds until
    /// every table is identical (or `maxRounds + 1`).
    mutating func gossip(maxRounds: Int = 32) -> Int {
        for round in 1...maxRounds {
            var queue: [(to: Int, from: Int, bytes: [UInt8])] = []
            for i in nodes.indices { queue += pushes(i) }
            for (a, b) in links {
                for m in nodes[a].digestMessages() { queue.append((b, a, m)) }
                for m in nodes[b].digestMessages() { queue.append((a, b, m)) }
            }
            var k = 0
            while k < queue.count {
                let (to, from, m) = queue[k]
                k += 1
                messages += 1
                bytes += m.count
                largest = max(largest, m.count)
                for r in nodes[to].handle(m, from: UInt32(from)) { queue.append((from, to, r)) }
                if nodes[to].hasChanges { queue += pushes(to) }
                precondition(k < 1_000_000, "an exchange that does not end")
            }
            if nodes.allSatisfy({ $0.table == nodes[0].table }) { return round }
        }
        return maxRounds + 1
    }
}

/// Reads of one node, from the test's thread.
private struct NodeView: Sendable {
    var table: AddressTable
    var stats: DistributionStatistics
}

private func address(_ t: EngineThread, _ f: Fabric) -> FabricAddress {
    FabricAddress(t.info.ports[Int(f.rawValue)].address)!
}

/// Node `n`'s own entry: one adapter per fabric, at the addresses its engine bound.
private func ownEntry(_ n: UInt32, _ t: EngineThread, version: UInt64 = 1, aUp: Bool = true, classOfService: UInt8 = 1) -> NodeEntry {
    NodeEntry(node: NodeNumber(n), version: version, adapters: [
        AdapterEntry(fabric: .a, address: address(t, .a), status: aUp ? .reachable : .unreachable, adapterType: "loopback",
                     mtu: 65536, subnetMask: 0xFFFF_FF00, classOfService: classOfService),
        AdapterEntry(fabric: .b, address: address(t, .b), adapterType: "loopback", mtu: 65536,
                     subnetMask: 0xFFFF_FF00, classOfService: classOfService),
    ])
}

private func engineConfiguration(_ n: UInt32) -> EngineConfiguration {
    var c = EngineConfiguration.loopback(node: UInt8(n))
    c.poolFrames = 256
    c.receiveBuffers = 256
    return c
}

private func startNode(_ n: UInt32, _ c: EngineConfiguration, layer: RCLANConfiguration = RCLANConfiguration()) throws -> EngineThread {
    try EngineThread.start(c) { try! RCLAN(configuration: layer, delegate: TableDistributor(node: NodeNumber(n))) }
}

/// The RVI from node `me` to node `peer`: VI number = the other end's node number on each side.
private func path(_ me: UInt32, to peer: UInt32, _ peerThread: EngineThread) -> RVIPath {
    RVIPath(localA: peer, localB: peer, peerA: address(peerThread, .a), peerB: address(peerThread, .b),
            remoteA: me, remoteB: me)
}

/// Opens the RVIs to `peers`, adds them as neighbours and sets the node's own entry, in one
/// trip to the engine thread. Returns the RVIs by peer node.
@discardableResult
private func join(_ n: UInt32, _ t: EngineThread, peers: [(UInt32, EngineThread)], entry: NodeEntry) throws -> [UInt32: RVI] {
    let paths = peers.map { ($0.0, path(n, to: $0.0, $0.1)) }
    return try t.runAndWait { e in
        let layer = RCLAN.on(e)!
        let d = layer.service(TableDistributor.self)!
        var rvis: [UInt32: RVI] = [:]
        for (peer, p) in paths {
            let rvi = try layer.open(p)
            d.addNeighbour(rvi)
            rvis[peer] = rvi
        }
        try d.setLocalEntry(entry)
        return rvis
    }
}

private func view(_ t: EngineThread) throws -> NodeView {
    try t.runAndWait { e in
        let d = RCLAN.on(e)!.service(TableDistributor.self)!
        return NodeView(table: d.table, stats: d.statistics)
    }
}

@Suite("Address table distribution over the fabric (seed 003)", .serialized, .requiresIOUring)
struct DistributionTests {
    @Test("a table too large for one message is split into digests and entries of at most 16896 bytes each")
    func splitting() throws {
        let big = AddressTable(entries: (1...3000).map { wideEntry(UInt32($0)) })
        for e in big.entries.values.prefix(10) {
            #expect(TableMessage.encodedSize(e) == AddressTable(entries: [e]).encoded().count - 9)
        }
        #expect(big.encoded().count + 1 > TableMessage.maxBytes, "the whole table does not fit in one message")

        for limit in [TableMessage.maxBytes, TableMessage.minimumLimit] {
            let entries = TableMessage.entryMessages(Array(big.entries.values), limit: limit)
            #expect(entries.count > 1)
            #expect(entries.allSatisfy { $0.count <= limit })
            var rebuilt = AddressTable()
            for m in entries {
                guard case .entries(let t) = try TableMessage(decoding: m) else { Issue.record("not entries"); continue }
                rebuilt.merge(t)
            }
            #expect(rebuilt == big)

            // Digests are split by node range; the parts cover 0...UInt32.max without a gap.
            let digests = TableMessage.digestMessages(of: big, limit: limit)
            #expect(digests.count > 1)
            #expect(digests.allSatisfy { $0.count <= limit })
            var next: UInt64 = 0
            var named = 0
            for m in digests {
                guard case .digest(let d) = try TableMessage(decoding: m) else { Issue.record("not a digest"); continue }
                #expect(UInt64(d.low.rawValue) == next)
                next = UInt64(d.high.rawValue) + 1
                named += d.stamps.count
                #expect(d.stamps.allSatisfy { big.entries[$0.key]!.version == $0.value.version })
            }
            #expect(next == 1 << 32)
            #expect(named == 3000)

            // Two exchanges: one holds 3000 entries, the other only its own; one round of
            // digests makes them identical, and no message exceeds the limit.
            var holder = TableExchange(node: 1, maxMessageBytes: limit)
            try holder.setLocalEntry(wideEntry(1))
            for m in entries { _ = holder.handle(m, from: 99) }
            #expect(holder.table.entries.count == 3000)
            _ = holder.pushMessages(to: [])  // what it learned from peer 99 goes nowhere else
            var newcomer = TableExchange(node: 5000, maxMessageBytes: limit)
            try newcomer.setLocalEntry(wideEntry(5000))
            _ = newcomer.pushMessages(to: [])  // only digests carry the exchange below

            // An answer is not repeated to a peer that has been sent it (a digest that crossed
            // the answer in flight), until the peer's messages are forgotten (lost, restarted).
            var probe = holder
            let newcomerDigest = newcomer.digestMessages()
            let answer = newcomerDigest.flatMap { probe.handle($0, from: 1) }
            let again = newcomerDigest.flatMap { probe.handle($0, from: 1) }
            func entriesCount(_ ms: [[UInt8]]) -> Int {
                ms.reduce(0) { n, m in
                    if case .entries(let t)? = try? TableMessage(decoding: m) { return n + t.entries.count }
                    return n
                }
            }
            #expect(entriesCount(answer) == 3000)
            #expect(entriesCount(again) == 0)
            probe.forget(peer: 1)
            #expect(entriesCount(newcomerDigest.flatMap { probe.handle($0, from: 1) }) == 3000)
            var wire = Wire(nodes: [holder, newcomer], links: [(0, 1)])
            let rounds = wire.gossip()
            #expect(rounds == 1)
            #expect(wire.nodes[0].table == wire.nodes[1].table)
            #expect(wire.nodes[1].table.entries.count == 3001)
            #expect(wire.largest <= limit)
            #expect(wire.nodes.allSatisfy { $0.malformedMessages == 0 })
            print("distribution: 3001-entry table exchanged in \(wire.messages) messages of at most \(wire.largest) bytes (limit \(limit))")
        }
    }

    @Test("malformed messages are counted and dropped; they change nothing and get no answer")
    func malformed() throws {
        var ex = TableExchange(node: 1)
        try ex.setLocalEntry(wideEntry(1))
        _ = ex.handle(TableMessage.entryMessages([wideEntry(2), wideEntry(3)])[0], from: 1)
        let before = ex.table
        #expect(before.entries.count == 3)

        let digest = TableMessage.digestMessages(of: AddressTable(entries: [wideEntry(2, version: 9), wideEntry(7)]))[0]
        let entries = TableMessage.entryMessages([wideEntry(2, version: 9), wideEntry(7)])[0]
        func digestBytes(_ low: UInt32, _ high: UInt32, _ pairs: [(UInt32, UInt64)]) -> [UInt8] {
            var out: [UInt8] = [1]
            func u(_ v: some FixedWidthInteger) { withUnsafeBytes(of: v.bigEndian) { out += $0 } }
            u(low); u(high); u(UInt32(pairs.count))
            for (n, v) in pairs { u(n); u(v); u(UInt32(0)) }
            return out
        }
        var bad: [[UInt8]] = [
            [],
            [0],
            [9, 1, 2, 3],
            digest + [0],
            entries + [0],
            digestBytes(10, 5, []),
            digestBytes(0, 100, [(7, 1), (3, 1)]),
            digestBytes(0, 100, [(7, 1), (7, 2)]),
            digestBytes(0, 5, [(7, 1)]),
            [1, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],  // 4 G pairs announced
            [3] + Array("PLAX".utf8) + Array(entries.dropFirst(5)),
        ]
        for n in 0..<digest.count { bad.append(Array(digest[0..<n])) }
        for n in 0..<entries.count { bad.append(Array(entries[0..<n])) }
        for (k, m) in bad.enumerated() {
            let count = ex.malformedMessages
            let answer = ex.handle(m, from: 1)
            #expect(ex.malformedMessages == count + 1, "message \(k) (\(m.count) bytes) was not refused")
            #expect(answer.isEmpty)
            #expect(ex.table == before)
        }
        #expect(ex.entriesTaken == 2)

        // An old copy of an entry is not malformed, and changes nothing either.
        _ = ex.handle(TableMessage.entryMessages([wideEntry(2, version: 0)])[0], from: 1)
        #expect(ex.table == before)

        // Seeded mutations of valid messages: refused or used, never a crash, answers in bounds.
        var rng = SplitMix64(seed: 3)
        var refused: UInt64 = 0
        for _ in 0..<20_000 {
            var m = rng.next() & 1 == 0 ? digest : entries
            for _ in 0..<(1 + Int(rng.next() % 3)) { m[Int(rng.next() % UInt64(m.count))] = UInt8(truncatingIfNeeded: rng.next()) }
            var scratch = ex  // each mutation meets the same table
            if scratch.handle(m, from: 1).contains(where: { $0.count > TableMessage.maxBytes }) { Issue.record("oversized answer") }
            refused += scratch.malformedMessages - ex.malformedMessages
        }
        print("distribution: \(bad.count) crafted malformed messages refused; of 20000 seeded mutations \(refused) refused, the rest used, none crashed")

        // This node's own entry must survive its encoding.
        var long = wideEntry(1, version: 5)
        long.adapters[0].adapterType = String(repeating: "x", count: 40)
        #expect(throws: AddressTableDecodeError.self) { try ex.setLocalEntry(long) }
        #expect(throws: AddressTableDecodeError.self) { try ex.setLocalEntry(wideEntry(2, version: 50)) }
    }

    @Test("a node that restarts and publishes new contents under an old version still wins everywhere")
    func restartWithoutMemory() throws {
        // A line 0 — 1 — 2: node 3 (index 2) is not a neighbour of node 1 (index 0).
        var nodes: [TableExchange] = []
        for n in UInt32(1)...3 {
            var ex = TableExchange(node: NodeNumber(n))
            try ex.setLocalEntry(wideEntry(n))
            nodes.append(ex)
        }
        var wire = Wire(nodes: nodes, links: [(0, 1), (1, 2)])
        #expect(wire.gossip() <= 3)
        #expect(wire.nodes.allSatisfy { $0.table.entries.count == 3 })
        // Node 1 restarts knowing nothing and publishes version 1 again, with another MTU.
        var changed = wideEntry(1)
        changed.adapters[1].mtu = 4000
        var reborn = TableExchange(node: 1)
        try reborn.setLocalEntry(changed)
        wire.nodes[0] = reborn
        // Its neighbour forgets what the old node 1 had, as the RCLAN layer's peerRestarted
        // event makes the distributor do.
        wire.nodes[1].forget(peer: 0)
        #expect(wire.gossip() <= 4)
        #expect(wire.nodes.allSatisfy { $0.table == wire.nodes[0].table })
        #expect(wire.nodes.allSatisfy { $0.table.entries[1]?.adapters[1].mtu == 4000 })
    }

    @Test("six nodes in a ring with a chord, each knowing only itself, end with identical tables; a change spreads")
    func sixNodes() throws {
        let ids: [UInt32] = [1, 2, 3, 4, 5, 6]
        var threads: [UInt32: EngineThread] = [:]
        defer { for t in threads.values { _ = t.stopAndWait() } }
        for n in ids { threads[n] = try startNode(n, engineConfiguration(n)) }
        // A ring 1-2-3-4-5-6-1 and the chord 1-4: node 1 and 4 have three neighbours, the others two.
        let links: [(UInt32, UInt32)] = [(1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 1), (1, 4)]
        func neighbours(_ n: UInt32) -> [UInt32] {
            links.compactMap { $0.0 == n ? $0.1 : $0.1 == n ? $0.0 : nil }
        }
        let started = nanosNow()
        for n in ids {
            try join(n, threads[n]!, peers: neighbours(n).map { ($0, threads[$0]!) }, entry: ownEntry(n, threads[n]!))
        }
        let joined = nanosNow()

        func views() throws -> [NodeView] { try ids.map { try view(threads[$0]!) } }
        func identical(_ v: [NodeView]) -> Bool { v.allSatisfy { $0.table == v[0].table } }
        var converged = 0.0
        let first = try waitUntil(seconds: 10) {
            let v = try views()
            guard identical(v) && v[0].table.entries.count == 6 else { return false }
            converged = Double(nanosNow() - started) / 1e6
            return true
        }
        #expect(first, "six tables identical with six entries")
        let afterFirst = try views()
        let sentFirst = afterFirst.reduce(0) { $0 + $1.stats.messagesSent }
        // Every node holds every node's adapters as that node's engine bound them.
        for n in ids {
            #expect(afterFirst[0].table.entries[NodeNumber(n)]?.adapters.map(\.address) == [address(threads[n]!, .a), address(threads[n]!, .b)])
        }
        print(String(format: "distribution: 6 nodes (ring + chord, 7 RVIs) identical after %.1f ms from the first join (%.1f ms after the last), %llu messages sent in all",
                     converged, converged - Double(joined - started) / 1e6, sentFirst))

        // Node 3's fabric-A adapter goes unreachable: it sets its entry, the version is bumped,
        // and every node learns it.
        let changedAt = nanosNow()
        let down = ownEntry(3, threads[3]!, aUp: false)
        let stored = try threads[3]!.runAndWait { e in
            try RCLAN.on(e)!.service(TableDistributor.self)!.setLocalEntry(down)
        }
        #expect(stored.version == 2)
        var spread = 0.0
        let second = try waitUntil(seconds: 10) {
            let v = try views()
            guard identical(v), v[0].table.destinations(of: 3).map(\.fabric) == [.b] else { return false }
            spread = Double(nanosNow() - changedAt) / 1e6
            return true
        }
        #expect(second, "the change reached every node")
        let afterSecond = try views()
        #expect(afterSecond.allSatisfy { $0.table.entries[3]?.version == 2 && $0.table.entries.count == 6 })
        #expect(afterSecond.allSatisfy { $0.stats.malformedMessages == 0 && $0.stats.messagesDropped == 0 })
        let sentSecond = afterSecond.reduce(0) { $0 + $1.stats.messagesSent }
        print(String(format: "distribution: node 3's fabric A marked unreachable (v2) reached all 6 nodes in %.1f ms, %llu messages sent since (periodic digests included)",
                     spread, sentSecond - sentFirst))
        for v in afterSecond {
            print("  node \(v.stats.node): \(v.stats.neighbours) neighbours, sent \(v.stats.messagesSent) (\(v.stats.digestsSent) digests), received \(v.stats.messagesReceived), entries taken \(v.stats.entriesTaken), changes \(v.stats.changes), retries \(v.stats.sendRetries)")
        }

        var reports: [ShutdownReport] = []
        for n in ids { reports.append(threads[n]!.stopAndWait()) }
        #expect(reports.allSatisfy { $0.leakedFrames == 0 && $0.leakedReceiveBuffers == 0 })
    }

    @Test("malformed messages over an RVI are counted and dropped; a restarted peer's new entry wins")
    func overTheFabric() throws {
        var threads: [UInt32: EngineThread] = [:]
        defer { for t in threads.values { _ = t.stopAndWait() } }
        for n: UInt32 in [7, 8] { threads[n] = try startNode(n, engineConfiguration(n)) }
        let rvis = try join(7, threads[7]!, peers: [(8, threads[8]!)], entry: ownEntry(7, threads[7]!))
        try join(8, threads[8]!, peers: [(7, threads[7]!)], entry: ownEntry(8, threads[8]!))
        #expect(try waitUntil(seconds: 10) {
            let a = try view(threads[7]!), b = try view(threads[8]!)
            return a.table == b.table && a.table.entries.count == 2
        })
        let before = try view(threads[8]!).table

        // Raw bytes posted on node 7's RVI to node 8, next to the distributor's own messages.
        let valid = TableMessage.entryMessages([ownEntry(7, threads[7]!, version: 1)])[0]
        let bad: [[UInt8]] = [[], [0], [42, 1], [1, 0, 0], Array(valid.dropLast()), valid + [7], [3] + Array("NOPE".utf8)]
        let rvi = rvis[8]!
        try threads[7]!.runAndWait { e in
            for m in bad { try RCLAN.on(e)!.send(m, on: rvi) }
        }
        #expect(try waitUntil(seconds: 10) { try view(threads[8]!).stats.malformedMessages == UInt64(bad.count) })
        let after = try view(threads[8]!)
        #expect(after.table == before)
        #expect(try view(threads[7]!).stats.malformedMessages == 0)

        // Node 8 restarts on the same ports, knowing nothing, and publishes version 1 again with
        // another class of service; node 7 holds its old version 1. The new contents win.
        var c8 = engineConfiguration(8)
        c8.fabricA = address(threads[8]!, .a)
        c8.fabricB = address(threads[8]!, .b)
        let old = threads[8]!.stopAndWait()
        #expect(old.leakedFrames == 0)
        threads[8] = try startNode(8, c8)
        try join(8, threads[8]!, peers: [(7, threads[7]!)], entry: ownEntry(8, threads[8]!, classOfService: 5))
        #expect(try waitUntil(seconds: 10) {
            let a = try view(threads[7]!), b = try view(threads[8]!)
            return a.table == b.table && a.table.entries[8]?.adapters.allSatisfy { $0.classOfService == 5 } == true
        })
        let v8 = try view(threads[8]!)
        print("distribution: restarted node 8 published v1 again with new contents; both nodes hold v\(v8.table.entries[8]!.version) (\(v8.stats.messagesReceived) messages received by the new node 8)")

        var reports: [ShutdownReport] = []
        for n: UInt32 in [7, 8] { reports.append(threads[n]!.stopAndWait()) }
        #expect(reports.allSatisfy { $0.leakedFrames == 0 && $0.leakedReceiveBuffers == 0 })
    }
    @Test("a send window too small for a large table: refused sends are retried on later turns until the table is across")
    func backPressure() throws {
        var layer = RCLANConfiguration()
        layer.sendWindow = 4
        layer.receiveWindow = 4
        var threads: [UInt32: EngineThread] = [:]
        defer { for t in threads.values { _ = t.stopAndWait() } }
        for n: UInt32 in [9, 10] { threads[n] = try startNode(n, engineConfiguration(n), layer: layer) }
        try join(9, threads[9]!, peers: [(10, threads[10]!)], entry: ownEntry(9, threads[9]!))
        try join(10, threads[10]!, peers: [(9, threads[9]!)], entry: ownEntry(10, threads[10]!))
        // Node 9 learns 2000 entries (fed to it as if from another neighbour): about 15 full
        // messages for node 10, through a window of 4 frames.
        let feed = TableMessage.entryMessages((100...2099).map { wideEntry(UInt32($0)) })
        try threads[9]!.runAndWait { e in
            let d = RCLAN.on(e)!.service(TableDistributor.self)!
            for m in feed { d.receive(m, from: RVI(id: 999)) }
        }
        let started = nanosNow()
        #expect(try waitUntil(seconds: 20) {
            let a = try view(threads[9]!), b = try view(threads[10]!)
            return a.table == b.table && b.table.entries.count == 2002
        })
        let ms = Double(nanosNow() - started) / 1e6
        let s9 = try view(threads[9]!).stats
        #expect(s9.sendRetries > 0, "the window refused sends")
        #expect(s9.messagesDropped == 0 && s9.malformedMessages == 0)
        print(String(format: "distribution: 2002 entries through a 4-frame window in %.1f ms: node 9 sent %llu messages (%llu bytes), %llu sends refused and retried", ms, s9.messagesSent, s9.bytesSent, s9.sendRetries))
        var reports: [ShutdownReport] = []
        for n: UInt32 in [9, 10] { reports.append(threads[n]!.stopAndWait()) }
        #expect(reports.allSatisfy { $0.leakedFrames == 0 && $0.leakedReceiveBuffers == 0 })
    }
}
