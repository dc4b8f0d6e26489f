import Foundation
import Hummingbird
import PlexusCore
import PlexusLAN
import PlexusNode
import PlexusPlatform

/// The management API a control node serves ("Management logic": the interface through which an
/// administrator, or an agent, provisions PANs): JSON over HTTP under `/v1`, every route but
/// `/v1/health` behind a bearer token. `docs/openapi.yaml` describes it; a test checks that the
/// two agree.
///
/// Every request maps to one ``PlatformStore`` command, so it is applied whole or not at all. A
/// refusal is `{"error": {"kind", "field", "message"}}` with 400 (invalid), 404 (not found),
/// 409 (conflict) or 401 (no or wrong token).
public enum ManagementAPI {
    /// The routes (method, path template), in the order `docs/openapi.yaml` lists them.
    public static let routes: [(method: String, path: String)] = [
        ("GET", "/v1/health"),
        ("GET", "/v1/processors"), ("POST", "/v1/processors"), ("DELETE", "/v1/processors/{node}"),
        ("POST", "/v1/processors/{node}/return"), ("GET", "/v1/processors/{node}/personality"),
        ("GET", "/v1/processors/{node}/console"),
        ("GET", "/v1/pans"), ("POST", "/v1/pans"), ("GET", "/v1/pans/{pan}"), ("DELETE", "/v1/pans/{pan}"),
        ("POST", "/v1/pans/{pan}/vlans"), ("DELETE", "/v1/pans/{pan}/vlans/{vlan}"),
        ("POST", "/v1/pans/{pan}/processors"),
        ("GET", "/v1/personalities"), ("GET", "/v1/personalities/{name}"), ("DELETE", "/v1/personalities/{name}"),
        ("POST", "/v1/personalities/{name}/nics"), ("DELETE", "/v1/personalities/{name}/nics/{vlan}"),
        ("POST", "/v1/personalities/{name}/ips"), ("DELETE", "/v1/personalities/{name}/ips/{vlan}/{host}"),
        ("POST", "/v1/personalities/{name}/storage"), ("DELETE", "/v1/personalities/{name}/storage/{target}/{lun}"),
        ("PUT", "/v1/personalities/{name}/workload"), ("POST", "/v1/personalities/{name}/migrate"),
        ("GET", "/v1/storage"),
        ("GET", "/v1/storage/pool"), ("POST", "/v1/storage/discover"), ("GET", "/v1/storage/discover/{id}"),
        ("GET", "/v1/events"),
        ("GET", "/v1/storage/stats"),
    ]

    /// Builds the router for `store`, requiring `token` on every route but health. `console`
    /// is the control node's console archive (``ConsoleArchive``), nil if it keeps none.
    public static func router(store: PlatformStore, token: String, console: ConsoleArchive? = nil) -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/v1/health") { _, _ in json(HealthAnswer(status: "ok")) }
        let v1 = router.group("/v1").add(middleware: BearerToken(token: token))

        v1.get("/processors") { _, _ in try run { try store.processors() } }
        v1.post("/processors") { req, ctx in
            try await run(req, AddProcessorsBody.self) { b in try store.addProcessors(b.nodes) }
        }
        v1.delete("/processors/{node}") { _, ctx in
            try run { try store.removeProcessor(try ctx.node("node")); return EmptyAnswer() }
        }
        v1.post("/processors/{node}/return") { _, ctx in try run { try store.returnProcessor(try ctx.node("node")) } }
        v1.get("/processors/{node}/personality") { _, ctx in try run { try store.personality(node: try ctx.node("node")) } }
        v1.get("/processors/{node}/console") { req, ctx in
            try run { () throws(PlatformError) -> ConsoleText in
                let number = try ctx.int("node")
                guard PlatformLimits.nodeNumbers.contains(number), let node = NodeNumber(exactly: number) else {
                    throw PlatformError(.invalid, field: "node", PlatformLimits.notANodeNumber(number))
                }
                let from = try req.uri.queryParameters.get("from").map { s throws(PlatformError) -> Int in
                    guard let v = Int(s), v >= 0 else { throw PlatformError(.invalid, field: "from", "'\(s)' is not a byte offset") }
                    return v
                } ?? 0
                let limit = try req.uri.queryParameters.get("limit").map { s throws(PlatformError) -> Int in
                    guard let v = Int(s), (1...(1 << 20)).contains(v) else { throw PlatformError(.invalid, field: "limit", "'\(s)' is not in 1...1048576") }
                    return v
                } ?? 65536
                guard let console else { throw PlatformError(.notFound, field: "node", "this control node keeps no console archive") }
                let r = console.read(node: node, from: from, limit: limit)
                return ConsoleText(node: node, from: from, next: r.next, text: String(decoding: r.text, as: UTF8.self))
            }
        }

