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
            #expect(try await call(c, .delete, "/v1/personalities/front/storage/0/0").status == 200)
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
