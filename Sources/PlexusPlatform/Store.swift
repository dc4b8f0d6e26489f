import Foundation
import GRDB
import PlexusLAN
import PlexusNode

/// The platform's state on a control node's disk: one SQLite database (GRDB), changed only by
/// the commands below, each in one transaction. A command that is refused changes nothing: it
/// throws before the transaction commits, and SQLite rolls everything back. A control node that
/// restarts opens the same file and has every PAN, personality, binding and the MAC counter.
///
/// Two control nodes on one host may share the file (SQLite's locks serialize their writes;
/// GRDB waits up to `busyTimeout` for the other's transaction). How the state stays consistent
/// when the control nodes sit on different hosts is written down in `docs/operations.md`.
public final class PlatformStore: Sendable {
    let db: DatabasePool
    public let path: String

    /// Opens (creating and migrating if need be) the database at `path`.
    /// - Parameter serial: the control node serial that new MACs carry, recorded at creation
    ///   (a database created with another serial keeps its own).
    public init(path: String, serial: UInt16 = 1, busyTimeout: TimeInterval = 5) throws {
        self.path = path
        var config = Configuration()
        config.busyMode = .timeout(busyTimeout)
        config.foreignKeysEnabled = true
        db = try DatabasePool(path: path, configuration: config)
        try Self.migrator.migrate(db)
        try db.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO meta(key, value) VALUES ('serial', ?), ('mac_next', '0')",
                           arguments: [String(serial)])
        }
    }

    /// The schema, one migration per change; a database is brought up to date when opened.
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1: platform model") { db in
            try db.execute(sql: """
                CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                CREATE TABLE processors (
                    node INTEGER PRIMARY KEY,
                    state TEXT NOT NULL CHECK (state IN ('free', 'assigned', 'fenced')),
                    personality TEXT UNIQUE,
                    fencedReason TEXT);
                CREATE TABLE pans (name TEXT PRIMARY KEY, createdMs INTEGER NOT NULL);
                CREATE TABLE vlans (vlan INTEGER PRIMARY KEY, pan TEXT NOT NULL REFERENCES pans(name) ON DELETE CASCADE);
                CREATE TABLE personalities (
                    name TEXT PRIMARY KEY,
                    pan TEXT NOT NULL REFERENCES pans(name) ON DELETE CASCADE,
                    node INTEGER UNIQUE REFERENCES processors(node),
                    workload TEXT,
                    generation INTEGER NOT NULL DEFAULT 0);
                CREATE TABLE nics (
                    mac TEXT PRIMARY KEY,
                    personality TEXT NOT NULL REFERENCES personalities(name) ON DELETE CASCADE,
                    vlan INTEGER NOT NULL REFERENCES vlans(vlan),
                    promiscuousAllowed INTEGER NOT NULL DEFAULT 0,
                    UNIQUE (personality, vlan));
                CREATE TABLE ips (
                    vlan INTEGER NOT NULL,
                    host TEXT NOT NULL,
                    prefix INTEGER NOT NULL,
                    personality TEXT NOT NULL REFERENCES personalities(name) ON DELETE CASCADE,
                    PRIMARY KEY (vlan, host));
                CREATE TABLE storage (
                    personality TEXT NOT NULL REFERENCES personalities(name) ON DELETE CASCADE,
                    target INTEGER NOT NULL,
                    lun INTEGER NOT NULL,
                    address TEXT NOT NULL,
                    access TEXT NOT NULL CHECK (access IN ('read-write', 'read-only')),
                    PRIMARY KEY (personality, target, lun));
                CREATE TABLE events (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    timeMs INTEGER NOT NULL,
                    kind TEXT NOT NULL,
                    subject TEXT NOT NULL,
                    detail TEXT NOT NULL);
                """)
        }
        return m
    }

    /// The migrations this build knows, in order, and those applied to the open database.
    public static var migrations: [String] { migrator.migrations }
    public func appliedMigrations() throws -> [String] { try db.read { try Self.migrator.appliedMigrations($0) } }

    // MARK: - Processors and the free pool

    /// Adds processing nodes to the platform's free pool.
    @discardableResult
    public func addProcessors(_ nodes: [Int]) throws -> [Processor] {
        guard !nodes.isEmpty else { throw PlatformError(.invalid, field: "nodes", "name at least one node") }
        for n in nodes { try Check.node(n, field: "nodes") }
        guard Set(nodes).count == nodes.count else { throw PlatformError(.invalid, field: "nodes", "a node is named twice") }
        return try db.write { db in
            for n in nodes {
                if try Self.processor(db, n) != nil { throw PlatformError(.conflict, field: "nodes", "node \(n) is already on the platform") }
                try db.execute(sql: "INSERT INTO processors(node, state) VALUES (?, 'free')", arguments: [n])
                try Self.log(db, "processor-added", "node \(n)", "to the free pool")
            }
            return try nodes.map { try Self.processor(db, $0)! }
        }
    }

    /// Takes a free processor off the platform.
    public func removeProcessor(_ node: Int) throws {
        try db.write { db in
            guard let p = try Self.processor(db, node) else { throw PlatformError(.notFound, field: "node", "no node \(node)") }
            guard p.state == .free else {
                throw PlatformError(.conflict, field: "node", "node \(node) is \(p.state.rawValue); only a free processor can be removed")
            }
            try db.execute(sql: "DELETE FROM processors WHERE node = ?", arguments: [node])
            try Self.log(db, "processor-removed", "node \(node)", "")
        }
    }

    /// Returns a fenced (repaired) processor to the free pool.
    public func returnProcessor(_ node: Int) throws -> Processor {
        try db.write { db in
            guard let p = try Self.processor(db, node) else { throw PlatformError(.notFound, field: "node", "no node \(node)") }
            guard p.state == .fenced else {
                throw PlatformError(.conflict, field: "node", "node \(node) is \(p.state.rawValue), not fenced")
            }
            try db.execute(sql: "UPDATE processors SET state = 'free', fencedReason = NULL WHERE node = ?", arguments: [node])
            try Self.log(db, "processor-returned", "node \(node)", "back in the free pool")
            return try Self.processor(db, node)!
        }
    }

    public func processors() throws -> [Processor] {
        try db.read { db in try Row.fetchAll(db, sql: "SELECT * FROM processors ORDER BY node").map(Self.processor(row:)) }
    }

    // MARK: - PANs and VLANs

    public func createPAN(_ name: String) throws -> PAN {
        try Check.name(name)
        return try db.write { db in
            if try Self.panExists(db, name) { throw PlatformError(.conflict, field: "name", "PAN \(name) exists") }
            try db.execute(sql: "INSERT INTO pans(name, createdMs) VALUES (?, ?)", arguments: [name, Self.nowMs()])
            try Self.log(db, "pan-created", "pan \(name)", "")
            return try Self.pan(db, name)!
        }
    }

    /// Deletes a PAN: its personalities go (their processors return to the free pool, their MACs
    /// are never handed out again) and its VLANs with them.
    public func deletePAN(_ name: String) throws {
        try db.write { db in
            guard try Self.panExists(db, name) else { throw PlatformError(.notFound, field: "name", "no PAN \(name)") }
            let members = try String.fetchAll(db, sql: "SELECT name FROM personalities WHERE pan = ?", arguments: [name])
            for m in members { try Self.release(db, m) }
            try db.execute(sql: "DELETE FROM pans WHERE name = ?", arguments: [name])
            try Self.log(db, "pan-deleted", "pan \(name)", members.isEmpty ? "" : "released \(members.joined(separator: ", "))")
        }
    }

    public func pans() throws -> [PAN] {
        try db.read { db in try String.fetchAll(db, sql: "SELECT name FROM pans ORDER BY name").map { try Self.pan(db, $0)! } }
    }

    public func pan(_ name: String) throws -> PAN {
        try db.read { db in
            guard let p = try Self.pan(db, name) else { throw PlatformError(.notFound, field: "pan", "no PAN \(name)") }
            return p
        }
    }

    /// Gives a PAN a VLAN (a broadcast domain; VLAN numbers are platform-wide, so no two PANs
    /// share one: isolation between PANs holds by construction).
    public func addVLAN(_ vlan: Int, to pan: String) throws -> PAN {
        _ = try Check.vlan(vlan)
        return try db.write { db in
            guard try Self.panExists(db, pan) else { throw PlatformError(.notFound, field: "pan", "no PAN \(pan)") }
            if let owner = try String.fetchOne(db, sql: "SELECT pan FROM vlans WHERE vlan = ?", arguments: [vlan]) {
                throw PlatformError(.conflict, field: "vlan", "VLAN \(vlan) belongs to PAN \(owner)")
            }
            try db.execute(sql: "INSERT INTO vlans(vlan, pan) VALUES (?, ?)", arguments: [vlan, pan])
            try Self.log(db, "vlan-added", "pan \(pan)", "VLAN \(vlan)")
            return try Self.pan(db, pan)!
        }
    }

    public func removeVLAN(_ vlan: Int, from pan: String) throws -> PAN {
        _ = try Check.vlan(vlan)
        return try db.write { db in
            guard try String.fetchOne(db, sql: "SELECT pan FROM vlans WHERE vlan = ?", arguments: [vlan]) == pan else {
                throw PlatformError(.notFound, field: "vlan", "PAN \(pan) has no VLAN \(vlan)")
            }
            let users = try String.fetchAll(db, sql: "SELECT personality FROM nics WHERE vlan = ? ORDER BY personality", arguments: [vlan])
            if !users.isEmpty {
                throw PlatformError(.conflict, field: "vlan", "VLAN \(vlan) still has NICs of \(users.joined(separator: ", ")); detach them first")
            }
            try db.execute(sql: "DELETE FROM vlans WHERE vlan = ?", arguments: [vlan])
            try Self.log(db, "vlan-removed", "pan \(pan)", "VLAN \(vlan)")
            return try Self.pan(db, pan)!
        }
    }

    // MARK: - Personalities

    /// Adds a processor from the free pool to a PAN, with a new personality `name` (default
    /// `<pan>-<node>`). `node` picks a particular free processor; else the lowest free one.
    public func addProcessor(to pan: String, name: String? = nil, node: Int? = nil) throws -> Personality {
        if let name { try Check.name(name) }
        if let node { try Check.node(node) }
        return try db.write { db in
            guard try Self.panExists(db, pan) else { throw PlatformError(.notFound, field: "pan", "no PAN \(pan)") }
            let chosen = try Self.takeSpare(db, preferring: node)
            let personality = name ?? "\(pan)-\(chosen)"
            if try Self.personalityExists(db, personality) {
                throw PlatformError(.conflict, field: "name", "personality \(personality) exists")
            }
            try db.execute(sql: "INSERT INTO personalities(name, pan, node) VALUES (?, ?, ?)", arguments: [personality, pan, chosen])
            try db.execute(sql: "UPDATE processors SET state = 'assigned', personality = ? WHERE node = ?", arguments: [personality, chosen])
            try Self.log(db, "processor-assigned", "personality \(personality)", "node \(chosen) in PAN \(pan)")
            return try Self.personality(db, personality)!
        }
    }

    /// Removes a personality; its processor returns to the free pool. Its MACs are not handed
    /// out again.
    public func removePersonality(_ name: String) throws {
        try db.write { db in
            guard try Self.personalityExists(db, name) else { throw PlatformError(.notFound, field: "personality", "no personality \(name)") }
            try Self.release(db, name)
            try Self.log(db, "personality-removed", "personality \(name)", "")
        }
    }

    /// Attaches a new virtual NIC on `vlan` (a VLAN of the personality's PAN) with a MAC that has
    /// never been handed out (serial and persistent counter, like ``MACAllocator``).
    public func attachNIC(_ name: String, vlan: Int, promiscuousAllowed: Bool = false) throws -> Personality {
        _ = try Check.vlan(vlan)
        return try db.write { db in
            let p = try Self.requirePersonality(db, name)
            guard try String.fetchOne(db, sql: "SELECT pan FROM vlans WHERE vlan = ?", arguments: [vlan]) == p.pan else {
                throw PlatformError(.invalid, field: "vlan", "VLAN \(vlan) is not a VLAN of PAN \(p.pan)")
            }
            if p.nics.contains(where: { $0.vlan == vlan }) {
                throw PlatformError(.conflict, field: "vlan", "\(name) already has a NIC on VLAN \(vlan)")
            }
            let mac = try Self.allocateMAC(db)
            try db.execute(sql: "INSERT INTO nics(mac, personality, vlan, promiscuousAllowed) VALUES (?, ?, ?, ?)",
                           arguments: [mac.description, name, vlan, promiscuousAllowed])
            try Self.log(db, "nic-attached", "personality \(name)", "\(mac) on VLAN \(vlan)")
            return try Self.personality(db, name)!
        }
    }

    public func detachNIC(_ name: String, vlan: Int) throws -> Personality {
        _ = try Check.vlan(vlan)
        return try db.write { db in
            let p = try Self.requirePersonality(db, name)
            guard let nic = p.nics.first(where: { $0.vlan == vlan }) else {
                throw PlatformError(.notFound, field: "vlan", "\(name) has no NIC on VLAN \(vlan)")
            }
            try db.execute(sql: "DELETE FROM ips WHERE personality = ? AND vlan = ?", arguments: [name, vlan])
            try db.execute(sql: "DELETE FROM nics WHERE mac = ?", arguments: [nic.mac])
            try Self.log(db, "nic-detached", "personality \(name)", "\(nic.mac) from VLAN \(vlan) (the MAC is retired)")
            return try Self.personality(db, name)!
        }
    }

    /// Binds an IPv4 address (`a.b.c.d/len`) to the personality's NIC on `vlan`. An address is
    /// bound to one NIC per VLAN.
    public func bindIP(_ name: String, vlan: Int, address: String) throws -> Personality {
        _ = try Check.vlan(vlan)
        let (host, prefix) = try Check.cidr(address)
        return try db.write { db in
            let p = try Self.requirePersonality(db, name)
            guard p.nics.contains(where: { $0.vlan == vlan }) else {
                throw PlatformError(.invalid, field: "vlan", "\(name) has no NIC on VLAN \(vlan); attach one first")
            }
            if let owner = try String.fetchOne(db, sql: "SELECT personality FROM ips WHERE vlan = ? AND host = ?",
                                               arguments: [vlan, host.description]) {
                throw PlatformError(.conflict, field: "address", "\(host) is bound to \(owner) on VLAN \(vlan)")
            }
            try db.execute(sql: "INSERT INTO ips(vlan, host, prefix, personality) VALUES (?, ?, ?, ?)",
                           arguments: [vlan, host.description, prefix, name])
            try Self.log(db, "ip-bound", "personality \(name)", "\(host)/\(prefix) on VLAN \(vlan)")
            return try Self.personality(db, name)!
        }
    }

    public func unbindIP(_ name: String, vlan: Int, address: String) throws -> Personality {
        _ = try Check.vlan(vlan)
        let (host, _) = try Check.cidr(address)
        return try db.write { db in
            _ = try Self.requirePersonality(db, name)
            try db.execute(sql: "DELETE FROM ips WHERE personality = ? AND vlan = ? AND host = ?",
                           arguments: [name, vlan, host.description])
            guard db.changesCount > 0 else { throw PlatformError(.notFound, field: "address", "\(host) is not bound to \(name) on VLAN \(vlan)") }
            try Self.log(db, "ip-unbound", "personality \(name)", "\(host) on VLAN \(vlan)")
            return try Self.personality(db, name)!
        }
    }

    /// Maps the personality's virtual (target, LUN) onto a storage address. The same storage may
    /// be mapped read-only by many personalities, but read-write by one only (and then by no
    /// other, read-only or not).
    public func mapStorage(_ name: String, target: Int, lun: Int, storage: String,
                           access: StorageMapping.Access = .readWrite) throws -> Personality {
        try Check.scsi(target, field: "target", limit: 256)
        try Check.scsi(lun, field: "lun", limit: 16384)
        try Check.storage(storage)
        return try db.write { db in
            _ = try Self.requirePersonality(db, name)
            if try Row.fetchOne(db, sql: "SELECT 1 FROM storage WHERE personality = ? AND target = ? AND lun = ?",
                                arguments: [name, target, lun]) != nil {
                throw PlatformError(.conflict, field: "lun", "\(name) already maps target \(target) LUN \(lun)")
            }
            let others = try Row.fetchAll(db, sql: "SELECT personality, access FROM storage WHERE address = ? AND personality != ?",
                                          arguments: [storage, name])
            if let w = others.first(where: { $0["access"] as String == "read-write" }) ?? (access == .readWrite ? others.first : nil) {
                throw PlatformError(.conflict, field: "storage", "\(storage) is mapped by \(w["personality"] as String) (\(w["access"] as String)); "
                                    + "storage is shared read-only or held read-write by one personality")
            }
            try db.execute(sql: "INSERT INTO storage(personality, target, lun, address, access) VALUES (?, ?, ?, ?, ?)",
                           arguments: [name, target, lun, storage, access.rawValue])
            try Self.log(db, "storage-mapped", "personality \(name)", "target \(target) LUN \(lun) → \(storage) (\(access.rawValue))")
            return try Self.personality(db, name)!
        }
    }

    public func unmapStorage(_ name: String, target: Int, lun: Int) throws -> Personality {
        try db.write { db in
            _ = try Self.requirePersonality(db, name)
            try db.execute(sql: "DELETE FROM storage WHERE personality = ? AND target = ? AND lun = ?", arguments: [name, target, lun])
            guard db.changesCount > 0 else { throw PlatformError(.notFound, field: "lun", "\(name) maps no target \(target) LUN \(lun)") }
            try Self.log(db, "storage-unmapped", "personality \(name)", "target \(target) LUN \(lun)")
            return try Self.personality(db, name)!
        }
    }

    /// Sets (or with nil clears) the personality's workload.
    public func setWorkload(_ name: String, command: String?) throws -> Personality {
        if let command { try Check.command(command) }
        return try db.write { db in
            _ = try Self.requirePersonality(db, name)
            try db.execute(sql: "UPDATE personalities SET workload = ? WHERE name = ?", arguments: [command, name])
            try Self.log(db, "workload-set", "personality \(name)", command ?? "(none)")
            return try Self.personality(db, name)!
        }
    }

    public func personality(_ name: String) throws -> Personality {
        try db.read { db in try Self.requirePersonality(db, name) }
    }

    /// The personality processor `node` holds.
    public func personality(node: Int) throws -> Personality {
        try db.read { db in
            guard let p = try Self.processor(db, node) else { throw PlatformError(.notFound, field: "node", "no node \(node)") }
            guard let name = p.personality else {
                throw PlatformError(.notFound, field: "node", "node \(node) is \(p.state.rawValue) and holds no personality")
            }
            return try Self.personality(db, name)!
        }
    }

    public func personalities() throws -> [Personality] {
        try db.read { db in try String.fetchAll(db, sql: "SELECT name FROM personalities ORDER BY name").map { try Self.personality(db, $0)! } }
    }

    // MARK: - Migration ("Cluster Management Logic")

    /// What a migration did.
    public struct Migration: Sendable, Hashable, Codable {
        public var personality: Personality
        public var from: Int?
        public var to: Int
        /// Whether the old processor was fenced (a failure) or returned to the pool (by hand).
        public var fenced: Bool
    }

    /// Moves a personality to another processor: `to`, or a spare from the free pool. The new
    /// processor inherits everything (MACs, VLANs, IPs, storage, workload). The old one is
    /// fenced when `fence` (it failed: it stays out until returned), else freed.
    public func migrate(_ name: String, to node: Int? = nil, fence: Bool, reason: String) throws -> Migration {
        if let node { try Check.node(node, field: "to") }
        return try db.write { db in try Self.migrate(db, name, to: node, fence: fence, reason: reason) }
    }

    static func migrate(_ db: Database, _ name: String, to node: Int?, fence: Bool, reason: String) throws -> Migration {
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
                     "node \(p.node.map(String.init) ?? "none") → node \(spare)\(fence ? " (old node fenced: \(reason))" : " (\(reason))")")
        return Migration(personality: try Self.personality(db, name)!, from: p.node, to: spare, fenced: fence)
    }

    // MARK: - Events

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
        try personalities().flatMap { p -> [VirtualNICBinding] in
            guard let node = p.node else { return [] }
            return p.nics.compactMap { n in
                guard let mac = MACAddress(n.mac), let vlan = VLANID(n.vlan) else { return nil }
                return VirtualNICBinding(node: UInt32(node), mac: mac, vlan: vlan, promiscuousAllowed: n.promiscuousAllowed)
            }
        }
    }

    // MARK: - Inside a transaction

    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    static func log(_ db: Database, _ kind: String, _ subject: String, _ detail: String) throws {
        try db.execute(sql: "INSERT INTO events(timeMs, kind, subject, detail) VALUES (?, ?, ?, ?)",
                       arguments: [nowMs(), kind, subject, detail])
    }

    static func processor(row r: Row) -> Processor {
        Processor(node: r["node"], state: Processor.State(rawValue: r["state"]) ?? .fenced, personality: r["personality"],
                  fencedReason: r["fencedReason"])
    }

    static func processor(_ db: Database, _ node: Int) throws -> Processor? {
        try Row.fetchOne(db, sql: "SELECT * FROM processors WHERE node = ?", arguments: [node]).map(processor(row:))
    }

    static func panExists(_ db: Database, _ name: String) throws -> Bool {
        try Row.fetchOne(db, sql: "SELECT 1 FROM pans WHERE name = ?", arguments: [name]) != nil
    }

    static func personalityExists(_ db: Database, _ name: String) throws -> Bool {
        try Row.fetchOne(db, sql: "SELECT 1 FROM personalities WHERE name = ?", arguments: [name]) != nil
    }

    static func pan(_ db: Database, _ name: String) throws -> PAN? {
        guard try panExists(db, name) else { return nil }
        return PAN(name: name,
                   vlans: try Int.fetchAll(db, sql: "SELECT vlan FROM vlans WHERE pan = ? ORDER BY vlan", arguments: [name]),
                   personalities: try String.fetchAll(db, sql: "SELECT name FROM personalities WHERE pan = ? ORDER BY name", arguments: [name]))
    }

    static func requirePersonality(_ db: Database, _ name: String) throws -> Personality {
        guard let p = try personality(db, name) else { throw PlatformError(.notFound, field: "personality", "no personality \(name)") }
        return p
    }

    static func personality(_ db: Database, _ name: String) throws -> Personality? {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM personalities WHERE name = ?", arguments: [name]) else { return nil }
        let nics = try Row.fetchAll(db, sql: "SELECT * FROM nics WHERE personality = ? ORDER BY vlan", arguments: [name]).map {
            NICRecord(mac: $0["mac"], vlan: $0["vlan"], promiscuousAllowed: $0["promiscuousAllowed"])
        }
        let ips = try Row.fetchAll(db, sql: "SELECT * FROM ips WHERE personality = ? ORDER BY vlan, host", arguments: [name]).map {
            IPBinding(vlan: $0["vlan"], address: "\($0["host"] as String)/\($0["prefix"] as Int)")
        }
        let storage = try Row.fetchAll(db, sql: "SELECT * FROM storage WHERE personality = ? ORDER BY target, lun", arguments: [name]).map {
            StorageMapping(target: $0["target"], lun: $0["lun"], storage: $0["address"],
                           access: StorageMapping.Access(rawValue: $0["access"]) ?? .readOnly)
        }
        return Personality(name: name, pan: row["pan"], node: row["node"], nics: nics, ips: ips, storage: storage,
                           workload: row["workload"], generation: row["generation"])
    }

    /// A free processor: `preferring` if given (it must be free), else the lowest free one.
    static func takeSpare(_ db: Database, preferring node: Int?, field: String = "node") throws -> Int {
        if let node {
            guard let p = try processor(db, node) else { throw PlatformError(.notFound, field: field, "no node \(node)") }
            guard p.state == .free else { throw PlatformError(.conflict, field: field, "node \(node) is \(p.state.rawValue), not free") }
            return node
        }
        guard let n = try Int.fetchOne(db, sql: "SELECT node FROM processors WHERE state = 'free' ORDER BY node LIMIT 1") else {
            throw PlatformError(.conflict, field: field, "the free pool is empty")
        }
        return n
    }

    /// Removes personality `name` (cascading to its NICs, IPs and storage) and frees its processor.
    static func release(_ db: Database, _ name: String) throws {
        try db.execute(sql: "UPDATE processors SET state = 'free', personality = NULL WHERE personality = ?", arguments: [name])
        try db.execute(sql: "DELETE FROM personalities WHERE name = ?", arguments: [name])
    }

    /// The next MAC: `02:SS:SS:CC:CC:CC` (locally administered, unicast; the control node's
    /// serial and a 24-bit counter), the counter advanced in the same transaction as the NIC.
    static func allocateMAC(_ db: Database) throws -> MACAddress {
        let serial = UInt64(try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'serial'").flatMap { UInt16($0) } ?? 1)
        let next = UInt64(try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'mac_next'").flatMap { UInt32($0) } ?? 0)
        guard next < UInt64(MACAllocator.limit) else {
            throw PlatformError(.conflict, "control node serial \(serial) has handed out all \(MACAllocator.limit) MACs")
        }
        try db.execute(sql: "UPDATE meta SET value = ? WHERE key = 'mac_next'", arguments: [String(next + 1)])
        return MACAddress(rawValue: 0x02 << 40 | serial << 24 | next)
    }
}
