import Foundation
import GRDB
import PlexusCore
import PlexusStorage

// The storage pool in the platform store ("Configuration Component"): what the control nodes'
// discovery found, compared with the prior view inside one write transaction, so that two
// control nodes rediscovering the same SAN write each change, and its event, once.

extension PlatformStore {
    /// The "storage pool" migration: the pool, the on-demand discovery requests, and the last
    /// discovery applied.
    static func registerStoragePool(_ m: inout DatabaseMigrator) {
        m.registerMigration("storage pool") { db in
            try db.execute(sql: """
                CREATE TABLE storage_pool (
                    path TEXT PRIMARY KEY,
                    bytes INTEGER NOT NULL,
                    blockSize INTEGER NOT NULL,
                    source TEXT NOT NULL,
                    present INTEGER NOT NULL DEFAULT 1,
                    seenMs INTEGER NOT NULL);
                CREATE TABLE storage_discovery_requests (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    requestedMs INTEGER NOT NULL,
                    claimedBy TEXT,
                    claimedMs INTEGER,
                    doneMs INTEGER,
                    summary TEXT);
                CREATE TABLE storage_discovery_last (
                    one INTEGER PRIMARY KEY CHECK (one = 1),
                    startedMs INTEGER NOT NULL,
                    doneMs INTEGER NOT NULL,
                    controlNode TEXT NOT NULL,
                    request INTEGER,
                    summary TEXT NOT NULL,
                    failures TEXT NOT NULL);
                """)
        }
    }

    /// The pool as the store holds it (the prior view of the next rediscovery).
    public func storagePool() throws -> StoragePool {
        try db.read { db in try Self.storagePool(db) }
    }

    static func storagePool(_ db: Database) throws -> StoragePool {
        var entries: [String: StoragePool.Entry] = [:]
        for r in try Row.fetchAll(db, sql: "SELECT * FROM storage_pool") {
            let item = StorageItem(path: r["path"], bytes: UInt64(r["bytes"] as Int64), blockSize: r["blockSize"], source: r["source"])
            entries[StoragePool.key(item.path)] = StoragePool.Entry(item: item, present: r["present"])
        }
        return StoragePool(entries: entries)
    }

    /// The storage map's paths (as ``StoragePool/key(_:)``), each with who maps it.
    static func assignments(_ db: Database) throws -> [String: [StorageAssignment]] {
        Dictionary(grouping: try storageMap(db)) { StoragePool.key($0.mapping.path) }
    }

    /// Who an assigned item is assigned to, for an event: "personality web (node 3) in PAN shop
    /// as target 0 LUN 1".
    static func users(_ list: [StorageAssignment]) -> String {
        list.map { a in
            "personality \(a.personality) (\(a.node.map { "node \($0)" } ?? "no processor")) in PAN \(a.pan) as target \(a.mapping.target) LUN \(a.mapping.lun)"
        }.joined(separator: "; ")
    }

