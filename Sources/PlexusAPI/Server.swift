import Foundation
import Hummingbird
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
        ("GET", "/v1/events"),
    ]

    /// A piece of a node's console: bytes `from..<next` of its log at this control node.
    public struct ConsoleText: Codable, Sendable {
        public var node: Int
        public var from: Int
        /// Where the next read starts (`from` when there was nothing new).
        public var next: Int
        /// The bytes, as UTF-8 (an invalid sequence becomes U+FFFD).
        public var text: String
    }

    /// Builds the router for `store`, requiring `token` on every route but health. `console`
    /// is the control node's console archive (``ConsoleArchive``), nil if it keeps none.
    public static func router(store: PlatformStore, token: String, console: ConsoleArchive? = nil) -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/v1/health") { _, _ in json(["status": "ok"]) }
        let v1 = router.group("/v1").add(middleware: BearerToken(token: token))

        v1.get("/processors") { _, _ in try run { try store.processors() } }
        v1.post("/processors") { req, ctx in
            try await run(req, ctx, allowed: ["nodes"]) { b in try store.addProcessors(try b.intArray("nodes")) }
        }
        v1.delete("/processors/{node}") { _, ctx in
            try run { try store.removeProcessor(try ctx.int("node")); return Empty() }
        }
        v1.post("/processors/{node}/return") { _, ctx in try run { try store.returnProcessor(try ctx.int("node")) } }
        v1.get("/processors/{node}/personality") { _, ctx in try run { try store.personality(node: try ctx.int("node")) } }
        v1.get("/processors/{node}/console") { req, ctx in
            try run { () throws(PlatformError) -> ConsoleText in
                let node = try ctx.int("node")
                guard (1...65535).contains(node) else { throw PlatformError(.invalid, field: "node", "\(node) is not a node number (1...65535)") }
                let from = try req.uri.queryParameters.get("from").map { s throws(PlatformError) -> Int in
                    guard let v = Int(s), v >= 0 else { throw PlatformError(.invalid, field: "from", "'\(s)' is not a byte offset") }
                    return v
                } ?? 0
                let limit = try req.uri.queryParameters.get("limit").map { s throws(PlatformError) -> Int in
                    guard let v = Int(s), (1...(1 << 20)).contains(v) else { throw PlatformError(.invalid, field: "limit", "'\(s)' is not in 1...1048576") }
                    return v
                } ?? 65536
                guard let console else { throw PlatformError(.notFound, field: "node", "this control node keeps no console archive") }
                let r = console.read(node: UInt32(node), from: from, limit: limit)
                return ConsoleText(node: node, from: from, next: r.next, text: String(decoding: r.text, as: UTF8.self))
            }
        }

        v1.get("/pans") { _, _ in try run { try store.pans() } }
        v1.post("/pans") { req, ctx in
            try await run(req, ctx, allowed: ["name"]) { b in try store.createPAN(try b.string("name")) }
        }
        v1.get("/pans/{pan}") { _, ctx in try run { try store.pan(try ctx.string("pan")) } }
        v1.delete("/pans/{pan}") { _, ctx in try run { try store.deletePAN(try ctx.string("pan")); return Empty() } }
        v1.post("/pans/{pan}/vlans") { req, ctx in
            let pan = try ctx.string("pan")
            return try await run(req, ctx, allowed: ["vlan"]) { b in try store.addVLAN(try b.int("vlan"), to: pan) }
        }
        v1.delete("/pans/{pan}/vlans/{vlan}") { _, ctx in
            try run { try store.removeVLAN(try ctx.int("vlan"), from: try ctx.string("pan")) }
        }
        v1.post("/pans/{pan}/processors") { req, ctx in
            let pan = try ctx.string("pan")
            return try await run(req, ctx, allowed: ["name", "node"]) { b in
                try store.addProcessor(to: pan, name: try b.optionalString("name"), node: try b.optionalInt("node"))
            }
        }

        v1.get("/personalities") { _, _ in try run { try store.personalities() } }
        v1.get("/personalities/{name}") { _, ctx in try run { try store.personality(try ctx.string("name")) } }
        v1.delete("/personalities/{name}") { _, ctx in
            try run { try store.removePersonality(try ctx.string("name")); return Empty() }
        }
        v1.post("/personalities/{name}/nics") { req, ctx in
            let name = try ctx.string("name")
            return try await run(req, ctx, allowed: ["vlan", "promiscuousAllowed"]) { b in
                try store.attachNIC(name, vlan: try b.int("vlan"), promiscuousAllowed: try b.optionalBool("promiscuousAllowed") ?? false)
            }
        }
        v1.delete("/personalities/{name}/nics/{vlan}") { _, ctx in
            try run { try store.detachNIC(try ctx.string("name"), vlan: try ctx.int("vlan")) }
        }
        v1.post("/personalities/{name}/ips") { req, ctx in
            let name = try ctx.string("name")
            return try await run(req, ctx, allowed: ["vlan", "address"]) { b in
                try store.bindIP(name, vlan: try b.int("vlan"), address: try b.string("address"))
            }
        }
        v1.delete("/personalities/{name}/ips/{vlan}/{host}") { _, ctx in
            try run { try store.unbindIP(try ctx.string("name"), vlan: try ctx.int("vlan"), address: try ctx.string("host") + "/32") }
        }
        v1.post("/personalities/{name}/storage") { req, ctx in
            let name = try ctx.string("name")
            return try await run(req, ctx, allowed: ["target", "lun", "storage", "access"]) { b in
                let access = try b.optionalString("access").map { a throws(PlatformError) -> StorageMapping.Access in
                    guard let v = StorageMapping.Access(rawValue: a) else {
                        throw PlatformError(.invalid, field: "access", "'\(a)' is not read-write or read-only")
                    }
                    return v
                }
                return try store.mapStorage(name, target: try b.int("target"), lun: try b.int("lun"),
                                            storage: try b.string("storage"), access: access ?? .readWrite)
            }
        }
        v1.delete("/personalities/{name}/storage/{target}/{lun}") { _, ctx in
            try run { try store.unmapStorage(try ctx.string("name"), target: try ctx.int("target"), lun: try ctx.int("lun")) }
        }
        v1.put("/personalities/{name}/workload") { req, ctx in
            let name = try ctx.string("name")
            return try await run(req, ctx, allowed: ["command"]) { b in
                try store.setWorkload(name, command: try b.optionalString("command"))
            }
        }
        v1.post("/personalities/{name}/migrate") { req, ctx in
            let name = try ctx.string("name")
            return try await run(req, ctx, allowed: ["to"]) { b in
                try store.migrate(name, to: try b.optionalInt("to"), fence: false, reason: "migrated by the administrator")
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
        return router
    }

    // MARK: - Responses

    struct Empty: Encodable {}

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }()

    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        var buffer = ByteBuffer()
        buffer.writeBytes(data)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: buffer))
    }

    static func refusal(_ e: PlatformError) -> Response {
        struct Body: Encodable { var error: Detail }
        struct Detail: Encodable { var kind: String; var field: String?; var message: String }
        return json(Body(error: Detail(kind: e.kind.rawValue, field: e.field, message: e.message)),
                    status: HTTPResponse.Status(code: e.httpStatus))
    }

    /// Runs a command; its result as JSON, or its refusal.
    static func run<T: Encodable>(_ body: () throws -> T) throws -> Response {
        do {
            return json(try body())
        } catch let e as PlatformError {
            return refusal(e)
        }
    }

    /// Reads the request's JSON object (refusing unknown fields), then runs a command.
    static func run<T: Encodable>(_ req: Request, _ ctx: BasicRequestContext, allowed: Set<String>,
                                  _ body: (RequestBody) throws -> T) async throws -> Response {
        do {
            let buffer = try await req.body.collect(upTo: 1 << 20)
            let b = try RequestBody(Data(buffer.readableBytesView), allowed: allowed)
            return json(try body(b))
        } catch let e as PlatformError {
            return refusal(e)
        }
    }
}

