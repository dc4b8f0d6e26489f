import Foundation
import Hummingbird
import HummingbirdTesting
import PlexusAPI
import PlexusLAN
import PlexusNode
import Testing

@testable import PlexusPlatform

@Suite("Management API")
struct APITests {
    static let token = String(repeating: "ab", count: 32)

    /// Runs `body` against a real router over a store in a temporary database.
    func withAPI(_ body: @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        let t = try TempDatabase()
        let store = try PlatformStore(path: t.path)
        let app = Application(router: ManagementAPI.router(store: store, token: Self.token))
        try await app.test(.router) { client in try await body(client) }
        _ = t
    }

    /// One request; its status and JSON body.
    @discardableResult
    func call(_ client: any TestClientProtocol, _ method: HTTPRequest.Method, _ uri: String, _ json: String? = nil,
              token: String? = APITests.token) async throws -> (status: Int, body: [String: Any], raw: String) {
        var headers = HTTPFields()
        if let token { headers[.authorization] = "Bearer \(token)" }
        if json != nil { headers[.contentType] = "application/json" }
        let r = try await client.execute(uri: uri, method: method, headers: headers,
                                         body: json.map { ByteBuffer(string: $0) })
        let raw = String(buffer: r.body)
        let object = (try? JSONSerialization.jsonObject(with: Data(raw.utf8))) as? [String: Any] ?? [:]
        return (Int(r.status.code), object, raw)
    }

    func error(_ r: (status: Int, body: [String: Any], raw: String)) -> (kind: String, field: String?) {
        let e = r.body["error"] as? [String: Any] ?? [:]
        return (e["kind"] as? String ?? "?", e["field"] as? String)
    }

