import Foundation
import PlexusNamespaces
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import PlexusCore
import PlexusStorage
import PlexusLAN
import PlexusPlatform

// MARK: - The API client

/// A client of the management API over HTTP with the bearer token: what the agent (and the
/// tests) use, the same requests an administrator sends.
public final class ManagementClient: Sendable {
    public let base: String
    let token: String
    let session: URLSession

    /// - Parameters:
    ///   - base: the API's base URL without `/v1` (`http://127.0.0.1:7070`).
    ///   - connections: how many requests may be in flight to the API at once.
    public init(base: String, token: String, connections: Int = 8, timeout: TimeInterval = 30) {
        self.base = base.hasSuffix("/") ? String(base.dropLast()) : base
        self.token = token
        let config = URLSessionConfiguration.ephemeral
        config.httpMaximumConnectionsPerHost = connections
        config.timeoutIntervalForRequest = timeout
        session = URLSession(configuration: config)
    }

    deinit { session.finishTasksAndInvalidate() }

    /// One request; its status and body. Throws an ``APIRefusal`` with status 0 when no answer
    /// came (the API is down or unreachable).
    public func send(_ method: String, _ path: String, json body: Data? = nil) async throws(APIRefusal) -> (status: Int, body: Data) {
        guard let url = URL(string: base + path) else {
            throw APIRefusal(status: 0, kind: "unreachable", field: nil, message: "bad URL \(base + path)")
        }
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        if let body {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = body
        }
        let result: Result<(Int, Data), APIRefusal> = await withCheckedContinuation { c in
            session.dataTask(with: request) { data, response, error in
                if let http = response as? HTTPURLResponse {
                    c.resume(returning: .success((http.statusCode, data ?? Data())))
                } else {
                    c.resume(returning: .failure(APIRefusal(status: 0, kind: "unreachable", field: nil,
                                                            message: "no answer from \(url): \(error.map { "\($0.localizedDescription)" } ?? "?")")))
                }
            }.resume()
        }
        return try result.get()
    }

    /// One request whose answer is decoded as `T`; a refusal (4xx/5xx) is thrown as an
    /// ``APIRefusal`` carrying the API's error kind, field and message.
    public func call<T: Decodable>(_ method: String, _ path: String, as: T.Type = T.self) async throws(APIRefusal) -> T {
        let answer = try await send(method, path)
        return try decode(method, path, answer)
    }

    /// As ``call(_:_:as:)``, with `body` as the request's JSON.
    public func call<T: Decodable, B: Encodable & Sendable>(_ method: String, _ path: String, _ body: B,
                                                            as: T.Type = T.self) async throws(APIRefusal) -> T {
        guard let data = try? APIBody.encode(body) else {
            throw APIRefusal(status: 0, kind: "invalid", field: nil, message: "cannot encode the body of \(method) \(path)")
        }
        let answer = try await send(method, path, json: data)
        return try decode(method, path, answer)
    }

    func decode<T: Decodable>(_ method: String, _ path: String, _ answer: (status: Int, body: Data)) throws(APIRefusal) -> T {
        guard (200..<300).contains(answer.status) else { throw APIRefusal(status: answer.status, body: answer.body) }
        do {
            return try JSONDecoder().decode(T.self, from: answer.body)
        } catch {
            throw APIRefusal(status: answer.status, kind: "unexpected", field: nil,
                             message: "cannot read the answer to \(method) \(path): \(String(decoding: answer.body.prefix(200), as: UTF8.self))")
        }
    }

    // MARK: - The routes (docs/openapi.yaml), one call each

    public func health() async throws(APIRefusal) -> HealthAnswer { try await call("GET", "/v1/health") }

    public func processors() async throws(APIRefusal) -> [Processor] { try await call("GET", "/v1/processors") }

    public func addProcessors(_ nodes: [NodeNumber]) async throws(APIRefusal) -> [Processor] {
        try await call("POST", "/v1/processors", AddProcessorsBody(nodes: nodes))
    }

    public func removeProcessor(_ node: NodeNumber) async throws(APIRefusal) -> EmptyAnswer {
        try await call("DELETE", "/v1/processors/\(node)")
    }

    public func returnProcessor(_ node: NodeNumber) async throws(APIRefusal) -> Processor {
        try await call("POST", "/v1/processors/\(node)/return")
    }

    public func personality(node: NodeNumber) async throws(APIRefusal) -> Personality {
        try await call("GET", "/v1/processors/\(node)/personality")
    }

    /// Bytes of node `node`'s console from `from` (at most `limit`, the API's default when nil).
    public func console(node: NodeNumber, from: Int = 0, limit: Int? = nil) async throws(APIRefusal) -> ConsoleText {
        try await call("GET", "/v1/processors/\(node)/console?from=\(from)" + (limit.map { "&limit=\($0)" } ?? ""))
    }

    public func pans() async throws(APIRefusal) -> [PAN] { try await call("GET", "/v1/pans") }

    public func createPAN(_ name: String) async throws(APIRefusal) -> PAN {
        try await call("POST", "/v1/pans", CreatePANBody(name: name))
    }

    public func pan(_ name: String) async throws(APIRefusal) -> PAN { try await call("GET", "/v1/pans/\(Self.escape(name))") }

    public func deletePAN(_ name: String) async throws(APIRefusal) -> EmptyAnswer {
        try await call("DELETE", "/v1/pans/\(Self.escape(name))")
    }

    public func addVLAN(_ vlan: Int, to pan: String) async throws(APIRefusal) -> PAN {
        try await call("POST", "/v1/pans/\(Self.escape(pan))/vlans", AddVLANBody(vlan: vlan))
    }

