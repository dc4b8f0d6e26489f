import GRDB
import PlexusCore

extension PlatformStore {
    /// What a migration did.
    public struct Migration: Sendable, Hashable, Codable {
        public var personality: Personality
        public var from: NodeNumber?
        public var to: NodeNumber
        /// Whether the old processor was fenced (a failure) or returned to the pool (by hand).
        public var fenced: Bool
    }

    /// Moves a personality to another processor: `to`, or a spare from the free pool. The new
    /// processor inherits everything (MACs, VLANs, IPs, storage, workload). The old one is
    /// fenced when `fence` (it failed: it stays out until returned), else freed.
    public func migrate(_ name: String, to node: NodeNumber? = nil, fence: Bool, reason: String) throws -> Migration {
        if let node { try Check.node(node, field: "to") }
        return try db.write { db in try Self.migrate(db, name, to: node, fence: fence, reason: reason) }
    }

    static func migrate(_ db: Database, _ name: String, to node: NodeNumber?, fence: Bool, reason: String) throws -> Migration {
        let p = try Self.requirePersonality(db, name)
        if let node, node == p.node { throw PlatformError(.invalid, field: "to", "\(name) is already on node \(node)") }
        let spare = try Self.takeSpare(db, preferring: node, field: "to")
        if let old = p.node {
            if fence {
                try db.execute(sql: "UPDATE processors SET state = 'fenced', personality = NULL, fencedReason = ? WHERE node = ?",
                               arguments: [reason, old])
            } else {
                try db.execute(sql: "UPDATE processors SET state = 'free', personality = NULL WHERE node = ?", arguments: [old])
            }
        }
        try db.execute(sql: "UPDATE personalities SET node = ?, generation = generation + 1 WHERE name = ?", arguments: [spare, name])
        try db.execute(sql: "UPDATE processors SET state = 'assigned', personality = ? WHERE node = ?", arguments: [name, spare])
        try Self.log(db, "personality-migrated", "personality \(name)",
                     "node \(p.node.map(\.description) ?? "none") → node \(spare)\(fence ? " (old node fenced: \(reason))" : " (\(reason))")")
        return Migration(personality: try Self.personality(db, name)!, from: p.node, to: spare, fenced: fence)
    }
}
