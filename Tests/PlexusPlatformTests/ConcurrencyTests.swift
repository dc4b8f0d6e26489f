import Foundation
import Hummingbird
import HummingbirdTesting
import PlexusAPI
import PlexusCore
import PlexusLAN
import Testing

@testable import PlexusPlatform

/// Holds the requests of a burst at the server's door until all of them have arrived, then lets
/// them in together, so the commands really run concurrently (and the test knows they did).
actor Gate {
    var expected = 0
    var generation = 0
    var waiting: [CheckedContinuation<Void, Never>] = []
    /// Whether the last burst arrived whole before its deadline.
    private(set) var arrivedTogether = false

    /// The next `count` requests wait for one another (at most `deadline`).
    func arm(_ count: Int, deadline: Duration = .seconds(20)) {
        expected = count
        arrivedTogether = false
        generation += 1
        let g = generation
        Task {
            try? await Task.sleep(for: deadline)
            self.expire(g)
        }
    }

    func arrive() async {
        guard expected > 0 else { return }
        await withCheckedContinuation { c in
            waiting.append(c)
            if waiting.count == expected { open(together: true) }
        }
    }

    func expire(_ g: Int) {
        if g == generation && expected > 0 { open(together: false) }
    }

    func open(together: Bool) {
        arrivedTogether = together
        expected = 0
        let w = waiting
        waiting = []
        for c in w { c.resume() }
    }
}

/// A control node: the management API over real HTTP on a store, with a gate at its door.
struct ControlNode: Sendable {
    let client: ManagementClient
    let store: PlatformStore
    let gate: Gate

    static func serve(_ store: PlatformStore, _ body: @Sendable (ControlNode) async throws -> Void) async throws {
        let gate = Gate()
        let responder = ManagementAPI.router(store: store, token: LiveAPI.token).buildResponder()
        let app = Application(responder: CallbackResponder<BasicRequestContext> { request, context in
            await gate.arrive()
            return try await responder.respond(to: request, context: context)
        })
        try await app.test(.live) { c in
            let port = try #require(c.port)
            try await body(ControlNode(client: ManagementClient(base: "http://localhost:\(port)", token: LiveAPI.token, connections: 64),
                                       store: store, gate: gate))
        }
    }

    func must(_ method: String, _ path: String, _ json: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let (status, body) = try await client.send(method, path, json: json.map { Data($0.utf8) })
        #expect(status == 200, "\(method) \(path): \(String(decoding: body, as: UTF8.self))", sourceLocation: sourceLocation)
    }
}

/// One answer of a burst.
struct Answer: Sendable {
    var status: Int
    var body: Data
    var refusal: APIRefusal? { status >= 400 ? APIRefusal(status: status, body: body) : nil }
    var personality: Personality? { status == 200 ? try? JSONDecoder().decode(Personality.self, from: body) : nil }
}