        v1.get("/pans") { _, _ in try run { try store.pans() } }
        v1.post("/pans") { req, ctx in
            try await run(req, CreatePANBody.self) { b in try store.createPAN(b.name) }
        }
        v1.get("/pans/{pan}") { _, ctx in try run { try store.pan(try ctx.string("pan")) } }
        v1.delete("/pans/{pan}") { _, ctx in try run { try store.deletePAN(try ctx.string("pan")); return EmptyAnswer() } }
        v1.post("/pans/{pan}/vlans") { req, ctx in
            let pan = try ctx.string("pan")
            return try await run(req, AddVLANBody.self) { b in try store.addVLAN(b.vlan, to: pan) }
        }
        v1.delete("/pans/{pan}/vlans/{vlan}") { _, ctx in
            try run { try store.removeVLAN(try ctx.int("vlan"), from: try ctx.string("pan")) }
        }
        v1.post("/pans/{pan}/processors") { req, ctx in
            let pan = try ctx.string("pan")
            return try await run(req, AddPANProcessorBody.self) { b in try store.addProcessor(to: pan, name: b.name, node: b.node) }
        }

        v1.get("/personalities") { _, _ in try run { try store.personalities() } }
        v1.get("/personalities/{name}") { _, ctx in try run { try store.personality(try ctx.string("name")) } }
        v1.delete("/personalities/{name}") { _, ctx in
            try run { try store.removePersonality(try ctx.string("name")); return EmptyAnswer() }
        }
        v1.post("/personalities/{name}/nics") { req, ctx in
            let name = try ctx.string("name")
            return try await run(req, AttachNICBody.self) { b in
                try store.attachNIC(name, vlan: b.vlan, promiscuousAllowed: b.promiscuousAllowed ?? false)
            }
        }
        v1.delete("/personalities/{name}/nics/{vlan}") { _, ctx in
            try run { try store.detachNIC(try ctx.string("name"), vlan: try ctx.int("vlan")) }
        }
        v1.post("/personalities/{name}/ips") { req, ctx in
            let name = try ctx.string("name")
            return try await run(req, BindIPBody.self) { b in try store.bindIP(name, vlan: b.vlan, address: b.address) }
        }
        v1.delete("/personalities/{name}/ips/{vlan}/{host}") { _, ctx in
            try run { try store.unbindIP(try ctx.string("name"), vlan: try ctx.int("vlan"), address: try ctx.string("host") + "/32") }
        }
        v1.post("/personalities/{name}/storage") { req, ctx in
            let name = try ctx.string("name")
            return try await run(req, MapStorageBody.self) { b in
                try store.mapStorage(name, target: b.target, lun: b.lun, storage: b.storage, access: b.access ?? .readWrite)
            }
        }
        v1.delete("/personalities/{name}/storage/{target}/{lun}") { _, ctx in
            try run { try store.unmapStorage(try ctx.string("name"), target: try ctx.int("target"), lun: try ctx.int("lun")) }
        }
        v1.get("/storage") { _, _ in try run { try store.storageMap() } }
        addStoragePoolRoutes(v1, store: store)
        v1.put("/personalities/{name}/workload") { req, ctx in
            let name = try ctx.string("name")
            return try await run(req, SetWorkloadBody.self) { b in try store.setWorkload(name, command: b.command) }
        }
        v1.post("/personalities/{name}/migrate") { req, ctx in
            let name = try ctx.string("name")
            return try await run(req, MigrateBody.self) { b in
                try store.migrate(name, to: b.to, fence: false, reason: "migrated by the administrator")
            }
        }
        v1.get("/events") { req, _ in
            try run {
                let since = try req.uri.queryParameters.get("since").map { s throws(PlatformError) -> Int64 in
                    guard let v = Int64(s), v >= 0 else { throw PlatformError(.invalid, field: "since", "'\(s)' is not an event id") }
                    return v
                } ?? 0
                let limit = try req.uri.queryParameters.get("limit").map { s throws(PlatformError) -> Int in
                    guard let v = Int(s), (1...10000).contains(v) else { throw PlatformError(.invalid, field: "limit", "'\(s)' is not in 1...10000") }
                    return v
                } ?? 1000
                return try store.events(since: since, limit: limit)
            }
        }
        v1.get("/storage/stats") { req, _ in try run { try storageStatistics(req, store: store) } }
        return router
    }

    // MARK: - Responses

    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? APIBody.encode(value)) ?? Data("{}".utf8)
        var buffer = ByteBuffer()
        buffer.writeBytes(data)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: buffer))
    }

    static func refusal(_ e: PlatformError) -> Response {
        json(RefusalAnswer(kind: e.kind.rawValue, field: e.field, message: e.message), status: HTTPResponse.Status(code: e.httpStatus))
    }

    /// Runs a command; its result as JSON, or its refusal.
    static func run<T: Encodable>(_ body: () throws -> T) throws -> Response {
        do {
            return json(try body())
        } catch let e as PlatformError {
            return refusal(e)
        }
    }

    /// Reads the request's body as `B` (``APIBody/decode(_:from:)``: an unknown field, or one
    /// missing or of the wrong type, is refused naming it), then runs a command with it.
    static func run<B: APIRequestBody, T: Encodable>(_ req: Request, _: B.Type,
                                                     _ command: (B) throws -> T) async throws -> Response {
        do {
            let buffer = try await req.body.collect(upTo: 1 << 20)
            let body = try APIBody.decode(B.self, from: Data(buffer.readableBytesView))
            return json(try command(body))
        } catch let e as PlatformError {
            return refusal(e)
        }
    }
}