/// A JSON value, as JSONDecoder reads it strictly (a number is never a boolean, nor the reverse).
enum JSONValue: Decodable {
    case null, bool(Bool), int(Int), double(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let v = try? c.decode(Bool.self) { self = .bool(v) }
        else if let v = try? c.decode(Int.self) { self = .int(v) }
        else if let v = try? c.decode(Double.self) { self = .double(v) }
        else if let v = try? c.decode(String.self) { self = .string(v) }
        else if let v = try? c.decode([JSONValue].self) { self = .array(v) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }
}

/// A request's JSON object, read field by field so that every error names its field.
struct RequestBody {
    let fields: [String: JSONValue]

    init(_ data: Data, allowed: Set<String>) throws(PlatformError) {
        if data.isEmpty {
            fields = [:]
            return
        }
        guard let value = try? JSONDecoder().decode(JSONValue.self, from: data), case .object(let dict) = value else {
            throw PlatformError(.invalid, field: "body", "the body is not a JSON object")
        }
        if let unknown = dict.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw PlatformError(.invalid, field: unknown, "unknown field (this request takes \(allowed.sorted().joined(separator: ", ")))")
        }
        fields = dict
    }

    func string(_ k: String) throws(PlatformError) -> String {
        guard let v = try optionalString(k) else { throw PlatformError(.invalid, field: k, "missing") }
        return v
    }

    func optionalString(_ k: String) throws(PlatformError) -> String? {
        switch fields[k] {
        case nil, .null?: return nil
        case .string(let s)?: return s
        default: throw PlatformError(.invalid, field: k, "must be a string")
        }
    }

    func int(_ k: String) throws(PlatformError) -> Int {
        guard let v = try optionalInt(k) else { throw PlatformError(.invalid, field: k, "missing") }
        return v
    }

    func optionalInt(_ k: String) throws(PlatformError) -> Int? {
        switch fields[k] {
        case nil, .null?: return nil
        case .int(let i)?: return i
        default: throw PlatformError(.invalid, field: k, "must be an integer")
        }
    }

    func optionalBool(_ k: String) throws(PlatformError) -> Bool? {
        switch fields[k] {
        case nil, .null?: return nil
        case .bool(let b)?: return b
        default: throw PlatformError(.invalid, field: k, "must be true or false")
        }
    }

    func intArray(_ k: String) throws(PlatformError) -> [Int] {
        guard case .array(let a)? = fields[k] else { throw PlatformError(.invalid, field: k, "must be an array of integers") }
        var out: [Int] = []
        for e in a {
            guard case .int(let i) = e else { throw PlatformError(.invalid, field: k, "must be an array of integers") }
            out.append(i)
        }
        return out
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