    /// Applies a discovery a control node ran (``StorageDiscovery/run(_:initiator:)``): in one
    /// write transaction, reads the prior view and the storage map, compares
    /// (``StoragePool/compare(prior:discovered:assigned:)``), writes the new pool, writes an
    /// event per change (`storage-joined`, `storage-left`, `storage-returned`,
    /// `storage-resized`, and the error `storage-vanished-assigned` naming the PANs,
    /// personalities, processors and (target, LUN)s), and marks `request` done.
    ///
    /// A discovery that started before the last one applied is not compared (it would undo a
    /// newer view); it still completes `request`. Returns the change and the events written
    /// (none when skipped).
    @discardableResult
    /// `controlNode` names the control node that discovered (`node 1`) in the events.
    public func applyDiscovery(_ result: StorageDiscoveryResult, controlNode: String,
                               request: Int64? = nil) throws -> StoragePoolUpdate {
        try db.write { db in
            let now = Self.nowMs()
            var notes: [StoragePool.Change.Note] = []
            let lastStart = try Int64.fetchOne(db, sql: "SELECT startedMs FROM storage_discovery_last WHERE one = 1") ?? 0
            var change = StoragePool.Change()
            let stale = result.startedMs < lastStart
            if !stale {
                let users = try Self.assignments(db)
                change = StoragePool.compare(prior: try Self.storagePool(db), discovered: result.items, assigned: Set(users.keys))
                try db.execute(sql: "DELETE FROM storage_pool")
                for e in change.pool.entries.values {
                    try db.execute(sql: "INSERT INTO storage_pool(path, bytes, blockSize, source, present, seenMs) VALUES (?, ?, ?, ?, ?, ?)",
                                   arguments: [e.item.path, Int64(bitPattern: e.item.bytes), e.item.blockSize, e.item.source, e.present, now])
                }
                notes = change.notes(by: controlNode) { Self.users(users[StoragePool.key($0)] ?? []) }
                for n in notes { try Self.log(db, n.kind, n.subject, n.detail) }
                try db.execute(sql: """
                    INSERT INTO storage_discovery_last(one, startedMs, doneMs, controlNode, request, summary, failures)
                    VALUES (1, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(one) DO UPDATE SET startedMs = excluded.startedMs, doneMs = excluded.doneMs,
                        controlNode = excluded.controlNode, request = excluded.request, summary = excluded.summary,
                        failures = excluded.failures
                    """, arguments: [result.startedMs, now, controlNode, request, Self.summary(result, change),
                                     result.failures.joined(separator: "\n")])
            }
            if let request {
                try db.execute(sql: "UPDATE storage_discovery_requests SET doneMs = ?, summary = ? WHERE id = ?",
                               arguments: [now, stale ? "a newer discovery was applied first" : Self.summary(result, change), request])
            }
            return StoragePoolUpdate(change: change, notes: notes, stale: stale)
        }
    }

    static func summary(_ r: StorageDiscoveryResult, _ c: StoragePool.Change) -> String {
        "\(r.items.count) found; \(c.joined.count) joined, \(c.left.count) left, \(c.vanishedAssigned.count) vanished while assigned, "
            + "\(c.returned.count) returned, \(c.resized.count) resized" + (r.failures.isEmpty ? "" : "; \(r.failures.count) not reachable")
    }

    /// Records an administrator's request for a rediscovery (`POST /v1/storage/discover`);
    /// a running control node that follows the store claims it (``claimDiscoveryRequest(by:staleAfterMs:)``).
    public func requestDiscovery() throws -> StorageDiscoveryRequest {
        try db.write { db in
            try db.execute(sql: "INSERT INTO storage_discovery_requests(requestedMs) VALUES (?)", arguments: [Self.nowMs()])
            return try Self.discoveryRequest(db, db.lastInsertedRowID)!
        }
    }

    /// Claims the oldest request no control node claimed (or one claimed more than
    /// `staleAfterMs` ago and still not done: its control node stopped), for control node `by`;
    /// nil when there is none. One control node gets each request.
    public func claimDiscoveryRequest(by: String, staleAfterMs: Int64 = 120_000) throws -> Int64? {
        try db.write { db in
            let now = Self.nowMs()
            guard let id = try Int64.fetchOne(db, sql: "SELECT id FROM storage_discovery_requests WHERE \(Self.claimable) ORDER BY id LIMIT 1",
                                              arguments: [now - staleAfterMs]) else { return nil }
            try db.execute(sql: "UPDATE storage_discovery_requests SET claimedBy = ?, claimedMs = ? WHERE id = ?",
                           arguments: [by, now, id])
            return id
        }
    }

    /// Whether ``claimDiscoveryRequest(by:staleAfterMs:)`` would find a request (a cheap read,
    /// for a control node's loop: no write transaction while there is nothing to do).
    public func hasClaimableDiscoveryRequest(staleAfterMs: Int64 = 120_000) throws -> Bool {
        try db.read { db in
            try Row.fetchOne(db, sql: "SELECT 1 FROM storage_discovery_requests WHERE \(Self.claimable) LIMIT 1",
                             arguments: [Self.nowMs() - staleAfterMs]) != nil
        }
    }

    /// A request not done and not claimed, or claimed before the bound given as the argument.
    static let claimable = "doneMs IS NULL AND (claimedBy IS NULL OR claimedMs < ?)"