    public func removeVLAN(_ vlan: Int, from pan: String) async throws(APIRefusal) -> PAN {
        try await call("DELETE", "/v1/pans/\(Self.escape(pan))/vlans/\(vlan)")
    }

    /// A processor from the free pool (`node`, else the lowest free one) into `pan`, with a new
    /// personality (`name`, else `<pan>-<node>`).
    public func addProcessor(to pan: String, name: String? = nil, node: NodeNumber? = nil) async throws(APIRefusal) -> Personality {
        try await call("POST", "/v1/pans/\(Self.escape(pan))/processors", AddPANProcessorBody(name: name, node: node))
    }

    public func personalities() async throws(APIRefusal) -> [Personality] { try await call("GET", "/v1/personalities") }
    /// The platform's storage map: every personality's (target, LUN)s.
    public func storageMap() async throws(APIRefusal) -> [StorageAssignment] { try await call("GET", "/v1/storage") }
    /// The storage statistics the control nodes published, per LUN, processor and PAN; of PAN
    /// `pan` or processor `processor` only when given.
    public func storageStatistics(pan: String? = nil, processor: NodeNumber? = nil) async throws(APIRefusal) -> StorageStatisticsReport {
        var query: [String] = []
        if let pan { query.append("pan=" + (pan.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? pan)) }
        if let processor { query.append("processor=\(processor)") }
        return try await call("GET", "/v1/storage/stats" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")))
    }

    public func personality(_ name: String) async throws(APIRefusal) -> Personality {
        try await call("GET", "/v1/personalities/\(Self.escape(name))")
    }

    public func removePersonality(_ name: String) async throws(APIRefusal) -> EmptyAnswer {
        try await call("DELETE", "/v1/personalities/\(Self.escape(name))")
    }

    public func attachNIC(_ name: String, vlan: Int, promiscuousAllowed: Bool? = nil) async throws(APIRefusal) -> Personality {
        try await call("POST", "/v1/personalities/\(Self.escape(name))/nics", AttachNICBody(vlan: vlan, promiscuousAllowed: promiscuousAllowed))
    }

    public func detachNIC(_ name: String, vlan: Int) async throws(APIRefusal) -> Personality {
        try await call("DELETE", "/v1/personalities/\(Self.escape(name))/nics/\(vlan)")
    }

    public func bindIP(_ name: String, vlan: Int, address: String) async throws(APIRefusal) -> Personality {
        try await call("POST", "/v1/personalities/\(Self.escape(name))/ips", BindIPBody(vlan: vlan, address: address))
    }

    /// Unbinds `host` (a.b.c.d, no length) from the NIC on `vlan`.
    public func unbindIP(_ name: String, vlan: Int, host: String) async throws(APIRefusal) -> Personality {
        try await call("DELETE", "/v1/personalities/\(Self.escape(name))/ips/\(vlan)/\(Self.escape(host))")
    }

    public func mapStorage(_ name: String, target: Int, lun: Int, storage: String,
                           access: StorageAccess? = nil) async throws(APIRefusal) -> Personality {
        try await call("POST", "/v1/personalities/\(Self.escape(name))/storage",
                       MapStorageBody(target: target, lun: lun, storage: storage, access: access))
    }

    public func unmapStorage(_ name: String, target: Int, lun: Int) async throws(APIRefusal) -> Personality {
        try await call("DELETE", "/v1/personalities/\(Self.escape(name))/storage/\(target)/\(lun)")
    }

    /// Sets the workload command, or clears it (nil).
    public func setWorkload(_ name: String, command: String?) async throws(APIRefusal) -> Personality {
        try await call("PUT", "/v1/personalities/\(Self.escape(name))/workload", SetWorkloadBody(command: command))
    }

    /// Moves a personality by hand to `to`, else to the lowest free node.
    public func migrate(_ name: String, to: NodeNumber? = nil) async throws(APIRefusal) -> PlatformStore.Migration {
        try await call("POST", "/v1/personalities/\(Self.escape(name))/migrate", MigrateBody(to: to))
    }

    /// Events after `since`, oldest first, at most `limit` (the API's default when nil).
    public func events(since: Int64 = 0, limit: Int? = nil) async throws(APIRefusal) -> [PlatformEvent] {
        try await call("GET", "/v1/events?since=\(since)" + (limit.map { "&limit=\($0)" } ?? ""))
    }

    /// A path component, percent-escaped.
    public static func escape(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? s
    }
}

/// A request the API refused (its status, and its error's kind, field and message), or one that
/// got no answer (status 0, kind `unreachable`).
public struct APIRefusal: Error, Sendable, Hashable, Codable, CustomStringConvertible {
    public var status: Int
    public var kind: String
    public var field: String?
    public var message: String

    public init(status: Int, kind: String, field: String?, message: String) {
        self.status = status
        self.kind = kind
        self.field = field
        self.message = message
    }

    /// From the API's `{"error": {"kind", "field", "message"}}`.
    public init(status: Int, body: Data) {
        if let e = try? JSONDecoder().decode(RefusalAnswer.self, from: body).error {
            self.init(status: status, kind: e.kind, field: e.field, message: e.message)
        } else {
            let text = String(decoding: body.prefix(200), as: UTF8.self)
            self.init(status: status, kind: "http-\(status)", field: nil, message: text.isEmpty ? "(no error body)" : text)
        }
    }

    /// As the API writes it: `{"error": {"kind", "field", "message"}}`.
    public var answer: RefusalAnswer { RefusalAnswer(kind: kind, field: field, message: message) }

    public var description: String {
        status == 0 ? message : "\(status) \(kind): \(field.map { "\($0): " } ?? "")\(message)"
    }
}
