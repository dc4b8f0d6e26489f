import Foundation
import Hummingbird
import HummingbirdTesting
import PlexusAPI
import PlexusTestSupport
import Synchronization
import Testing
@testable import PlexusPlatform

/// A management API served over real HTTP (hummingbird on a free port) on a store in a temporary
/// database: what the agent and the concurrency tests talk to.
struct LiveAPI: Sendable {
    static let token = String(repeating: "cd", count: 32)
    let client: ManagementClient
    let store: PlatformStore
    let base: String

    /// Serves the API on `store` (a fresh temporary one by default) for the length of `body`;
    /// while `refuseDeletes` is on, every DELETE is answered 503 (a control node in trouble).
    static func with(store given: PlatformStore? = nil, connections: Int = 8, refuseDeletes: Switch = Switch(),
                     _ body: @Sendable (LiveAPI) async throws -> Void) async throws {
        let t = try TempDatabase()
        let store = try given ?? PlatformStore(path: t.path)
        let responder = ManagementAPI.router(store: store, token: token).buildResponder()
        let app = Application(responder: CallbackResponder<BasicRequestContext> { request, context in
            if request.method == .delete && refuseDeletes.isOn { return Response(status: .serviceUnavailable) }
            return try await responder.respond(to: request, context: context)
        })
        try await app.test(.live) { c in
            let port = try #require(c.port)
            let base = "http://localhost:\(port)"
            try await body(LiveAPI(client: ManagementClient(base: base, token: token, connections: connections), store: store, base: base))
        }
        _ = t
    }

    /// One request with a JSON body given as text; the status and the refusal, if any.
    @discardableResult
    func request(_ method: String, _ path: String, _ json: String? = nil) async throws -> (status: Int, body: Data, refusal: APIRefusal?) {
        let (status, body) = try await client.send(method, path, json: json.map { Data($0.utf8) })
        return (status, body, status >= 400 ? APIRefusal(status: status, body: body) : nil)
    }

    /// A request that must succeed.
    func must(_ method: String, _ path: String, _ json: String? = nil,
              sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let r = try await request(method, path, json)
        #expect(r.status == 200, "\(method) \(path): \(String(decoding: r.body, as: UTF8.self))", sourceLocation: sourceLocation)
    }
}

/// A flag the test flips while the server reads it.
final class Switch: Sendable {
    let on = Mutex(false)
    func set(_ v: Bool) { on.withLock { $0 = v } }
    var isOn: Bool { on.withLock { $0 } }
}

/// A load the test sets, read by the agent instead of a file or a command.
final class FakeLoad: Sendable {
    let value = Mutex<Result<Double, LoadError>>(.success(0))
    func set(_ v: Double) { value.withLock { $0 = .success(v) } }
    func fail(_ why: String) { value.withLock { $0 = .failure(LoadError(why)) } }
    var reader: @Sendable (LoadSource) async throws -> Double { { _ in try self.value.withLock { try $0.get() } } }
}

let utc = TimeZone(identifier: "UTC")!

/// 2026-03-`day` `h`:`m` UTC.
func at(_ h: Int, _ m: Int, day: Int = 10) -> Date {
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = utc
    return calendar.date(from: DateComponents(year: 2026, month: 3, day: day, hour: h, minute: m))!
}