    /// Request `id` and what became of it.
    /// - Throws: ``PlatformError`` (not found, naming `id`).
    public func discoveryRequest(_ id: Int64) throws -> StorageDiscoveryRequest {
        try db.read { db in
            guard let r = try Self.discoveryRequest(db, id) else {
                throw PlatformError(.notFound, field: "id", "no discovery request \(id)")
            }
            return r
        }
    }

    static func discoveryRequest(_ db: Database, _ id: Int64) throws -> StorageDiscoveryRequest? {
        try Row.fetchOne(db, sql: "SELECT * FROM storage_discovery_requests WHERE id = ?", arguments: [id]).map {
            StorageDiscoveryRequest(id: $0["id"], requestedMs: $0["requestedMs"], claimedBy: $0["claimedBy"], doneMs: $0["doneMs"],
                                    summary: $0["summary"])
        }
    }

    /// The pool with each item's state (free, assigned, vanished-assigned) and who uses it, and
    /// the last discovery applied (`GET /v1/storage/pool`).
    public func storagePoolListing() throws -> StoragePoolListing {
        try db.read { db in
            let users = try Self.assignments(db)
            let items = try Self.storagePool(db).sorted.map { e -> StoragePoolListing.Item in
                let u = users[StoragePool.key(e.item.path)] ?? []
                let state: StoragePoolListing.State = !e.present ? .vanishedAssigned : u.isEmpty ? .free : .assigned
                return StoragePoolListing.Item(path: e.item.path, bytes: e.item.bytes, blockSize: e.item.blockSize,
                                               source: e.item.source, state: state, assignedTo: u)
            }
            let last = try Row.fetchOne(db, sql: "SELECT * FROM storage_discovery_last WHERE one = 1").map {
                StoragePoolListing.Discovery(startedMs: $0["startedMs"], doneMs: $0["doneMs"], controlNode: $0["controlNode"],
                                             request: $0["request"], summary: $0["summary"],
                                             failures: ($0["failures"] as String).split(separator: "\n").map(String.init))
            }
            let pending = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM storage_discovery_requests WHERE doneMs IS NULL") ?? 0
            return StoragePoolListing(items: items, lastDiscovery: last, pendingRequests: pending)
        }
    }
}

/// What applying a discovery to the store did.
public struct StoragePoolUpdate: Sendable, Hashable {
    public var change: StoragePool.Change
    /// The events written, one per change.
    public var notes: [StoragePool.Change.Note]
    /// The discovery started before the last one applied, and was not compared.
    public var stale: Bool
}

/// An administrator's request for a rediscovery, and what became of it.
public struct StorageDiscoveryRequest: Codable, Sendable, Hashable {
    public var id: Int64
    public var requestedMs: Int64
    /// The control node that took it (`node N`), nil while none has.
    public var claimedBy: String?
    /// When it was done, nil while it is not.
    public var doneMs: Int64?
    /// What the rediscovery changed ("3 found; 1 joined, …").
    public var summary: String?
}

/// The storage pool as `GET /v1/storage/pool` and `plexus storage pool` show it.
public struct StoragePoolListing: Codable, Sendable, Hashable {
    /// An item's state.
    public enum State: String, Codable, Sendable, CaseIterable {
        /// Found, and in no storage map: an administrator may map it.
        case free
        /// Found, and mapped by a personality.
        case assigned
        /// Mapped, and not found by the last discovery (an error was recorded).
        case vanishedAssigned = "vanished-assigned"
    }
    /// An item of the pool (``StorageItem``'s fields), its state, and who maps it.
    public struct Item: Codable, Sendable, Hashable {
        public var path: String
        public var bytes: UInt64
        public var blockSize: Int
        public var source: String
        public var state: State
        /// The storage map's entries that use it.
        public var assignedTo: [StorageAssignment]
    }
    /// The last discovery applied to the pool.
    public struct Discovery: Codable, Sendable, Hashable {
        public var startedMs: Int64
        public var doneMs: Int64
        public var controlNode: String
        /// The request it answered, if it was one.
        public var request: Int64?
        public var summary: String
        /// Portals and directories it could not look at.
        public var failures: [String]
    }
    public var items: [Item]
    public var lastDiscovery: Discovery?
    /// Requests not done yet.
    public var pendingRequests: Int
}
