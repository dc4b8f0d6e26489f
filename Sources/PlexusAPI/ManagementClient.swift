import Foundation
import PlexusNamespaces
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
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
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let data = try? encoder.encode(body) else {
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
        struct Wrapper: Decodable { var error: Detail }
        struct Detail: Decodable { var kind: String; var field: String?; var message: String }
        if let e = try? JSONDecoder().decode(Wrapper.self, from: body).error {
            self.init(status: status, kind: e.kind, field: e.field, message: e.message)
        } else {
            let text = String(decoding: body.prefix(200), as: UTF8.self)
            self.init(status: status, kind: "http-\(status)", field: nil, message: text.isEmpty ? "(no error body)" : text)
        }
    }

    public var description: String {
        status == 0 ? message : "\(status) \(kind): \(field.map { "\($0): " } ?? "")\(message)"
    }
}