@Suite("Concurrent administrative commands against a real control node", .serialized)
struct ConcurrencyTests {
    /// Sends every request at once, request i to `nodes[i % nodes.count]`, each held at its
    /// node's door until the whole burst is there; the answers in the requests' order.
    func burst(_ nodes: [ControlNode], _ requests: [(method: String, path: String, json: String?)],
               sourceLocation: SourceLocation = #_sourceLocation) async throws -> [Answer] {
        for (k, node) in nodes.enumerated() {
            await node.gate.arm(requests.indices.filter { $0 % nodes.count == k }.count)
        }
        let answers = try await withThrowingTaskGroup(of: (Int, Answer).self) { group in
            for (i, r) in requests.enumerated() {
                let client = nodes[i % nodes.count].client
                group.addTask {
                    let (status, body) = try await client.send(r.method, r.path, json: r.json.map { Data($0.utf8) })
                    return (i, Answer(status: status, body: body))
                }
            }
            var out = [Answer](repeating: Answer(status: 0, body: Data()), count: requests.count)
            for try await (i, a) in group { out[i] = a }
            return out
        }
        for node in nodes {
            #expect(await node.gate.arrivedTogether, "the burst's requests were all in flight together", sourceLocation: sourceLocation)
        }
        // Every answer is a success or a refusal the API means: never a 500 (a database busy
        // or locked, a transaction half done).
        for (i, a) in answers.enumerated() {
            #expect(a.status == 200 || a.status == 409, "\(requests[i]): \(a.status) \(String(decoding: a.body, as: UTF8.self))",
                    sourceLocation: sourceLocation)
        }
        return answers
    }

    /// The store's state is consistent: every assigned processor holds the personality that
    /// names it, no processor twice, no MAC twice, and the MAC counter equals the NICs made.
    func expectConsistent(_ store: PlatformStore, nics: Int, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let all = try store.personalities()
        let processors = try store.processors()
        let nodes = all.compactMap(\.node)
        #expect(Set(nodes).count == nodes.count, "a processor holds two personalities", sourceLocation: sourceLocation)
        for p in processors where p.state == .assigned {
            #expect(all.first { $0.name == p.personality }?.node == p.node, "node \(p.node) and \(p.personality ?? "-")",
                    sourceLocation: sourceLocation)
        }
        #expect(processors.filter { $0.state == .assigned }.count == nodes.count, sourceLocation: sourceLocation)
        let macs = all.flatMap(\.nics).map(\.mac)
        #expect(macs.count == nics && Set(macs).count == nics, "\(macs.count) NICs, \(Set(macs).count) MACs", sourceLocation: sourceLocation)
        #expect(try store.macsHandedOut() == nics, sourceLocation: sourceLocation)
    }

    @Test("16 concurrent add-processor requests on a pool of 8: exactly 8 succeed, each node once; 8 are refused 409 naming the field")
    func addProcessors() async throws {
        let t = try TempDatabase()
        try await ControlNode.serve(try PlatformStore(path: t.path)) { node in
            try await node.must("POST", "/v1/processors", #"{"nodes": [1, 2, 3, 4, 5, 6, 7, 8]}"#)
            try await node.must("POST", "/v1/pans", #"{"name": "p"}"#)
            let before = try node.store.events().count
            let answers = try await burst([node], (1...16).map { ("POST", "/v1/pans/p/processors", #"{"name": "w\#($0)"}"#) })
            let won = answers.compactMap(\.personality)
            #expect(won.count == 8)
            #expect(won.compactMap(\.node).sorted() == (1...8).map { NodeNumber(UInt32($0)) }, "each node assigned exactly once")
            let refused = answers.compactMap(\.refusal)
            #expect(refused.count == 8)
            for r in refused {
                #expect(r.status == 409 && r.kind == "conflict" && r.field == "node" && r.message.contains("free pool is empty"), "\(r)")
            }
            #expect(try node.store.pan("p").personalities.sorted() == won.map(\.name).sorted())
            #expect(try node.store.processors().allSatisfy { $0.state == .assigned })
            #expect(try node.store.events().count == before + 8, "a refused command logs nothing")
            try expectConsistent(node.store, nics: 0)
        }
        _ = t
    }

    @Test("concurrent attach-nic on many personalities: every MAC distinct, the counter equals the NICs")
    func attachNICs() async throws {
        let t = try TempDatabase()
        try await ControlNode.serve(try PlatformStore(path: t.path)) { node in
            try await node.must("POST", "/v1/processors", #"{"nodes": \#(Array(1...12))}"#)
            try await node.must("POST", "/v1/pans", #"{"name": "p"}"#)
            try await node.must("POST", "/v1/pans/p/vlans", #"{"vlan": 10}"#)
            try await node.must("POST", "/v1/pans/p/vlans", #"{"vlan": 11}"#)
            for _ in 1...12 { try await node.must("POST", "/v1/pans/p/processors") }
            // Every personality on both VLANs, each asked twice: 48 requests, 24 NICs.
            var requests: [(method: String, path: String, json: String?)] = []
            for attempt in 0..<2 {
                for n in 1...12 {
                    for vlan in attempt == 0 ? [10, 11] : [11, 10] {
                        requests.append(("POST", "/v1/personalities/p-\(n)/nics", #"{"vlan": \#(vlan)}"#))
                    }
                }
            }
            let answers = try await burst([node], requests)
            var handedOut: [MACAddress] = []
            for (i, a) in answers.enumerated() where a.status == 200 {
                let vlan = Int(requests[i].json!.filter(\.isNumber))!
                handedOut += a.personality?.nics.filter { $0.vlan == vlan }.map(\.mac) ?? []
            }
            #expect(handedOut.count == 24 && Set(handedOut).count == 24, "\(handedOut)")
            let refused = answers.compactMap(\.refusal)
            #expect(refused.count == 24 && refused.allSatisfy { $0.status == 409 && $0.field == "vlan" }, "\(refused)")
            for p in try node.store.personalities() { #expect(p.nics.map(\.vlan) == [10, 11], "\(p)") }
            #expect(Set(try node.store.personalities().flatMap(\.nics).map(\.mac)) == Set(handedOut))
            try expectConsistent(node.store, nics: 24)
        }
        _ = t
    }

    @Test("concurrent bind-ip of the same address to different personalities: exactly one wins")
    func bindIP() async throws {
        let t = try TempDatabase()
        try await ControlNode.serve(try PlatformStore(path: t.path)) { node in
            try await node.must("POST", "/v1/processors", #"{"nodes": \#(Array(1...8))}"#)
            try await node.must("POST", "/v1/pans", #"{"name": "p"}"#)
            try await node.must("POST", "/v1/pans/p/vlans", #"{"vlan": 10}"#)
            for n in 1...8 {
                try await node.must("POST", "/v1/pans/p/processors")
                try await node.must("POST", "/v1/personalities/p-\(n)/nics", #"{"vlan": 10}"#)
            }
            // Four addresses, each claimed by all eight at once.
            let addresses = (100..<104).map { "10.10.0.\($0)" }
            var requests: [(method: String, path: String, json: String?)] = []
            for n in 1...8 {
                for a in addresses { requests.append(("POST", "/v1/personalities/p-\(n)/ips", #"{"vlan": 10, "address": "\#(a)/24"}"#)) }
            }
            let answers = try await burst([node], requests)
            let bound = try node.store.personalities().flatMap { p in p.ips.map { (p.name, $0.address) } }
            for a in addresses {
                let claims = requests.indices.filter { requests[$0].json!.contains(a + "/") }
                let winners = claims.filter { answers[$0].status == 200 }
                #expect(winners.count == 1, "\(a): \(winners.count) winners")
                guard let w = winners.first else { continue }
                let winner = try #require(answers[w].personality?.name)
                #expect(bound.filter { $0.1 == a + "/24" }.map(\.0) == [winner], "\(a) is bound once, to the winner")
                for loser in claims where loser != w {
                    let r = answers[loser].refusal
                    #expect(r?.status == 409 && r?.field == "address" && r?.message == "\(a) is bound to \(winner) on VLAN 10", "\(String(describing: r))")
                }
            }
            #expect(bound.count == 4)
        }
        _ = t
    }

    @Test("two control nodes on one host (two API servers, two stores, one SQLite file) taking concurrent requests stay consistent")
    func twoControlNodes() async throws {
        let t = try TempDatabase()
        let a = try PlatformStore(path: t.path)
        let b = try PlatformStore(path: t.path)
        try await ControlNode.serve(a) { na in
            try await ControlNode.serve(b) { nb in
                try await na.must("POST", "/v1/processors", #"{"nodes": \#(Array(1...10))}"#)
                try await nb.must("POST", "/v1/pans", #"{"name": "p"}"#)
                try await na.must("POST", "/v1/pans/p/vlans", #"{"vlan": 10}"#)
                try await nb.must("POST", "/v1/pans/p/vlans", #"{"vlan": 11}"#)
                let setup = try a.events().count
                let both = [na, nb]

                // 20 processors asked for, half at each control node, on a pool of 10.
                let added = try await burst(both, (1...20).map { ("POST", "/v1/pans/p/processors", #"{"name": "w\#($0)"}"#) })
                let won = added.compactMap(\.personality)
                #expect(won.count == 10 && won.compactMap(\.node).sorted() == (1...10).map { NodeNumber(UInt32($0)) }, "each node assigned exactly once")
                #expect(added.compactMap(\.refusal).allSatisfy { $0.field == "node" && $0.message.contains("free pool is empty") })

                // Every NIC asked for at both control nodes at once.
                var nics: [(method: String, path: String, json: String?)] = []
                for p in won {
                    for vlan in [10, 11] {
                        nics.append(("POST", "/v1/personalities/\(p.name)/nics", #"{"vlan": \#(vlan)}"#))
                        nics.append(("POST", "/v1/personalities/\(p.name)/nics", #"{"vlan": \#(vlan)}"#))
                    }
                }
                let attached = try await burst(both, nics)
                #expect(attached.filter { $0.status == 200 }.count == 20)
                #expect(attached.compactMap(\.refusal).count == 20 && attached.compactMap(\.refusal).allSatisfy { $0.field == "vlan" })

                // One address claimed by all ten personalities through both control nodes.
                let claims = try await burst(both, won.map { ("POST", "/v1/personalities/\($0.name)/ips", #"{"vlan": 10, "address": "10.10.0.200/24"}"#) })
                #expect(claims.filter { $0.status == 200 }.count == 1)
                #expect(claims.compactMap(\.refusal).allSatisfy { $0.field == "address" })

                // Both control nodes see one and the same state.
                let viewA = try await na.client.send("GET", "/v1/personalities")
                let viewB = try await nb.client.send("GET", "/v1/personalities")
                #expect(viewA.status == 200 && viewA.body == viewB.body)
                let eventsA = try await na.client.send("GET", "/v1/events?limit=10000")
                let eventsB = try await nb.client.send("GET", "/v1/events?limit=10000")
                #expect(eventsA.body == eventsB.body)
                #expect(try a.events(limit: 10000).count == setup + 10 + 20 + 1, "one event per command applied, none for the refused")
                try expectConsistent(a, nics: 20)
                try expectConsistent(b, nics: 20)
                #expect(try a.personalities().flatMap(\.ips).count == 1)
            }
        }
        _ = t
    }
}