    @Test("the happy path: pool, PAN, VLAN, processor, NIC, IP, storage, workload, migration, events")
    func happyPath() async throws {
        try await withAPI { c in
            #expect(try await call(c, .get, "/v1/health", token: nil).status == 200)
            #expect(try await call(c, .post, "/v1/processors", #"{"nodes": [3, 4]}"#).status == 200)
            #expect(try await call(c, .post, "/v1/pans", #"{"name": "web"}"#).status == 200)
            #expect(try await call(c, .post, "/v1/pans/web/vlans", #"{"vlan": 10}"#).body["vlans"] as? [Int] == [10])
            let p = try await call(c, .post, "/v1/pans/web/processors", #"{"name": "front"}"#)
            #expect(p.body["node"] as? Int == 3)
            let nic = try await call(c, .post, "/v1/personalities/front/nics", #"{"vlan": 10, "promiscuousAllowed": false}"#)
            let mac = ((nic.body["nics"] as? [[String: Any]])?.first?["mac"] as? String) ?? ""
            #expect(mac == "02:00:01:00:00:00", "\(nic.raw)")
            #expect(try await call(c, .post, "/v1/personalities/front/ips", #"{"vlan": 10, "address": "10.10.0.3/24"}"#).status == 200)
            #expect(try await call(c, .post, "/v1/personalities/front/storage",
                                   #"{"target": 0, "lun": 0, "storage": "/luns/front", "access": "read-write"}"#).status == 200)
            #expect(try await call(c, .put, "/v1/personalities/front/workload", #"{"command": "sleep 100"}"#).status == 200)
            let shown = try await call(c, .get, "/v1/processors/3/personality")
            #expect(shown.body["name"] as? String == "front" && shown.body["workload"] as? String == "sleep 100")
            let moved = try await call(c, .post, "/v1/personalities/front/migrate", "{}")
            #expect(moved.body["to"] as? Int == 4 && moved.body["from"] as? Int == 3, "\(moved.raw)")
            let after = try await call(c, .get, "/v1/personalities/front")
            #expect(((after.body["nics"] as? [[String: Any]])?.first?["mac"] as? String) == mac, "the MAC moved with it")
            #expect(try await call(c, .delete, "/v1/personalities/front/ips/10/10.10.0.3").status == 200)
            let map = try await call(c, .get, "/v1/storage")
            let entries = try JSONSerialization.jsonObject(with: Data(map.raw.utf8)) as? [[String: Any]] ?? []
            #expect(entries.count == 1 && entries.first?["pan"] as? String == "web" && entries.first?["personality"] as? String == "front"
                    && entries.first?["node"] as? Int == 4, "\(map.raw)")
            #expect((entries.first?["mapping"] as? [String: Any])?["storage"] as? String == "/luns/front", "\(map.raw)")
            #expect(try await call(c, .delete, "/v1/personalities/front/storage/0/0").status == 200)
            #expect(try await call(c, .get, "/v1/storage").raw.filter { !$0.isWhitespace } == "[]")
            let events = try await call(c, .get, "/v1/events?since=2&limit=3")
            #expect(events.raw.hasPrefix("["))
            let list = try JSONSerialization.jsonObject(with: Data(events.raw.utf8)) as? [[String: Any]] ?? []
            #expect(list.map { $0["id"] as? Int } == [3, 4, 5])
        }
    }

    @Test("every kind of bad request: a clear error naming the field, and nothing applied")
    func badRequests() async throws {
        try await withAPI { c in
            try await call(c, .post, "/v1/processors", #"{"nodes": [1]}"#)
            try await call(c, .post, "/v1/pans", #"{"name": "a"}"#)
            let cases: [(HTTPRequest.Method, String, String?, Int, String, String?)] = [
                (.post, "/v1/pans", "not json", 400, "invalid", "body"),
                (.post, "/v1/pans", "[1]", 400, "invalid", "body"),
                (.post, "/v1/pans", "{}", 400, "invalid", "name"),
                (.post, "/v1/pans", #"{"name": 5}"#, 400, "invalid", "name"),
                (.post, "/v1/pans", #"{"name": "b", "colour": "red"}"#, 400, "invalid", "colour"),
                (.post, "/v1/pans", #"{"name": "a"}"#, 409, "conflict", "name"),
                (.post, "/v1/pans/a/vlans", #"{"vlan": "ten"}"#, 400, "invalid", "vlan"),
                (.post, "/v1/pans/a/vlans", #"{"vlan": 1.5}"#, 400, "invalid", "vlan"),
                (.post, "/v1/pans/a/vlans", #"{"vlan": 0}"#, 400, "invalid", "vlan"),
                (.post, "/v1/pans/zz/vlans", #"{"vlan": 5}"#, 404, "not-found", "pan"),
                (.post, "/v1/processors", #"{"nodes": "1"}"#, 400, "invalid", "nodes"),
                (.post, "/v1/processors", #"{"nodes": [true]}"#, 400, "invalid", "nodes"),
                (.post, "/v1/processors", #"{"nodes": [3, -1]}"#, 400, "invalid", "nodes"),
                (.post, "/v1/processors", #"{"nodes": [70000]}"#, 400, "invalid", "nodes"),
                (.post, "/v1/pans/a/processors", #"{"node": -2}"#, 400, "invalid", "node"),
                (.delete, "/v1/processors/-1", nil, 404, "not-found", "node"),
                (.delete, "/v1/processors/x", nil, 400, "invalid", "node"),
                (.get, "/v1/personalities/nobody", nil, 404, "not-found", "personality"),
                (.post, "/v1/pans/a/processors", #"{"node": 9}"#, 404, "not-found", "node"),
                (.get, "/v1/events?since=-1", nil, 400, "invalid", "since"),
                (.get, "/v1/events?limit=0", nil, 400, "invalid", "limit"),
            ]
            for (method, uri, body, status, kind, field) in cases {
                let r = try await call(c, method, uri, body)
                #expect(r.status == status, "\(method) \(uri) \(body ?? ""): \(r.raw)")
                let e = error(r)
                #expect(e.kind == kind && e.field == field, "\(method) \(uri) \(body ?? ""): \(r.raw)")
            }
            // A node number no node has reads as the store's range check says it.
            let negative = try await call(c, .post, "/v1/processors", #"{"nodes": [-1]}"#)
            #expect((negative.body["error"] as? [String: Any])?["message"] as? String == "-1 is not a node number (1...4095)", "\(negative.raw)")
            // One beyond the VI numbering's range: a node with that number could never run.
            let beyond = try await call(c, .post, "/v1/processors", #"{"nodes": [4096]}"#)
            #expect(beyond.status == 400 && error(beyond).kind == "invalid" && error(beyond).field == "nodes",
                    "\(beyond.raw)")
            #expect((beyond.body["error"] as? [String: Any])?["message"] as? String == "4096 is not a node number (1...4095)",
                    "\(beyond.raw)")
            // The token.
            for token in [nil, "", String(repeating: "ab", count: 31) + "ac"] {
                let r = try await call(c, .get, "/v1/pans", token: token)
                #expect(r.status == 401 && error(r).kind == "unauthorized", "\(r.raw)")
            }
            // Nothing of the refused requests was applied.
            let pans = try await call(c, .get, "/v1/pans")
            let list = try JSONSerialization.jsonObject(with: Data(pans.raw.utf8)) as? [[String: Any]] ?? []
            #expect(list.map { $0["name"] as? String } == ["a"] && (list.first?["vlans"] as? [Int]) == [])
        }
    }

    @Test("an unknown field in any request body is refused naming it, on every route that takes a body, and nothing is applied")
    func unknownFields() async throws {
        try await withAPI { c in
            try await call(c, .post, "/v1/processors", #"{"nodes": [3, 4]}"#)
            try await call(c, .post, "/v1/pans", #"{"name": "a"}"#)
            try await call(c, .post, "/v1/pans/a/vlans", #"{"vlan": 10}"#)
            try await call(c, .post, "/v1/pans/a/processors", #"{"name": "p"}"#)
            // Each body is valid but for one key the route does not take.
            let cases: [(HTTPRequest.Method, String, String, String)] = [
                (.post, "/v1/processors", #"{"nodes": [5], "rack": 2}"#, "rack"),
                (.post, "/v1/pans", #"{"name": "b", "colour": "red"}"#, "colour"),
                (.post, "/v1/pans/a/vlans", #"{"vlan": 11, "tagged": true}"#, "tagged"),
                (.post, "/v1/pans/a/processors", #"{"name": "q", "nodes": 4}"#, "nodes"),
                (.post, "/v1/personalities/p/nics", #"{"vlan": 10, "promiscuous": true}"#, "promiscuous"),
                (.post, "/v1/personalities/p/ips", #"{"vlan": 10, "address": "10.10.0.3/24", "gateway": "10.10.0.1"}"#, "gateway"),
                (.post, "/v1/personalities/p/storage", #"{"target": 0, "lun": 0, "storage": "/luns/p", "mode": "ro"}"#, "mode"),
                (.put, "/v1/personalities/p/workload", #"{"cmd": "sleep 1"}"#, "cmd"),
                (.post, "/v1/personalities/p/migrate", #"{"node": 4}"#, "node"),
            ]
            for (method, uri, body, field) in cases {
                let r = try await call(c, method, uri, body)
                #expect(r.status == 400 && error(r) == ("invalid", field), "\(method) \(uri) \(body): \(r.raw)")
                let message = (r.body["error"] as? [String: Any])?["message"] as? String ?? ""
                #expect(message.hasPrefix("unknown field (this request takes "), "\(uri): \(r.raw)")
            }
            // The first unknown key in sorted order is the one named; the known ones are listed.
            let two = try await call(c, .post, "/v1/personalities/p/nics", #"{"zone": 1, "vlan": 10, "alpha": 2}"#)
            #expect(error(two) == ("invalid", "alpha"), "\(two.raw)")
            #expect(((two.body["error"] as? [String: Any])?["message"] as? String) == "unknown field (this request takes promiscuousAllowed, vlan)",
                    "\(two.raw)")
            // Nothing of it was applied.
            let p = try await call(c, .get, "/v1/personalities/p")
            #expect(p.body["node"] as? Int == 3 && (p.body["nics"] as? [Any])?.isEmpty == true
                    && (p.body["ips"] as? [Any])?.isEmpty == true && (p.body["storage"] as? [Any])?.isEmpty == true
                    && p.body["workload"] == nil, "\(p.raw)")
            let pans = try await call(c, .get, "/v1/pans")
            let list = try JSONSerialization.jsonObject(with: Data(pans.raw.utf8)) as? [[String: Any]] ?? []
            #expect(list.map { $0["name"] as? String } == ["a"] && (list.first?["vlans"] as? [Int]) == [10], "\(pans.raw)")
            let pool = try await call(c, .get, "/v1/processors")
            let processors = try JSONSerialization.jsonObject(with: Data(pool.raw.utf8)) as? [[String: Any]] ?? []
            #expect(processors.map { $0["node"] as? Int } == [3, 4], "\(pool.raw)")
        }
    }

    @Test("the shared body check: each body type lists exactly the fields it encodes, and decodes what it encodes")
    func bodyModels() throws {
        func roundTrip<B: APIRequestBody & Equatable>(_ b: B, _ fields: [String]) throws {
            #expect(B.fields == fields)
            let data = try APIBody.encode(b)
            #expect(try APIBody.decode(B.self, from: data) == b, "\(String(decoding: data, as: UTF8.self))")
        }
        try roundTrip(AddProcessorsBody(nodes: [3, 4]), ["nodes"])
        try roundTrip(CreatePANBody(name: "a"), ["name"])
        try roundTrip(AddVLANBody(vlan: 10), ["vlan"])
        try roundTrip(AddPANProcessorBody(name: "p", node: 3), ["name", "node"])
        try roundTrip(AttachNICBody(vlan: 10, promiscuousAllowed: true), ["promiscuousAllowed", "vlan"])
        try roundTrip(BindIPBody(vlan: 10, address: "10.0.0.1/24"), ["address", "vlan"])
        try roundTrip(MapStorageBody(target: 0, lun: 1, storage: "/luns/x", access: .readOnly), ["access", "lun", "storage", "target"])
        try roundTrip(SetWorkloadBody(command: nil), ["command"])
        try roundTrip(MigrateBody(to: 4), ["to"])
        // Every refusal names the field and says what it must be.
        func refusal<B: APIRequestBody>(_: B.Type, _ json: String) -> PlatformError? {
            do { _ = try APIBody.decode(B.self, from: Data(json.utf8)); return nil } catch { return error }
        }
        let cases: [(PlatformError?, String, String)] = [
            (refusal(AddVLANBody.self, #"{"vlan": 1.5}"#), "vlan", "must be an integer"),
            (refusal(AddVLANBody.self, #"{"vlan": "ten"}"#), "vlan", "must be an integer"),
            (refusal(AddProcessorsBody.self, #"{"nodes": [3, 1.5]}"#), "nodes", "must be an array of integers"),
            (refusal(AddProcessorsBody.self, #"{"nodes": [true]}"#), "nodes", "must be an array of integers"),
            (refusal(AddProcessorsBody.self, #"{"nodes": "1"}"#), "nodes", "must be an array of integers"),
            (refusal(AttachNICBody.self, #"{"vlan": 1, "promiscuousAllowed": 1}"#), "promiscuousAllowed", "must be true or false"),
            (refusal(BindIPBody.self, #"{"vlan": 1, "address": 7}"#), "address", "must be a string"),
            (refusal(CreatePANBody.self, "{}"), "name", "missing"),
            (refusal(CreatePANBody.self, #"{"name": null}"#), "name", "missing"),
            (refusal(CreatePANBody.self, ""), "name", "missing"),
            (refusal(CreatePANBody.self, "[1]"), "body", "the body is not a JSON object"),
            (refusal(CreatePANBody.self, "{"), "body", "the body is not a JSON object"),
        ]
        for (e, field, message) in cases {
            #expect(e?.kind == .invalid && e?.field == field && e?.message == message, "\(field): \(String(describing: e))")
        }
        #expect(throws: PlatformError(.invalid, field: "access", "'rw' is not read-write or read-only")) {
            try APIBody.decode(MapStorageBody.self, from: Data(#"{"target": 0, "lun": 0, "storage": "/x", "access": "rw"}"#.utf8))
        }
    }

    @Test("a node's console: read from an offset, followed from `next`; bad offsets and limits refused by field; no archive, 404")
    func console() async throws {
        let t = try TempDatabase()
        let store = try PlatformStore(path: t.path)
        let archive = try ConsoleArchive(directory: t.directory.appendingPathComponent("console").path)
        #expect(archive.append(node: 4, incarnation: 7, sequence: 1, Array("hello\n".utf8)))
        #expect(!archive.append(node: 4, incarnation: 7, sequence: 1, Array("hello\n".utf8)), "a piece offered twice is written once")
        let app = Application(router: ManagementAPI.router(store: store, token: Self.token, console: archive))
        try await app.test(.router) { c in
            let r = try await call(c, .get, "/v1/processors/4/console")
            #expect(r.status == 200 && r.body["text"] as? String == "hello\n" && r.body["next"] as? Int == 6, "\(r.raw)")
            let none = try await call(c, .get, "/v1/processors/4/console?from=6")
            #expect(none.body["text"] as? String == "" && none.body["next"] as? Int == 6, "\(none.raw)")
            #expect(archive.append(node: 4, incarnation: 7, sequence: 2, Array("world\n".utf8)))
            let more = try await call(c, .get, "/v1/processors/4/console?from=6")
            #expect(more.body["text"] as? String == "world\n" && more.body["next"] as? Int == 12, "\(more.raw)")
            let empty = try await call(c, .get, "/v1/processors/9/console")
            #expect(empty.status == 200 && empty.body["text"] as? String == "", "a node that never wrote: \(empty.raw)")
            for (uri, field) in [("/v1/processors/4/console?from=-1", "from"), ("/v1/processors/4/console?from=x", "from"),
                                 ("/v1/processors/4/console?limit=0", "limit"), ("/v1/processors/0/console", "node"),
                                 ("/v1/processors/x/console", "node")] {
                let bad = try await call(c, .get, uri)
                #expect(bad.status == 400 && error(bad) == ("invalid", field), "\(uri): \(bad.raw)")
            }
            let noToken = try await call(c, .get, "/v1/processors/4/console", token: nil)
            #expect(noToken.status == 401)
        }
        try await withAPI { c in
            let r = try await call(c, .get, "/v1/processors/4/console")
            #expect(r.status == 404 && error(r).kind == "not-found", "\(r.raw)")
        }
        _ = t
    }

    @Test("the OpenAPI document lists exactly the routes the server has")
    func openAPIDocument() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/openapi.yaml")
        let text = try String(contentsOf: url, encoding: .utf8)
        var documented: Set<String> = []
        var path: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("  /") && line.hasSuffix(":") { path = String(line.dropFirst(2).dropLast()) }
            else if let p = path, line.hasPrefix("    "), !line.hasPrefix("     "),
                    let m = ["get", "post", "put", "delete"].first(where: { line == "    \($0):" }) {
                documented.insert("\(m.uppercased()) \(p)")
            } else if !line.hasPrefix(" ") && !line.isEmpty { path = nil }
        }
        let served = Set(ManagementAPI.routes.map { "\($0.method) \($0.path)" })
        #expect(documented == served, "only documented: \(documented.subtracting(served)); only served: \(served.subtracting(documented))")
    }
}
