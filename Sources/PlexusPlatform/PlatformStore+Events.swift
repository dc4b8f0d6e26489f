import GRDB
import PlexusLAN

extension PlatformStore {
    /// Records an event (failure detections, timelines) from outside the store's commands.
    public func record(_ kind: String, subject: String, detail: String) throws {
        try db.write { db in try Self.log(db, kind, subject, detail) }
    }

    /// Events after `since` (an event id), oldest first, at most `limit`.
    public func events(since: Int64 = 0, limit: Int = 1000) throws -> [PlatformEvent] {
        try db.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?", arguments: [since, limit]).map {
                PlatformEvent(id: $0["id"], timeMs: $0["timeMs"], kind: $0["kind"], subject: $0["subject"], detail: $0["detail"])
            }
        }
    }

    /// The MAC counter: MACs handed out so far (never reused).
    public func macsHandedOut() throws -> Int {
        try db.read { db in Int(try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'mac_next'") ?? "0") ?? 0 }
    }

    /// Every NIC of every assigned personality, as the virtual LAN layer binds them.
    public func nicBindings() throws -> [VirtualNICBinding] {
        try personalities().flatMap { $0.processorPersonality?.nics ?? [] }
    }
}