extension BasicRequestContext {
    func string(_ k: String) throws(PlatformError) -> String {
        guard let v = parameters.get(k) else { throw PlatformError(.invalid, field: k, "missing") }
        return v.removingPercentEncoding ?? v
    }

    func int(_ k: String) throws(PlatformError) -> Int {
        let s = try string(k)
        guard let v = Int(s) else { throw PlatformError(.invalid, field: k, "'\(s)' is not an integer") }
        return v
    }

    /// Path parameter `k` as a node number. Not an integer: refused (400). An integer no node
    /// can have (negative, above u32) names no node (404), as an unknown number does.
    func node(_ k: String) throws(PlatformError) -> NodeNumber {
        let v = try int(k)
        guard let n = NodeNumber(exactly: v) else { throw PlatformError(.notFound, field: k, "no node \(v)") }
        return n
    }
}

/// `Authorization: Bearer <token>` on every request, compared in constant time.
struct BearerToken<Context: RequestContext>: RouterMiddleware {
    let token: [UInt8]
    init(token: String) { self.token = Array(token.utf8) }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let given = request.headers[.authorization].map { Array($0.utf8) } ?? []
        let prefix = Array("Bearer ".utf8)
        var diff = given.count == prefix.count + token.count ? 0 : 1
        if diff == 0 {
            for (i, b) in prefix.enumerated() { diff |= Int(given[i] ^ b) }
            for (i, b) in token.enumerated() { diff |= Int(given[prefix.count + i] ^ b) }
        }
        guard diff == 0 else {
            return ManagementAPI.refusal(PlatformError(.unauthorized, field: "Authorization",
                                                       "a bearer token is required (the control node's api-token file)"))
        }
        return try await next(request, context)
    }
}

/// The API token: read from `file`, or generated (32 random bytes, hex) and written there with
/// mode 0600 on first start. The token itself is never printed or logged.
public enum APIToken {
    public static func loadOrCreate(at file: String) throws -> String {
        if let text = try? String(contentsOfFile: file, encoding: .utf8) {
            let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard t.count >= 32 else { throw PlatformError(.invalid, field: "token", "\(file) does not hold a token") }
            return t
        }
        var bytes = [UInt8](repeating: 0, count: 32)
        var rng = SystemRandomNumberGenerator()
        for i in bytes.indices { bytes[i] = rng.next() }
        let token = bytes.map { String(format: "%02x", $0) }.joined()
        let fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { throw PlatformError(.conflict, field: "token", "cannot create \(file): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let line = token + "\n"
        guard line.withCString({ write(fd, $0, strlen($0)) }) == line.utf8.count, fsync(fd) == 0 else {
            throw PlatformError(.conflict, field: "token", "cannot write \(file)")
        }
        return token
    }
}
