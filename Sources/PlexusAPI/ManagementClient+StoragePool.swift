import PlexusPlatform

extension ManagementClient {
    /// The storage pool with each item's state (`GET /v1/storage/pool`).
    public func storagePool() async throws(APIRefusal) -> StoragePoolListing { try await call("GET", "/v1/storage/pool") }

    /// Asks the control nodes for a rediscovery (`POST /v1/storage/discover`); the request, not
    /// yet done.
    public func requestDiscovery() async throws(APIRefusal) -> StorageDiscoveryRequest {
        try await call("POST", "/v1/storage/discover")
    }

    /// A rediscovery request and what became of it (`GET /v1/storage/discover/{id}`).
    public func discoveryRequest(_ id: Int64) async throws(APIRefusal) -> StorageDiscoveryRequest {
        try await call("GET", "/v1/storage/discover/\(id)")
    }
}
