import Foundation
import Hummingbird
import PlexusPlatform

// The storage pool's routes ("Management Interface Component": the pool an administrator
// allocates from, and rediscovery on demand).

extension ManagementAPI {
    /// `GET /v1/storage/pool`, `POST /v1/storage/discover`, `GET /v1/storage/discover/{id}`.
    static func addStoragePoolRoutes(_ v1: RouterGroup<BasicRequestContext>, store: PlatformStore) {
        v1.get("/storage/pool") { _, _ in try run { try store.storagePoolListing() } }
        v1.post("/storage/discover") { req, _ in
            do {
                let buffer = try await req.body.collect(upTo: 1 << 16)
                try noFields(Data(buffer.readableBytesView))
                return json(try store.requestDiscovery(), status: .accepted)
            } catch let e as PlatformError {
                return refusal(e)
            }
        }
        v1.get("/storage/discover/{id}") { _, ctx in
            try run { () throws -> StorageDiscoveryRequest in
                let text = try ctx.string("id")
                guard let id = Int64(text), id > 0 else {
                    throw PlatformError(.invalid, field: "id", "'\(text)' is not a discovery request id (a positive integer)")
                }
                return try store.discoveryRequest(id)
            }
        }
    }

    /// A body that must be empty or `{}`: anything else is refused naming it.
    static func noFields(_ data: Data) throws(PlatformError) {
        guard !data.isEmpty else { return }
        guard let o = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw PlatformError(.invalid, field: "body", "the body is not a JSON object")
        }
        if let unknown = o.keys.sorted().first {
            throw PlatformError(.invalid, field: unknown, "unknown field (this request takes none)")
        }
    }
}
